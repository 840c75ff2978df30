package symtab

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/preempttrace/preempttrace/internal/fixture"
)

// structOffsets computes the field offsets of a struct declared in the
// runtime's source, with the gc sizes of a 64-bit target, up to the field
// named last ("" for all). It knows the few
// field types these structs use and fails on anything else, so a new kind of
// field shows up here instead of as a silently wrong layout.
func structOffsets(t *testing.T, dir, name, last string) map[string]int {
	t.Helper()
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, dir, func(fi os.FileInfo) bool {
		return !strings.HasSuffix(fi.Name(), "_test.go")
	}, 0)
	if err != nil {
		t.Fatal(err)
	}
	var st *ast.StructType
	for _, pkg := range pkgs {
		for _, file := range pkg.Files {
			ast.Inspect(file, func(n ast.Node) bool {
				if ts, ok := n.(*ast.TypeSpec); ok && ts.Name.Name == name {
					st, _ = ts.Type.(*ast.StructType)
				}
				return st == nil
			})
		}
	}
	if st == nil {
		t.Fatalf("no struct %s in %s", name, dir)
	}

	offsets := map[string]int{}
	off := 0
	for _, field := range st.Fields.List {
		size, align := typeSize(t, field.Type)
		off = (off + align - 1) &^ (align - 1)
		for _, n := range field.Names {
			offsets[n.Name] = off
			off += size
			if n.Name == last {
				return offsets
			}
		}
		if len(field.Names) == 0 {
			off += size
		}
	}
	return offsets
}

// typeSize returns the size and alignment of a field type on linux/amd64 and
// linux/arm64.
func typeSize(t *testing.T, e ast.Expr) (int, int) {
	t.Helper()
	switch e := e.(type) {
	case *ast.Ident:
		switch e.Name {
		case "uintptr", "int", "uint", "int64", "uint64", "textOff", "nameOff", "typeOff":
			return 8, 8
		case "int32", "uint32":
			return 4, 4
		case "int16", "uint16":
			return 2, 2
		case "int8", "uint8", "byte", "bool", "funcID", "funcFlag":
			return 1, 1
		case "string":
			return 16, 8
		}
	case *ast.SelectorExpr:
		switch e.Sel.Name {
		case "NotInHeap":
			return 0, 1
		case "FuncID", "FuncFlag":
			return 1, 1
		}
	case *ast.StarExpr, *ast.MapType, *ast.FuncType:
		return 8, 8
	case *ast.ArrayType:
		if e.Len == nil {
			return 24, 8
		}
		n, err := strconv.Atoi(e.Len.(*ast.BasicLit).Value)
		if err != nil {
			t.Fatal(err)
		}
		size, align := typeSize(t, e.Elt)
		return n * size, align
	}
	t.Fatalf("unknown field type %T %v", e, e)
	return 0, 0
}

// TestLayoutMatchesRuntimeSource checks the layout table against the runtime
// source of every installed toolchain: _func field offsets, inlinedCall size
// and fields, and the moduledata offsets of minpc, text and gofunc. Releases
// known only from registry binaries are covered by those binaries' tests.
func TestLayoutMatchesRuntimeSource(t *testing.T) {
	for _, tc := range fixture.Toolchains(t) {
		t.Run(tc.Name, func(t *testing.T) {
			cmd := exec.Command(tc.GoCmd, "env", "GOROOT")
			cmd.Env = append(os.Environ(), tc.Env...)
			out, err := cmd.Output()
			if err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(strings.TrimSpace(string(out)), "src", "runtime")

			var magic pclntabMagic
			switch {
			case tc.Minor < 16:
				magic = magic12
			case tc.Minor < 18:
				magic = magic116
			case tc.Minor < 20:
				magic = magic118
			default:
				magic = magic120
			}
			l, err := layoutFor(GoVersion{Minor: tc.Minor}, magic)
			if err != nil {
				t.Fatal(err)
			}

			fn := structOffsets(t, dir, "_func", "")
			entryField := "entryoff"
			for _, name := range []string{"entryOff", "entry"} {
				if _, ok := fn[name]; ok {
					entryField = name
				}
			}
			want := map[string]int{entryField: l.fn.entry, "nameoff": l.fn.nameOff,
				"args": l.fn.args, "deferreturn": l.fn.deferreturn, "pcsp": l.fn.pcsp,
				"pcfile": l.fn.pcsp + 4, "pcln": l.fn.pcsp + 8, "npcdata": l.fn.pcsp + 12,
				"funcID": l.fn.funcID, "nfuncdata": l.fn.nfuncdata}
			if _, ok := fn["nameOff"]; ok {
				want["nameOff"] = want["nameoff"]
				delete(want, "nameoff")
			}
			// Fields a release does not have are -1 in the table and must be absent.
			for field, off := range map[string]int{"cuOffset": l.fn.cuOffset,
				"flag": l.fn.flag, "startLine": l.fn.startLine} {
				if off >= 0 {
					want[field] = off
				} else if got, ok := fn[field]; ok {
					t.Errorf("_func.%s at %d in the source, absent in the table", field, got)
				}
			}
			for field, off := range want {
				if got, ok := fn[field]; !ok || got != off {
					t.Errorf("_func.%s at %d in the source, %d in the table", field, got, off)
				}
			}

			// Before Go 1.18 the decoder reads nothing of moduledata (mdText is -1).
			if l.mdText >= 0 {
				md := structOffsets(t, dir, "moduledata", "gofunc")
				for field, off := range map[string]int{"minpc": moduledataMinPC,
					"text": l.mdText, "gofunc": l.mdGofunc} {
					if md[field] != off {
						t.Errorf("moduledata.%s at %d in the source, %d in the table", field,
							md[field], off)
					}
				}
			}

			inl := structOffsets(t, dir, "inlinedCall", "")
			nameField := "nameOff"
			if _, ok := inl["func_"]; ok {
				nameField = "func_"
			}
			if inl[nameField] != l.inl.nameOff || inl["parentPc"] != l.inl.parentPC ||
				inl["funcID"] != l.inl.funcID {
				t.Errorf("inlinedCall %v in the source, table %+v", inl, l.inl)
			}
		})
	}
}
