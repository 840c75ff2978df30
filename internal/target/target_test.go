package target

import (
	"bufio"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/preempttrace/preempttrace/internal/fixture"
)

// firstMapping returns the start of the mapping of path at file offset 0 in
// pid, as /proc/PID/maps lists it.
func firstMapping(t *testing.T, pid int, path string) uint64 {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		f, err := os.Open(fmt.Sprintf("/proc/%d/maps", pid))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) == 6 && fields[5] == path && fields[2] == "00000000" {
				f.Close()
				start, _ := strconv.ParseUint(strings.Split(fields[0], "-")[0], 16, 64)
				return start
			}
		}
		f.Close()
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s not mapped in pid %d", path, pid)
	return 0
}

// TestLoadBias starts PIE and non-PIE fixtures and compares the bias with
// the mapping the kernel reports for the file's first segment.
func TestLoadBias(t *testing.T) {
	tc := fixture.Current(t)
	for _, v := range []fixture.Variant{fixture.Default, fixture.PIE, fixture.ExternalPIE} {
		t.Run(string(v), func(t *testing.T) {
			bin := fixture.Build(t, tc, "spin", v)
			cmd := exec.Command(bin, "plain", "2s")
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { cmd.Process.Kill(); cmd.Wait() }()

			p, err := Find(cmd.Process.Pid)
			if err != nil {
				t.Fatal(err)
			}
			mapped := firstMapping(t, cmd.Process.Pid, bin)
			bias, err := p.LoadBias()
			if err != nil {
				t.Fatal(err)
			}

			ef, err := elf.Open(bin)
			if err != nil {
				t.Fatal(err)
			}
			defer ef.Close()
			var first uint64
			for _, pr := range ef.Progs {
				if pr.Type == elf.PT_LOAD {
					first = pr.Vaddr &^ uint64(os.Getpagesize()-1)
					break
				}
			}
			if want := mapped - first; bias != want {
				t.Errorf("bias %#x, maps say %#x", bias, want)
			}
			if v.IsPIE() == (bias == 0) {
				t.Errorf("bias %#x for a %s build", bias, v)
			}
		})
	}
}

func TestFindMissing(t *testing.T) {
	if _, err := Find(999999999); err == nil {
		t.Error("found a process that does not exist")
	}
	if _, err := Find(0); err == nil {
		t.Error("found pid 0")
	}
}
