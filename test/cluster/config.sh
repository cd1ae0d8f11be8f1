# shellcheck shell=bash
# shellcheck disable=SC2034 # the variables are for the scripts that source this
# Where the one-node cluster lives and which loopback ports it uses; sourced
# by up.sh and down.sh so they cannot disagree. Fixed ports on purpose: a
# second control plane must fail (port in use), not attach to the first.
# shellcheck source=versions.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/versions.sh"

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
C="${NODED_CLUSTER_DIR:-$repo/_build/cluster}"
tools="$repo/_build/cluster-tools"
crictl="$repo/_build/tools/crictl"
noded_bin="${NODED_BIN:-$repo/bin/noded}"
registry_bin="${NODED_TESTREGISTRY_BIN:-$repo/bin/noded-testregistry}"
busybox_bin="$repo/_build/busybox/busybox"

node_name=noded-node
etcd_port=12379
etcd_peer_port=12380
apiserver_port=16443
kubelet_port=10250
kubelet_healthz_port=10248
kcm_port=10257
scheduler_port=10259
proxy_healthz_port=10256
proxy_metrics_port=10249
# Pods and services on private ranges, far from the usual defaults (and from
# critest's 10.213/16).
pod_cidr=10.214.0.0/24
service_cidr=10.215.0.0/24
service_ip=10.215.0.1
bridge=ndcluster0
# The node's IP, which the kubelet and the API server serve on (both refuse
# a loopback one: the node IP, the endpoint of the kubernetes Service). This
# host has no dummy links, so it is the pod bridge's gateway address (up.sh
# makes the bridge before anything starts; the bridge plugin adopts it):
# only the host and its pods can reach it. Everything else is on 127.0.0.1.
node_ip=10.214.0.1
# The kubelet's cgroup root, in each cgroup v1 hierarchy: the kubepods tree
# goes under it and down.sh removes it.
cgroup_root=noded-cluster
# Sysctls the kubelet (protectKernelDefaults=false) and kube-proxy may set:
# up.sh saves them, down.sh puts them back.
saved_sysctls=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
	kernel.keys.root_maxkeys kernel.keys.root_maxbytes net.ipv4.conf.all.route_localnet)

kubectl() { "$tools/kubectl" --kubeconfig "$C/kubeconfig" "$@"; }

say() { printf '[cluster] %s\n' "$*" >&2; }

# scenario_objects KIND/NAME...: for a scenario script: the node is Ready,
# none of the objects (pod/x, deployment/y, ...) is left from an earlier
# run, and they are deleted when the script exits, after the script's own
# scenario_cleanup function if it defines one.
scenario_objects() {
	kubectl wait --for=condition=Ready "node/$node_name" --timeout=60s >/dev/null ||
		die "node $node_name is not Ready"
	kubectl delete "$@" --ignore-not-found --wait=true >/dev/null
	scenario_objects_=("$@")
	trap scenario_exit_ EXIT
}
scenario_exit_() {
	if declare -F scenario_cleanup >/dev/null; then scenario_cleanup || true; fi
	kubectl delete "${scenario_objects_[@]}" --ignore-not-found --wait=false >/dev/null 2>&1 || true
}
# scenario_pod NAME: scenario_objects of one pod.
scenario_pod() { scenario_objects "pod/$1"; }
die() {
	say "ERROR: $*"
	exit 1
}

# cluster_start_noded: starts the cluster's noded (up.sh; restart.sh after
# stopping it) and records its PID. Needs noded-env.sh and NT_LAUNCH set.
cluster_start_noded() {
	local run_dir criu
	run_dir="$(cat "$C/run-dir")"
	local args=(--run-dir "$run_dir/run" --cgroup-manager cgroupfs --log-level debug --log-format text
		--seccomp-profile-root "$C/kubelet/seccomp")
	if criu="$(cluster_criu)"; then args+=(--criu-path "$criu"); fi
	nt_start_noded "$noded_bin" "$C/noded" "$run_dir/noded.sock" "$crictl" 60 "${args[@]}"
	record_pid noded "$NT_NODED_PID"
}

# cluster_criu: prints the CRIU the cluster's noded checkpoints with (the
# one test/criu/build-criu.sh caches, else criu on PATH), if `criu check`
# passes; fails otherwise.
cluster_criu() {
	local c
	for c in "${NODED_CRIU:-}" $(ls -d /var/cache/noded-test/criu-*/sbin/criu 2>/dev/null | sort -V | tail -n 1) \
		"$(command -v criu || true)"; do
		[[ -n "$c" && -x "$c" ]] || continue
		"$c" check >/dev/null 2>&1 && {
			echo "$c"
			return 0
		}
	done
	return 1
}

# cluster_lock "$@": runs the calling script under the lock of the
# machine's one cluster (/tmp/noded-cluster.lock: fixed ports, kube-proxy's
# iptables chains), waiting up to NODED_CLUSTER_LOCK_WAIT seconds (default
# 3600) for another user (a CI run, a developer's e2e-conformance) to
# finish. It re-executes the script under `flock -o`, so that the lock is
# held by flock alone: the daemons the script starts must not inherit it
# (they would keep it after the script). A caller that holds it already
# (`flock FILE make ...`, or NODED_CLUSTER_LOCKED set by the re-exec) goes
# on at once: taking it again would wait for itself.
cluster_lock_file=/tmp/noded-cluster.lock
cluster_lock() {
	local fd
	[[ -z "${NODED_CLUSTER_LOCKED:-}" ]] || return 0
	for fd in "/proc/$$/fd/"*; do
		[[ "$(readlink "$fd" 2>/dev/null)" == "$cluster_lock_file" ]] && return 0
	done
	if ! flock -n "$cluster_lock_file" true; then
		say "waiting for the cluster lock $cluster_lock_file (another cluster is in use)"
	fi
	exec env NODED_CLUSTER_LOCKED=1 flock -o -w "${NODED_CLUSTER_LOCK_WAIT:-3600}" "$cluster_lock_file" "$0" "$@"
}

# The daemons, in start order; down.sh stops them in reverse.
components=(registry noded etcd kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubelet)

# pid_alive NAME: the PID recorded for NAME is running and is still the
# process we started (same start time), not a reused PID.
pid_alive() {
	local f="$C/pids/$1" pid start now
	[[ -f "$f" ]] || return 1
	read -r pid start <"$f"
	[[ -n "$pid" && -r /proc/$pid/stat ]] || return 1
	now="$(awk '{ sub(/^.*\) /, ""); print $20 }' "/proc/$pid/stat" 2>/dev/null)"
	[[ "$now" == "$start" ]]
}

# record_pid NAME PID
record_pid() {
	local start
	start="$(awk '{ sub(/^.*\) /, ""); print $20 }' "/proc/$2/stat" 2>/dev/null)"
	mkdir -p "$C/pids"
	printf '%s %s\n' "$2" "$start" >"$C/pids/$1"
}
