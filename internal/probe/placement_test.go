package probe_test

import (
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/arch/x86/x86asm"

	"github.com/preempttrace/preempttrace/internal/fixture"
	"github.com/preempttrace/preempttrace/internal/probe"
	"github.com/preempttrace/preempttrace/internal/safepoint"
	"github.com/preempttrace/preempttrace/internal/symtab"
)

// TestPlanProbes places the probes in the spin fixture of every toolchain and variant and
// checks each site against the toolchain's own disassembly: the verdict probe must follow
// "CALL runtime.isAsyncSafePoint" with only flag-setting instructions or NOPs in between,
// the handled probe must follow "CALL runtime.doSigPreempt" in sighandler, and every site
// must be an instruction the kernel emulates.
func TestPlanProbes(t *testing.T) {
	for _, c := range fixture.Matrix(t) {
		t.Run(c.Name(), func(t *testing.T) {
			bin := fixture.Build(t, c.Toolchain, "spin", c.Variant)
			f, err := symtab.Open(bin)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			defer f.Close()

			plan, err := probe.PlanProbes(f)
			if c.Variant.Arch() != "amd64" {
				if !errors.Is(err, probe.ErrUnsupported) {
					t.Fatalf("PlanProbes on %s = %v, want ErrUnsupported", c.Variant.Arch(), err)
				}
				return
			}
			if err != nil {
				t.Fatalf("PlanProbes: %v", err)
			}

			if plan.Verdict == nil || plan.Handled == nil || len(plan.Missing) > 0 {
				t.Fatalf("sites missing: %q", plan.Missing)
			}
			for _, pl := range plan.Placements() {
				if pl.Emulated == (pl.Site == probe.SiteReturn) {
					t.Errorf("%s probe on %s: emulated %v", pl.Site, pl.Insn, pl.Emulated)
				}
				off, ok := f.FileOffset(pl.Addr)
				if !ok || off != pl.FileOffset {
					t.Errorf("%s probe: file offset %#x, symtab says %#x (%v)", pl.Site,
						pl.FileOffset, off, ok)
				}
			}

			// go tool objdump needs the symbol table; the code of a stripped build is that
			// of its unstripped twin, so the plans must agree.
			if twin, ok := unstripped[c.Variant]; ok {
				twinBin := fixture.Build(t, c.Toolchain, "spin", twin)
				checkSamePlan(t, plan, twinBin)
				return
			}

			listing := objdump(t, c.Toolchain, bin)
			// With the register ABI the results are in AX and BX, which only a test of AL
			// may come between; with the stack ABI they stay in their stack slots, and the
			// compiler's loads and compares of those slots may come first.
			keepsResults := regexp.MustCompile(`^(TESTL AL, AL|NOP[LW]?( .*)?)$`).MatchString
			if plan.ABI.OnStack {
				stackRead := regexp.MustCompile(`^(TESTL AL, AL|NOP[LW]?( .*)?|` +
					`MOV[A-Z]* 0x[0-9a-f]+\(SP\), [A-Z0-9]+|` +
					`CMP[BLQ] (0x[0-9a-f]+\(SP\), \$0x[0-9a-f]+|\$0x[0-9a-f]+, 0x[0-9a-f]+\(SP\)))$`)
				keepsResults = stackRead.MatchString
			}
			checkAfterCall(t, listing, "runtime.doSigPreempt", "runtime.isAsyncSafePoint",
				*plan.Verdict, keepsResults)
			checkAfterCall(t, listing, "runtime.sighandler", "runtime.doSigPreempt",
				*plan.Handled, straightLine)
			checkEntry(t, listing, plan.Entry)
			checkReturns(t, c.Toolchain, listing, plan, f.Version())
		})
	}
}

// checkReturns checks the return sites against the toolchain: each RET of isAsyncSafePoint
// in its disassembly is a site, at the line objdump gives, and the reason of each is that of
// the check whose return statement is at that line in the toolchain's runtime/preempt.go.
func checkReturns(t *testing.T, tc fixture.Toolchain, listing []objdumpLine, plan *probe.Plan,
	v symtab.GoVersion) {
	t.Helper()

	var rets []objdumpLine
	for _, l := range listing {
		if l.fn == "runtime.isAsyncSafePoint" && l.text == "RET" {
			rets = append(rets, l)
		}
	}
	if len(rets) != len(plan.Returns) {
		t.Fatalf("%d return sites, objdump lists %d RETs in isAsyncSafePoint", len(plan.Returns),
			len(rets))
	}
	for _, r := range rets {
		// Go 1.19's objdump prints no line of a PIE ("  :0"); the addresses still count.
		site, ok := plan.ReturnAt(r.addr)
		if !ok || r.line != 0 && site.Line != r.line {
			t.Errorf("RET at %#x, line %d: return site %+v (found %v)", r.addr, r.line, site, ok)
		}
	}

	want := sourceReturns(t, tc, v)
	if len(want) != len(plan.Returns) {
		t.Fatalf("%d return sites, the source has %d compiled return statements: %v",
			len(plan.Returns), len(want), want)
	}
	for i, site := range plan.Returns {
		t.Logf("return %#x line %d: %s", site.Addr, site.Line, site.Reason)
		if site.Line != want[i].line || site.Reason != want[i].reason {
			t.Errorf("return site %d: line %d %s, the source has line %d %s", i, site.Line,
				site.Reason, want[i].line, want[i].reason)
		}
	}
}

// sourceReturn is a return statement of isAsyncSafePoint in the runtime's source.
type sourceReturn struct {
	line   int
	reason safepoint.Reason
}

// returnMarkers name, by a fragment of its code, the check each "return false" closes, in
// the order of the source; the MIPS-only check is compiled out of amd64 builds.
var returnMarkers = []struct {
	code   string
	reason safepoint.Reason
	mips   bool
}{
	{code: "mp.curg != gp", reason: safepoint.NotUserGoroutine},
	{code: "canPreemptM(mp)", reason: safepoint.MBusy},
	{code: "asyncPreemptStack", reason: safepoint.StackSpace},
	{code: "RuntimeSecret", reason: safepoint.Secret},
	{code: "f.valid()", reason: safepoint.NotGoCode},
	{code: `GOARCH == "mips"`, mips: true},
	{code: "UnsafePoint", reason: safepoint.UnsafePoint},
	{code: "smi == -2", reason: safepoint.UnsafePoint},
	{code: "LocalsPointerMaps", reason: safepoint.Assembly},
	{code: "asPrefix(name", reason: safepoint.RuntimePackage},
}

// sourceReturns lists the return statements of isAsyncSafePoint in tc's runtime source that
// an amd64 build of version v keeps, with what each stands for: a "return false" the check
// whose code last precedes it, a "return true" a restart when it returns startpc or the
// entry, else safe.
func sourceReturns(t *testing.T, tc fixture.Toolchain, v symtab.GoVersion) []sourceReturn {
	t.Helper()
	rules, err := safepoint.For(v)
	if err != nil {
		t.Fatal(err)
	}
	secret := slices.Contains(rules.Returns(), safepoint.Secret)

	src := strings.Split(fixture.RuntimeSource(t, tc, "preempt.go"), "\n")
	start := slices.IndexFunc(src, func(l string) bool {
		return strings.HasPrefix(l, "func isAsyncSafePoint(")
	})
	if start < 0 {
		t.Fatalf("%s: no isAsyncSafePoint in runtime/preempt.go", tc)
	}

	// Where the unsafe-point check refuses every mark but safe (Go 1.15-1.17), the restart
	// returns after it cannot be reached, and the compiler drops them.
	var body strings.Builder
	for _, l := range src[start:] {
		if l == "}" {
			break
		}
		body.WriteString(l + "\n")
	}
	restartsDead := regexp.MustCompile(`up != (abi\.UnsafePointSafe|_PCDATA_UnsafePointSafe)`).
		MatchString(body.String())

	// Go 1.15 keeps the old forms behind constants it sets true: the branches they rule out
	// are compiled away with their returns.
	for _, name := range []string{"go115ReduceLiveness", "go115RestartSeq"} {
		if strings.Contains(body.String(), name) &&
			!regexp.MustCompile(`const `+name+` = (go115ReduceLiveness && )?true`).
				MatchString(fixture.RuntimeSource(t, tc, "preempt.go")) {
			t.Fatalf("%s: %s is not the constant true", tc, name)
		}
	}
	dead, inConstIf := false, ""

	var out []sourceReturn
	check := -1
	for i := start + 1; i < len(src) && src[i] != "}"; i++ {
		// The branches at the top level of the function that a constant rules out.
		switch line := src[i]; {
		case strings.HasPrefix(line, "\tif !go115ReduceLiveness {"):
			dead, inConstIf = true, "not"
		case strings.HasPrefix(line, "\tif go115RestartSeq {"):
			inConstIf = "if"
		case line == "\t} else {" && inConstIf != "":
			dead = inConstIf == "if"
		case line == "\t}" && inConstIf != "":
			dead, inConstIf = false, ""
		}
		if dead {
			continue
		}
		code, _, _ := strings.Cut(src[i], "//")
		for k, m := range returnMarkers {
			if strings.Contains(code, m.code) {
				check = k
			}
		}
		ret, ok := strings.CutPrefix(strings.TrimSpace(code), "return ")
		if !ok {
			continue
		}

		r := sourceReturn{line: i + 1}
		switch {
		case strings.HasPrefix(ret, "false"):
			if check < 0 {
				t.Fatalf("%s: return at line %d before any known check", tc, i+1)
			}
			m := returnMarkers[check]
			if m.mips || m.reason == safepoint.Secret && !secret {
				continue
			}
			r.reason = m.reason
		case strings.Contains(ret, "startpc") || strings.Contains(ret, "f.entry"):
			if restartsDead {
				continue
			}
			r.reason = safepoint.SafeRestart
		default:
			r.reason = safepoint.Safe
		}
		out = append(out, r)
	}
	return out
}

// TestPlanReturnsSecret checks the return sites of a build with GOEXPERIMENT=runtimesecret,
// whose isAsyncSafePoint has one more check, against its disassembly and source.
func TestPlanReturnsSecret(t *testing.T) {
	tc := fixture.Current(t)
	bin := fixture.Build(t, tc, "spin", fixture.Secret)
	f, err := symtab.Open(bin)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	defer f.Close()

	plan, err := probe.PlanProbes(f)
	if err != nil {
		t.Fatalf("PlanProbes: %v", err)
	}
	if !slices.ContainsFunc(plan.Returns, func(r probe.ReturnSite) bool {
		return r.Reason == safepoint.Secret
	}) {
		t.Fatalf("no return site for the secret check: %+v (missing: %q)", plan.Returns,
			plan.Missing)
	}
	checkReturns(t, tc, objdump(t, tc, bin), plan, f.Version())
}

// unstripped maps each stripped amd64 variant to the same build with symbols.
var unstripped = map[fixture.Variant]fixture.Variant{
	fixture.Stripped:            fixture.Default,
	fixture.ExternalPIEStripped: fixture.ExternalPIE,
}

// checkSamePlan checks that the binary at path gets the same probe addresses as plan.
func checkSamePlan(t *testing.T, plan *probe.Plan, path string) {
	t.Helper()

	f, err := symtab.Open(path)
	if err != nil {
		t.Fatalf("decode twin: %v", err)
	}
	defer f.Close()

	want, err := probe.PlanProbes(f)
	if err != nil {
		t.Fatalf("PlanProbes on twin: %v", err)
	}
	got, exp := plan.Placements(), want.Placements()
	if len(got) != len(exp) {
		t.Fatalf("%d sites, unstripped twin has %d", len(got), len(exp))
	}
	for i := range got {
		if got[i].Addr != exp[i].Addr || got[i].FileOffset != exp[i].FileOffset {
			t.Errorf("%s probe at %#x (file %#x), unstripped twin at %#x (file %#x)",
				got[i].Site, got[i].Addr, got[i].FileOffset, exp[i].Addr, exp[i].FileOffset)
		}
	}
}

// objdumpLine is one instruction of "go tool objdump" output.
type objdumpLine struct {
	fn   string
	line int
	addr uint64
	text string
}

var objdumpRE = regexp.MustCompile(`^\s+\S*:(\d+)\s+0x([0-9a-f]+)\s+[0-9a-f]+\s+(.*?)\s*$`)

// objdump disassembles the runtime functions the probes sit in with the toolchain that
// built bin. A
// stripped binary still has its pclntab, which is all go tool objdump needs.
func objdump(t *testing.T, tc fixture.Toolchain, bin string) []objdumpLine {
	t.Helper()

	cmd := exec.Command(tc.GoCmd, "tool", "objdump", "-s",
		`^runtime\.(doSigPreempt|sighandler|isAsyncSafePoint)$`, bin)
	cmd.Env = append(cmd.Environ(), tc.Env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go tool objdump: %v\n%s", err, out)
	}

	var lines []objdumpLine
	fn := ""
	for _, l := range strings.Split(string(out), "\n") {
		if name, ok := strings.CutPrefix(l, "TEXT "); ok {
			fn = strings.Fields(name)[0]
			fn = strings.TrimSuffix(fn, "(SB)")
			continue
		}
		m := objdumpRE.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		line, _ := strconv.Atoi(m[1])
		addr, _ := strconv.ParseUint(m[2], 16, 64)
		lines = append(lines, objdumpLine{fn: fn, line: line, addr: addr, text: m[3]})
	}
	if len(lines) == 0 {
		t.Fatalf("go tool objdump printed no instruction:\n%s", out)
	}
	return lines
}

// straightLine reports whether an instruction falls through to the next one.
func straightLine(text string) bool {
	return !strings.HasPrefix(text, "J") && !strings.HasPrefix(text, "CALL ") &&
		!strings.HasPrefix(text, "RET")
}

// checkAfterCall checks that pl is reached straight after "CALL callee(SB)" in fn, and that
// every instruction between the call and pl satisfies between.
func checkAfterCall(t *testing.T, listing []objdumpLine, fn, callee string, pl probe.Placement,
	between func(string) bool) {
	t.Helper()

	for i, l := range listing {
		if l.fn != fn || l.text != fmt.Sprintf("CALL %s(SB)", callee) {
			continue
		}

		for _, next := range listing[i+1:] {
			if next.addr == pl.Addr {
				return
			}
			if next.fn != fn || !between(next.text) {
				t.Fatalf("%s probe at %#x: %q between the call of %s and the probe", pl.Site,
					pl.Addr, next.text, callee)
			}
		}
	}
	t.Fatalf("%s probe at %#x: no \"CALL %s(SB)\" in %s precedes it", pl.Site, pl.Addr, callee,
		fn)
}

// checkEntry checks that the entry probe is the conditional jump of doSigPreempt's stack
// check, which only a compare precedes.
func checkEntry(t *testing.T, listing []objdumpLine, pl probe.Placement) {
	t.Helper()

	var body []objdumpLine
	for _, l := range listing {
		if l.fn == "runtime.doSigPreempt" {
			body = append(body, l)
		}
	}
	// Before Go 1.17 the function first loads g from thread-local storage into CX.
	for len(body) > 0 && strings.HasPrefix(body[0].text, "MOVQ ") &&
		strings.HasSuffix(body[0].text, ", CX") {
		body = body[1:]
	}
	// Go 1.19's objdump prints the operands of the compare the other way round.
	if len(body) < 2 || !strings.HasPrefix(body[0].text, "CMPQ ") ||
		!strings.Contains(body[0].text, "SP") ||
		body[1].addr != pl.Addr || !strings.HasPrefix(body[1].text, "JBE ") {
		t.Fatalf("entry probe at %#x is not the JBE after the stack check: %v", pl.Addr, body[:2])
	}
}

// TestPlanProbesRegistry places the probes in real programs built by Go releases that no
// local toolchain builds (npm packages, see testdata/registry). arm64 programs must be
// refused with ErrUnsupported; the others must get every site, emulated but for the RETs of
// isAsyncSafePoint, as many of those as the release has return statements, and those of
// releases before Go 1.17 the stack ABI at offsets the program's own code uses.
func TestPlanProbesRegistry(t *testing.T) {
	for _, rb := range fixture.Registry(t) {
		t.Run(rb.ID, func(t *testing.T) {
			// Releases before 1.14 have no asynchronous preemption; the decoder refuses them.
			f, err := symtab.Open(rb.Path)
			if v, verr := symtab.ParseGoVersion(rb.GoVersion); verr == nil && v.Minor < 14 &&
				errors.Is(err, symtab.ErrUnsupported) {
				t.Logf("refused by the decoder as expected: %v", err)
				return
			}
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			defer f.Close()

			plan, err := probe.PlanProbes(f)
			if f.Arch() != symtab.ArchAMD64 {
				if !errors.Is(err, probe.ErrUnsupported) {
					t.Fatalf("PlanProbes on %s = %v, want ErrUnsupported", f.Arch(), err)
				}
				t.Logf("refused as expected: %v", err)
				return
			}
			if err != nil {
				t.Fatalf("PlanProbes: %v", err)
			}

			if len(plan.Missing) > 0 {
				t.Fatalf("sites missing: %q", plan.Missing)
			}
			for _, pl := range plan.Placements() {
				t.Logf("%-7s %#x %-24s emulated=%v", pl.Site, pl.Addr, pl.Insn, pl.Emulated)
				if pl.Emulated == (pl.Site == probe.SiteReturn) {
					t.Errorf("%s probe on %s: emulated %v", pl.Site, pl.Insn, pl.Emulated)
				}
			}
			for _, r := range plan.Returns {
				t.Logf("return at line %d: %s", r.Line, r.Reason)
			}

			if want := f.Version().Minor < 17; plan.ABI.OnStack != want {
				t.Fatalf("Go %s: stack ABI %v, want %v", f.Version(), plan.ABI.OnStack, want)
			}
			if plan.ABI.OnStack {
				checkStackABI(t, f, plan)
			}
		})
	}
}

// checkStackABI checks the stack offsets of a stack-ABI plan against doSigPreempt's own
// code, which the compiler wrote for the same convention: its body reads gp and ctxt at
// their offsets above its frame, and between the call of isAsyncSafePoint and the verdict
// probe it reads ok, and newpc where the release returns it, at their offsets.
func checkStackABI(t *testing.T, f *symtab.File, plan *probe.Plan) {
	t.Helper()

	fn, err := f.LookupFunc("runtime.doSigPreempt")
	if err != nil {
		t.Fatal(err)
	}
	code := f.Bytes(fn.Entry, fn.Size())
	var frame int64 = -1
	body := map[string]bool{}
	var afterCall []string
	inCallWindow := false
	for off := 0; off < len(code); {
		inst, err := x86asm.Decode(code[off:], 64)
		if err != nil {
			break
		}
		pc := fn.Entry + uint64(off)
		text := x86asm.GoSyntax(inst, pc, nil)
		off += inst.Len

		// The frame is set up once, by the first SUBQ $n, SP.
		var n int64
		if _, err := fmt.Sscanf(text, "SUBQ $%v, SP", &n); err == nil && frame < 0 {
			frame = n
		}
		body[text] = true

		switch {
		case pc == plan.Verdict.Addr:
			inCallWindow = false
		case inCallWindow:
			afterCall = append(afterCall, text)
		case inst.Op == x86asm.CALL && plan.Verdict.Addr > pc &&
			plan.Verdict.Addr-pc <= 64:
			inCallWindow = true
		}
	}
	if frame < 0 {
		t.Fatalf("no SUBQ $n, SP in doSigPreempt")
	}

	reads := func(texts []string, off int64) bool {
		for _, s := range texts {
			if strings.Contains(s, fmt.Sprintf(" %#x(SP)", off)) {
				return true
			}
		}
		return false
	}
	var all []string
	for s := range body {
		all = append(all, s)
	}
	abi := plan.ABI
	if !reads(all, frame+int64(abi.GpOffset)) || !reads(all, frame+int64(abi.CtxtOffset)) {
		t.Errorf("frame %#x: doSigPreempt never reads gp at %#x(SP) or ctxt at %#x(SP)", frame,
			frame+int64(abi.GpOffset), frame+int64(abi.CtxtOffset))
	}
	if !reads(afterCall, int64(abi.OkOffset)) {
		t.Errorf("no read of ok at %#x(SP) between the call and the probe: %q", abi.OkOffset,
			afterCall)
	}
	if abi.NewpcOffset >= 0 && !reads(afterCall, int64(abi.NewpcOffset)) {
		t.Errorf("no read of newpc at %#x(SP) between the call and the probe: %q",
			abi.NewpcOffset, afterCall)
	}
}
