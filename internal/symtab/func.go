package symtab

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sort"
	"strings"
)

// FuncFlag is runtime._func.flag (abi.FuncFlag); zero before Go 1.17.
type FuncFlag uint8

// The flag bits. TopFrame and SPWrite exist from Go 1.17, Asm from Go 1.18.
const (
	FuncFlagTopFrame FuncFlag = 1 << iota // the function is the top of every stack it is on
	FuncFlagSPWrite                       // the function writes SP other than by adjusting it
	FuncFlagAsm                           // the function is written in assembly

	allFlags = FuncFlagTopFrame | FuncFlagSPWrite | FuncFlagAsm
)

// String returns the set bits as "TOPFRAME|SPWRITE|ASM", or "" for none.
func (fl FuncFlag) String() string {
	var parts []string
	for _, b := range []struct {
		bit  FuncFlag
		name string
	}{{FuncFlagTopFrame, "TOPFRAME"}, {FuncFlagSPWrite, "SPWRITE"}, {FuncFlagAsm, "ASM"}} {
		if fl&b.bit != 0 {
			parts = append(parts, b.name)
		}
	}
	if rest := fl &^ allFlags; rest != 0 {
		parts = append(parts, fmt.Sprintf("%#x", uint8(rest)))
	}
	return strings.Join(parts, "|")
}

// Func is one entry of the function table.
type Func struct {
	Name       string   // symbol name, e.g. "main.(*T).run.func1"
	Entry, End uint64   // [Entry, End) in link-time addresses; End includes alignment padding
	FuncID     uint8    // the runtime's funcID for special functions, 0 for ordinary ones
	Flag       FuncFlag // _func.flag bits the release defines
	Args       int32    // size of the arguments and results, in bytes
	StartLine  int32    // line of the func keyword or TEXT directive; 0 before Go 1.20

	index              int
	off                uint64 // of the _func in the pclntab data
	pcsp, pcfile, pcln uint32
	npcdata, nfuncdata uint32
	cuOffset           uint32
}

// Index returns the function's position in the function table.
func (fn *Func) Index() int { return fn.index }

// Size returns End-Entry.
func (fn *Func) Size() uint64 { return fn.End - fn.Entry }

// FuncAt returns the function containing pc, or an error matching ErrNotFound
// when pc is outside every function, as the runtime's findfunc would fail.
func (f *File) FuncAt(pc uint64) (*Func, error) {
	i, err := f.funcIndex(pc)
	if err != nil {
		return nil, err
	}
	return f.Func(i)
}

// funcBucketShift sets the text bytes one bucket of the PC index covers (1 KiB:
// a handful of functions, so the search inside a bucket stays in one cache line
// or two of the function table).
const funcBucketShift = 10

// maxFuncBuckets caps the index at 1 GiB of text, far above any real binary,
// so a corrupt table cannot make it allocate without bound.
const maxFuncBuckets = 1 << 20

// funcIndex returns the index of the function holding pc. Like the runtime's
// findfunctab it first maps pc to a bucket that names the first candidate
// function, then searches only the few entries the bucket spans.
func (f *File) funcIndex(pc uint64) (int, error) {
	lo, hi := f.TextRange()
	if pc < lo || pc >= hi {
		return 0, fmt.Errorf("pc %#x outside Go text [%#x, %#x): %w", pc, lo, hi, ErrNotFound)
	}
	f.bucketOnce.Do(f.buildBuckets)

	first, last := 0, f.tab.nfunc-1
	if b := (pc - lo) >> funcBucketShift; f.buckets != nil {
		first, last = int(f.buckets[b]), int(f.buckets[b+1])
	}
	// The answer is the last function starting at or before pc.
	n := sort.Search(last-first+1, func(k int) bool {
		return f.entryPC(f.tab.rawEntry(first+k)) > pc
	})
	i := first + n - 1
	if i < 0 {
		return 0, fmt.Errorf("pc %#x before the first function: %w", pc, ErrNotFound)
	}
	return i, nil
}

// buildBuckets records, for each bucket of text, the function holding its
// first byte; one pass over the function table.
func (f *File) buildBuckets() {
	lo, hi := f.TextRange()
	if (hi-lo)>>funcBucketShift > maxFuncBuckets {
		return // implausible text size: funcIndex searches the whole table
	}
	nb := int((hi-lo)>>funcBucketShift) + 2
	f.buckets = make([]uint32, nb)
	i := 0
	for b := range f.buckets {
		start := lo + uint64(b)<<funcBucketShift
		for i+1 < f.tab.nfunc && f.entryPC(f.tab.rawEntry(i+1)) <= start {
			i++
		}
		f.buckets[b] = uint32(i)
	}
}

// Func returns function i of the function table, decoding it once.
func (f *File) Func(i int) (*Func, error) {
	if i < 0 || i >= f.tab.nfunc {
		return nil, fmt.Errorf("function index %d of %d: %w", i, f.tab.nfunc, ErrNotFound)
	}
	if fn := f.funcs[i].Load(); fn != nil {
		return fn, nil
	}
	fn, err := f.decodeFunc(i)
	if err != nil {
		return nil, err
	}
	f.funcs[i].CompareAndSwap(nil, fn)
	return f.funcs[i].Load(), nil
}

func (f *File) decodeFunc(i int) (*Func, error) {
	t, l := f.tab, &f.lay.fn
	off, err := t.funcOff(i)
	if err != nil {
		return nil, err
	}
	d := t.data[off:]
	if len(d) < l.pcdata {
		return nil, formatErr(t.off+int64(off), "function %d: _func past the table", i)
	}
	u32 := func(at int) uint32 { return binary.LittleEndian.Uint32(d[at:]) }

	fn := &Func{index: i, off: off}
	fn.Entry = f.entryPC(t.rawEntry(i))
	fn.End = f.entryPC(t.rawEntry(i + 1))

	var stored uint64
	if l.entryIsOff {
		stored = f.text + uint64(u32(l.entry))
	} else {
		stored = binary.LittleEndian.Uint64(d[l.entry:])
	}
	if stored != fn.Entry {
		return nil, formatErr(t.off+int64(off), "function %d: _func entry %#x, table says %#x",
			i, stored, fn.Entry)
	}

	name, ok := t.funcName(int32(u32(l.nameOff)))
	if !ok {
		return nil, formatErr(t.off+int64(off), "function %d: bad name offset", i)
	}
	fn.Name = name
	fn.Args = int32(u32(l.args))
	fn.pcsp, fn.pcfile, fn.pcln = u32(l.pcsp), u32(l.pcsp+4), u32(l.pcsp+8)
	fn.npcdata = u32(l.pcsp + 12)
	if l.cuOffset >= 0 {
		fn.cuOffset = u32(l.cuOffset)
	}
	if l.startLine >= 0 {
		fn.StartLine = int32(u32(l.startLine))
	}
	fn.FuncID = d[l.funcID]
	if l.flag >= 0 {
		fn.Flag = FuncFlag(d[l.flag]) & f.lay.knownFlags
	}
	fn.nfuncdata = uint32(d[l.nfuncdata])

	// pcdata and funcdata must lie inside the table.
	tail := uint64(l.pcdata) + 4*uint64(fn.npcdata) + 4*uint64(fn.nfuncdata)
	if f.lay.funcdataAbsolute {
		tail += 4 + 4*uint64(fn.nfuncdata) // alignment, and 8-byte entries
	}
	if fn.npcdata > 1<<10 || tail > uint64(len(d)) {
		return nil, formatErr(t.off+int64(off), "function %d: %d pcdata past the table",
			i, fn.npcdata)
	}
	return fn, nil
}

// LookupFunc returns the first function with the given name. It compares
// the name bytes in place, without decoding or allocating, so a few lookups
// in a large binary cost a couple of milliseconds and no memory.
func (f *File) LookupFunc(name string) (*Func, error) {
	fns, err := f.lookupFuncs(name, 1)
	if err != nil {
		return nil, err
	}
	return fns[0], nil
}

// LookupFuncs returns every function with the given name: an assembly
// function and its ABI wrapper share one, for example.
func (f *File) LookupFuncs(name string) ([]*Func, error) { return f.lookupFuncs(name, -1) }

// lookupFuncs returns up to max functions called name (all when max < 0),
// and ErrNotFound when there is none.
func (f *File) lookupFuncs(name string, max int) ([]*Func, error) {
	t, l := f.tab, &f.lay.fn
	want := []byte(name)
	var fns []*Func
	for i := 0; i < t.nfunc && len(fns) != max; i++ {
		off, err := t.funcOff(i)
		if err != nil || off+uint64(l.nameOff)+4 > uint64(len(t.data)) {
			continue
		}
		nameOff := int32(binary.LittleEndian.Uint32(t.data[off+uint64(l.nameOff):]))
		if nameOff < 0 {
			continue
		}
		p := t.funcnameOff + uint64(nameOff)
		if p+uint64(len(want)) >= uint64(len(t.data)) || t.data[p+uint64(len(want))] != 0 ||
			!bytes.Equal(t.data[p:p+uint64(len(want))], want) {
			continue
		}
		fn, err := f.Func(i)
		if err != nil {
			return nil, err
		}
		fns = append(fns, fn)
	}
	if len(fns) == 0 {
		return nil, fmt.Errorf("function %q: %w", name, ErrNotFound)
	}
	return fns, nil
}

// funcdata returns the address of funcdata[i] of fn, ok=false when nil.
func (f *File) funcdata(fn *Func, i int) (uint64, bool) {
	if uint32(i) >= fn.nfuncdata {
		return 0, false
	}
	d := f.tab.data
	p := fn.off + uint64(f.lay.fn.pcdata) + 4*uint64(fn.npcdata)

	if f.lay.funcdataAbsolute {
		// Pointer-sized entries start pointer-aligned in memory.
		if (f.tab.addr+p)%8 != 0 {
			p += 4
		}
		p += 8 * uint64(i)
		if p+8 > uint64(len(d)) {
			return 0, false
		}
		addr := binary.LittleEndian.Uint64(d[p:])
		return addr, addr != 0
	}

	p += 4 * uint64(i)
	if p+4 > uint64(len(d)) {
		return 0, false
	}
	off := binary.LittleEndian.Uint32(d[p:])
	if off == funcdataNil {
		return 0, false
	}
	return f.gofunc + uint64(off), true
}

// LocalsMap says what a function's locals pointer map (FUNCDATA 1) is, the
// input to the runtime's "is this assembly" rule.
type LocalsMap uint8

// The states of the locals pointer map.
const (
	// LocalsNil: no map, which the runtime takes to mean assembly.
	LocalsNil LocalsMap = iota
	// LocalsNoPointersStackmap: assembly declared NO_LOCAL_POINTERS. Up to Go
	// 1.17 the map is runtime.no_pointers_stackmap itself; from 1.18 that
	// symbol is gone and an assembly function (FuncFlagAsm) that carries a
	// map can only have got it from NO_LOCAL_POINTERS.
	LocalsNoPointersStackmap
	// LocalsPresent: a map the compiler emitted.
	LocalsPresent
)

func (m LocalsMap) String() string {
	switch m {
	case LocalsNil:
		return "nil"
	case LocalsNoPointersStackmap:
		return "no_pointers_stackmap"
	case LocalsPresent:
		return "present"
	}
	return fmt.Sprintf("LocalsMap(%d)", uint8(m))
}

// LocalsMap returns the state of fn's locals pointer map.
func (f *File) LocalsMap(fn *Func) LocalsMap {
	addr, ok := f.funcdata(fn, funcdataLocalsPointerMaps)
	switch {
	case !ok:
		return LocalsNil
	case f.lay.noPointersStackmap && addr == f.noPointersStackmap:
		return LocalsNoPointersStackmap
	case !f.lay.noPointersStackmap && fn.Flag&FuncFlagAsm != 0 && f.isEmptyStackmap(addr):
		// From 1.18 the assembler gives each NO_LOCAL_POINTERS function its own
		// copy of the empty stackmap (cmd/internal/obj/plist.go), so identity
		// no longer tells; the content does.
		return LocalsNoPointersStackmap
	}
	return LocalsPresent
}

// isEmptyStackmap reports whether addr holds the stackmap NO_LOCAL_POINTERS
// declares: two bitmaps of zero bits.
func (f *File) isEmptyStackmap(addr uint64) bool {
	return bytes.Equal(f.img.bytesAt(addr, 8), noPointersStackmapBytes)
}
