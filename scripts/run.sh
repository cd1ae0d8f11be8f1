#!/usr/bin/env bash
# The README's "run" command: builds noded and runs it in the foreground
# with its built-in defaults (socket /run/noded/noded.sock, storage under
# /var/lib/noded, CNI config from /etc/cni/net.d, ...). Extra arguments are
# passed to noded unchanged, e.g. `scripts/run.sh --log-level debug`.
#
# The node it leaves runs pods with no further step:
#   - the CNI plugins (Debian's containernetworking-plugins) are installed;
#   - noded itself writes its default bridge network into the CNI config
#     directory when that holds none (cni-default-network: 10.87.0.0/16,
#     and fd6e:6f64:6564::/64 when the host has IPv6);
#   - crictl is built into _build/tools unless one is on PATH, and
#     /etc/crictl.yaml points it at noded when there is no such file.
#
# NODED_TEST_REGISTRY=1 also serves the offline test images
# (bin/noded-testregistry: busybox, pause, ... under their original names,
# e.g. docker.io/library/busybox:1.37.0) and points noded's registries.conf
# at it, so the README's quick start works on a machine with no registry
# access. It stops with noded.
#
# noded manages mounts, namespaces and cgroups, so it must run as root.
set -euo pipefail

# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ $EUID -ne 0 ]]; then
	die "noded must run as root (it mounts, creates namespaces and cgroups); try: sudo $0 $*"
fi

"$NODED_REPO_ROOT/scripts/install-build-deps.sh"
# What pods need at run time: the CNI plugins (bridge, host-local, portmap
# in /usr/lib/cni, one of noded's default cni-plugin-dirs), which program
# the bridge's masquerading through iptables.
apt_install containernetworking-plugins iptables
ensure_go

cd "$NODED_REPO_ROOT"
log "make build"
make build

tools_dir="$NODED_REPO_ROOT/_build/tools"

# ensure_crictl builds crictl, at the version the tests use
# (install-test-deps.sh pins it), from the Go module proxy into
# _build/tools, unless crictl is on PATH or already built. Like
# install-test-deps.sh, it builds from a copy of the module (cri-tools is
# not in the checksum database, and its go.sum may need updating).
ensure_crictl() {
	local version want src dir work
	if command -v crictl >/dev/null 2>&1; then
		log "crictl: $(command -v crictl)"
		return 0
	fi
	version="$(sed -n 's/^CRI_TOOLS_VERSION=\([^ ]*\).*/\1/p' scripts/install-test-deps.sh)"
	[[ -n "$version" ]] || die "no CRI_TOOLS_VERSION in scripts/install-test-deps.sh"
	want="crictl version ${version#v}"
	if [[ -x "$tools_dir/crictl" && "$("$tools_dir/crictl" --version 2>/dev/null)" == "$want" ]]; then
		log "crictl: $tools_dir/crictl"
		return 0
	fi
	log "building crictl $version from the Go module proxy into $tools_dir (once)"
	mkdir -p "$tools_dir"
	src="$(cd /tmp && GONOSUMDB=sigs.k8s.io/cri-tools go mod download -json "sigs.k8s.io/cri-tools@$version")" ||
		die "go mod download sigs.k8s.io/cri-tools@$version failed"
	dir="$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' <<<"$src")"
	[[ -n "$dir" && -d "$dir" ]] || die "go mod download gave no Dir for cri-tools: $src"
	work="$(mktemp -d "${TMPDIR:-/tmp}/noded-crictl.XXXXXX")"
	cp -r "$dir/." "$work/"
	chmod -R u+w "$work"
	if ! (cd "$work" && CGO_ENABLED=0 GONOSUMDB=sigs.k8s.io/cri-tools GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=mod" \
		go build -trimpath -ldflags "-X sigs.k8s.io/cri-tools/pkg/version.Version=${version#v}" \
		-o "$tools_dir/crictl.new" ./cmd/crictl); then
		rm -rf "$work" "$tools_dir/crictl.new"
		die "building crictl failed"
	fi
	rm -rf "$work"
	mv -f "$tools_dir/crictl.new" "$tools_dir/crictl"
	log "crictl: $tools_dir/crictl"
}
ensure_crictl

# crictl finds noded with no flag, as it would after installing the
# package: /etc/crictl.yaml, when there is none and noded listens on its
# default socket (never pointing the host's crictl at a private one).
listen="$(bin/noded config "$@" 2>/dev/null | sed -n 's/^listen = "\(.*\)"$/\1/p')" || true
if [[ ! -e /etc/crictl.yaml && "$listen" == /run/noded/noded.sock ]]; then
	log "writing /etc/crictl.yaml (crictl talks to unix://$listen)"
	printf '%s\n' "# Written by noded's scripts/run.sh: crictl talks to noded." \
		"runtime-endpoint: unix://$listen" "image-endpoint: unix://$listen" "timeout: 30" >/etc/crictl.yaml
fi

if [[ "${NODED_TEST_REGISTRY:-0}" != 1 ]]; then
	log "starting bin/noded $* (Ctrl-C stops it)"
	# exec: noded becomes this process, so Ctrl-C / SIGTERM reach it
	# directly and it shuts down cleanly instead of being orphaned behind a
	# shell.
	exec "$NODED_REPO_ROOT/bin/noded" "$@"
fi

# The offline test registry: its images are made of a static busybox
# (built once from Debian's source package).
bash test/images/build-busybox.sh
reg_dir="$NODED_REPO_ROOT/_build/run-registry"
mkdir -p "$reg_dir"
rm -f "$reg_dir/ready"
bin/noded-testregistry --addr 127.0.0.1:0 --busybox _build/busybox/busybox \
	--registries-conf "$reg_dir/registries.conf" --ready-file "$reg_dir/ready" \
	--log "$reg_dir/registry.log" </dev/null &
reg_pid=$!
noded_pid=""
# The registry goes with noded, however this script ends.
# shellcheck disable=SC2317 # run by the EXIT trap
stop_all() {
	if [[ -n "$noded_pid" ]] && kill -0 "$noded_pid" 2>/dev/null; then
		kill -TERM "$noded_pid" 2>/dev/null || true
		wait "$noded_pid" 2>/dev/null || true
	fi
	kill -TERM "$reg_pid" 2>/dev/null || true
	wait "$reg_pid" 2>/dev/null || true
}
trap stop_all EXIT
for ((i = 0; i < 600; i++)); do
	[[ -s "$reg_dir/ready" ]] && break
	kill -0 "$reg_pid" 2>/dev/null || die "the test registry exited (log: $reg_dir/registry.log)"
	sleep 0.1
done
[[ -s "$reg_dir/ready" ]] || die "the test registry was not ready within 60s (log: $reg_dir/registry.log)"
log "test registry (pid $reg_pid) at $(head -n1 "$reg_dir/ready"), mirroring docker.io, registry.k8s.io, ... ($reg_dir/registries.conf)"

log "starting bin/noded --registries-conf $reg_dir/registries.conf $* (Ctrl-C stops it)"
# Not exec'd: the registry must be stopped after noded. SIGTERM and SIGINT
# are passed on to noded, which then shuts down as it would by itself.
trap 'kill -TERM "$noded_pid" 2>/dev/null || true' TERM INT
"$NODED_REPO_ROOT/bin/noded" --registries-conf "$reg_dir/registries.conf" "$@" &
noded_pid=$!
rc=0
# wait returns early (>128) when a trapped signal arrives: wait again
# until noded has exited.
while kill -0 "$noded_pid" 2>/dev/null; do
	wait "$noded_pid" && rc=0 || rc=$?
done
noded_pid=""
exit "$rc"
