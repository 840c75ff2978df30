#include "textflag.h"
#include "funcdata.h"

// func asmLoop(n uint64)
TEXT ·asmLoop(SB), $0-8
	MOVD	n+0(FP), R0
	CBZ	R0, done
loop:
	SUB	$1, R0, R0
	CBNZ	R0, loop
done:
	RET

// func noPointersLoop(n uint64)
TEXT ·noPointersLoop(SB), $16-8
	NO_LOCAL_POINTERS
	MOVD	n+0(FP), R0
	CBZ	R0, done
loop:
	MOVD	R0, count-8(SP)
	SUB	$1, R0, R0
	CBNZ	R0, loop
done:
	RET
