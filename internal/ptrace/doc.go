// Package ptrace traces a Go process's preemption signals with ptrace(2), for machines
// where eBPF uprobes cannot be used (no CAP_SYS_ADMIN, lockdown, a sandbox that forbids
// bpf(2)).
//
// # How
//
// Every thread of the target is attached with PTRACE_SEIZE, which does not stop it, and
// threads started later are attached by the kernel (PTRACE_O_TRACECLONE). The kernel then
// stops a thread each time a signal is about to be delivered to it. At a SIGURG stop the
// thread's registers are exactly what the signal interrupted, which is what the runtime's
// handler (runtime.doSigPreempt) will judge: the tracer reads the PC, SP and frame
// pointer, the siginfo (the runtime sends its requests with tgkill(2) from the process
// itself), and, through process_vm_readv(2), the goroutine, whether it still wants to be
// preempted, and the M and P state that isAsyncSafePoint checks, found from the thread
// pointer as the handler finds g. The thread then resumes with the same signal. Every
// other signal is passed on unchanged.
//
// Stops are noticed through SIGCHLD and collected per traced thread; each costs the
// stopped thread a round trip through the tracer's scheduler, 0.1-0.6 ms on the
// development VM depending on its load, far more than the eBPF probes.
//
// # What it never does
//
// It writes nothing to the target's memory or registers, adds and swallows no signal,
// keeps group-stops (kill -STOP) stopped with PTRACE_LISTEN, and detaches each thread
// before it exits so that the target's parent reaps it as usual. It does not set
// PTRACE_O_EXITKILL: if the tracer is killed the kernel detaches it and the target runs on.
//
// # What it cannot see
//
// The runtime's own verdict is decided after the thread resumes, in the handler; it would
// take a stop after the handler, and that a write or a breakpoint, so Attempt.Runtime is
// always unknown and the reported reason is the decoder's prediction from the PC and the
// thread state. Registers are read on linux/amd64 only.
package ptrace
