#include "textflag.h"

// func kinds(n uint64)
//
// Each labelled instruction is a probe site; the benchmark finds them by their bytes. The
// loop body is the only code between loop and done.
TEXT ·kinds(SB), NOSPLIT, $0-8
	MOVQ	n+0(FP), CX
loop:
	BYTE	$0x90				// nop, 1 byte
	BYTE	$0x66; BYTE $0x90		// nop, 2 bytes
	BYTE	$0x0f; BYTE $0x1f; BYTE $0x44; BYTE $0x00; BYTE $0x00	// nop, 5 bytes
	CMPQ	CX, $0				// compare
	TESTQ	CX, CX				// test
	MOVQ	CX, DX				// register move
	PUSHQ	BP				// push
	POPQ	BP				// pop
	JEQ	done				// conditional jump, not taken
	DECQ	CX
	JMP	loop				// jump
done:
	RET
