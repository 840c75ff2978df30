package probe

import (
	"bytes"
	"fmt"

	"golang.org/x/arch/x86/x86asm"

	"github.com/preempttrace/preempttrace/internal/amd64"
	"github.com/preempttrace/preempttrace/internal/symtab"
)

// insnKind sorts instructions by how they move control.
type insnKind uint8

const (
	kindOther  insnKind = iota // falls through to the next instruction
	kindCall                   // a call
	kindBranch                 // any other transfer: jumps, returns
)

// insn is one decoded instruction, as much as placement needs of it.
type insn struct {
	addr uint64
	len  int
	kind insnKind

	// target is the destination of a direct call or jump, else 0.
	target uint64

	// ret reports a near return, which leaves the function.
	ret bool

	// emulated reports that the kernel emulates the instruction at a uprobe hit.
	emulated bool

	// writes lists the 64-bit registers the instruction may change and writesMemory says
	// it may store to memory; clobbersAll says the decoder does not know, and every
	// register and all memory must be taken as changed.
	writes       []x86asm.Reg
	writesMemory bool
	clobbersAll  bool

	text string
}

// decoder decodes the instruction at the start of code, which sits at addr.
type decoder func(addr uint64, code []byte) (insn, error)

// keepFunc reports whether a walk may step over an instruction without losing what the
// probe after it reads.
type keepFunc func(insn) bool

// decoderFor returns the decoder of an architecture; checkTarget has refused the others.
func decoderFor(symtab.Arch) decoder {
	return decodeAMD64
}

// The Go ABIInternal registers the probes read on amd64: the first two integer argument
// and result registers (cmd/compile/abi-internal.md).
var goArgRegs = []x86asm.Reg{x86asm.RAX, x86asm.RBX}

// keepsGoRegs keeps instructions that leave the first two argument registers alone: they
// hold doSigPreempt's gp and ctxt at its entry, and isAsyncSafePoint's ok and newpc after
// its call, since Go returns results in the argument registers.
func keepsGoRegs(in insn) bool { return !in.writesAny(goArgRegs) }

// keepsStackSlots keeps instructions that neither move the stack pointer nor store to
// memory: with the stack ABI the probe reads arguments and results at fixed offsets from
// the stack pointer, so both the pointer and the slots must be as the call left them.
func keepsStackSlots(in insn) bool {
	return !in.writesMemory && !in.writesAny([]x86asm.Reg{x86asm.RSP})
}

// readsNothing keeps every instruction: the handled probe reads no register.
func readsNothing(insn) bool { return true }

// writesAny reports whether the instruction may change one of regs.
func (in insn) writesAny(regs []x86asm.Reg) bool {
	if in.clobbersAll {
		return true
	}
	for _, w := range in.writes {
		for _, r := range regs {
			if w == r {
				return true
			}
		}
	}
	return false
}

// decodeAMD64 decodes one x86-64 instruction.
func decodeAMD64(addr uint64, code []byte) (insn, error) {
	inst, err := x86asm.Decode(code, 64)
	if err != nil {
		return insn{}, fmt.Errorf("decode x86-64 at %#x: %w", addr, err)
	}

	in := insn{addr: addr, len: inst.Len, text: x86asm.GoSyntax(inst, addr, nil)}
	next := addr + uint64(inst.Len)
	rel, direct := inst.Args[0].(x86asm.Rel)

	switch {
	case inst.Op == x86asm.CALL:
		in.kind = kindCall
		if direct {
			in.target = uint64(int64(next) + int64(rel))
		}
	case isBranchOp(inst.Op):
		in.kind = kindBranch
		in.ret = inst.Op == x86asm.RET
		if direct {
			in.target = uint64(int64(next) + int64(rel))
		}
	}

	in.emulated = emulatedAMD64(inst, code[:inst.Len], direct)
	in.writes, in.writesMemory, in.clobbersAll = writesAMD64(inst)
	return in, nil
}

// isBranchOp reports whether op transfers control other than by a call.
func isBranchOp(op x86asm.Op) bool {
	switch op {
	case x86asm.JMP, x86asm.RET, x86asm.LRET, x86asm.IRET, x86asm.IRETD, x86asm.IRETQ,
		x86asm.JCXZ, x86asm.JECXZ, x86asm.JRCXZ, x86asm.LOOP, x86asm.LOOPE, x86asm.LOOPNE,
		x86asm.SYSCALL, x86asm.SYSRET, x86asm.UD2, x86asm.INT, x86asm.HLT:
		return true
	}
	return isJcc(op)
}

// isJcc reports whether op is a conditional jump on flags (opcodes 70–7F and 0F 80–8F).
func isJcc(op x86asm.Op) bool {
	switch op {
	case x86asm.JA, x86asm.JAE, x86asm.JB, x86asm.JBE, x86asm.JE, x86asm.JG, x86asm.JGE,
		x86asm.JL, x86asm.JLE, x86asm.JNE, x86asm.JNO, x86asm.JNP, x86asm.JNS, x86asm.JO,
		x86asm.JP, x86asm.JS:
		return true
	}
	return false
}

// x86Nops are the NOP encodings the kernel's x86 uprobe code recognises and emulates
// (its x86_nops table, which matches the forms Go's assembler emits), by length.
var x86Nops = [][]byte{
	1: {0x90},
	2: {0x66, 0x90},
	3: {0x0f, 0x1f, 0x00},
	4: {0x0f, 0x1f, 0x40, 0x00},
	5: {0x0f, 0x1f, 0x44, 0x00, 0x00},
	6: {0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00},
	7: {0x0f, 0x1f, 0x80, 0x00, 0x00, 0x00, 0x00},
	8: {0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00},
}

// emulatedAMD64 reports whether the kernel emulates inst at a uprobe hit instead of
// single-stepping a copy of it (arch/x86/kernel/uprobes.c): relative jumps and calls
// without an operand-size prefix, canonical NOPs, and pushes of a general register. Push
// emulation is recent (measured on 6.18); an older kernel single-steps a push, which costs
// time, not correctness. BenchmarkUprobeInstruction measures the difference.
func emulatedAMD64(inst x86asm.Inst, raw []byte, direct bool) bool {
	if len(raw) < len(x86Nops) && x86Nops[len(raw)] != nil && bytes.Equal(raw, x86Nops[len(raw)]) {
		return true
	}

	for _, p := range inst.Prefix {
		if p&0xff == 0x66 {
			return false
		}
	}

	switch {
	case direct && (inst.Op == x86asm.JMP || inst.Op == x86asm.CALL || isJcc(inst.Op)):
		return true
	case inst.Op == x86asm.PUSH:
		r, ok := inst.Args[0].(x86asm.Reg)
		return ok && r >= x86asm.RAX && r <= x86asm.R15 && inst.Len <= 2
	}
	return false
}

// writesAMD64 returns the registers inst may change and whether it may store to memory,
// or clobbersAll when the instruction is not one placement needs to step over and so was
// not modelled.
func writesAMD64(inst x86asm.Inst) (regs []x86asm.Reg, memory, clobbersAll bool) {
	switch inst.Op {
	case x86asm.CMP, x86asm.TEST, x86asm.BT, x86asm.NOP:
		return nil, false, false
	case x86asm.PUSH:
		return []x86asm.Reg{x86asm.RSP}, true, false
	case x86asm.MOV, x86asm.MOVZX, x86asm.MOVSX, x86asm.MOVSXD, x86asm.LEA, x86asm.ADD,
		x86asm.SUB, x86asm.AND, x86asm.OR, x86asm.XOR, x86asm.INC, x86asm.DEC, x86asm.NEG,
		x86asm.NOT, x86asm.SETE, x86asm.SETNE:
		switch dst := inst.Args[0].(type) {
		case x86asm.Reg:
			return []x86asm.Reg{amd64.Reg64(dst)}, false, false
		case x86asm.Mem:
			return nil, true, false
		}
	}
	return nil, true, true
}
