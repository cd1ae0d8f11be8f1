#!/usr/bin/env bash
# Builds the second peer of the compare benchmarks from the Go module proxy,
# and only from there: containerd 2 (github.com/containerd/containerd/v2,
# cmd/containerd and cmd/containerd-shim-runc-v2) and runc
# (github.com/opencontainers/runc, with the seccomp build tag against
# Debian's libseccomp-dev, as runc's own release builds are).
#
# The binaries are cached outside the clone, keyed by version
# ($NODED_TEST_CACHE/containerd-<v>/bin, $NODED_TEST_CACHE/runc-<v>/bin), as
# test/cluster/build-tools.sh caches the cluster's; the Go build cache keeps
# compiled packages, so a build cut short resumes. The benchmarks
# (test/bench/peer) run this script when a binary is missing.
#
# Usage: build-containerd2.sh
# Environment:
#   NODED_TEST_CACHE     cache root          (default: /var/cache/noded-test)
#   CONTAINERD2_VERSION  containerd release  (default: v2.4.2)
#   RUNC_VERSION         runc release        (default: v1.4.3)
# Prints the two bin directories, containerd's first, on stdout.
set -euo pipefail

# shellcheck source=../../../scripts/lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/../../../scripts/lib.sh"
ensure_go

CONTAINERD2_VERSION="${CONTAINERD2_VERSION:-v2.4.2}"
RUNC_VERSION="${RUNC_VERSION:-v1.4.3}"
cache="${NODED_TEST_CACHE:-/var/cache/noded-test}"
ctr_dir="$cache/containerd-$CONTAINERD2_VERSION"
runc_dir="$cache/runc-$RUNC_VERSION"
mkdir -p "$ctr_dir/bin" "$runc_dir/bin"

[[ -z "$(apt_missing libseccomp-dev pkg-config)" ]] ||
	die "runc's seccomp build needs libseccomp-dev and pkg-config: run scripts/install-test-deps.sh"

exec {lock_fd}>"$cache/.build.lock"
flock -w 7200 "$lock_fd" || die "timed out waiting for $cache/.build.lock"

# Outside any repository: neither noded's go.mod nor a go.work applies.
export GOWORK=off GOTOOLCHAIN=local GOFLAGS=

# built_at BIN MODULE VERSION: BIN exists and `go version -m` says it was
# built from MODULE at VERSION (an interrupted build leaves only *.new).
built_at() {
	[[ -x "$1" ]] && go version -m "$1" 2>/dev/null |
		awk -v m="$2" -v v="$3" '$1 == "mod" && $2 == m && $3 == v { f = 1 } END { exit !f }'
}

# build DIR NAME MODULE VERSION PKG [go build flags...]
build() {
	local dir=$1 name=$2 module=$3 version=$4 pkg=$5 start
	shift 5
	if built_at "$dir/bin/$name" "$module" "$version"; then
		log "$name $version cached in $dir/bin"
		return 0
	fi
	start=$SECONDS
	log "building $name $version from the Go module proxy"
	rm -rf "$dir/gobin"
	# go install pkg@version builds in module mode from the proxy, with the
	# module's own go.mod; GOBIN gets the binary under the package's name.
	(cd / && GOBIN="$dir/gobin" nice -n 19 go install -trimpath "$@" "$pkg@$version") ||
		die "building $name failed"
	mv -f "$dir/gobin/$(basename "$pkg")" "$dir/bin/$name.new"
	mv -f "$dir/bin/$name.new" "$dir/bin/$name"
	rm -rf "$dir/gobin"
	log "built $name in $((SECONDS - start)) s"
}

ctr=github.com/containerd/containerd/v2
build "$ctr_dir" containerd "$ctr" "$CONTAINERD2_VERSION" "$ctr/cmd/containerd" \
	-tags "no_btrfs no_devmapper no_zfs" \
	-ldflags "-X $ctr/version.Version=$CONTAINERD2_VERSION -X $ctr/version.Revision=proxy"
# The shim is static, as containerd's release builds it.
CGO_ENABLED=0 build "$ctr_dir" containerd-shim-runc-v2 "$ctr" "$CONTAINERD2_VERSION" "$ctr/cmd/containerd-shim-runc-v2" \
	-ldflags "-X $ctr/version.Version=$CONTAINERD2_VERSION -X $ctr/version.Revision=proxy"
build "$runc_dir" runc github.com/opencontainers/runc "$RUNC_VERSION" github.com/opencontainers/runc \
	-tags seccomp \
	-ldflags "-X main.version=${RUNC_VERSION#v} -X main.gitCommit=proxy"
printf '%s\n%s\n' "$ctr_dir/bin" "$runc_dir/bin"
