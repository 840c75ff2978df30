//go:build linux

package ptrace

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/preempttrace/preempttrace/internal/target"
	"github.com/preempttrace/preempttrace/internal/trace"
)

// thread is what the loop keeps of one traced thread of the target, by thread ID.
type thread struct {
	// interrupted: PTRACE_INTERRUPT was sent to detach it.
	interrupted bool
}

// loop owns the ptrace relationship. It runs on one locked OS thread, since the kernel
// takes ptrace requests for a tracee only from the thread that attached it.
type loop struct {
	t     *Tracer
	pid   int
	nsPID int // the target's PID in its own namespace, which si_pid of its tgkill holds
	state *stateReader

	threads  map[int]*thread
	stopping bool
	end      error

	// image is the program the decoder describes, if it is known.
	image      target.Image
	imageKnown bool

	// tid is the thread the loop runs on, which the kernel names as the tracer.
	tid int
	// waitList is reused by collect for the threads to look at.
	waitList []int
}

// Bounds of attaching and detaching.
const (
	// seizeRounds bounds the rescans of /proc/PID/task for threads started while
	// attaching; each round seizes what the last one missed.
	seizeRounds = 100

	// pollInterval is how often the loop looks for tracee stops even without a SIGCHLD,
	// a backstop that costs one wait4 when idle.
	pollInterval = 50 * time.Millisecond

	// detachTimeout bounds the wait for interrupted threads to stop so they can be
	// detached; a thread that never stops is detached by the kernel when the tracer exits.
	detachTimeout = 5 * time.Second
)

// run attaches, reports the outcome on attached, then handles stops until asked to stop
// or the target is gone, and detaches.
//
// Tracee stops are noticed through SIGCHLD, which the kernel sends the tracer for each
// one, and collected with non-blocking wait4 calls until none is left. A blocking wait4
// could not be woken for Stop: Go restarts system calls its signal handler interrupts.
func (l *loop) run(attached chan<- error) {
	// The thread stays locked until the goroutine exits, and then exits too, so that no
	// other goroutine ever runs on a thread that holds tracees.
	runtime.LockOSThread()
	l.tid = unix.Gettid()

	sigchld := make(chan os.Signal, 1)
	signal.Notify(sigchld, unix.SIGCHLD)
	defer signal.Stop(sigchld)

	defer func() {
		l.t.end = l.end
		close(l.t.attempts)
		close(l.t.done)
	}()

	err := l.seizeAll()
	if same, known := l.imageNow(); err == nil && known && !same {
		// An exec that ended before the seize reports nothing: the program the decoder
		// describes is gone already.
		err = &ExecError{PID: l.pid}
	}
	if err != nil {
		l.stopping = true
		l.t.detachErr = l.detachAll(sigchld)
		attached <- err
		return
	}
	attached <- nil

	poll := time.NewTicker(pollInterval)
	defer poll.Stop()
	for len(l.threads) > 0 && !l.stopping {
		if err := l.collect(); err != nil {
			l.end = err
			break
		}
		select {
		case <-sigchld:
		case <-poll.C:
		case <-l.t.stopReq:
			l.stopping = true
		}
	}
	l.stopping = true
	l.t.detachErr = l.detachAll(sigchld)
}

// seizeAll attaches to every thread, rescanning until a scan finds no new one. Threads
// that a seized thread starts are attached by the kernel (PTRACE_O_TRACECLONE); the
// rescans catch those started meanwhile by threads not yet seized.
func (l *loop) seizeAll() error {
	for range seizeRounds {
		tids, err := threadIDs(l.pid)
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("pid %d: %w", l.pid, target.ErrNoProcess)
		}
		if err != nil {
			return fmt.Errorf("list threads of pid %d: %w", l.pid, err)
		}

		added := 0
		for _, tid := range tids {
			if l.threads[tid] != nil {
				continue
			}
			switch err := seize(tid); {
			case err == nil:
				l.threads[tid] = &thread{}
				added++
			case errors.Is(err, unix.ESRCH):
				// It exited since the scan.
			case errors.Is(err, unix.EPERM):
				if l.tracedByUs(tid) {
					// Started by a thread seized this round, and attached with it
					// (PTRACE_O_TRACECLONE); its first stop is still to come.
					l.threads[tid] = &thread{}
					continue
				}
				if err := checkNotTraced(tid); err != nil {
					return err
				}
				scope, _ := os.ReadFile("/proc/sys/kernel/yama/ptrace_scope")
				return &PermissionError{PID: l.pid, Scope: strings.TrimSpace(string(scope)), Err: err}
			default:
				return fmt.Errorf("seize thread %d of pid %d: %w", tid, l.pid, err)
			}
		}
		if added == 0 {
			if len(l.threads) == 0 {
				return fmt.Errorf("pid %d: %w", l.pid, target.ErrNoProcess)
			}
			return nil
		}
	}
	return fmt.Errorf("pid %d kept starting threads while being attached to", l.pid)
}

// tracedByUs reports whether the loop's thread already traces tid.
func (l *loop) tracedByUs(tid int) bool {
	v, err := target.StatusField(tid, "TracerPid")
	return err == nil && v == strconv.Itoa(l.tid)
}

// collect handles every tracee stop that is waiting, without blocking.
//
// It asks each traced thread in turn rather than waiting for any child: the thread the
// loop runs on may have started the target itself (os/exec forks on whichever thread its
// goroutine runs), and a wait for any child would then reap the target's exit status
// once it is detached and exits, taking it from the goroutine that waits for it. A
// thread this one does not know yet is announced by its parent's PTRACE_EVENT_CLONE stop
// before it is waited for.
func (l *loop) collect() error {
	for {
		l.waitList = l.waitList[:0]
		for tid := range l.threads {
			l.waitList = append(l.waitList, tid)
		}

		handled := 0
		for _, tid := range l.waitList {
			var ws unix.WaitStatus
			got, err := unix.Wait4(tid, &ws, waitFlags, nil)
			for errors.Is(err, unix.EINTR) {
				got, err = unix.Wait4(tid, &ws, waitFlags, nil)
			}
			switch {
			case errors.Is(err, unix.ECHILD):
				// Gone without a report left for us. A thread other than the leader
				// vanishes so when it executes a program: it takes the leader's ID
				// and reports its PTRACE_EVENT_EXEC stop under that ID, after the
				// leader itself was detached at its exit.
				delete(l.threads, tid)
				if tid != l.pid && l.threads[l.pid] == nil {
					l.threads[l.pid] = &thread{}
				}
				continue
			case err != nil:
				return fmt.Errorf("wait for thread %d of pid %d: %w", tid, l.pid, err)
			case got != tid:
				continue
			}
			handled++
			if err := l.handle(tid, ws); err != nil {
				return err
			}
		}
		if handled == 0 {
			return nil
		}
	}
}

// handle acts on one state change of a tracee: the thread goes on (or, when stopping,
// is detached) with exactly the signal it was about to receive.
func (l *loop) handle(tid int, ws unix.WaitStatus) error {
	if ws.Exited() || ws.Signaled() {
		delete(l.threads, tid)
		return nil
	}
	if !ws.Stopped() {
		return nil
	}
	if l.threads[tid] == nil {
		// A new thread can report its first stop before its parent reports the clone.
		l.threads[tid] = &thread{}
	}

	sig := ws.StopSignal()
	switch eventOf(ws) {
	case 0:
		// A signal-delivery-stop: the signal is about to be delivered.
		if sig == unix.SIGURG {
			l.record(tid)
		}
		return l.resume(tid, sig)

	case unix.PTRACE_EVENT_STOP:
		if isStopSignal(sig) {
			// A group-stop (kill -STOP): stay stopped, as the thread would untraced,
			// until SIGCONT. Detaching leaves it in the group-stop.
			if l.stopping {
				return l.detach(tid, 0)
			}
			return ignoreGone(listen(tid))
		}
		// A new thread's first stop, or the stop PTRACE_INTERRUPT asked for.
		return l.resume(tid, 0)

	case unix.PTRACE_EVENT_CLONE:
		if child, err := unix.PtraceGetEventMsg(tid); err == nil && l.threads[int(child)] == nil {
			l.threads[int(child)] = &thread{}
		}
		return l.resume(tid, 0)

	case unix.PTRACE_EVENT_EXEC:
		// Every other thread is gone and this one took the leader's ID.
		if former, err := unix.PtraceGetEventMsg(tid); err == nil && int(former) != tid {
			delete(l.threads, int(former))
		}
		// A target seized while it finished its execve (a program that has just started
		// it, as the demo does, attaches as soon as os/exec returns) reports that exec.
		// The same file mapped at the same place is the program the decoder describes.
		if same, _ := l.imageNow(); same {
			return l.resume(tid, 0)
		}
		// Otherwise the program the decoder describes is gone.
		if l.end == nil {
			l.end = &ExecError{PID: l.pid}
		}
		l.stopping = true
		return l.detach(tid, 0)

	case unix.PTRACE_EVENT_EXIT:
		// Detached before it finishes exiting, so that its parent reaps it as usual.
		return l.detach(tid, 0)
	}
	return l.resume(tid, 0)
}

// isStopSignal reports the signals whose delivery starts a group-stop.
func isStopSignal(sig unix.Signal) bool {
	switch sig {
	case unix.SIGSTOP, unix.SIGTSTP, unix.SIGTTIN, unix.SIGTTOU:
		return true
	}
	return false
}

// resume lets a stopped thread run on with sig, or detaches it with sig when stopping.
func (l *loop) resume(tid int, sig unix.Signal) error {
	if l.stopping {
		return l.detach(tid, sig)
	}
	return ignoreGone(unix.PtraceCont(tid, int(sig)))
}

// detach lets a stopped thread go for good, with sig.
func (l *loop) detach(tid int, sig unix.Signal) error {
	delete(l.threads, tid)
	return ignoreGone(detach(tid, sig))
}

// ignoreGone drops ESRCH: the thread was killed while stopped (SIGKILL does not wait for
// the tracer), and its exit is reported by wait4 like any other.
func ignoreGone(err error) error {
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	return err
}

// detachAll interrupts every thread still attached and detaches each at its next stop,
// passing on any signal that stop was delivering.
func (l *loop) detachAll(sigchld <-chan os.Signal) error {
	deadline := time.NewTimer(detachTimeout)
	defer deadline.Stop()
	poll := time.NewTicker(time.Millisecond)
	defer poll.Stop()

	for len(l.threads) > 0 {
		for tid, th := range l.threads {
			if !th.interrupted {
				th.interrupted = true
				if err := unix.PtraceInterrupt(tid); errors.Is(err, unix.ESRCH) {
					delete(l.threads, tid)
				}
			}
		}
		if err := l.collect(); err != nil {
			return err
		}
		if len(l.threads) == 0 {
			break
		}
		select {
		case <-sigchld:
		case <-poll.C:
		case <-deadline.C:
			return fmt.Errorf("%d threads of pid %d did not stop to be detached within %v; "+
				"they are released when preempttrace exits", len(l.threads), l.pid, detachTimeout)
		}
	}
	return nil
}

// record reads what a SIGURG interrupted and queues it for Read. It never writes to the
// target and never waits for the reader: a full queue counts as dropped.
func (l *loop) record(tid int) {
	a := trace.Attempt{Time: time.Now(), PID: l.pid, TID: tid}

	var si siginfo
	if getSiginfo(tid, &si) == nil {
		a.Origin = trace.OriginOutside
		if si.Code == siTkill && int(si.Pid) == l.nsPID {
			a.Origin = trace.OriginRuntime
		}
	}

	if pc, sp, fp, tp, err := interruptedRegs(tid); err == nil {
		a.PC, a.SP, a.FP, a.RegsKnown = pc, sp, fp, true
		if l.state.fill(&a, tp) > 0 {
			l.t.stateUnread.Add(1)
		}
	}

	select {
	case l.t.attempts <- a:
	default:
		l.t.dropped.Add(1)
	}
}

// imageNow reports whether the target runs the program the decoder describes; known is
// false when either program cannot be told.
func (l *loop) imageNow() (same, known bool) {
	if !l.imageKnown {
		return false, false
	}
	now, err := readImage(l.pid)
	if err != nil {
		return false, false
	}
	return now == l.image, true
}

// readImage returns the identity of the program pid runs now.
func readImage(pid int) (target.Image, error) {
	p, err := target.Find(pid)
	if err != nil {
		return target.Image{}, err
	}
	return p.Image()
}
