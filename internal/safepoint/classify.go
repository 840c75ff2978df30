package safepoint

import (
	"strings"

	"github.com/preempttrace/preempttrace/internal/symtab"
)

// PC is what the binary says about an interrupted PC: the inputs of the
// PC-only checks of isAsyncSafePoint.
type PC struct {
	PC uint64

	// InGoCode: findfunc(pc) is valid. When false the other fields are unused.
	InGoCode bool
	Entry    uint64

	// UnsafePoint is PCDATA 0 at PC (-1 without a table) and UnsafePointStart
	// the first PC of its run.
	UnsafePoint      int32
	UnsafePointStart uint64

	LocalsMap symtab.LocalsMap
	Asm       bool // FuncFlagAsm

	// Innermost is the innermost inlined function name at PC.
	Innermost string
}

// FromInfo gathers the PC facts from a decoded PC.
func FromInfo(info *symtab.PCInfo) PC {
	return PC{
		PC:               info.PC,
		InGoCode:         true,
		Entry:            info.Func.Entry,
		UnsafePoint:      info.UnsafePoint,
		UnsafePointStart: info.UnsafePointStart,
		LocalsMap:        info.LocalsMap,
		Asm:              info.Func.Flag&symtab.FuncFlagAsm != 0,
		Innermost:        info.Frames[0].Func,
	}
}

// Tri is an observation that may be missing.
type Tri int8

// The values of Tri; the zero value is Unset.
const (
	Unset Tri = iota
	No
	Yes
)

// State is the interrupted thread's runtime state, as far as a caller observed
// it. Fields left Unset are not checked, and the verdict says so.
type State struct {
	// Wanted: wantAsyncPreempt(gp) held, so doSigPreempt asked
	// isAsyncSafePoint at all.
	Wanted Tri
	// UserGoroutine: gp.m.curg == gp.
	UserGoroutine Tri
	// MPreemptible: gp.m.p != 0 and canPreemptM(gp.m).
	MPreemptible Tri
	// StackRoom: sp - gp.stack.lo >= asyncPreemptStack.
	StackRoom Tri
	// InSecret: gp.secret > 0 (only consulted where the check is compiled in).
	InSecret Tri
}

// Verdict is the outcome of one preemption attempt.
type Verdict struct {
	Reason Reason

	// ResumePC is where an accepted goroutine resumes (isAsyncSafePoint's
	// second result); 0 when refused.
	ResumePC uint64

	// StateUnchecked: a state check that precedes the deciding rule was
	// Unset, so the verdict holds only if the state allowed preemption.
	StateUnchecked bool

	// BadRestart: a restart run starts implausibly far back; the runtime
	// throws "bad restart PC" here rather than resuming.
	BadRestart bool
}

// Accepted reports whether the goroutine is preempted.
func (v Verdict) Accepted() bool { return v.Reason.Accepted() }

// Classify applies the release's rules to one attempt, in the runtime's order.
// The first refusing check is the reason. It stays one flat list of guards,
// like isAsyncSafePoint itself, so that the two can be read side by side.
func Classify(r *Rules, pc PC, st State) Verdict {
	var v Verdict
	decide := func(reason Reason) Verdict {
		v.Reason = reason
		return v
	}

	// doSigPreempt consults isAsyncSafePoint only for a goroutine that still
	// wants preemption (it may have stopped by itself since the request).
	if st.Wanted == No {
		return decide(NotWanted)
	}

	// Only user goroutines have safe points; the signal often lands while the
	// M runs the scheduler on g0 or the handler on gsignal.
	if st.UserGoroutine == No {
		return decide(NotUserGoroutine)
	}

	// An M holding locks, allocating, with preemptoff set or without a running
	// P must not be switched away from: its invariants would break.
	if st.MPreemptible == No {
		return decide(MBusy)
	}

	// asyncPreempt spills every register onto the goroutine stack; without
	// room the injected call would overflow it.
	if st.StackRoom == No {
		return decide(StackSpace)
	}

	// Secret computations must not have their registers spilled or their
	// stack scanned conservatively.
	if r.secret && st.InSecret == Yes {
		return decide(Secret)
	}
	v.StateUnchecked = st.Wanted == Unset || st.UserGoroutine == Unset || st.MPreemptible == Unset ||
		st.StackRoom == Unset || (r.secret && st.InSecret == Unset)

	// Without a function the runtime cannot know the frame layout.
	if !pc.InGoCode {
		return decide(NotGoCode)
	}

	// The compiler marks PCs where a stop would break an invariant: nosplit
	// code, write-barrier and atomic sequences, the prologue.
	switch r.unsafePoint {
	case unsafeRegMap, unsafeOnlyUnsafe:
		if pc.UnsafePoint == unsafePointUnsafe {
			return decide(UnsafePoint)
		}
	case unsafeUnlessSafe:
		if pc.UnsafePoint != unsafePointSafe {
			return decide(UnsafePoint)
		}
	}

	// Assembly frames carry no pointer maps the runtime trusts, so it will not
	// scan them: NO_LOCAL_POINTERS does not change that.
	switch {
	case pc.LocalsMap == symtab.LocalsNil:
		return decide(Assembly)
	case pc.LocalsMap == symtab.LocalsNoPointersStackmap:
		return decide(NoPointersStackmap)
	case r.asmFlag && pc.Asm:
		return decide(Assembly)
	}

	// Runtime code inlined into user functions is marked by the outer
	// function's rules only, so the runtime also tests the innermost name.
	for _, prefix := range r.runtimePrefixes {
		if strings.HasPrefix(pc.Innermost, prefix) {
			return decide(RuntimePackage)
		}
	}

	// Restartable sequences resume at their start; only reachable where the
	// unsafe-point rule let them through (1.18+).
	if r.unsafePoint == unsafeOnlyUnsafe {
		switch pc.UnsafePoint {
		case unsafePointRestart1, unsafePointRestart2:
			start := pc.UnsafePointStart
			v.BadRestart = start == 0 || start > pc.PC || pc.PC-start > maxRestartSpan
			v.ResumePC = start
			return decide(SafeRestart)
		case unsafePointRestartAtEntry:
			v.ResumePC = pc.Entry
			return decide(SafeRestart)
		}
	}

	v.ResumePC = pc.PC
	return decide(Safe)
}
