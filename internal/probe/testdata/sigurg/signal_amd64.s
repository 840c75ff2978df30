#include "textflag.h"

#define SYS_clock_gettime 228
#define SYS_tgkill 234
#define CLOCK_MONOTONIC 1
#define SIGURG 23

// NOW reads CLOCK_MONOTONIC into dst, as nanoseconds, through the timespec at 0(SP). A raw
// system call and not the vDSO: this code runs without the runtime's help. It clobbers AX,
// CX, DI, SI and R11.
#define NOW(dst) \
	MOVQ	$CLOCK_MONOTONIC, DI; \
	MOVQ	SP, SI; \
	MOVQ	$SYS_clock_gettime, AX; \
	SYSCALL; \
	MOVQ	0(SP), dst; \
	IMULQ	$1000000000, dst; \
	ADDQ	8(SP), dst

// func signalWanted(pid, tid, n, warmNs int64) (ns int64)
//
// Runs for warmNs without a preemption point, long enough for sysmon to mark the goroutine
// for preemption, then sends its own thread n SIGURGs with tgkill and returns the nanoseconds
// they took. Each signal interrupts this assembly just after its SYSCALL, so the runtime wants
// the preemption and refuses it. A failed tgkill returns -1.
TEXT ·signalWanted(SB), NOSPLIT, $16-40
	NOW(R12)
	MOVQ	warmNs+24(FP), R13
	ADDQ	R12, R13

warm:
	NOW(R12)
	CMPQ	R12, R13
	JLT	warm

	MOVQ	n+16(FP), BX
	NOW(R9)

signal:
	MOVQ	pid+0(FP), DI
	MOVQ	tid+8(FP), SI
	MOVQ	$SIGURG, DX
	MOVQ	$SYS_tgkill, AX
	SYSCALL
	TESTQ	AX, AX
	JNE	failed
	DECQ	BX
	JNZ	signal

	NOW(R12)
	SUBQ	R9, R12
	MOVQ	R12, ns+32(FP)
	RET

failed:
	MOVQ	$-1, ns+32(FP)
	RET
