package target

import (
	"slices"
	"strings"
	"testing"

	"github.com/preempttrace/preempttrace/internal/fixture"
	"github.com/preempttrace/preempttrace/internal/symtab"
)

// releaseBinary is a binary the release tables are checked against.
type releaseBinary struct {
	path string
	v    symtab.GoVersion
}

// releaseBinaries returns the binaries of known releases that may have DWARF: the spin
// fixture of each installed toolchain and the registry binaries of archs (all when none
// is given).
func releaseBinaries(t *testing.T, archs ...string) []releaseBinary {
	t.Helper()

	var paths []string
	for _, tc := range fixture.Toolchains(t) {
		paths = append(paths, fixture.Build(t, tc, "spin", fixture.Default))
	}
	for _, b := range fixture.Registry(t) {
		if len(archs) == 0 || slices.Contains(archs, b.Arch) {
			paths = append(paths, b.Path)
		}
	}

	var out []releaseBinary
	for _, path := range paths {
		f, err := symtab.Open(path)
		if err != nil {
			if strings.Contains(path, "go1.13") {
				continue // refused as too old, by design
			}
			t.Fatal(err)
		}
		out = append(out, releaseBinary{path, f.Version()})
		f.Close()
	}
	return out
}

// TestGoidTable checks the release table against the DWARF of every binary
// that has some: fixtures of each installed toolchain and unstripped registry
// binaries of other releases.
func TestGoidTable(t *testing.T) {
	checked := map[int]bool{}
	for _, b := range releaseBinaries(t) {
		got, err := FindGoidOffset(b.path, b.v)
		if err != nil {
			t.Fatal(err)
		}
		want, inTable := goidByRelease[b.v.Minor]
		if got.Source != GoidFromDWARF || !inTable {
			continue
		}
		if got.Offset != want {
			t.Errorf("%s (%s): g.goid at %d in DWARF, %d in the table", b.path, b.v, got.Offset,
				want)
		}
		checked[b.v.Minor] = true
	}
	t.Logf("table rows checked against DWARF: %v", checked)

	// The table's comment calls the row of every release with a toolchain here checked.
	for _, tc := range fixture.Toolchains(t) {
		if !checked[tc.Minor] {
			t.Errorf("row for %s checked against no binary", tc)
		}
	}
}
