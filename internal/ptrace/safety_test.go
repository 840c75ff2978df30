//go:build linux

package ptrace_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/preempttrace/preempttrace/internal/ptrace"
	"github.com/preempttrace/preempttrace/internal/target"
	"github.com/preempttrace/preempttrace/internal/trace"
)

// The safety tests attach to real processes and check that tracing changes nothing the
// target can observe: every signal arrives exactly once, kill -STOP and kill -CONT work
// as untraced, and the target runs on, untraced, however the tracer ends.
//
// The target is testdata/sigcount, a child of the test process, traced from the test
// process or from a tracer process (TestSafetyTracerHelper). Its exit is collected with
// exec.Cmd.Wait only once no tracer of the test process is attached to it: the kernel
// reports a tracee's ptrace-stops to every wait of the tracer's thread group, so a Wait
// while attached could take a stop meant for the tracer.

// Durations and sizes of the tests.
const (
	// signalsEach is how many SIGUSR1 and how many SIGURG TestSafetySignalsPassThrough
	// sends, one at a time.
	signalsEach = 200

	// lineTimeout bounds the wait for one line of the target; a loaded machine can
	// delay a line by a few of the runtime's 10ms time slices, never by seconds.
	lineTimeout = 10 * time.Second

	// exitTimeout bounds the wait for the target, or the tracer, to finish.
	exitTimeout = 20 * time.Second

	// stillWindow is how long a stopped target must show no progress at all.
	stillWindow = 300 * time.Millisecond

	// soakEnv overrides soakDefault, as a Go duration such as "10s".
	soakEnv     = "PREEMPTTRACE_SOAK"
	soakDefault = 60 * time.Second

	// soakFloor is the fewest attempts a soak must see: the runtime preempts the busy
	// goroutines about every 10ms, so a healthy tracer sees thousands.
	soakFloor = 100

	// helperEnv, set to a PID, makes TestSafetyTracerHelper a tracer of that process.
	helperEnv = "PREEMPTTRACE_PTRACE_HELPER_PID"
)

// TestSafetyTracerHelper is not a test: run with helperEnv set, it is the tracer process
// of TestSafetyTracerKilled and TestSafetyEndWhileTraced.
func TestSafetyTracerHelper(t *testing.T) {
	pid := os.Getenv(helperEnv)
	if pid == "" {
		t.Skip("a tracer process that other tests start")
	}
	os.Exit(runTracerChild(pid))
}

// TestSafetySignalsPassThrough sends signals to traced targets one at a time and checks
// that each reached the program's signal.Notify channel exactly once, and that the tracer
// reported every outside SIGURG as such and the runtime's own as the runtime's.
//
// The runtime's handler passes every SIGURG it receives on to signal.Notify, its own
// preemption requests included: in sighandler (runtime/signal_unix.go) a signal from
// tgkill counts as sigFromUser, and SIGURG is _SigNotify in the signal table. So a busy
// target receives SIGURGs from the runtime and the test alike, and the count of neither
// could be exact. The SIGUSR1s, which the runtime never sends, are counted in a busy
// target; the outside SIGURGs in one started with GODEBUG=asyncpreemptoff=1, whose
// runtime sends none.
func TestSafetySignalsPassThrough(t *testing.T) {
	requirePtrace(t)
	bin := buildSigcount(t)

	t.Run("usr1-while-busy", func(t *testing.T) {
		p := startSigcount(t, bin)
		tt := traceTarget(t, p.pid)
		p.send(t, "busy")
		p.expect(t, "busy")
		pollUntil(t, lineTimeout, "the tracer saw 5 of the runtime's SIGURGs", func() bool {
			return tt.col.count(trace.OriginRuntime) >= 5
		})

		for i := int64(1); i <= signalsEach; i++ {
			if got := p.roundTrip(t, syscall.SIGUSR1, "usr1", i); got != i {
				t.Fatalf("SIGUSR1 number %d made the target count %d", i, got)
			}
		}
		attempts := stopAndCheck(t, tt, p.pid)
		fin := p.finish(t)

		if fin.usr1 != signalsEach {
			t.Errorf("target received %d SIGUSR1, %d were sent", fin.usr1, signalsEach)
		}
		if fin.urg == 0 {
			t.Errorf("the tracer saw the runtime's SIGURGs, signal.Notify received none")
		}
		if n := countOrigin(attempts, trace.OriginOutside, time.Time{}); n != 0 {
			t.Errorf("tracer reported %d outside SIGURGs, none were sent", n)
		}
		t.Logf("runtime SIGURGs: %d seen by the tracer, %d received by signal.Notify",
			len(attempts), fin.urg)
	})
	t.Run("urg-from-outside", func(t *testing.T) {
		p := startSigcount(t, bin, "GODEBUG=asyncpreemptoff=1")
		tt := traceTarget(t, p.pid)

		for i := int64(1); i <= signalsEach; i++ {
			if got := p.roundTrip(t, syscall.SIGURG, "urg", i); got != i {
				t.Fatalf("SIGURG number %d made the target count %d", i, got)
			}
		}
		attempts := stopAndCheck(t, tt, p.pid)
		fin := p.finish(t)

		if fin.urg != signalsEach {
			t.Errorf("target received %d SIGURG, %d were sent", fin.urg, signalsEach)
		}
		outside := countOrigin(attempts, trace.OriginOutside, time.Time{})
		if outside != signalsEach || len(attempts) != signalsEach {
			t.Errorf("tracer reported %d attempts, %d from outside; %d SIGURGs were sent",
				len(attempts), outside, signalsEach)
		}
	})
}

// TestSafetyEndWhileTraced bounds: a case starts targets until endParentTries were
// traced by their parent thread, or endTries in all.
const (
	endParentTries = 12
	endTries       = 100
)

// TestSafetyEndWhileTraced lets traced targets end, by exiting or by SIGKILL. The tracer
// must end by itself, with ErrStopped, and the target's parent must collect the same exit
// status as untraced.
//
// That includes the case where the tracer's thread is the target's parent, the thread that
// started it, as in "preempttrace demo", where a wait of that thread for any child could
// take the status. The Go scheduler picks the tracer's thread, so targets are started until
// that case was met endParentTries times, each arranged to lose the race it depends on
// (see yieldTo). The case of a tracer in another process, as when tracing any PID, needs
// one target.
func TestSafetyEndWhileTraced(t *testing.T) {
	requirePtrace(t)
	bin := buildSigcount(t)

	for _, kill := range []bool{false, true} {
		t.Run(endingName(kill), func(t *testing.T) {
			seen := map[bool]int{}
			for try := 0; try < endTries && seen[true] < endParentTries; try++ {
				seen[endWhileTraced(t, bin, kill)]++
			}
			t.Logf("targets traced by their parent thread: %d, by another: %d", seen[true],
				seen[false])
		})
		t.Run(endingName(kill)+"-tracer-in-other-process", func(t *testing.T) {
			p := startSigcount(t, bin)
			p.send(t, "busy")
			p.expect(t, "busy")
			h := startTracerChild(t, p.pid)

			p.end(t, kill)
			if _, err := p.ended(t, kill); err != nil {
				t.Errorf("sigcount (pid %d): %v", p.pid, err)
			}
			h.wait(t)
		})
	}
}

// endingName names how a target ends.
func endingName(kill bool) string {
	if kill {
		return "sigkill"
	}
	return "exit"
}

// endWhileTraced starts and traces a target, ends it, and reports whether the tracing
// thread was its parent thread.
func endWhileTraced(t *testing.T, bin string, kill bool) (parent bool) {
	t.Helper()

	p := startSigcount(t, bin)
	tt := traceTarget(t, p.pid)
	tracer := statusNumber(t, fmt.Sprintf("/proc/%d/status", p.pid), "TracerPid")
	parent = isChildOf(t, p.pid, tracer)
	if parent {
		yieldTo(t, tracer, p.pid)
	}

	p.end(t, kill)
	awaitClosed(t, tt.tr.Done(), "the tracer ends after the target did")
	tt.col.finish(t)
	if _, err := p.ended(t, kill); err != nil {
		t.Fatalf("sigcount (pid %d), child of the tracing thread: %v: %v", p.pid, parent, err)
	}
	return parent
}

// yieldTo makes thread tid of this process, a tracer, give way to every thread of pid, its
// target: all go to one CPU, where tid runs only while no thread of pid can. A thread the
// tracer detaches as it exits then tends to run to its end before the tracer's next wait,
// and the last one to end makes the target's exit status ready for that wait. A tracer
// that waited for any child took the status of one such target in two this way, against
// a few in a hundred without. The tracer's locked thread exits with the tracer, so no
// other code of this process runs with these settings.
func yieldTo(t *testing.T, tid, pid int) {
	t.Helper()

	var cpus, one unix.CPUSet
	if err := unix.SchedGetaffinity(tid, &cpus); err != nil {
		t.Fatalf("CPUs of thread %d: %v", tid, err)
	}
	for cpu := 0; one.Count() == 0; cpu++ {
		if cpus.IsSet(cpu) {
			one.Set(cpu)
		}
	}

	tids := []int{tid}
	for _, tk := range threadsOf(t, pid) {
		tids = append(tids, tk.tid)
	}
	for _, id := range tids {
		if err := unix.SchedSetaffinity(id, &one); err != nil {
			t.Fatalf("move thread %d: %v", id, err)
		}
	}
	idle := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_IDLE}
	if err := unix.SchedSetAttr(tid, &idle, 0); err != nil {
		t.Fatalf("make thread %d yield: %v", tid, err)
	}
}

// isChildOf reports whether pid was started by thread tid of this process.
func isChildOf(t *testing.T, pid, tid int) bool {
	t.Helper()

	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", os.Getpid(), tid))
	if err != nil {
		t.Fatalf("children of thread %d: %v", tid, err)
	}
	return slices.Contains(strings.Fields(string(b)), strconv.Itoa(pid))
}

// TestSafetyGroupStopWhileTraced checks that kill -STOP stops every thread of a traced
// target, which then makes no progress, that kill -CONT resumes it, and that it still
// runs and is traced as before.
func TestSafetyGroupStopWhileTraced(t *testing.T) {
	requirePtrace(t)
	p := startSigcount(t, buildSigcount(t))
	tt := traceTarget(t, p.pid)
	p.send(t, "busy")
	p.expect(t, "busy")

	// A traced thread in group-stop shows as 't' (tracing stop), an untraced one as 'T'.
	sendSignal(t, p.pid, syscall.SIGSTOP)
	waitStates(t, p.pid, "Tt")
	p.assertStill(t, "Tt")

	resumed := time.Now()
	sendSignal(t, p.pid, syscall.SIGCONT)
	p.waitProgress(t)
	if got := p.roundTrip(t, syscall.SIGUSR1, "usr1", 1); got != 1 {
		t.Fatalf("after SIGCONT, one SIGUSR1 made the target count %d", got)
	}
	pollUntil(t, lineTimeout, "the tracer sees a SIGURG after SIGCONT", func() bool {
		return countOrigin(tt.col.snapshot(), trace.OriginRuntime, resumed) > 0
	})

	stopAndCheck(t, tt, p.pid)
	if fin := p.finish(t); fin.usr1 != 1 {
		t.Errorf("target received %d SIGUSR1, 1 was sent", fin.usr1)
	}
}

// TestSafetyDetachDuringGroupStop stops the tracer while the target is stopped by
// kill -STOP: the target must stay stopped, untraced, until kill -CONT, as if it had
// never been traced, and then run to a normal exit.
func TestSafetyDetachDuringGroupStop(t *testing.T) {
	requirePtrace(t)
	p := startSigcount(t, buildSigcount(t))
	tt := traceTarget(t, p.pid)
	p.send(t, "busy")
	p.expect(t, "busy")

	sendSignal(t, p.pid, syscall.SIGSTOP)
	waitStates(t, p.pid, "Tt")
	stopAndCheck(t, tt, p.pid)

	// Detached, every thread must go back to an ordinary group-stop. The kernel wakes a
	// thread it detaches so that it stops again by itself, which takes a moment.
	waitStates(t, p.pid, "T")
	p.assertStill(t, "T")

	sendSignal(t, p.pid, syscall.SIGCONT)
	p.waitProgress(t)
	if got := p.roundTrip(t, syscall.SIGUSR1, "usr1", 1); got != 1 {
		t.Fatalf("after SIGCONT, one SIGUSR1 made the target count %d", got)
	}
	if fin := p.finish(t); fin.usr1 != 1 {
		t.Errorf("target received %d SIGUSR1, 1 was sent", fin.usr1)
	}
}

// TestSafetyTracerKilled kills a tracer process with SIGKILL while it traces a busy
// target. The kernel must detach every thread, and the target must run on, untraced,
// receive its signals and exit normally: the backend leaves out PTRACE_O_EXITKILL.
func TestSafetyTracerKilled(t *testing.T) {
	requirePtrace(t)
	p := startSigcount(t, buildSigcount(t))
	p.send(t, "busy")
	p.expect(t, "busy")
	h := startTracerChild(t, p.pid)

	pollUntil(t, lineTimeout, "the tracer process traces every thread", func() bool {
		return allTracedBy(t, p.pid, h.cmd.Process.Pid)
	})
	pollUntil(t, lineTimeout, "the tracer process reports 20 attempts", func() bool {
		return h.attempts.Load() >= 20
	})
	for i := int64(1); i <= 3; i++ {
		if got := p.roundTrip(t, syscall.SIGUSR1, "usr1", i); got != i {
			t.Fatalf("SIGUSR1 number %d made the target count %d", i, got)
		}
	}

	h.kill(t)
	pollUntil(t, lineTimeout, "no thread is traced", func() bool {
		return allTracedBy(t, p.pid, 0)
	})
	p.waitProgress(t)
	for i := int64(4); i <= 6; i++ {
		if got := p.roundTrip(t, syscall.SIGUSR1, "usr1", i); got != i {
			t.Fatalf("SIGUSR1 number %d made the target count %d", i, got)
		}
	}
	if fin := p.finish(t); fin.usr1 != 6 {
		t.Errorf("target received %d SIGUSR1, 6 were sent", fin.usr1)
	}
}

// TestSafetyNewThreads checks that threads the target starts after the attach are traced
// (PTRACE_O_TRACECLONE) and that their attempts are complete: the registers decode to the
// function the thread runs, and the goroutine read through the new thread's own thread
// pointer is the one the target says runs there.
func TestSafetyNewThreads(t *testing.T) {
	requirePtrace(t)
	p := startSigcount(t, buildSigcount(t))
	tt := traceTarget(t, p.pid)

	// Each locked goroutine holds a thread of its own, and sysmon's thread runs no
	// goroutine, so one more of them than the process has threads needs new threads.
	before := map[int]bool{}
	for _, tk := range threadsOf(t, p.pid) {
		before[tk.tid] = true
	}
	n := len(before) + 1
	p.send(t, fmt.Sprintf("threads %d", n))
	fresh := freshSpinners(t, p, n, before)

	self := os.Getpid()
	for tid := range fresh {
		if tr := tracerProcess(t, p.pid, tid); tr != self {
			t.Errorf("new thread %d is traced by %d, want %d", tid, tr, self)
		}
	}
	pollUntil(t, lineTimeout, "every new thread's attempts decode to main.spin", func() bool {
		return len(spinningIn(tt, fresh)) == len(fresh)
	})

	checkFreshAttempts(t, tt, fresh)
	stopAndCheck(t, tt, p.pid)
	p.finish(t)
}

// freshSpinners reads the n lines of the locked threads and returns the goroutine id of
// each thread not in before; at least one must be.
func freshSpinners(t *testing.T, p *sigcountProc, n int, before map[int]bool) map[int]uint64 {
	t.Helper()

	fresh := map[int]uint64{}
	for range n {
		line := p.expect(t, "thread ")
		tid, goid := lineField(t, line, "tid"), lineField(t, line, "goid")
		if !before[int(tid)] {
			fresh[int(tid)] = uint64(goid)
		}
	}
	if len(fresh) == 0 {
		t.Fatalf("%d locked goroutines ran on the %d threads of the attach", n, len(before))
	}
	t.Logf("threads at attach: %d; started later: %d", len(before), len(fresh))
	return fresh
}

// spinningIn returns the threads of fresh that have an attempt decoded to main.spin.
func spinningIn(tt *tracedTarget, fresh map[int]uint64) map[int]trace.Record {
	found := map[int]trace.Record{}
	for _, a := range tt.col.snapshot() {
		if _, ok := fresh[a.TID]; !ok {
			continue
		}
		r := tt.dec.Decode(a)
		if r.Info != nil && r.Info.Func.Name == "main.spin" {
			found[a.TID] = r
		}
	}
	return found
}

// checkFreshAttempts checks every attempt of the new threads: its registers were read
// and decode, and where it interrupted main.spin, the goroutine and thread state read
// from the thread are those of the spinning goroutine.
func checkFreshAttempts(t *testing.T, tt *tracedTarget, fresh map[int]uint64) {
	t.Helper()

	inSpin := 0
	for _, a := range tt.col.snapshot() {
		goid, ok := fresh[a.TID]
		if !ok {
			continue
		}
		r := tt.dec.Decode(a)
		if !a.RegsKnown || r.DecodeErr != nil {
			t.Errorf("thread %d: registers known %v, decode error %v", a.TID, a.RegsKnown,
				r.DecodeErr)
			continue
		}
		if r.Info == nil || r.Info.Func.Name != "main.spin" {
			continue
		}

		inSpin++
		if !a.GoIDKnown || a.GoID != goid {
			t.Errorf("thread %d at %#x: goroutine %d (known %v), want %d", a.TID, a.PC,
				a.GoID, a.GoIDKnown, goid)
		}
		if !a.StateKnown || a.Thread.G != a.Thread.CurG || a.Thread.P == 0 {
			t.Errorf("thread %d at %#x: state known %v, g %#x, m.curg %#x, p %#x", a.TID,
				a.PC, a.StateKnown, a.Thread.G, a.Thread.CurG, a.Thread.P)
		}
	}
	t.Logf("attempts in main.spin on the new threads: %d", inSpin)
}

// TestSafetySoak traces a target under heavy garbage collection for soakDefault (or
// $PREEMPTTRACE_SOAK), checking all along that signals pass, then that the trace ends
// cleanly: the tracer saw many attempts, all from the runtime, the target is untraced
// and exits normally.
func TestSafetySoak(t *testing.T) {
	requirePtrace(t)
	d := soakDuration(t)
	p := startSigcount(t, buildSigcount(t))
	p.send(t, "busy")
	p.expect(t, "busy")
	p.send(t, "churn 16")
	p.expect(t, "churn 16")
	tt := traceTarget(t, p.pid)

	// A SIGUSR1 every quarter second shows the target alive and its signals exact
	// through the whole soak.
	sent := int64(0)
	pace := time.NewTicker(250 * time.Millisecond)
	defer pace.Stop()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		sent++
		if got := p.roundTrip(t, syscall.SIGUSR1, "usr1", sent); got != sent {
			t.Fatalf("SIGUSR1 number %d made the target count %d", sent, got)
		}
		<-pace.C
	}

	attempts := stopAndCheck(t, tt, p.pid)
	checkSoakAttempts(t, tt, attempts, d)
	if fin := p.finish(t); fin.usr1 != sent {
		t.Errorf("target received %d SIGUSR1, %d were sent", fin.usr1, sent)
	}
}

// checkSoakAttempts checks what a soak reported: enough attempts, each with registers,
// each from the runtime, since the test sent no SIGURG.
func checkSoakAttempts(t *testing.T, tt *tracedTarget, attempts []trace.Attempt, d time.Duration) {
	t.Helper()

	if len(attempts) <= soakFloor {
		t.Errorf("the tracer saw %d attempts in %v, want more than %d", len(attempts), d,
			soakFloor)
	}
	for _, a := range attempts {
		if !a.RegsKnown || a.Origin != trace.OriginRuntime {
			t.Errorf("attempt on thread %d: registers known %v, origin %v, want the runtime's",
				a.TID, a.RegsKnown, a.Origin)
			break
		}
	}
	c := tt.tr.Counters()
	t.Logf("soak of %v: %d attempts (%.0f/s), dropped %d, state unread %d", d,
		len(attempts), float64(len(attempts))/d.Seconds(), c.Dropped, c.StateUnread)
}

// soakDuration returns how long TestSafetySoak traces.
func soakDuration(t *testing.T) time.Duration {
	t.Helper()

	v := os.Getenv(soakEnv)
	if v == "" {
		return soakDefault
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("%s=%q: want a positive duration such as 10s", soakEnv, v)
	}
	return d
}

// TestSafetyAlreadyTraced attaches a second tracer to a traced target: Attach must fail
// with an AlreadyTracedError that names the first tracer, which keeps every thread and
// goes on passing signals.
func TestSafetyAlreadyTraced(t *testing.T) {
	requirePtrace(t)
	p := startSigcount(t, buildSigcount(t))
	p.send(t, "busy")
	p.expect(t, "busy")
	tt := traceTarget(t, p.pid)

	second, err := ptrace.Attach(ptrace.Options{PID: p.pid})
	if err == nil {
		second.Stop()
		t.Fatalf("second Attach to pid %d succeeded", p.pid)
	}
	var already *ptrace.AlreadyTracedError
	if !errors.As(err, &already) {
		t.Fatalf("second Attach: %v (%T), want an AlreadyTracedError", err, err)
	}
	if already.PID != p.pid || already.TracerPID != os.Getpid() {
		t.Errorf("AlreadyTracedError names pid %d traced by %d, want %d traced by %d",
			already.PID, already.TracerPID, p.pid, os.Getpid())
	}

	if !allTracedBy(t, p.pid, os.Getpid()) {
		t.Errorf("after the failed Attach, not every thread is traced by the first tracer")
	}
	if got := p.roundTrip(t, syscall.SIGUSR1, "usr1", 1); got != 1 {
		t.Fatalf("one SIGUSR1 made the target count %d", got)
	}
	stopAndCheck(t, tt, p.pid)
	if fin := p.finish(t); fin.usr1 != 1 {
		t.Errorf("target received %d SIGUSR1, 1 was sent", fin.usr1)
	}
}

// TestSafetyMissingPID attaches to PIDs with no process: one whose process exited and
// was reaped, and one above the kernel's largest PID.
func TestSafetyMissingPID(t *testing.T) {
	requirePtrace(t)

	t.Run("exited", func(t *testing.T) {
		p := startSigcount(t, buildSigcount(t))
		p.finish(t)
		checkNoProcess(t, p.pid)
	})
	t.Run("above-pid_max", func(t *testing.T) {
		b, err := os.ReadFile("/proc/sys/kernel/pid_max")
		if err != nil {
			t.Fatalf("read pid_max: %v", err)
		}
		pidMax, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatalf("parse pid_max %q: %v", b, err)
		}
		// PIDs are below pid_max.
		checkNoProcess(t, pidMax)
	})
}

// checkNoProcess checks that attaching to pid fails with target.ErrNoProcess.
func checkNoProcess(t *testing.T, pid int) {
	t.Helper()

	tr, err := ptrace.Attach(ptrace.Options{PID: pid})
	if err == nil {
		tr.Stop()
		t.Fatalf("Attach to pid %d succeeded", pid)
	}
	if !errors.Is(err, target.ErrNoProcess) {
		t.Errorf("Attach to pid %d: %v, want an error wrapping %v", pid, err,
			target.ErrNoProcess)
	}
}

// traceBusySigcount starts sigcount with busy goroutines, traces it, and returns once the
// runtime's preemption signals are seen.
func traceBusySigcount(t *testing.T) (*sigcountProc, *tracedTarget) {
	t.Helper()
	p := startSigcount(t, buildSigcount(t))
	p.send(t, "busy")
	p.expect(t, "busy")
	tt := traceTarget(t, p.pid)
	pollUntil(t, lineTimeout, "a runtime SIGURG is traced", func() bool {
		return tt.col.count(trace.OriginRuntime) > 0
	})
	return p, tt
}

// TestSafetyExec lets a traced, busy target replace itself with execve of another file: the
// tracer must notice, detach from the new program, whose code the decoder does not describe,
// and end with an ExecError; the new program runs untraced, gets its signals and exits 0.
func TestSafetyExec(t *testing.T) {
	requirePtrace(t)
	p, tt := traceBusySigcount(t)

	p.send(t, "exec")
	p.expect(t, "ready ")
	awaitClosed(t, tt.col.done, "the tracer ends after the exec")
	var execErr *ptrace.ExecError
	if !errors.As(tt.col.err, &execErr) || execErr.PID != p.pid {
		t.Fatalf("Read ended with %v, want an ExecError for pid %d", tt.col.err, p.pid)
	}
	awaitClosed(t, tt.tr.Done(), "the tracer detaches")
	pollUntil(t, lineTimeout, "no thread is traced", func() bool {
		return allTracedBy(t, p.pid, 0)
	})

	p.roundTrip(t, syscall.SIGUSR1, "usr1", 1)
	if fin := p.finish(t); fin.usr1 != 1 {
		t.Errorf("the new program counted %d SIGUSR1, want 1", fin.usr1)
	}
}

// TestSafetyReexecSameFile lets a traced, busy target run its own executable file again: the
// same file at the same address (sigcount is not a PIE) is the code the decoder describes,
// so the trace goes on, as it does for the exec a target just started reports when it is
// seized before its execve returned. The new run's preemption signals are traced and its
// own signals still arrive.
func TestSafetyReexecSameFile(t *testing.T) {
	requirePtrace(t)
	p, tt := traceBusySigcount(t)

	p.send(t, "reexec")
	p.expect(t, "ready ")
	before := tt.col.count(trace.OriginRuntime)
	p.send(t, "busy")
	p.expect(t, "busy")
	pollUntil(t, lineTimeout, "a runtime SIGURG of the new run is traced", func() bool {
		return tt.col.count(trace.OriginRuntime) > before
	})
	select {
	case <-tt.col.done:
		t.Fatalf("the trace ended at the exec: %v", tt.col.err)
	default:
	}
	if !allTracedBy(t, p.pid, os.Getpid()) {
		t.Error("not every thread of the new run is traced")
	}

	p.roundTrip(t, syscall.SIGUSR1, "usr1", 1)
	tt.tr.Stop()
	awaitClosed(t, tt.tr.Done(), "the tracer detaches")
	if fin := p.finish(t); fin.usr1 != 1 {
		t.Errorf("the new run counted %d SIGUSR1, want 1", fin.usr1)
	}
}

// TestAttachOtherProgram: a caller whose decoder describes another program than the one
// the target runs once seized, as when the target finished an exec while the caller read
// its executable, gets an ExecError, and the target is left untraced and running.
func TestAttachOtherProgram(t *testing.T) {
	requirePtrace(t)
	other := exec.Command("sleep", "30")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { other.Process.Kill(); other.Wait() }()
	proc, err := target.Find(other.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	otherImage, err := proc.Image()
	if err != nil {
		t.Fatal(err)
	}

	p := startSigcount(t, buildSigcount(t))
	tr, err := ptrace.Attach(ptrace.Options{PID: p.pid, Image: otherImage})
	var execErr *ptrace.ExecError
	if !errors.As(err, &execErr) {
		if err == nil {
			tr.Stop()
		}
		t.Fatalf("Attach with another program's image: %v, want an ExecError", err)
	}
	if !allTracedBy(t, p.pid, 0) {
		t.Error("a thread is still traced after the failed attach")
	}
	p.roundTrip(t, syscall.SIGUSR1, "usr1", 1)
	if fin := p.finish(t); fin.usr1 != 1 {
		t.Errorf("the target counted %d SIGUSR1, want 1", fin.usr1)
	}
}
