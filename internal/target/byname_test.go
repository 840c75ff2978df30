package target

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"
)

// startNamed copies sleep(1) to an executable called name and starts it for a while.
func startNamed(t *testing.T, name string) *exec.Cmd {
	t.Helper()

	src, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return startUntilCleanup(t, bin, "30")
}

// startRenamed builds a C program that renames itself to comm with prctl(PR_SET_NAME), as
// some servers do, and starts it.
func startRenamed(t *testing.T, comm string) *exec.Cmd {
	t.Helper()

	dir := t.TempDir()
	src := filepath.Join(dir, "renamed.c")
	prog := `#include <sys/prctl.h>
#include <unistd.h>
int main(int argc, char **argv) { prctl(PR_SET_NAME, argv[1]); sleep(30); return 0; }
`
	if err := os.WriteFile(src, []byte(prog), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "renamed")
	if out, err := exec.Command("gcc", "-o", bin, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v: %s", err, out)
	}
	return startUntilCleanup(t, bin, comm)
}

// startUntilCleanup starts bin with args and kills it when the test ends.
func startUntilCleanup(t *testing.T, bin string, args ...string) *exec.Cmd {
	t.Helper()

	cmd := exec.Command(bin, args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd
}

// TestFindByName finds processes by executable name and by a command name of under 15
// bytes, and not by a 15-byte command name that may be a longer name cut short.
func TestFindByName(t *testing.T) {
	unique := "pt" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	long := unique + "-with-a-long-tail"
	a, b := startNamed(t, unique), startNamed(t, unique)
	c := startNamed(t, long)
	d := startRenamed(t, unique+"-r")

	// The children get their names at exec and prctl; the lookups wait a moment for them.
	want := []int{a.Process.Pid, b.Process.Pid}
	slices.Sort(want)
	tests := []struct {
		name string
		want []int
	}{
		{unique, want},
		{long, []int{c.Process.Pid}},
		{long[:commLen], nil},
		{unique + "-none", nil},
		{unique + "-r", []int{d.Process.Pid}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []int
			for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				var err error
				if got, err = FindByName(tt.name); err != nil {
					t.Fatal(err)
				}
				if slices.Equal(got, tt.want) || time.Now().After(deadline) {
					break
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("FindByName(%q) = %v, want %v", tt.name, got, tt.want)
			}
		})
	}
}
