package symtab

import (
	"debug/elf"
	"encoding/binary"
	"fmt"
)

// pclntab is a located pc/line table and its header fields. Offsets such as
// funcnameOff are byte offsets into data.
type pclntab struct {
	data    []byte // from the header to the end of its section or segment
	addr    uint64 // link-time address of the header
	off     int64  // file offset of the header
	magic   pclntabMagic
	quantum uint32 // minLC: instruction size unit of pc deltas

	nfunc                                             int
	nfiles                                            int
	textStart                                         uint64 // header word 3, 1.18–1.25 only
	funcnameOff, cuOff, filetabOff, pctabOff, pclnOff uint64

	// functab: nfunc+1 entries of entrySize bytes each at pclnOff (the end
	// entry holds only the end PC).
	entrySize int
	// filetab12 is the ≤1.15 file table offset (array of uint32 name offsets).
	filetab12 uint64
}

// pclntab header size and limits used to reject garbage in a scan.
const (
	pclntabHeaderMin = 8 + 8*8
	pclntabHeader116 = 8 + 7*8 // the smallest header with sub-table offsets
	maxFuncs         = 1 << 24
)

// candidateSections are where linkers put the table when it has a section of
// its own; relro naming is used by internal-link PIE builds before Go 1.26.
var candidateSections = []string{".gopclntab", ".data.rel.ro.gopclntab"}

// findPclntab locates the table by section name, else by scanning loadable
// segments for a header that passes every sanity check.
func findPclntab(img *image) (*pclntab, error) {
	for _, name := range candidateSections {
		data, addr, off, ok := img.sectionData(name)
		if !ok {
			continue
		}
		t, err := parsePclntab(data, addr, off)
		if err != nil {
			return nil, fmt.Errorf("section %s: %w", name, err)
		}
		return t, nil
	}
	return scanPclntab(img)
}

// scanPclntab looks for the table when external linking of a PIE merged it into
// .data.rel.ro (Go ≤1.25) or the section headers are gone. A binary can hold
// more than one valid-looking table (one Go program embedding another); the
// binary's own is the one its moduledata points at from a writable segment.
func scanPclntab(img *image) (*pclntab, error) {
	var found []*pclntab
	for _, s := range img.segments {
		seg := img.data[s.off : s.off+s.filesz]
		for i := 0; i+pclntabHeaderMin <= len(seg); i += 4 {
			if seg[i] < 0xf0 || seg[i+1] != 0xff || seg[i+2] != 0xff || seg[i+3] != 0xff {
				continue
			}
			t, err := parsePclntab(seg[i:], s.vaddr+uint64(i), int64(s.off)+int64(i))
			if err == nil {
				found = append(found, t)
			}
		}
	}

	switch len(found) {
	case 0:
		return nil, fmt.Errorf("no pclntab found: %w", ErrNotGo)
	case 1:
		return found[0], nil
	}
	var owned []*pclntab
	for _, t := range found {
		if img.pointedAt(t.addr) {
			owned = append(owned, t)
		}
	}
	if len(owned) != 1 {
		return nil, fmt.Errorf("%d pclntab candidates, %d referenced by module data: %w",
			len(found), len(owned), ErrNotGo)
	}
	return owned[0], nil
}

// pointedAt reports whether an aligned word of a writable segment holds addr,
// as moduledata's first word holds its pclntab's address.
func (img *image) pointedAt(addr uint64) bool {
	for _, s := range img.segments {
		if s.flags&elf.PF_W == 0 {
			continue
		}
		seg := img.data[s.off : s.off+s.filesz]
		for i := (8 - s.vaddr%8) % 8; i+8 <= uint64(len(seg)); i += 8 {
			if binary.LittleEndian.Uint64(seg[i:]) == addr {
				return true
			}
		}
	}
	return false
}

// parsePclntab reads and checks the header at data[0].
func parsePclntab(data []byte, addr uint64, off int64) (*pclntab, error) {
	if len(data) < pclntabHeaderMin {
		return nil, formatErr(off, "pclntab too short (%d bytes)", len(data))
	}
	t := &pclntab{data: data, addr: addr, off: off}
	t.magic = pclntabMagic(binary.LittleEndian.Uint32(data))
	if _, _, ok := t.magic.minorRange(); !ok {
		return nil, &UnsupportedError{What: "pclntab magic", Found: t.magic.String(),
			Supported: "0xfffffffb, 0xfffffffa, 0xfffffff0, 0xfffffff1"}
	}
	if data[4] != 0 || data[5] != 0 {
		return nil, formatErr(off+4, "pclntab header padding is not zero")
	}
	t.quantum = uint32(data[6])
	if t.quantum != 1 && t.quantum != 2 && t.quantum != 4 {
		return nil, formatErr(off+6, "pclntab pc quantum %d", t.quantum)
	}
	if data[7] != 8 {
		return nil, &UnsupportedError{What: "pointer size", Found: fmt.Sprint(data[7]),
			Supported: "8"}
	}

	word := func(i int) uint64 { return binary.LittleEndian.Uint64(data[8+8*i:]) }
	switch t.magic {
	case magic12:
		t.nfunc = int(min(word(0), maxFuncs+1))
		t.pclnOff = 16
		t.entrySize = 16
	case magic116:
		t.nfunc, t.nfiles = int(min(word(0), maxFuncs+1)), int(min(word(1), maxFuncs+1))
		t.funcnameOff, t.cuOff, t.filetabOff = word(2), word(3), word(4)
		t.pctabOff, t.pclnOff = word(5), word(6)
		t.entrySize = 16
	default:
		t.nfunc, t.nfiles = int(min(word(0), maxFuncs+1)), int(min(word(1), maxFuncs+1))
		t.textStart = word(2)
		t.funcnameOff, t.cuOff, t.filetabOff = word(3), word(4), word(5)
		t.pctabOff, t.pclnOff = word(6), word(7)
		t.entrySize = 8
	}
	if err := t.check(); err != nil {
		return nil, err
	}
	return t, nil
}

// check rejects headers whose counts and offsets cannot describe a table that
// fits in data; every later read still bounds-checks on its own.
func (t *pclntab) check() error {
	if t.nfunc <= 0 || t.nfunc > maxFuncs {
		return formatErr(t.off+8, "implausible function count %d", t.nfunc)
	}
	size := uint64(len(t.data))
	if t.magic != magic12 {
		offs := []uint64{t.funcnameOff, t.cuOff, t.filetabOff, t.pctabOff, t.pclnOff}
		for i, o := range offs {
			if o < pclntabHeader116 || o >= size || (i > 0 && o < offs[i-1]) {
				return formatErr(t.off, "sub-table offsets %v out of order or bounds", offs)
			}
		}
	}
	ftabEnd := t.pclnOff + uint64(t.nfunc+1)*uint64(t.entrySize)
	if ftabEnd > size {
		return formatErr(t.off+int64(t.pclnOff), "function table of %d entries past the end",
			t.nfunc)
	}

	// Entries must increase: a random match of the magic in a scan fails here.
	prev := uint64(0)
	for i := 0; i <= t.nfunc && i < 64; i++ {
		e := t.rawEntry(i)
		if e < prev {
			return formatErr(t.off+int64(t.pclnOff), "function table not sorted at entry %d", i)
		}
		prev = e
	}

	if t.magic == magic12 {
		p := ftabEnd - uint64(t.entrySize) + 8
		if p+4 > size {
			return formatErr(t.off, "no file table offset after the function table")
		}
		t.filetab12 = uint64(binary.LittleEndian.Uint32(t.data[p:]))
		if t.filetab12 >= size {
			return formatErr(t.off+int64(p), "file table offset %#x out of bounds", t.filetab12)
		}
	}
	return nil
}

// rawEntry returns entry i of the function table as stored: an absolute PC
// (≤1.17) or an offset from runtime.text (1.18+). Entry nfunc is the end PC.
func (t *pclntab) rawEntry(i int) uint64 {
	p := t.pclnOff + uint64(i)*uint64(t.entrySize)
	if t.entrySize == 8 {
		return uint64(binary.LittleEndian.Uint32(t.data[p:]))
	}
	return binary.LittleEndian.Uint64(t.data[p:])
}

// funcOff returns the offset in data of function i's _func.
func (t *pclntab) funcOff(i int) (uint64, error) {
	p := t.pclnOff + uint64(i)*uint64(t.entrySize)
	var fo uint64
	if t.entrySize == 8 {
		fo = uint64(binary.LittleEndian.Uint32(t.data[p+4:]))
	} else {
		fo = binary.LittleEndian.Uint64(t.data[p+8:])
	}

	// ≤1.15 offsets count from the table start, later ones from the functab.
	base := t.pclnOff
	if t.magic == magic12 {
		base = 0
	}
	if fo >= uint64(len(t.data)) || base+fo >= uint64(len(t.data)) {
		return 0, formatErr(t.off+int64(p), "function %d: _func offset %#x out of bounds", i, fo)
	}
	return base + fo, nil
}

// cstring returns the NUL-terminated string at data[off:].
func (t *pclntab) cstring(off uint64) (string, bool) {
	if off >= uint64(len(t.data)) {
		return "", false
	}
	b := t.data[off:]
	for i, c := range b {
		if c == 0 {
			return string(b[:i]), true
		}
		if i > 1<<16 {
			break
		}
	}
	return "", false
}

// funcName returns the name at a _func.nameOff or inlinedCall.nameOff.
func (t *pclntab) funcName(nameOff int32) (string, bool) {
	if nameOff < 0 {
		return "", false
	}
	base := t.funcnameOff // 1.16+: funcnametab; ≤1.15: the table start (0)
	return t.cstring(base + uint64(nameOff))
}

// fileName returns the file of file number fileno in the compilation unit cu.
func (t *pclntab) fileName(cu uint32, fileno int32) (string, bool) {
	if fileno < 0 {
		return "", false
	}
	if t.magic == magic12 {
		p := t.filetab12 + 4*uint64(fileno)
		if p+4 > uint64(len(t.data)) {
			return "", false
		}
		return t.cstring(uint64(binary.LittleEndian.Uint32(t.data[p:])))
	}

	p := t.cuOff + 4*(uint64(cu)+uint64(fileno))
	if p+4 > t.filetabOff {
		return "", false
	}
	fo := binary.LittleEndian.Uint32(t.data[p:])
	if fo == ^uint32(0) {
		return "", false
	}
	return t.cstring(t.filetabOff + uint64(fo))
}
