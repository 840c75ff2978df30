//go:build linux

package probe_test

import (
	"bufio"
	"bytes"
	"debug/elf"
	"debug/gosym"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/preempttrace/preempttrace/internal/fixture"
	"github.com/preempttrace/preempttrace/internal/probe"
	"github.com/preempttrace/preempttrace/internal/safepoint"
	"github.com/preempttrace/preempttrace/internal/symtab"
	"github.com/preempttrace/preempttrace/internal/target"
	"github.com/preempttrace/preempttrace/internal/testutil"
	"github.com/preempttrace/preempttrace/internal/trace"
)

// throughputRounds is how many untraced and traced runs a throughput benchmark compares,
// in pairs whose order alternates, so that a slow phase of a shared machine hits both
// about equally. A round's ratio of the two varies by about ±3% on a shared 2-core VM
// while tracing costs about 1%; the median of six rounds moved by as much between runs, so
// there are ten.
const throughputRounds = 10

// throughputWindow is how long the target counts its work in each run.
const throughputWindow = time.Second

// stormRate is the SIGURGs per second the storm's signaller aims at.
const stormRate = 5000

// ringBytes is the ring buffer the throughput benchmarks give the tracer: the default of
// Options.RingBytes, set explicitly so that the figure they report is the one used.
const ringBytes = 512 << 10

// BenchmarkThroughput measures what tracing costs a CPU-bound target: the throughput
// program counts loop iterations on every CPU for throughputWindow, untraced and traced in
// turn, throughputRounds times each. The tracer's reader does what the command line does
// with each event, decoding it and adding it to a summary, without printing.
//
//   - natural: preemptible loops plus an allocating goroutine; the garbage collector and
//     sysmon send SIGURG at their own rate.
//   - storm: nosplit loops marked for preemption by sysmon, and a signaller sending about
//     stormRate SIGURG/s to them with tgkill, nearly all of which the runtime refuses.
//
// Metrics: the mean work rate of each kind of run; the median over rounds of the ratio of
// a round's traced and untraced run (traced/untraced, whose goal is 0.98 natural and 0.85
// in the storm), with the lowest and highest such ratio, and the same median for the work
// per CPU second of the target, which a busy machine disturbs less;
// the attempts the tracer saw per second of the traced windows, the share the runtime
// refused, and in the storm the signals sent; the CPU this process used per second of
// traced window, mostly the reader's; the tracer's peak RSS and how much tracing added to
// it (the peak while tracing against VmRSS before attaching, with VmHWM reset through
// /proc/self/clear_refs), with the ring buffer's size. The standard ns/op is not meaningful.
func BenchmarkThroughput(b *testing.B) {
	testutil.RequireBPF(b)
	bin := buildTestdata(b, "throughput")
	f, err := symtab.Open(bin)
	if err != nil {
		b.Fatalf("decode: %v", err)
	}
	defer f.Close()
	offs, err := target.FindRuntimeOffsets(bin, f.Version())
	if err != nil {
		b.Fatalf("runtime offsets: %v", err)
	}
	if offs.State == nil {
		b.Fatal("no thread-state offsets: the benchmark would not measure the state reads")
	}
	rules, err := safepoint.For(f.Version())
	if err != nil {
		b.Fatalf("rules: %v", err)
	}

	for _, mode := range []string{"natural", "storm"} {
		b.Run(mode, func(b *testing.B) {
			tp := &throughputBench{bin: bin, mode: mode, f: f, offs: offs, rules: rules}
			for i := 0; i < b.N; i++ {
				tp.rounds(b)
			}
			tp.report(b)
		})
	}
}

// throughputBench accumulates the runs of one BenchmarkThroughput mode.
type throughputBench struct {
	bin   string
	mode  string
	f     *symtab.File
	offs  target.RuntimeOffsets
	rules *safepoint.Rules

	untraced, traced []float64 // work per second of each run
	untracedCPU      []float64 // work per CPU second of the target, untraced
	tracedCPU        []float64 // and traced
	secs             float64   // length of the traced windows
	attempts         uint64    // attempts seen in the traced windows
	refused          uint64    // of which the runtime refused
	sent             uint64    // signals the storm's signaller sent in the traced windows
	peakKB, addedKB  uint64    // highest peak RSS while tracing, and its rise over VmRSS

	// CPU seconds per second of window: the target's system time untraced and traced,
	// and the tracer's own time while traced.
	untracedSys, tracedSys, tracerCPU []float64

	// last is the summary of the last traced run, for the log.
	last *trace.Summary
}

// rounds runs throughputRounds pairs of runs, alternating which of the pair goes first.
func (tp *throughputBench) rounds(b *testing.B) {
	for r := 0; r < throughputRounds; r++ {
		for _, traced := range [][]bool{{false, true}, {true, false}}[r%2] {
			res := tp.run(b, traced)
			if !traced {
				tp.untraced = append(tp.untraced, res.workPerSec())
				tp.untracedCPU = append(tp.untracedCPU, res.workPerCPUSec())
				tp.untracedSys = append(tp.untracedSys, res.sys/res.secs)
				continue
			}

			tp.traced = append(tp.traced, res.workPerSec())
			tp.tracedCPU = append(tp.tracedCPU, res.workPerCPUSec())
			tp.tracedSys = append(tp.tracedSys, res.sys/res.secs)
			tp.tracerCPU = append(tp.tracerCPU, res.tracerCPU/res.secs)
			tp.secs += res.secs
			tp.attempts += res.live.window
			tp.refused += res.live.refused
			tp.sent += res.sent
			tp.peakKB = max(tp.peakKB, res.peakKB)
			tp.addedKB = max(tp.addedKB, res.addedKB)
			tp.last = &res.live.summary
		}
	}
}

// report prints the metrics of every round run.
func (tp *throughputBench) report(b *testing.B) {
	var ratios, cpuRatios []float64
	for i := range tp.traced {
		ratios = append(ratios, tp.traced[i]/tp.untraced[i])
		cpuRatios = append(cpuRatios, tp.tracedCPU[i]/tp.untracedCPU[i])
	}
	b.Logf("%s: untraced work/s %.3g, traced %.3g, per-round ratios %.3f", tp.mode,
		tp.untraced, tp.traced, ratios)
	b.Logf("%s: target system CPU ms/s untraced %.0f, traced %.0f", tp.mode,
		mean(tp.untracedSys)*1000, mean(tp.tracedSys)*1000)
	b.Logf("%s: last traced run by reason %v, top %v", tp.mode, tp.last.ByReason,
		tp.last.Top(3))

	// A pair's two runs are neighbours in time; the median of the pairs' ratios is not
	// moved by the one pair that another process slowed down.
	b.ReportMetric(mean(tp.untraced)/1e6, "untraced-Mwork/s")
	b.ReportMetric(mean(tp.traced)/1e6, "traced-Mwork/s")
	b.ReportMetric(median(ratios), "traced/untraced")
	b.ReportMetric(slices.Min(ratios), "min-round-ratio")
	b.ReportMetric(slices.Max(ratios), "max-round-ratio")

	// Per CPU second of the target the ratio leaves out what other processes, the tracer's
	// reader included, take from it, and keeps what the probes cost its threads.
	b.ReportMetric(median(cpuRatios), "traced/untraced-per-cpu-s")

	b.ReportMetric(float64(tp.attempts)/tp.secs, "attempts/s")
	b.ReportMetric(float64(tp.refused)/max(float64(tp.attempts), 1), "refused-share")
	if tp.mode == "storm" {
		b.ReportMetric(float64(tp.sent)/tp.secs, "sent-sigurg/s")
	}

	b.ReportMetric(mean(tp.tracerCPU)*1000, "tracer-cpu-ms/s")

	b.ReportMetric(float64(tp.peakKB)/1024, "tracer-peak-RSS-MB")
	b.ReportMetric(float64(tp.addedKB)/1024, "tracer-added-RSS-MB")
	b.ReportMetric(ringBytes/1024, "ring-KiB")
}

// throughputResult is one run of the throughput program.
type throughputResult struct {
	secs       float64
	work, sent uint64
	user, sys  float64 // the target's CPU seconds in the window

	// Traced runs only.
	live            *liveTrace
	peakKB, addedKB uint64
	tracerCPU       float64 // this process's CPU seconds from "go" to the target's exit
}

func (r throughputResult) workPerSec() float64 { return float64(r.work) / r.secs }

func (r throughputResult) workPerCPUSec() float64 { return float64(r.work) / (r.user + r.sys) }

// run starts the throughput program, attaches the tracer when traced, lets the program
// measure one window and returns what it and the tracer counted.
func (tp *throughputBench) run(b *testing.B, traced bool) throughputResult {
	args := []string{tp.mode, throughputWindow.String()}
	if tp.mode == "storm" {
		args = append(args, strconv.Itoa(stormRate))
	}
	cmd := exec.Command(tp.bin, args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		b.Fatalf("start %s: %v", tp.bin, err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()

	// The peak resident set is reset before attaching, so that it shows what tracing
	// needs on top of what the benchmark already holds.
	var res throughputResult
	var rss0 uint64
	if traced {
		resetPeakRSS(b)
		rss0 = procStatusKB(b, "VmRSS")
		res.live = startLiveTrace(b, cmd.Process.Pid, tp.f, tp.offs, tp.rules)
		res.live.from.Store(monotonicNs(b))
	}
	cpu0 := cpuSeconds(b)
	io.WriteString(stdin, "go\n")
	stdin.Close()
	err = cmd.Wait()
	if res.live != nil {
		res.tracerCPU = cpuSeconds(b) - cpu0

		// The kernel raises VmHWM lazily, when memory is unmapped, as closing the tracer
		// does; the resident set just before counts too.
		rss := procStatusKB(b, "VmRSS")
		res.live.stop(b)
		res.peakKB = max(rss, procStatusKB(b, "VmHWM"))
		res.addedKB = res.peakKB - min(rss0, res.peakKB)
	}
	if err != nil {
		b.Fatalf("%s: %v: %s", tp.bin, err, out.String())
	}

	var mode string
	var gcs uint64
	_, err = fmt.Sscanf(out.String(),
		"throughput: mode=%s seconds=%g work=%d sigurg-sent=%d gc-cycles=%d user=%g sys=%g",
		&mode, &res.secs, &res.work, &res.sent, &gcs, &res.user, &res.sys)
	if err != nil || res.secs <= 0 || res.user+res.sys <= 0 {
		b.Fatalf("%s printed %q: %v", tp.bin, out.String(), err)
	}
	return res
}

// liveTrace is the full tracer attached to one process, with a reader that does with each
// event what the command line does: decode it and add it to a summary.
type liveTrace struct {
	tr   *probe.Tracer
	done chan error

	// from is the CLOCK_MONOTONIC time from which events count in the window; until it is
	// set, none does.
	from atomic.Uint64

	// Written by the reader; read after stop.
	summary         trace.Summary
	window, refused uint64
}

// startLiveTrace attaches the tracer to pid and starts its reader.
func startLiveTrace(b *testing.B, pid int, f *symtab.File, offs target.RuntimeOffsets,
	rules *safepoint.Rules) *liveTrace {
	proc, err := target.Find(pid)
	if err != nil {
		b.Fatalf("find target: %v", err)
	}
	bias, err := proc.LoadBias()
	if err != nil {
		b.Fatalf("load bias: %v", err)
	}
	tr, err := probe.Attach(probe.Options{PID: pid, Symtab: f, Goid: offs.Goid,
		State: offs.State, RingBytes: ringBytes})
	if err != nil {
		b.Fatalf("attach: %v", err)
	}

	lt := &liveTrace{tr: tr, done: make(chan error, 1)}
	lt.from.Store(math.MaxUint64)
	dec := trace.NewDecoder(f, rules, bias)
	go func() {
		for {
			ev, err := tr.Read()
			if err != nil {
				lt.done <- err
				return
			}

			r := dec.Decode(tr.Attempt(&ev))
			lt.summary.Add(&r)
			if ev.TimeNs >= lt.from.Load() {
				lt.window++
				if ev.RuntimeVerdict() == probe.VerdictRefused {
					lt.refused++
				}
			}
		}
	}()
	return lt
}

// stop detaches the probes, waits for the reader to drain the ring and closes the tracer.
// Lost events fail the benchmark: the ring is sized for far more than these rates.
func (lt *liveTrace) stop(b *testing.B) {
	if err := lt.tr.Stop(); err != nil {
		b.Errorf("stop: %v", err)
	}
	if err := <-lt.done; !errors.Is(err, probe.ErrStopped) {
		b.Errorf("reader: %v", err)
	}
	c, err := lt.tr.Counters()
	if err != nil || c.Lost() != 0 {
		b.Errorf("counters %+v, %v", c, err)
	}
	lt.tr.Close()
}

// monotonicNs reads CLOCK_MONOTONIC, the clock of Event.TimeNs.
func monotonicNs(b *testing.B) uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		b.Fatalf("read CLOCK_MONOTONIC: %v", err)
	}
	return uint64(ts.Nano())
}

// cpuSeconds returns the user and system CPU time this process has used.
func cpuSeconds(b *testing.B) float64 {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// resetPeakRSS sets this process's VmHWM to its current VmRSS (proc(5), clear_refs 5).
func resetPeakRSS(b *testing.B) {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		b.Fatalf("reset peak RSS: %v", err)
	}
}

// procStatusKB returns a kB field of /proc/self/status, such as VmRSS.
func procStatusKB(b *testing.B, field string) uint64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatalf("read status: %v", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		v, ok := strings.CutPrefix(line, field+":")
		if !ok {
			continue
		}
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			b.Fatalf("parse %s %q: %v", field, v, err)
		}
		return kb
	}
	b.Fatalf("no %s in /proc/self/status", field)
	return 0
}

func mean(xs []float64) float64 {
	var sum float64
	for _, x := range xs {
		sum += x
	}
	return sum / float64(len(xs))
}

// attachReps is how many times BenchmarkTimeToLive attaches to its target; medians are
// reported.
const attachReps = 5

// BenchmarkTimeToLive measures how long a tracer takes from nothing to probes live in a
// running process of a large binary: symtab.Open, FindRuntimeOffsets and Attach (preflight,
// probe planning, loading the BPF programs and placing the uprobes). Two peers are timed
// against the same running process: debug/elf plus debug/gosym merely opening the binary's
// function table, and a bare uprobe, a program that only returns, loaded and attached at the
// entry probe's site.
//
//   - generated: a program of largePackages×largeFuncs assembly functions, about 50 MB
//     with DWARF, generated and built at first use (later runs reuse the build cache).
//   - go-compile: the running toolchain's compiler, a real 25 MB binary without DWARF,
//     kept running by giving it a FIFO to compile.
//
// Metrics: cold-live-ms and cold-goid-ms, the first attachment after dropping the binary
// from the page cache; then medians of attachReps attachments with the file cached: live-ms,
// whose goal is 300, its parts open-ms, goid-ms and attach-ms, and plan-ms, the share of
// attach-ms that PlanProbes takes; the peers and live/gosym-open; the binary's size,
// functions and DWARF as stored (compressed).
func BenchmarkTimeToLive(b *testing.B) {
	testutil.RequireBPF(b)

	b.Run("generated", func(b *testing.B) {
		bin := buildLarge(b)
		cmd := exec.Command(bin)
		if _, err := cmd.StdinPipe(); err != nil {
			b.Fatal(err)
		}
		benchTimeToLive(b, bin, cmd)
	})

	b.Run("go-compile", func(b *testing.B) {
		tc := fixture.Current(b)
		goroot, err := exec.Command(tc.GoCmd, "env", "GOROOT").Output()
		if err != nil {
			b.Fatalf("go env GOROOT: %v", err)
		}
		bin := filepath.Join(strings.TrimSpace(string(goroot)), "pkg", "tool", "linux_amd64",
			"compile")

		// The compiler opens its source file first thing; a FIFO without a writer keeps it
		// blocked there, runtime started, until the process is killed.
		fifo := filepath.Join(b.TempDir(), "main.go")
		if err := unix.Mkfifo(fifo, 0o600); err != nil {
			b.Fatalf("make FIFO: %v", err)
		}
		cmd := exec.Command(bin, "-p", "main", "-o", os.DevNull, fifo)
		benchTimeToLive(b, bin, cmd)
	})
}

// benchTimeToLive starts cmd, a running process of bin, and times attaching to it: once
// with bin's pages dropped from the page cache, as its DWARF, which a program never reads
// itself, mostly is, and then attachReps times warm.
func benchTimeToLive(b *testing.B, bin string, cmd *exec.Cmd) {
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		b.Fatalf("start %s: %v", bin, err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	pid := cmd.Process.Pid

	// Let the runtime start; then the process must still be there.
	time.Sleep(100 * time.Millisecond)
	if err := syscall.Kill(pid, 0); err != nil {
		b.Fatalf("%s exited early: %v: %s", bin, err, out.String())
	}

	dropPageCache(b, bin)
	cold := timeLive(b, bin, pid)

	var live, open, goid, attach, plan, gosymOpen, bare []float64
	for i := 0; i < max(b.N, attachReps); i++ {
		t := timeLive(b, bin, pid)
		live = append(live, ms(t.open+t.goid+t.attach))
		open = append(open, ms(t.open))
		goid = append(goid, ms(t.goid))
		attach = append(attach, ms(t.attach))
		plan = append(plan, ms(t.plan))

		start := time.Now()
		if n := gosymFuncs(b, bin); n == 0 {
			b.Fatalf("debug/gosym found no functions in %s", bin)
		}
		gosymOpen = append(gosymOpen, ms(time.Since(start)))

		start = time.Now()
		detach := attachNoop(b, bin, pid, noopProgram(b), t.entryOff)
		bare = append(bare, ms(time.Since(start)))
		detach()
	}

	b.Logf("%s: cold live ms %.1f (goid %.1f); warm live ms %.1f, gosym-open ms %.1f",
		filepath.Base(bin), ms(cold.open+cold.goid+cold.attach), ms(cold.goid), live,
		gosymOpen)
	b.ReportMetric(ms(cold.open+cold.goid+cold.attach), "cold-live-ms")
	b.ReportMetric(ms(cold.goid), "cold-goid-ms")
	b.ReportMetric(median(live), "live-ms")
	b.ReportMetric(median(open), "open-ms")
	b.ReportMetric(median(goid), "goid-ms")
	b.ReportMetric(median(attach), "attach-ms")
	b.ReportMetric(median(plan), "plan-ms")
	b.ReportMetric(median(gosymOpen), "gosym-open-ms")
	b.ReportMetric(median(bare), "bare-uprobe-ms")
	b.ReportMetric(median(live)/median(gosymOpen), "live/gosym-open")

	size, dwarf := fileSizes(b, bin)
	b.ReportMetric(float64(size)/1e6, "binary-MB")
	b.ReportMetric(float64(dwarf)/1e6, "dwarf-MB")
	b.ReportMetric(float64(cold.funcs), "funcs")
}

// liveTimes are the steps of one attachment.
type liveTimes struct {
	open, goid, attach time.Duration // symtab.Open, FindRuntimeOffsets, Attach
	plan               time.Duration // PlanProbes alone on a fresh File, part of attach

	funcs    int
	entryOff uint64 // file offset of the entry probe
}

// timeLive opens bin as the command line does, attaches the tracer to pid, and closes it.
func timeLive(b *testing.B, bin string, pid int) liveTimes {
	var t liveTimes
	start := time.Now()
	f, err := symtab.Open(bin)
	if err != nil {
		b.Fatalf("decode: %v", err)
	}
	defer f.Close()
	t.open = time.Since(start)

	start = time.Now()
	offs, err := target.FindRuntimeOffsets(bin, f.Version())
	if err != nil {
		b.Fatalf("runtime offsets: %v", err)
	}
	t.goid = time.Since(start)

	start = time.Now()
	tr, err := probe.Attach(probe.Options{PID: pid, Symtab: f, Goid: offs.Goid,
		State: offs.State})
	if err != nil {
		b.Fatalf("attach: %v", err)
	}
	t.attach = time.Since(start)
	tr.Close()

	// Planning builds the symbol table's name index, which f now has: time it on another.
	fresh, err := symtab.Open(bin)
	if err != nil {
		b.Fatalf("decode: %v", err)
	}
	defer fresh.Close()
	start = time.Now()
	if _, err := probe.PlanProbes(fresh); err != nil {
		b.Fatalf("plan: %v", err)
	}
	t.plan = time.Since(start)

	t.funcs, t.entryOff = f.NumFuncs(), tr.Plan().Entry.FileOffset
	return t
}

// dropPageCache asks the kernel to forget the cached pages of bin. Pages a process has
// mapped, such as the running target's text, stay.
func dropPageCache(b *testing.B, bin string) {
	file, err := os.Open(bin)
	if err != nil {
		b.Fatal(err)
	}
	defer file.Close()

	// Only clean pages can be dropped: a binary just built may not be written back yet.
	if err := unix.Fsync(int(file.Fd())); err != nil {
		b.Fatalf("sync %s: %v", bin, err)
	}
	if err := unix.Fadvise(int(file.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		b.Fatalf("drop %s from the page cache: %v", bin, err)
	}
}

// gosymFuncs is what a debug/gosym user does to open a binary's function table: read the
// table and the text address from the ELF file, then build the table.
func gosymFuncs(b *testing.B, bin string) int {
	ef, err := elf.Open(bin)
	if err != nil {
		b.Fatalf("open ELF: %v", err)
	}
	defer ef.Close()

	data, err := ef.Section(".gopclntab").Data()
	if err != nil {
		b.Fatalf("read .gopclntab: %v", err)
	}
	tab, err := gosym.NewTable(nil, gosym.NewLineTable(data, ef.Section(".text").Addr))
	if err != nil {
		b.Fatalf("gosym table: %v", err)
	}
	return len(tab.Funcs)
}

// fileSizes returns the size of bin and of its DWARF sections as stored.
func fileSizes(b *testing.B, bin string) (size, dwarf uint64) {
	st, err := os.Stat(bin)
	if err != nil {
		b.Fatal(err)
	}
	ef, err := elf.Open(bin)
	if err != nil {
		b.Fatalf("open ELF: %v", err)
	}
	defer ef.Close()

	for _, s := range ef.Sections {
		if strings.HasPrefix(s.Name, ".debug_") || strings.HasPrefix(s.Name, ".zdebug_") {
			dwarf += s.FileSize
		}
	}
	return uint64(st.Size()), dwarf
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 0 {
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return s[len(s)/2]
}

// The generated program's shape: largePackages packages of largeFuncs assembly functions
// each, of largeInsns instructions on average, which with the Go runtime and DWARF makes
// about 50 MB and as many functions as a real Go binary of that size.
const (
	largePackages = 4
	largeFuncs    = 17500
	largeInsns    = 60
)

// buildLarge generates the large program into a temporary directory and builds it with
// -trimpath, so that the build cache serves every run after the first one. The generator
// is deterministic: the same seed gives the same sources.
func buildLarge(b *testing.B) string {
	tc := fixture.Current(b)
	src := b.TempDir()
	if err := writeLarge(src); err != nil {
		b.Fatalf("generate large program: %v", err)
	}

	out := filepath.Join(b.TempDir(), "large")
	start := time.Now()
	cmd := exec.Command(tc.GoCmd, "build", "-trimpath", "-o", out, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), append(tc.Env, "CGO_ENABLED=0")...)
	if msg, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("build large program: %v\n%s", err, msg)
	}
	b.Logf("built the large program in %v", time.Since(start).Round(time.Millisecond))
	return out
}

// largeWords make up the generated functions' names, so that they are as long and as
// varied as those of real code.
var largeWords = []string{
	"Handle", "Resource", "Request", "Client", "Server", "Decode", "Encode", "Cache",
	"Index", "Table", "Stream", "Buffer", "Config", "Policy", "Volume", "Network",
	"Service", "Status", "Update", "Watch",
}

// largeRegs are the registers the generated code uses; R14 (g) and R15 are left alone.
var largeRegs = []string{"AX", "BX", "CX", "DX", "SI", "DI", "R8", "R9", "R10", "R11"}

// writeLarge writes the large program into dir: a main package that stays running until its
// standard input closes, and largePackages packages of assembly functions. Each package's
// Keep takes the address of all its functions, so that the linker keeps them.
func writeLarge(dir string) error {
	rng := rand.New(rand.NewPCG(1, 2))
	var imports, keeps strings.Builder
	for p := 0; p < largePackages; p++ {
		name := fmt.Sprintf("service%d", p)
		fmt.Fprintf(&imports, "\t%q\n", "large/"+name)
		fmt.Fprintf(&keeps, "\tn += %s.Keep()\n", name)
		if err := writeLargePackage(filepath.Join(dir, name), name, rng); err != nil {
			return err
		}
	}

	files := map[string]string{
		"go.mod": "module large\n\ngo 1.21\n",
		"main.go": "package main\n\nimport (\n\t\"io\"\n\t\"os\"\n\n" + imports.String() +
			")\n\nfunc main() {\n\tvar n uintptr\n" + keeps.String() +
			"\tif n == 0 {\n\t\tos.Exit(1)\n\t}\n\tio.Copy(io.Discard, os.Stdin)\n}\n",
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	return nil
}

// writeLargePackage writes one package of largeFuncs assembly functions into dir.
func writeLargePackage(dir, pkg string, rng *rand.Rand) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	decl := "package " + pkg + "\n\n// Keep returns the address of every function.\n" +
		"func Keep() uintptr\n"
	if err := os.WriteFile(filepath.Join(dir, "keep.go"), []byte(decl), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", pkg, err)
	}

	file, err := os.Create(filepath.Join(dir, "funcs_amd64.s"))
	if err != nil {
		return fmt.Errorf("create %s assembly: %w", pkg, err)
	}
	defer file.Close()
	w := bufio.NewWriter(file)
	fmt.Fprintf(w, "#include \"textflag.h\"\n\n")

	// Functions without arguments need no Go declaration; nothing ever calls them.
	names := make([]string, largeFuncs)
	for i := range names {
		var name strings.Builder
		for range 4 {
			name.WriteString(largeWords[rng.IntN(len(largeWords))])
		}
		names[i] = fmt.Sprintf("%s%d", name.String(), i)

		fmt.Fprintf(w, "TEXT ·%s(SB), NOSPLIT, $0-0\n", names[i])
		for range largeInsns/2 + rng.IntN(largeInsns) {
			r1 := largeRegs[rng.IntN(len(largeRegs))]
			r2 := largeRegs[rng.IntN(len(largeRegs))]
			switch rng.IntN(4) {
			case 0:
				fmt.Fprintf(w, "\tADDQ $%d, %s\n", rng.IntN(1<<20), r1)
			case 1:
				fmt.Fprintf(w, "\tXORQ %s, %s\n", r1, r2)
			case 2:
				fmt.Fprintf(w, "\tIMULQ $%d, %s\n", rng.IntN(1000), r1)
			case 3:
				fmt.Fprintf(w, "\tMOVQ %s, %s\n", r1, r2)
			}
		}
		fmt.Fprintf(w, "\tRET\n\n")
	}

	fmt.Fprintf(w, "TEXT ·Keep(SB), NOSPLIT, $0-8\n")
	for _, name := range names {
		fmt.Fprintf(w, "\tLEAQ ·%s(SB), AX\n", name)
	}
	fmt.Fprintf(w, "\tMOVQ AX, ret+0(FP)\n\tRET\n")

	if err := w.Flush(); err != nil {
		return fmt.Errorf("write %s assembly: %w", pkg, err)
	}
	return file.Close()
}
