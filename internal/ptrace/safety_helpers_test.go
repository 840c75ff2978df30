//go:build linux

package ptrace_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/preempttrace/preempttrace/internal/fixture"
	"github.com/preempttrace/preempttrace/internal/ptrace"
	"github.com/preempttrace/preempttrace/internal/safepoint"
	"github.com/preempttrace/preempttrace/internal/symtab"
	"github.com/preempttrace/preempttrace/internal/target"
	"github.com/preempttrace/preempttrace/internal/testutil"
	"github.com/preempttrace/preempttrace/internal/trace"
)

// Helpers of the safety tests: the sigcount target, a tracer in a process of its own,
// and what /proc says of threads.

// requirePtrace skips, or with PREEMPTTRACE_E2E=1 fails, a test this machine cannot
// trace with.
func requirePtrace(t *testing.T) {
	t.Helper()

	if runtime.GOARCH != "amd64" {
		// A limit of the backend, not of the machine: never a failure.
		t.Skipf("the ptrace backend reads registers on amd64 only, not %s", runtime.GOARCH)
	}
	testutil.RequirePtrace(t)
}

// buildSigcount builds testdata/sigcount with the module's own toolchain, as the probe
// package builds its testdata; the build cache makes every build after the first quick.
func buildSigcount(t *testing.T) string {
	t.Helper()

	tc := fixture.Current(t)
	bin := filepath.Join(t.TempDir(), "sigcount")
	cmd := exec.Command(tc.GoCmd, "build", "-o", bin, ".")
	cmd.Dir = filepath.Join("testdata", "sigcount")
	cmd.Env = append(os.Environ(), append(tc.Env, "CGO_ENABLED=0")...)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build testdata/sigcount: %v\n%s", err, msg)
	}
	return bin
}

// sigcountProc is a running sigcount and what it printed.
type sigcountProc struct {
	cmd    *exec.Cmd
	pid    int
	stdin  io.WriteCloser
	stderr bytes.Buffer // read only after Wait
	lines  *lineLog

	// tick is the last tick line read; ticks are kept out of lines.
	tick atomic.Int64

	waited bool
}

// startSigcount starts bin, a built sigcount, with env added to its environment, and
// waits until it is ready. It is killed at the end of the test unless it exited.
func startSigcount(t *testing.T, bin string, env ...string) *sigcountProc {
	t.Helper()

	p := &sigcountProc{cmd: exec.Command(bin), lines: newLineLog()}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stderr = &p.stderr
	// A target a failed test leaves stopped must not hang the cleanup's Wait on its pipes.
	p.cmd.WaitDelay = 5 * time.Second
	stdin, err := p.cmd.StdinPipe()
	if err != nil {
		t.Fatalf("sigcount stdin: %v", err)
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("sigcount stdout: %v", err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start sigcount: %v", err)
	}
	p.pid, p.stdin = p.cmd.Process.Pid, stdin
	t.Cleanup(p.kill)

	go p.read(stdout)
	p.expect(t, "ready ")
	return p
}

// read files every line of stdout until it closes.
func (p *sigcountProc) read(stdout io.Reader) {
	defer p.lines.close()

	s := bufio.NewScanner(stdout)
	for s.Scan() {
		if n, ok := strings.CutPrefix(s.Text(), "tick "); ok {
			v, _ := strconv.ParseInt(n, 10, 64)
			p.tick.Store(v)
			continue
		}
		p.lines.add(s.Text())
	}
}

// kill ends a target the test left running.
func (p *sigcountProc) kill() {
	if p.waited {
		return
	}
	p.cmd.Process.Kill()
	p.cmd.Wait()
}

// send writes a command line.
func (p *sigcountProc) send(t *testing.T, command string) {
	t.Helper()

	if _, err := io.WriteString(p.stdin, command+"\n"); err != nil {
		t.Fatalf("send %q to sigcount: %v", command, err)
	}
}

// expect returns the next line that starts with prefix, skipping lines with other
// prefixes, which stay for other calls.
func (p *sigcountProc) expect(t *testing.T, prefix string) string {
	t.Helper()

	line, err := p.lines.next(prefix, lineTimeout)
	if err != nil {
		t.Fatalf("sigcount (pid %d): %v", p.pid, err)
	}
	return line
}

// roundTrip sends sig to the process and returns the count on the first line name
// prints that is at least want; lines with lower counts are older. Waiting for it before
// sending the next signal keeps two of them from ever pending at once, unless the line
// was for another sender's signal.
func (p *sigcountProc) roundTrip(t *testing.T, sig syscall.Signal, name string,
	want int64) int64 {
	t.Helper()

	sendSignal(t, p.pid, sig)
	for {
		line := p.expect(t, name+" ")
		n, err := strconv.ParseInt(strings.TrimPrefix(line, name+" "), 10, 64)
		if err != nil {
			t.Fatalf("sigcount printed %q", line)
		}
		if n >= want {
			return n
		}
	}
}

// lineField returns the number after "key=" in line.
func lineField(t *testing.T, line, key string) int64 {
	t.Helper()

	for _, f := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				break
			}
			return n
		}
	}
	t.Fatalf("no number %s= in %q", key, line)
	return 0
}

// exitTotals are the counts sigcount prints on exit.
type exitTotals struct {
	usr1, urg, ticks int64
}

// finish asks the target to exit and checks that it exits 0 with its totals. No tracer of
// this process may be attached (see the comment at the top).
func (p *sigcountProc) finish(t *testing.T) exitTotals {
	t.Helper()

	p.send(t, "exit")
	return p.wait(t)
}

// wait checks that the target, told to exit, prints its totals and exits 0.
func (p *sigcountProc) wait(t *testing.T) exitTotals {
	t.Helper()

	fin, err := p.ended(t, false)
	if err != nil {
		t.Fatalf("sigcount (pid %d): %v", p.pid, err)
	}
	return fin
}

// end makes the target end: it is killed with SIGKILL, or told to exit.
func (p *sigcountProc) end(t *testing.T, kill bool) {
	t.Helper()

	if kill {
		sendSignal(t, p.pid, syscall.SIGKILL)
	} else {
		p.send(t, "exit")
	}
}

// ended collects the exit status of the target that end ended, and its totals when it
// exited. The status must be death by SIGKILL, or 0.
func (p *sigcountProc) ended(t *testing.T, kill bool) (exitTotals, error) {
	t.Helper()

	var fin exitTotals
	if !kill {
		line := p.expect(t, "sigcount: ")
		fin = exitTotals{usr1: lineField(t, line, "usr1"), urg: lineField(t, line, "urg"),
			ticks: lineField(t, line, "ticks")}
	}
	p.lines.awaitClosed(t, exitTimeout)

	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	var err error
	select {
	case err = <-done:
		p.waited = true
	case <-time.After(exitTimeout):
		t.Fatalf("sigcount (pid %d) closed its output but did not end in %v", p.pid,
			exitTimeout)
	}

	switch {
	case kill && !killedBy(err, syscall.SIGKILL):
		return fin, fmt.Errorf("exit status: %v, want death by SIGKILL", err)
	case !kill && err != nil:
		return fin, fmt.Errorf("exit status: %w\n%s", err, p.stderr.String())
	}
	return fin, nil
}

// killedBy reports whether err, from exec.Cmd.Wait, says that sig killed the process.
func killedBy(err error, sig syscall.Signal) bool {
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		return false
	}
	ws, ok := exit.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == sig
}

// assertStill checks that the stopped target makes no progress for stillWindow: its
// threads stay in states, it uses no CPU time and prints no tick.
func (p *sigcountProc) assertStill(t *testing.T, states string) {
	t.Helper()

	// A tick written just before the stop may still be in the pipe; let it be read.
	time.Sleep(50 * time.Millisecond)
	cpu, tick := cpuTicks(t, p.pid), p.tick.Load()
	time.Sleep(stillWindow)

	if now := cpuTicks(t, p.pid); now != cpu {
		t.Errorf("stopped target used CPU time: %d ticks, then %d", cpu, now)
	}
	if now := p.tick.Load(); now != tick {
		t.Errorf("stopped target printed ticks %d to %d", tick+1, now)
	}
	for _, tk := range threadsOf(t, p.pid) {
		if !strings.ContainsRune(states, rune(tk.state)) {
			t.Errorf("thread %d of the stopped target is in state %c", tk.tid, tk.state)
		}
	}
}

// waitProgress waits until the target prints a tick and uses CPU time again.
func (p *sigcountProc) waitProgress(t *testing.T) {
	t.Helper()

	cpu, tick := cpuTicks(t, p.pid), p.tick.Load()
	pollUntil(t, lineTimeout, "the target runs again", func() bool {
		return p.tick.Load() > tick && cpuTicks(t, p.pid) > cpu
	})
}

// lineLog holds the lines a process printed, for expect.
type lineLog struct {
	mu     sync.Mutex
	lines  []string
	cursor map[string]int // per prefix, where the next search starts
	closed bool
	grew   chan struct{} // closed, and replaced, when a line arrives or the log closes
}

// newLineLog returns an empty log.
func newLineLog() *lineLog {
	return &lineLog{cursor: map[string]int{}, grew: make(chan struct{})}
}

// add appends a line.
func (l *lineLog) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()

	l.lines = append(l.lines, line)
	close(l.grew)
	l.grew = make(chan struct{})
}

// close marks the end of the output.
func (l *lineLog) close() {
	l.mu.Lock()
	defer l.mu.Unlock()

	l.closed = true
	close(l.grew)
	l.grew = make(chan struct{})
}

// next returns the first line with prefix after the last one it returned, waiting up to
// timeout for it to arrive.
func (l *lineLog) next(prefix string, timeout time.Duration) (string, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		line, found, closed, grew := l.scan(prefix)
		switch {
		case found:
			return line, nil
		case closed:
			return "", fmt.Errorf("output ended without a line %q", prefix)
		}
		select {
		case <-grew:
		case <-deadline.C:
			return "", fmt.Errorf("no line %q in %v", prefix, timeout)
		}
	}
}

// scan looks for the next line with prefix among those read so far.
func (l *lineLog) scan(prefix string) (line string, found, closed bool, grew <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()

	for i := l.cursor[prefix]; i < len(l.lines); i++ {
		if strings.HasPrefix(l.lines[i], prefix) {
			l.cursor[prefix] = i + 1
			return l.lines[i], true, false, nil
		}
	}
	l.cursor[prefix] = len(l.lines)
	return "", false, l.closed, l.grew
}

// awaitClosed waits for the end of the output.
func (l *lineLog) awaitClosed(t *testing.T, timeout time.Duration) {
	t.Helper()

	pollUntil(t, timeout, "the output ends", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.closed
	})
}

// tracedTarget is an attached tracer, what it read so far, and a decoder for its attempts.
type tracedTarget struct {
	tr  *ptrace.Tracer
	col *attemptLog
	dec *trace.Decoder
}

// traceTarget attaches to pid with everything the command line gives the tracer, and
// reads its attempts until it stops. It is stopped at the end of the test, before the
// target is killed.
func traceTarget(t *testing.T, pid int) *tracedTarget {
	t.Helper()

	proc, err := target.Find(pid)
	if err != nil {
		t.Fatalf("find pid %d: %v", pid, err)
	}
	f, err := symtab.Open(proc.Exe)
	if err != nil {
		t.Fatalf("decode %s: %v", proc.ExeName, err)
	}
	t.Cleanup(func() { f.Close() })
	dec := decoderFor(t, proc, f)
	offs, err := target.FindRuntimeOffsets(proc.Exe, f.Version())
	if err != nil {
		t.Fatalf("find runtime offsets of %s: %v", proc.ExeName, err)
	}

	tr, err := ptrace.Attach(ptrace.Options{PID: pid, Exe: proc.Exe, Goid: offs.Goid,
		State: offs.State})
	if err != nil {
		t.Fatalf("attach to pid %d: %v", pid, err)
	}
	t.Cleanup(func() { tr.Stop() })
	return &tracedTarget{tr: tr, col: logAttempts(tr), dec: dec}
}

// decoderFor returns a decoder for the attempts of proc, whose executable is f.
func decoderFor(t *testing.T, proc *target.Process, f *symtab.File) *trace.Decoder {
	t.Helper()

	rules, err := safepoint.For(f.Version())
	if err != nil {
		t.Fatalf("rules for %s: %v", f.Version(), err)
	}
	bias, err := proc.LoadBias()
	if err != nil {
		t.Fatalf("load bias of pid %d: %v", proc.PID, err)
	}
	return trace.NewDecoder(f, rules, bias)
}

// stopAndCheck stops the tracer, checks that it detached from every thread and ended with
// ErrStopped, and returns every attempt it reported.
func stopAndCheck(t *testing.T, tt *tracedTarget, pid int) []trace.Attempt {
	t.Helper()

	if err := tt.tr.Stop(); err != nil {
		t.Errorf("stop tracer: %v", err)
	}
	attempts := tt.col.finish(t)
	for _, tk := range threadsOf(t, pid) {
		if tk.tracer != 0 {
			t.Errorf("thread %d is still traced by %d after Stop", tk.tid, tk.tracer)
		}
	}
	return attempts
}

// attemptLog reads a tracer's attempts as they come.
type attemptLog struct {
	mu       sync.Mutex
	attempts []trace.Attempt
	err      error
	done     chan struct{}
}

// logAttempts reads tr until Read fails.
func logAttempts(tr *ptrace.Tracer) *attemptLog {
	c := &attemptLog{done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for {
			a, err := tr.Read()
			c.mu.Lock()
			if err != nil {
				c.err = err
				c.mu.Unlock()
				return
			}
			c.attempts = append(c.attempts, a)
			c.mu.Unlock()
		}
	}()
	return c
}

// count returns how many attempts from origin were read so far.
func (c *attemptLog) count(origin trace.Origin) int {
	c.mu.Lock()
	defer c.mu.Unlock()

	return countOrigin(c.attempts, origin, time.Time{})
}

// snapshot returns the attempts read so far.
func (c *attemptLog) snapshot() []trace.Attempt {
	c.mu.Lock()
	defer c.mu.Unlock()

	return append([]trace.Attempt(nil), c.attempts...)
}

// finish waits until the tracer has nothing more to read, checks that it ended with
// ErrStopped and returns every attempt.
func (c *attemptLog) finish(t *testing.T) []trace.Attempt {
	t.Helper()

	awaitClosed(t, c.done, "the tracer's last attempt is read")
	if !errors.Is(c.err, ptrace.ErrStopped) {
		t.Errorf("Read ended with %v, want ErrStopped", c.err)
	}
	return c.snapshot()
}

// countOrigin counts the attempts from origin at or after since.
func countOrigin(attempts []trace.Attempt, origin trace.Origin, since time.Time) int {
	n := 0
	for _, a := range attempts {
		if a.Origin == origin && !a.Time.Before(since) {
			n++
		}
	}
	return n
}

// tracerChild is a tracer process: this test binary running TestSafetyTracerHelper.
type tracerChild struct {
	cmd      *exec.Cmd
	attempts atomic.Int64
	stderr   bytes.Buffer
}

// startTracerChild starts a tracer process for pid and waits until it attached. It is
// killed at the end of the test if it still runs.
func startTracerChild(t *testing.T, pid int) *tracerChild {
	t.Helper()

	self, err := os.Executable()
	if err != nil {
		t.Fatalf("find test binary: %v", err)
	}
	h := &tracerChild{cmd: exec.Command(self, "-test.run=^TestSafetyTracerHelper$")}
	h.cmd.Env = append(os.Environ(), helperEnv+"="+strconv.Itoa(pid))
	h.cmd.Stderr = &h.stderr
	stdout, err := h.cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("tracer process stdout: %v", err)
	}
	if err := h.cmd.Start(); err != nil {
		t.Fatalf("start tracer process: %v", err)
	}
	t.Cleanup(func() {
		if h.cmd.ProcessState == nil {
			h.cmd.Process.Kill()
			h.cmd.Wait()
		}
	})

	attached := make(chan struct{})
	go h.read(stdout, attached)
	select {
	case <-attached:
	case <-time.After(lineTimeout):
		t.Fatalf("tracer process did not attach to pid %d in %v", pid, lineTimeout)
	}
	return h
}

// read counts the tracer process's attempt lines, and closes attached at its first line.
func (h *tracerChild) read(stdout io.Reader, attached chan<- struct{}) {
	s := bufio.NewScanner(stdout)
	for s.Scan() {
		switch {
		case s.Text() == "attached":
			close(attached)
		case strings.HasPrefix(s.Text(), "attempt "):
			h.attempts.Add(1)
		}
	}
}

// kill kills the tracer process with SIGKILL and checks that SIGKILL is what ended it.
func (h *tracerChild) kill(t *testing.T) {
	t.Helper()

	if err := h.cmd.Process.Kill(); err != nil {
		t.Fatalf("kill tracer process: %v", err)
	}
	if err := h.cmd.Wait(); !killedBy(err, syscall.SIGKILL) {
		t.Fatalf("tracer process ended with %v, not by SIGKILL\n%s", err, h.stderr.String())
	}
}

// wait checks that the tracer process ends, with status 0, within exitTimeout.
func (h *tracerChild) wait(t *testing.T) {
	t.Helper()

	done := make(chan error, 1)
	go func() { done <- h.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("tracer process: %v\n%s", err, h.stderr.String())
		}
	case <-time.After(exitTimeout):
		t.Fatalf("tracer process still runs %v after its target ended", exitTimeout)
	}
}

// runTracerChild attaches to the process pidArg names and reads its attempts until its
// target is gone, printing "attached" and then one line per attempt; it returns the exit
// code: 0 once Read reported ErrStopped.
func runTracerChild(pidArg string) int {
	pid, err := strconv.Atoi(pidArg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s=%q: %v\n", helperEnv, pidArg, err)
		return 2
	}
	tr, err := ptrace.Attach(ptrace.Options{PID: pid})
	if err != nil {
		fmt.Fprintf(os.Stderr, "attach to pid %d: %v\n", pid, err)
		return 1
	}

	fmt.Println("attached")
	for {
		a, err := tr.Read()
		if errors.Is(err, ptrace.ErrStopped) {
			return 0
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "read: %v\n", err)
			return 1
		}
		fmt.Printf("attempt tid=%d origin=%v\n", a.TID, a.Origin)
	}
}

// threadInfo is one thread of a process, as /proc shows it.
type threadInfo struct {
	tid    int
	state  byte // as in ps: R, S, T, t, ...
	tracer int  // the tracing process (tracerProcess), 0 when untraced
}

// threadsOf returns the process's threads. Threads that exit while being read are left out.
func threadsOf(t *testing.T, pid int) []threadInfo {
	t.Helper()

	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatalf("list threads of pid %d: %v", pid, err)
	}
	var out []threadInfo
	for _, e := range ents {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := readProcStat(fmt.Sprintf("/proc/%d/task/%d/stat", pid, tid))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatalf("thread %d: %v", tid, err)
		}
		tracer := tracerProcess(t, pid, tid)
		out = append(out, threadInfo{tid: tid, state: stat[0][0], tracer: tracer})
	}
	return out
}

// tracerProcess returns the process that traces one thread, 0 when none does or the
// thread is gone. TracerPid names the tracing thread, which need not lead its process.
func tracerProcess(t *testing.T, pid, tid int) int {
	t.Helper()

	tracer := statusNumber(t, fmt.Sprintf("/proc/%d/task/%d/status", pid, tid), "TracerPid")
	if tracer <= 0 {
		return 0
	}
	return statusNumber(t, fmt.Sprintf("/proc/%d/status", tracer), "Tgid")
}

// statusNumber returns a numeric field of a status file, -1 when the file is gone.
func statusNumber(t *testing.T, path, name string) int {
	t.Helper()

	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return -1
	}
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	_, rest, _ := strings.Cut(string(b), "\n"+name+":")
	n, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(rest, "\n", 2)[0]))
	if err != nil {
		t.Fatalf("%s in %s: %v", name, path, err)
	}
	return n
}

// allTracedBy reports whether tracer traces every thread of pid (0: none is traced).
func allTracedBy(t *testing.T, pid, tracer int) bool {
	t.Helper()

	for _, tk := range threadsOf(t, pid) {
		if tk.tracer != tracer {
			return false
		}
	}
	return true
}

// readProcStat returns the fields of a stat file after the command name, starting with the
// state, so that field n of proc(5) is at index n-3.
func readProcStat(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	// The command name is in parentheses and may hold spaces and parentheses itself.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("%s: no command name", path)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return nil, fmt.Errorf("%s: %d fields", path, len(f))
	}
	return f, nil
}

// cpuTicks returns the CPU time the process used, utime plus stime in clock ticks.
func cpuTicks(t *testing.T, pid int) uint64 {
	t.Helper()

	f, err := readProcStat(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatalf("stat of pid %d: %v", pid, err)
	}
	utime, err1 := strconv.ParseUint(f[14-3], 10, 64)
	stime, err2 := strconv.ParseUint(f[15-3], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		t.Fatalf("CPU time of pid %d: %v", pid, err)
	}
	return utime + stime
}

// waitStates waits until every thread of pid is in one of states.
func waitStates(t *testing.T, pid int, states string) {
	t.Helper()

	pollUntil(t, lineTimeout, "every thread is in state "+states, func() bool {
		for _, tk := range threadsOf(t, pid) {
			if !strings.ContainsRune(states, rune(tk.state)) {
				return false
			}
		}
		return true
	})
}

// sendSignal sends sig to the process pid.
func sendSignal(t *testing.T, pid int, sig syscall.Signal) {
	t.Helper()

	if err := syscall.Kill(pid, sig); err != nil {
		t.Fatalf("kill -%d %d: %v", sig, pid, err)
	}
}

// pollUntil polls cond until it holds, failing the test after timeout.
func pollUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()

	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v in vain until %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// awaitClosed waits until c is closed, failing the test after exitTimeout.
func awaitClosed(t *testing.T, c <-chan struct{}, what string) {
	t.Helper()

	select {
	case <-c:
	case <-time.After(exitTimeout):
		t.Fatalf("waited %v in vain until %s", exitTimeout, what)
	}
}
