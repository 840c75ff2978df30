#!/usr/bin/env bash
# test.sh runs every check of the project: formatting, vet, the unit, fixture
# and end-to-end tests, a short run of each fuzz target, and each benchmark
# once. It is the README's test command and what CI runs.
#
# Fixture tests build small programs with every installed Go toolchain and use
# the real binaries fetched from npm packages; scripts/install-toolchains.sh
# and scripts/fetch-registry-binaries.sh provide them. Without them those
# tests log what is missing, unless PREEMPTTRACE_E2E=1 makes that a failure.
#
# Environment: FUZZTIME (default 300000x: executions per fuzz target; a count, not a
# duration, because a time limit can end a busy fuzz worker with "context deadline
# exceeded" and fail the run for no fault of the code).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

fuzztime=${FUZZTIME:-300000x}

step() { printf '\n== %s\n' "$*"; }

step "gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go'))
if [[ -n $unformatted ]]; then
	echo "gofmt would change:" >&2
	echo "$unformatted" >&2
	exit 1
fi

step "go vet"
go vet ./...

step "generated eBPF objects are current"
generated=(internal/probe/bpf_x86_bpfel.go internal/probe/bpf_x86_bpfel.o
	internal/probe/bpf_arm64_bpfel.go internal/probe/bpf_arm64_bpfel.o)
if command -v clang >/dev/null; then
	before=$(sha256sum "${generated[@]}")
	go generate ./internal/probe
	if [[ $(sha256sum "${generated[@]}") != "$before" ]]; then
		echo "go generate changed the bpf2go output: commit the regenerated files" >&2
		exit 1
	fi
	echo "current"
elif [[ ${PREEMPTTRACE_E2E:-} == 1 ]]; then
	echo "clang is missing (scripts/install-toolchains.sh installs it)" >&2
	exit 1
else
	echo "skipped: no clang (scripts/install-toolchains.sh installs it)"
fi

step "go test"
go test -count=1 -timeout 40m ./...

step "fuzz ($fuzztime per target)"
for pkg in ./internal/symtab ./internal/safepoint; do
	for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
		echo "$pkg $target"
		go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg"
	done
done

step "benchmarks (each once)"
go test -run '^$' -bench . -benchtime 1x ./...
