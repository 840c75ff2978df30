// Command sigcount is the target of the ptrace backend's safety tests. It counts the
// SIGUSR1 and SIGURG signals that reach it through signal.Notify and prints one line for
// each, so that a test can send a signal, wait for its line and only then send the next:
// two signals of one kind pending at once would merge into one, and no count could be
// exact. Meanwhile it keeps threads busy on command, so that the Go runtime sends
// preemption signals of its own, which reach signal.Notify too, and prints a tick every
// 10ms to show that it runs.
//
// Commands, one per line on standard input:
//
//	busy       start a spinning and an allocating goroutine
//	churn N    start N goroutines that allocate linked lists without pause
//	threads N  start N goroutines, each locked to its own thread and spinning in spin
//	exec       replace the program (execve) with a copy of its executable in a new file,
//	           which starts over
//	reexec     replace the program with a new run of its own executable file
//	exit       print the totals and exit 0; the end of the input does the same
//
// Lines on standard output:
//
//	ready pid=P
//	usr1 N, urg N               for each signal received, N the total so far
//	tick N                      every 10ms
//	busy, churn N               once the goroutines were started
//	thread tid=T goid=G         from each locked thread, once it is locked
//	sigcount: usr1=N urg=N ticks=N   last, on exit
package main

import (
	"bufio"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// tickEvery is the period of the tick lines.
const tickEvery = 10 * time.Millisecond

// Totals printed by the lines and on exit.
var usr1, urg, ticks atomic.Int64

// out serialises the lines of all goroutines, one write each.
var out sync.Mutex

// say prints one line.
func say(format string, args ...any) {
	out.Lock()
	defer out.Unlock()
	fmt.Fprintf(os.Stdout, format+"\n", args...)
}

func main() {
	// Separate channels, so that a burst of the runtime's SIGURGs can never fill the
	// channel a SIGUSR1 needs: os/signal drops what does not fit.
	usr1Ch := make(chan os.Signal, 16)
	urgCh := make(chan os.Signal, 1024)
	signal.Notify(usr1Ch, syscall.SIGUSR1)
	signal.Notify(urgCh, syscall.SIGURG)
	go count(usr1Ch, &usr1, "usr1")
	go count(urgCh, &urg, "urg")
	go tick()

	say("ready pid=%d", os.Getpid())
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		run(in.Text())
	}
	finish()
}

// run carries out one command. The goroutines it starts run until the process exits.
func run(line string) {
	verb, arg, _ := strings.Cut(line, " ")
	n, _ := strconv.Atoi(arg)

	switch verb {
	case "busy":
		go spin()
		go allocate()
		say("busy")
	case "churn":
		for i := 0; i < n; i++ {
			go churn()
		}
		say("churn %d", n)
	case "threads":
		for i := 0; i < n; i++ {
			go lockedSpin()
		}
	case "exec", "reexec":
		path, err := os.Executable()
		if err == nil && verb == "exec" {
			path, err = copyOf(path)
		}
		if err == nil {
			err = syscall.Exec(path, os.Args, os.Environ())
		}
		fmt.Fprintf(os.Stderr, "sigcount: exec: %v\n", err)
		os.Exit(1)
	case "exit":
		finish()
	default:
		fmt.Fprintf(os.Stderr, "sigcount: unknown command %q\n", line)
		os.Exit(2)
	}
}

// finish prints the totals and exits 0.
func finish() {
	say("sigcount: usr1=%d urg=%d ticks=%d", usr1.Load(), urg.Load(), ticks.Load())
	os.Exit(0)
}

// count adds each signal from c to total and prints the new total.
func count(c <-chan os.Signal, total *atomic.Int64, name string) {
	for range c {
		say("%s %d", name, total.Add(1))
	}
}

// tick prints a line every tickEvery, which a stopped process cannot do.
func tick() {
	t := time.NewTicker(tickEvery)
	for range t.C {
		say("tick %d", ticks.Add(1))
	}
}

// spin loops forever without a call. Its loop is an async safe point, so sysmon's
// requests to preempt it after its 10ms time slice are accepted.
//
//go:noinline
func spin() {
	for {
	}
}

// lockedSpin spins on a thread of its own. A locked goroutine keeps its thread even
// while it waits for a P, so N of them hold N threads: more than the process had before
// forces the runtime to start new ones.
func lockedSpin() {
	runtime.LockOSThread()
	say("thread tid=%d goid=%d", syscall.Gettid(), goid())
	spin()
}

// goid returns the calling goroutine's id, from the header of its stack trace.
func goid() int {
	var buf [64]byte
	s := string(buf[:runtime.Stack(buf[:], false)])
	s = strings.TrimPrefix(s, "goroutine ")
	id, _ := strconv.Atoi(s[:strings.IndexByte(s, ' ')])
	return id
}

// sink keeps allocations alive long enough for the collector to have work.
var sink [64][]byte

// allocate allocates 64 KiB blocks without pause, keeping the last 64, so that the
// collector runs cycle after cycle and preempts goroutines to scan their stacks.
func allocate() {
	for i := 0; ; i++ {
		b := make([]byte, 64<<10)
		b[i%len(b)] = byte(i)
		sink[i%len(sink)] = b
	}
}

// node is one element of the lists churn builds.
type node struct {
	next *node
	val  [6]int
}

// churn builds and drops pointer-linked lists, which the collector has to trace.
func churn() {
	for {
		var head *node
		for i := 0; i < 512; i++ {
			head = &node{next: head, val: [6]int{i}}
		}
		runtime.KeepAlive(head)
	}
}

// copyOf copies the file at path to a new executable file beside it and returns its path.
func copyOf(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	copied := fmt.Sprintf("%s.copy%d", path, os.Getpid())
	return copied, os.WriteFile(copied, data, 0o755)
}
