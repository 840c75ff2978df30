//go:build linux

package ptrace_test

import (
	"errors"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/preempttrace/preempttrace/internal/fixture"
	"github.com/preempttrace/preempttrace/internal/probe"
	"github.com/preempttrace/preempttrace/internal/ptrace"
	"github.com/preempttrace/preempttrace/internal/safepoint"
	"github.com/preempttrace/preempttrace/internal/symtab"
	"github.com/preempttrace/preempttrace/internal/target"
	"github.com/preempttrace/preempttrace/internal/testutil"
	"github.com/preempttrace/preempttrace/internal/trace"
)

// TestAgreesWithRuntime attaches both backends to one process. Every SIGURG stops the
// thread for ptrace before its handler runs, and then fires the eBPF probes in the
// handler, which read the runtime's own verdict. So the same attempts arrive twice: the
// registers and thread state ptrace read must equal what the probes read from the
// handler's arguments, and the reason ptrace's decoder predicts, whether preemption was
// still wanted included, must be the one the runtime then acted on.
func TestAgreesWithRuntime(t *testing.T) {
	testutil.RequirePtrace(t)
	testutil.RequireBPF(t)

	tc := fixture.Current(t)
	for _, v := range []fixture.Variant{fixture.Default, fixture.ExternalPIE, fixture.Cgo} {
		t.Run(string(v), func(t *testing.T) {
			bin := fixture.Build(t, tc, "spin", v)
			viaPtrace, viaProbes := traceBoth(t, bin)
			checkAgreement(t, viaPtrace, viaProbes)
		})
	}
}

// traceBoth runs the fixture with both backends attached and returns what each decoded.
func traceBoth(t *testing.T, bin string) (viaPtrace, viaProbes []trace.Record) {
	t.Helper()

	f, err := symtab.Open(bin)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	defer f.Close()
	rules, err := safepoint.For(f.Version())
	if err != nil {
		t.Fatalf("rules: %v", err)
	}
	offs, err := target.FindRuntimeOffsets(bin, f.Version())
	if err != nil || offs.State == nil {
		t.Fatalf("runtime offsets: %+v, %v", offs, err)
	}

	cmd := exec.Command(bin, "all", "4s")
	if err := cmd.Start(); err != nil {
		t.Fatalf("start: %v", err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	proc, err := target.Find(cmd.Process.Pid)
	if err != nil {
		t.Fatalf("find target: %v", err)
	}
	bias, err := proc.LoadBias()
	if err != nil {
		t.Fatalf("load bias: %v", err)
	}
	dec := trace.NewDecoder(f, rules, bias)

	pt, err := ptrace.Attach(ptrace.Options{PID: proc.PID, Goid: offs.Goid, State: offs.State})
	if err != nil {
		t.Fatalf("ptrace attach: %v", err)
	}
	defer pt.Close()
	bp, err := probe.Attach(probe.Options{PID: proc.PID, Symtab: f, Goid: offs.Goid,
		State: offs.State})
	if err != nil {
		t.Fatalf("eBPF attach: %v", err)
	}
	defer bp.Close()

	ptraced := make(chan []trace.Attempt)
	go func() { ptraced <- collectAttempts(t, pt, 2*time.Second) }()
	for _, ev := range probeEvents(t, bp, 2*time.Second) {
		viaProbes = append(viaProbes, dec.Decode(bp.Attempt(&ev)))
	}
	for _, a := range <-ptraced {
		viaPtrace = append(viaPtrace, dec.Decode(a))
	}
	return viaPtrace, viaProbes
}

// probeEvents reads the eBPF backend's events for d, then stops it and drains the ring.
func probeEvents(t *testing.T, tr *probe.Tracer, d time.Duration) []probe.Event {
	t.Helper()

	var out []probe.Event
	tr.SetDeadline(time.Now().Add(d))
	for {
		ev, err := tr.Read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatalf("eBPF read: %v", err)
		}
		out = append(out, ev)
	}
	if err := tr.Stop(); err != nil {
		t.Fatalf("eBPF stop: %v", err)
	}
	tr.SetDeadline(time.Time{})
	for {
		ev, err := tr.Read()
		if errors.Is(err, probe.ErrStopped) {
			return out
		}
		if err != nil {
			t.Fatalf("eBPF drain: %v", err)
		}
		out = append(out, ev)
	}
}

// pair is one signal as both backends saw it.
type pair struct{ ptrace, probe *trace.Record }

// clockSlack covers the difference between the probes' clock (bpf_ktime_get_ns) and Go's
// monotonic clock, which ptrace's records carry: both are CLOCK_MONOTONIC, and package probe
// converts with the monotonic reading kept, so only the kernel's fast accessor may lag a
// little, making a probe's record look earlier than it was. So it widens only the start of a
// signal's window: the end, ptrace's record of the thread's next signal, comes after the
// handler of this one has returned, and a slack there would let a thread interrupted again
// and again at the same PC and SP (asleep in futex) pair a signal whose handler never
// reached the probes with the probes' record of the next one, taken a few µs after
// ptrace's record of it.
const clockSlack = 10 * time.Microsecond

// matchAttempts pairs the attempts of each thread in order. The backends attach and stop
// at different moments, so either may have attempts the other missed at the ends. A signal
// is the same one when it interrupted the same PC with the same stack pointer, and the
// probes saw it between ptrace's record of it and of the thread's next signal: a thread
// that sleeps in the same place again and again is interrupted at the same PC and SP each
// time. Where two attempts differ, the earlier
// one has no partner: ptrace sees a signal before its handler runs, so its record of a
// signal is never later than the probes'.
func matchAttempts(viaPtrace, viaProbes []trace.Record) (pairs []pair, unmatched int) {
	byTID := func(rs []trace.Record) map[int][]*trace.Record {
		m := map[int][]*trace.Record{}
		for i := range rs {
			m[rs[i].TID] = append(m[rs[i].TID], &rs[i])
		}
		return m
	}
	pt, bp := byTID(viaPtrace), byTID(viaProbes)

	for tid, ps := range pt {
		bs := pt[tid][:0:0]
		bs = append(bs, bp[tid]...)
		i, j := 0, 0
		for i < len(ps) && j < len(bs) {
			p, b := ps[i], bs[j]
			// The handler of p's signal runs after ptrace's record of it and, as it
			// blocks SIGURG, ends before the thread's next SIGURG stops it.
			inWindow := b.Time.After(p.Time.Add(-clockSlack)) &&
				(i+1 == len(ps) || b.Time.Before(ps[i+1].Time))
			switch {
			case p.PC == b.PC && p.SP == b.SP && inWindow:
				pairs = append(pairs, pair{p, b})
				i, j = i+1, j+1
			case !p.Time.After(b.Time):
				i, unmatched = i+1, unmatched+1
			default:
				j, unmatched = j+1, unmatched+1
			}
		}
	}
	return pairs, unmatched
}

// checkAgreement compares what both backends saw of the same signals.
func checkAgreement(t *testing.T, viaPtrace, viaProbes []trace.Record) {
	t.Helper()

	pairs, unmatched := matchAttempts(viaPtrace, viaProbes)
	t.Logf("ptrace %d attempts, eBPF %d, %d matched, %d without a partner", len(viaPtrace),
		len(viaProbes), len(pairs), unmatched)
	// ptrace attaches first, so nearly every signal the probes saw was seen by ptrace too.
	if len(pairs) < 100 || len(pairs) < 95*len(viaProbes)/100 {
		t.Fatalf("only %d of %d/%d attempts matched", len(pairs), len(viaPtrace),
			len(viaProbes))
	}

	raced, wantRaced := 0, 0
	for _, p := range pairs {
		if !sameState(t, p) {
			raced++
		}
		if p.ptrace.Reason == p.probe.Reason && p.ptrace.Refused() == p.probe.Refused() {
			continue
		}
		if p.ptrace.Reason == safepoint.NotWanted || p.probe.Reason == safepoint.NotWanted {
			// Another thread made or withdrew a request between the two looks.
			wantRaced++
			continue
		}
		t.Errorf("tid %d pc %#x: ptrace predicted %s (refused=%v), runtime %s with reason %s",
			p.ptrace.TID, p.ptrace.PC, p.ptrace.Reason, p.ptrace.Refused(), p.probe.Runtime,
			p.probe.Reason)
	}
	t.Logf("%d changed by other threads in between: %d in a status, %d in wanting preemption",
		raced+wantRaced, raced, wantRaced)
	if raced > len(pairs)/100 || wantRaced > len(pairs)/100 {
		t.Errorf("of %d attempts, %d saw a status change and %d a request change between "+
			"the two reads", len(pairs), raced, wantRaced)
	}
}

// sameState checks that ptrace read the same goroutine and thread state as the probes.
// What the interrupted thread owns must be equal: it is stopped from the first read to the
// second. Its P's status and its current goroutine's status word can be changed by other
// threads in between (sysmon retakes a P in a syscall, the collector sets the scan bit of
// a goroutine it scans); sameState reports false when only those differ.
func sameState(t *testing.T, p pair) bool {
	t.Helper()

	a, b := p.ptrace, p.probe
	if a.GoIDKnown != b.GoIDKnown || a.GoID != b.GoID {
		t.Errorf("tid %d pc %#x: goroutine %d (known %v) via ptrace, %d (known %v) via eBPF",
			a.TID, a.PC, a.GoID, a.GoIDKnown, b.GoID, b.GoIDKnown)
	}
	if a.FP != b.FP {
		t.Errorf("tid %d pc %#x: frame pointer %#x via ptrace, %#x via eBPF", a.TID, a.PC, a.FP,
			b.FP)
	}

	// The probes see the runtime's decision and read nothing of what wantAsyncPreempt
	// reads; ptrace must have.
	if !a.Thread.WantKnown {
		t.Errorf("tid %d pc %#x: ptrace did not read whether preemption was wanted", a.TID,
			a.PC)
	}
	seen := a.Thread
	seen.GStatus, seen.GPreempt, seen.PPreempt, seen.WantKnown = 0, false, false, false

	own, other := seen, b.Thread
	own.PStatus, own.CurGStatus = other.PStatus, other.CurGStatus
	if a.StateKnown != b.StateKnown || own != other {
		t.Errorf("tid %d pc %#x: thread state via ptrace %+v (known %v), via eBPF %+v (known %v)",
			a.TID, a.PC, a.Thread, a.StateKnown, b.Thread, b.StateKnown)
	}
	return seen == b.Thread
}
