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
	// ends[i] is the end (offset from the entry) of run i, which merges
	// pcfile and pcln so one search answers both. The search touches only
	// ends, kept apart from the values so that more of it shares cache lines.
	ends []uint32
	// lines[i] and files[fileIdx[i]] are the position during run i.
	lines   []int32
	fileIdx []uint32
	// files holds the names the runs refer to, so a lookup allocates nothing.
	files []string
	// maxSP is the function's largest SP offset (MaxSPDelta), which every
	// Lookup reports and which needs a walk of the whole pcsp table.
	maxSP int32
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
	maxSP, err := f.MaxSPDelta(fn)
	if err != nil {
		return nil, err
	}
	lt := &lineTables{maxSP: maxSP}
	names := map[int32]uint32{}
	for i, j := 0, 0; i < len(file) && j < len(line); {
		fileIdx, ok := names[file[i].val]
		if !ok {
			name, ok := f.tab.fileName(fn.cuOffset, file[i].val)
			if !ok {
				name = "?"
			}
			fileIdx = uint32(len(lt.files))
			lt.files = append(lt.files, name)
			names[file[i].val] = fileIdx
		}
		end := min(file[i].end, line[j].end)
		lt.ends = append(lt.ends, end)
		lt.lines = append(lt.lines, line[j].val)
		lt.fileIdx = append(lt.fileIdx, fileIdx)
		if file[i].end == end {
			i++
		}
		if line[j].end == end {
			j++
		}
	}
	f.lines[fn.index].Store(lt)
	return lt, nil
}

// at returns the file and line at pc.
func (lt *lineTables) at(fn *Func, pc uint64) (string, int32, error) {
	off := uint32(pc - fn.Entry)
	i := sort.Search(len(lt.ends), func(i int) bool { return lt.ends[i] > off })
	if i == len(lt.ends) {
		return "", 0, fmt.Errorf("%s+%#x: %w", fn.Name, off, ErrPadding)
	}
	return lt.files[lt.fileIdx[i]], lt.lines[i], nil
}
