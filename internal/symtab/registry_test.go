package symtab_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/preempttrace/preempttrace/internal/fixture"
	"github.com/preempttrace/preempttrace/internal/symtab"
)

// asyncPreemptFuncID is runtime.asyncPreempt's funcID in runtime/symtab.go
// (1.14–1.16) and internal/abi (1.17+, where the list was sorted).
func asyncPreemptFuncID(minor int) uint8 {
	if minor <= 16 {
		return 21
	}
	return 3
}

// TestRegistryBinaries decodes real third-party binaries, of releases no local
// toolchain builds (Go 1.14–1.18, 1.20) and of Go 1.24 and 1.25 as shipped
// (stripped, one without build info), checked against their symbol tables
// where they kept one.
func TestRegistryBinaries(t *testing.T) {
	for _, b := range fixture.Registry(t) {
		t.Run(b.ID, func(t *testing.T) {
			t.Parallel()
			if strings.HasPrefix(b.ID, "go1.13-") {
				checkRefusedAsTooOld(t, b.Path)
				return
			}
			f := openFixture(t, b.Path)

			v := f.Version()
			if b.GoVersion != "" && v.Raw != b.GoVersion {
				t.Errorf("version %q, go version says %q", v.Raw, b.GoVersion)
			}
			minor, _ := strconv.Atoi(strings.TrimPrefix(strings.SplitN(b.ID, "-", 2)[0], "go1."))
			if v.Minor != minor {
				t.Errorf("minor %d, manifest id says %d (version from %s)", v.Minor, minor, v.Source)
			}
			if string(f.Arch()) != b.Arch {
				t.Errorf("arch %s, want %s", f.Arch(), b.Arch)
			}

			decodeAll(t, f)

			ap, err := f.LookupFunc("runtime.asyncPreempt")
			if err != nil {
				t.Fatal(err)
			}
			if want := asyncPreemptFuncID(v.Minor); ap.FuncID != want {
				t.Errorf("runtime.asyncPreempt funcID %d, want %d", ap.FuncID, want)
			}
			if m := f.LocalsMap(ap); m != symtab.LocalsNil {
				t.Errorf("runtime.asyncPreempt locals map %s, want nil (assembly)", m)
			}

			syms := elfSymbols(t, b.Path)
			if len(syms) == 0 {
				return
			}
			checkAgainstNm(t, f, nmText(t, b.Path))
			checkAgainstGosym(t, f, b.Path, syms)
			if want, ok := syms["runtime.no_pointers_stackmap"]; ok {
				if got := f.NoPointersStackmap(); got != want {
					t.Errorf("no_pointers_stackmap at %#x, symbol table says %#x", got, want)
				}
			} else if v.Minor <= 17 {
				t.Error("no runtime.no_pointers_stackmap symbol in a ≤1.17 binary")
			}
			if want, ok := syms["runtime.firstmoduledata"]; ok && v.Minor >= 18 &&
				f.Moduledata() != want {
				t.Errorf("moduledata at %#x, symbol table says %#x", f.Moduledata(), want)
			}
		})
	}
}

// decodeAll reads every function and its unsafe-point and inline tables and
// the frames at each run start: nothing may fail to decode.
func decodeAll(t *testing.T, f *symtab.File) {
	t.Helper()
	for i := 0; i < f.NumFuncs(); i++ {
		fn, err := f.Func(i)
		if err != nil {
			t.Fatalf("function %d: %v", i, err)
		}
		for _, tb := range []symtab.Table{symtab.TableUnsafePoint, symtab.TableInlTreeIndex} {
			runs, err := f.Runs(fn, tb)
			if err != nil {
				t.Fatalf("%s %s: %v", fn.Name, tb, err)
			}
			for _, r := range runs {
				if _, err := f.Frames(fn, r.Start); err != nil && !errors.Is(err, symtab.ErrPadding) {
					t.Fatalf("%s+%#x frames: %v", fn.Name, r.Start-fn.Entry, err)
				}
			}
		}
	}
}

// checkRefusedAsTooOld: a binary built before async preemption existed is
// refused with an error that names its release and where support starts.
func checkRefusedAsTooOld(t *testing.T, path string) {
	t.Helper()
	f, err := symtab.Open(path)
	if err == nil {
		f.Close()
		t.Fatal("a Go 1.13 binary was accepted")
	}
	if !errors.Is(err, symtab.ErrUnsupported) || !strings.Contains(err.Error(), "go1.13.8") ||
		!strings.Contains(err.Error(), "Go 1.14") {
		t.Errorf("error %q does not name go1.13.8 and Go 1.14 as ErrUnsupported", err)
	}
}
