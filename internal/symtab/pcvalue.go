package symtab

import "fmt"

// Table names one pc-value table of a function: pcsp, pcfile, pcln, or a
// PCDATA index (0 and up).
type Table int

// The tables the decoder reads.
const (
	TableSP            Table = -3 // pcsp: SP offset from the entry SP
	TableFile          Table = -2 // pcfile: file number in the compilation unit
	TableLine          Table = -1 // pcln: line number
	TableUnsafePoint   Table = pcdataUnsafePoint
	TableStackMapIndex Table = 1
	TableInlTreeIndex  Table = pcdataInlTreeIndex
)

func (tb Table) String() string {
	switch tb {
	case TableSP:
		return "pcsp"
	case TableFile:
		return "pcfile"
	case TableLine:
		return "pcln"
	}
	return fmt.Sprintf("pcdata[%d]", int(tb))
}

// tableOffset returns the offset of fn's table tb relative to the pc-table
// base, 0 meaning "no table".
func (f *File) tableOffset(fn *Func, tb Table) uint32 {
	switch tb {
	case TableSP:
		return fn.pcsp
	case TableFile:
		return fn.pcfile
	case TableLine:
		return fn.pcln
	}
	if tb < 0 || uint32(tb) >= fn.npcdata {
		return 0
	}
	p := fn.off + uint64(f.lay.fn.pcdata) + 4*uint64(tb)
	return le32(f.tab.data, p)
}

// Run is a range of PCs over which a table has one value.
type Run struct {
	Start, End uint64 // [Start, End) in link-time addresses
	Value      int32  // the table's value over the run
}

// pcIter steps through one pc-value table as the runtime's step does: pairs
// of zig-zag value delta and pc delta (times the pc quantum), starting at value
// -1 and the function entry; a zero value delta ends the table, except while
// the pc has not yet moved from the entry.
type pcIter struct {
	p       []byte
	quantum uint64
	pc      uint64
	val     int32
	entry   uint64
	err     error
	tableAt int64 // file offset, for errors
}

func (f *File) iter(fn *Func, tb Table) (it pcIter, ok bool) {
	off := f.tableOffset(fn, tb)
	if off == 0 {
		return it, false
	}
	base := f.tab.pctabOff + uint64(off)
	it = pcIter{quantum: uint64(f.tab.quantum), pc: fn.Entry, val: -1, entry: fn.Entry,
		tableAt: f.tab.off + int64(base)}
	if base >= uint64(len(f.tab.data)) {
		it.err = formatErr(it.tableAt, "%s table of %s out of bounds", tb, fn.Name)
		return it, true
	}
	it.p = f.tab.data[base:]
	return it, true
}

// next advances one pair; it returns false at the end of the table or on a
// decoding error (it.err).
func (it *pcIter) next() bool {
	if it.err != nil || len(it.p) == 0 {
		return false
	}
	uv, n := uvarint(it.p)
	if n <= 0 {
		it.err = formatErr(it.tableAt, "truncated value delta")
		return false
	}
	if uv == 0 && it.pc != it.entry {
		return false
	}
	it.val += int32(-(uv & 1) ^ (uv >> 1))
	it.p = it.p[n:]

	pd, n := uvarint(it.p)
	if n <= 0 {
		it.err = formatErr(it.tableAt, "truncated pc delta")
		return false
	}
	it.p = it.p[n:]
	it.pc += uint64(pd) * it.quantum
	return true
}

// PCValue returns the value of table tb at pc and the first PC of the run that
// holds it. A function without the table yields -1, as in the runtime.
func (f *File) PCValue(fn *Func, tb Table, pc uint64) (val int32, start uint64, err error) {
	it, ok := f.iter(fn, tb)
	if !ok {
		return -1, 0, nil
	}
	prev := fn.Entry
	for it.next() {
		if pc < it.pc {
			return it.val, prev, nil
		}
		prev = it.pc
	}
	if it.err != nil {
		return -1, 0, it.err
	}
	return -1, 0, fmt.Errorf("%s+%#x: %w", fn.Name, pc-fn.Entry, ErrPadding)
}

// Runs returns table tb of fn as consecutive runs from the entry. A function
// without the table yields one run of -1 over the whole function.
func (f *File) Runs(fn *Func, tb Table) ([]Run, error) {
	it, ok := f.iter(fn, tb)
	if !ok {
		return []Run{{Start: fn.Entry, End: fn.End, Value: -1}}, nil
	}
	var runs []Run
	prev := fn.Entry
	for it.next() {
		if it.pc > prev {
			runs = append(runs, Run{Start: prev, End: it.pc, Value: it.val})
		}
		prev = it.pc
		if len(runs) > 1<<20 {
			return nil, formatErr(it.tableAt, "%s of %s has too many runs", tb, fn.Name)
		}
	}
	return runs, it.err
}

// MaxSPDelta returns the largest SP offset of fn (its frame size at the
// deepest point), as the runtime's funcMaxSPDelta computes it.
func (f *File) MaxSPDelta(fn *Func) (int32, error) {
	it, ok := f.iter(fn, TableSP)
	if !ok {
		return 0, nil
	}
	var max int32
	for it.next() {
		if it.val > max {
			max = it.val
		}
	}
	return max, it.err
}

// uvarint decodes an unsigned LEB128 value of at most 32 bits.
func uvarint(p []byte) (uint32, int) {
	var v uint32
	for i := 0; i < len(p) && i < 5; i++ {
		b := p[i]
		v |= uint32(b&0x7f) << (7 * i)
		if b&0x80 == 0 {
			return v, i + 1
		}
	}
	return 0, -1
}

func le32(b []byte, p uint64) uint32 {
	if p+4 > uint64(len(b)) {
		return 0
	}
	return uint32(b[p]) | uint32(b[p+1])<<8 | uint32(b[p+2])<<16 | uint32(b[p+3])<<24
}
