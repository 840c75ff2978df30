// Command sigurg measures what one SIGURG costs the Go runtime's signal handler. It locks
// itself to one thread, waits for a line on standard input (so a tracer can attach first),
// sends itself n SIGURGs with tgkill, as the runtime does, and prints the mean nanoseconds per
// signal, with one decimal. The runtime passes each through doSigPreempt and, wanting no
// preemption, ignores it.
//
// Usage:
//
//	sigurg n
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

func main() {
	n, err := strconv.Atoi(os.Args[len(os.Args)-1])
	if err != nil || n <= 0 {
		fmt.Fprintln(os.Stderr, "usage: sigurg n")
		os.Exit(2)
	}

	runtime.LockOSThread()
	pid, tid := syscall.Getpid(), syscall.Gettid()
	bufio.NewReader(os.Stdin).ReadString('\n')

	start := time.Now()
	for i := 0; i < n; i++ {
		if err := syscall.Tgkill(pid, tid, syscall.SIGURG); err != nil {
			fmt.Fprintln(os.Stderr, "sigurg:", err)
			os.Exit(1)
		}
	}
	fmt.Printf("%.1f\n", float64(time.Since(start).Nanoseconds())/float64(n))
}
