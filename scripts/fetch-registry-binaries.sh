#!/usr/bin/env bash
# fetch-registry-binaries.sh downloads the Go binaries listed in
# testdata/registry/manifest.tsv. Each one ships inside an npm package; the
# script packs that package with `npm pack`, extracts only the binary and
# checks its sha256 before it moves the file into the cache.
#
# Usage:
#   scripts/fetch-registry-binaries.sh [ID...]   fetch all rows, or only IDs
#   scripts/fetch-registry-binaries.sh --list    print "id<TAB>cache path"
#   scripts/fetch-registry-binaries.sh --help
#
# Environment:
#   PREEMPTTRACE_REGISTRY_CACHE  cache directory
#                                (default: testdata/registry/cache/)
#
# A binary already in the cache with the right checksum is not fetched again,
# so the script can be run any number of times. It exits non-zero if any
# binary could not be fetched or has the wrong checksum.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
manifest="$repo_root/testdata/registry/manifest.tsv"
cache="${PREEMPTTRACE_REGISTRY_CACHE:-$repo_root/testdata/registry/cache}"

usage() {
	sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
}

die() {
	echo "fetch-registry-binaries: $*" >&2
	exit 1
}

# manifest_rows prints the data rows of the manifest: no comments, no blank
# lines, no header. Each row is checked to have exactly seven fields.
manifest_rows() {
	awk -F '\t' '
		/^#/ || /^[[:space:]]*$/ { next }
		!header { header = 1; next }
		NF != 7 {
			printf "manifest line %d: want 7 tab-separated fields, got %d\n", NR, NF > "/dev/stderr"
			bad = 1
			next
		}
		{ print }
		END { exit bad }
	' "$manifest"
}

# current_work is the scratch directory of the fetch in progress, removed on
# exit so that an interrupted run leaves nothing half-written in the cache.
current_work=
trap 'if [[ -n $current_work ]]; then rm -rf "$current_work"; fi' EXIT

sha256_of() {
	sha256sum "$1" | cut -d ' ' -f 1
}

# fetch_one packs spec into a fresh directory under the cache, extracts
# tar_path from the tarball and installs it as <cache>/<id> once its checksum
# matches. It returns non-zero, after saying why, when anything goes wrong.
fetch_one() {
	local id=$1 spec=$2 tar_path=$3 want=$4
	local work tarballs got size

	work=$(mktemp -d "$cache/.fetch.XXXXXX")
	current_work=$work

	# npm prints the tarball name on stdout and errors on stderr; keep the
	# errors for the message below.
	if ! (cd "$work" && npm pack --ignore-scripts --loglevel=error "$spec" >/dev/null 2>"$work/npm.log"); then
		echo "FAIL  $id: npm pack $spec:" >&2
		sed 's/^/      /' "$work/npm.log" >&2
		rm -rf "$work"
		return 1
	fi

	tarballs=("$work"/*.tgz)
	if [[ ${#tarballs[@]} -ne 1 || ! -f ${tarballs[0]} ]]; then
		echo "FAIL  $id: npm pack $spec left no single tarball" >&2
		rm -rf "$work"
		return 1
	fi
	size=$(stat -c %s "${tarballs[0]}")

	if ! tar -xzf "${tarballs[0]}" -C "$work" -- "$tar_path" 2>"$work/tar.log"; then
		echo "FAIL  $id: $tar_path is not in $spec:" >&2
		sed 's/^/      /' "$work/tar.log" >&2
		rm -rf "$work"
		return 1
	fi

	got=$(sha256_of "$work/$tar_path")
	if [[ $got != "$want" ]]; then
		echo "FAIL  $id: sha256 mismatch for $spec $tar_path" >&2
		echo "      want $want" >&2
		echo "      got  $got" >&2
		rm -rf "$work"
		return 1
	fi

	# Move into place only after the check, so a cached file is always good.
	chmod 0755 "$work/$tar_path"
	mv -f "$work/$tar_path" "$cache/$id"
	rm -rf "$work"
	current_work=
	printf 'got   %-42s %s (tarball %d KiB)\n' "$id" "$spec" $((size / 1024))
}

list_rows() {
	local rows id rest
	rows=$(manifest_rows) || die "bad manifest $manifest"
	while IFS=$'\t' read -r id rest; do
		printf '%s\t%s\n' "$id" "$cache/$id"
	done <<<"$rows"
}

main() {
	local -a only=()
	local arg

	for arg in "$@"; do
		case $arg in
		-h | --help)
			usage
			return 0
			;;
		--list)
			list_rows
			return 0
			;;
		-*)
			die "unknown option $arg (see --help)"
			;;
		*)
			only+=("$arg")
			;;
		esac
	done

	local tool
	for tool in npm tar sha256sum awk; do
		command -v "$tool" >/dev/null || die "$tool not found in PATH"
	done
	mkdir -p "$cache"
	cache=$(cd "$cache" && pwd)

	local rows
	rows=$(manifest_rows) || die "bad manifest $manifest"

	local id spec tar_path sha
	local failed=0 done_count=0 want_ids=" ${only[*]:-} "
	while IFS=$'\t' read -r id spec tar_path sha _; do
		if [[ ${#only[@]} -gt 0 && $want_ids != *" $id "* ]]; then
			continue
		fi
		done_count=$((done_count + 1))

		if [[ -f $cache/$id ]]; then
			if [[ $(sha256_of "$cache/$id") == "$sha" ]]; then
				printf 'ok    %-42s cached\n' "$id"
				continue
			fi
			printf 'stale %-42s wrong sha256 in cache, fetching again\n' "$id"
		fi
		if ! fetch_one "$id" "$spec" "$tar_path" "$sha"; then
			failed=$((failed + 1))
		fi
	done <<<"$rows"

	if [[ ${#only[@]} -gt 0 && $done_count -ne ${#only[@]} ]]; then
		die "some requested ids are not in $manifest: ${only[*]}"
	fi
	if [[ $failed -gt 0 ]]; then
		die "$failed of $done_count binaries failed"
	fi
	echo "all $done_count binaries in $cache"
}

main "$@"
