// Package trace turns the preemption attempts a backend observed into decoded
// records and keeps the running totals a summary needs. It is shared by every
// backend: each fills an Attempt with what it can see and leaves the rest
// explicitly unknown.
package trace

import (
	"errors"
	"fmt"
	"time"

	"github.com/preempttrace/preempttrace/internal/safepoint"
	"github.com/preempttrace/preempttrace/internal/symtab"
)

// RuntimeVerdict is what the runtime itself decided, as far as a backend saw.
type RuntimeVerdict uint8

// The runtime verdicts.
const (
	// RuntimeUnknown: the backend could not observe the decision.
	RuntimeUnknown RuntimeVerdict = iota
	// RuntimeRefused: isAsyncSafePoint returned false.
	RuntimeRefused
	// RuntimeAccepted: isAsyncSafePoint returned true.
	RuntimeAccepted
	// RuntimeNotWanted: doSigPreempt did not ask, the goroutine no longer
	// wanted preemption.
	RuntimeNotWanted
)

func (v RuntimeVerdict) String() string {
	if v > RuntimeNotWanted {
		return fmt.Sprintf("verdict(%d)", uint8(v))
	}
	return [...]string{"unknown", "refused", "accepted", "not-wanted"}[v]
}

// Attempt is one preemption signal that reached the runtime's handler.
type Attempt struct {
	Time     time.Time
	PID, TID int

	// GoID is the interrupted goroutine's id when GoIDKnown.
	GoID      uint64
	GoIDKnown bool

	// PC, SP and FP are the interrupted registers, in the process's address
	// space (a PIE's load bias included), when RegsKnown.
	PC, SP, FP uint64
	RegsKnown  bool

	// Runtime and ResumePC are the runtime's own decision, when observed.
	Runtime  RuntimeVerdict
	ResumePC uint64

	// RuntimeReason is the check of isAsyncSafePoint that decided, from the return it
	// left by, when RuntimeReasonKnown: the locals-map check gives safepoint.Assembly for
	// NoPointersStackmap too (safepoint.SameCheck).
	RuntimeReason      safepoint.Reason
	RuntimeReasonKnown bool

	// Thread is the state isAsyncSafePoint checks before the PC, when StateKnown.
	Thread     Thread
	StateKnown bool

	// Origin says who sent the signal, as far as the backend saw its siginfo.
	Origin Origin

	// Entry says whether an accepted goroutine was seen entering runtime.asyncPreempt,
	// which the runtime made it call; when EntrySeen, EntryReturn is the PC asyncPreempt
	// will return to, which must be ResumePC.
	Entry       Entry
	EntryReturn uint64
}

// Entry is what a backend saw of an accepted goroutine's way into runtime.asyncPreempt.
type Entry uint8

// The entries.
const (
	// EntryUnknown: the backend did not watch, or tracing stopped before it could tell.
	EntryUnknown Entry = iota
	// EntrySeen: the goroutine entered asyncPreempt.
	EntrySeen
	// EntryMissed: the goroutine was watched for and did not enter asyncPreempt before
	// its thread's next accepted request, which an accepted request cannot explain.
	EntryMissed
)

func (e Entry) String() string {
	if e > EntryMissed {
		return fmt.Sprintf("entry(%d)", uint8(e))
	}
	return [...]string{"unknown", "seen", "missed"}[e]
}

// Origin is who sent a preemption signal. The runtime's handler treats every SIGURG
// alike, so an outside one is decoded like any other; the origin only tells them apart.
type Origin uint8

// The origins.
const (
	// OriginUnknown: the backend did not see the siginfo.
	OriginUnknown Origin = iota
	// OriginRuntime: sent with tgkill(2), as the runtime's preemptM sends it.
	OriginRuntime
	// OriginOutside: sent some other way, such as kill(1).
	OriginOutside
)

func (o Origin) String() string {
	if o > OriginOutside {
		return fmt.Sprintf("origin(%d)", uint8(o))
	}
	return [...]string{"unknown", "runtime", "outside"}[o]
}

// Thread is what the interrupted goroutine's M and P held when the signal
// arrived (runtime/runtime2.go names in parentheses).
type Thread struct {
	// G is the interrupted goroutine (gp), M its M (gp.m), CurG the M's
	// current user goroutine (m.curg) and StackLo the low bound of gp's stack
	// (gp.stack.lo).
	G, M, CurG, StackLo uint64

	// Locks, Mallocing and PreemptoffLen are m.locks, m.mallocing and
	// len(m.preemptoff).
	Locks, Mallocing int32
	PreemptoffLen    uint64

	// P is m.p and PStatus its status (0 when P is 0).
	P       uint64
	PStatus uint32

	// CurGStatus is m.curg.atomicstatus, when CurGStatusKnown.
	CurGStatus      uint32
	CurGStatusKnown bool

	// GStatus is gp.atomicstatus, and GPreempt and PPreempt the preemption requests of gp
	// and of m.p, when WantKnown: what wantAsyncPreempt reads. A backend that sees the
	// runtime's decision has no need of them.
	GStatus            uint32
	GPreempt, PPreempt bool
	WantKnown          bool

	// Secret is gp.secret, non-zero inside runtime/secret.Do, when SecretKnown: only in
	// builds with GOEXPERIMENT=runtimesecret, whose isAsyncSafePoint checks it.
	Secret      int32
	SecretKnown bool
}

// wantsPreemption is wantAsyncPreempt(gp) (runtime/preempt.go): a request is pending on
// the goroutine or its P, and the goroutine is running.
func (th *Thread) wantsPreemption() bool {
	return (th.GPreempt || th.P != 0 && th.PPreempt) && th.GStatus&^gScanStatus == gRunning
}

// Record is a decoded attempt.
type Record struct {
	Attempt

	// Info is what the binary says about the PC; nil outside Go code or when
	// decoding failed (DecodeErr).
	Info      *symtab.PCInfo
	DecodeErr error

	// Predicted is the decoder's verdict from the PC and what the backend
	// observed; Reason is the reason reported for the attempt.
	Predicted safepoint.Verdict
	Reason    safepoint.Reason

	// Mismatch says the runtime's decision contradicts the decoder's; Why
	// says how.
	Mismatch bool
	Why      string
}

// Refused reports whether the goroutine kept running after this attempt.
func (r *Record) Refused() bool {
	switch r.Runtime {
	case RuntimeAccepted:
		return false
	case RuntimeRefused, RuntimeNotWanted:
		return true
	}
	return !r.Reason.Accepted()
}

// errNoRegisters marks an attempt whose interrupted registers could not be read.
var errNoRegisters = errors.New("interrupted registers unknown")

// Decoder decodes attempts against one binary.
type Decoder struct {
	file  *symtab.File
	rules *safepoint.Rules
	bias  uint64

	// stackNeed is the binary's asyncPreemptStack, 0 when unknown.
	stackNeed uint64
}

// NewDecoder returns a decoder for a process whose executable is f, loaded
// bias bytes above its link-time addresses.
func NewDecoder(f *symtab.File, rules *safepoint.Rules, bias uint64) *Decoder {
	return &Decoder{file: f, rules: rules, bias: bias, stackNeed: asyncPreemptStack(f, rules)}
}

// asyncPreemptStack returns the stack room isAsyncSafePoint requires above
// gp.stack.lo, computed as the runtime's init in runtime/preempt.go computes
// it from the same function table; 0 when a function is missing. Where two
// functions share a name (an assembly function and its ABI wrapper), the
// larger delta is taken, which can only make the check stricter than a
// mismatching guess.
func asyncPreemptStack(f *symtab.File, rules *safepoint.Rules) uint64 {
	total := uint64(safepoint.AsyncPreemptSlack)
	for _, name := range rules.AsyncPreemptFuncs() {
		fns, err := f.LookupFuncs(name)
		if err != nil {
			return 0
		}

		var most int32
		for _, fn := range fns {
			d, err := f.MaxSPDelta(fn)
			if err != nil {
				return 0
			}
			most = max(most, d)
		}
		total += uint64(most)
	}
	return total
}

// state returns what the attempt tells about the checks isAsyncSafePoint
// makes before the PC, in its order: the goroutine still wanted preemption,
// is its M's user goroutine, the M may be preempted (canPreemptM), and the
// stack has room for asyncPreempt's frame.
func (d *Decoder) state(a Attempt) safepoint.State {
	var st safepoint.State
	switch {
	case a.Runtime == RuntimeNotWanted:
		st.Wanted = safepoint.No
	case a.Runtime != RuntimeUnknown:
		st.Wanted = safepoint.Yes
	case a.StateKnown && a.Thread.WantKnown:
		// The state at the signal, which the handler reads moments later. The running
		// goroutine's requests are cleared only by its own thread, stopped in between;
		// another thread may still make a request in that window, so "not wanted" can
		// rarely be "wanted" by the time the handler looks.
		st.Wanted = tri(a.Thread.wantsPreemption())
	}
	if !a.StateKnown {
		return st
	}

	th := a.Thread
	st.UserGoroutine = tri(th.CurG == th.G)
	st.MPreemptible = d.mPreemptible(th)
	if a.RegsKnown && d.stackNeed != 0 {
		st.StackRoom = tri(a.SP >= th.StackLo && a.SP-th.StackLo >= d.stackNeed)
	}
	if th.SecretKnown {
		st.InSecret = tri(th.Secret > 0)
	}
	return st
}

// Runtime constants canPreemptM compares with (runtime/runtime2.go).
const (
	pRunning    = 1      // _Prunning
	gRunning    = 2      // _Grunning
	gSyscall    = 3      // _Gsyscall
	gScanStatus = 0x1000 // _Gscan
)

// mPreemptible is "mp.p != 0 && canPreemptM(mp)": No when a condition fails,
// Yes when all hold, Unset when the rest hold but the curg status a release
// reads is unknown.
func (d *Decoder) mPreemptible(th Thread) safepoint.Tri {
	if th.P == 0 || th.Locks != 0 || th.Mallocing != 0 || th.PreemptoffLen != 0 ||
		th.PStatus != pRunning {
		return safepoint.No
	}
	if !d.rules.CanPreemptMReadsCurG() {
		return safepoint.Yes
	}
	if th.CurG == 0 {
		return safepoint.No
	}
	if !th.CurGStatusKnown {
		return safepoint.Unset
	}
	return tri(th.CurGStatus&^gScanStatus != gSyscall)
}

// tri converts an observed condition.
func tri(b bool) safepoint.Tri {
	if b {
		return safepoint.Yes
	}
	return safepoint.No
}

// Decode looks the attempt's PC up and sets its reason.
//
// The reason is the decoder's whenever the runtime's decision agrees with it.
// The thread state the backend read (Attempt.Thread) is checked first, in the
// runtime's order, so a refusal by the state gets the state's reason even
// where a PC rule would refuse too. When the runtime refused a PC the code
// rules accept and the state that could explain it was not read, the reason
// is unknown, unless the backend saw which check refused; that is not a mismatch.
// A mismatch is an acceptance the PC rules forbid, a refusal of what they and the
// observed state allow, a resume PC other than the predicted one or than the one
// asyncPreempt returns to, or, where the backend saw the return isAsyncSafePoint
// left by, another check deciding than the one the decoder names.
func (d *Decoder) Decode(a Attempt) Record {
	r := Record{Attempt: a}
	st := d.state(a)

	if !a.RegsKnown {
		// Without the PC nothing can be decoded, and guessing "not Go code" from
		// a zero PC would be a plausible wrong answer.
		r.Reason = safepoint.Unknown
		r.DecodeErr = errNoRegisters
		return r
	}

	facts := safepoint.PC{PC: a.PC - d.bias}
	info, err := d.file.Lookup(a.PC - d.bias)
	switch {
	case err == nil:
		r.Info = info
		facts = safepoint.FromInfo(info)
	case !errors.Is(err, symtab.ErrNotFound):
		r.DecodeErr = err
	}
	r.Predicted = safepoint.Classify(d.rules, facts, st)
	r.Reason = r.Predicted.Reason

	predictedResume := r.Predicted.ResumePC
	if predictedResume != 0 {
		predictedResume += d.bias
	}
	switch {
	case r.DecodeErr != nil:
		r.Reason = safepoint.Unknown
	case a.Runtime == RuntimeAccepted && !r.Predicted.Accepted():
		r.Mismatch, r.Why = true, "runtime accepted, decoder refused ("+r.Predicted.Reason.String()+")"
	case a.Runtime == RuntimeAccepted && a.ResumePC != predictedResume:
		r.Mismatch, r.Why = true, "resume pc differs from the decoder's"

	case a.Runtime == RuntimeRefused && r.Predicted.Accepted():
		if r.Predicted.StateUnchecked {
			r.Reason = safepoint.Unknown // a thread-state rule this backend cannot see
		} else {
			r.Mismatch, r.Why = true, "runtime refused, decoder accepted"
		}
	}

	// Two observations of the runtime, which must agree whatever the decoder says.
	if !r.Mismatch && a.Runtime == RuntimeAccepted && a.Entry == EntrySeen &&
		a.EntryReturn != a.ResumePC {
		r.Mismatch = true
		r.Why = fmt.Sprintf("asyncPreempt returns to %#x, not to the resume pc", a.EntryReturn)
	}
	if !r.Mismatch && a.RuntimeReasonKnown && r.DecodeErr == nil {
		r.compareRuntimeReason()
	}
	return r
}

// compareRuntimeReason checks the decoder's reason against the check the runtime's return
// showed. Where the decoder could not tell, because a thread-state rule it did not see
// refused, the runtime's reason becomes the record's if it is such a rule.
func (r *Record) compareRuntimeReason() {
	switch {
	case r.Runtime != RuntimeUnknown && r.RuntimeReason.Accepted() != (r.Runtime == RuntimeAccepted):
		r.Mismatch = true
		r.Why = fmt.Sprintf("runtime %s, but returned as for %s", r.Runtime, r.RuntimeReason)
	case r.Reason == safepoint.Unknown && threadStateReason(r.RuntimeReason):
		r.Reason = r.RuntimeReason
	case !safepoint.SameCheck(r.Reason, r.RuntimeReason):
		r.Mismatch = true
		r.Why = fmt.Sprintf("runtime decided by its %s check, decoder says %s", r.RuntimeReason,
			r.Reason)
	}
}

// threadStateReason reports whether reason comes from a check of the thread's state, which
// isAsyncSafePoint makes before it looks at the PC.
func threadStateReason(reason safepoint.Reason) bool {
	switch reason {
	case safepoint.NotUserGoroutine, safepoint.MBusy, safepoint.StackSpace, safepoint.Secret:
		return true
	}
	return false
}
