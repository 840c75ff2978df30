package target

import (
	"golang.org/x/arch/x86/x86asm"

	"github.com/preempttrace/preempttrace/internal/amd64"
	"github.com/preempttrace/preempttrace/internal/symtab"
)

// isAsyncSafePoint is the runtime function whose code stateFromCode reads.
const isAsyncSafePoint = "runtime.isAsyncSafePoint"

// maxCodeScan bounds how many instructions of isAsyncSafePoint stateFromCode reads: the
// checks it looks for come first, within about 40 instructions in every release.
const maxCodeScan = 80

// role is what a register holds while stateFromCode follows isAsyncSafePoint's code.
type role uint8

const (
	roleNone role = iota
	roleG         // gp, the goroutine
	roleM         // gp.m
	roleP         // gp.m.p
	roleCurG      // gp.m.curg
)

// codeReader follows isAsyncSafePoint's first checks, which every release from Go 1.14 to
// 1.27 compiles to the same sequence on amd64 (runtime/preempt.go):
//
//	mp := gp.m                      MOVQ m(G), M
//	if mp.curg != gp                CMPQ curg(M), G   or  MOVQ curg(M), C; CMPQ G, C
//	if mp.p == 0 ||                 MOVQ p(M), P
//	  !canPreemptM(mp)              CMPL locks(M), $0; CMPL mallocing(M), $0;
//	                                CMPQ preemptoff+8(M), $0; CMPL status(P), $1
//	                                (Go 1.26+: MOVL atomicstatus(C), …)
//	if sp < gp.stack.lo …           MOVQ stack.lo(G), …
//
// It tracks which registers hold gp, m, p and curg, and takes each offset from the first
// instruction of its shape. Anything else is stepped over: the branches lead to the
// returns, and the code in between only sets results.
type codeReader struct {
	roles map[x86asm.Reg]role
	st    StateOffsets
	found map[*int32]bool

	// spDelta is how far the stack pointer moved since entry, for the stack ABI, whose gp
	// is the first argument above the return address.
	spDelta  int64
	stackABI bool
}

// stateFromCode reads the thread-state offsets from the target's own machine code, for
// amd64 builds that have neither DWARF nor a row in the release table; nil when the code
// does not have the expected shape. Only the members isAsyncSafePoint reads before the PC
// come from there: the preemption requests and g.secret stay unknown.
func stateFromCode(f *symtab.File) *StateOffsets {
	if f.Arch() != symtab.ArchAMD64 {
		return nil
	}
	fn, err := f.LookupFunc(isAsyncSafePoint)
	if err != nil {
		return nil
	}
	code := f.Bytes(fn.Entry, fn.Size())
	if code == nil {
		return nil
	}

	r := &codeReader{roles: map[x86asm.Reg]role{}, found: map[*int32]bool{},
		st: StateOffsets{GAtomicstatus: -1, GPreempt: -1, PPreempt: -1, GSecret: -1}}
	v := f.Version()
	r.stackABI = v.Minor < 17 || v.HasExperiment("noregabi") || v.HasExperiment("noregabiargs")
	if !r.stackABI {
		r.roles[x86asm.RAX] = roleG
	}

	for off, n := 0, 0; off < len(code) && n < maxCodeScan && !r.done(v); n++ {
		inst, err := x86asm.Decode(code[off:], 64)
		if err != nil {
			return nil
		}
		off += inst.Len
		r.step(inst)
	}
	if !r.complete() {
		return nil
	}
	return &r.st
}

// required are the members stateFromCode must find.
func (r *codeReader) required() []*int32 {
	s := &r.st
	return []*int32{&s.GM, &s.GStackLo, &s.MCurg, &s.MLocks, &s.MMallocing, &s.MPreemptoff,
		&s.MP, &s.PStatus}
}

// complete reports whether every required member was found.
func (r *codeReader) complete() bool {
	for _, p := range r.required() {
		if !r.found[p] {
			return false
		}
	}
	return true
}

// done reports whether the scan can stop: all found, and from Go 1.26, whose canPreemptM
// also reads m.curg's status, that too.
func (r *codeReader) done(v symtab.GoVersion) bool {
	return r.complete() && (v.Minor < 26 || r.found[&r.st.GAtomicstatus])
}

// set records off for member p the first time.
func (r *codeReader) set(p *int32, off int64) {
	if !r.found[p] {
		*p, r.found[p] = int32(off), true
	}
}

// step follows one instruction.
func (r *codeReader) step(inst x86asm.Inst) {
	switch inst.Op {
	case x86asm.PUSH:
		r.spDelta += 8
		return
	case x86asm.SUB:
		if reg, ok := inst.Args[0].(x86asm.Reg); ok && reg == x86asm.RSP {
			if imm, ok := inst.Args[1].(x86asm.Imm); ok {
				r.spDelta += int64(imm)
			}
		}
		return
	case x86asm.MOV:
		r.load(inst)
	case x86asm.CMP:
		r.compare(inst)
	case x86asm.TEST, x86asm.BT, x86asm.NOP:
		// They write no register.
	default:
		// Whatever else writes a register ends what it held.
		if dst, ok := inst.Args[0].(x86asm.Reg); ok {
			delete(r.roles, amd64.Reg64(dst))
		}
	}
}

// load follows MOV dst, src.
func (r *codeReader) load(inst x86asm.Inst) {
	dst, ok := inst.Args[0].(x86asm.Reg)
	if !ok {
		return
	}
	dst = amd64.Reg64(dst)
	mem, ok := inst.Args[1].(x86asm.Mem)
	if !ok || mem.Index != 0 || mem.Segment != 0 {
		delete(r.roles, dst)
		return
	}

	base := r.roles[mem.Base]
	got := roleNone
	switch {
	case r.stackABI && mem.Base == x86asm.RSP && mem.Disp == r.spDelta+8:
		got = roleG
	case base == roleG && !r.found[&r.st.GM]:
		r.set(&r.st.GM, mem.Disp)
		got = roleM
	case base == roleG && r.found[&r.st.PStatus]:
		r.set(&r.st.GStackLo, mem.Disp)
	case base == roleM && !r.found[&r.st.MCurg]:
		r.set(&r.st.MCurg, mem.Disp)
		got = roleCurG
	case base == roleM && int32(mem.Disp) == r.st.MCurg:
		got = roleCurG
	case base == roleM && !r.found[&r.st.MP]:
		r.set(&r.st.MP, mem.Disp)
		got = roleP
	case base == roleCurG && r.found[&r.st.PStatus] && inst.MemBytes == 4:
		r.set(&r.st.GAtomicstatus, mem.Disp)
	}
	if got == roleNone {
		delete(r.roles, dst)
	} else {
		r.roles[dst] = got
	}
}

// compare follows CMP a, b.
func (r *codeReader) compare(inst x86asm.Inst) {
	mem, memFirst := inst.Args[0].(x86asm.Mem)
	other := inst.Args[1]
	if !memFirst {
		var ok bool
		if mem, ok = inst.Args[1].(x86asm.Mem); !ok {
			return
		}
		other = inst.Args[0]
	}
	if mem.Index != 0 || mem.Segment != 0 {
		return
	}

	base := r.roles[mem.Base]
	imm, isImm := other.(x86asm.Imm)
	reg, isReg := other.(x86asm.Reg)
	switch {
	case base == roleM && isReg && r.roles[amd64.Reg64(reg)] == roleG:
		r.set(&r.st.MCurg, mem.Disp)
	case base == roleM && isImm && imm == 0 && inst.MemBytes == 4 && !r.found[&r.st.MLocks]:
		r.set(&r.st.MLocks, mem.Disp)
	case base == roleM && isImm && imm == 0 && inst.MemBytes == 4:
		r.set(&r.st.MMallocing, mem.Disp)
	case base == roleM && isImm && imm == 0 && inst.MemBytes == 8:
		// The length of preemptoff, a string's second word.
		r.set(&r.st.MPreemptoff, mem.Disp-8)
	case base == roleP && isImm && imm == 1 && inst.MemBytes == 4:
		r.set(&r.st.PStatus, mem.Disp)
	case base == roleG && r.found[&r.st.PStatus]:
		r.set(&r.st.GStackLo, mem.Disp)
	}
}
