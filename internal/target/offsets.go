package target

import (
	"debug/dwarf"
	"debug/elf"
	"errors"
	"fmt"
	"slices"

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
// experiments of that release. Every row is checked against the DWARF of that release's
// fixtures by TestGoidTable. goid follows atomicstatus, which moved when 1.23 added a
// field before it and back when 1.25 removed it.
var goidByRelease = map[int]uint32{
	14: 152, 15: 152, 16: 152, 17: 152, 18: 152, 19: 152, 20: 152, 21: 152, 22: 152,
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

// RuntimeOffsets are where the runtime's structs keep what the probes read, in one target.
type RuntimeOffsets struct {
	// Goid is where g keeps the goroutine id.
	Goid GoidOffset

	// State is where g, m and p keep the thread state isAsyncSafePoint checks: from the
	// target's DWARF, else a checked row of the release table (stateByRelease), else the
	// target's own machine code (amd64); nil when none gives all of it. StateFromTable and
	// StateFromCode say which of the fallbacks gave it.
	State          *StateOffsets
	StateFromTable bool
	StateFromCode  bool
}

// FindGoidOffset returns where g.goid is in the executable at path, built by release v
// (see FindRuntimeOffsets).
func FindGoidOffset(path string, v symtab.GoVersion) (GoidOffset, error) {
	o, err := FindRuntimeOffsets(path, v)
	return o.Goid, err
}

// FindRuntimeOffsets returns where runtime.g, runtime.m and runtime.p keep the members the
// probes read in the executable at path, built by release v, in one pass over its DWARF.
//
// g.goid comes from DWARF when the binary has some, else from the table of releases when
// the build used the default GOEXPERIMENT settings, which can move the field; otherwise it
// is unknown, with no error. The runtime's own description of its struct comes first,
// because the layout of g moves between releases and with GOEXPERIMENT settings
// (runtime/runtime2.go: goid is at 152 in most releases and at 160 in Go 1.23 and 1.24).
// The thread state likewise comes from DWARF, else from the releases whose table row was
// checked against a binary of theirs.
func FindRuntimeOffsets(path string, v symtab.GoVersion) (RuntimeOffsets, error) {
	f, err := elf.Open(path)
	if err != nil {
		return RuntimeOffsets{}, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()

	// Linking with -w or stripping removes the section.
	if f.Section(".debug_info") == nil && f.Section(".zdebug_info") == nil {
		return withoutDWARF(path, v, f.Machine), nil
	}
	d, err := typeDWARF(f)
	if err != nil {
		return RuntimeOffsets{}, fmt.Errorf("read DWARF of %s: %w", path, err)
	}

	types, err := runtimeTypes(d)
	if errors.Is(err, errNoRuntimeG) {
		return withoutDWARF(path, v, f.Machine), nil
	}
	if err != nil {
		return RuntimeOffsets{}, fmt.Errorf("read runtime types from DWARF of %s: %w", path, err)
	}

	off, err := goidMember(types["runtime.g"])
	if err != nil {
		return RuntimeOffsets{}, fmt.Errorf("read runtime.g from DWARF of %s: %w", path, err)
	}
	return RuntimeOffsets{Goid: GoidOffset{Offset: off, Source: GoidFromDWARF},
		State: stateOffsets(types, v)}, nil
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

// fromTables returns the offsets of the release tables, for a binary without DWARF that
// describes the runtime.
// withoutDWARF returns the offsets of a binary whose DWARF does not describe the runtime:
// the release tables', and for the state, where they have no row, what the machine code
// of isAsyncSafePoint says.
func withoutDWARF(path string, v symtab.GoVersion, machine elf.Machine) RuntimeOffsets {
	o := fromTables(v, machine)
	if o.State != nil {
		return o
	}
	f, err := symtab.Open(path)
	if err != nil {
		return o // the caller decodes the same file and reports its errors
	}
	defer f.Close()
	o.State = stateFromCode(f)
	o.StateFromCode = o.State != nil
	return o
}

func fromTables(v symtab.GoVersion, machine elf.Machine) RuntimeOffsets {
	st := stateFromTable(v, machine)
	return RuntimeOffsets{Goid: goidFromTable(v), State: st, StateFromTable: st != nil}
}

// goidFromTable returns the release's offset for a build with default
// experiments, and unknown otherwise.
func goidFromTable(v symtab.GoVersion) GoidOffset {
	if off, ok := goidByRelease[v.Minor]; ok && len(v.Experiments) == 0 {
		return GoidOffset{Offset: off, Source: GoidFromTable}
	}
	return GoidOffset{}
}

// runtimeStructs are the runtime's struct types the probes read members of.
var runtimeStructs = []string{"runtime.g", "runtime.m", "runtime.p"}

// runtimeTypes decodes the structs of runtimeStructs that the DWARF describes, by name, and
// fails with errNoRuntimeG without runtime.g. The Go linker emits one compile unit per
// package and these types in the runtime's, so that unit is searched first; the others
// only if it lacks runtime.g.
func runtimeTypes(d *dwarf.Data) (map[string]*dwarf.StructType, error) {
	offs, err := findRuntimeStructs(d, true)
	if err == nil && offs["runtime.g"] == 0 {
		offs, err = findRuntimeStructs(d, false)
	}
	if err != nil {
		return nil, err
	}
	if offs["runtime.g"] == 0 {
		return nil, errNoRuntimeG
	}

	types := make(map[string]*dwarf.StructType, len(offs))
	for name, off := range offs {
		t, err := d.Type(off)
		if err != nil {
			return nil, fmt.Errorf("decode %s: %w", name, err)
		}
		st, ok := t.(*dwarf.StructType)
		if !ok {
			return nil, fmt.Errorf("%s is a %T, not a struct", name, t)
		}
		types[name] = st
	}
	return types, nil
}

// findRuntimeStructs walks the top-level entries of the compile units (only the runtime's
// when runtimeOnly) for the struct types of runtimeStructs, and returns the offsets of
// those it found.
func findRuntimeStructs(d *dwarf.Data, runtimeOnly bool) (map[string]dwarf.Offset, error) {
	found := make(map[string]dwarf.Offset, len(runtimeStructs))
	r := d.Reader()
	for len(found) < len(runtimeStructs) {
		e, err := r.Next()
		if err != nil {
			return nil, fmt.Errorf("walk entries: %w", err)
		}
		if e == nil {
			break
		}

		// Types are direct children of compile units.
		if e.Tag == dwarf.TagCompileUnit {
			if runtimeOnly && e.Val(dwarf.AttrName) != "runtime" {
				r.SkipChildren()
			}
			continue
		}
		if e.Tag == dwarf.TagStructType {
			name, _ := e.Val(dwarf.AttrName).(string)
			if slices.Contains(runtimeStructs, name) && found[name] == 0 {
				found[name] = e.Offset
			}
		}
		if e.Children {
			r.SkipChildren()
		}
	}
	return found, nil
}

// goidMember returns the offset of the 8-byte goid member of runtime.g.
func goidMember(st *dwarf.StructType) (uint32, error) {
	f, ok := member(st, "goid")
	if !ok {
		return 0, errors.New("runtime.g has no goid member")
	}
	if f.Type.Size() != 8 || f.ByteOffset < 0 || f.ByteOffset+8 > st.ByteSize {
		return 0, fmt.Errorf("runtime.g.goid: %s of %d bytes at %d in a %d-byte struct",
			f.Type, f.Type.Size(), f.ByteOffset, st.ByteSize)
	}
	return uint32(f.ByteOffset), nil
}

// member returns the member of st called name.
func member(st *dwarf.StructType, name string) (*dwarf.StructField, bool) {
	if st == nil {
		return nil, false
	}
	for _, f := range st.Field {
		if f.Name == name {
			return f, true
		}
	}
	return nil, false
}
