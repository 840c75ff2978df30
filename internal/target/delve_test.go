package target_test

import (
	"debug/elf"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/go-delve/delve/pkg/dwarf/godwarf"
	"github.com/go-delve/delve/pkg/proc"

	"github.com/preempttrace/preempttrace/internal/fixture"
	"github.com/preempttrace/preempttrace/internal/symtab"
	"github.com/preempttrace/preempttrace/internal/target"
)

// runtimeMember names a member of one of the runtime's structs; path "stack.lo" is the lo
// member of the stack member.
type runtimeMember struct {
	typ, path string
}

func (m runtimeMember) String() string {
	return strings.TrimPrefix(m.typ, "runtime.") + "." + m.path
}

// delveStateMembers maps each member of target.StateOffsets to the runtime member it
// holds the offset of. Optional members may be -1 in a StateOffsets that is not nil; one
// with an experiment is read only from builds with that GOEXPERIMENT, and is -1 in others
// whatever their DWARF says.
var delveStateMembers = []struct {
	field      string
	member     runtimeMember
	optional   bool
	experiment string
}{
	{"GM", runtimeMember{"runtime.g", "m"}, false, ""},
	{"GStackLo", runtimeMember{"runtime.g", "stack.lo"}, false, ""},
	{"GAtomicstatus", runtimeMember{"runtime.g", "atomicstatus"}, true, ""},
	{"MCurg", runtimeMember{"runtime.m", "curg"}, false, ""},
	{"MLocks", runtimeMember{"runtime.m", "locks"}, false, ""},
	{"MMallocing", runtimeMember{"runtime.m", "mallocing"}, false, ""},
	{"MPreemptoff", runtimeMember{"runtime.m", "preemptoff"}, false, ""},
	{"MP", runtimeMember{"runtime.m", "p"}, false, ""},
	{"PStatus", runtimeMember{"runtime.p", "status"}, false, ""},
	{"GPreempt", runtimeMember{"runtime.g", "preempt"}, true, ""},
	{"PPreempt", runtimeMember{"runtime.p", "preempt"}, true, ""},
	{"GSecret", runtimeMember{"runtime.g", "secret"}, true, "runtimesecret"},
}

// goidRuntimeMember is the member target.GoidOffset locates.
var goidRuntimeMember = runtimeMember{"runtime.g", "goid"}

// delveMember is what delve's DWARF reader says of one member.
type delveMember struct {
	offset, size int64
}

// TestDelveRuntimeOffsets checks FindRuntimeOffsets against delve, which decodes the same
// DWARF with a reader of its own, on every fixture build and registry binary that has
// DWARF. A member read from the wrong struct or compile unit, a typedef left wrapped, or a
// member dropped for a size that does not match shows up as a disagreement.
func TestDelveRuntimeOffsets(t *testing.T) {
	checkStateMembersListed(t)

	// Binaries whose DWARF delve finds runtime.g in, and those whose DWARF lacks it.
	var compared, noTypes []string
	tally := func(name string, found bool) {
		if found {
			compared = append(compared, name)
		} else {
			noTypes = append(noTypes, name)
		}
	}

	for _, c := range fixture.Matrix(t) {
		t.Run(c.Name(), func(t *testing.T) {
			bin, v := buildVersion(t, c)
			if has := hasDWARF(t, bin); has == c.Variant.IsStripped() {
				t.Fatalf("%s: DWARF present = %v in a %s build", bin, has, c.Variant)
			}
			if c.Variant.IsStripped() {
				t.Skip("stripped: no DWARF, so delve has no types to compare with")
			}

			tally(c.Name(), compareWithDelve(t, bin, v))
		})
	}

	// The only build whose g.secret is read, which Matrix leaves out.
	secret := fixture.Case{Toolchain: fixture.Current(t), Variant: fixture.Secret}
	t.Run(secret.Name(), func(t *testing.T) {
		bin, v := buildVersion(t, secret)
		ours, err := target.FindRuntimeOffsets(bin, v)
		if err != nil || ours.State == nil || ours.State.GSecret < 0 {
			t.Fatalf("%s: g.secret not found: %v, %+v", secret.Name(), err, ours.State)
		}
		tally(secret.Name(), compareWithDelve(t, bin, v))
	})

	for _, b := range fixture.Registry(t) {
		name := "registry/" + b.ID
		t.Run(name, func(t *testing.T) {
			if !hasDWARF(t, b.Path) {
				t.Skip("no DWARF, so delve has no types to compare with")
			}

			tally(name, compareWithDelve(t, b.Path, registryVersion(t, b.Path)))
		})
	}

	t.Logf("compared with delve: %d binaries: %s", len(compared), strings.Join(compared, " "))
	t.Logf("DWARF without runtime.g for either reader: %s", strings.Join(noTypes, " "))
}

// checkStateMembersListed fails when target.StateOffsets has a member that
// delveStateMembers does not compare, so that a new member cannot go unchecked.
func checkStateMembersListed(t *testing.T) {
	t.Helper()

	listed := map[string]bool{}
	for _, m := range delveStateMembers {
		listed[m.field] = true
	}
	st := reflect.TypeFor[target.StateOffsets]()
	for i := range st.NumField() {
		if name := st.Field(i).Name; !listed[name] {
			t.Errorf("StateOffsets.%s is not compared with delve: add it to delveStateMembers",
				name)
		}
	}
}

// compareWithDelve fails the test for every member whose offset in the binary at path
// FindRuntimeOffsets and delve disagree on, and reports whether delve found runtime.g.
func compareWithDelve(t *testing.T, path string, v symtab.GoVersion) bool {
	t.Helper()

	ours, err := target.FindRuntimeOffsets(path, v)
	if err != nil {
		t.Fatalf("FindRuntimeOffsets: %v", err)
	}
	theirs := delveOffsets(t, path)
	bin := filepath.Base(path)

	compareGoid(t, bin, ours.Goid, theirs)
	_, found := theirs[goidRuntimeMember]
	switch {
	case !ours.StateFromTable && !ours.StateFromCode:
		compareState(t, bin, v, ours.State, theirs)
	case found:
		t.Errorf("%s: state from a fallback although the DWARF describes runtime.g", bin)
	}
	if ours.State != nil {
		t.Logf("goid %d, %+v", ours.Goid.Offset, *ours.State)
	}
	return found
}

// compareGoid checks the goroutine id's offset. When delve finds it in DWARF, ours must
// come from there too: the release table is for binaries whose DWARF lacks runtime.g, such
// as those whose C linker kept only the C compile units.
func compareGoid(t *testing.T, bin string, ours target.GoidOffset,
	theirs map[runtimeMember]delveMember) {
	t.Helper()

	want, ok := theirs[goidRuntimeMember]
	switch {
	case !ok && ours.Source == target.GoidFromDWARF:
		t.Errorf("%s: %v: ours %d from DWARF, delve finds no such member", bin,
			goidRuntimeMember, ours.Offset)
	case !ok:
		t.Logf("%s: neither finds %v in DWARF; ours is %+v", bin, goidRuntimeMember, ours)
	case ours.Source != target.GoidFromDWARF:
		t.Errorf("%s: %v: ours %d from %q, delve's %d from DWARF", bin, goidRuntimeMember,
			ours.Offset, ours.Source, want.offset)
	case int64(ours.Offset) != want.offset:
		t.Errorf("%s: %v: ours %d, delve's %d", bin, goidRuntimeMember, ours.Offset,
			want.offset)
	}
}

// compareState checks each member of the thread state. A nil state is an error when delve
// finds every required member, because the probes then go without a check they could
// have made.
func compareState(t *testing.T, bin string, v symtab.GoVersion, ours *target.StateOffsets,
	theirs map[runtimeMember]delveMember) {
	t.Helper()

	if ours == nil {
		if missing := missingRequired(theirs); len(missing) == 0 {
			t.Errorf("%s: ours unknown (State == nil), delve finds every member: %s", bin,
				describe(theirs))
		}
		return
	}

	fields := reflect.ValueOf(*ours)
	for _, m := range delveStateMembers {
		got := fields.FieldByName(m.field).Int()
		want, ok := theirs[m.member]
		switch {
		case m.experiment != "" && !v.HasExperiment(m.experiment):
			if got != -1 {
				t.Errorf("%s: %s: ours %d in a build without %s, want -1", bin, m.field, got,
					m.experiment)
			}
		case !ok && got == -1 && m.optional:
			// Neither knows it.
		case !ok:
			t.Errorf("%s: %s (%v): ours %d, delve finds no such member", bin, m.field,
				m.member, got)
		case got != want.offset:
			t.Errorf("%s: %s (%v): ours %d, delve's %d", bin, m.field, m.member, got,
				want.offset)
		}
	}
}

// missingRequired returns the required state members delve did not find.
func missingRequired(theirs map[runtimeMember]delveMember) []string {
	var missing []string
	for _, m := range delveStateMembers {
		if _, ok := theirs[m.member]; !ok && !m.optional {
			missing = append(missing, m.member.String())
		}
	}
	return missing
}

// describe lists delve's offset and size of each state member, for a failure message.
func describe(theirs map[runtimeMember]delveMember) string {
	var parts []string
	for _, m := range delveStateMembers {
		if d, ok := theirs[m.member]; ok {
			parts = append(parts, fmt.Sprintf("%v at %d (%d bytes)", m.member, d.offset, d.size))
		}
	}
	return strings.Join(parts, ", ")
}

// delveOffsets loads the binary at path with delve and returns the members of
// delveStateMembers and goidRuntimeMember that delve finds.
func delveOffsets(t *testing.T, path string) map[runtimeMember]delveMember {
	t.Helper()

	bi := loadDelve(t, path)
	members := []runtimeMember{goidRuntimeMember}
	for _, m := range delveStateMembers {
		members = append(members, m.member)
	}

	types := map[string]godwarf.Type{}
	found := make(map[runtimeMember]delveMember, len(members))
	for _, m := range members {
		typ, seen := types[m.typ]
		if !seen {
			var err error
			if typ, err = bi.FindType(m.typ); err != nil {
				t.Logf("delve: find type %s: %v", m.typ, err)
			}
			types[m.typ] = typ
		}
		if typ == nil {
			continue
		}

		d, err := delveMemberAt(typ, m.path)
		if err != nil {
			t.Logf("delve: %v: %v", m, err)
			continue
		}
		found[m] = d
	}
	return found
}

// goarchOf is the GOARCH of each ELF machine the fixtures and registry binaries are for.
var goarchOf = map[elf.Machine]string{elf.EM_X86_64: "amd64", elf.EM_AARCH64: "arm64"}

// loadDelve reads the executable at path into a delve BinaryInfo, closed when the test
// ends.
func loadDelve(t *testing.T, path string) *proc.BinaryInfo {
	t.Helper()

	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	hdr := f.FileHeader
	f.Close()
	goarch, known := goarchOf[hdr.Machine]
	if !known {
		t.Fatalf("%s: no GOARCH for ELF machine %v", path, hdr.Machine)
	}

	// Delve relocates a position-independent executable by the distance from the ELF's entry
	// point to the one it is given, and refuses to guess it. The ELF's own entry leaves the
	// addresses as linked, which type lookups do not use anyway.
	var entry uint64
	if hdr.Type == elf.ET_DYN {
		entry = hdr.Entry
	}

	// Attaching keeps delve from asking debuginfod for missing debug information.
	bi := proc.NewBinaryInfo("linux", goarch, true)
	if err := bi.LoadBinaryInfo(path, entry, nil); err != nil {
		t.Fatalf("delve: load %s: %v", path, err)
	}
	t.Cleanup(func() { bi.Close() })
	if err := bi.Images[0].LoadError(); err != nil {
		t.Fatalf("delve: load %s: %v", path, err)
	}
	return bi
}

// delveMemberAt returns the offset and size of the member at path in the struct typ,
// looking through typedefs at each level, as runtime.g's stack member is a named type.
func delveMemberAt(typ godwarf.Type, path string) (delveMember, error) {
	var d delveMember
	for name := range strings.SplitSeq(path, ".") {
		for td, ok := typ.(*godwarf.TypedefType); ok; td, ok = typ.(*godwarf.TypedefType) {
			typ = td.Type
		}
		st, ok := typ.(*godwarf.StructType)
		if !ok {
			return delveMember{}, fmt.Errorf("%s is a %T, not a struct", typ, typ)
		}

		i := slices.IndexFunc(st.Field, func(f *godwarf.StructField) bool { return f.Name == name })
		if i < 0 {
			return delveMember{}, fmt.Errorf("%s has no member %s", st.StructName, name)
		}
		d.offset += st.Field[i].ByteOffset
		typ = st.Field[i].Type
	}
	d.size = typ.Size()
	return d, nil
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

// registryVersion returns the release that built the registry binary at path. A release
// too old for symtab leaves the version empty, which FindRuntimeOffsets only reads for
// binaries without DWARF.
func registryVersion(t *testing.T, path string) symtab.GoVersion {
	t.Helper()

	f, err := symtab.Open(path)
	if err != nil {
		if !errors.Is(err, symtab.ErrUnsupported) {
			t.Fatalf("symtab: %v", err)
		}
		t.Logf("symtab refuses the binary (%v); its DWARF is compared all the same", err)
		return symtab.GoVersion{}
	}
	defer f.Close()
	return f.Version()
}
