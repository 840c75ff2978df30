package target

import (
	"debug/elf"
	"os"
	"os/exec"
	"testing"

	"github.com/preempttrace/preempttrace/internal/fixture"
)

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
			mapped := fixture.MappedBase(t, cmd.Process.Pid, bin)
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
