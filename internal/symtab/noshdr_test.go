package symtab_test

import (
	"encoding/binary"
	"os"
	"os/exec"
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

// TestEmbeddedGoBinary: a program that embeds another Go binary holds two
// valid pclntabs; without section headers the scan must pick its own, the one
// its moduledata points at.
func TestEmbeddedGoBinary(t *testing.T) {
	tc := fixture.Current(t)
	inner, err := os.ReadFile(fixture.Build(t, tc, "spin", fixture.Default))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	files := map[string]string{
		"go.mod": "module embedder\n\ngo 1.26\n",
		"main.go": "package main\n\nimport _ \"embed\"\n\n//go:embed inner.bin\nvar inner []byte\n\n" +
			"func main() { println(len(inner)) }\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "inner.bin"), inner, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "embedder")
	build := exec.Command(tc.GoCmd, "build", "-o", out, ".")
	build.Dir = dir
	build.Env = append(os.Environ(), tc.Env...)
	if msg, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v: %s", err, msg)
	}

	want := openFixture(t, out)
	got := openFixture(t, withoutSectionHeaders(t, out))
	if got.PclntabAddr() != want.PclntabAddr() || got.NumFuncs() != want.NumFuncs() {
		t.Errorf("scan chose the table at %#x with %d functions; the program's own is at %#x "+
			"with %d", got.PclntabAddr(), got.NumFuncs(), want.PclntabAddr(), want.NumFuncs())
	}
	if _, err := got.LookupFunc("main.asmSpin"); err == nil {
		t.Error("the embedded program's functions were decoded as the embedder's")
	}
}
