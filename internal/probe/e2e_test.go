//go:build linux

package probe_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/preempttrace/preempttrace/internal/fixture"
	"github.com/preempttrace/preempttrace/internal/probe"
	"github.com/preempttrace/preempttrace/internal/safepoint"
	"github.com/preempttrace/preempttrace/internal/symtab"
	"github.com/preempttrace/preempttrace/internal/target"
	"github.com/preempttrace/preempttrace/internal/testutil"
	"github.com/preempttrace/preempttrace/internal/trace"
)

// spinRun is one traced run of the spin fixture.
type spinRun struct {
	pid    int
	bin    string
	f      *symtab.File
	bias   uint64
	tracer *probe.Tracer
	events []probe.Event
	lost   probe.Counters
	plan   *probe.Plan
	output string

	// state: the binary's DWARF gave the thread-state offsets, so every event has them.
	state bool

	// confirming: as with --verify, accepted requests were watched for at asyncPreempt's
	// entry, and the return each isAsyncSafePoint call left by was observed.
	confirming bool
}

// traceSpin starts "spin mode runFor", attaches to it (if confirm, as --verify does:
// confirming accepted requests at asyncPreempt's entry and observing isAsyncSafePoint's
// returns), records events for collect, detaches and waits for the
// program to exit. It checks what holds for every run: the probes patch
// the target's text while attached and not after Close, the program exits 0 with its
// summary line, and no event was lost.
//
// runFor must leave the target running well past collect, because the probe sites are
// read back from its memory after the tracer closes; attaching and detaching take up to a
// second on a loaded machine.
func traceSpin(t *testing.T, bin, mode string, confirm bool, runFor,
	collect time.Duration) *spinRun {
	t.Helper()

	f, err := symtab.Open(bin)
	if err != nil {
		t.Fatalf("decode %s: %v", bin, err)
	}
	t.Cleanup(func() { f.Close() })
	offs, err := target.FindRuntimeOffsets(bin, f.Version())
	if err != nil {
		t.Fatalf("find runtime offsets: %v", err)
	}

	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, mode, runFor.String())
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	exited := false
	t.Cleanup(func() {
		if !exited {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})

	proc, err := target.Find(cmd.Process.Pid)
	if err != nil {
		t.Fatalf("find target: %v", err)
	}
	bias, err := proc.LoadBias()
	if err != nil {
		t.Fatalf("load bias: %v", err)
	}

	tr, err := probe.Attach(probe.Options{PID: proc.PID, Symtab: f, Goid: offs.Goid,
		State: offs.State, ConfirmAccepted: confirm, ObserveReturns: confirm})
	if err != nil {
		t.Fatalf("attach: %v", err)
	}
	closed := false
	defer func() {
		if !closed {
			tr.Close()
		}
	}()
	for _, pl := range tr.Plan().Placements() {
		t.Logf("probe %-7s %#x %-28s emulated=%v: %s", pl.Site, pl.Addr, pl.Insn, pl.Emulated,
			pl.Why)
		checkText(t, proc.PID, f, bias, pl, true)
	}
	for _, m := range tr.Plan().Missing {
		t.Logf("probe left out: %s", m)
	}

	if confirm && (tr.Plan().Entered == nil || tr.Plan().Returns == nil) {
		t.Fatalf("asyncPreempt's entry or isAsyncSafePoint's returns not placed: %q",
			tr.Plan().Missing)
	}
	run := &spinRun{pid: proc.PID, bin: bin, f: f, bias: bias, tracer: tr, plan: tr.Plan(),
		state: offs.State != nil, confirming: confirm}
	run.events = collectEvents(t, tr, collect)

	run.lost, err = tr.Counters()
	if err != nil {
		t.Fatalf("counters: %v", err)
	}
	if err := tr.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	closed = true
	if _, err := tr.Read(); !errors.Is(err, probe.ErrClosed) {
		t.Errorf("Read after Close = %v, want ErrClosed", err)
	}
	for _, pl := range tr.Plan().Placements() {
		checkText(t, proc.PID, f, bias, pl, false)
	}

	err = cmd.Wait()
	exited = true
	run.output = stdout.String()
	if err != nil {
		t.Fatalf("target: %v\nstdout: %s\nstderr: %s", err, stdout.String(), stderr.String())
	}
	want := regexp.MustCompile(`(?m)^spin: mode=` + mode + ` duration=` +
		regexp.QuoteMeta(runFor.String()) + ` loop-calls=\d+ allocs=\d+ gc-cycles=\d+ `)
	if !want.MatchString(run.output) {
		t.Errorf("target output %q does not match %s", run.output, want)
	}

	t.Logf("%d events, counters %+v", len(run.events), run.lost)
	if run.lost.Lost() != 0 {
		t.Errorf("events lost: %+v", run.lost)
	}
	return run
}

// collectEvents reads events for d, then stops the tracer and drains the ring.
func collectEvents(t *testing.T, tr *probe.Tracer, d time.Duration) []probe.Event {
	t.Helper()

	var events []probe.Event
	tr.SetDeadline(time.Now().Add(d))
	for {
		ev, err := tr.Read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		events = append(events, ev)
	}

	if err := tr.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	tr.SetDeadline(time.Time{})
	for {
		ev, err := tr.Read()
		if errors.Is(err, probe.ErrStopped) {
			return events
		}
		if err != nil {
			t.Fatalf("drain: %v", err)
		}
		events = append(events, ev)
	}
}

// checkText reads the first byte of a probed instruction from the live process: the file's
// byte once the probe is gone, and while it is attached an int3 (0xcc) or, for a 5-byte NOP
// on kernels that optimize such uprobes, a call (0xe8) to the kernel's uprobe trampoline.
func checkText(t *testing.T, pid int, f *symtab.File, bias uint64, pl probe.Placement,
	attached bool) {
	t.Helper()

	mem, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if err != nil {
		t.Fatalf("open target memory: %v", err)
	}
	defer mem.Close()

	got := make([]byte, 1)
	if _, err := mem.ReadAt(got, int64(bias+pl.Addr)); err != nil {
		t.Fatalf("read target text at %#x: %v", bias+pl.Addr, err)
	}

	orig := f.Bytes(pl.Addr, 5)
	want := []byte{orig[0]}
	if attached {
		want = []byte{0xcc}
		if bytes.Equal(orig, []byte{0x0f, 0x1f, 0x44, 0x00, 0x00}) {
			want = append(want, 0xe8)
		}
	}
	if !bytes.Contains(want, got) {
		t.Errorf("%s probe, attached=%v: text byte at %#x is %#x, want one of %#x", pl.Site,
			attached, pl.Addr, got[0], want)
	}
}

// inFunc returns the events whose interrupted PC is in the named function.
func (r *spinRun) inFunc(t *testing.T, name string) []probe.Event {
	t.Helper()

	var out []probe.Event
	for _, ev := range r.events {
		if !ev.Has(probe.EventRegs) {
			t.Errorf("event without registers: %+v", ev)
			continue
		}
		fn, err := r.f.FuncAt(ev.Pc - r.bias)
		if err == nil && fn.Name == name {
			out = append(out, ev)
		}
	}
	return out
}

// checkCommon checks what every event of a run must show. A goroutine id of 0 is valid:
// it is g0, the scheduler of the interrupted thread.
func (r *spinRun) checkCommon(t *testing.T, wantGoid bool) {
	t.Helper()

	if len(r.events) == 0 {
		t.Fatalf("no events")
	}
	for _, ev := range r.events {
		if int(ev.Pid) != r.pid {
			t.Errorf("event of pid %d, want %d", ev.Pid, r.pid)
		}
		if id, ok := ev.GoroutineID(); ok != wantGoid {
			t.Errorf("goroutine id %d known=%v, want known=%v", id, ok, wantGoid)
		}
		if ev.Has(probe.EventState) != r.state {
			t.Errorf("thread state known=%v, want known=%v", ev.Has(probe.EventState), r.state)
		}
		if ev.VerdictNs < ev.TimeNs {
			t.Errorf("verdict at %d before entry at %d", ev.VerdictNs, ev.TimeNs)
		}
	}
}

// decoder returns a decoder of the run's events, with the rules of the fixture's release.
func (r *spinRun) decoder(t *testing.T) *trace.Decoder {
	t.Helper()
	rules, err := safepoint.For(r.f.Version())
	if err != nil {
		t.Fatalf("rules: %v", err)
	}
	return trace.NewDecoder(r.f, rules, r.bias)
}

// checkDecoded decodes every event with package trace, which compares the runtime's verdict
// (and, when confirming, the check its return showed)
// with the safe-point rules applied to the PC: the two must never contradict each other.
func (r *spinRun) checkDecoded(t *testing.T) {
	t.Helper()

	d := r.decoder(t)

	reasons := map[string]int{}
	mismatches, unreturned := 0, 0
	for i := range r.events {
		rec := d.Decode(r.tracer.Attempt(&r.events[i]))
		reasons[rec.Runtime.String()+"/"+rec.Reason.String()]++

		// Every request the runtime decided on left isAsyncSafePoint by a probed return.
		decided := rec.Runtime == trace.RuntimeRefused || rec.Runtime == trace.RuntimeAccepted
		if r.confirming && decided && !rec.RuntimeReasonKnown {
			unreturned++
		}
		if rec.Attempt.GoIDKnown != r.events[i].Has(probe.EventGoid) {
			t.Errorf("attempt goid known=%v, event flags %#x", rec.Attempt.GoIDKnown,
				r.events[i].Flags)
		}
		if !rec.Mismatch {
			continue
		}
		mismatches++
		if mismatches <= 10 {
			fn := "?"
			if rec.Info != nil {
				fn = rec.Info.Innermost().Func
			}
			t.Errorf("pc %#x in %s: %s", rec.PC-r.bias, fn, rec.Why)
		}
	}
	t.Logf("runtime verdict/decoded reason: %v; %d mismatches", reasons, mismatches)
	if unreturned > 0 {
		t.Errorf("%d decided requests without the return isAsyncSafePoint left by", unreturned)
	}
}

// verdicts counts the events of each verdict, for the log.
func verdicts(events []probe.Event) string {
	n := map[probe.Verdict]int{}
	for _, ev := range events {
		n[ev.RuntimeVerdict()]++
	}
	var parts []string
	for _, v := range []probe.Verdict{probe.VerdictRefused, probe.VerdictAccepted,
		probe.VerdictNotWanted, probe.VerdictUnknown} {
		parts = append(parts, fmt.Sprintf("%s=%d", v, n[v]))
	}
	return strings.Join(parts, " ")
}

// TestAttachSpin traces the spin fixture of the current toolchain, as a plain executable, a
// PIE and a stripped external PIE, and checks the runtime's verdicts against what the loops
// are: a nosplit loop is never preempted asynchronously, an ordinary loop is, at the PC it
// was interrupted at. The stripped build has no DWARF; its goroutine ids come from the
// release table.
func TestAttachSpin(t *testing.T) {
	testutil.RequireBPF(t)
	tc := fixture.Current(t)

	tests := []struct {
		variant fixture.Variant
		mode    string
		confirm bool
		check   func(*testing.T, *spinRun)
	}{
		{fixture.Default, "nosplit", false, checkNosplit},
		{fixture.Default, "plain", false, checkPlain},
		{fixture.Default, "plain", true, checkPlain},
		{fixture.PIE, "nosplit", false, checkNosplit},
		{fixture.PIE, "plain", true, checkPlain},
		{fixture.ExternalPIEStripped, "nosplit", false, checkNosplit},
		{fixture.ExternalPIEStripped, "plain", true, checkPlain},
	}
	for _, tt := range tests {
		name := string(tt.variant) + "/" + tt.mode
		if tt.confirm {
			name += "/confirm"
		}
		t.Run(name, func(t *testing.T) {
			bin := fixture.Build(t, tc, "spin", tt.variant)
			run := traceSpin(t, bin, tt.mode, tt.confirm, 4*time.Second, 1500*time.Millisecond)
			// Stripped builds take the goid offset from the release table.
			run.checkCommon(t, true)
			run.checkDecoded(t)
			tt.check(t, run)
		})
	}
}

// checkNosplit checks that the runtime refused every request it evaluated in
// main.nosplitSpin. A request may also be no longer wanted by the time its signal arrives:
// the goroutine yielded between two calls of the loop and is running the next one.
func checkNosplit(t *testing.T, run *spinRun) {
	t.Helper()

	in := run.inFunc(t, "main.nosplitSpin")
	t.Logf("main.nosplitSpin: %d of %d events: %s", len(in), len(run.events), verdicts(in))
	refused := 0
	for _, ev := range in {
		switch ev.RuntimeVerdict() {
		case probe.VerdictRefused:
			refused++
		case probe.VerdictNotWanted:
		default:
			t.Errorf("nosplit pc %#x: verdict %s, want refused", ev.Pc-run.bias,
				ev.RuntimeVerdict())
		}
		if fromRT, ok := ev.FromRuntime(); !ok || !fromRT {
			t.Errorf("nosplit pc %#x: si_code %d, want SI_TKILL", ev.Pc-run.bias, ev.SiCode)
		}
	}
	if refused == 0 {
		t.Fatalf("no refused event in main.nosplitSpin; all: %s", verdicts(run.events))
	}
}

// checkPlain checks that requests in main.plainSpin were accepted and resume where they
// were interrupted. When accepted requests were watched for, each was seen entering
// asyncPreempt with that PC as its return address, but those under way when tracing
// stopped.
func checkPlain(t *testing.T, run *spinRun) {
	t.Helper()

	in := run.inFunc(t, "main.plainSpin")
	t.Logf("main.plainSpin: %d of %d events: %s", len(in), len(run.events), verdicts(in))
	accepted, entered := 0, 0
	for _, ev := range in {
		if ev.RuntimeVerdict() != probe.VerdictAccepted {
			continue
		}
		accepted++
		if ev.ResumePc != ev.Pc {
			t.Errorf("accepted at pc %#x: resume pc %#x, want the same", ev.Pc-run.bias,
				ev.ResumePc-run.bias)
		}
		if ev.Has(probe.EventEntered) {
			entered++
			checkEntered(t, run, &ev)
		}
		if ev.Has(probe.EventEntryMissed) {
			t.Errorf("accepted at pc %#x: asyncPreempt's entry missed", ev.Pc-run.bias)
		}
	}
	if accepted == 0 {
		t.Fatalf("no accepted event in main.plainSpin; all: %s", verdicts(run.events))
	}

	// At most one request per thread can still be on its way when the probes go.
	t.Logf("%d of %d accepted seen entering asyncPreempt", entered, accepted)
	if run.confirming && accepted-entered > 2 {
		t.Errorf("%d accepted requests not seen entering asyncPreempt", accepted-entered)
	}
	if !run.confirming && entered != 0 {
		t.Errorf("%d events confirmed without the entered probe", entered)
	}
}

// checkEntered checks an accepted event seen entering asyncPreempt: after its verdict, with
// the resume PC as the return address pushCall left on the goroutine's stack, below the SP
// the signal interrupted.
func checkEntered(t *testing.T, run *spinRun, ev *probe.Event) {
	t.Helper()

	if ev.EnteredRet != ev.ResumePc {
		t.Errorf("accepted at pc %#x: asyncPreempt returns to %#x, want the resume pc %#x",
			ev.Pc-run.bias, ev.EnteredRet-run.bias, ev.ResumePc-run.bias)
	}
	if ev.EnteredNs < ev.VerdictNs {
		t.Errorf("accepted at pc %#x: entered at %d before the verdict at %d",
			ev.Pc-run.bias, ev.EnteredNs, ev.VerdictNs)
	}
}

// TestAttachToolchains traces the loops of every installed toolchain's spin fixture, so
// that probe placement is checked on each release's machine code: the nosplit and plain
// loops alone, then all loops together, the two assembly ones among them.
func TestAttachToolchains(t *testing.T) {
	testutil.RequireBPF(t)

	for _, tc := range fixture.Toolchains(t) {
		t.Run(tc.Name, func(t *testing.T) {
			bin := fixture.Build(t, tc, "spin", fixture.Default)

			run := traceSpin(t, bin, "nosplit", true, 4*time.Second, time.Second)
			run.checkCommon(t, true)
			run.checkDecoded(t)
			checkNosplit(t, run)

			run = traceSpin(t, bin, "plain", true, 4*time.Second, time.Second)
			run.checkCommon(t, true)
			run.checkDecoded(t)
			checkPlain(t, run)

			run = traceSpin(t, bin, "all", true, 4*time.Second, time.Second)
			run.checkCommon(t, true)
			run.checkDecoded(t)
			run.checkRefusedIn(t, "main.asmSpin", safepoint.Assembly)
			run.checkRefusedIn(t, "main.asmSpinNoPtrs", safepoint.NoPointersStackmap)
		})
	}
}

// checkRefusedIn checks that the runtime refused requests in the named loop, never accepted
// one, and that the decoder gives every PC of it the reason want. Whether the runtime's
// deciding check agrees is checkDecoded's part.
func (r *spinRun) checkRefusedIn(t *testing.T, name string, want safepoint.Reason) {
	t.Helper()

	d := r.decoder(t)

	in := r.inFunc(t, name)
	t.Logf("%s: %d of %d events: %s", name, len(in), len(r.events), verdicts(in))
	refused := 0
	for i := range in {
		switch in[i].RuntimeVerdict() {
		case probe.VerdictRefused:
			refused++
		case probe.VerdictNotWanted:
			// The goroutine was between two calls of the loop: no PC rule was applied,
			// and the decoder's reason says not-wanted.
			continue
		default:
			t.Errorf("%s pc %#x: runtime verdict %s, want refused", name, in[i].Pc-r.bias,
				in[i].RuntimeVerdict())
		}
		if rec := d.Decode(r.tracer.Attempt(&in[i])); rec.Reason != want {
			t.Errorf("%s pc %#x: decoded reason %s, want %s", name, in[i].Pc-r.bias,
				rec.Reason, want)
		}
	}
	if refused == 0 {
		t.Errorf("no refused event in %s; all: %s", name, verdicts(r.events))
	}
}

// openSpin builds the current toolchain's spin fixture and decodes it, closed when the test
// ends.
func openSpin(t *testing.T) (string, *symtab.File) {
	t.Helper()
	bin := fixture.Build(t, fixture.Current(t), "spin", fixture.Default)
	f, err := symtab.Open(bin)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	return bin, f
}

// TestStopWhileReading stops the tracer from another goroutine while Read is blocked, as a
// command does on Ctrl-C: Read must drain and return ErrStopped within the read latency.
func TestStopWhileReading(t *testing.T) {
	testutil.RequireBPF(t)
	bin, f := openSpin(t)

	cmd := exec.Command(bin, "nosplit", "2s")
	if err := cmd.Start(); err != nil {
		t.Fatalf("start: %v", err)
	}
	defer cmd.Wait()

	tr, err := probe.Attach(probe.Options{PID: cmd.Process.Pid, Symtab: f})
	if err != nil {
		t.Fatalf("attach: %v", err)
	}
	defer tr.Close()

	type result struct {
		n   int
		err error
	}
	done := make(chan result)
	go func() {
		n := 0
		for {
			ev, err := tr.Read()
			if err != nil {
				done <- result{n, err}
				return
			}
			if _, known := ev.GoroutineID(); known {
				t.Errorf("goroutine id known without a goid offset")
			}
			n++
		}
	}()

	time.Sleep(500 * time.Millisecond)
	stopped := time.Now()
	if err := tr.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}

	select {
	case r := <-done:
		if !errors.Is(r.err, probe.ErrStopped) || r.n == 0 {
			t.Fatalf("Read returned %v after %d events, want ErrStopped after some", r.err, r.n)
		}
		t.Logf("%d events; Read returned %v %v after Stop", r.n, r.err,
			time.Since(stopped).Round(time.Millisecond))
	case <-time.After(5 * time.Second):
		t.Fatalf("Read still blocked 5s after Stop")
	}
}

// TestReadWakesUp checks that a Read waiting for records ends when it should, and not only
// when its read latency has passed: at the caller's deadline, on Stop and on Close. The
// latency is set far beyond the test's bounds, so each bound fails if a wakeup is missed.
func TestReadWakesUp(t *testing.T) {
	testutil.RequireBPF(t)
	bin, f := openSpin(t)

	const latency, bound = 10 * time.Second, 2 * time.Second
	attach := func(t *testing.T) *probe.Tracer {
		cmd := exec.Command(bin, "all", "20s")
		if err := cmd.Start(); err != nil {
			t.Fatalf("start: %v", err)
		}
		t.Cleanup(func() {
			cmd.Process.Kill()
			cmd.Wait()
		})
		tr, err := probe.Attach(probe.Options{PID: cmd.Process.Pid, Symtab: f,
			Latency: latency})
		if err != nil {
			t.Fatalf("attach: %v", err)
		}
		t.Cleanup(func() { tr.Close() })
		if !tr.WaitsInPoller() {
			t.Errorf("Read waits in a system call of its own, not in the network poller")
		}
		return tr
	}

	// readUntilError reads in a goroutine and sends the error that ended it.
	readUntilError := func(tr *probe.Tracer) <-chan error {
		done := make(chan error, 1)
		go func() {
			for {
				if _, err := tr.Read(); err != nil {
					done <- err
					return
				}
			}
		}()
		return done
	}
	wantWithin := func(t *testing.T, done <-chan error, from time.Time, want error) {
		t.Helper()
		select {
		case err := <-done:
			if !errors.Is(err, want) {
				t.Fatalf("Read returned %v, want %v", err, want)
			}
			t.Logf("Read returned %v after %v", err, time.Since(from).Round(time.Millisecond))
		case <-time.After(bound):
			t.Fatalf("Read still waiting %v later, with a read latency of %v", bound, latency)
		}
	}

	t.Run("deadline", func(t *testing.T) {
		tr := attach(t)
		from := time.Now()
		tr.SetDeadline(from.Add(300 * time.Millisecond))
		wantWithin(t, readUntilError(tr), from, os.ErrDeadlineExceeded)
	})
	for _, end := range []struct {
		name string
		call func(*probe.Tracer) error
		want error
	}{
		{"stop", (*probe.Tracer).Stop, probe.ErrStopped},
		{"close", (*probe.Tracer).Close, probe.ErrClosed},
	} {
		t.Run(end.name, func(t *testing.T) {
			tr := attach(t)
			done := readUntilError(tr)
			time.Sleep(300 * time.Millisecond)
			from := time.Now()
			if err := end.call(tr); err != nil {
				t.Fatalf("%s: %v", end.name, err)
			}
			wantWithin(t, done, from, end.want)
		})
	}
}

// TestAttachOtherBuild checks that Attach refuses a symbol table of another build than the
// running executable, instead of placing probes at offsets that mean nothing there.
func TestAttachOtherBuild(t *testing.T) {
	testutil.RequireBPF(t)
	tc := fixture.Current(t)
	running := fixture.Build(t, tc, "spin", fixture.Default)
	other, err := symtab.Open(fixture.Build(t, tc, "spin", fixture.PIE))
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	defer other.Close()

	cmd := exec.Command(running, "plain", "1s")
	if err := cmd.Start(); err != nil {
		t.Fatalf("start: %v", err)
	}
	defer cmd.Wait()

	tr, err := probe.Attach(probe.Options{PID: cmd.Process.Pid, Symtab: other})
	if err == nil {
		tr.Close()
	}
	if !errors.Is(err, probe.ErrOtherBuild) {
		t.Fatalf("Attach with another build's symbol table = %v, want ErrOtherBuild", err)
	}
	t.Logf("refused: %v", err)
}

// TestAttachSecret traces the ordinary loop run inside runtime/secret.Do, in a build with
// GOEXPERIMENT=runtimesecret: every PC there is a safe point, yet the runtime refuses each
// request because gp.secret is set. The probe must read gp.secret so that the decoder
// gives that reason, not "unknown", and agrees with the runtime.
func TestAttachSecret(t *testing.T) {
	testutil.RequireBPF(t)
	bin := fixture.Build(t, fixture.Current(t), "spin", fixture.Secret)

	run := traceSpin(t, bin, "secret", true, 4*time.Second, 1500*time.Millisecond)
	run.checkCommon(t, true)
	run.checkDecoded(t)

	rules, err := safepoint.For(run.f.Version())
	if err != nil {
		t.Fatal(err)
	}
	d := trace.NewDecoder(run.f, rules, run.bias)
	in := run.inFunc(t, "main.plainSpin")
	t.Logf("main.plainSpin: %d of %d events: %s", len(in), len(run.events), verdicts(in))
	refused := 0
	for i := range in {
		ev := &in[i]
		switch ev.RuntimeVerdict() {
		case probe.VerdictNotWanted:
			continue
		case probe.VerdictRefused:
		default:
			t.Fatalf("pc %#x inside secret.Do: verdict %s, want refused", ev.Pc-run.bias,
				ev.RuntimeVerdict())
		}
		refused++
		if !ev.Has(probe.EventSecret) || ev.Secret <= 0 {
			t.Errorf("pc %#x: gp.secret known=%v value %d, want a positive one",
				ev.Pc-run.bias, ev.Has(probe.EventSecret), ev.Secret)
		}
		if rec := d.Decode(run.tracer.Attempt(ev)); rec.Reason != safepoint.Secret {
			t.Errorf("pc %#x: reason %s, want secret", ev.Pc-run.bias, rec.Reason)
		}
	}
	if refused == 0 {
		t.Fatalf("no refused attempt inside secret.Do; all: %s", verdicts(run.events))
	}
}
