package target

import (
	"debug/elf"
	"strings"
	"testing"

	"github.com/preempttrace/preempttrace/internal/fixture"
	"github.com/preempttrace/preempttrace/internal/symtab"
)

// TestStateTable checks every row of the release table against the DWARF of a binary of
// that release: fixtures of each installed toolchain and unstripped registry binaries.
// A row no binary here checks must not be in the table.
func TestStateTable(t *testing.T) {
	var paths []string
	for _, tc := range fixture.Toolchains(t) {
		paths = append(paths, fixture.Build(t, tc, "spin", fixture.Default))
	}
	for _, b := range fixture.Registry(t) {
		if b.Arch == "amd64" {
			paths = append(paths, b.Path)
		}
	}

	checked := map[int]bool{}
	for _, path := range paths {
		f, err := symtab.Open(path)
		if err != nil {
			if strings.Contains(path, "go1.13") {
				continue // refused as too old, by design
			}
			t.Fatal(err)
		}
		v := f.Version()
		f.Close()

		got, err := FindRuntimeOffsets(path, v)
		if err != nil {
			t.Fatal(err)
		}
		want := stateFromTable(v, elf.EM_X86_64)
		if got.State == nil || got.StateFromTable || want == nil {
			continue
		}
		if *got.State != *want {
			t.Errorf("%s (%s): DWARF %+v, table %+v", path, v, *got.State, *want)
		}
		checked[v.Minor] = true
	}

	for minor := range stateByRelease {
		if !checked[minor] {
			t.Errorf("row for Go 1.%d checked against no binary", minor)
		}
	}
}
