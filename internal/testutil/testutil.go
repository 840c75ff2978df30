// Package testutil holds helpers shared by tests that need more than the Go toolchain.
package testutil

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/preempttrace/preempttrace/internal/fixture"
	"github.com/preempttrace/preempttrace/internal/probe"
	"github.com/preempttrace/preempttrace/internal/target"
)

// Requirement is a check that returns nil when the machine can run a test, or the reason
// it cannot.
type Requirement func() error

// Require runs check for a privileged or kernel-dependent test. When check fails the test is
// skipped, unless PREEMPTTRACE_E2E=1 (set by CI) says such tests must run: then it fails, so
// that a broken machine cannot pass as a skip.
func Require(t testing.TB, what string, check Requirement) {
	t.Helper()

	err := check()
	if err == nil {
		return
	}
	if os.Getenv(fixture.E2EEnv) == "1" {
		t.Fatalf("%s unavailable with %s=1: %v", what, fixture.E2EEnv, err)
	}
	t.Skipf("%s unavailable (set %s=1 to make this a failure): %v", what, fixture.E2EEnv, err)
}

// RequireBPF is Require for tests that attach eBPF uprobes to a process.
func RequireBPF(t testing.TB) {
	t.Helper()

	Require(t, "eBPF uprobes (root or CAP_SYS_ADMIN)", probe.Preflight)
}

// capSysPtrace is CAP_SYS_PTRACE's bit in /proc/PID/status CapEff (linux/capability.h).
const capSysPtrace = 19

// RequirePtrace is Require for tests that trace another process with ptrace: the tracer
// needs CAP_SYS_PTRACE (Yama and a target of another user aside), and Yama's mode 3 forbids
// ptrace outright.
func RequirePtrace(t testing.TB) {
	t.Helper()

	Require(t, "ptrace (CAP_SYS_PTRACE)", func() error {
		eff, err := target.EffectiveCaps()
		if err != nil {
			return fmt.Errorf("read capabilities: %w", err)
		}
		if eff&(1<<capSysPtrace) == 0 {
			return errors.New("CAP_SYS_PTRACE is not in the effective set")
		}
		if scope, err := os.ReadFile("/proc/sys/kernel/yama/ptrace_scope"); err == nil &&
			strings.TrimSpace(string(scope)) == "3" {
			return errors.New("Yama ptrace_scope=3 forbids ptrace")
		}
		return nil
	})
}
