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
	return th
}

// monoClock turns bpf_ktime_get_ns readings (CLOCK_MONOTONIC) into wall-clock times.
type monoClock struct {
	// offset is the wall-clock time in ns when CLOCK_MONOTONIC read zero.
	offset int64
}

// newMonoClock samples both clocks once.
func newMonoClock() (monoClock, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return monoClock{}, fmt.Errorf("read CLOCK_MONOTONIC: %w", err)
	}
	return monoClock{offset: time.Now().UnixNano() - ts.Nano()}, nil
}

func (c monoClock) wall(mono uint64) time.Time {
	return time.Unix(0, c.offset+int64(mono))
}
