//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/preempttrace/preempttrace/internal/ptrace"
	"github.com/preempttrace/preempttrace/internal/report"
	"github.com/preempttrace/preempttrace/internal/safepoint"
	"github.com/preempttrace/preempttrace/internal/symtab"
	"github.com/preempttrace/preempttrace/internal/target"
	"github.com/preempttrace/preempttrace/internal/trace"
)

// liveArgs are the options of live tracing, shared by the root command and demo.
type liveArgs struct {
	pid int

	// name selects the target by name instead of pid; wait waits for it to start.
	name string
	wait bool

	verify    bool
	allEvents bool
	output    string
	duration  time.Duration
	backend   string
}

func (a *liveArgs) check() error {
	if a.output != "text" && a.output != "json" {
		return usageError{fmt.Errorf("--output %q: want text or json", a.output)}
	}
	switch a.backend {
	case backendAuto, backendEBPF, backendPtrace:
	default:
		return usageError{fmt.Errorf("--backend %q: want auto, ebpf or ptrace", a.backend)}
	}
	if a.pid != 0 && a.name != "" {
		return usageError{errors.New("-p and --name both name the target: give one")}
	}
	if a.wait && a.name == "" {
		return usageError{errors.New("--wait needs --name")}
	}
	if a.duration < 0 {
		return usageError{errors.New("--duration must not be negative")}
	}
	return nil
}

// session is one attached tracer and what it writes.
type session struct {
	args    liveArgs
	stdout  io.Writer
	stderr  io.Writer
	tracer  backend
	decoder *trace.Decoder
	footer  *footer
	start   time.Time

	// mu guards summary, which the footer reads while read adds to it.
	mu      sync.Mutex
	summary trace.Summary
}

// runLive traces a.pid until Ctrl-C, SIGTERM, SIGHUP, --duration or the
// target's exit, then prints the summary. The target keeps running after the
// probes detach.
func runLive(ctx context.Context, a liveArgs, stdout, stderr io.Writer) error {
	// Signals are ours from the start, so that Ctrl-C while the probes are
	// being placed still detaches them and ends with a summary.
	ctx, cancel := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer cancel()

	if a.name != "" {
		pid, err := pickByName(ctx, a.name, a.wait, stderr)
		if errors.Is(err, errStoppedWaiting) {
			fmt.Fprintf(stderr, "preempttrace: %v\n", err)
			return nil
		}
		if err != nil {
			return err
		}
		a.pid = pid
	}

	proc, err := target.Find(a.pid)
	if err != nil {
		return err
	}
	// Read before the executable: a backend that sees the target run another program
	// than this one afterwards knows the decoder no longer describes it.
	image, err := proc.Image()
	if err != nil {
		return err
	}
	f, err := symtab.Open(proc.Exe)
	if err != nil {
		return fmt.Errorf("%s (pid %d): %w", proc.ExeName, a.pid, err)
	}
	defer f.Close()
	rules, err := safepoint.For(f.Version())
	if err != nil {
		return fmt.Errorf("%s (pid %d): %w", proc.ExeName, a.pid, err)
	}
	warnAsyncPreemptOff(a.pid, stderr)

	offs, err := target.FindRuntimeOffsets(proc.Exe, f.Version())
	if err != nil {
		fmt.Fprintf(stderr, "preempttrace: goroutine ids and thread state unknown: %v\n", err)
	}
	tr, err := attachBackend(a.backend, attachRequest{pid: a.pid, exe: proc.Exe, image: image,
		file: f, offs: offs, verify: a.verify}, stderr)
	if err != nil {
		return fmt.Errorf("attach to pid %d: %w (scan and explain still work on this binary)",
			a.pid, err)
	}
	defer func() {
		if err := tr.close(); err != nil {
			fmt.Fprintf(stderr, "preempttrace: detach: %v\n", err)
		}
	}()

	s := &session{args: a, stdout: stdout, stderr: stderr, tracer: tr,
		decoder: trace.NewDecoder(f, rules, image.Bias), start: time.Now()}
	fmt.Fprintf(stderr, "tracing pid %d (%s, %s %s) with %s%s; Ctrl-C to stop\n", a.pid,
		proc.ExeName, f.Version(), f.Arch(), tr.name(), goidNote(offs.Goid)+stateNote(offs))
	for _, note := range tr.notes() {
		fmt.Fprintf(stderr, "preempttrace: %s\n", note)
	}
	if a.verify && tr.name() == backendPtrace {
		fmt.Fprintln(stderr, "preempttrace: --verify has nothing to compare: "+
			"only the eBPF backend observes the runtime's verdicts")
	}
	if isTerminal(stderr) {
		s.footer = &footer{w: stderr}
	}

	stop := s.stopOn(ctx, a)
	err = s.read()
	stop()
	if err != nil {
		return err
	}
	return s.finish()
}

func goidNote(g target.GoidOffset) string {
	switch g.Source {
	case target.GoidUnknown:
		return ", goroutine ids unknown"
	case target.GoidFromTable:
		return ", goroutine ids at the release's default offset (no DWARF)"
	}
	return ""
}

// stateNote says when refusals by the thread's state cannot be told apart, or rest on the
// release table.
func stateNote(o target.RuntimeOffsets) string {
	switch {
	case o.State == nil:
		return ", thread state unknown (no DWARF)"
	case o.StateFromTable:
		return ", thread state at the release's default offsets (no DWARF)"
	case o.StateFromCode:
		return ", thread state at offsets read from the runtime's code (no DWARF)"
	}
	return ""
}

// stopOn stops the tracer on a signal, after the duration, or when the target
// exits, and keeps the footer drawn; the returned function ends all of it and
// returns once nothing of it runs any more.
func (s *session) stopOn(ctx context.Context, a liveArgs) func() {
	ctx, cancel := context.WithCancel(ctx)
	if a.duration > 0 {
		var cancelParent = cancel
		ctx, cancel = context.WithTimeout(ctx, a.duration)
		cancelTimeout := cancel
		cancel = func() { cancelTimeout(); cancelParent() }
	}

	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if !waitExit(ctx, a.pid) {
			<-ctx.Done()
		}
		if err := s.tracer.stop(); err != nil {
			s.footer.clear()
			fmt.Fprintf(s.stderr, "preempttrace: stop: %v\n", err)
		}
	}()
	go func() {
		defer wg.Done()
		s.drawFooter(ctx)
	}()
	return func() {
		cancel()
		wg.Wait()
	}
}

// drawFooter redraws the status line every second until ctx ends.
func (s *session) drawFooter(ctx context.Context) {
	if s.footer == nil {
		return
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			s.footer.draw(s.status())
		}
	}
}

// waitExit returns true when pid has exited, false when ctx ended first or the exit
// cannot be watched (no pidfds); the other stop conditions then still apply. It returns
// only once nothing it started runs any more.
//
// The pidfd waits in Go's network poller, not in a poll(2) call: a thread blocked in a
// system call for over 10 ms has the runtime's sysmon hand off its P and then wake every
// 20 µs, which would take the CPU from the target it is there to watch.
func waitExit(ctx context.Context, pid int) bool {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return false
	}
	pidfd := os.NewFile(uintptr(fd), "pidfd")
	defer pidfd.Close()
	conn, err := pidfd.SyscallConn()
	if err != nil {
		return false
	}

	// The end of ctx sets a deadline in the past, which returns the wait below.
	unblocked := make(chan struct{})
	stopUnblock := context.AfterFunc(ctx, func() {
		pidfd.SetReadDeadline(time.Now())
		close(unblocked)
	})

	// A pidfd turns readable when its process has exited. Read calls the function again
	// after each wakeup, and returns early once ctx ended, or at once where the poller
	// cannot take the pidfd.
	exited := false
	conn.Read(func(fd uintptr) bool {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 0)
		exited = n > 0
		return exited || err != nil && err != unix.EINTR
	})
	if !stopUnblock() {
		<-unblocked
	}
	return exited
}

// read decodes and prints events until the tracer is stopped and drained.
func (s *session) read() error {
	for {
		a, err := s.tracer.next()
		if errors.Is(err, errBackendStopped) {
			return nil
		}
		var exec *ptrace.ExecError
		if errors.As(err, &exec) {
			s.footer.clear()
			fmt.Fprintf(s.stderr, "preempttrace: %v\n", err)
			return nil
		}
		if err != nil {
			return fmt.Errorf("read events: %w", err)
		}
		r := s.decoder.Decode(a)
		s.mu.Lock()
		s.summary.Add(&r)
		s.mu.Unlock()
		if err := s.print(&r); err != nil {
			return err
		}
	}
}

func (s *session) print(r *trace.Record) error {
	if s.args.output == "json" {
		return report.LiveJSON(s.stdout, r)
	}
	if s.args.verify && r.Mismatch {
		s.footer.clear()
		fmt.Fprintf(s.stderr, "mismatch at %#x: %s (decoder %s, runtime %s)\n", r.PC, r.Why,
			r.Predicted.Reason, r.Runtime)
	}
	show := r.Refused() && r.Reason != safepoint.NotWanted
	if !show && !s.args.allEvents {
		return nil
	}
	s.footer.clear()
	return report.LiveText(s.stdout, r)
}

// status is the footer line: totals and rates so far.
func (s *session) status() string {
	secs := max(time.Since(s.start).Seconds(), 0.001)
	lost, _ := s.tracer.losses()
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprintf("%d attempts (%.0f/s), %d refused, %d accepted, %d dropped, %d mismatches",
		s.summary.Events, float64(s.summary.Events)/secs, s.summary.Refused,
		s.summary.Accepted, lost.Dropped, s.summary.Mismatches)
}

func (s *session) finish() error {
	s.footer.clear()
	totals, err := s.tracer.losses()
	if err != nil {
		return err
	}
	totals.Duration, totals.Backend = time.Since(s.start), s.tracer.name()
	if s.args.output == "json" {
		return report.SummaryJSON(s.stdout, &s.summary, totals)
	}
	return report.SummaryText(s.stdout, &s.summary, totals)
}

// warnAsyncPreemptOff says so when the target disabled signal preemption, in
// which case no attempt will ever arrive. Unreadable environments are skipped.
func warnAsyncPreemptOff(pid int, w io.Writer) {
	env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		return
	}
	off := false
	for _, kv := range strings.Split(string(env), "\x00") {
		v, ok := strings.CutPrefix(kv, "GODEBUG=")
		if !ok {
			continue
		}
		// The runtime applies the settings in order, so the last one counts.
		for _, setting := range strings.Split(v, ",") {
			if val, ok := strings.CutPrefix(strings.TrimSpace(setting), "asyncpreemptoff="); ok {
				off = val == "1"
			}
		}
	}
	if off {
		fmt.Fprintf(w, "preempttrace: warning: pid %d runs with GODEBUG=asyncpreemptoff=1; "+
			"the runtime sends no preemption signals, so none will be traced\n", pid)
	}
}

// footer is a status line kept at the bottom of a terminal.
type footer struct {
	mu    sync.Mutex
	w     io.Writer
	shown bool
}

func (f *footer) draw(line string) {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	fmt.Fprintf(f.w, "\r\033[K%s", line)
	f.shown = true
}

// clear removes the footer before other output; the next tick redraws it.
func (f *footer) clear() {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.shown {
		fmt.Fprint(f.w, "\r\033[K")
		f.shown = false
	}
}

func isTerminal(w io.Writer) bool {
	file, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(file.Fd()), unix.TCGETS)
	return err == nil
}

// namePoll is how often --wait looks for the process to have started.
const namePoll = 200 * time.Millisecond

// errStoppedWaiting reports a signal that ended --wait before the process started, which
// for a sidecar stopped with its pod is a normal end.
var errStoppedWaiting = errors.New("stopped before the process started")

// pickByName returns the one process called name, waiting for it to start if wait.
func pickByName(ctx context.Context, name string, wait bool, stderr io.Writer) (int, error) {
	told := false
	for {
		pids, err := target.FindByName(name)
		if err != nil {
			return 0, fmt.Errorf("list processes: %w", err)
		}
		switch {
		case len(pids) == 1:
			return pids[0], nil
		case len(pids) > 1:
			return 0, fmt.Errorf("%d processes named %q (pids %s): pick one with -p",
				len(pids), name, joinInts(pids))
		case !wait:
			return 0, fmt.Errorf("no process named %q (--wait waits for one to start)", name)
		}

		if !told {
			fmt.Fprintf(stderr, "preempttrace: waiting for a process named %q\n", name)
			told = true
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("%w: no process named %q", errStoppedWaiting, name)
		case <-time.After(namePoll):
		}
	}
}

// joinInts formats ns as "1, 2, 3".
func joinInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ", ")
}
