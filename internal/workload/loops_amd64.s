#include "textflag.h"
#include "funcdata.h"

// func asmLoop(n uint64)
TEXT ·asmLoop(SB), $0-8
	MOVQ	n+0(FP), CX
	TESTQ	CX, CX
	JZ	done
loop:
	DECQ	CX
	JNZ	loop
done:
	RET

// func noPointersLoop(n uint64)
TEXT ·noPointersLoop(SB), $16-8
	NO_LOCAL_POINTERS
	MOVQ	n+0(FP), CX
	TESTQ	CX, CX
	JZ	done
loop:
	MOVQ	CX, count-8(SP)
	DECQ	CX
	JNZ	loop
done:
	RET
