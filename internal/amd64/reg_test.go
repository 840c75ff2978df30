package amd64

import (
	"testing"

	"golang.org/x/arch/x86/x86asm"
)

func TestReg64(t *testing.T) {
	tests := []struct{ in, want x86asm.Reg }{
		{x86asm.AL, x86asm.RAX}, {x86asm.AH, x86asm.RAX}, {x86asm.BH, x86asm.RBX},
		{x86asm.AX, x86asm.RAX}, {x86asm.EAX, x86asm.RAX}, {x86asm.RAX, x86asm.RAX},
		{x86asm.SPB, x86asm.RSP}, {x86asm.R8B, x86asm.R8}, {x86asm.R15W, x86asm.R15},
		{x86asm.R9L, x86asm.R9}, {x86asm.ESI, x86asm.RSI}, {x86asm.RIP, x86asm.RIP},
	}
	for _, tt := range tests {
		if got := Reg64(tt.in); got != tt.want {
			t.Errorf("Reg64(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
