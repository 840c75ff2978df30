package target

import (
	"debug/elf"
	"testing"
)

// TestStateTable checks every row of the release table against the DWARF of a binary of
// that release: fixtures of each installed toolchain and unstripped registry binaries.
// A row no binary here checks must not be in the table.
func TestStateTable(t *testing.T) {
	checked := map[int]bool{}
	for _, b := range releaseBinaries(t, "amd64") {
		got, err := FindRuntimeOffsets(b.path, b.v)
		if err != nil {
			t.Fatal(err)
		}
		want := stateFromTable(b.v, elf.EM_X86_64)
		if got.State == nil || got.StateFromTable || want == nil {
			continue
		}
		if *got.State != *want {
			t.Errorf("%s (%s): DWARF %+v, table %+v", b.path, b.v, *got.State, *want)
		}
		checked[b.v.Minor] = true
	}

	for minor := range stateByRelease {
		if !checked[minor] {
			t.Errorf("row for Go 1.%d checked against no binary", minor)
		}
	}
}
