//go:build linux

package ptrace

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/preempttrace/preempttrace/internal/target"
	"github.com/preempttrace/preempttrace/internal/trace"
)

// Options says what to trace.
type Options struct {
	// PID is the target process, in the tracer's PID namespace.
	PID int

	// Exe is the target's executable, read for where the runtime keeps g. Empty means
	// /proc/PID/exe.
	Exe string

	// Goid and State are where the runtime's structs keep the goroutine id and the thread
	// state (target.FindRuntimeOffsets); unknown ones leave those fields unknown.
	Goid  target.GoidOffset
	State *target.StateOffsets

	// Queue is how many attempts wait for Read before more are counted as dropped; 0
	// means 4096. A tracee is never held stopped for a slow reader.
	Queue int

	// Image is the program the caller's decoder describes, read before it decoded the
	// executable. Attach fails with an ExecError if the target runs another one once it is
	// seized, and an exec later ends the trace unless it leaves this same program. The
	// zero value means the program the target runs when Attach begins.
	Image target.Image
}

// Counters are what the tracer saw but could not report in full.
type Counters struct {
	// Dropped attempts found the queue to Read full.
	Dropped uint64
	// StateUnread attempts lack the goroutine id or thread state because reading the
	// target's memory failed.
	StateUnread uint64
}

// Tracer traces one process with ptrace. Every ptrace request is made from one locked OS
// thread, the only one the kernel accepts them from once it attached.
type Tracer struct {
	pid      int
	attempts chan trace.Attempt

	stopOnce sync.Once
	stopReq  chan struct{}

	// done is closed when the loop has detached from every thread; end is why it ended
	// (nil after Stop or when the target exited), and detachErr says which threads it
	// could not detach from.
	done      chan struct{}
	end       error
	detachErr error

	dropped, stateUnread atomic.Uint64
}

// Attach seizes every thread of opts.PID. The target keeps running: it stops only for the
// moment a signal is delivered to it, and is resumed with the same signal.
//
// A program that started the target itself must not wait for it (os/exec's Wait) before
// Done is closed: while the target is traced the kernel reports its ptrace stops to every
// thread of the tracer's process that waits for it, and a stop taken by such a wait is
// never resumed.
func Attach(opts Options) (*Tracer, error) {
	if !regsAvailable {
		return nil, fmt.Errorf("%s: %w (supported: amd64)", runtime.GOARCH, ErrUnsupported)
	}
	if opts.Exe == "" {
		opts.Exe = fmt.Sprintf("/proc/%d/exe", opts.PID)
	}
	if opts.Queue <= 0 {
		opts.Queue = 4096
	}
	if err := checkNotTraced(opts.PID); err != nil {
		return nil, err
	}
	nsPID, err := innermostPID(opts.PID)
	if err != nil {
		return nil, fmt.Errorf("pid %d: %w", opts.PID, err)
	}
	tlsOff, tlsErr := gTLSOffset(opts.Exe)

	t := &Tracer{pid: opts.PID, attempts: make(chan trace.Attempt, opts.Queue),
		stopReq: make(chan struct{}), done: make(chan struct{})}
	l := &loop{t: t, pid: opts.PID, nsPID: nsPID, threads: map[int]*thread{},
		state: newStateReader(opts.PID, tlsOff, tlsErr == nil, opts.Goid, opts.State)}
	l.image, l.imageKnown = opts.Image, opts.Image != target.Image{}
	if !l.imageKnown {
		// Without it every exec ends the trace, the one under way when it began included.
		if img, err := readImage(opts.PID); err == nil {
			l.image, l.imageKnown = img, true
		}
	}

	attached := make(chan error, 1)
	go l.run(attached)
	if err := <-attached; err != nil {
		<-t.done
		return nil, err
	}
	return t, nil
}

// checkNotTraced turns "another tracer holds the target" into an error that names it,
// before PTRACE_SEIZE fails with a bare EPERM.
func checkNotTraced(pid int) error {
	v, err := target.StatusField(pid, "TracerPid")
	if os.IsNotExist(err) {
		return fmt.Errorf("pid %d: %w", pid, target.ErrNoProcess)
	}
	if err != nil {
		return fmt.Errorf("pid %d: %w", pid, err)
	}
	var tracer int
	if _, err := fmt.Sscan(v, &tracer); err != nil || tracer == 0 {
		return nil
	}

	// TracerPid names the tracing thread; the user knows its process.
	if tgid, err := target.StatusField(tracer, "Tgid"); err == nil {
		fmt.Sscan(tgid, &tracer)
	}
	name, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", tracer))
	return &AlreadyTracedError{PID: pid, TracerPID: tracer,
		TracerName: strings.TrimSpace(string(name))}
}

// Read returns the next attempt, blocking until there is one. After Stop, or once the
// target exited or executed a new program, it returns what is left, then ErrStopped, or
// the ExecError that ended the trace.
func (t *Tracer) Read() (trace.Attempt, error) {
	a, ok := <-t.attempts
	if ok {
		return a, nil
	}
	if t.end != nil {
		return trace.Attempt{}, t.end
	}
	return trace.Attempt{}, ErrStopped
}

// Stop detaches from every thread and returns when that is done; the target runs on.
// It is safe to call more than once and from any goroutine.
func (t *Tracer) Stop() error {
	t.stopOnce.Do(func() { close(t.stopReq) })
	<-t.done
	return t.detachErr
}

// Close is Stop; it exists so that both backends close the same way.
func (t *Tracer) Close() error { return t.Stop() }

// Done is closed once the tracer has detached, whatever the reason.
func (t *Tracer) Done() <-chan struct{} { return t.done }

// Counters returns the totals so far.
func (t *Tracer) Counters() Counters {
	return Counters{Dropped: t.dropped.Load(), StateUnread: t.stateUnread.Load()}
}
