// Package target finds what a running process is: the executable behind a
// PID and where it is loaded. It reads /proc only and never touches the
// process itself.
package target

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// ErrNoProcess reports a PID with no live process.
var ErrNoProcess = errors.New("no such process")

// Process is a running program as /proc shows it.
type Process struct {
	PID int
	// Exe opens the executable through /proc/PID/exe, which works across
	// mount namespaces and for deleted files.
	Exe string
	// ExeName is the path the process was started from, for display.
	ExeName string
}

// Find checks that pid is alive and names its executable.
func Find(pid int) (*Process, error) {
	if pid <= 0 {
		return nil, fmt.Errorf("pid %d: %w", pid, ErrNoProcess)
	}
	exe := fmt.Sprintf("/proc/%d/exe", pid)
	name, err := os.Readlink(exe)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("pid %d: %w", pid, ErrNoProcess)
	case errors.Is(err, os.ErrPermission):
		return nil, fmt.Errorf("pid %d: reading /proc/%d/exe needs CAP_SYS_PTRACE or the same "+
			"user: %w", pid, pid, err)
	case err != nil:
		return nil, fmt.Errorf("pid %d: %w", pid, err)
	}
	return &Process{PID: pid, Exe: exe, ExeName: name}, nil
}

// Image identifies the program a process runs: its executable file and where the
// kernel mapped it. Two equal Images are the same code at the same addresses, so a decoder
// built for one describes the other.
type Image struct {
	Dev, Ino uint64 // the executable file
	Bias     uint64 // what LoadBias returns
}

// Image returns the identity of the program the process runs now.
func (p *Process) Image() (Image, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(p.Exe, &st); err != nil {
		return Image{}, fmt.Errorf("pid %d: %w", p.PID, err)
	}
	bias, err := p.LoadBias()
	if err != nil {
		return Image{}, err
	}
	return Image{Dev: st.Dev, Ino: st.Ino, Bias: bias}, nil
}

// LoadBias returns what the kernel added to the executable's link-time
// addresses: 0 for a fixed-address (ET_EXEC) binary, the load base for a PIE.
//
// The kernel tells each process where its program headers were mapped
// (AT_PHDR in /proc/PID/auxv); the difference to their link-time address is
// the bias, exactly, whatever the mappings look like.
func (p *Process) LoadBias() (uint64, error) {
	ef, err := elf.Open(p.Exe)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", p.ExeName, err)
	}
	defer ef.Close()
	if ef.Type != elf.ET_DYN {
		return 0, nil
	}

	linked, err := phdrAddr(ef, p.Exe)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", p.ExeName, err)
	}
	mapped, err := p.auxv(atPHDR)
	if err != nil {
		return 0, err
	}
	return mapped - linked, nil
}

// auxvTries and auxvRetry bound the wait for a process in execve(2) to get its auxiliary
// vector.
const (
	auxvTries = 50
	auxvRetry = 2 * time.Millisecond
)

// atPHDR is the auxiliary vector entry holding the address of the program
// headers in memory (linux/auxvec.h).
const atPHDR = 3

// phdrAddr returns the link-time address of the program header table: PT_PHDR
// when present, else the address of e_phoff within the segment that maps it.
func phdrAddr(ef *elf.File, path string) (uint64, error) {
	for _, pr := range ef.Progs {
		if pr.Type == elf.PT_PHDR {
			return pr.Vaddr, nil
		}
	}
	phoff, err := programHeaderOffset(path)
	if err != nil {
		return 0, err
	}
	for _, pr := range ef.Progs {
		if pr.Type == elf.PT_LOAD && phoff >= pr.Off && phoff < pr.Off+pr.Filesz {
			return pr.Vaddr + phoff - pr.Off, nil
		}
	}
	return 0, errors.New("program headers are not in a loadable segment")
}

// programHeaderOffset reads e_phoff of a 64-bit little-endian ELF file, which
// debug/elf does not expose.
func programHeaderOffset(path string) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var hdr elf.Header64
	if err := binary.Read(f, binary.LittleEndian, &hdr); err != nil {
		return 0, fmt.Errorf("read ELF header of %s: %w", path, err)
	}
	return hdr.Phoff, nil
}

// auxv returns the value of one auxiliary vector entry of the process.
func (p *Process) auxv(key uint64) (uint64, error) {
	// A process that is still in execve(2) shows an empty vector: the kernel closes
	// close-on-exec files, which tells a parent such as os/exec that the exec succeeded,
	// before it builds the new auxiliary vector.
	var data []byte
	for try := 0; ; try++ {
		var err error
		data, err = os.ReadFile(fmt.Sprintf("/proc/%d/auxv", p.PID))
		if err != nil {
			return 0, fmt.Errorf("read auxv of pid %d: %w", p.PID, err)
		}
		if len(data) >= 16 && binary.LittleEndian.Uint64(data) != 0 || try == auxvTries {
			break
		}
		time.Sleep(auxvRetry)
	}
	for i := 0; i+16 <= len(data); i += 16 {
		k := binary.LittleEndian.Uint64(data[i:])
		if k == key {
			return binary.LittleEndian.Uint64(data[i+8:]), nil
		}
		if k == 0 {
			break
		}
	}
	return 0, fmt.Errorf("pid %d: auxv has no entry %d", p.PID, key)
}
