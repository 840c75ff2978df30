// Package target finds what a running process is: the executable behind a
// PID and where it is loaded. It reads /proc only and never touches the
// process itself.
package target

import (
	"bufio"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
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

// LoadBias returns what the kernel added to the executable's link-time
// addresses: 0 for a fixed-address (ET_EXEC) binary, the mapping base for a
// PIE.
func (p *Process) LoadBias() (uint64, error) {
	ef, err := elf.Open(p.Exe)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", p.ExeName, err)
	}
	defer ef.Close()
	if ef.Type != elf.ET_DYN {
		return 0, nil
	}

	// The first PT_LOAD (file offset 0) is mapped at bias + its page-aligned vaddr.
	var first *elf.Prog
	for _, pr := range ef.Progs {
		if pr.Type == elf.PT_LOAD {
			first = pr
			break
		}
	}
	if first == nil {
		return 0, fmt.Errorf("%s has no loadable segment", p.ExeName)
	}
	start, err := p.exeMappingStart()
	if err != nil {
		return 0, err
	}
	page := uint64(os.Getpagesize())
	return start - (first.Vaddr &^ (page - 1)), nil
}

// exeMappingStart returns the start of the executable's mapping at file
// offset 0, matched by device and inode so a renamed file still matches.
func (p *Process) exeMappingStart() (uint64, error) {
	st, err := os.Stat(p.Exe)
	if err != nil {
		return 0, fmt.Errorf("stat %s: %w", p.Exe, err)
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, errors.New("stat: no inode")
	}

	maps, err := os.Open(fmt.Sprintf("/proc/%d/maps", p.PID))
	if err != nil {
		return 0, fmt.Errorf("read maps of pid %d: %w", p.PID, err)
	}
	defer maps.Close()

	sc := bufio.NewScanner(maps)
	for sc.Scan() {
		// start-end perms offset dev inode path
		f := strings.Fields(sc.Text())
		if len(f) < 6 || f[2] != "00000000" {
			continue
		}
		if ino, _ := strconv.ParseUint(f[4], 10, 64); ino != sys.Ino {
			continue
		}
		start, err := strconv.ParseUint(strings.SplitN(f[0], "-", 2)[0], 16, 64)
		if err != nil {
			return 0, fmt.Errorf("parse maps of pid %d: %w", p.PID, err)
		}
		return start, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("read maps of pid %d: %w", p.PID, err)
	}
	return 0, fmt.Errorf("pid %d: executable mapping not found in /proc/%d/maps", p.PID, p.PID)
}
