//go:build linux

package probe

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"github.com/preempttrace/preempttrace/internal/target"
)

// Capability numbers (linux/capability.h).
const (
	capSysAdmin = 21
)

// uprobePMU is where the kernel publishes the uprobe PMU that lets perf_event_open create
// uprobes without tracefs.
const uprobePMU = "/sys/bus/event_source/devices/uprobe/type"

// initPIDNamespaceInode is the inode number of the initial PID namespace
// (PROC_PID_INIT_INO in include/linux/proc_ns.h).
const initPIDNamespaceInode = 0xEFFFFFFC

// Preflight checks what Attach needs before anything is loaded, so that a missing
// privilege or feature is reported as what to do rather than as a kernel errno.
func Preflight() error {
	if err := checkCapabilities(); err != nil {
		return err
	}

	// The probe creates a map, so a refusal here is about bpf(2), not the feature.
	if err := features.HaveMapType(ebpf.RingBuf); err != nil {
		if errors.Is(err, os.ErrPermission) {
			return denied(err)
		}
		return &FeatureError{Feature: "BPF ring buffer maps", Err: err}
	}
	// The request slots are task-local storage, reached through the BTF-typed current task.
	if err := features.HaveMapType(ebpf.TaskStorage); err != nil {
		if errors.Is(err, os.ErrPermission) {
			return denied(err)
		}
		return &FeatureError{Feature: "BPF task-local storage", Err: err}
	}
	// Linux 5.11 has the map type for security programs only; uprobes get it in 5.12.
	helpers := []struct {
		fn   asm.BuiltinFunc
		name string
	}{
		{asm.FnTaskStorageGet, "bpf_task_storage_get for uprobes"},
		{asm.FnGetCurrentTaskBtf, "bpf_get_current_task_btf (kernel BTF)"},
	}
	for _, h := range helpers {
		if err := features.HaveProgramHelper(ebpf.Kprobe, h.fn); err != nil {
			if errors.Is(err, os.ErrPermission) {
				return denied(err)
			}
			return &FeatureError{Feature: h.name, Err: err}
		}
	}

	// cilium/ebpf falls back to tracefs without the PMU; either is enough.
	if _, err := os.Stat(uprobePMU); err != nil && !tracefsMounted() {
		return &FeatureError{Feature: "the uprobe PMU and a mounted tracefs", Err: err}
	}
	return nil
}

// checkCapabilities reports a PermissionError unless the process may create uprobes.
// Loading the programs needs CAP_BPF and CAP_PERFMON, but creating a uprobe through
// perf_event_open needs CAP_SYS_ADMIN, which implies both: Linux briefly accepted
// CAP_PERFMON there and went back to CAP_SYS_ADMIN in 2025, also in its stable kernels
// (measured here on 6.18: CAP_BPF and CAP_PERFMON alone get EACCES).
func checkCapabilities() error {
	eff, err := target.EffectiveCaps()
	if err != nil {
		return fmt.Errorf("read capabilities: %w", err)
	}

	if eff&(1<<capSysAdmin) == 0 {
		return &PermissionError{Missing: []string{"CAP_SYS_ADMIN"}}
	}
	return nil
}

// lockdownFile is where securityfs shows the kernel's lockdown mode, the active one in
// brackets: "none [integrity] confidentiality".
var lockdownFile = "/sys/kernel/security/lockdown"

// lockdownMode returns the active lockdown mode, "" when it is "none" or cannot be read
// (securityfs not mounted, or a kernel without the lockdown LSM).
func lockdownMode() string {
	b, err := os.ReadFile(lockdownFile)
	if err != nil {
		return ""
	}
	_, rest, ok := strings.Cut(string(b), "[")
	mode, _, closed := strings.Cut(rest, "]")
	if !ok || !closed || mode == "none" {
		return ""
	}
	return mode
}

// denied turns a kernel's EPERM or EACCES into what the user can act on: the capability
// missing, or when none is, a DeniedError naming the likely cause.
func denied(err error) error {
	if capErr := checkCapabilities(); capErr != nil {
		var pe *PermissionError
		if errors.As(capErr, &pe) {
			pe.Err = err
		}
		return capErr
	}
	return &DeniedError{Lockdown: lockdownMode(), Err: err}
}

// tracefsMounted reports whether a tracefs with a uprobe_events file is reachable.
func tracefsMounted() bool {
	for _, dir := range []string{"/sys/kernel/tracing", "/sys/kernel/debug/tracing"} {
		if _, err := os.Stat(dir + "/uprobe_events"); err == nil {
			return true
		}
	}
	return false
}

// pidNamespace describes the tracer's PID namespace for the BPF programs: nil when it is
// the initial namespace, whose ids the plain pid/tgid helper returns.
type pidNamespace struct {
	dev, ino uint64
}

// ownPIDNamespace returns the tracer's PID namespace, or nil for the initial one.
func ownPIDNamespace() (*pidNamespace, error) {
	st, err := os.Stat("/proc/self/ns/pid")
	if err != nil {
		return nil, fmt.Errorf("stat own PID namespace: %w", err)
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return nil, errors.New("stat own PID namespace: no inode")
	}

	if sys.Ino == initPIDNamespaceInode {
		return nil, nil
	}
	return &pidNamespace{dev: sys.Dev, ino: sys.Ino}, nil
}
