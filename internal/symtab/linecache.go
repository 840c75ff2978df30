package symtab

import (
	"fmt"
	"sort"
)

// packedRun is one run of a decoded pc-value table: the value holds up to
// (not including) entry+end.
type packedRun struct {
	end uint32
	val int32
}

// lineTables are fn's pcfile and pcln tables decoded once. Decoding a table
// walks it from the entry, which costs microseconds in large functions; a
// tracer asks about the same functions again and again, so PCToLine keeps the
// runs and binary-searches them. Memory is bounded by the tables themselves
// (8 bytes per run) and is only spent on functions actually asked about.
type lineTables struct {
	file, line []packedRun
}

func (f *File) decodePacked(fn *Func, tb Table) ([]packedRun, error) {
	it, ok := f.iter(fn, tb)
	if !ok {
		return []packedRun{{end: uint32(fn.Size()), val: -1}}, nil
	}
	var runs []packedRun
	for it.next() {
		if n := len(runs); n > 0 && runs[n-1].val == it.val {
			runs[n-1].end = uint32(it.pc - fn.Entry)
			continue
		}
		runs = append(runs, packedRun{end: uint32(it.pc - fn.Entry), val: it.val})
		if len(runs) > 1<<20 {
			return nil, formatErr(it.tableAt, "%s of %s has too many runs", tb, fn.Name)
		}
	}
	return runs, it.err
}

func (f *File) lineTablesOf(fn *Func) (*lineTables, error) {
	if lt := f.lines[fn.index].Load(); lt != nil {
		return lt, nil
	}
	file, err := f.decodePacked(fn, TableFile)
	if err != nil {
		return nil, err
	}
	line, err := f.decodePacked(fn, TableLine)
	if err != nil {
		return nil, err
	}
	lt := &lineTables{file: file, line: line}
	f.lines[fn.index].Store(lt)
	return lt, nil
}

func packedValue(runs []packedRun, fn *Func, pc uint64) (int32, error) {
	off := uint32(pc - fn.Entry)
	i := sort.Search(len(runs), func(i int) bool { return runs[i].end > off })
	if i == len(runs) {
		return -1, fmt.Errorf("%s+%#x: %w", fn.Name, off, ErrPadding)
	}
	return runs[i].val, nil
}
