package target_test

import (
	"testing"

	"github.com/preempttrace/preempttrace/internal/fixture"
	"github.com/preempttrace/preempttrace/internal/symtab"
	"github.com/preempttrace/preempttrace/internal/target"
)

// goidOffsets is g.goid per Go minor release, read from runtime.g in each release's
// runtime/runtime2.go; TestFindGoidOffset checks them against DWARF.
var goidOffsets = map[int]uint32{19: 152, 21: 152, 22: 152, 23: 160, 24: 160, 25: 152, 26: 152,
	27: 152}

// TestFindGoidOffset reads g.goid from the DWARF of every toolchain's fixture, and checks
// that builds without DWARF take it from the release table.
func TestFindGoidOffset(t *testing.T) {
	for _, c := range fixture.Matrix(t) {
		t.Run(c.Name(), func(t *testing.T) {
			bin, v := buildVersion(t, c)

			got, err := target.FindGoidOffset(bin, v)
			if err != nil {
				t.Fatalf("FindGoidOffset: %v", err)
			}
			if c.Variant.IsStripped() {
				if got.Source != target.GoidFromTable || got.Offset != goidOffsets[c.Toolchain.Minor] {
					t.Fatalf("stripped build: %+v, want %d from the release table", got,
						goidOffsets[c.Toolchain.Minor])
				}
				return
			}

			if !got.Known() || got.Source != target.GoidFromDWARF {
				t.Fatalf("offset unknown (%+v), want one from DWARF", got)
			}
			if want, ok := goidOffsets[c.Toolchain.Minor]; ok && got.Offset != want {
				t.Errorf("g.goid at %d, want %d", got.Offset, want)
			}
			t.Logf("g.goid at %d", got.Offset)
		})
	}
}

// TestGoidUnknownWithExperiment: without DWARF, a build with a non-default
// GOEXPERIMENT may have moved g.goid, so the offset stays unknown.
func TestGoidUnknownWithExperiment(t *testing.T) {
	bin := fixture.Build(t, fixture.Current(t), "spin", fixture.Default)
	v, err := symtab.ParseGoVersion("go1.26.8 X:nogreenteagc")
	if err != nil {
		t.Fatal(err)
	}
	stripped := fixture.Build(t, fixture.Current(t), "spin", fixture.Stripped)
	if got, err := target.FindGoidOffset(stripped, v); err != nil || got.Known() {
		t.Errorf("stripped experiment build: %+v, %v; want unknown", got, err)
	}
	if got, err := target.FindGoidOffset(bin, v); err != nil || got.Source != target.GoidFromDWARF {
		t.Errorf("DWARF build: %+v, %v; want DWARF", got, err)
	}
}

// TestFindRuntimeOffsets reads the thread-state members from the DWARF of every
// toolchain's fixture, and checks that builds without DWARF leave them unknown rather
// than guessed.
func TestFindRuntimeOffsets(t *testing.T) {
	for _, c := range fixture.Matrix(t) {
		t.Run(c.Name(), func(t *testing.T) {
			bin, v := buildVersion(t, c)

			got, err := target.FindRuntimeOffsets(bin, v)
			if err != nil {
				t.Fatalf("FindRuntimeOffsets: %v", err)
			}
			if c.Variant.IsStripped() {
				if got.State != nil {
					t.Fatalf("stripped build: state offsets %+v, want unknown", *got.State)
				}
				return
			}

			s := got.State
			if s == nil {
				t.Fatal("state offsets unknown, want them from DWARF")
			}
			// g.stack is the first member of g in every release (runtime/runtime2.go),
			// and g.m follows stack, stackguard0 and stackguard1, _panic and _defer.
			if s.GStackLo != 0 || s.GM != 48 || s.GAtomicstatus <= 0 {
				t.Errorf("g members %+v", *s)
			}
			for _, off := range []int32{s.MCurg, s.MLocks, s.MMallocing, s.MPreemptoff, s.MP,
				s.PStatus} {
				if off < 0 {
					t.Errorf("m or p member unknown: %+v", *s)
				}
			}
			t.Logf("%+v", *s)
		})
	}
}

// buildVersion builds the spin fixture of c and returns its path and the Go
// version it records.
func buildVersion(t *testing.T, c fixture.Case) (string, symtab.GoVersion) {
	t.Helper()
	bin := fixture.Build(t, c.Toolchain, "spin", c.Variant)
	f, err := symtab.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return bin, f.Version()
}
