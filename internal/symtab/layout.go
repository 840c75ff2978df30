package symtab

import "fmt"

// pclntabMagic is the first word of the pc/line table; it names the table's
// generation and lets the byte order be detected.
type pclntabMagic uint32

const (
	// magic12 is written by Go 1.2 through 1.15.
	magic12 pclntabMagic = 0xfffffffb
	// magic116 is written by Go 1.16 and 1.17 (split sub-tables).
	magic116 pclntabMagic = 0xfffffffa
	// magic118 is written by Go 1.18 and 1.19 (entries relative to runtime.text).
	magic118 pclntabMagic = 0xfffffff0
	// magic120 is written by Go 1.20 and later (symbol names with ':').
	magic120 pclntabMagic = 0xfffffff1
)

func (m pclntabMagic) String() string {
	switch m {
	case magic12:
		return "0xfffffffb (go1.2–go1.15)"
	case magic116:
		return "0xfffffffa (go1.16–go1.17)"
	case magic118:
		return "0xfffffff0 (go1.18–go1.19)"
	case magic120:
		return "0xfffffff1 (go1.20+)"
	}
	return fmt.Sprintf("%#x", uint32(m))
}

// minorRange returns the Go 1.x releases that write magic m.
func (m pclntabMagic) minorRange() (first, last int, ok bool) {
	switch m {
	case magic12:
		return 2, 15, true
	case magic116:
		return 16, 17, true
	case magic118:
		return 18, 19, true
	case magic120:
		return 20, MaxGoMinor, true
	}
	return 0, 0, false
}

// funcLayout gives the byte offsets of runtime._func fields (runtime2.go).
// A field the release lacks is -1.
type funcLayout struct {
	entry       int // uintptr entry (≤1.17) or uint32 entryOff (1.18+)
	entryIsOff  bool
	nameOff     int // int32
	args        int // int32
	deferreturn int // uint32
	pcsp        int // uint32, and pcfile, pcln, npcdata follow at +4, +8, +12
	cuOffset    int // uint32, -1 before 1.16
	startLine   int // int32, -1 before 1.20
	funcID      int // uint8
	flag        int // uint8, -1 before 1.17
	nfuncdata   int // uint8
	pcdata      int // start of [npcdata]uint32
}

// inlLayout gives the byte offsets of runtime.inlinedCall fields.
type inlLayout struct {
	size     int
	funcID   int // uint8
	nameOff  int // int32
	parentPC int // int32, offset from the outer function's entry
}

// layout is everything that differs between the Go releases of one row.
type layout struct {
	first, last int // Go 1.x releases covered
	magic       pclntabMagic

	fn  funcLayout
	inl inlLayout

	// funcdataInlTree is FUNCDATA_InlTree (funcdata.h / internal/abi).
	funcdataInlTree int

	// funcdataAbsolute: funcdata are pointer-sized absolute addresses,
	// pointer-aligned after pcdata (≤1.17); otherwise uint32 offsets from
	// moduledata.gofunc with ^0 meaning nil.
	funcdataAbsolute bool

	// textFromHeader: pcHeader word 3 holds runtime.text (1.18–1.25; 1.26
	// writes 0 there and only moduledata.text has it).
	textFromHeader bool

	// knownFlags are the _func.flag bits the release defines (abi.FuncFlag).
	knownFlags FuncFlag

	// Byte offsets in runtime.moduledata of text and gofunc (-1 where the
	// release has no such field). Only needed from 1.18, where entries and
	// funcdata are relative to them.
	mdText, mdGofunc int

	// noPointersStackmap: NO_LOCAL_POINTERS assembly points its locals
	// funcdata at runtime.no_pointers_stackmap (≤1.17); from 1.18 the symbol
	// is gone and FuncFlagAsm marks assembly instead.
	noPointersStackmap bool
}

var (
	func114 = funcLayout{entry: 0, nameOff: 8, args: 12, deferreturn: 16, pcsp: 20,
		cuOffset: -1, startLine: -1, funcID: 36, flag: -1, nfuncdata: 39, pcdata: 40}
	func116 = funcLayout{entry: 0, nameOff: 8, args: 12, deferreturn: 16, pcsp: 20,
		cuOffset: 36, startLine: -1, funcID: 40, flag: -1, nfuncdata: 43, pcdata: 44}
	func117 = funcLayout{entry: 0, nameOff: 8, args: 12, deferreturn: 16, pcsp: 20,
		cuOffset: 36, startLine: -1, funcID: 40, flag: 41, nfuncdata: 43, pcdata: 44}
	func118 = funcLayout{entry: 0, entryIsOff: true, nameOff: 4, args: 8, deferreturn: 12,
		pcsp: 16, cuOffset: 32, startLine: -1, funcID: 36, flag: 37, nfuncdata: 39, pcdata: 40}
	func120 = funcLayout{entry: 0, entryIsOff: true, nameOff: 4, args: 8, deferreturn: 12,
		pcsp: 16, cuOffset: 32, startLine: 36, funcID: 40, flag: 41, nfuncdata: 43, pcdata: 44}

	// inl112 is Go 1.12–1.19: parent int16, funcID, pad, file, line, func_, parentPc.
	inl112 = inlLayout{size: 20, funcID: 2, nameOff: 12, parentPC: 16}
	// inl120 is Go 1.20+: funcID, pad[3], nameOff, parentPc, startLine.
	inl120 = inlLayout{size: 16, funcID: 0, nameOff: 4, parentPC: 8}
)

// layouts is the one table of release differences, ordered by release.
var layouts = []layout{
	{first: 14, last: 15, magic: magic12, fn: func114, inl: inl112, funcdataInlTree: 4,
		funcdataAbsolute: true, mdText: -1, mdGofunc: -1, noPointersStackmap: true},
	{first: 16, last: 16, magic: magic116, fn: func116, inl: inl112, funcdataInlTree: 3,
		funcdataAbsolute: true, mdText: -1, mdGofunc: -1, noPointersStackmap: true},
	{first: 17, last: 17, magic: magic116, fn: func117, inl: inl112, funcdataInlTree: 3,
		funcdataAbsolute: true, knownFlags: FuncFlagTopFrame | FuncFlagSPWrite,
		mdText: -1, mdGofunc: -1, noPointersStackmap: true},
	{first: 18, last: 19, magic: magic118, fn: func118, inl: inl112, funcdataInlTree: 3,
		textFromHeader: true, knownFlags: allFlags, mdText: 176, mdGofunc: 304},
	{first: 20, last: 25, magic: magic120, fn: func120, inl: inl120, funcdataInlTree: 3,
		textFromHeader: true, knownFlags: allFlags, mdText: 176, mdGofunc: 320},
	{first: 26, last: 26, magic: magic120, fn: func120, inl: inl120, funcdataInlTree: 3,
		knownFlags: allFlags, mdText: 176, mdGofunc: 320},
	// Go 1.27 inserts typedesclen, itaboffset and itabsize before gofunc.
	{first: 27, last: 27, magic: magic120, fn: func120, inl: inl120, funcdataInlTree: 3,
		knownFlags: allFlags, mdText: 176, mdGofunc: 344},
}

// layoutFor returns the layout of release v and checks that the table's magic
// agrees with it.
func layoutFor(v GoVersion, magic pclntabMagic) (*layout, error) {
	minor := v.Minor
	if v.Raw == "" {
		v.Raw = fmt.Sprintf("go1.%d", minor)
	}
	if minor < MinGoMinor {
		return nil, &UnsupportedError{
			What:      "Go version",
			Found:     v.Raw,
			Supported: SupportedRange() + "; asynchronous preemption starts in Go 1.14",
		}
	}
	for i := range layouts {
		l := &layouts[i]
		if minor < l.first || minor > l.last {
			continue
		}
		if l.magic != magic {
			return nil, fmt.Errorf("%s binary has pclntab magic %v, want %v: %w",
				v.Raw, magic, l.magic, ErrUnsupported)
		}
		return l, nil
	}
	return nil, &UnsupportedError{
		What:      "Go version",
		Found:     v.Raw,
		Supported: SupportedRange(),
	}
}

// Function-table constants shared by every supported release.
const (
	// pcdataUnsafePoint is PCDATA index 0: UnsafePoint from 1.15, RegMapIndex
	// (with -2 meaning unsafe) in 1.14.
	pcdataUnsafePoint = 0
	// pcdataInlTreeIndex is PCDATA_InlTreeIndex.
	pcdataInlTreeIndex = 2
	// funcdataLocalsPointerMaps is FUNCDATA_LocalsPointerMaps.
	funcdataLocalsPointerMaps = 1
	// funcdataNil marks an absent funcdata entry from 1.18 (^uint32(0)).
	funcdataNil = 0xffffffff
)
