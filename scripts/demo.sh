#!/usr/bin/env bash
# demo.sh builds preempttrace and the spin fixture (an assembly loop, a
# NO_LOCAL_POINTERS assembly loop, a nosplit loop, a plain loop and a loop with
# runtime code inlined), then shows what scan and explain say about them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "== building preempttrace and the spin fixture"
go build -o "$out/preempttrace" ./cmd/preempttrace
(cd testdata/fixtures/spin && GOTOOLCHAIN=local GOWORK=off go build -o "$out/spin" .)

echo
echo "== preempttrace scan spin (top 10)"
"$out/preempttrace" scan --limit 10 "$out/spin"

echo
echo "== preempttrace explain spin: the five loops"
"$out/preempttrace" explain "$out/spin" main.asmSpin main.asmSpinNoPtrs main.nosplitSpin+0x8 \
	main.plainSpin+0x10 main.inlinedRuntime+0xc
