package symtab

import (
	"debug/elf"
	"os"
	"sync/atomic"
	"testing"
)

// selfPclntab returns the pclntab of the running test binary, a real table of
// the current toolchain that needs no build step.
func selfPclntab(tb testing.TB) []byte {
	tb.Helper()
	exe, err := os.Executable()
	if err != nil {
		tb.Fatal(err)
	}
	ef, err := elf.Open(exe)
	if err != nil {
		tb.Fatal(err)
	}
	defer ef.Close()
	s := ef.Section(".gopclntab")
	if s == nil {
		tb.Fatal("test binary has no .gopclntab")
	}
	data, err := s.Data()
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

// exercise decodes what it can of f and must never panic or loop.
func exercise(f *File) {
	lo, hi := f.TextRange()
	n := min(f.NumFuncs(), 64)
	for i := 0; i < n; i++ {
		fn, err := f.Func(i)
		if err != nil {
			continue
		}
		f.LocalsMap(fn)
		f.Runs(fn, TableUnsafePoint)
		f.Runs(fn, TableInlTreeIndex)
		f.MaxSPDelta(fn)
		for _, pc := range []uint64{fn.Entry, fn.Entry + fn.Size()/2, fn.End - 1} {
			f.Lookup(pc)
			f.InnermostFunc(fn, pc)
		}
	}
	f.Lookup(lo)
	f.Lookup(hi - 1)
	f.LookupFunc("runtime.main")
}

// FuzzPclntab feeds arbitrary bytes to the table decoder under every release
// layout whose magic matches, as if the bytes were a binary's pclntab with
// its funcdata in the same segment.
func FuzzPclntab(f *testing.F) {
	real := selfPclntab(f)
	f.Add(real[:min(len(real), 1<<16)])
	f.Add(real[:min(len(real), 4096)])
	f.Add([]byte{0xfb, 0xff, 0xff, 0xff, 0, 0, 1, 8})
	f.Add([]byte{0xf1, 0xff, 0xff, 0xff, 0, 0, 4, 8, 1})

	const addr = 0x400000
	f.Fuzz(func(t *testing.T, data []byte) {
		tab, err := parsePclntab(data, addr, 0)
		if err != nil {
			return
		}
		img := &image{data: data, arch: ArchAMD64,
			segments: []segment{{vaddr: addr, memsz: uint64(len(data)), filesz: uint64(len(data))}}}
		for i := range layouts {
			lay := &layouts[i]
			if lay.magic != tab.magic {
				continue
			}
			file := &File{img: img, tab: tab, lay: lay, text: 0x1000, gofunc: addr,
				noPointersStackmap: addr + 8}
			file.funcs = make([]atomicFunc, tab.nfunc)
			file.lines = make([]atomic.Pointer[lineTables], tab.nfunc)
			exercise(file)
		}
	})
}

// FuzzNewFile feeds arbitrary bytes to the whole open path: ELF headers,
// build info, pclntab search, moduledata search.
func FuzzNewFile(f *testing.F) {
	exe, err := os.Executable()
	if err != nil {
		f.Fatal(err)
	}
	head, err := os.ReadFile(exe)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(head[:4096])
	f.Add(head[:64])
	f.Add([]byte("\x7fELF\x02\x01\x01"))

	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := NewFile(data)
		if err != nil {
			return
		}
		exercise(file)
	})
}

// TestNewFileSelf opens the test binary itself, built by the toolchain running
// the tests, through the same path a user's binary takes.
func TestNewFileSelf(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f, err := Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.LookupFunc("testing.tRunner"); err != nil {
		t.Error(err)
	}
	exercise(f)
}
