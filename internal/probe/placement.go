package probe

import (
	"errors"
	"fmt"
	"slices"

	"github.com/preempttrace/preempttrace/internal/safepoint"
	"github.com/preempttrace/preempttrace/internal/symtab"
)

// The runtime functions the probes sit in (runtime/signal_unix.go, runtime/preempt.go).
// Their pclntab names are the same in every Go release since 1.14.
const (
	fnDoSigPreempt     = "runtime.doSigPreempt"
	fnIsAsyncSafePoint = "runtime.isAsyncSafePoint"
	fnSighandler       = "runtime.sighandler"
	fnAsyncPreempt     = "runtime.asyncPreempt"
)

// maxWalk bounds how many instructions a site search steps over before it gives up on
// finding a cheaper instruction and keeps the first one.
const maxWalk = 8

// Site names one of the probe sites.
type Site string

// The probe sites, in the order a SIGURG passes them.
const (
	// SiteEntry is at the start of runtime.doSigPreempt, where its arguments gp and ctxt are
	// still in the first two argument registers.
	SiteEntry Site = "entry"

	// SiteVerdict is right after doSigPreempt's call of runtime.isAsyncSafePoint, where its
	// results ok and newpc are still in the first two result registers.
	SiteVerdict Site = "verdict"

	// SiteHandled is in runtime.sighandler after its call of doSigPreempt has returned.
	SiteHandled Site = "handled"

	// SiteEntered is at the start of runtime.asyncPreempt, which a goroutine enters after
	// the handler returns when its request was accepted; the word at SP is then the PC it
	// will resume at.
	SiteEntered Site = "entered"

	// SiteReturn is on a RET instruction of runtime.isAsyncSafePoint: which one a call leaves
	// by tells which of its checks decided.
	SiteReturn Site = "return"
)

// Placement is where one probe goes and why.
type Placement struct {
	Site Site

	// Addr is the link-time address of the probed instruction; FileOffset is where the
	// uprobe names it.
	Addr       uint64
	FileOffset uint64

	// Insn is the probed instruction in Go assembler syntax.
	Insn string

	// Emulated reports whether the kernel emulates the instruction instead of
	// single-stepping a copy of it, which decides what a hit costs.
	Emulated bool

	// Why says how the instruction was chosen.
	Why string
}

// Plan is the probe placement for one executable. Verdict and Handled are nil when their
// site could not be found; the tracer then reports the runtime's verdict as unknown.
// Entered is nil when asyncPreempt's entry could not be placed; accepted requests are then
// not confirmed.
type Plan struct {
	// ABI says where the entry and verdict probes find what they read.
	ABI CallABI

	Entry   Placement
	Verdict *Placement
	Handled *Placement
	Entered *Placement

	// Returns are isAsyncSafePoint's RET instructions, in the order of the return statements
	// in its source; nil when they could not be matched with the release's checks.
	Returns []ReturnSite

	// Missing explains each site left out, for the user.
	Missing []string
}

// ReturnSite is one RET instruction of isAsyncSafePoint and the check that returns there.
type ReturnSite struct {
	Placement

	// Reason is what the return statement stands for (safepoint.Rules.Returns): a refusal
	// by one check, or an acceptance. The check of the locals map gives Assembly, which
	// covers NoPointersStackmap too.
	Reason safepoint.Reason

	// Line is the return statement's line in runtime/preempt.go.
	Line int
}

// Placements returns the sites of the plan that will be probed.
func (p *Plan) Placements() []Placement {
	out := []Placement{p.Entry}
	for _, pl := range []*Placement{p.Verdict, p.Handled, p.Entered} {
		if pl != nil {
			out = append(out, *pl)
		}
	}
	for _, r := range p.Returns {
		out = append(out, r.Placement)
	}
	return out
}

// ReturnAt returns the return site at link-time address addr.
func (p *Plan) ReturnAt(addr uint64) (ReturnSite, bool) {
	for _, r := range p.Returns {
		if r.Addr == addr {
			return r, true
		}
	}
	return ReturnSite{}, false
}

// PlanProbes chooses the probe instructions in the executable f describes. It fails only
// when the entry probe cannot be placed; any other site it cannot place is recorded in
// Plan.Missing.
//
// Every probe sits on the first instruction the kernel can emulate (a conditional or direct
// jump, a direct call, a canonical NOP or a register push, about 1 µs a hit) that runs
// unconditionally after the point of interest with nothing in between that changes what the
// probe reads: the registers, or with the stack ABI the stack pointer and memory. Any other
// instruction is copied out of line and single-stepped, which costs 15–20 µs a hit; that is
// the fallback when no emulated instruction is near, and the rule for the return sites, whose
// RET instructions are the only ones that tell the returns apart.
func PlanProbes(f *symtab.File) (*Plan, error) {
	if err := checkTarget(f); err != nil {
		return nil, err
	}
	dec := decoderFor(f.Arch())
	abi := callABI(f.Version())
	keep := keepsGoRegs
	if abi.OnStack {
		keep = keepsStackSlots
	}

	sig, err := lookup(f, fnDoSigPreempt)
	if err != nil {
		return nil, err
	}
	code := f.Bytes(sig.Entry, sig.Size())
	if code == nil {
		return nil, fmt.Errorf("read code of %s: no file bytes at %#x", fnDoSigPreempt, sig.Entry)
	}

	// Entry: walk only over instructions that leave gp and ctxt where the call put them,
	// which in every release is the stack-bound check before the conditional jump to
	// morestack.
	entry, err := walk(f, dec, sig.Entry, code, keep, SiteEntry,
		"first instruction of "+fnDoSigPreempt)
	if err != nil {
		return nil, err
	}
	plan := &Plan{ABI: abi, Entry: entry}

	// Verdict: after the call whose target is isAsyncSafePoint's entry.
	if pl, why := planVerdict(f, dec, keep, sig, code); pl != nil {
		plan.Verdict = pl
	} else {
		plan.Missing = append(plan.Missing, "verdict: "+why)
	}

	// Handled: after sighandler's call of doSigPreempt; no register is read there.
	if pl, why := planHandled(f, dec, sig); pl != nil {
		plan.Handled = pl
	} else {
		plan.Missing = append(plan.Missing, "handled: "+why)
	}

	// Entered: the word at SP is read there, so step only over what leaves the stack alone.
	if pl, why := planEntered(f, dec); pl != nil {
		plan.Entered = pl
	} else {
		plan.Missing = append(plan.Missing, "entered: "+why)
	}

	if sites, why := planReturns(f, dec); sites != nil {
		plan.Returns = sites
	} else {
		plan.Missing = append(plan.Missing, string(SiteReturn)+": "+why)
	}
	return plan, nil
}

// planReturns finds isAsyncSafePoint's RET instructions and matches them, in the order of
// their source lines, with the return statements the release's rules list; or says why it
// cannot. A RET is single-stepped at each hit: no instruction of the return paths tells
// them apart and is emulated too.
func planReturns(f *symtab.File, dec decoder) ([]ReturnSite, string) {
	rules, err := safepoint.For(f.Version())
	if err != nil {
		return nil, err.Error()
	}
	fn, err := f.LookupFunc(fnIsAsyncSafePoint)
	if err != nil {
		return nil, fmt.Sprintf("%s not in the function table", fnIsAsyncSafePoint)
	}
	code := f.Bytes(fn.Entry, fn.Size())
	if code == nil {
		return nil, fmt.Sprintf("no file bytes for %s", fnIsAsyncSafePoint)
	}

	var sites []ReturnSite
	for off := 0; off < len(code); {
		in, err := dec(fn.Entry+uint64(off), code[off:])
		if err != nil {
			return nil, err.Error()
		}
		off += in.len
		if !in.ret {
			continue
		}

		frames, err := f.Frames(fn, in.addr)
		if err != nil || len(frames) == 0 {
			return nil, fmt.Sprintf("no source line for the RET at %#x", in.addr)
		}
		pl, err := placement(f, SiteReturn, in, "")
		if err != nil {
			return nil, err.Error()
		}
		sites = append(sites, ReturnSite{Placement: pl, Line: frames[len(frames)-1].Line})
	}

	want := rules.Returns()
	if len(sites) != len(want) {
		return nil, fmt.Sprintf("%d RET instructions in %s, where go1.%d has %d return "+
			"statements", len(sites), fnIsAsyncSafePoint, rules.Minor, len(want))
	}
	slices.SortFunc(sites, func(a, b ReturnSite) int { return a.Line - b.Line })
	for i := range sites {
		if i > 0 && sites[i].Line == sites[i-1].Line {
			return nil, fmt.Sprintf("two RET instructions of %s at line %d", fnIsAsyncSafePoint,
				sites[i].Line)
		}
		sites[i].Reason = want[i]
		sites[i].Why = fmt.Sprintf("%s: the return at line %d (%s), single-stepped",
			sites[i].Insn, sites[i].Line, want[i])
	}
	return sites, ""
}

// planEntered finds the entered site at asyncPreempt's entry, or says why there is none.
func planEntered(f *symtab.File, dec decoder) (*Placement, string) {
	fns, err := f.LookupFuncs(fnAsyncPreempt)
	if err != nil || len(fns) != 1 {
		// pushCall jumps to the assembly body; with two of that name, which one is unknown.
		return nil, fmt.Sprintf("%d functions named %s in the function table", len(fns),
			fnAsyncPreempt)
	}
	fn := fns[0]
	code := f.Bytes(fn.Entry, fn.Size())
	if code == nil {
		return nil, fmt.Sprintf("no file bytes for %s", fnAsyncPreempt)
	}

	pl, err := walk(f, dec, fn.Entry, code, keepsStackSlots, SiteEntered,
		"first instruction of "+fnAsyncPreempt)
	if err != nil {
		return nil, err.Error()
	}
	return &pl, ""
}

// planVerdict finds the verdict site in doSigPreempt's code, or says why there is none.
func planVerdict(f *symtab.File, dec decoder, keep keepFunc, sig *symtab.Func,
	code []byte) (*Placement, string) {
	safe, err := f.LookupFunc(fnIsAsyncSafePoint)
	if err != nil {
		return nil, fmt.Sprintf("%s not in the function table", fnIsAsyncSafePoint)
	}

	next, ok := findCall(dec, sig.Entry, code, safe.Entry)
	if !ok {
		return nil, fmt.Sprintf("no call of %s in %s (inlined?)", fnIsAsyncSafePoint,
			fnDoSigPreempt)
	}

	off := next - sig.Entry
	pl, err := walk(f, dec, next, code[off:], keep, SiteVerdict,
		"instruction after the call of "+fnIsAsyncSafePoint)
	if err != nil {
		return nil, err.Error()
	}
	return &pl, ""
}

// planHandled finds the handled site in sighandler, or says why there is none.
func planHandled(f *symtab.File, dec decoder, sig *symtab.Func) (*Placement, string) {
	h, err := f.LookupFunc(fnSighandler)
	if err != nil {
		return nil, fmt.Sprintf("%s not in the function table", fnSighandler)
	}
	code := f.Bytes(h.Entry, h.Size())
	if code == nil {
		return nil, fmt.Sprintf("no file bytes for %s", fnSighandler)
	}

	next, ok := findCall(dec, h.Entry, code, sig.Entry)
	if !ok {
		return nil, fmt.Sprintf("no call of %s in %s", fnDoSigPreempt, fnSighandler)
	}

	off := next - h.Entry
	pl, err := walk(f, dec, next, code[off:], readsNothing, SiteHandled,
		"instruction after the call of "+fnDoSigPreempt)
	if err != nil {
		return nil, err.Error()
	}
	return &pl, ""
}

// checkTarget refuses binaries whose signal path the BPF programs cannot read.
func checkTarget(f *symtab.File) error {
	if f.Arch() != symtab.ArchAMD64 {
		return &UnsupportedError{What: fmt.Sprintf("target architecture %s", f.Arch()),
			Supported: "amd64 (arm64 is not implemented yet)"}
	}
	return nil
}

// CallABI says where the probes read doSigPreempt's arguments gp and ctxt at the entry site
// and isAsyncSafePoint's results ok and newpc at the verdict site.
type CallABI struct {
	// OnStack is true for the stack-based ABI0, which every amd64 Go function used before
	// Go 1.17 and which a 1.17 build with the register ABI turned off keeps. The offsets are
	// then from the stack pointer at the probed instruction. With the register ABI the
	// values are in RAX and RBX and the offsets are unused.
	OnStack bool

	GpOffset, CtxtOffset int32

	// OkOffset is where the bool result is; NewpcOffset is -1 for releases whose
	// isAsyncSafePoint returns no newpc (Go 1.14, where an accepted goroutine resumes at
	// the interrupted PC).
	OkOffset, NewpcOffset int32
}

// The stack ABI on amd64: a caller stores argument i at 8*i(SP) and calls, which pushes the
// return address, so the callee finds argument i at 8+8*i(SP) on entry; the results follow
// the arguments, each in its own word here, and the caller reads them at its own SP after
// the call returned.
const (
	abi0FirstArgOnEntry = 8

	// isAsyncSafePointArgWords counts isAsyncSafePoint's arguments gp, pc, sp and lr.
	isAsyncSafePointArgWords = 4
)

// The releases where the calling convention of the probed functions changed on amd64.
const (
	// firstNewpcMinor is the first Go 1.x release whose isAsyncSafePoint returns the PC to
	// resume at besides ok.
	firstNewpcMinor = 15

	// firstRegABIMinor is the first Go 1.x release whose amd64 Go functions take their
	// arguments in registers (unless built with GOEXPERIMENT=noregabi).
	firstRegABIMinor = 17
)

// callABI returns the calling convention of the target's runtime.
func callABI(v symtab.GoVersion) CallABI {
	if v.Minor >= firstRegABIMinor && !v.HasExperiment("noregabi") &&
		!v.HasExperiment("noregabiargs") {
		return CallABI{GpOffset: -1, CtxtOffset: -1, OkOffset: -1, NewpcOffset: -1}
	}

	abi := CallABI{
		OnStack:     true,
		GpOffset:    abi0FirstArgOnEntry,
		CtxtOffset:  abi0FirstArgOnEntry + 8,
		OkOffset:    8 * isAsyncSafePointArgWords,
		NewpcOffset: -1,
	}
	if v.Minor >= firstNewpcMinor {
		abi.NewpcOffset = abi.OkOffset + 8
	}
	return abi
}

// lookup returns the named function or a SymbolError.
func lookup(f *symtab.File, name string) (*symtab.Func, error) {
	fn, err := f.LookupFunc(name)
	if err != nil {
		return nil, &SymbolError{Symbol: name, GoVersion: f.Version().Raw, Err: err}
	}
	return fn, nil
}

// findCall returns the address after the first direct call to target in code, which
// starts at addr.
func findCall(dec decoder, addr uint64, code []byte, target uint64) (uint64, bool) {
	for off := 0; off < len(code); {
		in, err := dec(addr+uint64(off), code[off:])
		if err != nil {
			// Padding or data after the last instruction: nothing more to find.
			return 0, false
		}

		off += in.len
		if in.kind == kindCall && in.target == target {
			return addr + uint64(off), true
		}
	}
	return 0, false
}

// walk returns the placement for the straight-line code starting at addr: the first
// emulated instruction reached before any instruction that fails keep, or the instruction
// at addr itself when there is none within maxWalk instructions.
func walk(f *symtab.File, dec decoder, addr uint64, code []byte, keep keepFunc, site Site,
	what string) (Placement, error) {
	first, err := dec(addr, code)
	if err != nil {
		return Placement{}, fmt.Errorf("decode %s at %#x: %w", what, addr, err)
	}

	chosen, skipped := first, 0
	off := 0
	for i := 0; i < maxWalk && off < len(code); i++ {
		in, err := dec(addr+uint64(off), code[off:])
		if err != nil {
			break
		}

		if in.emulated {
			chosen, skipped = in, i
			break
		}
		if in.kind != kindOther || !keep(in) {
			break
		}
		off += in.len
	}

	why := what
	if skipped > 0 {
		why = fmt.Sprintf("%s, %d instruction(s) after the %s, which leave what the probe "+
			"reads alone", chosen.text, skipped, what)
	} else if chosen.emulated {
		why = fmt.Sprintf("%s: the %s", chosen.text, what)
	} else {
		why = fmt.Sprintf("%s: the %s; no emulated instruction follows before the registers "+
			"change, so each hit is single-stepped", chosen.text, what)
	}
	return placement(f, site, chosen, why)
}

// placement fills a Placement for a chosen instruction.
func placement(f *symtab.File, site Site, in insn, why string) (Placement, error) {
	off, ok := f.FileOffset(in.addr)
	if !ok {
		return Placement{}, fmt.Errorf("%s probe at %#x: %w", site, in.addr, errNoFileOffset)
	}
	return Placement{Site: site, Addr: in.addr, FileOffset: off, Insn: in.text,
		Emulated: in.emulated, Why: why}, nil
}

// errNoFileOffset reports a code address that no loadable segment backs with file bytes.
var errNoFileOffset = errors.New("address has no file offset")
