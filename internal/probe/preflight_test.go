//go:build linux

package probe

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestLockdownMode reads the lockdown modes securityfs shows, the active one in brackets.
func TestLockdownMode(t *testing.T) {
	tests := []struct {
		name, content, want string
	}{
		{"off", "[none] integrity confidentiality\n", ""},
		{"integrity", "none [integrity] confidentiality\n", "integrity"},
		{"confidentiality", "none integrity [confidentiality]\n", "confidentiality"},
		{"no brackets", "none integrity confidentiality\n", ""},
		{"unclosed", "none [integrity confidentiality\n", ""},
		{"missing file", "", ""},
	}
	saved := lockdownFile
	t.Cleanup(func() { lockdownFile = saved })
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lockdownFile = filepath.Join(t.TempDir(), "lockdown")
			if tt.content != "" {
				if err := os.WriteFile(lockdownFile, []byte(tt.content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if got := lockdownMode(); got != tt.want {
				t.Errorf("lockdownMode() = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestDeniedError: a refusal met with every capability held names lockdown only when the
// kernel is locked down, points at ptrace, and still matches the kernel's errno.
func TestDeniedError(t *testing.T) {
	refusal := &os.SyscallError{Syscall: "bpf", Err: syscall.EPERM}
	for _, lockdown := range []string{"", "confidentiality"} {
		err := error(&DeniedError{Lockdown: lockdown, Err: refusal})
		msg := err.Error()
		if got := strings.Contains(msg, "lockdown"); got != (lockdown != "") {
			t.Errorf("lockdown %q: message mentions lockdown=%v: %s", lockdown, got, msg)
		}
		if lockdown != "" && !strings.Contains(msg, lockdown) {
			t.Errorf("lockdown %q not named: %s", lockdown, msg)
		}
		if !strings.Contains(msg, "--backend ptrace") || !strings.Contains(msg, "seccomp") {
			t.Errorf("message names neither the way out nor the likely cause: %s", msg)
		}
		if !errors.Is(err, syscall.EPERM) || !errors.Is(err, os.ErrPermission) {
			t.Errorf("%v does not match EPERM", err)
		}
	}
}
