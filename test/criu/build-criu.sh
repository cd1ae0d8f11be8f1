#!/usr/bin/env bash
# Builds CRIU from Debian 13 (trixie)'s criu source package on Debian 12
# (bookworm), for the checkpoint/restore tests (issue 17).
#
# Why not bookworm's criu package: CRIU 3.17 fails `criu check` on current
# kernels (6.18 here: "vdso: Failed to fill self vdso symtable"); 4.1 works.
# Why not trixie's binary package: it would drag in trixie's libc and
# libraries. Only trixie's *source* is used: a deb-src-only entry in its own
# sources file, and a pin at -1 so apt never installs a trixie binary even if
# a binary index for trixie appears later. The build dependencies all come
# from bookworm.
#
# What is built is the upstream tarball of the source package (the .orig
# tarball, checked against the SHA256 in trixie's signed Sources index), with
# CRIU's own `make criu`: Debian's packaging needs trixie-only build
# dependencies (pybuild-plugin-pyproject, ...) and only builds the same
# binary plus crit/libcriu, which the tests do not use.
#
# Output, cached by version outside the clone so a fresh clone (CI) reuses it:
#   $NODED_TEST_CACHE/criu-<version>/sbin/criu        the binary
#   $NODED_TEST_CACHE/criu-<version>/runtime-packages the Debian packages of
#       the shared libraries it links (installed again on a cache hit when
#       the machine lacks them)
#   $NODED_TEST_CACHE/criu-<version>/BUILD-INFO       source, hash, build time
# The directory is printed on stdout (logs go to stderr). Idempotent: when the
# binary is there and runs, nothing is done (no apt, no network).
#
# Environment:
#   NODED_TEST_CACHE   cache root                    (default: /var/cache/noded-test)
#   CRIU_VERSION       upstream version to build     (default: 4.1.1; must be
#                      the one in trixie's Sources)
#   NODED_CRIU_JOBS    make -j                       (default: 2)
#   NODED_CRIU_FORCE=1 rebuild even if the cache is there
set -euo pipefail

# shellcheck source=../../scripts/lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"

CRIU_VERSION="${CRIU_VERSION:-4.1.1}"
cache_root="${NODED_TEST_CACHE:-/var/cache/noded-test}"
out="$cache_root/criu-$CRIU_VERSION"
jobs="${NODED_CRIU_JOBS:-2}"
src_list=/etc/apt/sources.list.d/noded-trixie-src.sources
pin_file=/etc/apt/preferences.d/noded-trixie-src

# From bookworm, for `make criu` (the list in CRIU's criu/Makefile.packages
# and Makefile.config, without what only crit, the docs or the plugins use).
build_deps=(
	build-essential pkg-config
	libprotobuf-dev libprotobuf-c-dev protobuf-c-compiler protobuf-compiler
	libnl-3-dev libnet1-dev libcap-dev uuid-dev
	# Optional features CRIU turns on when found: setproctitle/strlcpy,
	# TLS for page-server, nftables network locking.
	libbsd-dev libgnutls28-dev libnftables-dev
	# Fetching and unpacking the source.
	dpkg-dev xz-utils
)

work=""
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
	if [[ -n "$work" ]]; then
		rm -rf "$work"
	fi
	rm -rf "$out.new"
}
trap cleanup EXIT

# cache_ok says whether $out holds a criu of the wanted version that runs.
# A cache restored onto a machine without the shared libraries gets them
# installed (the package names were recorded at build time).
cache_ok() {
	local bin="$out/sbin/criu"
	[[ -x "$bin" ]] || return 1
	if ldd "$bin" 2>/dev/null | grep -q 'not found'; then
		[[ -s "$out/runtime-packages" ]] || return 1
		local pkgs=()
		mapfile -t pkgs <"$out/runtime-packages"
		log "$bin lacks shared libraries; installing ${pkgs[*]}"
		apt_install "${pkgs[@]}"
	fi
	"$bin" --version 2>/dev/null | grep -qx "Version: $CRIU_VERSION"
}

done_at() {
	log "criu $CRIU_VERSION is $out/sbin/criu"
	printf '%s\n' "$out"
	exit 0
}

if [[ "${NODED_CRIU_FORCE:-0}" != 1 ]] && cache_ok; then
	log "$out already holds criu $CRIU_VERSION; nothing to do (NODED_CRIU_FORCE=1 rebuilds)"
	done_at
fi

as_root mkdir -p "$cache_root"
# One build per version at a time (two clones, or parallel CI steps).
exec {lock_fd}>"$cache_root/.criu-$CRIU_VERSION.lock"
flock -w 3600 "$lock_fd" || die "timed out waiting for $cache_root/.criu-$CRIU_VERSION.lock"
if [[ "${NODED_CRIU_FORCE:-0}" != 1 ]] && cache_ok; then
	log "another run built $out meanwhile"
	done_at
fi

# --- trixie's Sources, and only them ---------------------------------------

[[ -f /usr/share/keyrings/debian-archive-trixie-stable.gpg ]] ||
	die "debian-archive-keyring has no trixie keys (need 2023.3+deb12u1 or later from bookworm): apt could not verify trixie's index"

# The mirror the machine already uses for bookworm, so the entry works
# behind the same proxy or on the same local mirror.
# shellcheck disable=SC2016 # apt's $(REPO_URI) format field, not the shell's
mirror="$(apt-get indextargets --format '$(REPO_URI)' 'Created-By: Packages' 'Release: bookworm' 2>/dev/null | head -n1 || true)"
mirror="${mirror:-http://deb.debian.org/debian/}"

# write_if_changed FILE CONTENT: installs FILE only when it differs, so a
# re-run neither touches apt's configuration nor forces an update.
write_if_changed() {
	local file=$1 content=$2
	if [[ -f "$file" && "$(cat "$file")" == "$content" ]]; then
		return 0
	fi
	log "writing $file"
	local tmp
	tmp="$(mktemp)"
	printf '%s\n' "$content" >"$tmp"
	as_root install -m 0644 "$tmp" "$file"
	rm -f "$tmp"
}

write_if_changed "$src_list" "# Written by noded's test/criu/build-criu.sh: trixie's source packages only,
# for \`apt-get source criu/trixie\`. No binary packages (see $pin_file).
Types: deb-src
URIs: $mirror
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"

write_if_changed "$pin_file" "# Written by noded's test/criu/build-criu.sh: never install a binary package
# from trixie on this bookworm machine; its sources are used by apt-get source only.
Package: *
Pin: release n=trixie
Pin-Priority: -1"

# source_uris prints apt's download list for trixie's criu: lines of
# 'URI' NAME SIZE SHA256:HASH (from the signed Sources index).
source_uris() {
	(cd / && apt-get source --print-uris -qq criu/trixie 2>&1)
}
if ! uris="$(source_uris)" || ! grep -q '\.orig\.tar' <<<"$uris"; then
	log "apt does not know trixie's criu source yet: apt-get update"
	as_root apt-get update -q >&2 || die "apt-get update failed"
	uris="$(source_uris)" || die "apt has no trixie source for criu (is trixie on $mirror?): apt-get source --print-uris criu/trixie said: $uris"
fi
orig_line="$(grep -E "^'[^']+' criu_[^ ]+\.orig\.tar\.[a-z0-9]+ " <<<"$uris" | head -n1 || true)"
[[ -n "$orig_line" ]] || die "no upstream tarball in trixie's criu source: $uris"
read -r _ orig_name _ orig_hash <<<"$orig_line"
orig_hash="${orig_hash#SHA256:}"
have_version="${orig_name#criu_}"
have_version="${have_version%.orig.tar.*}"
[[ "$have_version" == "$CRIU_VERSION" ]] ||
	die "trixie has criu $have_version, not $CRIU_VERSION: set CRIU_VERSION=$have_version (the cache is keyed by it)"

# --- fetch, build, install into the cache ---------------------------------

apt_install "${build_deps[@]}"

work="$(mktemp -d "${TMPDIR:-/tmp}/noded-criu.XXXXXX")"
# apt downloads as _apt when it can write there (no "unsandboxed" warning).
if [[ $EUID -eq 0 ]] && id _apt >/dev/null 2>&1; then
	chown _apt "$work"
fi
log "apt-get source --download-only criu/trixie (into $work)"
# Some mirrors serve only part of a source package (a proxy that has the
# .orig tarball but not the .dsc); the tarball is all this build needs, and
# its hash is checked below against the signed index.
if ! (cd "$work" && apt-get source --download-only -q criu/trixie >"$work/fetch.log" 2>&1); then
	log "apt-get source did not fetch every file of the source package (only the upstream tarball is needed):"
	grep -E '^(E|W):' "$work/fetch.log" >&2 || true
fi
[[ -f "$work/$orig_name" ]] || die "apt-get source did not fetch $orig_name: $(tail -n5 "$work/fetch.log")"
echo "$orig_hash  $work/$orig_name" | sha256sum -c --quiet - ||
	die "$orig_name does not match the SHA256 in trixie's Sources index"

src="$work/src"
mkdir -p "$src"
tar -C "$src" --strip-components=1 -xf "$work/$orig_name"

log "building criu $CRIU_VERSION with make -j$jobs (under a minute on 2 cores)"
start=$SECONDS
if ! make -C "$src" -j"$jobs" criu >"$work/build.log" 2>&1; then
	tail -n 40 "$work/build.log" >&2
	die "criu build failed (log above)"
fi
took=$((SECONDS - start))
log "build took ${took}s"
grep -E '^(Note|Warn):' "$work/build.log" >&2 || true

bin="$src/criu/criu"
"$bin" --version | grep -qx "Version: $CRIU_VERSION" ||
	die "built criu reports $("$bin" --version | head -n1), not $CRIU_VERSION"

# The packages of the libraries the binary links directly (their own
# dependencies follow from apt).
runtime_pkgs="$(objdump -p "$bin" | awk '$1 == "NEEDED" { print $2 }' |
	while read -r lib; do
		dpkg-query -S "*/$lib" 2>/dev/null | awk -F: '$1 !~ /-dev$/ { print $1; exit }'
	done | sort -u)"
[[ -n "$runtime_pkgs" ]] || die "could not map criu's shared libraries to Debian packages"

as_root rm -rf "$out.new"
as_root install -D -m 0755 "$bin" "$out.new/sbin/criu"
printf '%s\n' "$runtime_pkgs" | as_root tee "$out.new/runtime-packages" >/dev/null
as_root tee "$out.new/BUILD-INFO" >/dev/null <<EOF
criu $CRIU_VERSION built by noded's test/criu/build-criu.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ)
source: $orig_name from trixie's criu source package on $mirror
sha256: $orig_hash
make -j$jobs criu took ${took}s
EOF
as_root rm -rf "$out"
as_root mv "$out.new" "$out"

# For the log only: a kernel that lacks something fails the tests, not the
# build (CI may build on one machine and test on another).
if [[ $EUID -eq 0 ]]; then
	if check="$("$out/sbin/criu" check 2>&1)"; then
		log "criu check: ${check##*$'\n'}"
	else
		log "criu check FAILED on this machine (the tests will skip): $check"
	fi
fi
done_at
