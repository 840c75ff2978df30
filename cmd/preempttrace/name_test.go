//go:build linux

package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/preempttrace/preempttrace/internal/fixture"
	"github.com/preempttrace/preempttrace/internal/testutil"
)

// namedSpin copies the spin fixture to an executable of a name no other process has, so
// that tests running at the same time cannot match it.
func namedSpin(t *testing.T) (bin, name string) {
	t.Helper()

	src := fixture.Build(t, fixture.Current(t), "spin", fixture.Default)
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	name = "ptspin-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	bin = filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin, name
}

// TestTraceByName: --name finds the one process of that name and traces it; no process,
// or two, of that name get one line and exit 1.
func TestTraceByName(t *testing.T) {
	testutil.RequireBPF(t)
	bin, name := namedSpin(t)

	res := runCLI(t, "--name", name, "--duration", "1s")
	if res.code != 1 || strings.Count(strings.TrimSpace(res.stderr), "\n") != 0 ||
		!strings.Contains(res.stderr, "no process named") {
		t.Errorf("no such process: exit %d, stderr %q", res.code, res.stderr)
	}

	// Long enough to still run when the second one starts, on a loaded machine too.
	first := startSpinBinary(t, bin, "nosplit", 6*time.Second)
	res = runCLI(t, "--name", name, "--duration", "1s", "-o", "json")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	if _, sum := parseJSONLines(t, res.stdout); sum.ByReason["unsafe-point"] == 0 {
		t.Errorf("reasons %v, want the nosplit loop's unsafe points", sum.ByReason)
	}

	second := startSpinBinary(t, bin, "nosplit", time.Second)
	res = runCLI(t, "--name", name)
	pids := []string{first.pid(), second.pid()}
	both := regexp.MustCompile(`\(pids (` + pids[0] + `, ` + pids[1] + `|` + pids[1] + `, ` +
		pids[0] + `)\)`)
	if res.code != 1 || !both.MatchString(res.stderr) {
		t.Errorf("two processes: exit %d, stderr %q, want both of %v", res.code, res.stderr,
			pids)
	}
	first.wait(t)
	second.wait(t)
}

// TestWaitForName starts the tracer before its target, as a sidecar starts before the
// application: --wait says it waits, then traces the process once it runs. A SIGTERM while
// it waits ends it with one line and exit 0.
func TestWaitForName(t *testing.T) {
	testutil.RequireBPF(t)
	bin, name := namedSpin(t)

	var stdout, stderr bytes.Buffer
	cli := exec.Command(cliPath, "--name", name, "--wait", "--duration", "1s", "-o", "json")
	cli.Stdout, cli.Stderr = &stdout, &stderr
	if err := cli.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	target := startSpinBinary(t, bin, "nosplit", 3*time.Second)
	if err := cli.Wait(); err != nil {
		t.Fatalf("preempttrace: %v: %s", err, stderr.String())
	}
	target.wait(t)
	if !strings.Contains(stderr.String(), "waiting for a process named") {
		t.Errorf("no word of waiting: %q", stderr.String())
	}
	if _, sum := parseJSONLines(t, stdout.String()); sum.ByReason["unsafe-point"] == 0 {
		t.Errorf("reasons %v, want the nosplit loop's unsafe points", sum.ByReason)
	}

	stderr.Reset()
	cli = exec.Command(cliPath, "--name", name+"-never", "--wait")
	cli.Stderr = &stderr
	if err := cli.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	cli.Process.Signal(syscall.SIGTERM)
	err := cli.Wait()
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	if err != nil || len(lines) != 2 || !strings.Contains(lines[1], "stopped before") {
		t.Errorf("SIGTERM while waiting: %v, stderr %q", err, stderr.String())
	}
}
