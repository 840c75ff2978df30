package safepoint

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/preempttrace/preempttrace/internal/fixture"
	"github.com/preempttrace/preempttrace/internal/symtab"
)

// runtimeSource returns the body of runtime.isAsyncSafePoint in the source
// tree of tc.
func runtimeSource(t *testing.T, tc fixture.Toolchain) string {
	return sourceFunc(t, tc, "isAsyncSafePoint")
}

// sourceFunc returns the body of the named function (or "init") of
// runtime/preempt.go in the source tree of tc.
func sourceFunc(t *testing.T, tc fixture.Toolchain, name string) string {
	t.Helper()
	s := fixture.RuntimeSource(t, tc, "preempt.go")
	start := strings.Index(s, "\nfunc "+name+"(")
	if start < 0 {
		t.Fatalf("%s: no %s", tc, name)
	}
	end := strings.Index(s[start:], "\n}\n")
	return s[start : start+end]
}

var prefixCall = regexp.MustCompile(`[hH]asPrefix\(name, "([^"]+)"\)`)

// TestRulesMatchRuntimeSource reads isAsyncSafePoint in the source of every
// installed toolchain and checks the rule table against it: the name
// prefixes, the unsafe-point comparison, the ASM flag, the secret check, and
// the order of the checks that Classify keeps. Releases known only from
// registry binaries (no source here) are covered by the table alone.
func TestRulesMatchRuntimeSource(t *testing.T) {
	for _, tc := range fixture.Toolchains(t) {
		t.Run(tc.Name, func(t *testing.T) {
			body := runtimeSource(t, tc)
			v, err := symtab.ParseGoVersion(tc.Version)
			if err != nil {
				t.Fatal(err)
			}
			r, err := For(v)
			if err != nil {
				t.Fatal(err)
			}

			var prefixes []string
			for _, m := range prefixCall.FindAllStringSubmatch(body, -1) {
				prefixes = append(prefixes, m[1])
			}
			if !slices.Equal(prefixes, r.runtimePrefixes) {
				t.Errorf("source prefixes %q, table %q", prefixes, r.runtimePrefixes)
			}

			onlyUnsafe := regexp.MustCompile(`up == (abi\.UnsafePointUnsafe|_PCDATA_UnsafePointUnsafe)`)
			unlessSafe := regexp.MustCompile(`up != (abi\.UnsafePointSafe|_PCDATA_UnsafePointSafe)`)
			regMap := regexp.MustCompile(
				`smi := pcdatavalue\(f, _PCDATA_RegMapIndex, pc, nil\)\s+if smi == -2 `)
			// Go 1.15 keeps the register-map form behind go115ReduceLiveness, which it sets.
			if strings.Contains(body, "!go115ReduceLiveness") &&
				!strings.Contains(fixture.RuntimeSource(t, tc, "preempt.go"),
					"const go115ReduceLiveness = true") {
				t.Fatal("go115ReduceLiveness is not set: the register-map form is the live one")
			}
			want := map[unsafePointRule]bool{
				unsafeOnlyUnsafe: onlyUnsafe.MatchString(body),
				unsafeUnlessSafe: unlessSafe.MatchString(body),
				unsafeRegMap:     regMap.MatchString(body) && !unlessSafe.MatchString(body),
			}
			for rule, inSource := range want {
				if inSource != (r.unsafePoint == rule) {
					t.Errorf("unsafe-point rule %d: the source has the form of rule %d: %v",
						r.unsafePoint, rule, inSource)
				}
			}

			hasAsmFlag := strings.Contains(body, "FuncFlagAsm") || strings.Contains(body, "funcFlag_ASM")
			if hasAsmFlag != r.asmFlag {
				t.Errorf("source checks the ASM flag: %v, table: %v", hasAsmFlag, r.asmFlag)
			}
			hasSecret := strings.Contains(body, "RuntimeSecret")
			if hasSecret != (tc.Minor >= secretFirstMinor) {
				t.Errorf("source has the secret check: %v at go1.%d", hasSecret, tc.Minor)
			}

			// canPreemptM's extra curg check and the functions asyncPreemptStack sums.
			readsCurg := strings.Contains(sourceFunc(t, tc, "canPreemptM"), "mp.curg != nil")
			if readsCurg != r.CanPreemptMReadsCurG() {
				t.Errorf("canPreemptM checks curg: %v in the source, %v in the table", readsCurg,
					r.CanPreemptMReadsCurG())
			}
			initBody := sourceFunc(t, tc, "init")
			for _, fn := range []string{"asyncPreempt", "asyncPreempt2", "xRegRestore"} {
				inSource := strings.Contains(initBody, "funcMaxSPDelta(f"+fn+")") ||
					strings.Contains(initBody, "funcPC("+fn+")") ||
					strings.Contains(initBody, "abi.FuncPCABI0("+fn+")") ||
					strings.Contains(initBody, "abi.FuncPCABIInternal("+fn+")")
				inTable := slices.Contains(r.AsyncPreemptFuncs(), "runtime."+fn)
				if inSource != inTable {
					t.Errorf("asyncPreemptStack sums %s: %v in the source, %v in the table", fn,
						inSource, inTable)
				}
			}

			// The checks appear in the order Classify applies them. Go 1.14 read the
			// unsafe-point mark from the register-map index.
			unsafeMarker := "UnsafePoint"
			if r.unsafePoint == unsafeRegMap {
				unsafeMarker = "_PCDATA_RegMapIndex"
			}
			markers := []string{"mp.curg != gp", "canPreemptM", "asyncPreemptStack", "findfunc(pc)",
				unsafeMarker, "LocalsPointerMaps", "asPrefix(name"}
			last := -1
			for _, m := range markers {
				i := strings.Index(body, m)
				if i < 0 {
					t.Errorf("%q not in the source", m)
				} else if i < last {
					t.Errorf("%q is out of order in the source", m)
				}
				last = i
			}
		})
	}
}
