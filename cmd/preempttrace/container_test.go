//go:build linux

package main

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/preempttrace/preempttrace/internal/testutil"
)

// TestSidecarImage runs the command as the Dockerfile's image runs it, which no container
// engine here can: the static binary alone in an otherwise empty root, in a mount
// namespace of its own with /proc and /sys mounted, tracing a process of the same PID
// namespace whose executable it cannot see by path, found by its name. Once with every
// capability (eBPF), once with only those a restricted sidecar gets (CAP_SYS_PTRACE: the
// default backend must fall back to ptrace).
func TestSidecarImage(t *testing.T) {
	testutil.RequirePtrace(t)
	testutil.RequireBPF(t)
	for _, tool := range []string{"unshare", "setpriv", "chroot"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s (util-linux, coreutils) is needed to build the container: %v", tool, err)
		}
	}
	root := imageRoot(t)

	for _, tt := range []struct {
		name    string
		caps    string
		backend string
	}{
		{"all-capabilities", "", "ebpf"},
		{"sys-ptrace-only", "-all,+sys_ptrace,+sys_chroot", "ptrace"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// A sidecar cannot know the PID: it names the application.
			bin, name := namedSpin(t)
			target := startSpinBinary(t, bin, "nosplit", 3*time.Second)
			res := runInImage(t, root, tt.caps, "--name", name, "--duration", "1s",
				"-o", "json")
			target.wait(t)
			if res.code != 0 {
				t.Fatalf("exit %d: %s", res.code, res.stderr)
			}
			_, sum := parseJSONLines(t, res.stdout)
			if sum.Backend != tt.backend || sum.ByReason["unsafe-point"] == 0 {
				t.Errorf("backend %q, reasons %v; stderr:\n%s", sum.Backend, sum.ByReason,
					res.stderr)
			}
		})
	}
}

// imageRoot builds the command as the Dockerfile does (without -trimpath, which only
// changes recorded paths and would rebuild every package) and returns a root holding only it,
// at /preempttrace, and the mount points the runtime fills.
func imageRoot(t *testing.T) string {
	t.Helper()

	root := t.TempDir()
	bin := filepath.Join(root, "preempttrace")
	build := exec.Command("go", "build", "-ldflags=-s -w", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatal("the image's binary is dynamically linked; FROM scratch has no loader")
		}
	}

	for _, dir := range []string{"proc", "sys"} {
		if err := os.Mkdir(filepath.Join(root, dir), 0o555); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// runInImage runs /preempttrace with args chrooted into root, in a new mount namespace,
// with the capability bounding set changed by caps (setpriv syntax; empty keeps all).
func runInImage(t *testing.T, root, caps string, args ...string) result {
	t.Helper()

	script := `mount -t proc proc "$1/proc" && mount -t sysfs sysfs "$1/sys" && ` +
		`root=$1 && shift && exec "$@"`
	inner := []string{"chroot", root, "/preempttrace"}
	if caps != "" {
		inner = append([]string{"setpriv", "--bounding-set", caps, "--"}, inner...)
	}
	cmdArgs := append([]string{"--mount", "--propagation", "private", "--", "sh", "-c", script,
		"sh", root}, append(inner, args...)...)

	var stdout, stderr strings.Builder
	cmd := exec.Command("unshare", cmdArgs...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatal(err)
	}
	return result{stdout.String(), stderr.String(), cmd.ProcessState.ExitCode()}
}
