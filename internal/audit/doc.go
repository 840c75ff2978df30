// Package audit answers, for a Go binary at rest, where asynchronous
// preemption would be refused: Scan walks every function's pc tables and
// Explain decodes single PCs. Both combine symtab (what the binary says) with
// safepoint (what the runtime of that release decides); neither needs a
// running process. Thread state is not known at rest, so verdicts cover the
// PC-only rules and say so.
package audit
