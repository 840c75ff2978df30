package ptrace

import (
	"debug/elf"
	"errors"
	"fmt"
)

// errTLSUnknown says where g lives in thread-local storage could not be told.
var errTLSUnknown = errors.New("cannot tell where the runtime keeps g in thread-local storage")

// settlsOffset is where runtime·settls puts g relative to the thread pointer.
const settlsOffset = -8

// gTLSOffset returns where, relative to the thread pointer (FS base on amd64), the
// runtime keeps the running goroutine g, in the executable at path.
//
// Go code, and the runtime's signal handler, read g at a fixed offset from the thread
// pointer. A statically linked program without a PT_TLS segment sets the thread pointer
// itself (runtime·settls in runtime/sys_linux_amd64.s) so that g is at -8. Otherwise g is
// runtime.tlsg, a thread-local variable of the executable, placed by the ELF TLS rules:
// amd64 lays out the executable's TLS block right below the thread pointer (TLS "variant
// II"), so a variable at offset v of the PT_TLS segment is at v minus the segment's size
// rounded up to its alignment. A stripped binary has no runtime.tlsg symbol; its offset is
// still known when the segment holds nothing but g, as in every binary that links no C
// code with thread-locals of its own.
func gTLSOffset(path string) (int64, error) {
	f, err := elf.Open(path)
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()

	var tls *elf.Prog
	for _, p := range f.Progs {
		if p.Type == elf.PT_TLS {
			tls = p
			break
		}
	}
	if tls == nil {
		return settlsOffset, nil
	}
	align := max(tls.Align, 1)
	block := int64((tls.Memsz + align - 1) / align * align)

	syms, err := f.Symbols()
	if err == nil {
		for _, s := range syms {
			if s.Name == "runtime.tlsg" && elf.ST_TYPE(s.Info) == elf.STT_TLS {
				return int64(s.Value) - block, nil
			}
		}
	}
	if tls.Memsz == 8 {
		return -block, nil
	}
	return 0, fmt.Errorf("%w: no runtime.tlsg symbol and %d bytes of thread-locals",
		errTLSUnknown, tls.Memsz)
}
