package probe

import (
	"debug/dwarf"
	"debug/elf"
	"errors"
	"fmt"
)

// GoidSource says where a g.goid offset came from.
type GoidSource string

// The places a goid offset can come from.
const (
	// GoidUnknown means no offset: events carry no goroutine id.
	GoidUnknown GoidSource = ""

	// GoidFromDWARF means the target's own debug information described runtime.g.
	GoidFromDWARF GoidSource = "dwarf"
)

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

// FindGoidOffset reads the offset of g.goid from the DWARF type information of the
// executable at path. A binary without DWARF (built with -ldflags=-w or stripped) gives the
// unknown offset and no error; a per-release table for those is not written yet.
//
// The runtime's own description of its struct is the only source used, because the layout
// of g moves between releases and with GOEXPERIMENT settings (go-preemption-internals.md
// §9: goid is at 152 in most releases and at 160 in Go 1.23 and 1.24).
func FindGoidOffset(path string) (GoidOffset, error) {
	f, err := elf.Open(path)
	if err != nil {
		return GoidOffset{}, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()

	// Linking with -w or stripping removes the section; only then is the offset unknown.
	if f.Section(".debug_info") == nil && f.Section(".zdebug_info") == nil {
		return GoidOffset{}, nil
	}
	d, err := f.DWARF()
	if err != nil {
		return GoidOffset{}, fmt.Errorf("read DWARF of %s: %w", path, err)
	}

	off, err := goidFromDWARF(d)
	if errors.Is(err, errNoRuntimeG) {
		return GoidOffset{}, nil
	}
	if err != nil {
		return GoidOffset{}, fmt.Errorf("read runtime.g from DWARF of %s: %w", path, err)
	}
	return GoidOffset{Offset: off, Source: GoidFromDWARF}, nil
}

// goidFromDWARF finds runtime.g among the top-level types of each compile unit and returns
// the byte offset of its goid member.
func goidFromDWARF(d *dwarf.Data) (uint32, error) {
	r := d.Reader()
	for {
		e, err := r.Next()
		if err != nil {
			return 0, fmt.Errorf("walk entries: %w", err)
		}
		if e == nil {
			return 0, errNoRuntimeG
		}

		// Descend into compile units only: types are their direct children.
		if e.Tag == dwarf.TagCompileUnit {
			continue
		}
		if e.Tag == dwarf.TagStructType && e.Val(dwarf.AttrName) == "runtime.g" {
			return goidMember(d, e.Offset)
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
