package symtab

import (
	"slices"
	"testing"
)

func TestParseGoVersion(t *testing.T) {
	tests := []struct {
		raw          string
		minor, patch int
		experiments  []string
	}{
		{"go1.14", 14, 0, nil},
		{"go1.22.4", 22, 4, nil},
		{"go1.21rc2", 21, 0, nil},
		{"go1.26.8 X:nogreenteagc", 26, 8, []string{"nogreenteagc"}},
		{"go1.26.8-X:runtimesecret,nogreenteagc", 26, 8, []string{"runtimesecret", "nogreenteagc"}},
		{"devel go1.27-abcdef Tue Jan 1", 27, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			v, err := ParseGoVersion(tt.raw)
			if err != nil {
				t.Fatal(err)
			}
			if v.Minor != tt.minor || v.Patch != tt.patch || !slices.Equal(v.Experiments, tt.experiments) {
				t.Errorf("got minor %d patch %d experiments %q, want %d %d %q",
					v.Minor, v.Patch, v.Experiments, tt.minor, tt.patch, tt.experiments)
			}
			if v.Raw != tt.raw {
				t.Errorf("Raw = %q", v.Raw)
			}
		})
	}

	for _, bad := range []string{"", "go2.0", "go1.", "gccgo"} {
		if _, err := ParseGoVersion(bad); err == nil {
			t.Errorf("ParseGoVersion(%q) succeeded", bad)
		}
	}
}

func TestLayoutFor(t *testing.T) {
	// Every supported release has exactly one row, whose magic is the one the
	// release writes.
	for minor := MinGoMinor; minor <= MaxGoMinor; minor++ {
		var magic pclntabMagic
		for _, m := range []pclntabMagic{magic12, magic116, magic118, magic120} {
			if first, last, _ := m.minorRange(); minor >= first && minor <= last {
				magic = m
			}
		}
		if _, err := layoutFor(GoVersion{Minor: minor}, magic); err != nil {
			t.Errorf("go1.%d: %v", minor, err)
		}
	}

	if _, err := layoutFor(GoVersion{Minor: 13}, magic12); err == nil {
		t.Error("go1.13 accepted")
	}
	if _, err := layoutFor(GoVersion{Minor: MaxGoMinor + 1}, magic120); err == nil {
		t.Errorf("go1.%d accepted", MaxGoMinor+1)
	}
	if _, err := layoutFor(GoVersion{Minor: 22}, magic116); err == nil {
		t.Error("go1.22 with the 1.16 magic accepted")
	}
}
