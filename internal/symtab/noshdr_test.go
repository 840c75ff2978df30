package symtab_test

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/preempttrace/preempttrace/internal/fixture"
)

// withoutSectionHeaders copies an ELF file with its section header table
// removed (e_shoff, e_shnum, e_shstrndx zeroed), as some packers and
// stripping tools leave binaries: only program headers remain, so the decoder
// must find pclntab, moduledata and the Go version by scanning.
func withoutSectionHeaders(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	binary.LittleEndian.PutUint64(data[0x28:], 0) // e_shoff
	binary.LittleEndian.PutUint16(data[0x3c:], 0) // e_shnum
	binary.LittleEndian.PutUint16(data[0x3e:], 0) // e_shstrndx
	out := filepath.Join(t.TempDir(), filepath.Base(path)+"-noshdr")
	if err := os.WriteFile(out, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestWithoutSectionHeaders(t *testing.T) {
	for _, c := range fixture.Matrix(t) {
		if c.Variant != fixture.Default && c.Variant != fixture.ExternalPIE {
			continue
		}
		t.Run(c.Name(), func(t *testing.T) {
			t.Parallel()
			path := fixture.Build(t, c.Toolchain, "spin", c.Variant)
			want := openFixture(t, path)
			got := openFixture(t, withoutSectionHeaders(t, path))

			if got.Version().Raw != want.Version().Raw || got.NumFuncs() != want.NumFuncs() ||
				got.Moduledata() != want.Moduledata() || got.PclntabAddr() != want.PclntabAddr() {
				t.Fatalf("without section headers: %s, %d functions, moduledata %#x; with: %s, "+
					"%d, %#x", got.Version(), got.NumFuncs(), got.Moduledata(), want.Version(),
					want.NumFuncs(), want.Moduledata())
			}
			for i := 0; i < want.NumFuncs(); i++ {
				a, err1 := want.Func(i)
				b, err2 := got.Func(i)
				if err1 != nil || err2 != nil || a.Name != b.Name || a.Entry != b.Entry ||
					a.Flag != b.Flag {
					t.Fatalf("function %d: %+v (%v) vs %+v (%v)", i, b, err2, a, err1)
				}
			}
			fn, err := got.LookupFunc("main.inlinedRuntime")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := got.Frames(fn, fn.Entry); err != nil {
				t.Error(err)
			}
		})
	}
}
