#!/usr/bin/env bash
# install-toolchains.sh installs every Go toolchain the fixture tests build with
# (internal/fixture), on Debian bookworm that already has Go 1.26 on PATH:
#
#   Go 1.19             golang-1.19-go from bookworm           /usr/lib/go-1.19/bin/go
#   Go 1.21, 1.22, 1.23 golang-1.2N-go from bookworm-backports /usr/lib/go-1.2N/bin/go
#   Go 1.14-1.18, 1.20, fetched by the go command from the     GOTOOLCHAIN=go1.N.P go
#   1.24, 1.25, 1.27    module proxy (FETCHED has the releases)
#
# plus the C toolchain that external linking and cgo need, and clang, llvm and
# the libbpf and kernel headers that `go generate` needs to rebuild the eBPF
# objects (scripts/test.sh checks that the committed ones are current).
#
# It is safe to run again:
# what is installed already is left alone, and apt runs only when something is
# missing, in which case the script must run as root.
set -euo pipefail

# FETCHED are the releases the go command downloads into its module cache; they
# must match the GOTOOLCHAIN values of internal/fixture/toolchain.go.
readonly FETCHED=(go1.14.15 go1.15.15 go1.16.15 go1.17.13 go1.18.10 go1.20.14 go1.24.13 go1.25.7
	go1.27.3)
readonly BACKPORTS_LIST=/etc/apt/sources.list.d/bookworm-backports.list
readonly PACKAGES=(
	golang-1.19-go golang-1.21-go golang-1.22-go golang-1.23-go
	gcc libc6-dev binutils
	clang llvm libbpf-dev linux-libc-dev
)

# npm fetches the registry fixtures (scripts/fetch-registry-binaries.sh); the
# machine's own Node.js may provide it, else Debian's package does.
readonly NPM_PACKAGE=npm

log() {
	echo "install-toolchains: $*"
}

# missing_packages prints the packages of PACKAGES that dpkg does not have installed.
missing_packages() {
	local pkg status
	for pkg in "${PACKAGES[@]}"; do
		status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
		if [[ $status != "install ok installed" ]]; then
			echo "$pkg"
		fi
	done
}

# has_backports reports whether some apt source already names bookworm-backports.
has_backports() {
	grep -rqs --include='*.list' --include='*.sources' 'bookworm-backports' \
		/etc/apt/sources.list /etc/apt/sources.list.d/
}

install_packages() {
	local missing
	mapfile -t missing < <(missing_packages)
	if [[ ${#missing[@]} -eq 0 ]]; then
		log "packages already installed: ${PACKAGES[*]}"
		return
	fi

	if [[ $EUID -ne 0 ]]; then
		log "must run as root to install: ${missing[*]}" >&2
		exit 1
	fi

	if has_backports; then
		log "bookworm-backports already in apt sources"
	else
		log "adding bookworm-backports to $BACKPORTS_LIST"
		echo 'deb http://deb.debian.org/debian bookworm-backports main' >"$BACKPORTS_LIST"
	fi

	log "apt-get update"
	apt-get update -q

	log "installing: ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# go_cmd prints the Go 1.26 command: the one on PATH, else the usual install path.
go_cmd() {
	if command -v go >/dev/null; then
		command -v go
	elif [[ -x /usr/local/go/bin/go ]]; then
		echo /usr/local/go/bin/go
	else
		log "no go command on PATH or in /usr/local/go/bin" >&2
		exit 1
	fi
}

# fetch_releases has the go command download each release of FETCHED, so that
# the tests find them in the module cache instead of downloading them mid-run.
fetch_releases() {
	local gocmd release
	gocmd=$(go_cmd)

	# Run outside any module so that no go.mod can ask for another toolchain. GOFLAGS
	# overrides any set with "go env -w": releases before 1.18 reject -buildvcs.
	for release in "${FETCHED[@]}"; do
		log "fetching $release with $gocmd (a no-op when the module cache has it)"
		(cd / && GOTOOLCHAIN=$release GOWORK=off GOFLAGS=-mod=mod "$gocmd" version)
	done
}

check_toolchains() {
	local minor
	for minor in 19 21 22 23; do
		log "go1.$minor: $(GOTOOLCHAIN=local "/usr/lib/go-1.$minor/bin/go" version)"
	done
	log "go1.26: $(cd / && GOTOOLCHAIN=local "$(go_cmd)" version)"

	local release
	for release in "${FETCHED[@]}"; do
		log "${release%.*}: $(cd / && GOTOOLCHAIN=$release GOFLAGS=-mod=mod "$(go_cmd)" version)"
	done
}

install_packages
fetch_releases
check_toolchains
log "done"
