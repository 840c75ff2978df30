package report

import "testing"

func TestShortName(t *testing.T) {
	for in, want := range map[string]string{
		"github.com/a/b/internal/workload.nosplitLoop": "workload.nosplitLoop",
		"runtime.(*gcControllerState).update":          "runtime.(*gcControllerState).update",
		"main.main":                                    "main.main",
		"internal/runtime/atomic.(*Int32).Load":        "atomic.(*Int32).Load",
		"example.com/m.T.method.func1":                 "m.T.method.func1",
		"a/b.F[go.shape.struct { x/y.T }]":             "b.F[go.shape.struct { x/y.T }]",
	} {
		if got := ShortName(in); got != want {
			t.Errorf("ShortName(%q) = %q, want %q", in, got, want)
		}
	}
}
