package symtab

import (
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// File is a Go executable opened for decoding.
type File struct {
	img     *image
	tab     *pclntab
	lay     *layout
	version GoVersion

	// text is runtime.text, the base of 1.18+ function entry offsets; zero
	// before 1.18 where entries are absolute.
	text uint64
	// gofunc is moduledata.gofunc, the base of 1.18+ funcdata offsets.
	gofunc uint64
	// moduledata is the link-time address of runtime.firstmoduledata, or 0
	// when the release does not need it (≤1.17).
	moduledata uint64
	// noPointersStackmap is &runtime.no_pointers_stackmap (≤1.17), or 0.
	noPointersStackmap uint64

	funcs []atomicFunc
	lines []atomic.Pointer[lineTables]
	// buckets index the function table by text address; see funcIndex.
	bucketOnce sync.Once
	buckets    []uint32
}

// Open maps the ELF file at path and reads its Go tables.
func Open(path string) (*File, error) {
	img, err := openImage(path)
	if err != nil {
		return nil, err
	}
	f, err := newFile(img)
	if err != nil {
		img.unmap()
		return nil, err
	}
	return f, nil
}

// NewFile decodes an ELF image held in memory; data must not change while the
// File is in use.
func NewFile(data []byte) (*File, error) {
	img, err := newImage(data)
	if err != nil {
		return nil, err
	}
	return newFile(img)
}

// Close releases the mapping. The File must not be used afterwards.
func (f *File) Close() error { return f.img.unmap() }

func newFile(img *image) (*File, error) {
	tab, err := findPclntab(img)
	if err != nil {
		return nil, err
	}
	f := &File{img: img, tab: tab, funcs: make([]atomicFunc, tab.nfunc),
		lines: make([]atomic.Pointer[lineTables], tab.nfunc)}

	f.version, err = readVersion(img, tab.magic)
	if err != nil {
		return nil, err
	}
	f.lay, err = layoutFor(f.version, tab.magic)
	if err != nil {
		return nil, err
	}
	if f.lay.mdGofunc >= 0 {
		if err := f.readModuledata(); err != nil {
			return nil, err
		}
	}
	if f.lay.noPointersStackmap {
		f.noPointersStackmap, err = f.findNoPointersStackmap()
		if err != nil {
			return nil, err
		}
	}
	return f, nil
}

// Version returns the Go release that built the binary.
func (f *File) Version() GoVersion { return f.version }

// Arch returns the binary's architecture.
func (f *File) Arch() Arch { return f.img.arch }

// NumFuncs returns the number of entries in the function table.
func (f *File) NumFuncs() int { return f.tab.nfunc }

// PCQuantum returns the instruction size unit of the pc tables (1 on amd64, 4
// on arm64).
func (f *File) PCQuantum() uint64 { return uint64(f.tab.quantum) }

// TextRange returns [minpc, maxpc): the PCs covered by the function table.
// The runtime's findfunc fails outside it.
func (f *File) TextRange() (lo, hi uint64) {
	return f.entryPC(f.tab.rawEntry(0)), f.entryPC(f.tab.rawEntry(f.tab.nfunc))
}

// PclntabAddr returns the link-time address of the pc/line table header.
func (f *File) PclntabAddr() uint64 { return f.tab.addr }

// Moduledata returns the link-time address of runtime.firstmoduledata, or 0
// when the release does not need it (Go 1.14–1.17).
func (f *File) Moduledata() uint64 { return f.moduledata }

// NoPointersStackmap returns the address of runtime.no_pointers_stackmap for
// Go 1.14–1.17 binaries, and 0 for later releases, which no longer have it.
func (f *File) NoPointersStackmap() uint64 { return f.noPointersStackmap }

// entryPC turns a stored function-table entry into a link-time PC.
func (f *File) entryPC(raw uint64) uint64 {
	if f.lay != nil && f.lay.fn.entryIsOff {
		return f.text + raw
	}
	return raw
}

// readVersion finds the release that built the binary: build info first, then
// the runtime's version string via the symbol table, then a scan of read-only
// data for a go1.N string that agrees with the pclntab magic.
func readVersion(img *image, magic pclntabMagic) (GoVersion, error) {
	if bi, err := buildinfo.Read(bytes.NewReader(img.data)); err == nil && bi.GoVersion != "" {
		v, err := ParseGoVersion(bi.GoVersion)
		if err == nil {
			v.Source = VersionFromBuildInfo
			return v, nil
		}
	}
	if v, ok := versionFromSymbol(img); ok {
		return v, nil
	}
	if v, ok := versionFromScan(img, magic); ok {
		return v, nil
	}
	return GoVersion{}, &UnsupportedError{What: "Go version",
		Found:     "unknown (no build info, runtime.buildVersion or go1.N string)",
		Supported: SupportedRange()}
}

func versionFromSymbol(img *image) (GoVersion, bool) {
	syms, err := img.elf.Symbols()
	if err != nil {
		return GoVersion{}, false
	}
	for _, s := range syms {
		if s.Name != "runtime.buildVersion" {
			continue
		}
		hdr := img.bytesAt(s.Value, 16)
		if hdr == nil {
			return GoVersion{}, false
		}
		ptr, n := binary.LittleEndian.Uint64(hdr), binary.LittleEndian.Uint64(hdr[8:])
		str := img.bytesAt(ptr, min(n, 256))
		if str == nil {
			return GoVersion{}, false
		}
		v, err := ParseGoVersion(string(str))
		if err != nil {
			return GoVersion{}, false
		}
		v.Source = VersionFromSymbol
		return v, true
	}
	return GoVersion{}, false
}

// versionFromScan accepts a go1.N.P string only when every such string in
// read-only data names the same release and the magic agrees with it.
func versionFromScan(img *image, magic pclntabMagic) (GoVersion, bool) {
	first, last, _ := magic.minorRange()
	var found *GoVersion
	for _, s := range img.segments {
		if s.flags&elf.PF_W != 0 {
			continue
		}
		seg := img.data[s.off : s.off+s.filesz]
		for i := 0; ; {
			j := bytes.Index(seg[i:], []byte("go1."))
			if j < 0 {
				break
			}
			i += j + 4
			end := i
			for end < len(seg) && end-i < 8 && (seg[end] == '.' || seg[end] >= '0' &&
				seg[end] <= '9') {
				end++
			}
			v, err := ParseGoVersion(string(seg[i-4 : end]))
			if err != nil || v.Minor < first || v.Minor > last || end-i < 4 {
				continue // "go1.N" without a patch level is too common in text
			}
			if found != nil && found.Raw != v.Raw {
				return GoVersion{}, false
			}
			v.Source = VersionFromScan
			found = &v
		}
	}
	if found == nil {
		return GoVersion{}, false
	}
	return *found, true
}

// moduledataSection is where Go 1.26+ puts runtime.firstmoduledata.
const moduledataSection = ".go.module"

// readModuledata locates runtime.firstmoduledata and reads text and gofunc.
// Its first word points at the pclntab header and its second at funcnametab,
// which identifies it without symbols.
func (f *File) readModuledata() error {
	md, err := f.findModuledata()
	if err != nil {
		return err
	}
	f.moduledata = md

	text, ok1 := f.img.u64(md + uint64(f.lay.mdText))
	gofunc, ok2 := f.img.u64(md + uint64(f.lay.mdGofunc))
	minpc, ok3 := f.img.u64(md + moduledataMinPC)
	if !ok1 || !ok2 || !ok3 {
		return formatErr(f.img.fileOffset(md), "moduledata truncated")
	}
	if f.lay.textFromHeader && f.tab.textStart != 0 && f.tab.textStart != text {
		return formatErr(f.img.fileOffset(md), "moduledata.text %#x disagrees with pclntab %#x",
			text, f.tab.textStart)
	}
	if text+f.tab.rawEntry(0) != minpc {
		return formatErr(f.img.fileOffset(md),
			"moduledata.minpc %#x is not text %#x plus the first entry (layout of %s?)",
			minpc, text, f.version.Raw)
	}
	if f.img.bytesAt(gofunc, 1) == nil {
		return formatErr(f.img.fileOffset(md), "moduledata.gofunc %#x has no file bytes", gofunc)
	}
	f.text, f.gofunc = text, gofunc
	return nil
}

// moduledataMinPC is the offset of moduledata.minpc from Go 1.16 on.
const moduledataMinPC = 160

func (f *File) findModuledata() (uint64, error) {
	if _, addr, _, ok := f.img.sectionData(moduledataSection); ok {
		if w, _ := f.img.u64(addr); w == f.tab.addr {
			return addr, nil
		}
	}

	want := f.tab.addr + f.tab.funcnameOff
	var found uint64
	for _, s := range f.img.segments {
		if s.flags&elf.PF_W == 0 {
			continue
		}
		seg := f.img.data[s.off : s.off+s.filesz]
		start := (8 - s.vaddr%8) % 8
		for i := start; i+16 <= uint64(len(seg)); i += 8 {
			if binary.LittleEndian.Uint64(seg[i:]) != f.tab.addr ||
				binary.LittleEndian.Uint64(seg[i+8:]) != want {
				continue
			}
			if found != 0 {
				return 0, errors.New("locate moduledata: two candidates")
			}
			found = s.vaddr + i
		}
	}
	if found == 0 {
		return 0, fmt.Errorf("locate moduledata: no word points at the pclntab at %#x: %w",
			f.tab.addr, ErrNotGo)
	}
	return found, nil
}

// noPointersStackmapBytes is the content of runtime.no_pointers_stackmap:
// a stackmap with n=2 entries of nbit=0 bits.
var noPointersStackmapBytes = []byte{2, 0, 0, 0, 0, 0, 0, 0}

// noPointersUsers are assembly functions declared NO_LOCAL_POINTERS, so their
// locals funcdata is &runtime.no_pointers_stackmap even without symbols. Every
// Go 1.14–1.17 binary links runtime.call32 (reflectcall dispatches to it, and
// gopanic and cgocall call reflectcall); runtime.call16 joined it in 1.17.
var noPointersUsers = []string{"runtime.call32", "runtime.call16"}

func (f *File) findNoPointersStackmap() (uint64, error) {
	for _, name := range noPointersUsers {
		fn, err := f.LookupFunc(name)
		if err != nil {
			continue
		}
		addr, ok := f.funcdata(fn, funcdataLocalsPointerMaps)
		if !ok {
			continue
		}
		if b := f.img.bytesAt(addr, 8); b == nil || !bytes.Equal(b, noPointersStackmapBytes) {
			return 0, formatErr(f.img.fileOffset(addr),
				"locals map of %s is not an empty stackmap", name)
		}
		return addr, nil
	}
	return 0, fmt.Errorf("locate runtime.no_pointers_stackmap: none of %v has a locals map: %w",
		noPointersUsers, ErrNotFound)
}

// atomicFunc caches one decoded function; Func fills it on first use.
type atomicFunc = atomic.Pointer[Func]

// FileOffset returns the file offset that holds the link-time address addr,
// which is how uprobes name an instruction; ok is false for an address without
// file bytes.
func (f *File) FileOffset(addr uint64) (uint64, bool) {
	off := f.img.fileOffset(addr)
	return uint64(off), off >= 0
}

// Bytes returns n bytes of the file at the link-time address addr (machine
// code, for example), or nil when they are not all in one loadable segment.
// The slice aliases the mapping and must not be modified or kept after Close.
func (f *File) Bytes(addr, n uint64) []byte { return f.img.bytesAt(addr, n) }
