//go:build linux

package probe_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/arch/x86/x86asm"
	"golang.org/x/sys/unix"

	"github.com/preempttrace/preempttrace/internal/fixture"
	"github.com/preempttrace/preempttrace/internal/probe"
	"github.com/preempttrace/preempttrace/internal/symtab"
	"github.com/preempttrace/preempttrace/internal/target"
	"github.com/preempttrace/preempttrace/internal/testutil"
)

// minSignals keeps a measurement long enough to average out scheduling noise.
const minSignals = 20000

// sigurgPaths are the two ways through doSigPreempt that the sigurg program's signals take.
var sigurgPaths = []struct {
	name string
	args []string // sigurg's arguments before the count
	want probe.Verdict
}{
	// Signals from Go code while no preemption is wanted: the entry and handled probes
	// fire, the verdict probe is not reached.
	{"not-wanted", nil, probe.VerdictNotWanted},
	// Signals from assembly that sysmon wants preempted: the runtime asks
	// isAsyncSafePoint and refuses, so all three probes fire, as for most attempts a live
	// process gets.
	{"refused", []string{"-wanted"}, probe.VerdictRefused},
}

// BenchmarkSIGURG measures what tracing adds to one SIGURG on each of sigurgPaths. The
// sigurg program sends itself signals with tgkill. Three runs of the same length are compared
// in every iteration: untraced, with a bare uprobe (a program that only returns) on the entry
// site, and with the full tracer and a reader draining its ring.
//
// Metrics: ns/sigurg of each run, the µs the tracer adds per signal and the traced/untraced
// ratio; events/sigurg checks that every signal gave exactly one event, and <verdict>/event
// that the runtime decided what the path is meant to exercise. bpf-ns/<site> is the kernel's
// own count of the time each BPF program ran per hit, from a fourth run with BPF statistics
// on (they cost a clock read or two per program run, so the timed runs go without); the rest
// of what tracing adds is the traps. The standard ns/op counts all runs and process
// start-up, and is not meaningful.
func BenchmarkSIGURG(b *testing.B) {
	testutil.RequireBPF(b)
	bin := buildTestdata(b, "sigurg")
	f, err := symtab.Open(bin)
	if err != nil {
		b.Fatalf("decode: %v", err)
	}
	defer f.Close()
	plan, err := probe.PlanProbes(f)
	if err != nil {
		b.Fatalf("plan: %v", err)
	}
	offs, err := target.FindRuntimeOffsets(bin, f.Version())
	if err != nil {
		b.Fatalf("runtime offsets: %v", err)
	}
	if offs.State == nil {
		b.Fatal("no thread-state offsets: the benchmark would not measure the state reads")
	}
	noop := noopProgram(b)

	for _, path := range sigurgPaths {
		b.Run(path.name, func(b *testing.B) {
			n := max(b.N, minSignals)
			run := func(attach func(pid int) func()) float64 {
				return runTimed(b, bin, slices.Concat(path.args, []string{strconv.Itoa(n)}), attach)
			}

			var untraced, bare, traced, events, wanted float64
			progNs := map[probe.Site]float64{}
			for i := 0; i < b.N; i += n {
				untraced += run(nil)
				bare += run(func(pid int) func() {
					return attachNoop(b, bin, pid, noop, plan.Entry.FileOffset)
				})
				traced += run(func(pid int) func() {
					stop, count, _ := attachTracer(b, pid, f, offs)
					return func() {
						stop()
						all, verdicts := count()
						events += float64(all) / float64(n)
						wanted += float64(verdicts[path.want]) / float64(max(all, 1))
					}
				})
				measureProgramCosts(b, bin, slices.Concat(path.args, []string{strconv.Itoa(n)}), f, offs,
					progNs)
			}

			runs := float64((b.N + n - 1) / n)
			untraced, bare, traced = untraced/runs, bare/runs, traced/runs
			b.ReportMetric(untraced, "untraced-ns/sigurg")
			b.ReportMetric(bare, "bare-uprobe-ns/sigurg")
			b.ReportMetric(traced, "traced-ns/sigurg")
			b.ReportMetric((traced-untraced)/1000, "added-µs/sigurg")
			b.ReportMetric(traced/untraced, "traced/untraced")
			b.ReportMetric(events/runs, "events/sigurg")
			b.ReportMetric(wanted/runs, path.want.String()+"/event")
			for site, ns := range progNs {
				b.ReportMetric(ns/runs, "bpf-ns/"+string(site))
			}
		})
	}
}

// measureProgramCosts traces one more run with BPF statistics on and adds each program that
// ran its mean run time per hit to progNs.
func measureProgramCosts(b *testing.B, bin string, args []string, f *symtab.File,
	offs target.RuntimeOffsets, progNs map[probe.Site]float64) {
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		b.Fatalf("enable BPF statistics: %v", err)
	}
	defer stats.Close()

	runTimed(b, bin, args, func(pid int) func() {
		stop, _, costs := attachTracer(b, pid, f, offs)
		return func() {
			for _, c := range costs() {
				// A site the path does not pass has no cost to report.
				if c.Runs > 0 {
					progNs[c.Site] += float64(c.RunTime.Nanoseconds()) / float64(c.Runs)
				}
			}
			stop()
		}
	})
}

// attachTracer attaches the full tracer to pid with a reader goroutine counting events. The
// returned stop detaches and waits for the reader; count then gives the events read, in all
// and by the runtime's verdict, and costs, called before stop, what each BPF program cost.
func attachTracer(b *testing.B, pid int, f *symtab.File, offs target.RuntimeOffsets) (
	stop func(), count func() (int64, map[probe.Verdict]int64),
	costs func() []probe.ProgramCost) {
	tr, err := probe.Attach(probe.Options{PID: pid, Symtab: f, Goid: offs.Goid,
		State: offs.State})
	if err != nil {
		b.Fatalf("attach: %v", err)
	}

	var n int64
	verdicts := map[probe.Verdict]int64{}
	done := make(chan error)
	go func() {
		for {
			ev, err := tr.Read()
			if err != nil {
				done <- err
				return
			}
			n++
			verdicts[ev.RuntimeVerdict()]++
		}
	}()

	stop = func() {
		if err := tr.Stop(); err != nil {
			b.Errorf("stop: %v", err)
		}
		if err := <-done; !errors.Is(err, probe.ErrStopped) {
			b.Errorf("reader: %v", err)
		}
		c, err := tr.Counters()
		if err != nil || c.Lost() != 0 {
			b.Errorf("counters %+v, %v", c, err)
		}
		tr.Close()
	}
	count = func() (int64, map[probe.Verdict]int64) { return n, verdicts }
	costs = func() []probe.ProgramCost {
		c, err := tr.ProgramCosts()
		if err != nil {
			b.Fatalf("program costs: %v", err)
		}
		return c
	}
	return stop, count, costs
}

// BenchmarkUprobeInstruction measures one uprobe hit on each kind of instruction in the
// insncost program's loop, as the extra ns per pass over an untraced run of the same length.
// It shows why the probes sit where they do: the kernel emulates jumps, calls, NOPs and
// register pushes, and single-steps a copy of everything else.
func BenchmarkUprobeInstruction(b *testing.B) {
	testutil.RequireBPF(b)
	bin := buildTestdata(b, "insncost")
	sites := loopSites(b, bin)
	noop := noopProgram(b)

	n := max(b.N, 50000)
	args := []string{strconv.Itoa(n)}
	base := runTimed(b, bin, args, nil)
	for _, s := range sites {
		b.Run(s.name, func(b *testing.B) {
			var hit float64
			for i := 0; i < b.N; i++ {
				hit += runTimed(b, bin, args, func(pid int) func() {
					return attachNoop(b, bin, pid, noop, s.off)
				}) - base
			}
			b.ReportMetric(hit/float64(b.N), "ns/hit")
		})
	}
}

// site is one probe site in the insncost loop.
type site struct {
	name string
	off  uint64 // file offset
}

// loopSites returns every instruction of the insncost loop, named by its syntax.
func loopSites(b *testing.B, bin string) []site {
	f, err := symtab.Open(bin)
	if err != nil {
		b.Fatalf("decode: %v", err)
	}
	defer f.Close()
	fn, err := f.LookupFunc("main.kinds")
	if err != nil {
		b.Fatalf("find loop: %v", err)
	}

	var sites []site
	code := f.Bytes(fn.Entry, fn.Size())
	for off := 0; off < len(code); {
		in, err := x86asm.Decode(code[off:], 64)
		if err != nil {
			b.Fatalf("decode loop at +%d: %v", off, err)
		}

		pc := fn.Entry + uint64(off)
		text := x86asm.GoSyntax(in, pc, nil)
		fileOff, _ := f.FileOffset(pc)
		off += in.Len

		// The first load runs once and RET ends the loop (padding follows); neither is in it.
		if in.Op == x86asm.RET {
			break
		}
		if off == in.Len {
			continue
		}
		name := strings.ReplaceAll(fmt.Sprintf("%s/%d-byte", strings.Fields(text)[0], in.Len),
			" ", "_")
		sites = append(sites, site{name: name, off: fileOff})
	}
	return sites
}

// noopProgram loads a uprobe program that only returns.
func noopProgram(b *testing.B) *ebpf.Program {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.Kprobe,
		License:      "Dual MIT/GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
	})
	if err != nil {
		b.Fatalf("load no-op program: %v", err)
	}
	b.Cleanup(func() { prog.Close() })
	return prog
}

// attachNoop attaches prog at file offset off of bin in pid and returns the detach function.
func attachNoop(b *testing.B, bin string, pid int, prog *ebpf.Program, off uint64) func() {
	ex, err := link.OpenExecutable(bin)
	if err != nil {
		b.Fatalf("open executable: %v", err)
	}
	l, err := ex.Uprobe("", prog, &link.UprobeOptions{Address: off, PID: pid})
	if err != nil {
		b.Fatalf("attach at %#x: %v", off, err)
	}
	return func() { l.Close() }
}

// runTimed runs bin with args, lets attach set up (when not nil) once the process exists,
// starts the measurement through its standard input and returns the nanoseconds per unit
// that bin prints. The function attach returns runs after bin has exited.
func runTimed(b *testing.B, bin string, args []string, attach func(pid int) func()) float64 {
	cmd := exec.Command(bin, args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		b.Fatalf("start %s: %v", bin, err)
	}

	detach := func() {}
	if attach != nil {
		detach = attach(cmd.Process.Pid)
	}
	io.WriteString(stdin, "go\n")
	stdin.Close()
	err = cmd.Wait()
	detach()
	if err != nil {
		b.Fatalf("%s: %v: %s", bin, err, out.String())
	}

	sc := bufio.NewScanner(strings.NewReader(out.String()))
	sc.Scan()
	v, err := strconv.ParseFloat(strings.TrimSpace(sc.Text()), 64)
	if err != nil {
		b.Fatalf("%s printed %q", bin, out.String())
	}
	return v
}

// buildTestdata builds the program in testdata/name with the current toolchain.
func buildTestdata(b *testing.B, name string) string {
	tc := fixture.Current(b)
	out := filepath.Join(b.TempDir(), name)

	cmd := exec.Command(tc.GoCmd, "build", "-o", out, ".")
	cmd.Dir = filepath.Join("testdata", name)
	cmd.Env = append(os.Environ(), append(tc.Env, "CGO_ENABLED=0")...)
	if msg, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("build %s: %v\n%s", name, err, msg)
	}
	return out
}
