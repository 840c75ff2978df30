package target

import (
	"fmt"
	"testing"

	"github.com/preempttrace/preempttrace/internal/symtab"
)

// TestStateFromCode reads the thread-state offsets from isAsyncSafePoint's machine code of
// every amd64 binary here and checks them against its DWARF (fixtures of each installed
// toolchain, unstripped registry binaries), else against the release table's row, which
// DWARF checked on another binary of the release (stripped registry binaries of 1.24 and
// 1.25). The stripped ones of releases without a row (1.15-1.18, 1.20) must give offsets
// too, which the eBPF registry test then checks against the runtime's verdicts.
func TestStateFromCode(t *testing.T) {
	checked := map[string]bool{}
	for _, b := range releaseBinaries(t, "amd64") {
		f, err := symtab.Open(b.path)
		if err != nil {
			t.Fatal(err)
		}
		got := stateFromCode(f)
		f.Close()

		want, err := FindRuntimeOffsets(b.path, b.v)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case got == nil:
			t.Errorf("%s (%s): no offsets from the code", b.path, b.v)
			continue
		case want.StateFromCode:
			t.Logf("%s (%s), neither DWARF nor a table row: %+v", b.path, b.v, *got)
			continue
		}

		source := "DWARF"
		if want.StateFromTable {
			source = "table"
		}
		w := *want.State
		w.GPreempt, w.PPreempt, w.GSecret = -1, -1, -1
		if b.v.Minor < 26 {
			w.GAtomicstatus = -1 // read from the code only where canPreemptM reads it
		}
		if *got != w {
			t.Errorf("%s (%s): code %+v, %s %+v", b.path, b.v, *got, source, w)
		}
		checked[fmt.Sprintf("%s/go1.%d", source, b.v.Minor)] = true
	}
	t.Logf("checked: %v", checked)
}
