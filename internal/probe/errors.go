package probe

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// ErrUnsupported matches every error that says the eBPF backend cannot trace a target at
// all: an architecture, Go version, kernel feature or runtime function it does not handle.
var ErrUnsupported = errors.New("not supported by the eBPF backend")

// ErrClosed is returned by Read after Close.
var ErrClosed = os.ErrClosed

// UnsupportedError reports what the eBPF backend cannot trace and what it can.
type UnsupportedError struct {
	What      string
	Supported string
}

func (e *UnsupportedError) Error() string {
	return fmt.Sprintf("%s: %v (supported: %s)", e.What, ErrUnsupported, e.Supported)
}

// Is matches ErrUnsupported.
func (e *UnsupportedError) Is(target error) bool { return target == ErrUnsupported }

// SymbolError reports a runtime function a probe needs that the target's function table
// lacks, for example because a build inlined it.
type SymbolError struct {
	Symbol    string
	GoVersion string
	Err       error
}

func (e *SymbolError) Error() string {
	return fmt.Sprintf("probe target %s missing in this %s binary: %v (the Go release or its "+
		"build flags inline or rename it)", e.Symbol, e.GoVersion, ErrUnsupported)
}

// Unwrap returns the lookup error.
func (e *SymbolError) Unwrap() error { return e.Err }

// Is matches ErrUnsupported.
func (e *SymbolError) Is(target error) bool { return target == ErrUnsupported }

// PermissionError reports capabilities the tracer lacks to load BPF programs and create
// uprobes.
type PermissionError struct {
	// Missing names the capabilities, such as "CAP_SYS_ADMIN".
	Missing []string
	// Err is the kernel's refusal, when there was one.
	Err error
}

func (e *PermissionError) Error() string {
	caps := strings.Join(e.Missing, " and ")
	msg := fmt.Sprintf("missing %s: run preempttrace as root, or grant it with \"setcap "+
		"%s+ep\" on its binary", caps, strings.ToLower(strings.Join(e.Missing, ",")))
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns the kernel's refusal.
func (e *PermissionError) Unwrap() error { return e.Err }

// Is matches fs.ErrPermission.
func (e *PermissionError) Is(target error) bool { return target == fs.ErrPermission }

// DeniedError reports a kernel refusal to load the BPF programs or create a uprobe although
// the tracer holds every capability it needs, so something else forbids it: kernel lockdown
// on kernels that restrict BPF under it, a seccomp profile, or a security module.
type DeniedError struct {
	// Lockdown is the kernel's lockdown mode ("integrity" or "confidentiality"), or empty
	// when lockdown is off or its state could not be read.
	Lockdown string
	Err      error
}

func (e *DeniedError) Error() string {
	causes := "a seccomp profile or a security module (SELinux, AppArmor)"
	if e.Lockdown != "" {
		causes = fmt.Sprintf("kernel lockdown (%s) where the kernel extends it to BPF, %s",
			e.Lockdown, causes)
	}
	return fmt.Sprintf("eBPF refused although CAP_SYS_ADMIN is held: %s forbids bpf(2) or "+
		"perf_event_open(2); --backend ptrace works without them: %v", causes, e.Err)
}

// Unwrap returns the kernel's refusal.
func (e *DeniedError) Unwrap() error { return e.Err }

// FeatureError reports a kernel feature the tracer needs and the kernel lacks.
type FeatureError struct {
	Feature string
	Err     error
}

func (e *FeatureError) Error() string {
	return fmt.Sprintf("kernel lacks %s: %v (the eBPF backend needs Linux 5.12+ with BPF ring "+
		"buffers, task-local storage and the uprobe PMU; --backend ptrace does not): %v",
		e.Feature, ErrUnsupported, e.Err)
}

// Unwrap returns the failed feature probe.
func (e *FeatureError) Unwrap() error { return e.Err }

// Is matches ErrUnsupported.
func (e *FeatureError) Is(target error) bool { return target == ErrUnsupported }
