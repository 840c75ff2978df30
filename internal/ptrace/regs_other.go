//go:build linux && !amd64

package ptrace

import "errors"

// regsAvailable is false: only amd64's registers are read so far. arm64 would take the
// PC, SP and frame pointer (x29) from NT_PRSTATUS and g from x28.
const regsAvailable = false

func interruptedRegs(int) (pc, sp, fp, tp uint64, err error) {
	return 0, 0, 0, 0, errors.New("registers of this architecture are not read")
}
