package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/preempttrace/preempttrace/internal/fixture"
)

var cliPath string

// TestMain builds the command once, so tests run it as a user would.
func TestMain(m *testing.M) {
	runDeniedBPFLauncher()
	dir, err := os.MkdirTemp("", "preempttrace-cli")
	if err != nil {
		panic(err)
	}
	cliPath = filepath.Join(dir, "preempttrace")
	if out, err := exec.Command("go", "build", "-o", cliPath, ".").CombinedOutput(); err != nil {
		os.Stderr.Write(out)
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	stdout, stderr string
	code           int
}

func runCLI(t *testing.T, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(cliPath, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return result{stdout.String(), stderr.String(), cmd.ProcessState.ExitCode()}
}

func TestScanJSON(t *testing.T) {
	tc := fixture.Current(t)
	res := runCLI(t, "scan", "--json", fixture.Build(t, tc, "spin", fixture.Default))
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	var out struct {
		GoVersion string `json:"go_version"`
		Arch      string `json:"arch"`
		Functions int    `json:"functions"`
		Refusing  []struct {
			Func         string `json:"func"`
			Entry        string `json:"entry"`
			Size         uint64 `json:"size"`
			Reason       string `json:"reason"`
			RefusedBytes uint64 `json:"refused_bytes"`
		} `json:"refusing"`
		ByReason map[string]int `json:"by_reason"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &out); err != nil {
		t.Fatalf("%v in %.200s", err, res.stdout)
	}
	if out.GoVersion != tc.Version || out.Arch != "amd64" || out.Functions < 1000 {
		t.Errorf("header %q %q %d", out.GoVersion, out.Arch, out.Functions)
	}
	found := false
	for i, r := range out.Refusing {
		if i > 0 && r.RefusedBytes > out.Refusing[i-1].RefusedBytes {
			t.Fatalf("not sorted at %d", i)
		}
		if r.Func == "main.asmSpin" {
			found = r.Reason == "assembly" && strings.HasPrefix(r.Entry, "0x") && r.Size > 0
		}
	}
	if !found {
		t.Error("main.asmSpin missing or wrong")
	}
	if out.ByReason["assembly"] == 0 || out.ByReason["unsafe-point"] == 0 {
		t.Errorf("by_reason %v", out.ByReason)
	}
}

func TestExplainJSON(t *testing.T) {
	bin := fixture.Build(t, fixture.Current(t), "spin", fixture.Default)
	res := runCLI(t, "explain", "--json", bin, "main.asmSpinNoPtrs", "main.nosplitSpin+0x8", "0x1")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	var out []map[string]any
	if err := json.Unmarshal([]byte(res.stdout), &out); err != nil {
		t.Fatal(err)
	}
	if len(out) != 3 {
		t.Fatalf("%d objects", len(out))
	}
	want := []struct{ reason, locals string }{
		{"no-pointers-stackmap", "no_pointers_stackmap"},
		{"unsafe-point", "present"},
		{"not-go-code", ""},
	}
	for i, w := range want {
		o := out[i]
		if o["verdict"] != "refused" || o["reason"] != w.reason {
			t.Errorf("%d: verdict %v reason %v, want refused %s", i, o["verdict"], o["reason"], w.reason)
		}
		for _, key := range []string{"pc", "inlined", "unsafe_point", "flags", "func_id"} {
			if _, ok := o[key]; !ok {
				t.Errorf("%d: no %q", i, key)
			}
		}
		if w.locals != "" && o["locals_pointer_map"] != w.locals {
			t.Errorf("%d: locals_pointer_map %v", i, o["locals_pointer_map"])
		}
	}
	if out[0]["flags"] != "ASM" || out[0]["func"] != "main.asmSpinNoPtrs" {
		t.Errorf("asm function: %v", out[0])
	}
}

// TestBadInput: every bad input gets one line on stderr and a non-zero exit,
// never a panic.
func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	real, err := os.ReadFile(fixture.Build(t, fixture.Current(t), "spin", fixture.Default))
	if err != nil {
		t.Fatal(err)
	}
	cprog := filepath.Join(dir, "c")
	cmd := exec.Command("gcc", "-x", "c", "-o", cprog, "-")
	cmd.Stdin = strings.NewReader("int main(void) { return 0; }\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v: %s", err, out)
	}

	tests := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"missing file", []string{"scan", filepath.Join(dir, "nope")}, 1, "no such file"},
		{"C program", []string{"scan", cprog}, 1, "not a Go binary"},
		{"garbage", []string{"scan", write("garbage", bytes.Repeat([]byte{0xfb, 0xff}, 5000))},
			1, "ELF"},
		{"truncated", []string{"scan", write("truncated", real[:len(real)/3])}, 1, ""},
		{"headers only", []string{"explain", write("head", real[:4096]), "main.main"}, 1, ""},
		{"pre-1.14", []string{"scan", write("old", preGo114(t, real))}, 1, "Go 1.14"},
		{"no args", []string{"scan"}, 2, "need one BINARY"},
		{"bad flag", []string{"scan", "--nope"}, 2, "unknown flag"},
		{"no process", []string{"scan", "--pid", "999999999"}, 1, "no such process"},
		{"bad target", []string{"explain", cprog, "main.main"}, 1, "not a Go binary"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := runCLI(t, tt.args...)
			lines := strings.Split(strings.TrimRight(res.stderr, "\n"), "\n")
			if res.code != tt.code || len(lines) != 1 || !strings.Contains(res.stderr, tt.msg) ||
				strings.Contains(res.stderr, "goroutine") {
				t.Errorf("exit %d (want %d), stderr %q (want one line with %q)", res.code, tt.code,
					res.stderr, tt.msg)
			}
		})
	}
}

// preGo114 relabels a binary as built by go1.13: the same tables under an
// older version string, which must be refused by the release check.
func preGo114(t *testing.T, data []byte) []byte {
	t.Helper()
	i := bytes.Index(data, []byte("go1.26"))
	if i < 0 {
		t.Fatal("no version string")
	}
	return bytes.ReplaceAll(data, data[i:i+6], []byte("go1.13"))
}
