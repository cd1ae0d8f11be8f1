#!/usr/bin/env bash
# Installs what testing noded needs on a fresh Debian 12 (bookworm), on top
# of the build dependencies:
#   - Debian packages the tests and critest harness use (CNI plugins, ...);
#   - crictl and critest (cri-tools) built from the Go module proxy, plus
#     the ginkgo CLI that `critest --parallel N` (N > 1) runs;
#   - the linters `make lint` uses (staticcheck, golangci-lint);
#   - the static busybox the offline test images are made of.
# Everything goes into _build/tools/ (git-ignored) and is cached: a tool
# already there at the right version is not rebuilt, so re-runs are cheap
# and need no network.
#
# Environment:
#   NODED_TOOLS_DIR      where tools go            (default: _build/tools)
#   NODED_SKIP_LINTERS=1 do not build the linters  (they take minutes)
#   NODED_SKIP_CLUSTER_TOOLS=1  do not build etcd and the Kubernetes binaries
#   NODED_SKIP_E2E_TOOLS=1      do not build the e2e suite (e2e.test, agnhost)
#   NODED_SKIP_CRIU=1           do not build CRIU (test/criu/build-criu.sh)
set -euo pipefail

# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Pinned versions. cri-tools follows the CRI API minor it tests (k8s 1.37,
# as noded's k8s.io/cri-api v0.37.x).
CRI_TOOLS_VERSION=v1.37.0
STATICCHECK_VERSION=v0.8.2 # staticcheck 2026.2.2, supports Go 1.26
CHECKPOINTCTL_VERSION=v1.6.0
GOLANGCI_LINT_VERSION=v2.15.0

tools_dir="${NODED_TOOLS_DIR:-$NODED_REPO_ROOT/_build/tools}"

"$NODED_REPO_ROOT/scripts/install-build-deps.sh"
ensure_go

test_packages=(
	# CNI plugins (bridge, host-local, portmap, loopback, ...) in
	# /usr/lib/cni, one of noded's default plugin directories.
	containernetworking-plugins
	# The plugins program netfilter/links through these.
	iptables
	iproute2
	# crictl port-forward needs socat on the runtime side in some runtimes;
	# the tests use it as a tiny TCP client/server too.
	socat
	# findmnt, nsenter, unshare, flock, mount/umount: the harness cleans up
	# mounts and serialises tool builds with these.
	util-linux
	# pgrep/ps (procps) and fuser/pstree (psmisc) to inspect leftovers when a
	# test fails; nothing here kills by name.
	procps
	psmisc
	# The critest harness parses ginkgo's JSON report with jq.
	jq
	# The cluster scenarios: HTTP through kubectl port-forward (curl), a
	# pseudo-terminal for kubectl exec -it / attach -it (script, bsdutils).
	curl
	bsdutils
	# Script linting (make lint and developers).
	shellcheck
	# runc's seccomp build (cgo) for the benchmarks' containerd 2 peer
	# (test/bench/peer/build-containerd2.sh).
	libseccomp-dev
	pkg-config
	# cri-tools and busybox sources come as tarballs / over TLS.
	ca-certificates
	tar
	xz-utils
	bzip2
)
apt_install "${test_packages[@]}"

mkdir -p "$tools_dir"

# Temp dirs and half-built binaries go away however the script ends.
cri_tools_work=""
cleanup() {
	if [[ -n "$cri_tools_work" ]]; then
		rm -rf "$cri_tools_work"
	fi
	rm -f "$tools_dir"/*.new
}
trap cleanup EXIT

# Serialise tool builds: two engineers (or `make -j`) running this at once
# must not interleave writes into _build/tools. flock comes from util-linux.
exec {lock_fd}>"$tools_dir/.install.lock"
if ! flock -w 1800 "$lock_fd"; then
	die "timed out waiting for $tools_dir/.install.lock (another install-test-deps.sh running?)"
fi

# version_of prints the first line of `TOOL ARGS` output, or nothing if the
# tool is absent or fails; the caller matches the version in it.
version_of() {
	local bin=$1
	shift
	[[ -x "$bin" ]] || return 0
	"$bin" "$@" 2>/dev/null | head -n1 || true
}

# install_cri_tools builds crictl, critest and ginkgo from the cri-tools
# module. The module is on the Go module proxy but NOT in the checksum
# database, hence GONOSUMDB for it; its own go.sum pins everything else.
# The module cache is read-only, so the sources are copied to a temp dir
# where `go build` may update go.sum (-mod=mod).
install_cri_tools() {
	local want=${CRI_TOOLS_VERSION#v}
	local have_crictl have_critest have_ginkgo
	have_crictl="$(version_of "$tools_dir/crictl" --version)"
	have_critest="$(version_of "$tools_dir/critest" -version)"
	have_ginkgo="$(version_of "$tools_dir/ginkgo" version)"
	if [[ "$have_crictl" == "crictl version $want" &&
		"$have_critest" == "critest version: $want" &&
		-f "$tools_dir/ginkgo.cri-tools-version" &&
		"$(cat "$tools_dir/ginkgo.cri-tools-version")" == "$CRI_TOOLS_VERSION" &&
		"$have_ginkgo" == "Ginkgo Version "* ]]; then
		log "crictl, critest and ginkgo $CRI_TOOLS_VERSION already in $tools_dir"
		return 0
	fi

	log "building crictl and critest $CRI_TOOLS_VERSION from the Go module proxy (takes a few minutes)"
	local src dir work
	export GONOSUMDB=sigs.k8s.io/cri-tools
	# Keep the caller's GOFLAGS (e.g. -buildvcs=false) and add -mod=mod.
	export GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=mod"
	# Mirror cri-tools' Makefile: static, trimmed, version stamped in.
	export CGO_ENABLED=0
	src="$(cd /tmp && go mod download -json "sigs.k8s.io/cri-tools@$CRI_TOOLS_VERSION")" ||
		die "go mod download sigs.k8s.io/cri-tools@$CRI_TOOLS_VERSION failed"
	dir="$(jq -r '.Dir // empty' <<<"$src")"
	[[ -n "$dir" && -d "$dir" ]] || die "go mod download gave no Dir for cri-tools: $src"

	work="$(mktemp -d "${TMPDIR:-/tmp}/noded-cri-tools.XXXXXX")"
	cri_tools_work="$work" # removed by the EXIT trap, even on failure
	cp -r "$dir/." "$work/"
	chmod -R u+w "$work"

	local ldflags="-X sigs.k8s.io/cri-tools/pkg/version.Version=$want"
	# Build to temp names, then rename: an interrupted build never leaves a
	# half-written binary that the version check would then run.
	(cd "$work" && go build -trimpath -ldflags "$ldflags" -o "$tools_dir/crictl.new" ./cmd/crictl) ||
		die "building crictl failed"
	(cd "$work" && go test -c -trimpath -ldflags "$ldflags" -o "$tools_dir/critest.new" ./cmd/critest) ||
		die "building critest failed"
	# critest --parallel N>1 re-runs itself through the `ginkgo` CLI found on
	# PATH; build the one cri-tools pins so flags and reports match.
	(cd "$work" && go build -trimpath -o "$tools_dir/ginkgo.new" github.com/onsi/ginkgo/v2/ginkgo) ||
		die "building ginkgo failed"
	mv -f "$tools_dir/crictl.new" "$tools_dir/crictl"
	mv -f "$tools_dir/critest.new" "$tools_dir/critest"
	mv -f "$tools_dir/ginkgo.new" "$tools_dir/ginkgo"
	printf '%s\n' "$CRI_TOOLS_VERSION" >"$tools_dir/ginkgo.cri-tools-version"
	log "installed $("$tools_dir/crictl" --version 2>/dev/null), $("$tools_dir/critest" -version 2>/dev/null | head -n1), $("$tools_dir/ginkgo" version 2>/dev/null)"
}

# go_install_tool installs one Go command at a pinned version into
# $tools_dir unless `go version -m` says the binary there is that version.
go_install_tool() {
	local pkg=$1 module=$2 version=$3 name
	name="$(basename "$pkg")"
	if [[ -x "$tools_dir/$name" ]] &&
		go version -m "$tools_dir/$name" 2>/dev/null |
		awk -v m="$module" -v v="$version" '$1 == "mod" && $2 == m && $3 == v { found = 1 } END { exit !found }'; then
		log "$name $version already in $tools_dir"
		return 0
	fi
	log "building $name $version from the Go module proxy"
	# Outside the repo, so noded's go.mod plays no part.
	(cd /tmp && GOBIN="$tools_dir" go install "$pkg@$version") || die "go install $pkg@$version failed"
}

install_cri_tools
if [[ "${NODED_SKIP_LINTERS:-0}" != 1 ]]; then
	go_install_tool honnef.co/go/tools/cmd/staticcheck honnef.co/go/tools "$STATICCHECK_VERSION"
	go_install_tool github.com/golangci/golangci-lint/v2/cmd/golangci-lint github.com/golangci/golangci-lint/v2 "$GOLANGCI_LINT_VERSION"
else
	log "NODED_SKIP_LINTERS=1: not building staticcheck/golangci-lint"
fi

# The static busybox for the offline test images. The script is idempotent
# itself (it exits at once when the binary exists). Do not start it while
# another build of it is running: both would write the same cache.
busybox_script="$NODED_REPO_ROOT/test/images/build-busybox.sh"
if [[ ! -f "$busybox_script" ]]; then
	log "SKIP busybox: $busybox_script does not exist yet"
elif pgrep -f 'test/images/build-busybox\.sh' >/dev/null 2>&1; then
	log "SKIP busybox: build-busybox.sh is already running (pid $(pgrep -f 'test/images/build-busybox\.sh' | tr '\n' ' ')); re-run when it is done"
else
	bash "$busybox_script"
fi

# CRIU for the checkpoint/restore tests: bookworm's 3.17 fails `criu check`
# on current kernels, so 4.1 is built from trixie's source package and
# cached by version outside the clone (/var/cache/noded-test/criu-<v>):
# 40 s with an empty cache, nothing once cached. Idempotent and locked.
if [[ "${NODED_SKIP_CRIU:-0}" != 1 ]]; then
	"$NODED_REPO_ROOT/test/criu/build-criu.sh" >/dev/null
else
	log "NODED_SKIP_CRIU=1: not building CRIU"
fi
# checkpointctl reads noded's checkpoint archives in the checkpoint tests
# (v1.7.0 needs a go-criu the module proxy does not serve).
go_install_tool github.com/checkpoint-restore/checkpointctl github.com/checkpoint-restore/checkpointctl "$CHECKPOINTCTL_VERSION"

# The cluster test bed's etcd and Kubernetes binaries (test/cluster), built
# from the module proxy and cached by version outside the clone
# (/var/cache/noded-test): 14 min on 2 cores from an empty Go build cache
# (18 min of CPU; modules already downloaded), under a second once cached.
if [[ "${NODED_SKIP_CLUSTER_TOOLS:-0}" != 1 ]]; then
	"$NODED_REPO_ROOT/test/cluster/build-tools.sh"
	# Kubernetes' e2e suite for make e2e-conformance(-ci): e2e.test, agnhost
	# (its image) and ginkgo, from the same module and cache (7 min for
	# e2e.test with the cluster tools' build cache warm).
	if [[ "${NODED_SKIP_E2E_TOOLS:-0}" != 1 ]]; then
		"$NODED_REPO_ROOT/test/cluster/build-tools.sh" e2e.test agnhost ginkgo
	else
		log "NODED_SKIP_E2E_TOOLS=1: not building e2e.test, agnhost and ginkgo"
	fi
else
	log "NODED_SKIP_CLUSTER_TOOLS=1: not building the cluster tools"
fi

log "test dependencies present in $tools_dir"
