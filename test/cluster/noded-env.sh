# shellcheck shell=bash
# The private-noded pieces a test harness needs, shared by the cluster test
# bed (test/cluster/up.sh, down.sh) and test/critest/run.sh:
# start the offline test registry, write a bridge CNI network on a private
# subnet, start bin/noded on private dirs and socket, and undo it all (stop
# by PID, find leftover container processes, unmount, the portmap
# plugin's idle chains). Source it; it defines
# functions only (prefix nt_) and needs `say` and `die` from the caller.
#
# NT_LAUNCH (array, default empty) prefixes the daemons' command lines:
# ( setsid ) keeps them running after the calling script exits.

NT_LAUNCH=("${NT_LAUNCH[@]}")

# nt_stop_pid PID NAME [TIMEOUT]: SIGTERM, wait up to TIMEOUT s (default 20),
# then SIGKILL. Only ever call it with PIDs the harness started.
nt_stop_pid() {
	local pid=$1 name=$2 timeout=${3:-20} i
	[[ -n "$pid" ]] || return 0
	kill -0 "$pid" 2>/dev/null || {
		wait "$pid" 2>/dev/null || true
		return 0
	}
	say "stopping $name (pid $pid)"
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < timeout * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		say "$name (pid $pid) did not stop within ${timeout}s; SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
		for ((i = 0; i < 50; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
	fi
	wait "$pid" 2>/dev/null || true
}

# nt_mounts_under DIR: mount points at or below DIR, deepest first (a longer
# path is never the parent of a shorter one, so sorting by length works).
# Read from mountinfo, decoding the octal escapes the kernel uses there.
nt_mounts_under() {
	local dir=$1
	awk -v d="$dir" '
		{ m = $5
		  gsub(/\\040/, " ", m); gsub(/\\011/, "\t", m); gsub(/\\012/, "\n", m); gsub(/\\134/, "\\", m)
		  if (m == d || index(m, d "/") == 1) print length(m) "\t" m }' /proc/self/mountinfo |
		sort -rn -k1,1 | cut -f2- | uniq
}

# nt_unmount_under DIR: unmounts everything at or below DIR, deepest first,
# a few passes (mounts stack); the last pass is lazy. Prints what is left.
nt_unmount_under() {
	local dir=$1 pass m left=()
	for pass in 1 2 3 4; do
		mapfile -t left < <(nt_mounts_under "$dir")
		((${#left[@]})) || return 0
		for m in "${left[@]}"; do
			if ((pass < 4)); then
				umount "$m" 2>/dev/null
			else
				umount -l "$m" 2>/dev/null
			fi
		done
	done
	nt_mounts_under "$dir"
}

# nt_leftover_pids DIR...: processes that belong to a run using these dirs:
#   - anything whose command line names one of them (conmon-go, pause);
#   - processes in another mount namespace whose mounts come from one of
#     them (the containers: their rootfs is an overlay over DIR).
# Processes in our own mount namespace see our mounts too, so they are only
# matched by command line; PID 1 and this shell are never matched.
nt_leftover_pids() {
	local d f pid
	{
		for d in "$@"; do
			grep -lsF -- "$d/" /proc/[0-9]*/cmdline
			grep -lsF -- "$d/" /proc/[0-9]*/mountinfo |
				while read -r f; do
					f="${f%/mountinfo}"
					[[ -e "$f/ns/mnt" ]] || continue
					[[ "$f/ns/mnt" -ef /proc/self/ns/mnt ]] && continue
					echo "$f"
				done
		done
	} | sed -E 's#^/proc/([0-9]+).*#\1#' | sort -un |
		while read -r pid; do
			((pid > 1 && pid != $$ && pid != BASHPID)) && echo "$pid"
		done
}

# nt_kill_leftovers DIR...: SIGKILL what nt_leftover_pids finds, naming each,
# again and again (a monitor can start a process as it dies) for up to 5 s.
nt_kill_leftovers() {
	local pids=() i p
	for ((i = 0; i < 50; i++)); do
		mapfile -t pids < <(nt_leftover_pids "$@")
		((${#pids[@]})) || return 0
		for p in "${pids[@]}"; do
			say "killing leftover process $p: $(tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline" | cut -c1-200)"
		done
		kill -KILL "${pids[@]}" 2>/dev/null
		sleep 0.1
	done
}

# nt_remove_idle_hostport_chains: removes the CNI portmap plugin's shared
# nat chains (CNI-HOSTPORT-DNAT, -MASQ, -SETMARK) and the jumps to them,
# for IPv4 and IPv6, when no pod uses them: CNI-HOSTPORT-DNAT holds no rule
# and no per-pod CNI-DN-* chain exists. A run's first pod with a host port
# makes them and no plugin DEL removes them; portmap makes them again at
# its next ADD with a port mapping, so removing idle ones is harmless even
# if the run did not make them (a pod given a host port by another
# runtime between the check and the removal would lose its rule: this is
# for test machines). Prints what it removed.
nt_remove_idle_hostport_chains() {
	local ipt rules chain rest ch
	for ipt in iptables ip6tables; do
		command -v "$ipt-save" >/dev/null 2>&1 || continue
		rules="$("$ipt-save" -t nat 2>/dev/null)" || continue
		grep -q '^:CNI-HOSTPORT-' <<<"$rules" || continue
		if grep -qE '^-A CNI-HOSTPORT-DNAT |^:CNI-DN-' <<<"$rules"; then
			say "$ipt: CNI-HOSTPORT-* chains in use by a pod; left"
			continue
		fi
		awk '/^-A (PREROUTING|OUTPUT|POSTROUTING) .*-j CNI-HOSTPORT-/' <<<"$rules" |
			while read -r _ chain rest; do
				# shellcheck disable=SC2086 # the rule spec is split as iptables-save wrote it
				eval "\"$ipt\" -t nat -D \"$chain\" $rest" 2>/dev/null
			done
		for ch in CNI-HOSTPORT-DNAT CNI-HOSTPORT-MASQ CNI-HOSTPORT-SETMARK; do
			"$ipt" -t nat -F "$ch" 2>/dev/null && "$ipt" -t nat -X "$ch" 2>/dev/null
		done
		if "$ipt-save" -t nat 2>/dev/null | grep -q 'CNI-HOSTPORT-'; then
			say "warning: $ipt: could not remove the CNI-HOSTPORT-* chains"
		else
			say "$ipt: removed the idle CNI-HOSTPORT-* chains of the portmap plugin"
		fi
	done
}

# nt_noded_files DIR: the empty noded config (the host's /etc/noded must not
# change what is tested) and an accept-anything signature policy (the test
# registry's images are unsigned).
nt_noded_files() {
	local dir=$1
	mkdir -p "$dir/root" "$dir/runroot" "$dir/state" "$dir/cni" "$dir/cni-ipam" "$dir/noded.toml.d"
	: >"$dir/noded.toml"
	printf '%s\n' '{ "default": [ { "type": "insecureAcceptAnything" } ] }' >"$dir/policy.json"
}

# nt_start_registry BIN BUSYBOX DIR [TIMEOUT]: starts the offline test
# registry on a free loopback port; it writes DIR/registries.conf mirroring
# docker.io, registry.k8s.io, gcr.io, ... to itself. Sets NT_REGISTRY_PID.
nt_start_registry() {
	local bin=$1 busybox=$2 dir=$3 timeout=${4:-60} i
	rm -f "$dir/registry.ready"
	"${NT_LAUNCH[@]}" "$bin" --addr 127.0.0.1:0 --busybox "$busybox" \
		--registries-conf "$dir/registries.conf" --ready-file "$dir/registry.ready" \
		>"$dir/registry.log" 2>&1 </dev/null &
	NT_REGISTRY_PID=$!
	for ((i = 0; i < timeout * 10; i++)); do
		[[ -s "$dir/registry.ready" ]] && break
		if ! kill -0 "$NT_REGISTRY_PID" 2>/dev/null; then
			tail -n 30 "$dir/registry.log" >&2
			die "the test registry exited before it was ready (log above)"
		fi
		sleep 0.1
	done
	[[ -s "$dir/registry.ready" ]] || {
		tail -n 30 "$dir/registry.log" >&2
		die "the test registry was not ready within ${timeout}s"
	}
	[[ -s "$dir/registries.conf" ]] || die "the test registry did not write $dir/registries.conf"
	say "test registry (pid $NT_REGISTRY_PID) at $(head -n1 "$dir/registry.ready")"
}

# nt_cni_conflist FILE NAME BRIDGE SUBNET IPAMDIR: a bridge network with
# host-local IPAM (leases in IPAMDIR) and portmap. No ipMasq: pods have no
# business reaching out. noded brings the pod's lo up itself, so no loopback
# plugin is needed.
nt_cni_conflist() {
	local file=$1 name=$2 bridge=$3 subnet=$4 ipam=$5
	cat >"$file" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "$name",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$bridge",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$ipam",
        "ranges": [[{ "subnet": "$subnet" }]],
        "routes": [{ "dst": "0.0.0.0/0" }]
      }
    },
    {
      "type": "portmap",
      "capabilities": { "portMappings": true }
    }
  ]
}
JSON
}

# nt_start_noded BIN DIR SOCK CRICTL [TIMEOUT] [noded args...]: starts noded
# on DIR's private root, runroot, state, run dir (never the default
# /run/noded/run: another noded may use it), CNI config, registries.conf and
# policy (nt_noded_files, nt_start_registry), listening on SOCK, and waits
# until crictl gets an answer. Log: DIR/noded.log. Sets NT_NODED_PID.
nt_start_noded() {
	local bin=$1 dir=$2 sock=$3 crictl=$4 timeout=${5:-60} i
	shift 5
	"${NT_LAUNCH[@]}" "$bin" \
		--config "$dir/noded.toml" \
		--config-dir "$dir/noded.toml.d" \
		--listen "$sock" \
		--root "$dir/root" \
		--runroot "$dir/runroot" \
		--state-dir "$dir/state" \
		--run-dir "$dir/run" \
		--registries-conf "$dir/registries.conf" \
		--signature-policy "$dir/policy.json" \
		--cni-config-dir "$dir/cni" \
		--nri-listen "$dir/nri.sock" \
		--nri-plugin-dir "$dir/nri/plugins" \
		--nri-plugin-config-dir "$dir/nri/conf.d" \
		"$@" \
		>>"$dir/noded.log" 2>&1 </dev/null &
	NT_NODED_PID=$!
	for ((i = 0; i < timeout * 5; i++)); do
		if ! kill -0 "$NT_NODED_PID" 2>/dev/null; then
			tail -n 30 "$dir/noded.log" >&2
			die "noded exited during start-up (log above)"
		fi
		if [[ -S "$sock" ]] &&
			"$crictl" --runtime-endpoint "unix://$sock" --image-endpoint "unix://$sock" --timeout 2s version >/dev/null 2>&1; then
			say "noded (pid $NT_NODED_PID) is up on $sock"
			return 0
		fi
		sleep 0.2
	done
	tail -n 30 "$dir/noded.log" >&2
	die "noded did not answer crictl version within ${timeout}s (log above)"
}
