package probe

import (
	"debug/dwarf"
	"debug/elf"
	"errors"
	"fmt"

	"github.com/preempttrace/preempttrace/internal/symtab"
)

// GoidSource says where a g.goid offset came from.
type GoidSource string

// The places a goid offset can come from.
const (
	// GoidUnknown means no offset: events carry no goroutine id.
	GoidUnknown GoidSource = ""

	// GoidFromDWARF means the target's own debug information described runtime.g.
	GoidFromDWARF GoidSource = "dwarf"

	// GoidFromTable means the binary has no DWARF and the offset is the one its
	// release puts g.goid at with the default GOEXPERIMENT (goidByRelease).
	GoidFromTable GoidSource = "release-table"
)

// goidByRelease is the offset of g.goid by Go minor release, with the default
// experiments of that release. The rows of releases with a toolchain here
// (1.19, 1.21–1.23, 1.26, 1.27) are checked against DWARF by TestGoidTable;
// the others (1.17, 1.18, 1.20, 1.24, 1.25) come from the runtime source of
// those releases, where goid follows atomicstatus, which moved when 1.23
// added a field before it and back when 1.25 removed it.
var goidByRelease = map[int]uint32{
	17: 152, 18: 152, 19: 152, 20: 152, 21: 152, 22: 152,
	23: 160, 24: 160,
	25: 152, 26: 152, 27: 152,
}

// GoidOffset is where runtime.g keeps the goroutine id in one target. The zero value is
// unknown, and the probes then leave the id out rather than read a guessed offset.
type GoidOffset struct {
	Offset uint32
	Source GoidSource
}

// Known reports whether the offset can be used.
func (o GoidOffset) Known() bool { return o.Source != GoidUnknown }

// errNoRuntimeG reports DWARF that does not describe runtime.g.
var errNoRuntimeG = errors.New("no runtime.g in DWARF")

// FindGoidOffset returns where g.goid is in the executable at path, built by release v:
// from its DWARF type information when it has some, else from the table of releases when
// the build used the default GOEXPERIMENT settings, which can move the field. Otherwise the
// offset is unknown, with no error.
//
// The runtime's own description of its struct comes first, because the layout of g moves
// between releases and with GOEXPERIMENT settings (runtime/runtime2.go: goid is at 152 in
// most releases and at 160 in Go 1.23 and 1.24).
func FindGoidOffset(path string, v symtab.GoVersion) (GoidOffset, error) {
	f, err := elf.Open(path)
	if err != nil {
		return GoidOffset{}, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()

	// Linking with -w or stripping removes the section.
	if f.Section(".debug_info") == nil && f.Section(".zdebug_info") == nil {
		return goidFromTable(v), nil
	}
	d, err := typeDWARF(f)
	if err != nil {
		return GoidOffset{}, fmt.Errorf("read DWARF of %s: %w", path, err)
	}

	off, err := goidFromDWARF(d)
	if errors.Is(err, errNoRuntimeG) {
		return goidFromTable(v), nil
	}
	if err != nil {
		return GoidOffset{}, fmt.Errorf("read runtime.g from DWARF of %s: %w", path, err)
	}
	return GoidOffset{Offset: off, Source: GoidFromDWARF}, nil
}

// typeDWARF reads only the DWARF sections that describe types. The line,
// location and range tables are most of a binary's DWARF, and decompressing
// them was most of the time from start to probes live on a large binary.
// Old-style .zdebug sections take debug/elf's full reader.
func typeDWARF(f *elf.File) (*dwarf.Data, error) {
	if f.Section(".debug_info") == nil {
		return f.DWARF()
	}
	data := func(name string) ([]byte, error) {
		s := f.Section(name)
		if s == nil {
			return nil, nil
		}
		b, err := s.Data()
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", name, err)
		}
		return b, nil
	}

	var abbrev, info, str []byte
	var err error
	for name, dst := range map[string]*[]byte{".debug_abbrev": &abbrev, ".debug_info": &info,
		".debug_str": &str} {
		if *dst, err = data(name); err != nil {
			return nil, err
		}
	}
	d, err := dwarf.New(abbrev, nil, nil, info, nil, nil, nil, str)
	if err != nil {
		return nil, err
	}

	// DWARF 5 (Go 1.25+) keeps attribute strings behind these.
	for _, name := range []string{".debug_str_offsets", ".debug_line_str", ".debug_addr"} {
		b, err := data(name)
		if err != nil {
			return nil, err
		}
		if b != nil {
			if err := d.AddSection(name, b); err != nil {
				return nil, fmt.Errorf("add %s: %w", name, err)
			}
		}
	}
	return d, nil
}

// goidFromTable returns the release's offset for a build with default
// experiments, and unknown otherwise.
func goidFromTable(v symtab.GoVersion) GoidOffset {
	if off, ok := goidByRelease[v.Minor]; ok && len(v.Experiments) == 0 {
		return GoidOffset{Offset: off, Source: GoidFromTable}
	}
	return GoidOffset{}
}

// goidFromDWARF finds runtime.g and returns the byte offset of its goid
// member. The Go linker emits one compile unit per package and runtime.g in
// the runtime's, so that unit is searched first; the others only if it lacks
// the type.
func goidFromDWARF(d *dwarf.Data) (uint32, error) {
	off, err := findRuntimeG(d, true)
	if errors.Is(err, errNoRuntimeG) {
		off, err = findRuntimeG(d, false)
	}
	if err != nil {
		return 0, err
	}
	return goidMember(d, off)
}

// findRuntimeG walks the top-level entries of the compile units (only the
// runtime's when runtimeOnly) for the struct type runtime.g.
func findRuntimeG(d *dwarf.Data, runtimeOnly bool) (dwarf.Offset, error) {
	r := d.Reader()
	for {
		e, err := r.Next()
		if err != nil {
			return 0, fmt.Errorf("walk entries: %w", err)
		}
		if e == nil {
			return 0, errNoRuntimeG
		}

		// Types are direct children of compile units.
		if e.Tag == dwarf.TagCompileUnit {
			if runtimeOnly && e.Val(dwarf.AttrName) != "runtime" {
				r.SkipChildren()
			}
			continue
		}
		if e.Tag == dwarf.TagStructType && e.Val(dwarf.AttrName) == "runtime.g" {
			return e.Offset, nil
		}
		if e.Children {
			r.SkipChildren()
		}
	}
}

// goidMember returns the offset of the 8-byte goid member of the struct at off.
func goidMember(d *dwarf.Data, off dwarf.Offset) (uint32, error) {
	t, err := d.Type(off)
	if err != nil {
		return 0, fmt.Errorf("decode runtime.g: %w", err)
	}
	st, ok := t.(*dwarf.StructType)
	if !ok {
		return 0, fmt.Errorf("runtime.g is a %T, not a struct", t)
	}

	for _, f := range st.Field {
		if f.Name != "goid" {
			continue
		}
		if f.Type.Size() != 8 || f.ByteOffset < 0 || f.ByteOffset+8 > st.ByteSize {
			return 0, fmt.Errorf("runtime.g.goid: %s of %d bytes at %d in a %d-byte struct",
				f.Type, f.Type.Size(), f.ByteOffset, st.ByteSize)
		}
		return uint32(f.ByteOffset), nil
	}
	return 0, errors.New("runtime.g has no goid member")
}
