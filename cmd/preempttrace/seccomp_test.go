//go:build linux

package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/preempttrace/preempttrace/internal/testutil"
)

// denyBPFEnv names the environment variable that makes the test binary a launcher: it
// installs a seccomp filter failing every bpf(2) with EPERM, as a hardened container
// profile may, then executes the command line it was given in its place.
const denyBPFEnv = "PREEMPTTRACE_TEST_DENY_BPF_EXEC"

// runDeniedBPFLauncher runs the launcher when the environment asks for it and never returns
// then; otherwise it returns at once.
func runDeniedBPFLauncher() {
	if os.Getenv(denyBPFEnv) == "" {
		return
	}
	args := os.Args[1:]
	if err := denyBPF(); err != nil {
		fmt.Fprintf(os.Stderr, "launcher: %v\n", err)
		os.Exit(111)
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, denyBPFEnv+"=") {
			env = append(env, kv)
		}
	}
	err := syscall.Exec(args[0], args, env)
	fmt.Fprintf(os.Stderr, "launcher: exec %s: %v\n", args[0], err)
	os.Exit(111)
}

// denyBPF installs, on every thread, a seccomp filter that fails bpf(2) with EPERM and
// allows every other system call. The filter passes to programs this process executes.
func denyBPF() error {
	const (
		ldAbsW  = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		jeqK    = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		retK    = unix.BPF_RET | unix.BPF_K
		nrOff   = 0 // struct seccomp_data: nr, then arch
		archOff = 4
	)
	filter := []unix.SockFilter{
		{Code: ldAbsW, K: archOff},
		{Code: jeqK, Jt: 1, Jf: 0, K: unix.AUDIT_ARCH_X86_64},
		{Code: retK, K: unix.SECCOMP_RET_ALLOW},
		{Code: ldAbsW, K: nrOff},
		{Code: jeqK, Jt: 0, Jf: 1, K: unix.SYS_BPF},
		{Code: retK, K: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)},
		{Code: retK, K: unix.SECCOMP_RET_ALLOW},
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}

	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("set no_new_privs: %w", err)
	}
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
		unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&prog)))
	if errno != 0 {
		return fmt.Errorf("install seccomp filter: %w", errno)
	}
	return nil
}

// runDeniedBPF runs the CLI with args under a seccomp filter that fails bpf(2) with EPERM.
func runDeniedBPF(t *testing.T, args ...string) result {
	t.Helper()

	var stdout, stderr bytes.Buffer
	cmd := exec.Command(os.Args[0], append([]string{cliPath}, args...)...)
	cmd.Env = append(os.Environ(), denyBPFEnv+"=1")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	if cmd.ProcessState.ExitCode() == 111 {
		t.Fatalf("launcher failed: %s", stderr.String())
	}
	return result{stdout.String(), stderr.String(), cmd.ProcessState.ExitCode()}
}

// TestSeccompDeniesBPF runs the CLI as root under a seccomp profile that forbids bpf(2), as
// a hardened container profile may: the eBPF backend must say in one line that
// the kernel refused although CAP_SYS_ADMIN is held, and what to use instead, not that the
// kernel lacks a feature; auto must fall back to ptrace and trace.
func TestSeccompDeniesBPF(t *testing.T) {
	testutil.RequireBPF(t)
	testutil.RequirePtrace(t)
	target := startSpin(t, "nosplit", 3*time.Second)

	res := runDeniedBPF(t, "-p", target.pid(), "--backend", "ebpf", "--duration", "1s")
	lines := strings.Split(strings.TrimSpace(res.stderr), "\n")
	if res.code != 1 || len(lines) != 1 || !strings.Contains(lines[0], "eBPF refused although "+
		"CAP_SYS_ADMIN is held") || !strings.Contains(lines[0], "--backend ptrace") {
		t.Errorf("--backend ebpf: exit %d, stderr:\n%s", res.code, res.stderr)
	}

	res = runDeniedBPF(t, "-p", target.pid(), "--duration", "1s", "-o", "json")
	if res.code != 0 || !strings.Contains(res.stderr, "eBPF unavailable (eBPF refused") {
		t.Errorf("auto: exit %d, stderr:\n%s", res.code, res.stderr)
	}
	_, sum := parseJSONLines(t, res.stdout)
	if sum.Backend != "ptrace" || sum.ByReason["unsafe-point"] == 0 {
		t.Errorf("auto: backend %q, reasons %v", sum.Backend, sum.ByReason)
	}
	target.wait(t)
}
