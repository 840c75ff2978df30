package symtab_test

import (
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/preempttrace/preempttrace/internal/fixture"
	"github.com/preempttrace/preempttrace/internal/symtab"
)

// unstrippedSibling names, for a stripped variant, the variant of the same
// build without -s -w: its code has the same addresses, so its symbol table
// is ground truth for the stripped one.
var unstrippedSibling = map[fixture.Variant]fixture.Variant{
	fixture.Stripped:            fixture.Default,
	fixture.ExternalPIEStripped: fixture.ExternalPIE,
	fixture.ARM64Stripped:       fixture.ARM64,
}

func openFixture(t *testing.T, path string) *symtab.File {
	t.Helper()
	f, err := symtab.Open(path)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestFixtureBinaries checks the decoder on fixtures built by every installed
// toolchain, in every variant, against the toolchain's own listings,
// debug/gosym, `go tool nm` and the ELF symbol table.
func TestFixtureBinaries(t *testing.T) {
	for _, c := range fixture.Matrix(t) {
		t.Run(c.Name(), func(t *testing.T) {
			t.Parallel()
			path := fixture.Build(t, c.Toolchain, "spin", c.Variant)
			f := openFixture(t, path)

			if got := f.Version(); got.Raw != c.Toolchain.Version || got.Minor != c.Toolchain.Minor {
				t.Errorf("version %q (minor %d), toolchain says %q", got.Raw, got.Minor,
					c.Toolchain.Version)
			}
			if string(f.Arch()) != c.Variant.Arch() {
				t.Errorf("arch %s, want %s", f.Arch(), c.Variant.Arch())
			}

			symPath := path
			if sib, ok := unstrippedSibling[c.Variant]; ok {
				if syms := elfSymbols(t, path); len(syms) != 0 {
					t.Errorf("stripped variant has %d symbols", len(syms))
				}
				symPath = fixture.Build(t, c.Toolchain, "spin", sib)
			}
			syms := elfSymbols(t, symPath)
			checkAgainstNm(t, f, nmText(t, symPath))
			checkAgainstGosym(t, f, symPath, syms)
			// Stripping moves data, so only a binary's own symbols place its moduledata.
			// Before Go 1.18 the decoder has no use for it and leaves it 0.
			want, ok := syms["runtime.firstmoduledata"]
			if c.Toolchain.Minor < 18 {
				want, ok = 0, true
			}
			if ok && symPath == path && f.Moduledata() != want {
				t.Errorf("moduledata at %#x, want %#x", f.Moduledata(), want)
			}

			program := "spin"
			if c.Variant == fixture.Cgo {
				program = "cgospin"
			}
			checkAgainstListing(t, f, fixture.Functions(t, c.Toolchain, program, c.Variant))
		})
	}
}

// checkAgainstNm: every function of the table sits where `go tool nm` puts
// the symbol of that name. The ELF name of an ABI0 function that also has an
// ABIInternal twin carries ".abi0".
func checkAgainstNm(t *testing.T, f *symtab.File, nm map[string]uint64) {
	t.Helper()
	missing, wrong := 0, 0
	for i := 0; i < f.NumFuncs(); i++ {
		fn, err := f.Func(i)
		if err != nil {
			t.Fatalf("function %d: %v", i, err)
		}
		addr, ok := nm[fn.Name]
		if abi0, ok0 := nm[fn.Name+".abi0"]; ok0 && (!ok || addr != fn.Entry) {
			addr, ok = abi0, true
		}
		switch {
		case !ok:
			missing++
			if missing <= 3 {
				t.Logf("no nm symbol for %s at %#x", fn.Name, fn.Entry)
			}
		case addr != fn.Entry:
			wrong++
			if wrong <= 5 {
				t.Errorf("%s: entry %#x, nm says %#x", fn.Name, fn.Entry, addr)
			}
		}
	}
	if wrong > 0 || missing > f.NumFuncs()/100 {
		t.Errorf("%d functions: %d at the wrong address, %d without a symbol",
			f.NumFuncs(), wrong, missing)
	}
}

// checkAgainstGosym: the same functions in the same order, and the same
// file:line at every PC of package main and a sample of the others.
func checkAgainstGosym(t *testing.T, f *symtab.File, path string, syms map[string]uint64) {
	t.Helper()
	tab := gosymTable(t, path, syms)
	if len(tab.Funcs) != f.NumFuncs() {
		t.Fatalf("%d functions, debug/gosym has %d", f.NumFuncs(), len(tab.Funcs))
	}

	bad := 0
	for i, gf := range tab.Funcs {
		fn, err := f.Func(i)
		if err != nil {
			t.Fatal(err)
		}
		if fn.Name != gf.Name || fn.Entry != gf.Entry || fn.End != gf.End {
			t.Fatalf("function %d: %s [%#x,%#x), debug/gosym has %s [%#x,%#x)", i, fn.Name,
				fn.Entry, fn.End, gf.Name, gf.Entry, gf.End)
		}
		if strings.HasPrefix(fn.Name, "go:") {
			continue // linker markers without line tables
		}
		step := uint64(17)
		if strings.HasPrefix(fn.Name, "main.") {
			step = 1
		}
		for pc := fn.Entry; pc < fn.End; pc += step {
			info, err := f.Lookup(pc)
			if errors.Is(err, symtab.ErrPadding) {
				break
			}
			if err != nil {
				t.Fatalf("%s+%#x: %v", fn.Name, pc-fn.Entry, err)
			}
			file, line, _ := tab.PCToLine(pc)
			if info.File != file || info.Line != line {
				bad++
				if bad <= 5 {
					t.Errorf("%s+%#x: %s:%d, debug/gosym says %s:%d", fn.Name, pc-fn.Entry,
						info.File, info.Line, file, line)
				}
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d PCs disagree with debug/gosym", bad)
	}
}

// checkAgainstListing: the UnsafePoint table at every instruction of every
// compiled main function has the value the compiler's -S listing gives it.
func checkAgainstListing(t *testing.T, f *symtab.File, funcs map[string]fixture.Func) {
	t.Helper()
	checked := 0
	for name, lf := range funcs {
		if !strings.HasPrefix(name, "main.") {
			continue
		}
		fn, err := f.LookupFunc(name)
		if err != nil {
			continue // dead code the linker dropped
		}
		if fn.Size() < lf.Size {
			t.Errorf("%s: %d bytes, listing says %d", name, fn.Size(), lf.Size)
			continue
		}
		for _, in := range lf.Instrs {
			got, _, err := f.PCValue(fn, symtab.TableUnsafePoint, fn.Entry+in.Off)
			if err != nil {
				t.Fatalf("%s+%#x: %v", name, in.Off, err)
			}
			if want := fixture.ValueAt(lf.PCData, 0, in.Off); got != want {
				t.Errorf("%s+%#x (%s): unsafe point %d, listing says %d", name, in.Off, in.Op,
					got, want)
			}
			checked++
		}
	}
	if checked == 0 {
		t.Error("no instruction of package main checked against the listing")
	}
}

// TestExperimentVersion: a non-default GOEXPERIMENT is kept in the version as
// `go version` reports it, because it can change runtime struct layouts.
func TestExperimentVersion(t *testing.T) {
	tc := fixture.Current(t)
	path := fixture.Build(t, tc, "spin", fixture.Experiment)
	f := openFixture(t, path)

	out, err := exec.Command("go", "version", path).Output()
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.TrimSpace(strings.SplitN(string(out), ": ", 2)[1]); f.Version().Raw != want {
		t.Errorf("version %q, go version says %q", f.Version().Raw, want)
	}
	if !f.Version().HasExperiment(fixture.ExperimentName) {
		t.Errorf("experiments %q lack %s", f.Version().Experiments, fixture.ExperimentName)
	}
	if _, err := f.LookupFunc("main.plainSpin"); err != nil {
		t.Error(err)
	}
}
