package symtab

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Arch is a CPU architecture this package decodes.
type Arch string

// The supported architectures, named as GOARCH names them.
const (
	ArchAMD64 Arch = "amd64"
	ArchARM64 Arch = "arm64"
)

// segment is one PT_LOAD program header: where its bytes sit in the file and
// in the link-time address space.
type segment struct {
	vaddr, memsz uint64
	off, filesz  uint64
	flags        elf.ProgFlag
}

// image is an ELF file mapped into memory, with address translation.
type image struct {
	data     []byte
	unmap    func() error
	elf      *elf.File
	segments []segment
	arch     Arch
}

// openImage maps path read-only.
func openImage(path string) (*image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()

	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	size := st.Size()
	if size < 64 {
		return nil, fmt.Errorf("%s: %d bytes is too small for an ELF file", path, size)
	}
	if int64(int(size)) != size {
		return nil, fmt.Errorf("%s: file too large to map", path)
	}

	data, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_PRIVATE)
	if err != nil {
		return nil, fmt.Errorf("mmap %s: %w", path, err)
	}
	img, err := newImage(data)
	if err != nil {
		unix.Munmap(data)
		return nil, err
	}
	img.unmap = func() error { return unix.Munmap(data) }
	return img, nil
}

// newImage parses the ELF headers of data, which stays referenced.
func newImage(data []byte) (*image, error) {
	ef, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("not a readable ELF file: %w", err)
	}
	if ef.Class != elf.ELFCLASS64 || ef.Data != elf.ELFDATA2LSB {
		return nil, &UnsupportedError{What: "ELF class", Found: ef.Class.String() + " " +
			ef.Data.String(), Supported: "64-bit little-endian"}
	}

	img := &image{data: data, elf: ef, unmap: func() error { return nil }}
	switch ef.Machine {
	case elf.EM_X86_64:
		img.arch = ArchAMD64
	case elf.EM_AARCH64:
		img.arch = ArchARM64
	default:
		return nil, &UnsupportedError{What: "architecture", Found: ef.Machine.String(),
			Supported: "amd64, arm64"}
	}

	for _, p := range ef.Progs {
		if p.Type != elf.PT_LOAD {
			continue
		}
		if p.Off > uint64(len(data)) || p.Filesz > uint64(len(data))-p.Off {
			return nil, formatErr(int64(p.Off), "PT_LOAD segment extends past the end of file")
		}
		img.segments = append(img.segments, segment{
			vaddr: p.Vaddr, memsz: p.Memsz, off: p.Off, filesz: p.Filesz, flags: p.Flags,
		})
	}
	return img, nil
}

// bytesAt returns the file bytes that back [addr, addr+n) in the link-time
// address space, or nil when they are not all in one segment's file image.
func (img *image) bytesAt(addr, n uint64) []byte {
	for i := range img.segments {
		s := &img.segments[i]
		if addr < s.vaddr || addr-s.vaddr >= s.filesz {
			continue
		}
		rel := addr - s.vaddr
		if n > s.filesz-rel {
			return nil
		}
		return img.data[s.off+rel : s.off+rel+n]
	}
	return nil
}

// tailAt returns the file bytes from addr to the end of its segment's file image.
func (img *image) tailAt(addr uint64) []byte {
	for i := range img.segments {
		s := &img.segments[i]
		if addr >= s.vaddr && addr-s.vaddr < s.filesz {
			rel := addr - s.vaddr
			return img.data[s.off+rel : s.off+s.filesz]
		}
	}
	return nil
}

// fileOffset returns the file offset of a link-time address, or -1.
func (img *image) fileOffset(addr uint64) int64 {
	for i := range img.segments {
		s := &img.segments[i]
		if addr >= s.vaddr && addr-s.vaddr < s.filesz {
			return int64(s.off + addr - s.vaddr)
		}
	}
	return -1
}

// segmentOf returns the segment whose file image holds file offset off.
func (img *image) segmentOf(off uint64) *segment {
	for i := range img.segments {
		s := &img.segments[i]
		if off >= s.off && off-s.off < s.filesz {
			return s
		}
	}
	return nil
}

// sectionData returns the file bytes and address of a named section with file
// contents, or ok=false.
func (img *image) sectionData(name string) (data []byte, addr uint64, off int64, ok bool) {
	s := img.elf.Section(name)
	if s == nil || s.Type == elf.SHT_NOBITS {
		return nil, 0, 0, false
	}
	if s.Offset > uint64(len(img.data)) || s.Size > uint64(len(img.data))-s.Offset {
		return nil, 0, 0, false
	}
	return img.data[s.Offset : s.Offset+s.Size], s.Addr, int64(s.Offset), true
}

// u64 reads a little-endian word at the link-time address, ok=false when the
// address has no file bytes.
func (img *image) u64(addr uint64) (uint64, bool) {
	b := img.bytesAt(addr, 8)
	if b == nil {
		return 0, false
	}
	return binary.LittleEndian.Uint64(b), true
}
