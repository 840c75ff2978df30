package audit

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/preempttrace/preempttrace/internal/safepoint"
	"github.com/preempttrace/preempttrace/internal/symtab"
)

// Explanation is everything known about one PC and the runtime's verdict.
type Explanation struct {
	Target string // as the user wrote it
	PC     uint64 // link-time address

	// Info is nil when the PC is outside Go code.
	Info    *symtab.PCInfo
	Verdict safepoint.Verdict
}

// Explain resolves target ("0xADDR", "FUNC" or "FUNC+0xOFF") and decides its
// PC. bias is added to link-time addresses to get the addresses a user sees
// in a running process (0 for a binary at rest); an address target is taken
// in that space.
func Explain(f *symtab.File, rules *safepoint.Rules, target string,
	bias uint64) (*Explanation, error) {
	pc, err := resolve(f, target, bias)
	if err != nil {
		return nil, err
	}
	e := &Explanation{Target: target, PC: pc}

	info, err := f.Lookup(pc)
	switch {
	case errors.Is(err, symtab.ErrNotFound):
		// findfunc fails too: the runtime refuses before looking further.
		e.Verdict = safepoint.Classify(rules, safepoint.PC{PC: pc}, safepoint.State{})
		return e, nil
	case err != nil:
		return nil, fmt.Errorf("explain %s: %w", target, err)
	}
	e.Info = info
	e.Verdict = safepoint.Classify(rules, safepoint.FromInfo(info), safepoint.State{})
	return e, nil
}

// errNoTarget is returned for a target string that names nothing.
var errNoTarget = errors.New("target must be 0xADDR, FUNC or FUNC+0xOFF")

func resolve(f *symtab.File, target string, bias uint64) (uint64, error) {
	if strings.HasPrefix(target, "0x") || strings.HasPrefix(target, "0X") {
		addr, err := strconv.ParseUint(target[2:], 16, 64)
		if err != nil {
			return 0, fmt.Errorf("target %q: %w", target, errNoTarget)
		}
		if addr < bias {
			return 0, fmt.Errorf("target %s is below the load address %#x", target, bias)
		}
		return addr - bias, nil
	}

	name, off := target, uint64(0)
	if i := strings.LastIndex(target, "+0x"); i > 0 {
		o, err := strconv.ParseUint(target[i+3:], 16, 64)
		if err != nil {
			return 0, fmt.Errorf("target %q: %w", target, errNoTarget)
		}
		name, off = target[:i], o
	}
	fn, err := f.LookupFunc(name)
	if err != nil {
		return 0, fmt.Errorf("target %q: %w", target, err)
	}
	if off >= fn.Size() {
		return 0, fmt.Errorf("target %q: offset beyond the function's %d bytes", target, fn.Size())
	}
	return fn.Entry + off, nil
}
