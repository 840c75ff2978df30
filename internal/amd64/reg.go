// Package amd64 holds what the packages that read x86-64 machine code with
// golang.org/x/arch/x86/x86asm share about it.
package amd64

import "golang.org/x/arch/x86/x86asm"

// Reg64 returns the 64-bit register that contains r: AL, AH, AX and EAX give RAX, R8B,
// R8W and R8L give R8. Any other register is returned as it is.
func Reg64(r x86asm.Reg) x86asm.Reg {
	switch {
	case r >= x86asm.AL && r <= x86asm.BL:
		return x86asm.RAX + (r - x86asm.AL)
	case r >= x86asm.AH && r <= x86asm.BH:
		return x86asm.RAX + (r - x86asm.AH)
	case r >= x86asm.SPB && r <= x86asm.R15B:
		return x86asm.RSP + (r - x86asm.SPB)
	case r >= x86asm.AX && r <= x86asm.R15W:
		return x86asm.RAX + (r - x86asm.AX)
	case r >= x86asm.EAX && r <= x86asm.R15L:
		return x86asm.RAX + (r - x86asm.EAX)
	}
	return r
}
