// Package safepoint decides, the way the Go runtime does, whether a goroutine
// interrupted by a preemption signal at a PC may be stopped there.
//
// The runtime's decision is runtime.doSigPreempt → wantAsyncPreempt →
// isAsyncSafePoint (runtime/preempt.go). This package mirrors it for every
// release from Go 1.14 to 1.27: the rules that changed between releases, and
// the one that patch releases of 1.23 and 1.24 changed, are data (Rules, built
// by For), and Classify is one flat list of checks in the runtime's own order,
// each an early return naming the Reason. The first rule that refuses is the
// reason, exactly as in the runtime.
//
// Some checks look at the PC only: whether it is Go code, its compiler-marked
// unsafe-point value, whether the function is assembly, the name of the
// innermost inlined function. Those come from the binary (PC, built from a
// symtab.PCInfo). The others look at the interrupted thread's state (is the
// goroutine the M's current one, is the M busy, is there stack room); a caller
// that observed that state passes it in State, and a caller that did not gets
// a verdict that says the state was not checked.
//
// The package reads no files and keeps no state of its own.
package safepoint
