/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/*
 * Where the Go runtime keeps the values preempttrace reads, per architecture.
 *
 * Register use follows Go's internal register ABI (ABIInternal), documented in the Go tree at
 * src/cmd/compile/abi-internal.md: on amd64, integer arguments and results are passed in RAX,
 * RBX, RCX, RDI, RSI, R8, R9, R10, R11 in that order, and R14 holds the current g. ABIInternal is
 * the default for Go functions on linux/amd64 since Go 1.17 (arm64: 1.18). Older releases pass
 * arguments and results on the stack (ABI0); the loader then says where (struct call_abi).
 *
 * The signal-context offsets are those of the Linux ucontext_t that the kernel builds on the
 * signal stack (runtime/defs_linux_amd64.go: ucontext.uc_mcontext at +40, then the sigcontext
 * registers in kernel order). They are fixed by the kernel ABI and the same for every Go release.
 */
#ifndef PREEMPTTRACE_GOABI_H
#define PREEMPTTRACE_GOABI_H

#include <linux/types.h>

#if defined(__TARGET_ARCH_x86)

/*
 * The kernel's struct pt_regs on x86-64, which is the context of a uprobe program. Only the
 * layout matters: the verifier checks context reads by offset and size.
 */
struct pt_regs {
	__u64 r15;
	__u64 r14;
	__u64 r13;
	__u64 r12;
	__u64 bp;
	__u64 bx;
	__u64 r11;
	__u64 r10;
	__u64 r9;
	__u64 r8;
	__u64 ax;
	__u64 cx;
	__u64 dx;
	__u64 si;
	__u64 di;
	__u64 orig_ax;
	__u64 ip;
	__u64 cs;
	__u64 flags;
	__u64 sp;
	__u64 ss;
};

/* GO_ARG0 and GO_ARG1 are the first two integer argument (and result) registers. */
#define GO_ARG0(r) ((r)->ax)
#define GO_ARG1(r) ((r)->bx)

/* GO_RESULT_BOOL0 is a bool result in the first result register: the compiler tests AL only. */
#define GO_RESULT_BOOL0(r) ((__u8)((r)->ax & 0xff))

/* GO_SP is the stack pointer, from which the stack ABI (ABI0) addresses arguments and results. */
#define GO_SP(r) ((r)->sp)

/* GO_PC is the probed instruction's address: the kernel rewinds it past the breakpoint. */
#define GO_PC(r) ((r)->ip)

/*
 * The interrupted thread's registers in the ucontext the kernel passed to the signal handler.
 * UCTX_REGS_OFF..UCTX_REGS_END is the smallest window holding all three, read in one copy.
 */
#define UCTX_FP_OFF   120 /* RBP */
#define UCTX_SP_OFF   160 /* RSP */
#define UCTX_PC_OFF   168 /* RIP */
#define UCTX_REGS_OFF UCTX_FP_OFF
#define UCTX_REGS_END (UCTX_PC_OFF + 8)

#elif defined(__TARGET_ARCH_arm64)

/*
 * The kernel's struct user_pt_regs on arm64, which is the context of a uprobe program. Go's
 * ABIInternal (Go 1.18+ on arm64) passes integer arguments and results in R0-R15.
 */
struct pt_regs {
	__u64 regs[31];
	__u64 sp;
	__u64 pc;
	__u64 pstate;
};

#define GO_ARG0(r)	   ((r)->regs[0])
#define GO_ARG1(r)	   ((r)->regs[1])
#define GO_RESULT_BOOL0(r) ((__u8)((r)->regs[0] & 0xff))
#define GO_SP(r)	   ((r)->sp)
#define GO_PC(r)	   ((r)->pc)

/*
 * runtime/defs_linux_arm64.go: uc_mcontext at +176, then fault_address and regs[31], sp, pc.
 * R29 (the frame pointer) is at +416, SP at +432, PC at +440.
 */
#define UCTX_FP_OFF	   416
#define UCTX_SP_OFF	   432
#define UCTX_PC_OFF	   440
#define UCTX_REGS_OFF	   UCTX_FP_OFF
#define UCTX_REGS_END	   (UCTX_PC_OFF + 8)

#else
#error "preempttrace: only amd64 (__TARGET_ARCH_x86) and arm64 are implemented"
#endif

/*
 * runtime.sigctxt (runtime/signal_linux_amd64.go and _arm64.go, unchanged since Go 1.14):
 * struct { info *siginfo; ctxt unsafe.Pointer }.
 */
struct go_sigctxt {
	__u64 info;
	__u64 ctxt;
};

/*
 * The head of the kernel's siginfo_t for a signal sent by kill(2) or tgkill(2). The runtime
 * sends its preemption requests with tgkill (si_code SI_TKILL); kill(1) gives SI_USER.
 */
struct go_siginfo_head {
	__s32 si_signo;
	__s32 si_errno;
	__s32 si_code;
	__s32 _pad;
	__u32 si_pid;
	__u32 si_uid;
};

#endif /* PREEMPTTRACE_GOABI_H */
