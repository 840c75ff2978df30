// Command sigurg measures what one SIGURG costs the Go runtime's signal handler. It locks
// itself to one thread, waits for a line on standard input (so a tracer can attach first),
// sends itself n SIGURGs with tgkill, as the runtime does, and prints the mean nanoseconds per
// signal, with one decimal.
//
// By default the signals come from Go code that yields every yieldEvery signals, so that
// sysmon never finds it running long enough to ask for its preemption: the runtime passes
// each signal through doSigPreempt and, wanting no preemption, ignores it. With -wanted they come from an
// assembly loop that has run long enough without a preemption point for sysmon to ask for
// one: the runtime then asks isAsyncSafePoint about each signal's PC and refuses, as it does
// for a goroutine stuck in assembly.
//
// Usage:
//
//	sigurg [-wanted] n
package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"time"
)

// warmUp is how long the -wanted loop runs before signalling: sysmon asks for the preemption
// of a goroutine that has run for 10 ms, and sleeps up to 10 ms between its looks.
const warmUp = 50 * time.Millisecond

// yieldEvery is how many signals the default loop sends between calls of runtime.Gosched,
// about a millisecond's worth; sysmon asks for a preemption after 10 ms without one.
const yieldEvery = 1000

// signalWanted runs for warmNs, then sends its thread n SIGURGs and returns the nanoseconds
// they took, or -1 when tgkill failed (signal_amd64.s).
func signalWanted(pid, tid, n, warmNs int64) (ns int64)

func main() {
	wanted := len(os.Args) == 3 && os.Args[1] == "-wanted"
	n, err := strconv.Atoi(os.Args[len(os.Args)-1])
	if err != nil || n <= 0 || len(os.Args) != 2 && !wanted {
		fmt.Fprintln(os.Stderr, "usage: sigurg [-wanted] n")
		os.Exit(2)
	}

	runtime.LockOSThread()
	pid, tid := syscall.Getpid(), syscall.Gettid()
	bufio.NewReader(os.Stdin).ReadString('\n')

	if wanted {
		ns := signalWanted(int64(pid), int64(tid), int64(n), warmUp.Nanoseconds())
		if ns < 0 {
			fmt.Fprintln(os.Stderr, "sigurg: tgkill failed")
			os.Exit(1)
		}
		fmt.Printf("%.1f\n", float64(ns)/float64(n))
		return
	}

	start := time.Now()
	for i := 0; i < n; i++ {
		if i%yieldEvery == 0 {
			runtime.Gosched()
		}
		if err := syscall.Tgkill(pid, tid, syscall.SIGURG); err != nil {
			fmt.Fprintln(os.Stderr, "sigurg:", err)
			os.Exit(1)
		}
	}
	fmt.Printf("%.1f\n", float64(time.Since(start).Nanoseconds())/float64(n))
}
