# shellcheck shell=bash
# Helpers shared by the scripts in this directory. Source it; do not run it.
#
# Everything here is idempotent: a machine that already has what is needed
# is left alone and no network is used, so the scripts are cheap to re-run
# (test.sh runs them on every invocation).

# The minimum Go the module needs (go.mod says `go 1.26.0`). Kept here so the
# error message and the check cannot drift apart.
NODED_MIN_GO_MAJOR=1
NODED_MIN_GO_MINOR=26

# Repository root, whatever the caller's working directory.
NODED_REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export NODED_REPO_ROOT

# log/die prefix every line with the calling script's name, so interleaved
# output of nested scripts (test.sh -> install-test-deps.sh -> ...) stays
# readable in a CI log.
log() { printf '[%s] %s\n' "$(basename "$0" .sh)" "$*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}

# as_root runs a command as root: directly when we are root, through sudo
# otherwise (a developer's machine); fails clearly when neither is possible.
as_root() {
	if [[ $EUID -eq 0 ]]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@"
	else
		die "need root for: $* (run as root or install sudo)"
	fi
}

# ensure_go puts Go on PATH (the toolchain lives in /usr/local/go, which a
# non-login shell, e.g. CI or sudo, may not have on PATH) and checks that it
# is new enough. The PATH change only affects this script and its children,
# which is all we need: every script that needs go calls this.
ensure_go() {
	if ! command -v go >/dev/null 2>&1; then
		if [[ -x /usr/local/go/bin/go ]]; then
			export PATH="/usr/local/go/bin:$PATH"
		else
			die "Go not found: neither 'go' on PATH nor /usr/local/go/bin/go; install Go >= ${NODED_MIN_GO_MAJOR}.${NODED_MIN_GO_MINOR}"
		fi
	fi
	# `go env GOVERSION` is "go1.26.8" (or "go1.27rc1", "devel ..."); take the
	# first two numbers.
	local v major minor
	v="$(go env GOVERSION 2>/dev/null || true)"
	if [[ "$v" =~ ^go([0-9]+)\.([0-9]+) ]]; then
		major="${BASH_REMATCH[1]}"
		minor="${BASH_REMATCH[2]}"
	else
		die "cannot parse the Go version from 'go env GOVERSION' (got '$v'); need Go >= ${NODED_MIN_GO_MAJOR}.${NODED_MIN_GO_MINOR}"
	fi
	if ((major < NODED_MIN_GO_MAJOR || (major == NODED_MIN_GO_MAJOR && minor < NODED_MIN_GO_MINOR))); then
		die "Go $v at $(command -v go) is too old: noded needs Go >= ${NODED_MIN_GO_MAJOR}.${NODED_MIN_GO_MINOR}"
	fi
}

# apt_missing prints, one per line, those of the given Debian packages that
# are not installed. dpkg-query is local and fast, so callers can skip apt
# (and the network) entirely when nothing is missing.
apt_missing() {
	local p status
	for p in "$@"; do
		status="$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)"
		if [[ "$status" != installed ]]; then
			printf '%s\n' "$p"
		fi
	done
}

# apt_lists_usable says whether apt has package lists at all (a fresh Debian
# container image ships none, and then every install fails).
apt_lists_usable() {
	compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null
}

# apt_update runs `apt-get update` at most once per run of the outermost
# script: the flag is exported so nested scripts (install-test-deps.sh calls
# install-build-deps.sh) see it too.
apt_update() {
	if [[ "${NODED_APT_UPDATED:-0}" == 1 ]]; then
		return 0
	fi
	log "apt-get update"
	as_root apt-get update -q || die "apt-get update failed"
	export NODED_APT_UPDATED=1
}

# apt_install installs the packages that are missing. It only runs
# `apt-get update` when it has to: when apt has no lists, when a missing
# package has no install candidate in the current lists, or when the install
# fails on stale lists (a 404 for a superseded .deb). Recommends are not
# installed: we name everything we need, and recommends drag in a lot.
apt_install() {
	local missing=() p
	mapfile -t missing < <(apt_missing "$@")
	if ((${#missing[@]} == 0)); then
		return 0
	fi
	log "installing Debian packages: ${missing[*]}"
	if ! apt_lists_usable; then
		apt_update
	else
		for p in "${missing[@]}"; do
			if ! apt-cache policy "$p" 2>/dev/null | grep -q 'Candidate: [^(]'; then
				apt_update
				break
			fi
		done
	fi
	# DEBIAN_FRONTEND keeps debconf from prompting (CI has no stdin).
	if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"; then
		if [[ "${NODED_APT_UPDATED:-0}" == 1 ]]; then
			die "apt-get install ${missing[*]} failed"
		fi
		log "apt-get install failed; refreshing the package lists and retrying once"
		apt_update
		as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" ||
			die "apt-get install ${missing[*]} failed"
	fi
}
