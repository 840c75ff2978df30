package safepoint

import (
	"testing"

	"github.com/preempttrace/preempttrace/internal/symtab"
)

func rulesFor(t *testing.T, raw string) *Rules {
	t.Helper()
	v, err := symtab.ParseGoVersion(raw)
	if err != nil {
		t.Fatal(err)
	}
	r, err := For(v)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// plain is an ordinary Go PC that every release accepts.
var plain = PC{PC: 0x1010, InGoCode: true, Entry: 0x1000, UnsafePoint: -1,
	LocalsMap: symtab.LocalsPresent, Innermost: "main.loop"}

func with(change func(*PC)) PC {
	pc := plain
	change(&pc)
	return pc
}

// The expectations below restate runtime/preempt.go of each release (see the
// package doc); live runtime verdicts check them end to end.
func TestClassifyByRelease(t *testing.T) {
	restart1 := with(func(p *PC) { p.UnsafePoint = -3; p.UnsafePointStart = 0x1008 })
	atEntry := with(func(p *PC) { p.UnsafePoint = -5 })
	regMap := with(func(p *PC) { p.UnsafePoint = 3 })
	internalRuntime := with(func(p *PC) { p.Innermost = "internal/runtime/atomic.(*Int32).Load" })
	runtimeInternal := with(func(p *PC) { p.Innermost = "runtime/internal/atomic.Load" })
	asmFlagOnly := with(func(p *PC) { p.Asm = true })

	tests := []struct {
		name    string
		version string
		pc      PC
		want    Reason
		resume  uint64
	}{
		{"plain", "go1.14", plain, Safe, 0x1010},
		{"plain", "go1.27.3", plain, Safe, 0x1010},
		{"not go", "go1.22.4", PC{PC: 0x10}, NotGoCode, 0},
		{"unsafe", "go1.14", with(func(p *PC) { p.UnsafePoint = -2 }), UnsafePoint, 0},
		{"unsafe", "go1.26.8", with(func(p *PC) { p.UnsafePoint = -2 }), UnsafePoint, 0},
		// 1.14 reads index 0 as the register map: indexes pass.
		{"regmap index", "go1.14.15", regMap, Safe, 0x1010},
		// 1.15–1.17 refuse everything but -1, so restarts never happen.
		{"restart refused", "go1.15.15", restart1, UnsafePoint, 0},
		{"restart refused", "go1.17.13", restart1, UnsafePoint, 0},
		{"restart", "go1.18", restart1, SafeRestart, 0x1008},
		{"restart at entry", "go1.22.1", atEntry, SafeRestart, 0x1000},
		{"asm nil map", "go1.16", with(func(p *PC) { p.LocalsMap = symtab.LocalsNil }), Assembly, 0},
		{"no_pointers", "go1.17", with(func(p *PC) { p.LocalsMap = symtab.LocalsNoPointersStackmap }),
			NoPointersStackmap, 0},
		{"no_pointers", "go1.26", with(func(p *PC) { p.LocalsMap = symtab.LocalsNoPointersStackmap }),
			NoPointersStackmap, 0},
		// The ASM flag counts only from 1.18, where it was introduced.
		{"asm flag", "go1.18", asmFlagOnly, Assembly, 0},
		{"asm flag ignored", "go1.17", asmFlagOnly, Safe, 0x1010},
		// The unsafe-point rule comes before the assembly rule.
		{"unsafe before asm", "go1.22", with(func(p *PC) {
			p.UnsafePoint = -2
			p.LocalsMap = symtab.LocalsNil
		}), UnsafePoint, 0},
		{"runtime name", "go1.19", with(func(p *PC) { p.Innermost = "runtime.add" }), RuntimePackage, 0},
		{"reflect name", "go1.25", with(func(p *PC) { p.Innermost = "reflect.Value.Int" }),
			RuntimePackage, 0},
		{"runtime/pprof is not runtime", "go1.22", with(func(p *PC) { p.Innermost = "runtime/pprof.x" }),
			Safe, 0x1010},
		// The prefix list gained internal/runtime/ in 1.23.8 and 1.24.2, and lost
		// runtime/internal/ in 1.25.
		{"internal/runtime before the backport", "go1.23.7", internalRuntime, Safe, 0x1010},
		{"internal/runtime from the backport", "go1.23.8", internalRuntime, RuntimePackage, 0},
		{"internal/runtime before the backport", "go1.24.1", internalRuntime, Safe, 0x1010},
		{"internal/runtime from the backport", "go1.24.2", internalRuntime, RuntimePackage, 0},
		{"runtime/internal with the backport", "go1.24.2", runtimeInternal, RuntimePackage, 0},
		{"internal/runtime without a backport", "go1.22.12", internalRuntime, Safe, 0x1010},
		{"internal/runtime from 1.25", "go1.25.0", internalRuntime, RuntimePackage, 0},
		{"runtime/internal before 1.25", "go1.23", runtimeInternal, RuntimePackage, 0},
		{"runtime/internal from 1.25", "go1.25", runtimeInternal, Safe, 0x1010},
	}
	for _, tt := range tests {
		t.Run(tt.version+"/"+tt.name, func(t *testing.T) {
			v := Classify(rulesFor(t, tt.version), tt.pc, State{})
			if v.Reason != tt.want || v.ResumePC != tt.resume {
				t.Errorf("got %s resume %#x, want %s resume %#x", v.Reason, v.ResumePC,
					tt.want, tt.resume)
			}
			if !v.StateUnchecked {
				t.Error("verdict without state does not say so")
			}
		})
	}
}

func TestClassifyStateOrder(t *testing.T) {
	r := rulesFor(t, "go1.26.8 X:runtimesecret")
	unsafe := with(func(p *PC) { p.UnsafePoint = -2 })
	all := State{Wanted: Yes, UserGoroutine: Yes, MPreemptible: Yes, StackRoom: Yes, InSecret: No}

	tests := []struct {
		name  string
		state func(*State)
		pc    PC
		want  Reason
	}{
		{"all clear", func(*State) {}, plain, Safe},
		{"not wanted first", func(s *State) { s.Wanted = No; s.UserGoroutine = No }, unsafe, NotWanted},
		{"g0 before M", func(s *State) { s.UserGoroutine = No; s.MPreemptible = No }, unsafe,
			NotUserGoroutine},
		{"M before stack", func(s *State) { s.MPreemptible = No; s.StackRoom = No }, unsafe, MBusy},
		{"stack before secret", func(s *State) { s.StackRoom = No; s.InSecret = Yes }, unsafe,
			StackSpace},
		{"secret before pc", func(s *State) { s.InSecret = Yes }, unsafe, Secret},
		{"pc rules last", func(*State) {}, unsafe, UnsafePoint},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := all
			tt.state(&st)
			v := Classify(r, tt.pc, st)
			if v.Reason != tt.want {
				t.Errorf("got %s, want %s", v.Reason, tt.want)
			}
			if v.StateUnchecked {
				t.Error("fully observed state reported as unchecked")
			}
		})
	}

	// Without the experiment the secret check is not compiled in.
	plainRules := rulesFor(t, "go1.26.8")
	st := all
	st.InSecret = Yes
	if v := Classify(plainRules, plain, st); v.Reason != Safe {
		t.Errorf("secret refused without GOEXPERIMENT=runtimesecret: %s", v.Reason)
	}
}

func TestBadRestart(t *testing.T) {
	pc := with(func(p *PC) { p.UnsafePoint = -4; p.UnsafePointStart = 0x1010 - 24 })
	v := Classify(rulesFor(t, "go1.22"), pc, State{})
	if v.Reason != SafeRestart || !v.BadRestart {
		t.Errorf("got %+v, want a bad restart", v)
	}
}

func TestForRange(t *testing.T) {
	for _, raw := range []string{"go1.13.15", "go1.28", "go1.2"} {
		v, _ := symtab.ParseGoVersion(raw)
		if _, err := For(v); err == nil {
			t.Errorf("%s accepted", raw)
		}
	}
}

func TestReasonIDs(t *testing.T) {
	for _, r := range Reasons() {
		back, err := ParseReason(r.String())
		if err != nil || back != r {
			t.Errorf("%d round-trips to %v, %v", r, back, err)
		}
	}
}
