/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/*
 * The record preempttrace's probes send to user space, and the names shared with Go.
 *
 * Go does not mirror these declarations by hand: bpf2go generates the Go types from the BTF of
 * the compiled object (-type event, -type verdict, -type event_flag, -type counter; struct
 * runtime_offsets comes with the variable that uses it), so a change here reaches Go at the
 * next "go generate".
 */
#ifndef PREEMPTTRACE_H
#define PREEMPTTRACE_H

#include <linux/types.h>

/* MAX_THREADS bounds the accepted requests waiting: at most one per thread of the target. */
#define MAX_THREADS 16384

/* RINGBUF_BYTES is the default ring size; the loader may change it before loading. */
#define RINGBUF_BYTES (512 * 1024)

/* What the runtime decided about one preemption request. */
enum verdict {
	/* No probe observed the decision (the isAsyncSafePoint call site was not found). */
	VERDICT_UNKNOWN = 0,
	/* isAsyncSafePoint returned false: the goroutine keeps running. */
	VERDICT_REFUSED = 1,
	/* isAsyncSafePoint returned true: the goroutine resumes in asyncPreempt at resume_pc. */
	VERDICT_ACCEPTED = 2,
	/* doSigPreempt returned without asking: the goroutine no longer wanted preemption. */
	VERDICT_NOT_WANTED = 3,
};

/* Bits of event.flags. A field whose bit is clear is unknown and holds zero. */
enum event_flag {
	/* goid holds the goroutine id read from gp. */
	EVENT_GOID = 1 << 0,
	/* pc, sp and fp hold the interrupted registers. */
	EVENT_REGS = 1 << 1,
	/* si_code and si_pid hold the signal's origin. */
	EVENT_SIGINFO = 1 << 2,
	/*
	 * The request was completed by the next request on the same thread, not by the probe after
	 * doSigPreempt returned; verdict_ns is the time of that next request.
	 */
	EVENT_LATE = 1 << 3,
	/*
	 * m, stack_lo, curg, locks, mallocing, preemptoff_len, pp and pp_status hold the thread's
	 * state at doSigPreempt entry, which isAsyncSafePoint checks before the PC.
	 */
	EVENT_STATE = 1 << 4,
	/* curg_status holds m.curg.atomicstatus (with EVENT_STATE and a non-nil curg). */
	EVENT_CURG_STATUS = 1 << 5,
	/*
	 * The accepted goroutine was seen entering runtime.asyncPreempt: entered_ns and
	 * entered_ret hold when, and the PC asyncPreempt will return to.
	 */
	EVENT_ENTERED = 1 << 6,
	/*
	 * The accepted goroutine was watched for but not seen entering runtime.asyncPreempt
	 * before its thread's next accepted request. An accepted request with neither this nor
	 * EVENT_ENTERED was not watched, or tracing stopped first.
	 */
	EVENT_ENTRY_MISSED = 1 << 7,
	/* secret holds gp.secret (builds with GOEXPERIMENT=runtimesecret only). */
	EVENT_SECRET = 1 << 8,
	/* returned_at holds the RET isAsyncSafePoint left by, which tells the check that decided. */
	EVENT_RETURNED = 1 << 9,
};

/*
 * STATE_WINDOW is how many bytes of runtime.g or runtime.m the entry probe copies at once to
 * take several members from them: each read of the target's memory has a fixed cost that
 * dwarfs copying a hundred bytes more. An enum, so that bpf2go gives Go the same number.
 */
enum state_window {
	STATE_WINDOW = 128,
};

/*
 * Byte offsets of the runtime's struct members the probe reads, from the target's DWARF; -1 for
 * unknown. The thread state is read only when every member but g_atomicstatus is known.
 * g_window and m_window are where a STATE_WINDOW-byte copy of g (holding stack.lo and m) and
 * of m (holding curg, locks, mallocing, the length of preemptoff, and p) starts; -1 when the
 * members are too far apart and each is read on its own.
 */
struct runtime_offsets {
	__s32 g_m;
	__s32 g_stack_lo;
	__s32 g_atomicstatus;
	__s32 m_curg;
	__s32 m_locks;
	__s32 m_mallocing;
	__s32 m_preemptoff;
	__s32 m_p;
	__s32 p_status;
	__s32 g_window;
	__s32 m_window;
	/* g.secret, known only in builds whose isAsyncSafePoint checks it. */
	__s32 g_secret;
};

/*
 * Where the probes find doSigPreempt's arguments gp and ctxt at the entry probe and
 * isAsyncSafePoint's results ok and newpc at the verdict probe. With the register ABI
 * (ABIInternal, amd64 Go 1.17+) they are in the first two argument registers and the offsets
 * are unused. With the stack ABI (ABI0, Go 1.14-1.16) each is a byte offset from the stack
 * pointer at the probed instruction; newpc_sp_off is negative for Go 1.14, whose
 * isAsyncSafePoint returns no newpc because the goroutine resumes at the interrupted PC.
 */
struct call_abi {
	__u8 on_stack;
	__u8 _pad[3];
	__s32 gp_sp_off;
	__s32 ctxt_sp_off;
	__s32 ok_sp_off;
	__s32 newpc_sp_off;
};

/* Indexes of the counters map. Each counts per CPU. */
enum counter {
	/* bpf_ringbuf_reserve failed: the reader is too slow, the event is lost. */
	COUNTER_RINGBUF_FULL = 0,
	/*
	 * bpf_task_storage_get gave no request slot at doSigPreempt entry: no memory for it or,
	 * on kernels before 6.2, another task-storage call under way on the same CPU. The event
	 * is lost. Before 6.2 the same can happen at the verdict probe; the handled probe then
	 * reports a request the runtime did ask about as not wanted.
	 */
	COUNTER_NO_SLOT = 1,
	/*
	 * A verdict arrived for a thread with no request in flight: its SIGURG came just before
	 * tracing began, or its entry was already counted in COUNTER_NO_SLOT.
	 */
	COUNTER_VERDICT_ORPHAN = 2,
	/* A request was still in flight when the next one began (see EVENT_LATE). */
	COUNTER_LATE = 3,
	/*
	 * The accepted map was full: an accepted request was sent without waiting for its
	 * asyncPreempt entry, which is then unknown.
	 */
	COUNTER_ACCEPTED_FULL = 4,
	/* Requests stored at entry, and requests completed; the difference is in flight. */
	COUNTER_STARTED = 5,
	COUNTER_COMPLETED = 6,
	COUNTER_MAX = 7,
};

/* One SIGURG that reached runtime.doSigPreempt in the target. */
struct event {
	/* bpf_ktime_get_ns at doSigPreempt entry. */
	__u64 time_ns;
	/* bpf_ktime_get_ns when the event was completed (verdict seen, or handler done). */
	__u64 verdict_ns;
	/* The interrupted thread's PC, SP and frame pointer, from the signal's ucontext. */
	__u64 pc;
	__u64 sp;
	__u64 fp;
	/* The *g doSigPreempt was given: the goroutine the signal interrupted. */
	__u64 gp;
	/* gp.goid, valid with EVENT_GOID. */
	__u64 goid;
	/* isAsyncSafePoint's newpc: where an accepted goroutine resumes; 0 otherwise. */
	__u64 resume_pc;
	/* With EVENT_ENTERED: bpf_ktime_get_ns at asyncPreempt entry, and its return address. */
	__u64 entered_ns;
	__u64 entered_ret;
	/* With EVENT_STATE: gp.m, gp.stack.lo, m.curg, m.p (pp) and len(m.preemptoff). */
	__u64 m;
	__u64 stack_lo;
	__u64 curg;
	__u64 pp;
	__u64 preemptoff_len;
	/* With EVENT_STATE: m.locks, m.mallocing, and pp.status (0 when pp is nil). */
	__s32 locks;
	__s32 mallocing;
	__u32 pp_status;
	/* With EVENT_CURG_STATUS: m.curg.atomicstatus. */
	__u32 curg_status;
	/* Thread group and thread id, in the tracer's PID namespace. */
	__u32 pid;
	__u32 tid;
	/* siginfo.si_code (SI_TKILL -6 from the runtime, SI_USER 0 from kill) and si_pid. */
	__s32 si_code;
	__u32 si_pid;
	/* enum verdict. */
	__u8 verdict;
	__u8 _pad;
	/* enum event_flag bits. */
	__u16 flags;
	/* With EVENT_SECRET: gp.secret, non-zero inside runtime/secret.Do. */
	__s32 secret;
	/* With EVENT_RETURNED: the address of the RET isAsyncSafePoint returned by. */
	__u64 returned_at;
};

#endif /* PREEMPTTRACE_H */
