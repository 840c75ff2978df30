package safepoint

import "fmt"

// Reason says which rule decided a preemption attempt. Its String form is a
// stable identifier used in every output of the tool.
type Reason uint8

// The reasons, in the order the runtime checks them after the two accepting
// outcomes.
const (
	// Safe: accepted; the goroutine resumes at the interrupted PC.
	Safe Reason = iota
	// SafeRestart: accepted; resumes at the start of a restartable sequence
	// (UnsafePointRestart1/2) or at the function entry (RestartAtEntry).
	SafeRestart
	// NotWanted: the signal arrived but the goroutine no longer wanted to be
	// preempted (wantAsyncPreempt was false: already stopped, not running).
	NotWanted
	// NotUserGoroutine: the thread was on g0 or gsignal, or switching
	// (m.curg != gp).
	NotUserGoroutine
	// MBusy: the M had no P, held locks, was allocating, had preemptoff set,
	// its P was not running, or (Go 1.26+) its goroutine was in a syscall.
	MBusy
	// StackSpace: too little stack below SP for the injected asyncPreempt call.
	StackSpace
	// Secret: inside runtime/secret (GOEXPERIMENT=runtimesecret, Go 1.26+).
	Secret
	// NotGoCode: the PC is outside every Go function (C, cgo, vDSO).
	NotGoCode
	// UnsafePoint: the compiler marked the PC unsafe (nosplit function, write
	// barrier, atomic sequence, prologue).
	UnsafePoint
	// Assembly: an assembly function (no locals pointer map, or the ASM flag).
	Assembly
	// NoPointersStackmap: assembly declared NO_LOCAL_POINTERS.
	NoPointersStackmap
	// RuntimePackage: the innermost inlined function belongs to the runtime or
	// reflect (the per-release name prefixes).
	RuntimePackage
	// Unknown: nothing observed tells which rule decided.
	Unknown

	numReasons
)

var reasonIDs = [numReasons]string{
	Safe:               "safe",
	SafeRestart:        "safe-restart",
	NotWanted:          "not-wanted",
	NotUserGoroutine:   "not-user-goroutine",
	MBusy:              "m-busy",
	StackSpace:         "stack-space",
	Secret:             "secret",
	NotGoCode:          "not-go-code",
	UnsafePoint:        "unsafe-point",
	Assembly:           "assembly",
	NoPointersStackmap: "no-pointers-stackmap",
	RuntimePackage:     "runtime-package",
	Unknown:            "unknown",
}

// String returns the stable identifier, e.g. "unsafe-point".
func (r Reason) String() string {
	if r < numReasons {
		return reasonIDs[r]
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// MarshalText encodes the reason as its identifier.
func (r Reason) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText parses an identifier.
func (r *Reason) UnmarshalText(b []byte) error {
	v, err := ParseReason(string(b))
	*r = v
	return err
}

// ParseReason returns the reason with identifier id.
func ParseReason(id string) (Reason, error) {
	for r, s := range reasonIDs {
		if s == id {
			return Reason(r), nil
		}
	}
	return Unknown, fmt.Errorf("unknown reason %q", id)
}

// Reasons returns every reason in check order.
func Reasons() []Reason {
	rs := make([]Reason, numReasons)
	for i := range rs {
		rs[i] = Reason(i)
	}
	return rs
}

// Accepted reports whether the reason lets the goroutine be preempted.
func (r Reason) Accepted() bool { return r == Safe || r == SafeRestart }

// Describe returns one sentence a user can read.
func (r Reason) Describe() string {
	switch r {
	case Safe:
		return "async safe point: preempted at the interrupted PC"
	case SafeRestart:
		return "restartable sequence: preempted, resumes at the sequence start or entry"
	case NotWanted:
		return "the goroutine no longer wanted preemption when the signal arrived"
	case NotUserGoroutine:
		return "the thread was not running its user goroutine (g0, gsignal, or switching)"
	case MBusy:
		return "the M was busy: no P, locks held, mallocing, preemptoff, or in a syscall"
	case StackSpace:
		return "too little stack left for the injected asyncPreempt call"
	case Secret:
		return "inside runtime/secret, which forbids preemption"
	case NotGoCode:
		return "the PC is outside Go code (C, cgo, vDSO)"
	case UnsafePoint:
		return "the compiler marked this PC unsafe (nosplit, write barrier, atomic sequence, " +
			"prologue)"
	case Assembly:
		return "assembly function: the runtime cannot scan its frame"
	case NoPointersStackmap:
		return "assembly declared NO_LOCAL_POINTERS: still assembly to the runtime"
	case RuntimePackage:
		return "runtime or reflect code (innermost inlined function), never preempted"
	}
	return "no observation tells which rule decided"
}
