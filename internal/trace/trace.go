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
}

// NewDecoder returns a decoder for a process whose executable is f, loaded
// bias bytes above its link-time addresses.
func NewDecoder(f *symtab.File, rules *safepoint.Rules, bias uint64) *Decoder {
	return &Decoder{file: f, rules: rules, bias: bias}
}

// Decode looks the attempt's PC up and sets its reason.
//
// The reason is the decoder's whenever the runtime's decision agrees with it.
// When the runtime refused a PC the code rules accept, a rule on the thread's
// state decided, which a backend that cannot read that state reports as
// unknown; that is not a mismatch. A mismatch is an acceptance the PC rules
// forbid, a refusal of what they and the observed state allow, or a resume
// PC other than the predicted one.
func (d *Decoder) Decode(a Attempt) Record {
	r := Record{Attempt: a}
	st := safepoint.State{}
	if a.Runtime == RuntimeNotWanted {
		st.Wanted = safepoint.No
	} else if a.Runtime != RuntimeUnknown {
		st.Wanted = safepoint.Yes
	}

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
	return r
}
