package trace_test

import (
	"testing"

	"github.com/preempttrace/preempttrace/internal/fixture"
	"github.com/preempttrace/preempttrace/internal/safepoint"
	"github.com/preempttrace/preempttrace/internal/symtab"
	"github.com/preempttrace/preempttrace/internal/trace"
)

// loopPC returns a PC inside fn past its prologue where the PC rules give want.
func loopPC(t *testing.T, f *symtab.File, rules *safepoint.Rules, name string,
	want safepoint.Reason) uint64 {
	t.Helper()
	fn, err := f.LookupFunc(name)
	if err != nil {
		t.Fatal(err)
	}
	for pc := fn.End - 1; pc > fn.Entry; pc-- {
		info, err := f.Lookup(pc)
		if err != nil {
			continue
		}
		if safepoint.Classify(rules, safepoint.FromInfo(info), safepoint.State{}).Reason == want {
			return pc
		}
	}
	t.Fatalf("no %s pc in %s", want, name)
	return 0
}

// openSpin decodes the current toolchain's spin fixture, closed when the test ends, and
// returns it with its release's rules.
func openSpin(t *testing.T) (*symtab.File, *safepoint.Rules) {
	t.Helper()
	f, err := symtab.Open(fixture.Build(t, fixture.Current(t), "spin", fixture.Default))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	rules, err := safepoint.For(f.Version())
	if err != nil {
		t.Fatal(err)
	}
	return f, rules
}

// checkDecode decodes a and checks the record's reason and whether it is a mismatch.
func checkDecode(t *testing.T, d *trace.Decoder, a trace.Attempt, reason safepoint.Reason,
	mismatch bool) {
	t.Helper()
	r := d.Decode(a)
	if r.Reason != reason || r.Mismatch != mismatch {
		t.Errorf("reason %s mismatch %v (%s); want %s %v", r.Reason, r.Mismatch, r.Why, reason,
			mismatch)
	}
}

func TestDecode(t *testing.T) {
	f, rules := openSpin(t)
	const bias = 0x10000
	d := trace.NewDecoder(f, rules, bias)
	nosplit := loopPC(t, f, rules, "main.nosplitSpin", safepoint.UnsafePoint) + bias
	plain := loopPC(t, f, rules, "main.plainSpin", safepoint.Safe) + bias

	at := func(pc uint64, v trace.RuntimeVerdict, resume uint64) trace.Attempt {
		return trace.Attempt{RegsKnown: true, PC: pc, Runtime: v, ResumePC: resume}
	}
	tests := []struct {
		name     string
		a        trace.Attempt
		reason   safepoint.Reason
		mismatch bool
		refused  bool
	}{
		{"refused as predicted", at(nosplit, trace.RuntimeRefused, 0), safepoint.UnsafePoint,
			false, true},
		{"accepted as predicted", at(plain, trace.RuntimeAccepted, plain), safepoint.Safe,
			false, false},
		{"refused by unseen state", at(plain, trace.RuntimeRefused, 0), safepoint.Unknown,
			false, true},
		{"accepted against the rules", at(nosplit, trace.RuntimeAccepted, nosplit),
			safepoint.UnsafePoint, true, false},
		{"wrong resume pc", trace.Attempt{RegsKnown: true, PC: plain, Runtime: trace.RuntimeAccepted,
			ResumePC: plain + 1}, safepoint.Safe, true, false},
		{"entered asyncPreempt to resume there", trace.Attempt{RegsKnown: true, PC: plain,
			Runtime: trace.RuntimeAccepted, ResumePC: plain, Entry: trace.EntrySeen,
			EntryReturn: plain}, safepoint.Safe, false, false},
		{"entered asyncPreempt to resume elsewhere", trace.Attempt{RegsKnown: true, PC: plain,
			Runtime: trace.RuntimeAccepted, ResumePC: plain, Entry: trace.EntrySeen,
			EntryReturn: plain + 4}, safepoint.Safe, true, false},
		{"not wanted", trace.Attempt{RegsKnown: true, PC: nosplit, Runtime: trace.RuntimeNotWanted},
			safepoint.NotWanted, false, true},
		{"outside Go", trace.Attempt{RegsKnown: true, PC: 0x10, Runtime: trace.RuntimeRefused},
			safepoint.NotGoCode, false, true},
		{"runtime unseen", trace.Attempt{RegsKnown: true, PC: nosplit}, safepoint.UnsafePoint, false,
			true},
		{"registers unseen", trace.Attempt{Runtime: trace.RuntimeRefused}, safepoint.Unknown,
			false, true},
	}
	var sum trace.Summary
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := d.Decode(tt.a)
			if r.Reason != tt.reason || r.Mismatch != tt.mismatch || r.Refused() != tt.refused {
				t.Errorf("reason %s mismatch %v (%s) refused %v; want %s %v %v", r.Reason,
					r.Mismatch, r.Why, r.Refused(), tt.reason, tt.mismatch, tt.refused)
			}
			if r.Info != nil && r.Info.PC != tt.a.PC-bias {
				t.Errorf("decoded pc %#x", r.Info.PC)
			}
			sum.Add(&r)
		})
	}

	if sum.Events != uint64(len(tests)) || sum.Mismatches != 3 || sum.NotWanted != 1 ||
		sum.DecodeErrors != 1 || sum.Entered != 2 || sum.EntryMissed != 0 {
		t.Errorf("summary %+v", sum)
	}
	var nosplitTop *trace.FuncCount
	for _, fc := range sum.Top(3) {
		if fc.Func == "main.nosplitSpin" {
			nosplitTop = &fc
		}
	}
	if nosplitTop == nil || nosplitTop.Count != 2 || nosplitTop.Reason != safepoint.UnsafePoint {
		t.Errorf("top %+v", sum.Top(3))
	}
}

// TestDecodeRuntimeReason decodes attempts whose backend saw the return isAsyncSafePoint
// left by: the check it names must be the decoder's, fills in what the decoder could not
// see, and must agree with the runtime's verdict.
func TestDecodeRuntimeReason(t *testing.T) {
	f, rules := openSpin(t)
	d := trace.NewDecoder(f, rules, 0)
	nosplit := loopPC(t, f, rules, "main.nosplitSpin", safepoint.UnsafePoint)
	noPtrs := loopPC(t, f, rules, "main.asmSpinNoPtrs", safepoint.NoPointersStackmap)
	plain := loopPC(t, f, rules, "main.plainSpin", safepoint.Safe)

	at := func(pc uint64, v trace.RuntimeVerdict, why safepoint.Reason) trace.Attempt {
		a := trace.Attempt{RegsKnown: true, PC: pc, Runtime: v, RuntimeReason: why,
			RuntimeReasonKnown: true}
		if v == trace.RuntimeAccepted {
			a.ResumePC = pc
		}
		return a
	}
	tests := []struct {
		name     string
		a        trace.Attempt
		reason   safepoint.Reason
		mismatch bool
	}{
		{"same check", at(nosplit, trace.RuntimeRefused, safepoint.UnsafePoint),
			safepoint.UnsafePoint, false},
		{"the locals-map check", at(noPtrs, trace.RuntimeRefused, safepoint.Assembly),
			safepoint.NoPointersStackmap, false},
		{"another check", at(nosplit, trace.RuntimeRefused, safepoint.Assembly),
			safepoint.UnsafePoint, true},
		{"unseen thread state", at(plain, trace.RuntimeRefused, safepoint.MBusy),
			safepoint.MBusy, false},
		{"a PC rule the decoder does not apply", at(plain, trace.RuntimeRefused,
			safepoint.UnsafePoint), safepoint.Unknown, true},
		{"accepted", at(plain, trace.RuntimeAccepted, safepoint.Safe), safepoint.Safe, false},
		{"restart where the decoder saw none", at(plain, trace.RuntimeAccepted,
			safepoint.SafeRestart), safepoint.Safe, true},
		{"refused by an accepting return", at(plain, trace.RuntimeRefused, safepoint.Safe),
			safepoint.Unknown, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkDecode(t, d, tt.a, tt.reason, tt.mismatch)
		})
	}
}

// TestDecodeState checks that the thread state a backend read decides before the PC rules,
// in the runtime's order, and explains refusals the PC rules would accept.
func TestDecodeState(t *testing.T) {
	f, rules := openSpin(t)
	const bias = 0x10000
	d := trace.NewDecoder(f, rules, bias)
	nosplit := loopPC(t, f, rules, "main.nosplitSpin", safepoint.UnsafePoint) + bias
	plain := loopPC(t, f, rules, "main.plainSpin", safepoint.Safe) + bias

	// A preemptible thread: gp is curg, the M is idle with a running P, curg is _Grunning
	// and the stack has far more room than asyncPreempt needs.
	const sp, gp = 0xc000100000, 0xc000001000
	preemptible := func() trace.Thread {
		return trace.Thread{G: gp, M: 0x1000, CurG: gp, StackLo: sp - 0x8000, P: 0x2000,
			PStatus: 1, CurGStatus: 2, CurGStatusKnown: true}
	}
	at := func(pc uint64, v trace.RuntimeVerdict, change func(*trace.Thread)) trace.Attempt {
		th := preemptible()
		if change != nil {
			change(&th)
		}
		a := trace.Attempt{RegsKnown: true, PC: pc, SP: sp, Runtime: v, Thread: th,
			StateKnown: true}
		if v == trace.RuntimeAccepted {
			a.ResumePC = pc
		}
		return a
	}

	// Where canPreemptM reads curg's status (Go 1.26+), a missing status leaves the
	// state unchecked, and a goroutine in a system call makes the M busy.
	unseenStatus, syscall := safepoint.Unknown, safepoint.MBusy
	unseenMismatch, syscallMismatch := false, false
	if !rules.CanPreemptMReadsCurG() {
		unseenStatus, syscall = safepoint.Safe, safepoint.Safe
		unseenMismatch, syscallMismatch = true, true
	}

	tests := []struct {
		name     string
		a        trace.Attempt
		reason   safepoint.Reason
		mismatch bool
	}{
		{"preemptible, accepted", at(plain, trace.RuntimeAccepted, nil), safepoint.Safe, false},
		{"preemptible, refused", at(plain, trace.RuntimeRefused, nil), safepoint.Safe, true},
		{"on g0", at(plain, trace.RuntimeRefused, func(th *trace.Thread) { th.CurG = 0x3000 }),
			safepoint.NotUserGoroutine, false},
		{"holding a lock", at(plain, trace.RuntimeRefused, func(th *trace.Thread) { th.Locks = 1 }),
			safepoint.MBusy, false},
		{"no P", at(plain, trace.RuntimeRefused,
			func(th *trace.Thread) { th.P, th.PStatus = 0, 0 }), safepoint.MBusy, false},
		{"P not running", at(plain, trace.RuntimeRefused,
			func(th *trace.Thread) { th.PStatus = 3 }), safepoint.MBusy, false},
		{"preemptoff", at(plain, trace.RuntimeRefused,
			func(th *trace.Thread) { th.PreemptoffLen = 5 }), safepoint.MBusy, false},
		{"stack full", at(plain, trace.RuntimeRefused,
			func(th *trace.Thread) { th.StackLo = sp - 16 }), safepoint.StackSpace, false},
		{"below the stack", at(plain, trace.RuntimeRefused,
			func(th *trace.Thread) { th.StackLo = sp + 8 }), safepoint.StackSpace, false},
		{"allocating at an unsafe point", at(nosplit, trace.RuntimeRefused,
			func(th *trace.Thread) { th.Mallocing = 1 }), safepoint.MBusy, false},
		{"preemptible at an unsafe point", at(nosplit, trace.RuntimeRefused, nil),
			safepoint.UnsafePoint, false},
		{"accepted while allocating", at(plain, trace.RuntimeAccepted,
			func(th *trace.Thread) { th.Mallocing = 1 }), safepoint.MBusy, true},
		{"curg status unseen", at(plain, trace.RuntimeRefused,
			func(th *trace.Thread) { th.CurGStatusKnown = false }), unseenStatus, unseenMismatch},
		{"curg in a system call", at(plain, trace.RuntimeRefused,
			func(th *trace.Thread) { th.CurGStatus = 3 | 0x1000 }), syscall, syscallMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkDecode(t, d, tt.a, tt.reason, tt.mismatch)
		})
	}
}

// TestSummaryCounts checks how the summary files attempts: a not-wanted attempt counts as
// such whether the runtime said so (eBPF) or the decoder predicted it from the state the
// backend read (ptrace), and neither is a refusal; attempts without state are counted.
func TestSummaryCounts(t *testing.T) {
	records := []trace.Record{
		{Attempt: trace.Attempt{Runtime: trace.RuntimeNotWanted, StateKnown: true},
			Reason: safepoint.NotWanted},
		{Attempt: trace.Attempt{Runtime: trace.RuntimeUnknown, StateKnown: true},
			Reason: safepoint.NotWanted},
		{Attempt: trace.Attempt{Runtime: trace.RuntimeRefused, StateKnown: true},
			Reason: safepoint.Assembly},
		{Attempt: trace.Attempt{Runtime: trace.RuntimeUnknown}, Reason: safepoint.UnsafePoint},
		{Attempt: trace.Attempt{Runtime: trace.RuntimeUnknown}, Reason: safepoint.Safe},
		{Attempt: trace.Attempt{Runtime: trace.RuntimeAccepted, StateKnown: true,
			Entry: trace.EntrySeen}, Reason: safepoint.Safe},
		{Attempt: trace.Attempt{Runtime: trace.RuntimeAccepted, StateKnown: true,
			Entry: trace.EntryMissed}, Reason: safepoint.Safe},
		{Attempt: trace.Attempt{Runtime: trace.RuntimeAccepted, StateKnown: true},
			Reason: safepoint.Safe},
	}
	var sum trace.Summary
	for i := range records {
		sum.Add(&records[i])
	}

	if sum.Events != 8 || sum.NotWanted != 2 || sum.Refused != 2 || sum.Accepted != 4 {
		t.Errorf("events %d, not wanted %d, refused %d, accepted %d; want 8, 2, 2, 4",
			sum.Events, sum.NotWanted, sum.Refused, sum.Accepted)
	}
	if sum.Entered != 1 || sum.EntryMissed != 1 {
		t.Errorf("entered asyncPreempt %d, missed %d; want 1, 1", sum.Entered, sum.EntryMissed)
	}
	if sum.StateUnknown != 2 {
		t.Errorf("%d attempts without state, want 2", sum.StateUnknown)
	}
	for _, fc := range sum.Top(10) {
		if fc.Reason == safepoint.NotWanted {
			t.Errorf("not-wanted attempts listed as refusals: %+v", fc)
		}
	}
}
