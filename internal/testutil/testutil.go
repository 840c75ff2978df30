// Package testutil holds helpers shared by tests that need more than the Go toolchain.
package testutil

import (
	"os"
	"testing"

	"github.com/preempttrace/preempttrace/internal/fixture"
	"github.com/preempttrace/preempttrace/internal/probe"
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
