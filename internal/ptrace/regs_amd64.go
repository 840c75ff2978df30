//go:build linux

package ptrace

import "golang.org/x/sys/unix"

// regsAvailable says whether interruptedRegs can read this architecture's registers.
const regsAvailable = true

// interruptedRegs returns, from a thread stopped at signal delivery, the registers the
// signal interrupted: PC, stack and frame pointer, and the thread pointer (FS base) that
// locates g.
func interruptedRegs(tid int) (pc, sp, fp, tp uint64, err error) {
	var regs unix.PtraceRegs
	if err := unix.PtraceGetRegs(tid, &regs); err != nil {
		return 0, 0, 0, 0, err
	}
	return regs.Rip, regs.Rsp, regs.Rbp, regs.Fs_base, nil
}
