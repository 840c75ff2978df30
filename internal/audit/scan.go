package audit

import (
	"fmt"
	"slices"
	"strings"

	"github.com/preempttrace/preempttrace/internal/safepoint"
	"github.com/preempttrace/preempttrace/internal/symtab"
)

// FuncRefusal is one function where preemption is refused at some PCs.
type FuncRefusal struct {
	Func         string
	Entry        uint64
	Size         uint64 // bytes of code covered by the function's tables
	RefusedBytes uint64
	// Reason is the reason covering the most refused bytes.
	Reason safepoint.Reason
	// Reasons gives refused bytes per reason.
	Reasons map[safepoint.Reason]uint64
}

// ScanReport is the result of Scan.
type ScanReport struct {
	Version   symtab.GoVersion
	Arch      symtab.Arch
	Functions int // entries in the function table
	Refusing  []FuncRefusal

	// FuncsByReason counts functions refusing for a reason at some PC;
	// BytesByReason sums their refused bytes.
	FuncsByReason map[safepoint.Reason]int
	BytesByReason map[safepoint.Reason]uint64

	// Undecodable counts functions whose tables could not be read; FirstError
	// describes the first of them.
	Undecodable int
	FirstError  error
}

// Scan classifies every PC of every function with the PC-only rules.
func Scan(f *symtab.File, rules *safepoint.Rules) *ScanReport {
	rep := &ScanReport{
		Version:       f.Version(),
		Arch:          f.Arch(),
		Functions:     f.NumFuncs(),
		FuncsByReason: make(map[safepoint.Reason]int),
		BytesByReason: make(map[safepoint.Reason]uint64),
	}
	for i := 0; i < f.NumFuncs(); i++ {
		fr, err := scanFunc(f, rules, i)
		if err != nil {
			rep.Undecodable++
			if rep.FirstError == nil {
				rep.FirstError = err
			}
			continue
		}
		if fr.RefusedBytes == 0 {
			continue
		}
		for r, n := range fr.Reasons {
			rep.FuncsByReason[r]++
			rep.BytesByReason[r] += n
		}
		rep.Refusing = append(rep.Refusing, fr)
	}

	slices.SortStableFunc(rep.Refusing, func(a, b FuncRefusal) int {
		if a.RefusedBytes != b.RefusedBytes {
			if a.RefusedBytes > b.RefusedBytes {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Func, b.Func)
	})
	return rep
}

// scanFunc classifies fn run by run. The decision at a PC depends on the
// unsafe-point value and, through the innermost inlined name, on the inline
// index; everything else is per function. So the PCs of one run of both
// tables share a verdict.
func scanFunc(f *symtab.File, rules *safepoint.Rules, i int) (FuncRefusal, error) {
	fn, err := f.Func(i)
	if err != nil {
		return FuncRefusal{}, err
	}
	fr := FuncRefusal{Func: fn.Name, Entry: fn.Entry, Reasons: map[safepoint.Reason]uint64{}}

	ups, err := f.Runs(fn, symtab.TableUnsafePoint)
	if err != nil {
		return fr, fmt.Errorf("%s: %w", fn.Name, err)
	}
	inls, err := f.Runs(fn, symtab.TableInlTreeIndex)
	if err != nil {
		return fr, fmt.Errorf("%s: %w", fn.Name, err)
	}
	// pcsp covers exactly the code; the alignment padding after it never runs.
	sps, err := f.Runs(fn, symtab.TableSP)
	if err != nil {
		return fr, fmt.Errorf("%s: %w", fn.Name, err)
	}
	limit := fn.End
	if len(sps) > 0 {
		limit = sps[len(sps)-1].End
	}

	names := map[int32]string{}
	base := safepoint.PC{
		InGoCode:  true,
		Entry:     fn.Entry,
		LocalsMap: f.LocalsMap(fn),
		Asm:       fn.Flag&symtab.FuncFlagAsm != 0,
	}

	var segErr error
	end := mergeRuns(ups, inls, limit, func(start, end uint64, up symtab.Run, ix int32) bool {
		name, ok := names[ix]
		if !ok {
			if name, segErr = f.InlinedName(fn, ix); segErr != nil {
				return false
			}
			names[ix] = name
		}
		pc := base
		pc.PC, pc.UnsafePoint, pc.UnsafePointStart, pc.Innermost = start, up.Value, up.Start, name
		v := safepoint.Classify(rules, pc, safepoint.State{})
		if !v.Accepted() {
			fr.Reasons[v.Reason] += end - start
			fr.RefusedBytes += end - start
		}
		return true
	})
	if segErr != nil {
		return fr, fmt.Errorf("%s: %w", fn.Name, segErr)
	}
	fr.Size = end - fn.Entry

	var most uint64
	for _, r := range safepoint.Reasons() {
		if n := fr.Reasons[r]; n > most {
			fr.Reason, most = r, n
		}
	}
	return fr, nil
}

// mergeRuns walks the intersection of two run lists that start at the same
// PC, up to limit, and calls fn for each piece with the unsafe-point run and
// inline index in force there. It returns the end of the last piece.
func mergeRuns(ups, inls []symtab.Run, limit uint64,
	fn func(start, end uint64, up symtab.Run, ix int32) bool) uint64 {

	i, j := 0, 0
	var pc uint64
	if len(ups) > 0 {
		pc = ups[0].Start
	}
	for i < len(ups) && j < len(inls) && pc < limit {
		end := min(ups[i].End, inls[j].End, limit)
		if end > pc && !fn(pc, end, ups[i], inls[j].Value) {
			return pc
		}
		pc = end
		if ups[i].End == end {
			i++
		}
		if inls[j].End == end {
			j++
		}
	}
	return pc
}
