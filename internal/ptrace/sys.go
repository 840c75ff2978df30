//go:build linux

package ptrace

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"unsafe"

	"github.com/preempttrace/preempttrace/internal/target"
	"golang.org/x/sys/unix"
)

// seizeOptions follow new threads (the runtime starts Ms at any time), see an exec and
// each thread's exit before it happens, so that an exiting thread is detached rather
// than left a traced zombie. PTRACE_O_EXITKILL is left out on purpose: if the tracer
// dies the target must run on.
const seizeOptions = unix.PTRACE_O_TRACECLONE | unix.PTRACE_O_TRACEEXEC | unix.PTRACE_O_TRACEEXIT

// waitFlags collect a tracee's state change without blocking; __WALL because the tracees
// are threads, which are not the thread group's leader.
const waitFlags = unix.WNOHANG | unix.WALL

// ptraceEvent is the PTRACE_EVENT_* a ptrace-stop reports in bits 16-23 of its status.
type ptraceEvent uint32

func eventOf(ws unix.WaitStatus) ptraceEvent { return ptraceEvent(uint32(ws)>>16) & 0xff }

// ptrace issues a request that x/sys/unix has no wrapper for with these arguments.
func ptrace(req int, tid int, addr, data uintptr) error {
	_, _, errno := unix.Syscall6(unix.SYS_PTRACE, uintptr(req), uintptr(tid), addr, data, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// seize attaches to one thread without stopping it.
func seize(tid int) error { return ptrace(unix.PTRACE_SEIZE, tid, 0, seizeOptions) }

// detach lets a stopped tracee go, delivering sig (0 for none).
func detach(tid int, sig unix.Signal) error {
	return ptrace(unix.PTRACE_DETACH, tid, 0, uintptr(sig))
}

// listen leaves a tracee in group-stop stopped, as it would be untraced, while still
// reporting the SIGCONT or new signal that ends the stop.
func listen(tid int) error { return ptrace(unix.PTRACE_LISTEN, tid, 0, 0) }

// siginfo is the head of the kernel's siginfo_t for signals sent by kill(2), tkill(2)
// and tgkill(2): si_pid and si_uid follow the code and a padding word on 64-bit targets.
type siginfo struct {
	Signo, Errno, Code int32
	_                  int32
	Pid                int32
	UID                uint32
	_                  [104]byte
}

// siTkill is the si_code of tkill(2) and tgkill(2), with which the runtime sends its
// preemption requests (kill(1) sends SI_USER).
const siTkill = -6

func getSiginfo(tid int, si *siginfo) error {
	return ptrace(unix.PTRACE_GETSIGINFO, tid, 0, uintptr(unsafe.Pointer(si)))
}

// memReader reads the target's memory without writing to it.
type memReader struct {
	pid int
	buf [8]byte

	// local and remote are reused by readAll, which runs for every attempt.
	local  []unix.Iovec
	remote []unix.RemoteIovec
}

// chunk is a range of the target's memory, at addr, and where to copy it.
type chunk struct {
	addr uint64
	dst  []byte
}

// read fills dst from the target's address addr.
func (m *memReader) read(addr uint64, dst []byte) error {
	return m.readAll(chunk{addr, dst})
}

// readAll fills every chunk, in one system call; it fails unless all were read.
func (m *memReader) readAll(chunks ...chunk) error {
	m.local, m.remote = m.local[:0], m.remote[:0]
	want := 0
	for _, c := range chunks {
		if c.addr == 0 {
			return errors.New("read at address 0")
		}
		iov := unix.Iovec{Base: &c.dst[0]}
		iov.SetLen(len(c.dst))
		m.local = append(m.local, iov)
		m.remote = append(m.remote, unix.RemoteIovec{Base: uintptr(c.addr), Len: len(c.dst)})
		want += len(c.dst)
	}

	n, err := unix.ProcessVMReadv(m.pid, m.local, m.remote, 0)
	if err != nil {
		return fmt.Errorf("read %d bytes at %#x: %w", want, chunks[0].addr, err)
	}
	if n != want {
		return fmt.Errorf("read %d bytes at %#x: got %d", want, chunks[0].addr, n)
	}
	return nil
}

func (m *memReader) u64(addr uint64) (uint64, error) {
	err := m.read(addr, m.buf[:8])
	return binary.LittleEndian.Uint64(m.buf[:8]), err
}

// threadIDs lists the process's threads.
func threadIDs(pid int) ([]int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return nil, err
	}
	tids := make([]int, 0, len(ents))
	for _, e := range ents {
		if tid, err := strconv.Atoi(e.Name()); err == nil {
			tids = append(tids, tid)
		}
	}
	return tids, nil
}

// innermostPID returns the process's PID in its own PID namespace, the one the runtime's
// tgkill puts in si_pid.
func innermostPID(pid int) (int, error) {
	v, err := target.StatusField(pid, "NSpid")
	if err != nil {
		return 0, err
	}
	f := strings.Fields(v)
	if len(f) == 0 {
		return 0, fmt.Errorf("empty NSpid for pid %d", pid)
	}
	return strconv.Atoi(f[len(f)-1])
}
