//go:build linux

package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/preempttrace/preempttrace/internal/fixture"
	"github.com/preempttrace/preempttrace/internal/testutil"
)

// bundleInput writes a JavaScript module big enough that esbuild works for a
// second or more, collecting garbage, so the runtime sends preemption signals.
func bundleInput(t *testing.T) string {
	t.Helper()
	var b bytes.Buffer
	for i := 0; i < 40000; i++ {
		fmt.Fprintf(&b, "export function f%d(a, b) { const x = a * %d + b; "+
			"if (x > %d) { return [x, \"s%d\", {k: x}]; } return x - %d; }\n", i, i, i, i, i)
	}
	path := filepath.Join(t.TempDir(), "in.js")
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestTraceThirdPartyProgram traces real esbuild releases while they minify a large file,
// each with the eBPF backend, which checks the runtime's verdicts against the decoder: those
// built by Go 1.17, 1.18, 1.20 and 1.25 (stripped, one without build info) pass arguments in
// registers, those built by Go 1.14, 1.15 and 1.16 on the stack. The older ones are traced
// with ptrace too, the backend a kernel without eBPF falls back to. Attempts arrive, and the
// program's exit status and output are those of an untraced run.
func TestTraceThirdPartyProgram(t *testing.T) {
	input := bundleInput(t)

	// Attempts the runtime accepted, seen by eBPF, by calling convention. A single run
	// may see none, but a verdict read stuck at "refused" would pass every run: on
	// stripped builds without the thread state the decoder calls such refusals unknown
	// rather than mismatches.
	accepted := map[string]uint64{}
	for _, b := range fixture.Registry(t) {
		if !strings.Contains(b.ID, "esbuild") || b.Arch != "amd64" || b.ID < "go1.14" {
			continue
		}
		abi, backends := "register", []string{"ebpf"}
		if b.ID < "go1.17" {
			abi, backends = "stack", append(backends, "ptrace")
		}
		for _, backend := range backends {
			t.Run(b.ID+"/"+backend, func(t *testing.T) {
				if backend == "ebpf" {
					testutil.RequireBPF(t)
				} else {
					testutil.RequirePtrace(t)
				}
				sum := traceMinify(t, b.Path, input, "--backend", backend, "-o", "json",
					"--verify")
				if backend == "ebpf" {
					accepted[abi] += sum.Accepted
				}
			})
		}
	}
	for _, abi := range []string{"stack", "register"} {
		if accepted[abi] == 0 {
			t.Errorf("no attempt accepted by the runtime as eBPF saw it, %s ABI", abi)
		}
	}
}

// traceMinify runs esbuild untraced, then traced by the CLI with args, compares, and
// returns the trace's summary.
func traceMinify(t *testing.T, esbuild, input string, args ...string) liveSummary {
	t.Helper()

	dir := t.TempDir()
	want := filepath.Join(dir, "want.js")
	if out, err := exec.Command(esbuild, input, "--minify", "--outfile="+want).
		CombinedOutput(); err != nil {
		t.Fatalf("untraced run: %v: %s", err, out)
	}

	got := filepath.Join(dir, "got.js")
	prog := exec.Command(esbuild, input, "--minify", "--outfile="+got)
	if err := prog.Start(); err != nil {
		t.Fatal(err)
	}
	res := runCLI(t, append([]string{"-p", strconv.Itoa(prog.Process.Pid)}, args...)...)
	if err := prog.Wait(); err != nil {
		t.Errorf("traced run: %v", err)
	}
	if res.code != 0 {
		t.Fatalf("preempttrace exit %d: %s", res.code, res.stderr)
	}

	attempts, sum := parseJSONLines(t, res.stdout)
	verdicts := map[string]int{}
	unreturned := 0
	for _, a := range attempts {
		v := fmt.Sprint(a["runtime_verdict"])
		verdicts[v]++
		if _, ok := a["runtime_reason"]; !ok && (v == "accepted" || v == "refused") {
			unreturned++
		}
	}
	// With --verify the eBPF backend sees which return of isAsyncSafePoint decided, which
	// --verify compared with the decoder's reason too.
	if sum.Backend == "ebpf" && (unreturned > 0 || sum.Returns != sum.Refused+sum.Accepted) {
		t.Errorf("%d decided attempts without runtime_reason; summary counts %d with one of %d",
			unreturned, sum.Returns, sum.Refused+sum.Accepted)
	}
	t.Logf("%s: %d attempts: %d refused, %d accepted, by reason %v; runtime verdicts %v",
		sum.Backend, sum.Events, sum.Refused, sum.Accepted, sum.ByReason, verdicts)
	if sum.Events == 0 || sum.Mismatches != 0 || sum.Dropped != 0 {
		t.Errorf("%d attempts, %d mismatches, %d dropped", sum.Events, sum.Mismatches,
			sum.Dropped)
	}

	// The eBPF backend reads the runtime's own verdict, which --verify compared with the
	// decoder's: it must have been seen, or the comparison above proved nothing.
	if sum.Backend == "ebpf" && verdicts["accepted"]+verdicts["refused"] == 0 {
		t.Errorf("eBPF saw no verdict of the runtime: %v", verdicts)
	}

	// With --verify the eBPF backend also watches each accepted goroutine enter
	// asyncPreempt; only those under way when the trace ended may go unseen.
	if sum.Backend == "ebpf" {
		t.Logf("accepted %d, seen entering asyncPreempt %d, missed %d", sum.Accepted,
			sum.Entered, sum.Missed)
		if sum.Missed != 0 || sum.Entered+2 < sum.Accepted {
			t.Errorf("asyncPreempt entries: %d seen, %d missed of %d accepted", sum.Entered,
				sum.Missed, sum.Accepted)
		}
	}
	a, _ := os.ReadFile(want)
	c, _ := os.ReadFile(got)
	if len(a) == 0 || !bytes.Equal(a, c) {
		t.Error("traced output differs from the untraced one")
	}
	return sum
}
