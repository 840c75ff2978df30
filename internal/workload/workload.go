// Package workload is the program `preempttrace demo` traces: goroutines that
// spin in code the runtime treats differently when it asks them to stop, while
// the main goroutine allocates so that the garbage collector keeps asking.
//
// The loops, and what the runtime of every supported release decides in them:
//
//	asm      assembly with no locals pointer map      refused: assembly
//	noptrs   assembly declared NO_LOCAL_POINTERS      refused: no-pointers-stackmap
//	nosplit  a //go:nosplit Go loop                   refused: unsafe-point
//	clear    clear() of a large pointer-free slice    refused: assembly (in memclrNoHeapPointers)
//	plain    an ordinary Go loop                      accepted: safe
package workload

import (
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// chunk is the iterations of one loop call: a few milliseconds, so most
// requests land inside a loop, and short enough that a stop-the-world waiting
// for a loop that cannot be preempted waits one call at most.
const chunk = 4 << 20

// asmLoop decrements a counter n times in assembly with a zero-size frame.
func asmLoop(n uint64)

// noPointersLoop loops n times in assembly with a frame declared to hold no
// pointers.
func noPointersLoop(n uint64)

// nosplitLoop has no stack check, so the compiler marks all of it unsafe.
//
//go:nosplit
//go:noinline
func nosplitLoop(n uint64) uint64 {
	var x uint64
	for i := uint64(0); i < n; i++ {
		x += i ^ (x >> 3)
	}
	return x
}

// plainLoop is ordinary code: its loop PCs are async safe points.
//
//go:noinline
func plainLoop(n uint64) uint64 {
	var x uint64
	for i := uint64(0); i < n; i++ {
		x += i ^ (x >> 7)
	}
	return x
}

// big is cleared over and over: clear of pointer-free memory runs in the
// runtime's assembly memclr.
var big = make([]byte, 64<<20)

func clearLoop(uint64) uint64 {
	clear(big)
	return uint64(big[len(big)-1])
}

// Loops are the workload's loops by name, in the order Run starts them.
var Loops = []struct {
	Name string
	Run  func(uint64) uint64
}{
	{"asm", func(n uint64) uint64 { asmLoop(n); return n }},
	{"noptrs", func(n uint64) uint64 { noPointersLoop(n); return n }},
	{"nosplit", nosplitLoop},
	{"clear", clearLoop},
	{"plain", plainLoop},
}

// sink keeps allocations reachable for a while so that the heap grows.
var sink [64][]byte

// Run spins every loop on its own goroutine and allocates on the calling one
// until d has passed, then writes one summary line to w.
func Run(w io.Writer, d time.Duration) {
	var stop atomic.Bool
	var wg sync.WaitGroup
	calls := make([]atomic.Uint64, len(Loops))
	for i, l := range Loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				l.Run(chunk)
				calls[i].Add(1)
				// Loops that cannot be preempted hold a stop-the-world until they
				// return; yielding between calls bounds that to one call.
				runtime.Gosched()
			}
		}()
	}

	allocs := 0
	for deadline := time.Now().Add(d); time.Now().Before(deadline); allocs++ {
		sink[allocs%len(sink)] = make([]byte, 32<<10)
	}
	stop.Store(true)
	wg.Wait()

	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Fprintf(w, "workload: %v, %d allocations, %d GC cycles, loop calls:", d, allocs, ms.NumGC)
	for i, l := range Loops {
		fmt.Fprintf(w, " %s=%d", l.Name, calls[i].Load())
	}
	fmt.Fprintln(w)
}
