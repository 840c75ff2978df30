//go:build linux

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/preempttrace/preempttrace/internal/fixture"
	"github.com/preempttrace/preempttrace/internal/ptrace"
	"github.com/preempttrace/preempttrace/internal/testutil"
)

type liveSummary struct {
	Type       string            `json:"type"`
	Backend    string            `json:"backend"`
	Events     uint64            `json:"events"`
	Refused    uint64            `json:"refused"`
	Accepted   uint64            `json:"accepted"`
	Dropped    uint64            `json:"dropped"`
	Mismatches uint64            `json:"mismatches"`
	Entered    uint64            `json:"entered_async_preempt"`
	Missed     uint64            `json:"entry_missed"`
	Returns    uint64            `json:"runtime_reasons"`
	ByReason   map[string]uint64 `json:"by_reason"`
	Top        []struct {
		Func   string `json:"func"`
		Count  uint64 `json:"count"`
		Reason string `json:"reason"`
	} `json:"top"`
}

// parseJSONLines checks every line of -o json output and returns the attempts
// and the closing summary.
func parseJSONLines(t *testing.T, out string) ([]map[string]any, liveSummary) {
	t.Helper()
	var attempts []map[string]any
	var sum liveSummary
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not JSON: %q", line)
		}
		switch m["type"] {
		case "preempt":
			for _, key := range []string{"time", "pid", "tid", "goid", "pc", "inlined", "reason",
				"verdict", "runtime_verdict", "resume_pc", "sender"} {
				if _, ok := m[key]; !ok {
					t.Fatalf("attempt without %q: %s", key, line)
				}
			}
			attempts = append(attempts, m)
		case "summary":
			if err := json.Unmarshal([]byte(line), &sum); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("unknown line type: %s", line)
		}
	}
	if sum.Type != "summary" {
		t.Fatal("no summary line")
	}
	return attempts, sum
}

// TestDemo runs the demo as a user would and checks that every loop of the
// workload shows up with its reason and the runtime agrees with the decoder.
func TestDemo(t *testing.T) {
	testutil.RequireBPF(t)
	res := runCLI(t, "demo", "--duration", "2s", "-o", "json")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	attempts, sum := parseJSONLines(t, res.stdout)
	if uint64(len(attempts)) != sum.Events || sum.Events == 0 {
		t.Fatalf("%d attempt lines, summary says %d", len(attempts), sum.Events)
	}
	if sum.Mismatches != 0 || sum.Dropped != 0 {
		t.Errorf("%d mismatches, %d dropped", sum.Mismatches, sum.Dropped)
	}
	for _, reason := range []string{"assembly", "no-pointers-stackmap", "unsafe-point", "safe"} {
		if sum.ByReason[reason] == 0 {
			t.Errorf("no %s attempt in %v", reason, sum.ByReason)
		}
	}
	if !strings.Contains(res.stderr, "workload: ") {
		t.Errorf("workload summary missing from stderr: %s", res.stderr)
	}
}

// TestTracePID traces a fixture by PID for a while: the tracer stops on
// --duration, and the target runs on to its normal end and output.
func TestTracePID(t *testing.T) {
	testutil.RequireBPF(t)
	target := startSpin(t, "nosplit", 3*time.Second)

	res := runCLI(t, "-p", target.pid(), "--duration", "1s", "--verify")
	target.wait(t)
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	if !strings.Contains(res.stdout, "main.nosplitSpin+") ||
		!strings.Contains(res.stdout, "unsafe-point") {
		t.Errorf("no nosplit refusal in:\n%.2000s", res.stdout)
	}
	if !strings.Contains(res.stdout, ", 0 mismatches") || strings.Contains(res.stderr, "mismatch at") {
		t.Errorf("mismatches:\n%s\n%s", res.stdout, res.stderr)
	}
}

// TestLiveBadInput: live tracing refuses what it cannot trace in one line.
func TestLiveBadInput(t *testing.T) {
	sleep := exec.Command("sleep", "5")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sleep.Process.Kill(); sleep.Wait() }()

	for _, tt := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"-p", "999999999"}, 1, "no such process"},
		{[]string{"-p", strconv.Itoa(sleep.Process.Pid)}, 1, "not a Go binary"},
		{[]string{"-p", "1", "-o", "yaml"}, 2, "want text or json"},
		{[]string{"-p", "1", "--backend", "dtrace"}, 2, "want auto, ebpf or ptrace"},
		{[]string{"-p", "1", "--name", "server"}, 2, "give one"},
		{[]string{"-p", "1", "--wait"}, 2, "--wait needs --name"},
	} {
		res := runCLI(t, tt.args...)
		lines := strings.Split(strings.TrimRight(res.stderr, "\n"), "\n")
		if res.code != tt.code || len(lines) != 1 || !strings.Contains(res.stderr, tt.msg) {
			t.Errorf("%v: exit %d, stderr %q; want %d and one line with %q", tt.args, res.code,
				res.stderr, tt.code, tt.msg)
		}
	}
}

// TestDemoPtrace runs the demo on the ptrace backend: every loop shows up with its reason,
// and the summary says which backend traced.
func TestDemoPtrace(t *testing.T) {
	testutil.RequirePtrace(t)
	res := runCLI(t, "demo", "--backend", "ptrace", "--duration", "2s", "-o", "json")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	attempts, sum := parseJSONLines(t, res.stdout)
	if uint64(len(attempts)) != sum.Events || sum.Events == 0 {
		t.Fatalf("%d attempt lines, summary says %d", len(attempts), sum.Events)
	}
	if sum.Backend != "ptrace" || sum.Dropped != 0 {
		t.Errorf("backend %q, %d dropped", sum.Backend, sum.Dropped)
	}
	for _, reason := range []string{"assembly", "no-pointers-stackmap", "unsafe-point", "safe"} {
		if sum.ByReason[reason] == 0 {
			t.Errorf("no %s attempt in %v", reason, sum.ByReason)
		}
	}
	for _, a := range attempts {
		if a["runtime_verdict"] != "unknown" || a["sender"] != "runtime" {
			t.Fatalf("ptrace attempt with runtime verdict %v from %v", a["runtime_verdict"],
				a["sender"])
		}
	}
}

// TestAutoFallsBackToPtrace takes CAP_SYS_ADMIN away, without which the kernel creates no
// uprobe: the default backend must say why in one line and trace with ptrace, and the
// target must run on to its normal end.
func TestAutoFallsBackToPtrace(t *testing.T) {
	testutil.RequirePtrace(t)
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Fatalf("setpriv (util-linux) is needed to drop a capability: %v", err)
	}
	target := startSpin(t, "nosplit", 3*time.Second)

	var stdout, stderr strings.Builder
	cli := exec.Command(setpriv, "--bounding-set", "-sys_admin", "--", cliPath,
		"-p", target.pid(), "--duration", "1s", "-o", "json")
	cli.Stdout, cli.Stderr = &stdout, &stderr
	if err := cli.Run(); err != nil {
		t.Fatalf("preempttrace: %v: %s", err, stderr.String())
	}
	target.wait(t)

	fallback := 0
	for _, line := range strings.Split(stderr.String(), "\n") {
		if strings.Contains(line, "eBPF unavailable") {
			fallback++
			if !strings.Contains(line, "CAP_SYS_ADMIN") || !strings.HasSuffix(line, "using ptrace") {
				t.Errorf("fallback line does not say why and what instead: %q", line)
			}
		}
	}
	if fallback != 1 {
		t.Errorf("%d fallback lines in:\n%s", fallback, stderr.String())
	}
	_, sum := parseJSONLines(t, stdout.String())
	if sum.Backend != "ptrace" || sum.ByReason["unsafe-point"] == 0 {
		t.Errorf("backend %q, reasons %v", sum.Backend, sum.ByReason)
	}
}

// TestPtraceAlreadyTraced: a process another tracer holds gets one line that names the
// tracer, and runs on unharmed.
func TestPtraceAlreadyTraced(t *testing.T) {
	testutil.RequirePtrace(t)
	target := startSpin(t, "plain", 2*time.Second)
	holder, err := ptrace.Attach(ptrace.Options{PID: target.cmd.Process.Pid})
	if err != nil {
		t.Fatalf("first tracer: %v", err)
	}
	go func() {
		for _, err := holder.Read(); err == nil; _, err = holder.Read() {
		}
	}()

	res := runCLI(t, "-p", target.pid(), "--backend", "ptrace")
	if err := holder.Stop(); err != nil {
		t.Errorf("first tracer: %v", err)
	}
	lines := strings.Split(strings.TrimRight(res.stderr, "\n"), "\n")
	want := fmt.Sprintf("already traced by pid %d", os.Getpid())
	if res.code != 1 || len(lines) != 1 || !strings.Contains(res.stderr, want) {
		t.Errorf("exit %d, stderr %q; want 1 and one line with %q", res.code, res.stderr, want)
	}
	target.wait(t)
}

// TestWarnsAsyncPreemptOff: a target that turned signal preemption off gets one warning
// line saying why nothing will be traced, and indeed no attempt arrives.
func TestWarnsAsyncPreemptOff(t *testing.T) {
	testutil.RequirePtrace(t)
	target := startSpin(t, "nosplit", 2*time.Second, "GODEBUG=gctrace=0,asyncpreemptoff=1")

	res := runCLI(t, "-p", target.pid(), "--backend", "ptrace", "--duration", "1s", "-o", "json")
	if err := target.cmd.Wait(); err != nil {
		t.Errorf("target: %v", err)
	}
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	if n := strings.Count(res.stderr, "asyncpreemptoff=1"); n != 1 {
		t.Errorf("%d warnings about asyncpreemptoff in:\n%s", n, res.stderr)
	}
	if _, sum := parseJSONLines(t, res.stdout); sum.Events != 0 {
		t.Errorf("%d attempts from a target that sends no preemption signal", sum.Events)
	}
}

// spinTarget is a running spin fixture.
type spinTarget struct {
	cmd  *exec.Cmd
	mode string
	out  strings.Builder
}

// startSpin starts the current toolchain's spin fixture in mode for d, with env added to
// its environment.
func startSpin(t *testing.T, mode string, d time.Duration, env ...string) *spinTarget {
	t.Helper()

	bin := fixture.Build(t, fixture.Current(t), "spin", fixture.Default)
	return startSpinBinary(t, bin, mode, d, env...)
}

// startSpinBinary starts the spin program bin in mode for d.
func startSpinBinary(t *testing.T, bin, mode string, d time.Duration,
	env ...string) *spinTarget {
	t.Helper()

	s := &spinTarget{cmd: exec.Command(bin, mode, d.String()), mode: mode}
	s.cmd.Env = append(os.Environ(), env...)
	s.cmd.Stdout = &s.out
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return s
}

// pid is the target's PID as a command-line argument.
func (s *spinTarget) pid() string { return strconv.Itoa(s.cmd.Process.Pid) }

// wait checks that the target ran to its normal end: exit 0 and its summary line.
func (s *spinTarget) wait(t *testing.T) {
	t.Helper()

	if err := s.cmd.Wait(); err != nil {
		t.Errorf("target: %v", err)
	}
	if !strings.HasPrefix(s.out.String(), "spin: mode="+s.mode) {
		t.Errorf("target output %q", s.out.String())
	}
}

// TestWaitExit checks the exit watch on its own: it reports a process that exits, once it
// has, returns false soon after its context ends while the process lives on, and has no
// goroutine of its own left running when it returns.
func TestWaitExit(t *testing.T) {
	before := runtime.NumGoroutine()

	short := exec.Command("sleep", "0.3")
	if err := short.Start(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	exited := waitExit(context.Background(), short.Process.Pid)
	took := time.Since(start)
	// A pidfd turns readable when its process exits, before its parent reaps it.
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines running after waitExit returned, %d before", n, before)
	}
	short.Wait()
	if !exited {
		t.Error("waitExit returned false for a process that exited")
	}
	if took < 200*time.Millisecond {
		t.Errorf("waitExit returned after %v, before the process could exit", took)
	}

	long := exec.Command("sleep", "30")
	if err := long.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { long.Process.Kill(); long.Wait() }()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start = time.Now()
	if waitExit(ctx, long.Process.Pid) {
		t.Error("waitExit returned true for a process still running")
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("waitExit returned %v after its context ended", took-100*time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines running after waitExit returned, %d before", n, before)
	}
}
