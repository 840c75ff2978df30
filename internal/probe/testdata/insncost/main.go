// Command insncost runs a loop of instructions of different kinds, so that a uprobe on each
// can be timed: the kernel emulates some kinds and single-steps the others. It waits for a
// line on standard input, runs the loop n times and prints the mean nanoseconds per pass,
// with one decimal.
//
// Usage:
//
//	insncost n
package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"time"
)

// kinds runs the instruction loop n times; see kinds_amd64.s.
func kinds(n uint64)

func main() {
	n, err := strconv.ParseUint(os.Args[len(os.Args)-1], 10, 64)
	if err != nil || n == 0 {
		fmt.Fprintln(os.Stderr, "usage: insncost n")
		os.Exit(2)
	}

	bufio.NewReader(os.Stdin).ReadString('\n')
	start := time.Now()
	kinds(n)
	fmt.Printf("%.1f\n", float64(time.Since(start).Nanoseconds())/float64(n))
}
