package symtab_test

import (
	"bufio"
	"bytes"
	"debug/elf"
	"debug/gosym"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// Ground truth from outside the project: the ELF symbol table, the standard
// library's debug/gosym and the toolchain's `go tool nm`.

// elfSymbols returns the value of each symbol of the ELF symbol table, or nil
// when the binary is stripped.
func elfSymbols(t *testing.T, path string) map[string]uint64 {
	t.Helper()
	ef, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ef.Close()
	syms, err := ef.Symbols()
	if err != nil {
		return nil
	}
	out := make(map[string]uint64, len(syms))
	for _, s := range syms {
		out[s.Name] = s.Value
	}
	return out
}

// gosymTable builds debug/gosym's table from the symbols runtime.pclntab,
// runtime.epclntab and runtime.text, which is how cmd/internal/objfile does
// it; it needs an unstripped binary.
func gosymTable(t *testing.T, path string, syms map[string]uint64) *gosym.Table {
	t.Helper()
	start, ok1 := syms["runtime.pclntab"]
	end, ok2 := syms["runtime.epclntab"]
	text, ok3 := syms["runtime.text"]
	if !ok1 || !ok2 || !ok3 {
		t.Fatalf("%s: no runtime.pclntab/epclntab/text symbols", path)
	}

	ef, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ef.Close()
	data := make([]byte, end-start)
	for _, p := range ef.Progs {
		if p.Type == elf.PT_LOAD && start >= p.Vaddr && end <= p.Vaddr+p.Filesz {
			if _, err := p.ReadAt(data, int64(start-p.Vaddr)); err != nil {
				t.Fatal(err)
			}
			tab, err := gosym.NewTable(nil, gosym.NewLineTable(data, text))
			if err != nil {
				t.Fatal(err)
			}
			return tab
		}
	}
	t.Fatalf("%s: pclntab symbol range not in a segment", path)
	return nil
}

// nmText returns the text symbols `go tool nm` lists: name → address.
func nmText(t *testing.T, path string) map[string]uint64 {
	t.Helper()
	out, err := exec.Command("go", "tool", "nm", path).Output()
	if err != nil {
		t.Fatalf("go tool nm %s: %v", path, err)
	}
	syms := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 3 || (f[1] != "T" && f[1] != "t") {
			continue
		}
		addr, err := strconv.ParseUint(f[0], 16, 64)
		if err != nil {
			continue
		}
		syms[strings.Join(f[2:], " ")] = addr
	}
	return syms
}
