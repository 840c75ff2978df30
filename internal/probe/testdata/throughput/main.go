// Command throughput measures how much work CPU-bound goroutines get done while the Go
// runtime keeps sending them preemption signals, so that a benchmark can compare runs with
// and without a tracer attached. It starts one worker per CPU, waits for a line on standard
// input (so a tracer can attach first, while the workers already run), counts the loop
// iterations done in the next d, prints one line and exits:
//
//	throughput: mode=M seconds=S work=N sigurg-sent=N gc-cycles=N user=S sys=S
//
// user and sys are the CPU seconds the process used in the window; sys includes the time
// the kernel spends on signals and on any uprobes hit.
//
// Modes:
//
//   - natural: the workers run an ordinary loop, whose PCs are async safe points, and one
//     more goroutine allocates, so the garbage collector and sysmon ask for preemption at
//     their own rate.
//   - storm: the workers run a nosplit loop, which refuses every request, in calls longer
//     than sysmon's 10ms time slice, so that sysmon marks them for preemption; a signaller
//     sends rate SIGURG per second with tgkill to the workers' threads, in turn, as the
//     runtime would. Each signal reaches runtime.doSigPreempt, which asks
//     isAsyncSafePoint whenever preemption is wanted and is refused. GOMAXPROCS is one more
//     than the workers so that the signaller always has a P. Sysmon sends requests of its
//     own too: about 130 a second without the signaller, some hundreds more with it.
//
// Usage:
//
//	throughput natural|storm d [rate]
package main

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// batch is how many iterations a loop does between two updates of its work counter.
const batch = 1 << 12

// stormChunk is the iteration count of one nosplit call, about 90ms on a 2026 server
// core: long enough for sysmon, which looks every 10ms once the program is steady, to mark
// the worker for preemption in most of it.
const stormChunk = 1 << 26

// naturalChunk is the iteration count of one ordinary call, about 5ms.
const naturalChunk = 1 << 22

// counter is one worker's iteration count, alone in its cache line.
type counter struct {
	n atomic.Uint64
	_ [56]byte
}

// plainWork loops n times in an ordinary function, adding to done every batch iterations.
//
//go:noinline
func plainWork(n uint64, done *counter) uint64 {
	var x uint64
	for i := uint64(1); i <= n; i++ {
		x += i ^ (x >> 7)
		if i%batch == 0 {
			done.n.Add(batch)
		}
	}
	return x
}

// nosplitWork is plainWork in a function without a stack check, every PC of which the
// compiler marks unsafe for preemption.
//
//go:nosplit
//go:noinline
func nosplitWork(n uint64, done *counter) uint64 {
	var x uint64
	for i := uint64(1); i <= n; i++ {
		x += i ^ (x >> 7)
		if i%batch == 0 {
			done.n.Add(batch)
		}
	}
	return x
}

// sink keeps the natural mode's allocations reachable for a while, so the heap grows and
// the collector runs.
var sink [64][]byte

// checksum keeps the loops' results alive.
var checksum atomic.Uint64

func main() {
	mode, d, rate, err := parseArgs(os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "throughput: %v\n", err)
		os.Exit(2)
	}

	workers := runtime.NumCPU()
	if mode == "storm" {
		runtime.GOMAXPROCS(workers + 1)
	}
	counters := make([]counter, workers)
	tids := make(chan int, workers)
	for i := range counters {
		go work(mode, &counters[i], tids)
	}
	if mode == "natural" {
		go allocate()
	}

	var sent atomic.Uint64
	if mode == "storm" {
		threads := make([]int, workers)
		for i := range threads {
			threads[i] = <-tids
		}
		go signal(threads, rate, &sent)
	}

	bufio.NewReader(os.Stdin).ReadString('\n')

	// The window starts now; the workers have been running for as long as the tracer took.
	var stats runtime.MemStats
	runtime.ReadMemStats(&stats)
	gc0, sent0, work0 := stats.NumGC, sent.Load(), total(counters)
	user0, sys0 := cpuTimes()
	start := time.Now()

	time.Sleep(d)

	work1, sent1 := total(counters), sent.Load()
	secs := time.Since(start).Seconds()
	user1, sys1 := cpuTimes()
	runtime.ReadMemStats(&stats)
	fmt.Printf("throughput: mode=%s seconds=%.3f work=%d sigurg-sent=%d gc-cycles=%d "+
		"user=%.3f sys=%.3f\n", mode, secs, work1-work0, sent1-sent0, stats.NumGC-gc0,
		user1-user0, sys1-sys0)
}

// cpuTimes returns the user and system CPU seconds the process has used.
func cpuTimes() (user, sys float64) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		fmt.Fprintf(os.Stderr, "throughput: getrusage: %v\n", err)
		os.Exit(1)
	}
	return time.Duration(ru.Utime.Nano()).Seconds(), time.Duration(ru.Stime.Nano()).Seconds()
}

// parseArgs returns the mode, window and signal rate given on the command line.
func parseArgs(args []string) (string, time.Duration, float64, error) {
	if len(args) < 2 || len(args) > 3 || args[0] != "natural" && args[0] != "storm" {
		return "", 0, 0, fmt.Errorf("usage: throughput natural|storm d [rate]")
	}

	d, err := time.ParseDuration(args[1])
	if err != nil {
		return "", 0, 0, fmt.Errorf("parse duration: %w", err)
	}

	rate := 5000.0
	if len(args) == 3 {
		rate, err = strconv.ParseFloat(args[2], 64)
		if err != nil || rate <= 0 {
			return "", 0, 0, fmt.Errorf("rate %q: want a positive number", args[2])
		}
	}
	return args[0], d, rate, nil
}

// work runs the mode's loop forever, counting its iterations in c. In storm mode it first
// locks itself to a thread and sends that thread's id to tids, for the signaller.
func work(mode string, c *counter, tids chan<- int) {
	if mode == "natural" {
		for {
			checksum.Add(plainWork(naturalChunk, c))
		}
	}

	runtime.LockOSThread()
	tids <- syscall.Gettid()
	for {
		checksum.Add(nosplitWork(stormChunk, c))

		// The loop cannot be preempted; yielding between calls bounds how long a
		// stop-the-world waits for it.
		runtime.Gosched()
	}
}

// allocate allocates 32 KiB buffers without end, keeping the last 64.
func allocate() {
	for n := 0; ; n++ {
		sink[n%len(sink)] = make([]byte, 32<<10)
	}
}

// signal sends rate SIGURGs a second to threads, in turn, and counts them in sent. It
// waits on a timerfd, which the runtime's network poller watches, because time.Sleep
// rounds short sleeps up to a millisecond and a blocking nanosleep would make sysmon retake
// its P and then poll every 20µs, preempting the workers itself. It never sends two
// signals to one thread after one wait, since the first could still be pending and the
// kernel would merge them; a wait that took longer drops the backlog instead.
func signal(threads []int, rate float64, sent *atomic.Uint64) {
	ticks, err := newTicker(time.Duration(float64(time.Second) / rate))
	if err != nil {
		fmt.Fprintf(os.Stderr, "throughput: %v\n", err)
		os.Exit(1)
	}

	pid := syscall.Getpid()
	var buf [8]byte
	for n := 0; ; {
		if _, err := io.ReadFull(ticks, buf[:]); err != nil {
			fmt.Fprintf(os.Stderr, "throughput: read timerfd: %v\n", err)
			os.Exit(1)
		}
		due := int(min(binary.NativeEndian.Uint64(buf[:]), uint64(len(threads))))
		for k := 0; k < due; k++ {
			if err := syscall.Tgkill(pid, threads[n%len(threads)], syscall.SIGURG); err != nil {
				fmt.Fprintf(os.Stderr, "throughput: tgkill: %v\n", err)
				os.Exit(1)
			}
			n++
			sent.Add(1)
		}
	}
}

// newTicker returns a non-blocking timerfd that expires every period, as a file the
// runtime's poller waits on. Each read returns the expirations since the last one.
func newTicker(period time.Duration) (*os.File, error) {
	const tfdNonblock, tfdCloexec = syscall.O_NONBLOCK, syscall.O_CLOEXEC
	fd, _, errno := syscall.Syscall(syscall.SYS_TIMERFD_CREATE, 1, // CLOCK_MONOTONIC
		tfdNonblock|tfdCloexec, 0)
	if errno != 0 {
		return nil, fmt.Errorf("timerfd_create: %w", errno)
	}

	// struct itimerspec: the interval, then the first expiration.
	ts := syscall.NsecToTimespec(period.Nanoseconds())
	spec := [2]syscall.Timespec{ts, ts}
	_, _, errno = syscall.Syscall6(syscall.SYS_TIMERFD_SETTIME, fd, 0,
		uintptr(unsafe.Pointer(&spec)), 0, 0, 0)
	if errno != 0 {
		syscall.Close(int(fd))
		return nil, fmt.Errorf("timerfd_settime: %w", errno)
	}
	return os.NewFile(fd, "timerfd"), nil
}

// total returns the iterations done by all workers.
func total(counters []counter) uint64 {
	var n uint64
	for i := range counters {
		n += counters[i].n.Load()
	}
	return n
}
