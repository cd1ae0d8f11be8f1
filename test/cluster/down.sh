#!/usr/bin/env bash
# Stops the one-node cluster of up.sh and leaves nothing behind: it stops
# every daemon by the PID up.sh recorded (never by name), lets the kubelet
# and noded remove the pods first, kills any container process still using
# the cluster's dirs, unmounts them, deletes the bridge, the KUBE-* iptables
# chains, the portmap plugin's idle CNI-HOSTPORT-* chains and the kubelet's
# cgroups, restores the sysctls up.sh saved, then
# checks that none of that is left. Safe to run twice and after a crash.
# The daemons' logs are kept in _build/cluster-logs/.
set -uo pipefail

# shellcheck source=config.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/config.sh"
# shellcheck source=noded-env.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/noded-env.sh"

[[ $EUID -eq 0 ]] || die "must run as root"
if [[ ! -d "$C" ]]; then
	say "no cluster in $C"
	exit 0
fi
run_dir="$(cat "$C/run-dir" 2>/dev/null || true)"
[[ -z "$run_dir" || "$run_dir" == /run/ndcl.* ]] || die "unexpected run dir '$run_dir' in $C/run-dir"
sock="$run_dir/noded.sock"

# stop NAME [TIMEOUT]: the recorded PID, if it is still the process up.sh
# started (a reused PID is left alone).
stop() {
	local pid
	if pid_alive "$1"; then
		read -r pid _ <"$C/pids/$1"
		nt_stop_pid "$pid" "$1" "${2:-20}"
	elif [[ -f "$C/pids/$1" ]]; then
		say "$1 is not running"
	fi
	rm -f "$C/pids/$1"
}

# 1. No new pods: the controllers and the scheduler go first; then the
# pods are deleted while the kubelet and noded can still stop them cleanly.
stop kube-controller-manager
stop kube-scheduler
if pid_alive kube-apiserver && pid_alive kubelet && [[ -x "$tools/kubectl" ]]; then
	say "deleting all pods"
	kubectl delete pods --all --all-namespaces --grace-period=5 --timeout=60s --request-timeout=70s >&2 ||
		say "warning: not every pod was deleted in time; noded removes the rest"
fi
stop kubelet
# 2. What the kubelet left (or everything, if it had died): noded removes it.
if pid_alive noded && [[ -x "$crictl" && -S "$sock" ]]; then
	crictl_=("$crictl" --runtime-endpoint "unix://$sock" --image-endpoint "unix://$sock" --timeout 30s)
	if [[ -n "$("${crictl_[@]}" pods -q 2>/dev/null)" ]]; then
		say "removing the pods the kubelet left"
		"${crictl_[@]}" rmp -af >&2 || say "warning: crictl rmp -af failed"
	fi
fi
stop kube-proxy
# kube-proxy's own clean-up mode removes its KUBE-* chains and rules.
if [[ -x "$tools/kube-proxy" ]] && iptables-save 2>/dev/null | grep -q KUBE-; then
	"$tools/kube-proxy" --cleanup >>"$C/logs/kube-proxy-cleanup.log" 2>&1 ||
		say "warning: kube-proxy --cleanup failed (see $C/logs/kube-proxy-cleanup.log)"
fi
stop noded 30
stop kube-apiserver
stop etcd
stop registry

# 3. Container processes and monitors outlive noded by design; kill what
# still uses the cluster's dirs.
dirs=("$C")
[[ -z "$run_dir" ]] || dirs+=("$run_dir")
nt_kill_leftovers "${dirs[@]}"

# 4. Mounts (overlays, shm, pinned netns, the kubelet's volume tmpfs).
left=()
for d in "${dirs[@]}"; do
	mapfile -t -O "${#left[@]}" left < <(nt_unmount_under "$d")
done

# 5. Network: the bridge, and every KUBE-* chain (the kubelet's
# KUBE-FIREWALL, KUBE-IPTABLES-HINT and KUBE-KUBELET-CANARY; any kube-proxy
# left) in every table, for IPv4 and IPv6. Jumps to them go first.
ip link show "$bridge" >/dev/null 2>&1 && { ip link del "$bridge" || say "warning: could not delete bridge $bridge"; }
for ipt in iptables ip6tables; do
	command -v "$ipt" >/dev/null 2>&1 || continue
	for table in filter nat mangle raw; do
		"$ipt-save" -t "$table" 2>/dev/null | grep -q 'KUBE-' || continue
		# Rules in built-in chains that jump to KUBE-*: delete by spec.
		"$ipt-save" -t "$table" 2>/dev/null | awk '/^-A (INPUT|OUTPUT|FORWARD|PREROUTING|POSTROUTING) .*-j KUBE-/' |
			while read -r _ chain rest; do
				# shellcheck disable=SC2086 # the rule spec is split as iptables-save wrote it
				eval "\"$ipt\" -t \"$table\" -D \"$chain\" $rest" 2>/dev/null
			done
		mapfile -t chains < <("$ipt-save" -t "$table" 2>/dev/null | awk '/^:KUBE-/ { print substr($1, 2) }')
		for ch in "${chains[@]}"; do "$ipt" -t "$table" -F "$ch" 2>/dev/null; done
		for ch in "${chains[@]}"; do "$ipt" -t "$table" -X "$ch" 2>/dev/null; done
	done
done
# The portmap plugin's shared chains, which no CNI DEL removes.
nt_remove_idle_hostport_chains

# 6. The kubelet's cgroup tree (empty now), deepest first, in every hierarchy.
for h in /sys/fs/cgroup/*/; do
	[[ -d "$h$cgroup_root" ]] || continue
	find "$h$cgroup_root" -depth -type d -exec rmdir {} + 2>/dev/null
done

# 7. The kubelet's /var/log/containers symlinks into our pod logs.
if [[ -d /var/log/containers ]]; then
	find /var/log/containers -maxdepth 1 -type l -lname "$C/*" -delete 2>/dev/null
	[[ -f "$C/made-var-log-containers" ]] && rmdir /var/log/containers 2>/dev/null
fi

# The device manager's socket (fixed path), and its dirs if up.sh made them.
[[ -S /var/lib/kubelet/device-plugins/kubelet.sock ]] && rm -f /var/lib/kubelet/device-plugins/kubelet.sock
if [[ -f "$C/made-var-lib-kubelet" ]]; then
	rmdir /var/lib/kubelet/device-plugins /var/lib/kubelet 2>/dev/null
fi

# 8. Sysctls back as they were.
if [[ -f "$C/sysctls.saved" ]]; then
	while IFS='=' read -r k v; do
		[[ -n "$k" && "$(sysctl -n "$k" 2>/dev/null)" != "$v" ]] || continue
		sysctl -q -w "$k=$v" >/dev/null || say "warning: could not restore $k=$v"
	done <"$C/sysctls.saved"
fi

# 9. Check that nothing is left, then delete the dirs (never through a mount).
problems=()
mapfile -t procs < <(nt_leftover_pids "${dirs[@]}")
((${#procs[@]} == 0)) || problems+=("processes still running: ${procs[*]}")
for d in "${dirs[@]}"; do
	mapfile -t m < <(nt_mounts_under "$d")
	((${#m[@]} == 0)) || problems+=("still mounted: ${m[*]}")
done
if iptables-save 2>/dev/null | grep -q 'KUBE-'; then problems+=("KUBE-* iptables rules left"); fi
if ip link show "$bridge" >/dev/null 2>&1; then problems+=("bridge $bridge left"); fi
if [[ -f "$C/made-var-lib-kubelet" && -e /var/lib/kubelet ]]; then problems+=("/var/lib/kubelet left"); fi
if [[ -f "$C/made-var-log-containers" && -e /var/log/containers ]]; then problems+=("/var/log/containers left"); fi
for h in /sys/fs/cgroup/*/; do
	[[ -d "$h$cgroup_root" ]] && problems+=("cgroup $h$cgroup_root left")
done
# (Network namespaces are pinned under noded's run dir: the mount check
# above covers them.)

logs="$repo/_build/cluster-logs"
if ((${#problems[@]})); then
	for p in "${problems[@]}"; do say "LEFT BEHIND: $p"; done
	say "NOT deleting $C (look at it, then run make cluster-down again)"
	exit 1
fi
rm -rf "$logs" && mkdir -p "$logs"
cp -aL "$C/logs/." "$logs/" 2>/dev/null
rm -rf --one-file-system "$C"
[[ -z "$run_dir" ]] || rm -rf --one-file-system "$run_dir"
say "cluster down; nothing left behind (logs in $logs)"
