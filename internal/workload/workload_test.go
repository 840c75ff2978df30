package workload

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/preempttrace/preempttrace/internal/audit"
	"github.com/preempttrace/preempttrace/internal/safepoint"
	"github.com/preempttrace/preempttrace/internal/symtab"
)

// TestLoopsRefuseAsDocumented decodes the test binary, which contains the
// loops, and checks the reasons the package documentation promises.
func TestLoopsRefuseAsDocumented(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f, err := symtab.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rules, err := safepoint.For(f.Version())
	if err != nil {
		t.Fatal(err)
	}
	rep := audit.Scan(f, rules)

	const pkg = "github.com/preempttrace/preempttrace/internal/workload."
	want := map[string]safepoint.Reason{
		pkg + "asmLoop":                safepoint.Assembly,
		pkg + "noPointersLoop":         safepoint.NoPointersStackmap,
		pkg + "nosplitLoop":            safepoint.UnsafePoint,
		"runtime.memclrNoHeapPointers": safepoint.Assembly,
	}
	for _, r := range rep.Refusing {
		if reason, ok := want[r.Func]; ok {
			if r.Reason != reason || r.RefusedBytes != r.Size {
				t.Errorf("%s: %d of %d bytes refused, mostly %s; want all %s", r.Func,
					r.RefusedBytes, r.Size, r.Reason, reason)
			}
			delete(want, r.Func)
		}
	}
	for name := range want {
		t.Errorf("%s not found refusing", name)
	}
}

func TestRun(t *testing.T) {
	var out bytes.Buffer
	Run(&out, 50*time.Millisecond)
	for _, l := range Loops {
		if !strings.Contains(out.String(), " "+l.Name+"=") {
			t.Errorf("summary %q lacks %s", out.String(), l.Name)
		}
	}
}
