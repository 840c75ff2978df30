//go:build linux

package ptrace

import (
	"errors"
	"fmt"
	"os"
)

// ErrStopped is returned by Read once the tracer detached and every attempt it saw has
// been read.
var ErrStopped = errors.New("tracer stopped")

// ErrUnsupported matches every error that says the ptrace backend cannot trace a target.
var ErrUnsupported = errors.New("not supported by the ptrace backend")

// AlreadyTracedError reports a target that another tracer, such as a debugger or strace,
// is attached to. A thread has one tracer at a time.
type AlreadyTracedError struct {
	PID, TracerPID int
	TracerName     string
}

func (e *AlreadyTracedError) Error() string {
	return fmt.Sprintf("pid %d is already traced by pid %d (%s); detach that tracer first",
		e.PID, e.TracerPID, e.TracerName)
}

// PermissionError reports a refused PTRACE_SEIZE that no other tracer explains.
type PermissionError struct {
	PID int
	// Scope is /proc/sys/kernel/yama/ptrace_scope, empty without Yama.
	Scope string
	Err   error
}

func (e *PermissionError) Error() string {
	msg := fmt.Sprintf("ptrace pid %d: %v: needs CAP_SYS_PTRACE (run as root) or the same user",
		e.PID, e.Err)
	switch e.Scope {
	case "1":
		msg += "; Yama ptrace_scope=1 also requires CAP_SYS_PTRACE for a non-child"
	case "2":
		msg += "; Yama ptrace_scope=2 allows only CAP_SYS_PTRACE"
	case "3":
		msg += "; Yama ptrace_scope=3 forbids ptrace until reboot"
	}
	return msg
}

// Unwrap returns the kernel's refusal.
func (e *PermissionError) Unwrap() error { return e.Err }

// Is matches fs.ErrPermission.
func (e *PermissionError) Is(target error) bool { return target == os.ErrPermission }

// ExecError reports that the target executed a new program, which the decoder built for
// the old one cannot describe; the tracer detached. An exec that leaves the same file
// mapped at the same address, such as the one a target seized while finishing its execve
// reports, does not end the trace.
type ExecError struct {
	PID int
}

func (e *ExecError) Error() string {
	return fmt.Sprintf("pid %d executed a new program; detached (trace it again to follow it)",
		e.PID)
}
