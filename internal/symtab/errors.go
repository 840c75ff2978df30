package symtab

import (
	"errors"
	"fmt"
)

var (
	// ErrUnsupported is matched (with errors.Is) by every error that reports a
	// binary outside what this package can decode: a Go release, architecture or
	// ELF class it does not know.
	ErrUnsupported = errors.New("unsupported")

	// ErrNotGo reports an ELF file that carries no Go function table.
	ErrNotGo = errors.New("not a Go binary")

	// ErrPadding reports a PC in the alignment padding after a function's
	// code, which its pc-value tables do not cover and which never executes.
	ErrPadding = errors.New("pc is in padding after the function's code")

	// ErrNotFound reports a PC outside every function, or an unknown function name.
	ErrNotFound = errors.New("not found")
)

// MinGoMinor and MaxGoMinor bound the Go 1.x releases this package decodes.
// Asynchronous preemption first shipped in Go 1.14, so nothing older is
// interesting; releases newer than the last one checked are refused rather than
// decoded with a layout that may have changed.
const (
	MinGoMinor = 14
	MaxGoMinor = 27
)

// UnsupportedError reports something found in a binary that lies outside the
// supported range.
type UnsupportedError struct {
	What      string // "Go version", "architecture", "pclntab magic", ...
	Found     string // what the binary holds
	Supported string // what would have been accepted
}

func (e *UnsupportedError) Error() string {
	return fmt.Sprintf("unsupported %s %s (supported: %s)", e.What, e.Found, e.Supported)
}

// Is makes errors.Is(err, ErrUnsupported) true.
func (e *UnsupportedError) Is(target error) bool { return target == ErrUnsupported }

// FormatError reports data that contradicts the format, at a file offset.
type FormatError struct {
	Off int64  // offset in the file
	Msg string // what was wrong there
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("malformed Go symbol table at file offset %#x: %s", e.Off, e.Msg)
}

func formatErr(off int64, format string, args ...any) error {
	return &FormatError{Off: off, Msg: fmt.Sprintf(format, args...)}
}

// SupportedRange names the supported releases for messages.
func SupportedRange() string {
	return fmt.Sprintf("go1.%d through go1.%d", MinGoMinor, MaxGoMinor)
}
