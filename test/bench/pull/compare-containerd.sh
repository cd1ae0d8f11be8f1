#!/usr/bin/env bash
# One pull and 20 concurrent pulls of the benchmark image (test/bench/pull:
# ~150 MB uncompressed, 5 gzip layers), by Debian's containerd 1.6.20 (its
# CRI plugin) and by noded, both driven by crictl against the same
# in-process registry, alternating runs so that both see the same machine
# load. Prints one line per run; compare medians.
#
# Needs root, a built noded (make build: bin/noded, bin/noded-pause,
# bin/conmon-go) and _build/tools/crictl. containerd is not installed: its
# Debian package is downloaded with apt-get download and unpacked under
# the work directory, used, and removed.
#
#   test/bench/pull/compare-containerd.sh [runs]   (default 5)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
runs="${1:-5}"
crictl="$repo/_build/tools/crictl"
tags="containers_image_openpgp exclude_graphdriver_btrfs exclude_graphdriver_devicemapper"
[[ $EUID -eq 0 ]] || { echo "needs root" >&2; exit 1; }
[[ -x $crictl ]] || { echo "no $crictl: run scripts/install-test-deps.sh" >&2; exit 1; }
for b in noded noded-pause conmon-go; do
	[[ -x $repo/bin/$b ]] || { echo "no bin/$b: run make build" >&2; exit 1; }
done

work="$(mktemp -d /tmp/noded-vs-containerd-XXXXXX)"
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	grep " $work" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l || true
	rm -rf "$work"
}
trap cleanup EXIT

(cd "$work" && apt-get download containerd >/dev/null 2>&1 && dpkg-deb -x containerd_*.deb pkg)
"$work/pkg/usr/bin/containerd" --version

# The registry: the benchmark program in its registry mode, alive while fd 9 is open.
(cd "$repo" && PATH=/usr/local/go/bin:$PATH go build -tags "$tags" -o "$work/bench-pull" ./test/bench/pull)
mkfifo "$work/regin"
NODED_BENCH_PULL_REGISTRY=1 "$work/bench-pull" <"$work/regin" >"$work/reg.json" &
pids+=($!)
exec 9>"$work/regin"
for _ in $(seq 1 600); do [[ -s $work/reg.json ]] && break; sleep 0.1; done
host="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["host"])' "$work/reg.json")"
ref="$host/bench/big:1"

c="$work/containerd"
mkdir -p "$c"
cat >"$c/config.toml" <<EOF
version = 2
root = "$c/root"
state = "$c/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "$c/containerd.sock"
[plugins."io.containerd.grpc.v1.cri".cni]
  conf_dir = "$c/cni"
[plugins."io.containerd.grpc.v1.cri".registry.mirrors."$host"]
  endpoint = ["http://$host"]
EOF
"$work/pkg/usr/bin/containerd" -c "$c/config.toml" >"$c/log" 2>&1 &
pids+=($!)

n="$work/noded"
mkdir -p "$n"
printf '[[registry]]\nlocation = "%s"\ninsecure = true\n' "$host" >"$n/registries.conf"
echo '{"default":[{"type":"insecureAcceptAnything"}]}' >"$n/policy.json"
printf 'pause-path = "%s"\nconmon-path = "%s"\n' "$repo/bin/noded-pause" "$repo/bin/conmon-go" >"$n/noded.toml"
"$repo/bin/noded" --config "$n/noded.toml" --config-dir "" --listen "$n/noded.sock" --root "$n/root" \
	--runroot "$n/runroot" --run-dir "$n/rundir" --state-dir "$n/state" --cni-config-dir "$n/cni" \
	--registries-conf "$n/registries.conf" --signature-policy "$n/policy.json" >"$n/log" 2>&1 &
pids+=($!)

for sock in "$c/containerd.sock" "$n/noded.sock"; do
	for _ in $(seq 1 100); do "$crictl" -r "unix://$sock" version >/dev/null 2>&1 && break; sleep 0.1; done
done

drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }
seconds() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N); python3 -c "print('%.3f' % ($e-$s))"; }
pull() { "$crictl" --timeout 300s -r "unix://$1" -i "unix://$1" pull "$ref"; }
pull20() {
	local ps=()
	for _ in $(seq 1 20); do
		pull "$1" &
		ps+=($!)
	done
	wait "${ps[@]}"
}
rmi() { "$crictl" -r "unix://$1" -i "unix://$1" rmi "$ref" >/dev/null 2>&1; }
one() { drop; seconds pull "$1"; rmi "$1"; }
twenty() { drop; seconds pull20 "$1"; rmi "$1"; }

echo "image $ref; each pull after dropping the page cache; crictl pull"
for r in $(seq 1 "$runs"); do
	c1=$(one "$c/containerd.sock"); n1=$(one "$n/noded.sock")
	c20=$(twenty "$c/containerd.sock"); n20=$(twenty "$n/noded.sock")
	echo "run $r: one pull: containerd ${c1}s noded ${n1}s | 20 concurrent: containerd ${c20}s noded ${n20}s | loadavg $(cut -d' ' -f1 /proc/loadavg)"
done
