//go:build linux

package ptrace

import (
	"debug/elf"
	"path/filepath"
	"testing"

	"github.com/go-delve/delve/pkg/proc"

	"github.com/preempttrace/preempttrace/internal/fixture"
)

// unstrippedTwin is the variant that differs from a stripped one only by its symbols and
// DWARF, which delve needs before it works out where g is.
var unstrippedTwin = map[fixture.Variant]fixture.Variant{
	fixture.Stripped:            fixture.Default,
	fixture.ExternalPIEStripped: fixture.ExternalPIE,
}

// TestDelveGTLSOffset checks gTLSOffset against the offset delve derives from the same
// executable, on every amd64 fixture build and registry binary delve can load. Delve
// works it out only once it has loaded DWARF, so a stripped build is checked against
// delve's answer for its unstripped twin, after checking that both lay out PT_TLS alike.
func TestDelveGTLSOffset(t *testing.T) {
	for _, c := range fixture.Matrix(t) {
		t.Run(c.Name(), func(t *testing.T) {
			if c.Variant.Arch() != "amd64" {
				t.Skip("gTLSOffset follows the amd64 TLS layout")
			}
			bin := fixture.Build(t, c.Toolchain, "spin", c.Variant)

			ref := bin
			if twin, ok := unstrippedTwin[c.Variant]; ok {
				ref = fixture.Build(t, c.Toolchain, "spin", twin)
				if a, b := tlsLayoutOf(t, bin), tlsLayoutOf(t, ref); a != b {
					t.Fatalf("PT_TLS of %s is %+v, of its %s twin %+v", c.Variant, a, twin, b)
				}
			}
			compareGTLS(t, bin, ref)
		})
	}

	for _, b := range fixture.Registry(t) {
		t.Run("registry/"+b.ID, func(t *testing.T) {
			if b.Arch != "amd64" {
				t.Skip("gTLSOffset follows the amd64 TLS layout")
			}
			if !hasDWARF(t, b.Path) {
				t.Skip("no DWARF, so delve leaves the offset unset")
			}
			compareGTLS(t, b.Path, b.Path)
		})
	}
}

// compareGTLS fails the test when gTLSOffset of bin differs from delve's offset for ref,
// which is bin itself or its unstripped twin.
func compareGTLS(t *testing.T, bin, ref string) {
	t.Helper()

	got, err := gTLSOffset(bin)
	if err != nil {
		t.Fatalf("gTLSOffset: %v", err)
	}
	want := delveGOffset(t, ref)

	name := filepath.Base(bin)
	if ref != bin {
		name += " (delve reads " + filepath.Base(ref) + ")"
	}
	if got != want {
		t.Errorf("%s: g at thread pointer%+d, delve says %+d", name, got, want)
	}
	t.Logf("%s: g at thread pointer%+d", name, got)
}

// delveGOffset returns where delve says the amd64 executable at path keeps g, relative to
// the thread pointer.
func delveGOffset(t *testing.T, path string) int64 {
	t.Helper()

	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	hdr := f.FileHeader
	f.Close()

	// Delve relocates a position-independent executable by the distance from the ELF's
	// entry point to the one it is given; the ELF's own entry keeps link-time addresses.
	var entry uint64
	if hdr.Type == elf.ET_DYN {
		entry = hdr.Entry
	}

	// Attaching keeps delve from asking debuginfod for missing debug information.
	bi := proc.NewBinaryInfo("linux", "amd64", true)
	if err := bi.LoadBinaryInfo(path, entry, nil); err != nil {
		t.Fatalf("delve: load %s: %v", path, err)
	}
	defer bi.Close()

	// For ELF the offset is a constant of the file rather than a pointer to follow in the
	// process (that is Windows), so no process memory is needed.
	off, err := bi.GStructOffset(nil)
	if err != nil {
		t.Fatalf("delve: g offset of %s: %v", path, err)
	}
	return int64(off)
}

// tlsLayout is what of a PT_TLS segment decides where its variables sit below the thread
// pointer: its size, its alignment, and how far its start is from that alignment.
type tlsLayout struct {
	present                bool
	memsz, align, misalign uint64
}

// tlsLayoutOf returns the layout of the PT_TLS segment of the executable at path.
func tlsLayoutOf(t *testing.T, path string) tlsLayout {
	t.Helper()

	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	for _, p := range f.Progs {
		if p.Type == elf.PT_TLS {
			align := max(p.Align, 1)
			return tlsLayout{true, p.Memsz, align, p.Vaddr % align}
		}
	}
	return tlsLayout{}
}

// hasDWARF reports whether the executable at path has DWARF, compressed or not.
func hasDWARF(t *testing.T, path string) bool {
	t.Helper()

	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return f.Section(".debug_info") != nil || f.Section(".zdebug_info") != nil
}
