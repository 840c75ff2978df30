// Package probe is preempttrace's eBPF backend: it attaches uprobes to the Go runtime's
// asynchronous-preemption signal path in a running process and reads, for every SIGURG that
// reaches runtime.doSigPreempt, the interrupted PC, SP and frame pointer, the goroutine, and
// what the runtime itself decided: refused, accepted with its resume PC, or not wanted.
// It does not decode PCs; package trace does that with the target's symbol table.
//
// # Sources of truth
//
// The signal path is runtime/signal_unix.go (sighandler → doSigPreempt → isAsyncSafePoint)
// and runtime/preempt.go; register use is Go's internal ABI (cmd/compile/abi-internal.md);
// the signal context is the kernel's ucontext as runtime/defs_linux_amd64.go declares it.
// The BPF programs are bpf/preempttrace.bpf.c; bpf2go builds them and generates Event from
// bpf/preempttrace.h (see gen.go).
//
// # Probe placement
//
// PlanProbes reads the target's own machine code (golang.org/x/arch) and puts each probe on
// the first instruction near its point that the kernel emulates instead of single-stepping,
// which makes a hit cost about 1 µs instead of 15–20 µs (BenchmarkUprobeInstruction):
//
//   - entry: the conditional jump of doSigPreempt's stack-bound check; gp and ctxt are
//     still in RAX and RBX, or with the stack ABI of Go 1.14–1.16 at 8(SP) and 16(SP).
//   - verdict: the first jump or NOP after "CALL runtime.isAsyncSafePoint", with only a
//     TEST of AL before it; ok is in AL, newpc in RBX. With the stack ABI, ok is at 32(SP)
//     and newpc at 40(SP), and the instructions stepped over must move neither SP nor
//     memory; Go 1.14 returns no newpc and resumes at the interrupted PC. The call is found
//     by decoding and matching its target with isAsyncSafePoint's entry in the function
//     table.
//   - handled: the first emulated instruction after sighandler's "CALL runtime.doSigPreempt".
//     A request still open there got no verdict: the runtime did not want preemption.
//   - entered (with Options.ConfirmAccepted): the first instruction of runtime.asyncPreempt,
//     a PUSHQ BP, which a goroutine reaches when the handler returns after accepting; the
//     word at SP is the PC it will return to, which must be the verdict's newpc.
//   - return (with Options.ObserveReturns): every RET of runtime.isAsyncSafePoint, matched
//     in the order of their source lines with the release's return statements
//     (safepoint.Rules.Returns); the RET a call leaves by tells which check decided. A RET
//     is single-stepped, so these cost 13–19 µs a hit.
//
// Uprobes are named by file offset (symtab's FileOffset), which is what the kernel expects
// and what makes a PIE work like any other executable. No uretprobe is used: it replaces a
// return address on the stack, which Go's tracebacks read.
//
// # Supported targets
//
// linux/amd64 Go 1.14 and later, any link mode, PIE or not, stripped or not. Stripped
// binaries are placed from the pclntab, which stripping keeps.
// target.FindRuntimeOffsets reads where runtime.g, runtime.m and runtime.p keep the
// goroutine id and the thread state isAsyncSafePoint checks from DWARF, else from
// per-release tables that hold only for default GOEXPERIMENT settings and, for the state,
// only for releases checked against a binary, and for the state last from
// isAsyncSafePoint's machine code; otherwise events carry no goroutine id or no state. arm64 targets get an UnsupportedError: their call sites are not found yet.
//
// # Losses
//
// Nothing is dropped silently: Counters reports events lost to a full ring buffer or to a
// request slot the kernel could not allocate, and verdicts seen without their entry, and
// Event flags say which fields are unknown. Each thread's request in flight lives in
// task-local storage, which needs Linux 5.12 and kernel BTF; Preflight checks for both.
package probe
