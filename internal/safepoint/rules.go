package safepoint

import (
	"github.com/preempttrace/preempttrace/internal/symtab"
)

// unsafePointRule is how a release reads PCDATA 0.
type unsafePointRule uint8

const (
	// unsafeRegMap (1.14): index 0 is the register-map index; only -2 is
	// unsafe, every other value (including map indexes ≥ 0) passes.
	unsafeRegMap unsafePointRule = iota
	// unsafeUnlessSafe (1.15–1.17): anything but -1 refuses, which also
	// refuses the restart codes; the restart branch is unreachable.
	unsafeUnlessSafe
	// unsafeOnlyUnsafe (1.18+): only -2 refuses; restart codes are honoured.
	unsafeOnlyUnsafe
)

// Values of PCDATA_UnsafePoint (abi.UnsafePoint*).
const (
	unsafePointSafe           = -1
	unsafePointUnsafe         = -2
	unsafePointRestart1       = -3
	unsafePointRestart2       = -4
	unsafePointRestartAtEntry = -5

	// maxRestartSpan is how far back the runtime accepts a restart start PC
	// before it throws "bad restart PC".
	maxRestartSpan = 20
)

// Rules are the parts of isAsyncSafePoint that differ between Go releases.
type Rules struct {
	// Minor is N of the Go 1.N release the rules describe.
	Minor int

	unsafePoint unsafePointRule

	// asmFlag: FuncFlagAsm marks assembly (1.18+); before, only the locals
	// map (nil or runtime.no_pointers_stackmap) does.
	asmFlag bool

	// runtimePrefixes are the name prefixes of the innermost inlined function
	// that refuse.
	runtimePrefixes []string

	// secret: the RuntimeSecret check is compiled in (1.26+ built with
	// GOEXPERIMENT=runtimesecret).
	secret bool

	// curgStatus: canPreemptM also refuses an M without curg or whose curg is
	// in a system call (1.26+).
	curgStatus bool

	// asyncPreemptFuncs are the functions whose frames make up
	// asyncPreemptStack.
	asyncPreemptFuncs []string
}

// RuntimePrefixes returns the name prefixes the release refuses.
func (r *Rules) RuntimePrefixes() []string { return r.runtimePrefixes }

var (
	// prefixes114 is the name rule of Go 1.14–1.24, up to the patch releases
	// of prefixBackports.
	prefixes114 = []string{"runtime.", "runtime/internal/", "reflect."}
	// prefixes123p8 is the name rule from the patch releases of
	// prefixBackports: the fix of issue 71591 added internal/runtime/, where
	// Go 1.23 had moved runtime/internal/atomic, and kept the old prefix.
	prefixes123p8 = []string{"runtime.", "runtime/internal/", "internal/runtime/", "reflect."}
	// prefixes125 is the name rule from Go 1.25: runtime/internal/ moved to
	// internal/runtime/ (issue 71591).
	prefixes125 = []string{"runtime.", "internal/runtime/", "reflect."}
)

// prefixBackports is, by minor release, the first patch release that has
// prefixes123p8, as runtime/preempt.go of go1.23.7 and go1.23.8, go1.24.1 and
// go1.24.2 show; that of go1.22.12 lacks it. A row of ruleTable, which holds
// whole minor releases, cannot say this.
var prefixBackports = map[int]int{23: 8, 24: 2}

// ruleTable lists the rule changes by first release; a row holds until the
// next one.
var ruleTable = []struct {
	first, last int
	rules       Rules
}{
	{14, 14, Rules{unsafePoint: unsafeRegMap, runtimePrefixes: prefixes114}},
	{15, 17, Rules{unsafePoint: unsafeUnlessSafe, runtimePrefixes: prefixes114}},
	{18, 24, Rules{unsafePoint: unsafeOnlyUnsafe, asmFlag: true, runtimePrefixes: prefixes114}},
	{25, 25, Rules{unsafePoint: unsafeOnlyUnsafe, asmFlag: true, runtimePrefixes: prefixes125}},
	{26, 27, Rules{unsafePoint: unsafeOnlyUnsafe, asmFlag: true, runtimePrefixes: prefixes125,
		curgStatus: true, asyncPreemptFuncs: asyncPreemptFuncs126}},
}

// secretExperiment is the GOEXPERIMENT that compiles in the RuntimeSecret check.
const (
	secretExperiment = "runtimesecret"
	secretFirstMinor = 26
)

// The thread-state checks of isAsyncSafePoint that differ between releases,
// from runtime/preempt.go:
//
//   - canPreemptM requires, from Go 1.26, "mp.curg != nil &&
//     readgstatus(mp.curg)&^_Gscan != _Gsyscall" besides locks, mallocing,
//     preemptoff and the P's status;
//   - asyncPreemptStack, the room isAsyncSafePoint wants above gp.stack.lo, is
//     set in preempt.go's init as the sum of the largest SP deltas of
//     asyncPreempt and asyncPreempt2, to which Go 1.26 adds xRegRestore (the
//     extended register state moved off the goroutine stack), plus 8 words.
var (
	asyncPreemptFuncs114 = []string{"runtime.asyncPreempt", "runtime.asyncPreempt2"}
	asyncPreemptFuncs126 = []string{"runtime.asyncPreempt", "runtime.asyncPreempt2",
		"runtime.xRegRestore"}
)

// AsyncPreemptFuncs returns the functions whose largest SP deltas, plus
// AsyncPreemptSlack, are the release's asyncPreemptStack.
func (r *Rules) AsyncPreemptFuncs() []string { return r.asyncPreemptFuncs }

// AsyncPreemptSlack is what asyncPreemptStack adds to the SP deltas "for
// return PCs, etc.": 8 pointers.
const AsyncPreemptSlack = 8 * 8

// CanPreemptMReadsCurG reports whether canPreemptM also requires m.curg to be
// set and not in a system call.
func (r *Rules) CanPreemptMReadsCurG() bool { return r.curgStatus }

// Returns lists what each return statement of isAsyncSafePoint stands for, in source
// order, as the compiler keeps them in an amd64 build: the refusals in the order of the
// checks (the MIPS-only one compiled out, the secret check only where it is compiled in),
// then the acceptances. Before Go 1.18 a PC with a restart code is refused before the
// restart returns, and the compiler drops them as unreachable, leaving "return true".
// Each is a RET instruction of its own in every release the tests have seen, so that the
// RET an isAsyncSafePoint call leaves by tells which check decided.
func (r *Rules) Returns() []Reason {
	out := []Reason{NotUserGoroutine, MBusy, StackSpace}
	if r.secret {
		out = append(out, Secret)
	}
	out = append(out, NotGoCode, UnsafePoint, Assembly, RuntimePackage)
	if r.unsafePoint != unsafeOnlyUnsafe {
		return append(out, Safe)
	}
	return append(out, SafeRestart, SafeRestart, Safe)
}

// SameCheck reports whether reasons a and b are the verdict of the same check of
// isAsyncSafePoint: the one check of the locals map gives both Assembly and
// NoPointersStackmap.
func SameCheck(a, b Reason) bool {
	locals := func(r Reason) bool { return r == Assembly || r == NoPointersStackmap }
	return a == b || locals(a) && locals(b)
}

// For returns the rules of the release that built a binary.
func For(v symtab.GoVersion) (*Rules, error) {
	for _, row := range ruleTable {
		if v.Minor < row.first || v.Minor > row.last {
			continue
		}
		r := row.rules
		r.Minor = v.Minor
		r.secret = v.Minor >= secretFirstMinor && v.HasExperiment(secretExperiment)
		if first, ok := prefixBackports[v.Minor]; ok && v.Patch >= first {
			r.runtimePrefixes = prefixes123p8
		}
		if r.asyncPreemptFuncs == nil {
			r.asyncPreemptFuncs = asyncPreemptFuncs114
		}
		return &r, nil
	}
	return nil, &symtab.UnsupportedError{What: "Go version", Found: v.Raw,
		Supported: symtab.SupportedRange()}
}
