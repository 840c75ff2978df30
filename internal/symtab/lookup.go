package symtab

import (
	"encoding/binary"
	"fmt"
)

// Frame is one logical call frame at a PC: an inlined call or the function
// that physically holds the code.
type Frame struct {
	Func   string // function name
	File   string // source file, "?" when the table has none
	Line   int    // line executing in this frame
	FuncID uint8  // the function's funcID
}

// maxInlineDepth bounds the walk up an inline tree, so that a corrupt tree
// whose parent PCs loop cannot hang the decoder.
const maxInlineDepth = 256

// Frames returns the logical frames at pc inside fn, innermost first, ending
// with fn itself; without inlining at pc there is exactly one. Each frame's
// position is the source line executing in it (for outer frames, the call).
func (f *File) Frames(fn *Func, pc uint64) ([]Frame, error) {
	tree, hasTree := f.funcdata(fn, f.lay.funcdataInlTree)
	var frames []Frame

	for depth := 0; ; depth++ {
		file, line, err := f.position(fn, pc)
		if err != nil {
			return nil, err
		}
		ix := int32(-1)
		if hasTree {
			if ix, _, err = f.PCValue(fn, TableInlTreeIndex, pc); err != nil {
				return nil, err
			}
		}
		if ix < 0 || depth >= maxInlineDepth {
			return append(frames, Frame{Func: fn.Name, File: file, Line: line,
				FuncID: fn.FuncID}), nil
		}

		call, err := f.inlinedCall(tree, ix)
		if err != nil {
			return nil, err
		}
		frames = append(frames, Frame{Func: call.name, File: file, Line: line,
			FuncID: call.funcID})
		pc = fn.Entry + uint64(call.parentPC)
		if pc < fn.Entry || pc >= fn.End {
			return nil, formatErr(f.img.fileOffset(tree), "inline parent pc %#x outside %s",
				pc, fn.Name)
		}
	}
}

type inlinedCall struct {
	name     string
	funcID   uint8
	parentPC int32
}

func (f *File) inlinedCall(tree uint64, ix int32) (inlinedCall, error) {
	l := &f.lay.inl
	addr := tree + uint64(ix)*uint64(l.size)
	b := f.img.bytesAt(addr, uint64(l.size))
	if b == nil {
		return inlinedCall{}, formatErr(f.img.fileOffset(tree),
			"inline tree entry %d at %#x has no file bytes", ix, addr)
	}
	nameOff := int32(binary.LittleEndian.Uint32(b[l.nameOff:]))
	name, ok := f.tab.funcName(nameOff)
	if !ok {
		return inlinedCall{}, formatErr(f.img.fileOffset(addr),
			"inline tree entry %d: bad name offset %d", ix, nameOff)
	}
	return inlinedCall{
		name:     name,
		funcID:   b[l.funcID],
		parentPC: int32(binary.LittleEndian.Uint32(b[l.parentPC:])),
	}, nil
}

// position returns the innermost file:line at pc, as debug/gosym's PCToLine
// and the runtime's funcline do.
func (f *File) position(fn *Func, pc uint64) (string, int, error) {
	lt, err := f.lineTablesOf(fn)
	if err != nil {
		return "", 0, err
	}
	file, line, err := lt.at(fn, pc)
	return file, int(line), err
}

// InnermostFunc returns the name of the innermost inlined function at pc, or
// fn's own name: the name the runtime's runtime/reflect rule tests.
func (f *File) InnermostFunc(fn *Func, pc uint64) (string, error) {
	tree, ok := f.funcdata(fn, f.lay.funcdataInlTree)
	if !ok {
		return fn.Name, nil
	}
	ix, _, err := f.PCValue(fn, TableInlTreeIndex, pc)
	if err != nil || ix < 0 {
		return fn.Name, err
	}
	call, err := f.inlinedCall(tree, ix)
	return call.name, err
}

// InlinedName returns the function name of inline tree entry ix of fn, or
// fn's own name when ix is negative.
func (f *File) InlinedName(fn *Func, ix int32) (string, error) {
	if ix < 0 {
		return fn.Name, nil
	}
	tree, ok := f.funcdata(fn, f.lay.funcdataInlTree)
	if !ok {
		return "", formatErr(-1, "%s has inline index %d but no inline tree", fn.Name, ix)
	}
	call, err := f.inlinedCall(tree, ix)
	return call.name, err
}

// PCInfo is everything the tables say about one PC.
type PCInfo struct {
	PC   uint64 // the link-time address asked about
	Func *Func  // the function that physically holds PC

	// File and Line are the innermost source position, as debug/gosym gives it.
	File string
	Line int

	// Frames are the logical frames, innermost first, ending with Func.
	Frames []Frame

	// UnsafePoint is PCDATA 0 at PC (-1 when absent) and UnsafePointStart the
	// first PC of its run, where a restartable sequence resumes.
	UnsafePoint      int32
	UnsafePointStart uint64

	LocalsMap  LocalsMap // the function's locals pointer map
	SPDelta    int32     // SP offset from the entry SP at PC
	MaxSPDelta int32     // largest SP offset in the function
}

// Lookup decodes everything about pc. It fails with ErrNotFound when pc is
// outside Go code.
func (f *File) Lookup(pc uint64) (*PCInfo, error) {
	fn, err := f.FuncAt(pc)
	if err != nil {
		return nil, err
	}
	info := &PCInfo{PC: pc, Func: fn, LocalsMap: f.LocalsMap(fn)}

	if info.Frames, err = f.Frames(fn, pc); err != nil {
		return nil, fmt.Errorf("pc %#x: %w", pc, err)
	}
	info.File, info.Line = info.Frames[0].File, info.Frames[0].Line

	info.UnsafePoint, info.UnsafePointStart, err = f.PCValue(fn, TableUnsafePoint, pc)
	if err != nil {
		return nil, fmt.Errorf("pc %#x: %w", pc, err)
	}
	if info.SPDelta, _, err = f.PCValue(fn, TableSP, pc); err != nil {
		return nil, fmt.Errorf("pc %#x: %w", pc, err)
	}
	lt, err := f.lineTablesOf(fn)
	if err != nil {
		return nil, fmt.Errorf("pc %#x: %w", pc, err)
	}
	info.MaxSPDelta = lt.maxSP
	return info, nil
}

// Innermost returns the innermost logical frame at the PC.
func (p *PCInfo) Innermost() Frame { return p.Frames[0] }

// PCToLine returns the function and innermost file:line at pc: the answer of
// debug/gosym's Table.PCToLine, without the inline and funcdata work of Lookup.
func (f *File) PCToLine(pc uint64) (file string, line int, fn *Func, err error) {
	if fn, err = f.FuncAt(pc); err != nil {
		return "", 0, nil, err
	}
	file, line, err = f.position(fn, pc)
	return file, line, fn, err
}
