// Package symtab reads what the Go runtime knows about its own code from a Go
// executable at rest: the function table, pc-value tables, funcdata, the inline
// tree and the module data, for linux ELF binaries built by Go 1.14 through 1.27
// on amd64 and arm64.
//
// The format is the one the linker writes and the runtime reads back in
// runtime/symtab.go (pcHeader, moduledata, _func, functab, pcvalue, funcdata) and
// runtime/symtabinl.go (inlinedCall). debug/gosym covers part of it but exposes
// neither pcdata, funcdata, flags nor the inline tree, and it only knows the
// formats of the toolchain it was built with, so this package decodes the table
// itself. All four pclntab generations are handled:
//
//	magic       Go releases   notes
//	0xfffffffb  1.14–1.15     absolute entries, offsets from the table start
//	0xfffffffa  1.16–1.17     split sub-tables (funcnametab, cutab, filetab, pctab)
//	0xfffffff0  1.18–1.19     entries relative to runtime.text, funcdata relative to gofunc
//	0xfffffff1  1.20–1.27     _func.startLine, 16-byte inlinedCall; 1.26 drops textStart
//
// Everything that differs between releases lives in one table in layout.go; no
// other file compares Go versions.
//
// A File is opened by mmap and decodes lazily: opening reads only headers, a PC
// lookup binary-searches the function table and decodes the pc-value tables it
// needs. A File is safe for concurrent use. The package never logs; failures are
// typed errors (FormatError carries the file offset, UnsupportedError matches
// ErrUnsupported).
package symtab
