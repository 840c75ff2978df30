package main

import (
	"debug/elf"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"testing"

	"github.com/preempttrace/preempttrace/internal/fixture"
)

// TestExplainPID explains addresses of running fixtures, non-PIE and PIE: the
// address of main.plainSpin as the process maps it must decode to that function.
func TestExplainPID(t *testing.T) {
	tc := fixture.Current(t)
	for _, v := range []fixture.Variant{fixture.Default, fixture.PIE} {
		t.Run(string(v), func(t *testing.T) {
			bin := fixture.Build(t, tc, "spin", v)
			proc := exec.Command(bin, "plain", "10s")
			if err := proc.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() {
				proc.Process.Kill()
				proc.Wait()
			}()

			entry, base := symbolAndBase(t, bin, "main.plainSpin")
			addr := fixture.MappedBase(t, proc.Process.Pid, bin) - base + entry
			res := runCLI(t, "explain", "--json", "--pid", strconv.Itoa(proc.Process.Pid),
				fmt.Sprintf("%#x", addr+4), "main.plainSpin")
			if res.code != 0 {
				t.Fatalf("exit %d: %s", res.code, res.stderr)
			}
			var out []struct {
				PC   string `json:"pc"`
				Func string `json:"func"`
			}
			if err := json.Unmarshal([]byte(res.stdout), &out); err != nil {
				t.Fatal(err)
			}
			if len(out) != 2 || out[0].Func != "main.plainSpin" ||
				out[1].PC != fmt.Sprintf("%#x", addr) {
				t.Errorf("got %+v, want main.plainSpin at %#x", out, addr)
			}
		})
	}
}

// symbolAndBase returns a symbol's link-time address and the page-aligned
// address of the first loadable segment, read from the ELF file.
func symbolAndBase(t *testing.T, path, name string) (uint64, uint64) {
	t.Helper()
	ef, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ef.Close()
	syms, err := ef.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	var addr uint64
	for _, s := range syms {
		if s.Name == name {
			addr = s.Value
		}
	}
	for _, p := range ef.Progs {
		if p.Type == elf.PT_LOAD {
			return addr, p.Vaddr &^ uint64(os.Getpagesize()-1)
		}
	}
	t.Fatal("no PT_LOAD")
	return 0, 0
}
