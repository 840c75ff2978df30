package target

import (
	"strings"
	"testing"

	"github.com/preempttrace/preempttrace/internal/fixture"
	"github.com/preempttrace/preempttrace/internal/symtab"
)

// TestGoidTable checks the release table against the DWARF of every binary
// that has some: fixtures of each installed toolchain and unstripped registry
// binaries of other releases.
func TestGoidTable(t *testing.T) {
	var paths []string
	for _, tc := range fixture.Toolchains(t) {
		paths = append(paths, fixture.Build(t, tc, "spin", fixture.Default))
	}
	for _, b := range fixture.Registry(t) {
		paths = append(paths, b.Path)
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
		got, err := FindGoidOffset(path, v)
		if err != nil {
			t.Fatal(err)
		}
		want, inTable := goidByRelease[v.Minor]
		if got.Source != GoidFromDWARF || !inTable {
			continue
		}
		if got.Offset != want {
			t.Errorf("%s (%s): g.goid at %d in DWARF, %d in the table", path, v, got.Offset, want)
		}
		checked[v.Minor] = true
	}
	t.Logf("table rows checked against DWARF: %v", checked)
	if len(checked) < 6 {
		t.Errorf("only %d releases checked", len(checked))
	}
}
