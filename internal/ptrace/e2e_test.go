//go:build linux

package ptrace_test

import (
	"bytes"
	"errors"
	"os/exec"
	"regexp"
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

// tracedRun is one run of the spin fixture under the ptrace backend.
type tracedRun struct {
	records  []trace.Record
	counters ptrace.Counters
	offs     target.RuntimeOffsets
}

// traceSpin runs "spin mode runFor", traces it for window, detaches, and checks that the
// program then exits 0 with its usual summary line, as it would untraced.
func traceSpin(t *testing.T, bin, mode string, runFor, window time.Duration) *tracedRun {
	t.Helper()

	f, err := symtab.Open(bin)
	if err != nil {
		t.Fatalf("decode %s: %v", bin, err)
	}
	t.Cleanup(func() { f.Close() })
	rules, err := safepoint.For(f.Version())
	if err != nil {
		t.Fatalf("rules: %v", err)
	}
	offs, err := target.FindRuntimeOffsets(bin, f.Version())
	if err != nil {
		t.Fatalf("runtime offsets: %v", err)
	}

	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, mode, runFor.String())
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	proc, err := target.Find(cmd.Process.Pid)
	if err != nil {
		t.Fatalf("find target: %v", err)
	}
	bias, err := proc.LoadBias()
	if err != nil {
		t.Fatalf("load bias: %v", err)
	}

	tr, err := ptrace.Attach(ptrace.Options{PID: proc.PID, Goid: offs.Goid, State: offs.State})
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("attach: %v", err)
	}
	run := &tracedRun{offs: offs}
	dec := trace.NewDecoder(f, rules, bias)
	for _, a := range collectAttempts(t, tr, window) {
		run.records = append(run.records, dec.Decode(a))
	}
	run.counters = tr.Counters()

	if err := cmd.Wait(); err != nil {
		t.Fatalf("target: %v\nstdout: %s\nstderr: %s", err, stdout.String(), stderr.String())
	}
	want := regexp.MustCompile(`(?m)^(spin|cgospin): mode=` + mode + ` duration=` +
		regexp.QuoteMeta(runFor.String()) + ` .*allocs=\d+ `)
	if !want.MatchString(stdout.String()) {
		t.Errorf("target output %q does not match %s", stdout.String(), want)
	}
	t.Logf("%d attempts, counters %+v", len(run.records), run.counters)
	if run.counters.Dropped != 0 {
		t.Errorf("attempts dropped: %+v", run.counters)
	}
	return run
}

// collectAttempts reads attempts for d, then stops the tracer and reads what is left.
func collectAttempts(t *testing.T, tr *ptrace.Tracer, d time.Duration) []trace.Attempt {
	t.Helper()

	stopped := make(chan error, 1)
	timer := time.AfterFunc(d, func() { stopped <- tr.Stop() })
	defer timer.Stop()

	var out []trace.Attempt
	for {
		a, err := tr.Read()
		if errors.Is(err, ptrace.ErrStopped) {
			break
		}
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		out = append(out, a)
	}
	if err := <-stopped; err != nil {
		t.Errorf("stop: %v", err)
	}
	return out
}

// byFunc groups the reasons of the records by innermost function name.
func (r *tracedRun) byFunc() map[string]map[safepoint.Reason]int {
	out := map[string]map[safepoint.Reason]int{}
	for _, rec := range r.records {
		name := "?"
		if rec.Info != nil {
			name = rec.Info.Func.Name
		}
		if out[name] == nil {
			out[name] = map[safepoint.Reason]int{}
		}
		out[name][rec.Reason]++
	}
	return out
}

// checkCommon checks what holds for every attempt: registers, the runtime as sender, a
// goroutine id when the offset is known, thread state when DWARF described it.
func (r *tracedRun) checkCommon(t *testing.T) {
	t.Helper()

	if len(r.records) == 0 {
		t.Fatal("no attempts")
	}
	for _, rec := range r.records {
		if !rec.RegsKnown || rec.DecodeErr != nil {
			t.Errorf("tid %d: registers known=%v, decode error %v", rec.TID, rec.RegsKnown,
				rec.DecodeErr)
		}
		if rec.Origin != trace.OriginRuntime {
			t.Errorf("tid %d pc %#x: sender %s, want the runtime", rec.TID, rec.PC, rec.Origin)
		}
		if rec.GoIDKnown != r.offs.Goid.Known() {
			t.Errorf("tid %d: goroutine id known=%v, offset %+v", rec.TID, rec.GoIDKnown,
				r.offs.Goid)
		}
		if rec.StateKnown != (r.offs.State != nil) {
			t.Errorf("tid %d: thread state known=%v, offsets known=%v", rec.TID, rec.StateKnown,
				r.offs.State != nil)
		}
		if rec.Runtime != trace.RuntimeUnknown {
			t.Errorf("tid %d: runtime verdict %s from a backend that cannot see it", rec.TID,
				rec.Runtime)
		}
	}
}

// spinReasons are the reasons every attempt inside each loop of the spin fixture must
// get; a user goroutine's own code can be refused by nothing else while its M is idle
// of locks, which it is in these loops.
var spinReasons = map[string]safepoint.Reason{
	"main.asmSpin":       safepoint.Assembly,
	"main.asmSpinNoPtrs": safepoint.NoPointersStackmap,
	"main.nosplitSpin":   safepoint.UnsafePoint,
}

// spinLoops and cgoLoops are the refusing loops of the spin and cgospin fixtures.
var (
	spinLoops = []string{"main.asmSpin", "main.asmSpinNoPtrs", "main.nosplitSpin"}
	cgoLoops  = []string{"main.asmSpin"}
)

// checkLoops checks the reasons in the fixture's loops: each refusing loop gets its own
// reason at every attempt the runtime asks about, and the ordinary loop is accepted
// somewhere.
func (r *tracedRun) checkLoops(t *testing.T, loops []string) {
	t.Helper()

	funcs := r.byFunc()
	for _, name := range loops {
		want := spinReasons[name]
		got := funcs[name]
		if got[want] == 0 {
			t.Errorf("%s: no attempt with reason %s; got %v", name, want, got)
		}
		for reason, n := range got {
			// A request may be withdrawn by the time its signal arrives: the goroutine
			// yielded between two calls of the loop and runs the next one.
			if reason != want && reason != safepoint.NotWanted {
				t.Errorf("%s: %d attempts with reason %s, want only %s", name, n, reason, want)
			}
		}
	}
	if funcs["main.plainSpin"][safepoint.Safe] == 0 {
		t.Errorf("main.plainSpin: no safe attempt; got %v", funcs["main.plainSpin"])
	}
}

// TestTraceToolchains traces every loop of the spin fixture built by each installed
// toolchain, and checks the function and reason of each attempt.
func TestTraceToolchains(t *testing.T) {
	testutil.RequirePtrace(t)

	for _, tc := range fixture.Toolchains(t) {
		t.Run(tc.Name, func(t *testing.T) {
			bin := fixture.Build(t, tc, "spin", fixture.Default)
			run := traceSpin(t, bin, "all", 3*time.Second, 1500*time.Millisecond)
			run.checkCommon(t)
			run.checkLoops(t, spinLoops)
		})
	}
}

// TestTraceVariants traces builds whose g lives in different places: the internal
// linker's static binary sets its own thread pointer, PIEs and externally linked ones
// get their TLS block from the dynamic loader, a cgo binary shares it with C, and a
// stripped one has neither symbols nor DWARF.
func TestTraceVariants(t *testing.T) {
	testutil.RequirePtrace(t)

	tc := fixture.Current(t)
	for _, v := range []fixture.Variant{fixture.PIE, fixture.External, fixture.ExternalPIE,
		fixture.ExternalPIEStripped, fixture.Stripped, fixture.Cgo} {
		t.Run(string(v), func(t *testing.T) {
			loops := spinLoops
			if v == fixture.Cgo {
				loops = cgoLoops
			}
			bin := fixture.Build(t, tc, "spin", v)
			run := traceSpin(t, bin, "all", 3*time.Second, 1500*time.Millisecond)
			run.checkCommon(t)
			run.checkLoops(t, loops)
		})
	}
}

// TestTraceSecret traces the ordinary loop run inside runtime/secret.Do, in a build with
// GOEXPERIMENT=runtimesecret: the runtime refuses every request there because gp.secret
// is set, and the decoder can say so only if the backend read it.
func TestTraceSecret(t *testing.T) {
	testutil.RequirePtrace(t)
	bin := fixture.Build(t, fixture.Current(t), "spin", fixture.Secret)

	run := traceSpin(t, bin, "secret", 3*time.Second, 1500*time.Millisecond)
	run.checkCommon(t)
	got := run.byFunc()["main.plainSpin"]
	if got[safepoint.Secret] == 0 {
		t.Errorf("main.plainSpin inside secret.Do: no attempt with reason secret; got %v", got)
	}
	for reason, n := range got {
		if reason != safepoint.Secret && reason != safepoint.NotWanted {
			t.Errorf("main.plainSpin inside secret.Do: %d attempts with reason %s", n, reason)
		}
	}
}
