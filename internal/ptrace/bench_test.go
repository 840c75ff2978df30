//go:build linux

package ptrace_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/preempttrace/preempttrace/internal/fixture"
	"github.com/preempttrace/preempttrace/internal/probe"
	"github.com/preempttrace/preempttrace/internal/ptrace"
	"github.com/preempttrace/preempttrace/internal/safepoint"
	"github.com/preempttrace/preempttrace/internal/symtab"
	"github.com/preempttrace/preempttrace/internal/target"
	"github.com/preempttrace/preempttrace/internal/testutil"
	"github.com/preempttrace/preempttrace/internal/trace"
)

// The benchmarks in this file run one target three ways in the same benchmark run:
// untraced, under the eBPF backend and under the ptrace backend. Each round runs the three
// in an order rotated by one from the round before, so that over backendRounds rounds each
// backend is first, second and last once and a slow phase of a shared machine does not
// land on one backend only. Ratios are taken inside a round and their median reported.

// backendRounds is how many rounds of the three runs each benchmark does at least.
const backendRounds = 3

// backendSignals is the number of SIGURGs one run of the sigurg program sends itself:
// enough that an untraced run lasts some tens of milliseconds and averages out scheduling.
const backendSignals = 20000

// backendWindow is how long the throughput program counts its work in each run.
const backendWindow = time.Second

// minEventShare is the share of the signals sent for which a tracer must report an
// attempt; fewer means it lost some.
const minEventShare = 0.99

// backend is how a run treats its target.
type backend int

const (
	backendNone backend = iota
	backendBPF
	backendPtrace
)

func (k backend) String() string { return [...]string{"untraced", "ebpf", "ptrace"}[k] }

// rotation returns the order of the three runs in round r.
func rotation(r int) []backend {
	all := []backend{backendNone, backendBPF, backendPtrace}
	out := make([]backend, len(all))
	for i := range all {
		out[i] = all[(i+r)%len(all)]
	}
	return out
}

// BenchmarkBackendsSIGURG measures what each backend adds to one SIGURG, on the sigurg
// program of the eBPF backend's BenchmarkSIGURG: it locks itself to one thread, sends itself
// backendSignals SIGURGs with tgkill and prints the mean ns per signal. Under eBPF each
// signal runs the probes in its handler; under ptrace it stops the thread before the handler,
// and the thread waits for the tracer to read its registers and state and resume it.
//
// Metrics: per backend, the median over rounds of ns/sigurg and of the µs it adds to an
// untraced run of the same round, and the median of the rounds' ratio
// ptrace-added/ebpf-added; per tracer, the attempts reported per signal sent, which every
// run must bring to minEventShare at least. It can exceed 1: a run that lasts long, as
// under ptrace, also gets sysmon's requests to preempt the signalling goroutine, which
// runs without a break. The standard ns/op covers all runs and process start-up, and is
// not meaningful.
func BenchmarkBackendsSIGURG(b *testing.B) {
	testutil.RequirePtrace(b)
	testutil.RequireBPF(b)
	p := openBenchProgram(b, buildProbeTestdata(b, "sigurg"))

	var ns, events [3][]float64
	for r := range max(backendRounds, (b.N+backendSignals-1)/backendSignals) {
		for _, k := range rotation(r) {
			v, n := runSigurg(b, p, k)
			ns[k] = append(ns[k], v)
			if k == backendNone {
				continue
			}

			share := float64(n) / backendSignals
			events[k] = append(events[k], share)
			if share < minEventShare {
				b.Errorf("round %d: %s reported %d attempts for %d signals: it lost some",
					r, k, n, backendSignals)
			}
		}
	}
	b.Logf("ns/sigurg by round: untraced %.0f, ebpf %.0f, ptrace %.0f", ns[backendNone],
		ns[backendBPF], ns[backendPtrace])
	reportSigurg(b, ns, events)
}

// reportSigurg reports BenchmarkBackendsSIGURG's metrics from the ns per signal and the
// attempts per signal of each backend's runs, round by round.
func reportSigurg(b *testing.B, ns, events [3][]float64) {
	var added [3][]float64
	var ratios []float64
	for r := range ns[backendNone] {
		for _, k := range []backend{backendBPF, backendPtrace} {
			added[k] = append(added[k], (ns[k][r]-ns[backendNone][r])/1000)
		}
		ratios = append(ratios, added[backendPtrace][r]/added[backendBPF][r])
	}

	for _, k := range []backend{backendNone, backendBPF, backendPtrace} {
		b.ReportMetric(medianOf(ns[k]), k.String()+"-ns/sigurg")
	}
	for _, k := range []backend{backendBPF, backendPtrace} {
		b.ReportMetric(medianOf(added[k]), k.String()+"-added-µs/sigurg")
		b.ReportMetric(meanOf(events[k]), k.String()+"-events/sigurg")
	}
	b.ReportMetric(medianOf(ratios), "ptrace-added/ebpf-added")
}

// runSigurg runs the sigurg program once under k and returns the ns per signal it printed
// and how many attempts the tracer reported.
func runSigurg(b *testing.B, p *benchProgram, k backend) (float64, int64) {
	cmd := exec.Command(p.bin, strconv.Itoa(backendSignals))
	res := runGated(b, cmd, strings.NewReader("go\n"), k, p, false)

	v, err := strconv.ParseFloat(strings.TrimSpace(string(res.out)), 64)
	if err != nil {
		b.Fatalf("%s under %s printed %q", p.bin, k, res.out)
	}
	return v, res.attempts
}

// BenchmarkBackendsThroughput measures what each backend costs a CPU-bound target under
// natural load: the throughput program of the eBPF backend's BenchmarkThroughput, in its
// natural mode, runs one preemptible loop per CPU and an allocating goroutine, so that the
// garbage collector and sysmon send SIGURG at their own rate, and counts the iterations done
// in backendWindow. Each tracer's reader decodes every attempt and adds it to a summary, as
// the command line does.
//
// The ratios that matter are per wall second: a thread that ptrace holds stopped uses no
// CPU, so work per CPU second of the target cannot show the ptrace backend's main cost,
// and the tracers' own CPU, which competes with the target on a loaded machine, belongs to
// the cost too. Work per CPU second is reported beside them because it leaves out other
// processes' noise and keeps what runs on the target's threads, the eBPF probes' cost.
//
// Metrics: per backend, the mean work rate; per tracer, the median over rounds of traced
// against untraced work per wall second and per CPU second of the target, the attempts it
// reported per second of window and the CPU this test process used per second of window
// (mostly the tracer's).
func BenchmarkBackendsThroughput(b *testing.B) {
	testutil.RequirePtrace(b)
	testutil.RequireBPF(b)
	p := openBenchProgram(b, buildProbeTestdata(b, "throughput"))

	var runs [3][]throughputRun
	for r := range max(backendRounds, b.N) {
		for _, k := range rotation(r) {
			runs[k] = append(runs[k], runThroughput(b, p, k))
		}
	}

	for _, k := range []backend{backendNone, backendBPF, backendPtrace} {
		b.Logf("%s: work/s %.4g, attempts/s %.0f", k, mapRuns(runs[k], throughputRun.rate),
			mapRuns(runs[k], throughputRun.attemptRate))
		b.ReportMetric(meanOf(mapRuns(runs[k], throughputRun.rate))/1e6, k.String()+"-Mwork/s")
	}
	for _, k := range []backend{backendBPF, backendPtrace} {
		name := k.String()
		b.ReportMetric(medianRatio(runs[k], runs[backendNone], throughputRun.rate),
			name+"/untraced")
		b.ReportMetric(medianRatio(runs[k], runs[backendNone], throughputRun.cpuRate),
			name+"/untraced-per-cpu-s")
		b.ReportMetric(meanOf(mapRuns(runs[k], throughputRun.attemptRate)), name+"-attempts/s")
		b.ReportMetric(meanOf(mapRuns(runs[k], throughputRun.tracerRate))*1000,
			name+"-tracer-cpu-ms/s")
	}
}

// throughputRun is one run of the throughput program.
type throughputRun struct {
	secs      float64 // the program's window
	work      uint64  // loop iterations in the window
	user, sys float64 // the target's CPU seconds in the window
	attempts  int64   // attempts reported from the window's start on
	tracerCPU float64 // CPU seconds this process used from "go" to the target's exit
}

func (r throughputRun) rate() float64        { return float64(r.work) / r.secs }
func (r throughputRun) cpuRate() float64     { return float64(r.work) / (r.user + r.sys) }
func (r throughputRun) attemptRate() float64 { return float64(r.attempts) / r.secs }
func (r throughputRun) tracerRate() float64  { return r.tracerCPU / r.secs }

// runThroughput runs the throughput program for one window under k.
func runThroughput(b *testing.B, p *benchProgram, k backend) throughputRun {
	cmd := exec.Command(p.bin, "natural", backendWindow.String())
	res := runGated(b, cmd, strings.NewReader("go\n"), k, p, true)
	run := throughputRun{attempts: res.attempts, tracerCPU: res.cpu}

	var mode string
	var sent, gcs uint64
	_, err := fmt.Sscanf(string(res.out),
		"throughput: mode=%s seconds=%g work=%d sigurg-sent=%d gc-cycles=%d user=%g sys=%g",
		&mode, &run.secs, &run.work, &sent, &gcs, &run.user, &run.sys)
	if err != nil || run.secs <= 0 || run.user+run.sys <= 0 {
		b.Fatalf("%s under %s printed %q: %v", p.bin, k, res.out, err)
	}
	return run
}

// esbuildRounds is how many rounds BenchmarkBackendsEsbuild runs: one minify takes about
// 1.5 s on a 2-CPU machine, and each round runs three.
const esbuildRounds = backendRounds

// BenchmarkBackendsEsbuild times a real third-party Go program under each backend: the
// newest esbuild release of the registry (today its Go 1.25 build, stripped and without
// build info) minifies a large generated module read from its standard input, which it
// starts reading only once the tracer is attached. Each run's output must equal the
// untraced one.
//
// Metrics: per backend, the median wall time of a minify and the attempts reported per run;
// per tracer, the median over rounds of traced against untraced wall time.
func BenchmarkBackendsEsbuild(b *testing.B) {
	testutil.RequirePtrace(b)
	testutil.RequireBPF(b)
	bin := newestEsbuild(b)
	p := openBenchProgram(b, bin)
	input := minifyInput()
	b.Logf("%s: %s, thread state offsets known: %v", filepath.Base(bin), p.f.Version(),
		p.offs.State != nil)

	// The first run reads the binary into the page cache; it only gives the output that
	// every timed run must reproduce.
	minify := func(k backend) gatedRun {
		return runGated(b, exec.Command(bin, "--minify"), bytes.NewReader(input), k, p, true)
	}
	want := minify(backendNone).out

	var secs [3][]float64
	var attempts [3]float64
	for r := range max(esbuildRounds, b.N) {
		for _, k := range rotation(r) {
			res := minify(k)
			if !bytes.Equal(res.out, want) {
				b.Errorf("esbuild's output under %s differs from the untraced one", k)
			}
			secs[k] = append(secs[k], res.wall.Seconds())
			attempts[k] += float64(res.attempts)
		}
	}

	for _, k := range []backend{backendNone, backendBPF, backendPtrace} {
		b.Logf("%s: minify s %.3f", k, secs[k])
		b.ReportMetric(medianOf(secs[k]), k.String()+"-s/minify")
	}
	for _, k := range []backend{backendBPF, backendPtrace} {
		var ratios []float64
		for r := range secs[k] {
			ratios = append(ratios, secs[k][r]/secs[backendNone][r])
		}
		b.ReportMetric(medianOf(ratios), k.String()+"/untraced-wall")
		b.ReportMetric(attempts[k]/float64(len(secs[k])), k.String()+"-attempts/minify")
	}
}

// newestEsbuild returns the amd64 esbuild of the registry built by the newest Go release.
func newestEsbuild(b *testing.B) string {
	var best fixture.RegistryBinary
	for _, r := range fixture.Registry(b) {
		if strings.Contains(r.ID, "esbuild") && r.Arch == "amd64" && r.ID > best.ID {
			best = r
		}
	}
	if best.ID == "" {
		b.Skip("no amd64 esbuild in the registry cache")
	}
	return best.Path
}

// minifyInput returns a JavaScript module of small exported functions, about 4 MB, big
// enough that esbuild collects garbage while minifying it.
func minifyInput() []byte {
	var buf bytes.Buffer
	for i := range 40000 {
		fmt.Fprintf(&buf, "export function g%d(p, q) { let y = p + %d * q; "+
			"return y < %d ? {v: y, s: \"t%d\"} : [y, %d]; }\n", i, i, i, i, i)
	}
	return buf.Bytes()
}

// benchProgram is a target binary, decoded once for all its runs.
type benchProgram struct {
	bin   string
	f     *symtab.File
	offs  target.RuntimeOffsets
	rules *safepoint.Rules
}

// openBenchProgram decodes bin and finds what both tracers need to know about it.
func openBenchProgram(b *testing.B, bin string) *benchProgram {
	f, err := symtab.Open(bin)
	if err != nil {
		b.Fatalf("decode %s: %v", bin, err)
	}
	b.Cleanup(func() { f.Close() })

	offs, err := target.FindRuntimeOffsets(bin, f.Version())
	if err != nil {
		b.Fatalf("runtime offsets: %v", err)
	}
	rules, err := safepoint.For(f.Version())
	if err != nil {
		b.Fatalf("rules: %v", err)
	}
	return &benchProgram{bin: bin, f: f, offs: offs, rules: rules}
}

// buildProbeTestdata builds the program in the eBPF backend's testdata/name, which this
// package shares rather than copies, with the current toolchain.
func buildProbeTestdata(b *testing.B, name string) string {
	tc := fixture.Current(b)
	out := filepath.Join(b.TempDir(), name)

	cmd := exec.Command(tc.GoCmd, "build", "-o", out, ".")
	cmd.Dir = filepath.Join("..", "probe", "testdata", name)
	cmd.Env = append(os.Environ(), append(tc.Env, "CGO_ENABLED=0")...)
	if msg, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("build %s: %v\n%s", name, err, msg)
	}
	return out
}

// gatedRun is what one run of a program gated on its standard input gave.
type gatedRun struct {
	out      []byte        // standard output
	wall     time.Duration // from the first byte of input to the exit
	attempts int64         // attempts the tracer reported from the first byte of input on
	cpu      float64       // CPU seconds this process used over wall, mostly the tracer's
}

// runGated starts cmd, a program that does its work only once it reads its standard
// input, attaches k's tracer to it, then feeds it input and waits for it to exit 0. The
// tracer's reader decodes each attempt when decode is set, and only counts otherwise.
func runGated(b *testing.B, cmd *exec.Cmd, input io.Reader, k backend, p *benchProgram,
	decode bool) gatedRun {
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		b.Fatalf("start %s: %v", cmd.Path, err)
	}
	// A failed attachment leaves the target waiting for its input; no tracer holds it.
	defer func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()

	var s *benchSession
	if k != backendNone {
		s = attachBackend(b, k, cmd.Process.Pid, p, decode)
		s.from.Store(time.Now().UnixNano())
	}

	start, cpu0 := time.Now(), processCPU(b)
	err = feedAndWait(cmd, stdin, input, s)
	run := gatedRun{out: stdout.Bytes(), wall: time.Since(start), cpu: processCPU(b) - cpu0}
	if s != nil {
		run.attempts = s.close(b)
	}

	// The ptrace backend's loop waits for state changes of its own thread's children as
	// well as of its tracees; when that thread is the one that started the target, which
	// is common here, the loop can take the target's exit status, and Wait finds no child.
	if k == backendPtrace && errors.Is(err, unix.ECHILD) {
		b.Fatalf("%s: the ptrace tracer took the exit status of the target it started: %v",
			cmd.Path, err)
	}
	if err != nil {
		b.Fatalf("%s under %s: %v: %s", cmd.Path, k, err, stderr.String())
	}
	return run
}

// feedAndWait writes input to the target's standard input, closes it and waits for the
// target to exit, once the tracer, if any, let go of it.
func feedAndWait(cmd *exec.Cmd, stdin io.WriteCloser, input io.Reader, s *benchSession) error {
	_, err := io.Copy(stdin, input)
	stdin.Close()
	if err != nil {
		cmd.Process.Kill()
	}

	if s != nil {
		s.tr.untilDetached()
	}
	if werr := cmd.Wait(); err == nil {
		err = werr
	}
	return err
}

// backendTracer is what the benchmarks need of either backend.
type backendTracer interface {
	// next blocks for the next attempt; it returns an error wrapping the backend's
	// ErrStopped once everything was read after Stop or the target's exit.
	next() (trace.Attempt, error)
	stop() error
	// untilDetached returns once this process may wait for the target, its child. The
	// kernel reports a traced child's stops to any thread of the tracer's process that
	// waits for it, whatever the wait's options, so a cmd.Wait while ptrace is attached
	// takes a stop the tracer never sees: Wait returns "stop signal: urgent I/O
	// condition" and the target stays stopped for good.
	untilDetached()
	// finish closes the tracer and returns how many attempts it could not report.
	finish() (lost uint64, err error)
}

// bpfTracer is the eBPF backend as a backendTracer.
type bpfTracer struct{ tr *probe.Tracer }

func (t bpfTracer) next() (trace.Attempt, error) {
	ev, err := t.tr.Read()
	if err != nil {
		return trace.Attempt{}, err
	}
	return t.tr.Attempt(&ev), nil
}

func (t bpfTracer) stop() error { return t.tr.Stop() }

func (t bpfTracer) untilDetached() {}

func (t bpfTracer) finish() (uint64, error) {
	c, err := t.tr.Counters()
	return c.Lost(), errors.Join(err, t.tr.Close())
}

// ptraceTracer is the ptrace backend as a backendTracer.
type ptraceTracer struct{ tr *ptrace.Tracer }

func (t ptraceTracer) next() (trace.Attempt, error) { return t.tr.Read() }

func (t ptraceTracer) stop() error { return t.tr.Stop() }

// untilDetached waits for the tracer to detach from the target's last thread, which it
// does as that thread exits.
func (t ptraceTracer) untilDetached() { <-t.tr.Done() }

func (t ptraceTracer) finish() (uint64, error) {
	return t.tr.Counters().Dropped, t.tr.Close()
}

// benchSession is one tracer attached to a process, with a goroutine reading every attempt.
type benchSession struct {
	k    backend
	tr   backendTracer
	done chan error // the reader's last error

	// from is the Unix time in ns from which attempts count; until it is set none does.
	from atomic.Int64

	// Written by the reader; read once done delivered.
	attempts int64
	summary  trace.Summary
}

// attachBackend attaches k's tracer to pid and starts its reader.
func attachBackend(b *testing.B, k backend, pid int, p *benchProgram,
	decode bool) *benchSession {
	var dec *trace.Decoder
	if decode {
		dec = trace.NewDecoder(p.f, p.rules, loadBias(b, pid))
	}

	s := &benchSession{k: k, tr: newBackendTracer(b, k, pid, p), done: make(chan error, 1)}
	s.from.Store(math.MaxInt64)
	go s.read(dec)
	return s
}

// newBackendTracer attaches k's backend to pid.
func newBackendTracer(b *testing.B, k backend, pid int, p *benchProgram) backendTracer {
	if k == backendBPF {
		tr, err := probe.Attach(probe.Options{PID: pid, Symtab: p.f, Goid: p.offs.Goid,
			State: p.offs.State})
		if err != nil {
			b.Fatalf("attach eBPF: %v", err)
		}
		return bpfTracer{tr}
	}

	tr, err := ptrace.Attach(ptrace.Options{PID: pid, Goid: p.offs.Goid, State: p.offs.State})
	if err != nil {
		b.Fatalf("attach ptrace: %v", err)
	}
	return ptraceTracer{tr}
}

// read reads attempts until the tracer stops, decoding each one when dec is not nil.
func (s *benchSession) read(dec *trace.Decoder) {
	for {
		a, err := s.tr.next()
		if err != nil {
			s.done <- err
			return
		}

		if a.Time.UnixNano() >= s.from.Load() {
			s.attempts++
		}
		if dec != nil {
			r := dec.Decode(a)
			s.summary.Add(&r)
		}
	}
}

// close stops the tracer, waits for the reader to drain it and closes it, and returns the
// attempts counted. A lost attempt fails the benchmark: neither backend may lose any at
// these rates.
func (s *benchSession) close(b *testing.B) int64 {
	if err := s.tr.stop(); err != nil {
		b.Errorf("stop %s: %v", s.k, err)
	}
	err := <-s.done
	if !errors.Is(err, probe.ErrStopped) && !errors.Is(err, ptrace.ErrStopped) {
		b.Errorf("read %s: %v", s.k, err)
	}

	lost, err := s.tr.finish()
	if err != nil || lost != 0 {
		b.Errorf("%s: %d attempts lost, %v", s.k, lost, err)
	}
	if s.summary.DecodeErrors != 0 {
		b.Errorf("%s: %d attempts not decoded", s.k, s.summary.DecodeErrors)
	}
	return s.attempts
}

// loadBias returns where pid's executable is loaded against its link addresses.
func loadBias(b *testing.B, pid int) uint64 {
	proc, err := target.Find(pid)
	if err != nil {
		b.Fatalf("find target: %v", err)
	}
	bias, err := proc.LoadBias()
	if err != nil {
		b.Fatalf("load bias: %v", err)
	}
	return bias
}

// processCPU returns the user and system CPU seconds this process has used.
func processCPU(b *testing.B) float64 {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// mapRuns applies f to every run.
func mapRuns(runs []throughputRun, f func(throughputRun) float64) []float64 {
	out := make([]float64, len(runs))
	for i, r := range runs {
		out[i] = f(r)
	}
	return out
}

// medianRatio returns the median over rounds of f of the traced run against f of the
// untraced run of the same round.
func medianRatio(traced, untraced []throughputRun, f func(throughputRun) float64) float64 {
	ratios := make([]float64, len(traced))
	for i := range traced {
		ratios[i] = f(traced[i]) / f(untraced[i])
	}
	return medianOf(ratios)
}

func meanOf(xs []float64) float64 {
	var sum float64
	for _, x := range xs {
		sum += x
	}
	return sum / float64(len(xs))
}

func medianOf(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 0 {
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return s[len(s)/2]
}
