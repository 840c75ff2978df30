package target_test

import (
	"testing"

	"github.com/preempttrace/preempttrace/internal/fixture"
	"github.com/preempttrace/preempttrace/internal/symtab"
	"github.com/preempttrace/preempttrace/internal/target"
)

// goidOffsets is g.goid per Go minor release, counted in runtime.g of each release's
// runtime/runtime2.go (1.19, 1.21-1.27) or read from its fixtures' DWARF, which delve reads
// alike (1.14-1.18, 1.20); TestFindGoidOffset checks them against DWARF.
var goidOffsets = map[int]uint32{14: 152, 15: 152, 16: 152, 17: 152, 18: 152, 19: 152,
	20: 152, 21: 152, 22: 152, 23: 160, 24: 160, 25: 152, 26: 152, 27: 152}

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

// strippedTwin is the variant each stripped one differs from only by symbols and DWARF.
var strippedTwin = map[fixture.Variant]fixture.Variant{
	fixture.Stripped:            fixture.Default,
	fixture.ExternalPIEStripped: fixture.ExternalPIE,
	fixture.ARM64Stripped:       fixture.ARM64,
}

// TestFindRuntimeOffsets reads the thread-state members from the DWARF of every
// toolchain's fixture. Builds without DWARF take them from the release table on amd64,
// which must give what their unstripped twin's DWARF gives, and leave them unknown
// elsewhere rather than guessed.
func TestFindRuntimeOffsets(t *testing.T) {
	for _, c := range fixture.Matrix(t) {
		t.Run(c.Name(), func(t *testing.T) {
			bin, v := buildVersion(t, c)

			got, err := target.FindRuntimeOffsets(bin, v)
			if err != nil {
				t.Fatalf("FindRuntimeOffsets: %v", err)
			}
			if c.Variant.IsStripped() {
				checkStrippedState(t, c, got)
				return
			}
			if got.StateFromTable {
				t.Error("state offsets from the table for a build with DWARF")
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

// checkStrippedState checks a stripped build's state offsets against its twin's DWARF.
func checkStrippedState(t *testing.T, c fixture.Case, got target.RuntimeOffsets) {
	t.Helper()

	if c.Variant.Arch() != "amd64" {
		if got.State != nil {
			t.Fatalf("stripped %s build: state offsets %+v, want unknown", c.Variant.Arch(),
				*got.State)
		}
		return
	}
	if got.State == nil || !got.StateFromTable {
		t.Fatalf("stripped build: state %v from table %v, want the release table's row",
			got.State, got.StateFromTable)
	}

	twin := fixture.Build(t, c.Toolchain, "spin", strippedTwin[c.Variant])
	tv, err := symtab.Open(twin)
	if err != nil {
		t.Fatal(err)
	}
	defer tv.Close()
	want, err := target.FindRuntimeOffsets(twin, tv.Version())
	if err != nil || want.State == nil {
		t.Fatalf("twin's offsets: %+v, %v", want, err)
	}
	if *got.State != *want.State {
		t.Errorf("table row %+v, twin's DWARF %+v", *got.State, *want.State)
	}
}
