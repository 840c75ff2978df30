//go:build ignore
// SPDX-License-Identifier: (GPL-2.0-only OR MIT)

/*
 * Uprobes on the Go runtime's asynchronous-preemption signal path (runtime/signal_unix.go):
 *
 *	sighandler(sig, info, ctxt, gp)
 *	  doSigPreempt(gp, c)              <- preempttrace_sigpreempt: gp, pc, sp, fp, goid,
 *	                                      and the M and P state isAsyncSafePoint checks
 *	    if wantAsyncPreempt(gp) {
 *	      ok, newpc := isAsyncSafePoint(gp, pc, sp, lr)
 *	                                   <- preempttrace_verdict: ok and newpc
 *	      if ok { ctxt.pushCall(asyncPreempt, newpc) }
 *	    }
 *	  (doSigPreempt has returned)      <- preempttrace_handled: a request without verdict
 *	(sigreturn)
 *	asyncPreempt                       <- preempttrace_entered: an accepted request took
 *	                                      effect; the return address pushCall left
 *
 * Each probe sits on an instruction the kernel emulates near that point; the loader chooses it
 * (internal/probe/placement.go). A request is kept in its thread's slot of the inflight map
 * (task-local storage) from the first probe to the second or the third, so each SIGURG gives
 * one event with the interrupted PC, the runtime's verdict and the resume PC. When the fourth
 * probe is attached, an accepted request waits in the accepted map until its goroutine enters
 * asyncPreempt, which confirms it.
 * The programs only read the target's memory.
 */

#include <stdbool.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "goabi.h"
#include "preempttrace.h"

char __license[] SEC("license") = "Dual MIT/GPL";

/* Set by the loader before loading. */

/* The target's thread group id, in the tracer's PID namespace. */
volatile const __u32 cfg_tgid = 0;

/* Non-zero when the tracer is not in the initial PID namespace: compare ids in its own one. */
volatile const __u8 cfg_use_pidns = 0;
volatile const __u64 cfg_pidns_dev = 0;
volatile const __u64 cfg_pidns_ino = 0;

/* Byte offset of g.goid, or negative when unknown (no DWARF): goid is then never read. */
volatile const __s64 cfg_goid_offset = -1;

/* Where g, m and p keep the state isAsyncSafePoint checks; all unknown until the loader says. */
volatile const struct runtime_offsets cfg_offsets = {
	.g_m = -1,
	.g_stack_lo = -1,
	.g_atomicstatus = -1,
	.m_curg = -1,
	.m_locks = -1,
	.m_mallocing = -1,
	.m_preemptoff = -1,
	.m_p = -1,
	.p_status = -1,
	.g_window = -1,
	.m_window = -1,
	.g_secret = -1,
};

/* How doSigPreempt and isAsyncSafePoint pass values; the register ABI unless the loader says. */
volatile const struct call_abi cfg_abi = {
	.on_stack = 0,
	.newpc_sp_off = -1,
};

/*
 * Wake the reader only once this many bytes wait in the ring; it polls for fewer. A wakeup per
 * event would cost the target more than the probes themselves (BenchmarkSIGURG).
 */
volatile const __u64 cfg_wakeup_bytes = RINGBUF_BYTES / 8;

/* Which of the later probes are attached; without them events are completed differently. */
volatile const __u8 cfg_have_verdict = 0;
volatile const __u8 cfg_have_handled = 0;
volatile const __u8 cfg_have_entered = 0;

/*
 * Written by the loader at run time: non-zero from when every probe is attached until Stop.
 * Outside that window no request is started, and a verdict without its entry is expected (the
 * entry probe is attached last and detached first), so it is not counted as a loss.
 */
volatile __u8 tracing = 0;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, RINGBUF_BYTES);
} events SEC(".maps");

/* A thread's request between doSigPreempt entry and its completion. */
struct request {
	struct event ev;
	/* Non-zero while ev waits for its verdict or for the handler to end. */
	__u8 active;
};

struct task_struct;

/*
 * Each thread's request slot, in task-local storage: reached through the current task with
 * no hashing and no lock, which made the entry and handled programs 0.2-0.4 us faster each
 * than a hash map keyed by thread id (BenchmarkSIGURG, bpf-ns/<site>). A slot goes away with
 * its thread.
 */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct request);
} inflight SEC(".maps");

/* Accepted requests waiting for their goroutine to enter asyncPreempt, by thread id. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_THREADS);
	__type(key, __u32);
	__type(value, struct event);
} accepted SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COUNTER_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/* Force BTF for the types Go generates, which no map or program mentions by value. */
const enum verdict *unused_verdict __attribute__((unused));
const enum event_flag *unused_event_flag __attribute__((unused));
const enum counter *unused_counter __attribute__((unused));
const enum state_window *unused_state_window __attribute__((unused));
const struct runtime_offsets *unused_runtime_offsets __attribute__((unused));

static __always_inline void
count(__u32 which)
{
	__u64 *n = bpf_map_lookup_elem(&counters, &which);

	/*
	 * Atomic although per CPU: uprobe programs run with only migration disabled, so another
	 * task may run one on this CPU in between, and a lost increment of COUNTER_COMPLETED
	 * would show a request in flight that is not.
	 */
	if (n)
		__sync_fetch_and_add(n, 1);
}

/*
 * current_ids returns the calling thread's ids in the tracer's PID namespace, and false for a
 * thread outside the target.
 */
static __always_inline bool
current_ids(__u32 *tgid, __u32 *tid)
{
	if (cfg_use_pidns) {
		struct bpf_pidns_info ns = {};

		if (bpf_get_ns_current_pid_tgid(cfg_pidns_dev, cfg_pidns_ino, &ns, sizeof(ns)))
			return false;
		*tgid = ns.tgid;
		*tid = ns.pid;
	} else {
		__u64 id = bpf_get_current_pid_tgid();

		*tgid = id >> 32;
		*tid = (__u32)id;
	}
	return *tgid == cfg_tgid;
}

/* reserve returns room for one event in the ring, or NULL after counting the loss. */
static __always_inline struct event *
reserve(void)
{
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e)
		count(COUNTER_RINGBUF_FULL);
	return e;
}

/* send submits a reserved event, waking the reader only when enough waits in the ring. */
static __always_inline void
send(struct event *e)
{
	__u64 wakeup = BPF_RB_NO_WAKEUP;

	if (bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= cfg_wakeup_bytes)
		wakeup = BPF_RB_FORCE_WAKEUP;
	bpf_ringbuf_submit(e, wakeup);
}

/* request_slot returns the calling thread's request slot, creating it if create. */
static __always_inline struct request *
request_slot(bool create)
{
	return bpf_task_storage_get(&inflight, bpf_get_current_task_btf(), 0,
				    create ? BPF_LOCAL_STORAGE_GET_F_CREATE : 0);
}

/* active_request returns the calling thread's request in flight; NULL outside the target. */
static __always_inline struct request *
active_request(void)
{
	__u32 tgid, tid;
	struct request *slot;

	if (!current_ids(&tgid, &tid))
		return NULL;

	slot = request_slot(false);
	return slot && slot->active ? slot : NULL;
}

/* finish marks the thread's request completed. */
static __always_inline void
finish(struct request *r)
{
	r->active = 0;
	count(COUNTER_COMPLETED);
}

/* submit sends a completed copy of req to user space, or counts it as lost. */
static __always_inline void
submit(const struct event *req, __u8 verdict, __u64 resume_pc, __u16 flags, __u64 now)
{
	struct event *e = reserve();

	if (!e)
		return;

	__builtin_memcpy(e, req, sizeof(*e));
	e->verdict = verdict;
	e->resume_pc = resume_pc;
	e->flags |= flags;
	e->verdict_ns = now;
	send(e);
}

/* submit_as_is sends a copy of an event completed before, adding flags. */
static __always_inline void
submit_as_is(const struct event *done, __u16 flags)
{
	struct event *e = reserve();

	if (!e)
		return;

	__builtin_memcpy(e, done, sizeof(*e));
	e->flags |= flags;
	send(e);
}

/* read_at copies size bytes at addr + off in the target into dst; false when unreadable. */
static __always_inline bool
read_at(void *dst, __u32 size, __u64 addr, __s32 off)
{
	return addr && off >= 0 && !bpf_probe_read_user(dst, size, (const void *)(addr + off));
}

_Static_assert((STATE_WINDOW & (STATE_WINDOW - 1)) == 0,
	       "window_at masks offsets with STATE_WINDOW - 1");

/* A copy of STATE_WINDOW bytes of one struct, from its offset start on. */
struct window {
	__s64 start;
	/* Eight bytes of slack keep every masked member offset inside. */
	__u8 buf[STATE_WINDOW + 8];
};

/* window_read copies the window of the struct at addr that starts at offset start. */
static __always_inline bool
window_read(struct window *w, __u64 addr, __s32 start)
{
	w->start = start;
	return addr && start >= 0 &&
	       !bpf_probe_read_user(w->buf, STATE_WINDOW, (const void *)(addr + start));
}

/*
 * window_at returns where the member at offset off sits in the window; the loader put it
 * inside, and the mask makes that plain to the verifier too.
 */
static __always_inline const __u8 *
window_at(const struct window *w, __s32 off)
{
	return &w->buf[(__u64)(off - w->start) & (STATE_WINDOW - 1)];
}

static __always_inline __u64
window_u64(const struct window *w, __s32 off)
{
	__u64 v;

	__builtin_memcpy(&v, window_at(w, off), sizeof(v));
	return v;
}

static __always_inline __s32
window_s32(const struct window *w, __s32 off)
{
	__s32 v;

	__builtin_memcpy(&v, window_at(w, off), sizeof(v));
	return v;
}

/*
 * read_state_windows reads what read_state_fields reads with one copy of g and one of m, when
 * the loader found the members close enough together.
 */
static __always_inline bool
read_state_windows(struct event *e, __u64 gp)
{
	struct window w = {};

	if (!window_read(&w, gp, cfg_offsets.g_window))
		return false;
	e->m = window_u64(&w, cfg_offsets.g_m);
	e->stack_lo = window_u64(&w, cfg_offsets.g_stack_lo);

	if (!window_read(&w, e->m, cfg_offsets.m_window))
		return false;
	e->curg = window_u64(&w, cfg_offsets.m_curg);
	e->locks = window_s32(&w, cfg_offsets.m_locks);
	e->mallocing = window_s32(&w, cfg_offsets.m_mallocing);
	e->pp = window_u64(&w, cfg_offsets.m_p);
	e->preemptoff_len = window_u64(&w, cfg_offsets.m_preemptoff + 8);

	return !e->pp || read_at(&e->pp_status, sizeof(e->pp_status), e->pp, cfg_offsets.p_status);
}

/*
 * read_state_fields reads the state isAsyncSafePoint checks before the PC (runtime/preempt.go):
 * whether gp is its M's current goroutine, what canPreemptM reads of the M and its P, and the
 * stack's low bound; false when one of them is unknown or unreadable.
 */
static __always_inline bool
read_state_fields(struct event *e, __u64 gp)
{
	if (cfg_offsets.p_status < 0 || cfg_offsets.m_preemptoff < 0)
		return false;
	if (cfg_offsets.g_window >= 0 && cfg_offsets.m_window >= 0)
		return read_state_windows(e, gp);
	if (!read_at(&e->m, sizeof(e->m), gp, cfg_offsets.g_m) ||
	    !read_at(&e->stack_lo, sizeof(e->stack_lo), gp, cfg_offsets.g_stack_lo) ||
	    !read_at(&e->curg, sizeof(e->curg), e->m, cfg_offsets.m_curg) ||
	    !read_at(&e->locks, sizeof(e->locks), e->m, cfg_offsets.m_locks) ||
	    !read_at(&e->mallocing, sizeof(e->mallocing), e->m, cfg_offsets.m_mallocing) ||
	    !read_at(&e->pp, sizeof(e->pp), e->m, cfg_offsets.m_p))
		return false;

	/* A Go string is a pointer and a length word; only its emptiness matters. */
	if (!read_at(&e->preemptoff_len, sizeof(e->preemptoff_len), e->m,
		     cfg_offsets.m_preemptoff + 8))
		return false;

	/* canPreemptM reads m.p.status only after the runtime checked m.p != 0. */
	return !e->pp || read_at(&e->pp_status, sizeof(e->pp_status), e->pp, cfg_offsets.p_status);
}

/*
 * read_state fills the thread state, or leaves it all zero when any of it is unknown. It is read
 * at doSigPreempt entry, on the interrupted thread, whose signal handler changes none of it
 * before isAsyncSafePoint runs.
 */
static __always_inline void
read_state(struct event *e, __u64 gp)
{
	if (!read_state_fields(e, gp)) {
		e->m = e->stack_lo = e->curg = e->pp = e->preemptoff_len = 0;
		e->locks = e->mallocing = 0;
		e->pp_status = 0;
		return;
	}
	e->flags |= EVENT_STATE;

	if (read_at(&e->curg_status, sizeof(e->curg_status), e->curg, cfg_offsets.g_atomicstatus))
		e->flags |= EVENT_CURG_STATUS;
	else
		e->curg_status = 0;

	if (read_at(&e->secret, sizeof(e->secret), gp, cfg_offsets.g_secret))
		e->flags |= EVENT_SECRET;
	else
		e->secret = 0;
}

/*
 * read_request fills what doSigPreempt's arguments tell: the interrupted registers from the
 * ucontext, the signal's origin from the siginfo, and the goroutine id and thread state from gp.
 */
static __always_inline void
read_request(struct event *e, __u64 gp, __u64 sigctxt)
{
	struct go_sigctxt c;
	__u64 regs[(UCTX_REGS_END - UCTX_REGS_OFF) / 8];
	struct go_siginfo_head si;

	e->gp = gp;
	if (bpf_probe_read_user(&c, sizeof(c), (const void *)sigctxt))
		return;

	if (!bpf_probe_read_user(regs, sizeof(regs), (const void *)(c.ctxt + UCTX_REGS_OFF))) {
		e->fp = regs[(UCTX_FP_OFF - UCTX_REGS_OFF) / 8];
		e->sp = regs[(UCTX_SP_OFF - UCTX_REGS_OFF) / 8];
		e->pc = regs[(UCTX_PC_OFF - UCTX_REGS_OFF) / 8];
		e->flags |= EVENT_REGS;
	}

	if (!bpf_probe_read_user(&si, sizeof(si), (const void *)c.info)) {
		e->si_code = si.si_code;
		e->si_pid = si.si_pid;
		e->flags |= EVENT_SIGINFO;
	}

	if (cfg_goid_offset >= 0 && gp &&
	    !bpf_probe_read_user(&e->goid, sizeof(e->goid), (const void *)(gp + cfg_goid_offset)))
		e->flags |= EVENT_GOID;

	read_state(e, gp);
}

/* read_stack_word reads the word at sp + off; false when off is unknown or unreadable. */
static __always_inline bool
read_stack_word(__u64 *dst, __u64 sp, __s32 off)
{
	return off >= 0 && !bpf_probe_read_user(dst, sizeof(*dst), (const void *)(sp + off));
}

/*
 * entry_args reads doSigPreempt's arguments at the entry probe, which sits before the frame is
 * set up: in the first two argument registers, or in the caller's argument slots just above
 * the return address. Zero for an argument that cannot be read.
 */
static __always_inline void
entry_args(struct pt_regs *ctx, __u64 *gp, __u64 *sigctxt)
{
	if (!cfg_abi.on_stack) {
		*gp = GO_ARG0(ctx);
		*sigctxt = GO_ARG1(ctx);
		return;
	}
	if (!read_stack_word(gp, GO_SP(ctx), cfg_abi.gp_sp_off))
		*gp = 0;
	if (!read_stack_word(sigctxt, GO_SP(ctx), cfg_abi.ctxt_sp_off))
		*sigctxt = 0;
}

/*
 * verdict_results reads isAsyncSafePoint's results right after its call returned; false when
 * they cannot be read. Without a newpc result the goroutine resumes where it was interrupted.
 */
static __always_inline bool
verdict_results(struct pt_regs *ctx, const struct event *req, bool *ok, __u64 *newpc)
{
	__u8 b;

	if (!cfg_abi.on_stack) {
		*ok = GO_RESULT_BOOL0(ctx) & 1;
		*newpc = GO_ARG1(ctx);
		return true;
	}

	if (cfg_abi.ok_sp_off < 0 ||
	    bpf_probe_read_user(&b, sizeof(b), (const void *)(GO_SP(ctx) + cfg_abi.ok_sp_off)))
		return false;
	*ok = b & 1;
	if (cfg_abi.newpc_sp_off < 0)
		*newpc = req->pc;
	else if (!read_stack_word(newpc, GO_SP(ctx), cfg_abi.newpc_sp_off))
		return false;
	return true;
}

/*
 * At doSigPreempt(gp *g, ctxt *sigctxt), before the frame is set up (see entry_args).
 */
SEC("uprobe/runtime.doSigPreempt")
int
preempttrace_sigpreempt(struct pt_regs *ctx)
{
	__u32 tgid, tid;
	struct event req = {};
	struct request *slot;
	__u64 gp, sigctxt;

	if (!tracing || !current_ids(&tgid, &tid))
		return 0;

	req.time_ns = bpf_ktime_get_ns();
	req.pid = tgid;
	req.tid = tid;
	entry_args(ctx, &gp, &sigctxt);
	read_request(&req, gp, sigctxt);

	/* Without the later probes nothing completes a request, so it is complete now. */
	if (!cfg_have_verdict && !cfg_have_handled) {
		submit(&req, VERDICT_UNKNOWN, 0, 0, req.time_ns);
		return 0;
	}

	/*
	 * Signal handlers of one thread never nest (the runtime blocks every signal while one
	 * runs), so a request still in flight was finished without a probe seeing it: the runtime
	 * did not ask isAsyncSafePoint if the verdict probe is attached.
	 */
	slot = request_slot(true);
	if (!slot) {
		count(COUNTER_NO_SLOT);
		return 0;
	}
	if (slot->active) {
		count(COUNTER_LATE);
		submit(&slot->ev, cfg_have_verdict ? VERDICT_NOT_WANTED : VERDICT_UNKNOWN, 0,
		       EVENT_LATE, req.time_ns);
		finish(slot);
	}

	slot->ev = req;
	slot->active = 1;
	count(COUNTER_STARTED);
	return 0;
}

/*
 * hold_accepted completes an accepted request but keeps it in the accepted map until its
 * goroutine enters asyncPreempt. A request of the same thread still waiting there was not
 * seen entering: it goes out now, marked so.
 */
static __always_inline void
hold_accepted(struct event *req, __u32 tid, __u64 newpc, __u64 now)
{
	struct event *stale = bpf_map_lookup_elem(&accepted, &tid);

	if (stale)
		submit_as_is(stale, EVENT_ENTRY_MISSED);

	req->verdict = VERDICT_ACCEPTED;
	req->resume_pc = newpc;
	req->verdict_ns = now;
	if (bpf_map_update_elem(&accepted, &tid, req, BPF_ANY)) {
		count(COUNTER_ACCEPTED_FULL);
		submit_as_is(req, 0);
	}
}

/*
 * Right after "CALL runtime.isAsyncSafePoint" in doSigPreempt, before anything changes ok and
 * newpc (see verdict_results).
 */
SEC("uprobe/runtime.doSigPreempt+verdict")
int
preempttrace_verdict(struct pt_regs *ctx)
{
	__u32 tgid, tid;
	struct request *slot;
	struct event *req;
	__u64 newpc;
	bool ok;

	if (!current_ids(&tgid, &tid))
		return 0;

	slot = request_slot(false);
	if (!slot || !slot->active) {
		if (tracing)
			count(COUNTER_VERDICT_ORPHAN);
		return 0;
	}
	req = &slot->ev;

	if (!verdict_results(ctx, req, &ok, &newpc))
		submit(req, VERDICT_UNKNOWN, 0, 0, bpf_ktime_get_ns());
	else if (ok && cfg_have_entered)
		hold_accepted(req, tid, newpc, bpf_ktime_get_ns());
	else
		submit(req, ok ? VERDICT_ACCEPTED : VERDICT_REFUSED, ok ? newpc : 0, 0,
		       bpf_ktime_get_ns());
	finish(slot);
	return 0;
}

/*
 * At one of isAsyncSafePoint's RET instructions, each probed with this program: the address says
 * which return statement, and so which check, decided. The verdict probe sends the event next.
 */
SEC("uprobe/runtime.isAsyncSafePoint+return")
int
preempttrace_returned(struct pt_regs *ctx)
{
	struct request *slot = active_request();

	if (!slot)
		return 0;
	slot->ev.returned_at = GO_PC(ctx);
	slot->ev.flags |= EVENT_RETURNED;
	return 0;
}

/*
 * In sighandler after doSigPreempt returned. A request still in flight here got no verdict:
 * wantAsyncPreempt was false, so the runtime never asked isAsyncSafePoint. Other signals pass
 * here too and find nothing in flight.
 */
SEC("uprobe/runtime.sighandler+handled")
int
preempttrace_handled(struct pt_regs *ctx)
{
	struct request *slot = active_request();

	if (!slot)
		return 0;

	/*
	 * While the probes are being removed (tracing is cleared first, the verdict probe may
	 * already be gone) a missing verdict no longer means the runtime did not ask.
	 */
	submit(&slot->ev, cfg_have_verdict && tracing ? VERDICT_NOT_WANTED : VERDICT_UNKNOWN, 0,
	       0, bpf_ktime_get_ns());
	finish(slot);
	return 0;
}

/*
 * At runtime.asyncPreempt's entry, where the goroutine "returns" from the signal handler after
 * an accepted request: pushCall made it look like a call, so the word at SP is the PC
 * asyncPreempt will return to. Only a thread with an accepted request waiting counts.
 */
SEC("uprobe/runtime.asyncPreempt")
int
preempttrace_entered(struct pt_regs *ctx)
{
	__u32 tgid, tid;
	struct event *req;

	if (!current_ids(&tgid, &tid))
		return 0;

	req = bpf_map_lookup_elem(&accepted, &tid);
	if (!req)
		return 0;

	if (read_stack_word(&req->entered_ret, GO_SP(ctx), 0)) {
		req->entered_ns = bpf_ktime_get_ns();
		req->flags |= EVENT_ENTERED;
	} else {
		req->entered_ret = 0;
	}
	submit_as_is(req, 0);
	bpf_map_delete_elem(&accepted, &tid);
	return 0;
}
