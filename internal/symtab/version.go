package symtab

import (
	"fmt"
	"strconv"
	"strings"
)

// VersionSource tells where a binary's Go version was read.
type VersionSource string

// The places a Go version can come from, most trustworthy first.
const (
	// VersionFromBuildInfo: .go.buildinfo, as `go version` reads it.
	VersionFromBuildInfo VersionSource = "buildinfo"
	// VersionFromSymbol: the runtime's own string, found through .symtab.
	VersionFromSymbol VersionSource = "runtime.buildVersion"
	// VersionFromScan: the one go1.N.P string in read-only data.
	VersionFromScan VersionSource = "string-scan"
)

// GoVersion is the toolchain release that built a binary.
type GoVersion struct {
	// Raw is the version exactly as the binary records it, for example
	// "go1.26.8 X:nogreenteagc".
	Raw string

	// Minor and Patch are N and P of go1.N.P. Patch is 0 for a release
	// candidate or an unpatched release.
	Minor, Patch int

	// Experiments are the non-default GOEXPERIMENT settings recorded after
	// "X:", which can change runtime struct layouts.
	Experiments []string

	// Source says where Raw was found.
	Source VersionSource
}

// String returns the version as the binary records it.
func (v GoVersion) String() string { return v.Raw }

// Release returns "go1.N.P" without experiments or pre-release suffixes.
func (v GoVersion) Release() string {
	return fmt.Sprintf("go1.%d.%d", v.Minor, v.Patch)
}

// HasExperiment reports whether GOEXPERIMENT name was enabled at build time.
func (v GoVersion) HasExperiment(name string) bool {
	for _, e := range v.Experiments {
		if e == name {
			return true
		}
	}
	return false
}

// ParseGoVersion parses a version string as the linker records it:
// "go1.22.4", "go1.21rc2", "go1.26.8 X:nogreenteagc", "go1.26.8-X:foo,bar" or
// "devel go1.27-abcdef … ".
func ParseGoVersion(raw string) (GoVersion, error) {
	v := GoVersion{Raw: raw}

	s := strings.TrimPrefix(raw, "devel ")
	if i := strings.Index(s, "X:"); i >= 0 {
		for _, e := range strings.Split(strings.Fields(s[i+2:] + " ")[0], ",") {
			if e != "" {
				v.Experiments = append(v.Experiments, e)
			}
		}
		s = s[:i]
	}

	if !strings.HasPrefix(s, "go1.") {
		return v, fmt.Errorf("parse Go version %q: no go1.N prefix", raw)
	}
	s = s[len("go1."):]

	minor, rest := leadingInt(s)
	if minor < 0 {
		return v, fmt.Errorf("parse Go version %q: no minor version", raw)
	}
	v.Minor = minor

	if strings.HasPrefix(rest, ".") {
		if patch, _ := leadingInt(rest[1:]); patch >= 0 {
			v.Patch = patch
		}
	}
	return v, nil
}

// leadingInt returns the decimal number at the start of s and what follows it,
// or -1 when s does not start with a digit.
func leadingInt(s string) (int, string) {
	i := 0
	for i < len(s) && i < 9 && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 {
		return -1, s
	}
	n, _ := strconv.Atoi(s[:i])
	return n, s[i:]
}
