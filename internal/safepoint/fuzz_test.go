package safepoint

import (
	"strconv"
	"testing"

	"github.com/preempttrace/preempttrace/internal/symtab"
)

// FuzzClassify checks invariants of the decision over arbitrary facts and
// states for every supported release: a refused attempt never resumes
// anywhere, an accepted one resumes at the PC or inside its restart window,
// and a refusal by a state rule never depends on the PC.
func FuzzClassify(f *testing.F) {
	f.Add(uint8(26), uint64(0x1010), true, int32(-1), uint64(0x1000), uint8(2), false, "main.f",
		uint8(0))
	f.Add(uint8(14), uint64(0x1010), true, int32(-2), uint64(0x1000), uint8(0), true, "runtime.x",
		uint8(0x55))
	f.Fuzz(func(t *testing.T, minor uint8, pc uint64, inGo bool, up int32, upStart uint64,
		locals uint8, asm bool, name string, state uint8) {
		v, err := symtab.ParseGoVersion("go1." + strconv.Itoa(int(minor)))
		if err != nil {
			return
		}
		r, err := For(v)
		if err != nil {
			return
		}
		facts := PC{PC: pc, InGoCode: inGo, Entry: pc &^ 0xfff, UnsafePoint: up,
			UnsafePointStart: upStart, LocalsMap: symtab.LocalsMap(locals % 3), Asm: asm,
			Innermost: name}
		st := State{Wanted: Tri(state % 3), UserGoroutine: Tri(state / 3 % 3),
			MPreemptible: Tri(state / 9 % 3), StackRoom: Tri(state / 27 % 3)}

		got := Classify(r, facts, st)
		switch {
		case !got.Accepted() && got.ResumePC != 0:
			t.Fatalf("refused (%s) with resume pc %#x", got.Reason, got.ResumePC)
		case got.Reason == Safe && got.ResumePC != pc:
			t.Fatalf("safe resumes at %#x, not at %#x", got.ResumePC, pc)
		case got.Reason == SafeRestart && !got.BadRestart && got.ResumePC > pc:
			t.Fatalf("restart at %#x beyond pc %#x", got.ResumePC, pc)
		}
		if got.Reason <= Secret && got.Reason >= NotWanted {
			other := facts
			other.InGoCode, other.UnsafePoint = !inGo, -1
			if again := Classify(r, other, st); again.Reason != got.Reason {
				t.Fatalf("state refusal %s changed to %s with other PC facts", got.Reason,
					again.Reason)
			}
		}
	})
}
