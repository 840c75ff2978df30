//go:build linux

package probe

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/preempttrace/preempttrace/internal/trace"
)

// verdicts maps the probes' verdicts to the backend-neutral ones.
var verdicts = map[Verdict]trace.RuntimeVerdict{
	VerdictUnknown:   trace.RuntimeUnknown,
	VerdictRefused:   trace.RuntimeRefused,
	VerdictAccepted:  trace.RuntimeAccepted,
	VerdictNotWanted: trace.RuntimeNotWanted,
}

// Attempt converts an event into the backend-neutral record that package trace decodes.
// Fields the event does not know stay unknown there too.
func (t *Tracer) Attempt(ev *Event) trace.Attempt {
	a := trace.Attempt{
		Time:    t.clock.wall(ev.TimeNs),
		PID:     int(ev.Pid),
		TID:     int(ev.Tid),
		Runtime: verdicts[ev.RuntimeVerdict()],
	}
	a.GoID, a.GoIDKnown = ev.GoroutineID()
	if ev.Has(EventRegs) {
		a.PC, a.SP, a.FP, a.RegsKnown = ev.Pc, ev.Sp, ev.Fp, true
	}
	if a.Runtime == trace.RuntimeAccepted {
		a.ResumePC = ev.ResumePc
		switch {
		case ev.Has(EventEntered):
			a.Entry, a.EntryReturn = trace.EntrySeen, ev.EnteredRet
		case ev.Has(EventEntryMissed):
			a.Entry = trace.EntryMissed
		}
	}
	if fromRuntime, ok := ev.FromRuntime(); ok {
		a.Origin = trace.OriginOutside
		if fromRuntime {
			a.Origin = trace.OriginRuntime
		}
	}
	if ev.Has(EventState) {
		a.Thread, a.StateKnown = thread(ev), true
	}
	if site, ok := t.ReturnOf(ev); ok {
		a.RuntimeReason, a.RuntimeReasonKnown = site.Reason, true

		// The runtime did ask isAsyncSafePoint: a request reported as not wanted lost its
		// verdict (a failed slot lookup at the verdict probe), and its verdict is unknown.
		if a.Runtime == trace.RuntimeNotWanted {
			a.Runtime = trace.RuntimeUnknown
		}
	}
	return a
}

// thread returns the thread state of an event with EventState.
func thread(ev *Event) trace.Thread {
	th := trace.Thread{
		G: ev.Gp, M: ev.M, CurG: ev.Curg, StackLo: ev.StackLo,
		Locks: ev.Locks, Mallocing: ev.Mallocing, PreemptoffLen: ev.PreemptoffLen,
		P: ev.Pp, PStatus: ev.PpStatus,
	}
	if ev.Has(EventCurgStatus) {
		th.CurGStatus, th.CurGStatusKnown = ev.CurgStatus, true
	}
	if ev.Has(EventSecret) {
		th.Secret, th.SecretKnown = ev.Secret, true
	}
	return th
}

// monoClock turns bpf_ktime_get_ns readings (CLOCK_MONOTONIC) into times.
//
// Each time is a reading of time.Now taken once, plus the monotonic time elapsed since: it
// keeps Go's monotonic clock reading, which on Linux is CLOCK_MONOTONIC too, so comparing it
// with times taken by time.Now (as the ptrace backend stamps its records) is exact, even
// while the wall clock is being slewed. Measured here: the wall clock ran 5 ms a second
// ahead of CLOCK_MONOTONIC while the VM corrected its time.
type monoClock struct {
	base     time.Time
	baseMono int64 // CLOCK_MONOTONIC at base, in ns
}

// newMonoClock samples both clocks once.
func newMonoClock() (monoClock, error) {
	var ts unix.Timespec
	base := time.Now()
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return monoClock{}, fmt.Errorf("read CLOCK_MONOTONIC: %w", err)
	}
	return monoClock{base: base, baseMono: ts.Nano()}, nil
}

func (c monoClock) wall(mono uint64) time.Time {
	return c.base.Add(time.Duration(int64(mono) - c.baseMono))
}
