package audit_test

import (
	"debug/elf"
	"fmt"
	"testing"

	"github.com/preempttrace/preempttrace/internal/audit"
	"github.com/preempttrace/preempttrace/internal/fixture"
	"github.com/preempttrace/preempttrace/internal/safepoint"
	"github.com/preempttrace/preempttrace/internal/symtab"
)

func open(t *testing.T, path string) (*symtab.File, *safepoint.Rules) {
	t.Helper()
	f, err := symtab.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	rules, err := safepoint.For(f.Version())
	if err != nil {
		t.Fatal(err)
	}
	return f, rules
}

func find(rep *audit.ScanReport, name string) *audit.FuncRefusal {
	for i := range rep.Refusing {
		if rep.Refusing[i].Func == name {
			return &rep.Refusing[i]
		}
	}
	return nil
}

// TestFixtureVerdicts scans the spin fixture of every toolchain and variant:
// each loop gets the reason its construction implies, for that release.
func TestFixtureVerdicts(t *testing.T) {
	for _, c := range fixture.Matrix(t) {
		if c.Variant == fixture.Cgo {
			continue // TestCgo
		}
		t.Run(c.Name(), func(t *testing.T) {
			t.Parallel()
			f, rules := open(t, fixture.Build(t, c.Toolchain, "spin", c.Variant))
			rep := audit.Scan(f, rules)
			if rep.Undecodable != 0 {
				t.Fatalf("%d functions undecodable: %v", rep.Undecodable, rep.FirstError)
			}

			// Assembly without a locals map is refused everywhere.
			if r := find(rep, "main.asmSpin"); r == nil || r.Reason != safepoint.Assembly ||
				r.RefusedBytes != r.Size {
				t.Errorf("main.asmSpin: %+v, want all bytes assembly", r)
			}
			// NO_LOCAL_POINTERS assembly is still assembly to the runtime.
			if r := find(rep, "main.asmSpinNoPtrs"); r == nil ||
				r.Reason != safepoint.NoPointersStackmap || r.RefusedBytes != r.Size {
				t.Errorf("main.asmSpinNoPtrs: %+v, want all bytes no-pointers-stackmap", r)
			}
			// A nosplit function without calls is unsafe at every PC.
			if r := find(rep, "main.nosplitSpin"); r == nil || r.Reason != safepoint.UnsafePoint ||
				r.RefusedBytes != r.Size {
				t.Errorf("main.nosplitSpin: %+v, want all bytes unsafe-point", r)
			}
			// A plain loop is mostly safe: only the prologue refuses.
			plain, err := f.LookupFunc("main.plainSpin")
			if err != nil {
				t.Fatal(err)
			}
			if r := find(rep, "main.plainSpin"); r != nil && r.RefusedBytes*2 > plain.Size() {
				t.Errorf("main.plainSpin: %d of %d bytes refused", r.RefusedBytes, plain.Size())
			}
			// runtime.NumCPU inlined into a user loop refuses by the name rule. Before Go
			// 1.18 the arm64 compiler marked the whole inlined load (a multi-instruction
			// global access) unsafe, -2 in 1.14 and -3 later, and those releases refuse any
			// mark but safe before they look at names.
			if c.Variant.Arch() == "arm64" && c.Toolchain.Minor < 18 {
				if r := find(rep, "main.inlinedRuntime"); r == nil ||
					r.Reasons[safepoint.UnsafePoint] == 0 ||
					r.Reasons[safepoint.RuntimePackage] != 0 {
					t.Errorf("main.inlinedRuntime: %+v, want unsafe-point bytes only", r)
				}
				return
			}
			if r := find(rep, "main.inlinedRuntime"); r == nil ||
				r.Reasons[safepoint.RuntimePackage] == 0 {
				t.Errorf("main.inlinedRuntime: %+v, want runtime-package bytes", r)
			}
			checkInlinedFrame(t, f, rules)
		})
	}
}

// checkInlinedFrame: some PC of main.inlinedRuntime explains as refused by the
// name rule with runtime.NumCPU as the innermost frame.
func checkInlinedFrame(t *testing.T, f *symtab.File, rules *safepoint.Rules) {
	t.Helper()
	fn, err := f.LookupFunc("main.inlinedRuntime")
	if err != nil {
		t.Fatal(err)
	}
	for pc := fn.Entry; pc < fn.End; pc += f.PCQuantum() {
		e, err := audit.Explain(f, rules, hexs(pc), 0)
		if err != nil {
			break // padding
		}
		if e.Verdict.Reason == safepoint.RuntimePackage {
			inner := e.Info.Frames[0]
			if inner.Func != "runtime.NumCPU" || len(e.Info.Frames) != 2 ||
				e.Info.Frames[1].Func != "main.inlinedRuntime" {
				t.Errorf("frames at %#x: %+v", pc, e.Info.Frames)
			}
			return
		}
	}
	t.Error("no PC of main.inlinedRuntime refused by the runtime name rule")
}

func hexs(v uint64) string { return fmt.Sprintf("%#x", v) }

// TestCgo: C code linked into a Go binary is outside every Go function, and
// the runtime refuses there before looking at anything else.
func TestCgo(t *testing.T) {
	tc := fixture.Current(t)
	path := fixture.Build(t, tc, "spin", fixture.Cgo)
	f, rules := open(t, path)

	ef, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ef.Close()
	syms, err := ef.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	var cfunc uint64
	for _, s := range syms {
		if s.Name == "x_cgo_init" && elf.ST_TYPE(s.Info) == elf.STT_FUNC {
			cfunc = s.Value
		}
	}
	if cfunc == 0 {
		t.Fatal("no x_cgo_init in the cgo fixture")
	}
	e, err := audit.Explain(f, rules, hexs(cfunc), 0)
	if err != nil {
		t.Fatal(err)
	}
	if e.Info != nil || e.Verdict.Reason != safepoint.NotGoCode {
		t.Errorf("x_cgo_init at %#x: %+v, want not-go-code", cfunc, e.Verdict)
	}
	if rep := audit.Scan(f, rules); rep.Undecodable != 0 {
		t.Errorf("%d functions undecodable: %v", rep.Undecodable, rep.FirstError)
	}
}

func TestExplainTargets(t *testing.T) {
	f, rules := open(t, fixture.Build(t, fixture.Current(t), "spin", fixture.Default))
	fn, err := f.LookupFunc("main.plainSpin")
	if err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{"main.plainSpin", "main.plainSpin+0x0", hexs(fn.Entry)} {
		e, err := audit.Explain(f, rules, target, 0)
		if err != nil || e.PC != fn.Entry {
			t.Errorf("%s: pc %#x, %v; want %#x", target, e.PC, err, fn.Entry)
		}
	}
	// With a load bias, addresses are taken in the process's space.
	if e, err := audit.Explain(f, rules, hexs(fn.Entry+0x1000), 0x1000); err != nil ||
		e.PC != fn.Entry {
		t.Errorf("biased address: %v", err)
	}
	for _, bad := range []string{"main.nosuch", "0xzz", "main.plainSpin+0xfffffff"} {
		if _, err := audit.Explain(f, rules, bad, 0); err == nil {
			t.Errorf("%s explained", bad)
		}
	}
}
