package target

import (
	"debug/dwarf"
	"debug/elf"
	"strings"

	"github.com/preempttrace/preempttrace/internal/symtab"
)

// StateOffsets are the byte offsets of the runtime's struct members that hold the thread
// state isAsyncSafePoint checks before the PC (runtime/preempt.go): gp.m.curg == gp,
// canPreemptM(gp.m), and the room left above gp.stack.lo.
type StateOffsets struct {
	// GM, GStackLo and GAtomicstatus are in runtime.g; GAtomicstatus is -1 when unknown,
	// and then only the releases whose canPreemptM does not read it are fully covered.
	GM, GStackLo, GAtomicstatus int32

	// MCurg, MLocks, MMallocing, MPreemptoff and MP are in runtime.m.
	MCurg, MLocks, MMallocing, MPreemptoff, MP int32

	// PStatus is in runtime.p.
	PStatus int32

	// GPreempt and PPreempt are the preemption requests of runtime.g and runtime.p, -1
	// when unknown. With GAtomicstatus they tell whether the goroutine still wanted to be
	// preempted (wantAsyncPreempt), which a backend that cannot see the runtime's
	// decision needs to know.
	GPreempt, PPreempt int32

	// GSecret is g.secret, which isAsyncSafePoint checks only in builds with
	// GOEXPERIMENT=runtimesecret (Go 1.26+); -1 in every other build, where reading it
	// would be wasted.
	GSecret int32
}

// secretExperiment is the GOEXPERIMENT that compiles the g.secret check into
// isAsyncSafePoint (runtime/preempt.go, Go 1.26+).
const secretExperiment = "runtimesecret"

// stateByRelease is StateOffsets by Go minor release for amd64 builds with that release's
// default GOEXPERIMENT settings, for binaries without DWARF. Every row was read from the
// DWARF of a binary of that release and is checked against it again by TestStateTable:
// the fixtures of every installed toolchain (1.14-1.27) and registry binaries with DWARF.
// A release without such a binary here gets no row, and its stripped builds no state from
// the table: runtime.p in particular changes size with nearly every release, and a guessed
// offset would give plausible wrong answers.
var stateByRelease = map[int]StateOffsets{
	14: {GM: 48, GStackLo: 0, GAtomicstatus: 144, MCurg: 192, MLocks: 264, MMallocing: 240,
		MPreemptoff: 248, MP: 208, PStatus: 4, GPreempt: 177, PPreempt: 10144},
	15: {GM: 48, GStackLo: 0, GAtomicstatus: 144, MCurg: 192, MLocks: 264, MMallocing: 240,
		MPreemptoff: 248, MP: 208, PStatus: 4, GPreempt: 177, PPreempt: 10144},
	16: {GM: 48, GStackLo: 0, GAtomicstatus: 144, MCurg: 192, MLocks: 264, MMallocing: 240,
		MPreemptoff: 248, MP: 208, PStatus: 4, GPreempt: 177, PPreempt: 9992},
	17: {GM: 48, GStackLo: 0, GAtomicstatus: 144, MCurg: 192, MLocks: 264, MMallocing: 240,
		MPreemptoff: 248, MP: 208, PStatus: 4, GPreempt: 177, PPreempt: 9992},
	18: {GM: 48, GStackLo: 0, GAtomicstatus: 144, MCurg: 192, MLocks: 264, MMallocing: 240,
		MPreemptoff: 248, MP: 208, PStatus: 4, GPreempt: 177, PPreempt: 8880},
	19: {GM: 48, GStackLo: 0, GAtomicstatus: 144, MCurg: 192, MLocks: 264, MMallocing: 240,
		MPreemptoff: 248, MP: 208, PStatus: 4, GPreempt: 177, PPreempt: 8904},
	20: {GM: 48, GStackLo: 0, GAtomicstatus: 144, MCurg: 192, MLocks: 264, MMallocing: 240,
		MPreemptoff: 248, MP: 208, PStatus: 4, GPreempt: 177, PPreempt: 8896},
	21: {GM: 48, GStackLo: 0, GAtomicstatus: 144, MCurg: 192, MLocks: 264, MMallocing: 240,
		MPreemptoff: 248, MP: 208, PStatus: 4, GPreempt: 177, PPreempt: 8904},
	22: {GM: 48, GStackLo: 0, GAtomicstatus: 144, MCurg: 192, MLocks: 264, MMallocing: 240,
		MPreemptoff: 248, MP: 208, PStatus: 4, GPreempt: 177, PPreempt: 8936},
	23: {GM: 48, GStackLo: 0, GAtomicstatus: 152, MCurg: 192, MLocks: 264, MMallocing: 240,
		MPreemptoff: 248, MP: 208, PStatus: 4, GPreempt: 185, PPreempt: 8928},
	24: {GM: 48, GStackLo: 0, GAtomicstatus: 152, MCurg: 192, MLocks: 264, MMallocing: 240,
		MPreemptoff: 248, MP: 208, PStatus: 4, GPreempt: 185, PPreempt: 8936},
	25: {GM: 48, GStackLo: 0, GAtomicstatus: 144, MCurg: 184, MLocks: 256, MMallocing: 232,
		MPreemptoff: 240, MP: 200, PStatus: 4, GPreempt: 177, PPreempt: 9496},
	26: {GM: 48, GStackLo: 0, GAtomicstatus: 144, MCurg: 184, MLocks: 264, MMallocing: 240,
		MPreemptoff: 248, MP: 208, PStatus: 4, GPreempt: 177, PPreempt: 13776},
	27: {GM: 48, GStackLo: 0, GAtomicstatus: 144, MCurg: 184, MLocks: 264, MMallocing: 240,
		MPreemptoff: 248, MP: 208, PStatus: 4, GPreempt: 177, PPreempt: 13776},
}

// stateFromTable returns the release's row for an amd64 build with default experiments,
// and nil otherwise.
func stateFromTable(v symtab.GoVersion, machine elf.Machine) *StateOffsets {
	row, ok := stateByRelease[v.Minor]
	if !ok || len(v.Experiments) != 0 || machine != elf.EM_X86_64 {
		return nil
	}
	row.GSecret = -1 // default experiments: the check is not compiled in
	return &row
}

// stateMember names one member the probe reads and its size in bytes.
type stateMember struct {
	typ, path string
	size      int64
	dst       func(*StateOffsets) *int32
}

// stateMembers are the members of StateOffsets, all required but g.atomicstatus. The sizes
// are those of the runtime's types on 64-bit targets: a pointer or uintptr (puintptr for
// m.p), an int32 or uint32 (atomic.Uint32 from Go 1.20), and a string of two words.
var stateMembers = []stateMember{
	{"runtime.g", "m", 8, func(o *StateOffsets) *int32 { return &o.GM }},
	{"runtime.g", "stack.lo", 8, func(o *StateOffsets) *int32 { return &o.GStackLo }},
	{"runtime.m", "curg", 8, func(o *StateOffsets) *int32 { return &o.MCurg }},
	{"runtime.m", "locks", 4, func(o *StateOffsets) *int32 { return &o.MLocks }},
	{"runtime.m", "mallocing", 4, func(o *StateOffsets) *int32 { return &o.MMallocing }},
	{"runtime.m", "preemptoff", 16, func(o *StateOffsets) *int32 { return &o.MPreemptoff }},
	{"runtime.m", "p", 8, func(o *StateOffsets) *int32 { return &o.MP }},
	{"runtime.p", "status", 4, func(o *StateOffsets) *int32 { return &o.PStatus }},
}

// optionalMembers are read when the DWARF has them and are -1 otherwise: g.atomicstatus,
// which canPreemptM reads of m.curg from Go 1.26, and the preemption requests.
var optionalMembers = []stateMember{
	{"runtime.g", "atomicstatus", 4, func(o *StateOffsets) *int32 { return &o.GAtomicstatus }},
	{"runtime.g", "preempt", 1, func(o *StateOffsets) *int32 { return &o.GPreempt }},
	{"runtime.p", "preempt", 1, func(o *StateOffsets) *int32 { return &o.PPreempt }},
}

// stateOffsets returns the offsets of stateMembers in types, or nil when one is missing or
// not of the expected size. g.secret is read only for a build whose isAsyncSafePoint
// checks it.
func stateOffsets(types map[string]*dwarf.StructType, v symtab.GoVersion) *StateOffsets {
	o := &StateOffsets{GAtomicstatus: -1, GPreempt: -1, PPreempt: -1, GSecret: -1}
	for _, m := range stateMembers {
		off, ok := memberOffset(types[m.typ], m.path, m.size)
		if !ok {
			return nil
		}
		*m.dst(o) = off
	}

	for _, m := range optionalMembers {
		if off, ok := memberOffset(types[m.typ], m.path, m.size); ok {
			*m.dst(o) = off
		}
	}
	if v.HasExperiment(secretExperiment) {
		if off, ok := memberOffset(types["runtime.g"], "secret", 4); ok {
			o.GSecret = off
		}
	}
	return o
}

// memberOffset returns the offset of the size-byte member at path ("stack.lo" is the lo
// member of the stack member) in st.
func memberOffset(st *dwarf.StructType, path string, size int64) (int32, bool) {
	var off int64
	for {
		name, rest, nested := strings.Cut(path, ".")
		f, ok := member(st, name)
		if !ok || f.ByteOffset < 0 {
			return 0, false
		}
		off += f.ByteOffset
		if !nested {
			return int32(off), f.Type.Size() == size
		}
		t := f.Type
		for td, ok := t.(*dwarf.TypedefType); ok; td, ok = t.(*dwarf.TypedefType) {
			t = td.Type
		}
		if st, ok = t.(*dwarf.StructType); !ok {
			return 0, false
		}
		path = rest
	}
}
