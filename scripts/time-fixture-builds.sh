#!/usr/bin/env bash
# time-fixture-builds.sh measures what the test fixtures cost a machine that has
# built none of them: it runs TestBuildMatrix of internal/fixture, which builds every
# (toolchain, variant) case of fixture.Matrix and its compiler listing, with an empty
# fixture cache and an empty Go build cache, and prints the time of each case and the
# total. Extra arguments go to "go test", e.g. -short for Go 1.26 only.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

export PREEMPTTRACE_FIXTURE_CACHE=$work/fixtures
export GOCACHE=$work/gocache

echo "time-fixture-builds: fixture cache and GOCACHE under $work"
start=$SECONDS
go test -count=1 -timeout 60m -run '^TestBuildMatrix$' -v "$@" ./internal/fixture |
	grep -E '^(--- |ok|FAIL)|^\s+--- |ready in'
echo "time-fixture-builds: cold build of the matrix took $((SECONDS - start))s"
