package main

import (
	"errors"
	"fmt"

	"github.com/preempttrace/preempttrace/internal/safepoint"
	"github.com/preempttrace/preempttrace/internal/symtab"
	"github.com/preempttrace/preempttrace/internal/target"
)

// binaryArgs is how a command names the program to decode: a path, or a PID.
type binaryArgs struct {
	pid int
}

// opened is a decoded binary and the rules of the release that built it.
type opened struct {
	file  *symtab.File
	rules *safepoint.Rules
	name  string // for display
	bias  uint64 // link-time → process addresses
}

func (b *binaryArgs) open(path string) (*opened, error) {
	o := &opened{name: path}
	if b.pid != 0 {
		proc, err := target.Find(b.pid)
		if err != nil {
			return nil, err
		}
		path, o.name = proc.Exe, fmt.Sprintf("%s (pid %d)", proc.ExeName, b.pid)
		if o.bias, err = proc.LoadBias(); err != nil {
			return nil, err
		}
	}

	f, err := symtab.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.name, err)
	}
	o.file = f
	if o.rules, err = safepoint.For(f.Version()); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", o.name, err)
	}
	return o, nil
}

// userMessage turns the errors a user can meet into one line that says what
// to do.
func userMessage(err error) string {
	var ue *symtab.UnsupportedError
	switch {
	case errors.Is(err, symtab.ErrNotGo):
		return fmt.Sprintf("%v (preempttrace reads programs built by the Go toolchain)", err)
	case errors.As(err, &ue) && ue.What == "Go version":
		return fmt.Sprintf("%v; a newer Go than supported needs a newer preempttrace", err)
	}
	return err.Error()
}
