package probe_test

import (
	"testing"

	"github.com/preempttrace/preempttrace/internal/fixture"
	"github.com/preempttrace/preempttrace/internal/probe"
)

// goidOffsets is g.goid per Go minor release as go-preemption-internals.md §9 lists it
// (computed there from each release's runtime source and checked against DWARF).
var goidOffsets = map[int]uint32{19: 152, 21: 152, 22: 152, 23: 160, 24: 160, 25: 152, 26: 152}

// TestFindGoidOffset reads g.goid from the DWARF of every toolchain's fixture, and checks
// that builds without DWARF give the unknown offset rather than a guess.
func TestFindGoidOffset(t *testing.T) {
	for _, c := range fixture.Matrix(t) {
		t.Run(c.Name(), func(t *testing.T) {
			bin := fixture.Build(t, c.Toolchain, "spin", c.Variant)

			got, err := probe.FindGoidOffset(bin)
			if err != nil {
				t.Fatalf("FindGoidOffset: %v", err)
			}
			if c.Variant.IsStripped() {
				if got.Known() {
					t.Fatalf("stripped build: offset %d from %s, want unknown", got.Offset,
						got.Source)
				}
				return
			}

			if !got.Known() || got.Source != probe.GoidFromDWARF {
				t.Fatalf("offset unknown (%+v), want one from DWARF", got)
			}
			if want, ok := goidOffsets[c.Toolchain.Minor]; ok && got.Offset != want {
				t.Errorf("g.goid at %d, want %d", got.Offset, want)
			}
			t.Logf("g.goid at %d", got.Offset)
		})
	}
}
