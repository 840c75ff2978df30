package probe

// The BPF objects are built from bpf/ by bpf2go and committed with their Go bindings, so
// that "go build" needs no C toolchain. Regenerating needs clang, llvm-strip and the libbpf
// and Linux UAPI headers (Debian bookworm: clang llvm libbpf-dev linux-libc-dev).
//
// The arm64 object is built so that the package compiles there, but PlanProbes refuses arm64
// targets until their call sites can be found (see checkTarget).

//go:generate go tool bpf2go -tags linux -target amd64,arm64 -type event -type verdict -type event_flag -type counter -type state_window bpf ../../bpf/preempttrace.bpf.c -- -Wall -Werror -I../../bpf -I../../bpf/headers
