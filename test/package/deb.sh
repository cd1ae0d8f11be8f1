#!/usr/bin/env bash
# The Debian package's test: installs _build/deb/noded_*.deb (make deb, or
# the .deb given as $1) on this machine with dpkg, as an operator would,
# and checks what each step leaves:
#
#   dpkg -i   binaries, the systemd unit enabled but noded not started,
#             /etc/noded/noded.toml (a conffile, every key commented out),
#             the default CNI network (unless /etc/cni/net.d holds one) and
#             /etc/crictl.yaml (unless it exists);
#   run       /usr/bin/noded with the installed configuration runs a pod
#             (crictl runp / create / start) that gets an address from the
#             default network;
#   dpkg -r   binaries and unit gone; configuration and state kept;
#   dpkg -P   nothing of noded's left (files, state, unit links, the
#             default network's file, leases and bridge, crictl.yaml).
#
# The machine is left as it was: what exists before in /etc/crictl.yaml and
# /etc/cni is checked to be untouched (byte for byte, mode and mtime), any
# leftovers of an earlier noded on the default paths (/var/lib/noded,
# /etc/noded) are moved aside and put back, and every process, mount,
# bridge, sysctl and package this test made is removed at exit.
#
# noded runs on its default paths. /run (socket, run-dir, runroot) is a
# tmpfs of the test's own, in a private mount namespace, since harnesses'
# nodeds use /run/noded too; /var/lib/noded must be unused (else the test
# skips), as must the package be uninstalled; a lock keeps two runs from
# overlapping. The NRI socket (a host-wide default) moves under /run/noded
# by a drop-in.
#
# Exit status: 0 passed, 1 failed, 77 skipped (the reason on the last line,
# and in $NODED_SKIP_FILE when set).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"

say() { printf '[package-test] %s\n' "$*" >&2; }
die() {
	say "FAIL: $*"
	exit 1
}
skip() {
	say "SKIP: $*"
	[[ -z "${NODED_SKIP_FILE:-}" ]] || printf '%s\n' "$*" >"$NODED_SKIP_FILE"
	exit 77
}

[[ $EUID -eq 0 ]] || skip "needs root (dpkg -i installs into /usr and /etc)"
{ command -v dpkg && command -v dpkg-deb; } >/dev/null || skip "dpkg/dpkg-deb not found (not a Debian system)"
crictl="$repo/_build/tools/crictl"
[[ -x "$crictl" ]] || skip "crictl not installed: run scripts/install-test-deps.sh"
for tool in iptables-save ip flock; do
	command -v "$tool" >/dev/null || skip "$tool not found: run scripts/install-test-deps.sh"
done

# shellcheck source-path=SCRIPTDIR source=../cluster/noded-env.sh
source "$repo/test/cluster/noded-env.sh"

command -v unshare >/dev/null || skip "unshare not found (util-linux)"
pkg_status() { dpkg-query -W -f='${db:Status-Status}' noded 2>/dev/null || true; }
# noded's default paths outside /run: nothing may use them while the test
# owns them.
state_dirs=(/var/lib/noded /etc/noded /var/lib/cni/networks/noded)

if [[ -z "${NODED_PKGTEST_OUTER_MNTNS:-}" ]]; then
	exec {lock_fd}>/tmp/noded-package-test.lock
	flock -w 600 "$lock_fd" || die "another package test holds /tmp/noded-package-test.lock"
	case "$(pkg_status)" in
	"" | not-installed) ;;
	*) skip "a noded package is already on this machine ($(pkg_status)); not touching it" ;;
	esac
	# Checked here, in the host's mount namespace, where the mounts and
	# processes of another noded are seen as such.
	users="$(nt_leftover_pids /var/lib/noded | tr '\n' ' ')" || true # grep finding none fails
	[[ -z "${users// /}" ]] || skip "processes use /var/lib/noded: $users"
	for d in "${state_dirs[@]}"; do
		[[ -z "$(nt_mounts_under "$d")" ]] || skip "mounts below $d: $(nt_mounts_under "$d" | head -n3 | tr '\n' ' ')"
	done
	# The rest runs in a mount namespace of its own with a fresh /run:
	# other nodeds on this machine (test harnesses) may use /run/noded,
	# which the installed noded uses and the purge removes. The mounts
	# noded makes stay in that namespace, and go with it.
	NODED_PKGTEST_OUTER_MNTNS="$(stat -L -c %i /proc/self/ns/mnt)" exec unshare --mount --propagation private -- "$0" "$@"
fi
# Everything below relies on it (test_pids, the tmpfs on /run): refuse to
# go on unless this really is a mount namespace of its own, made by the
# re-exec above: not the one the test was started in, nor its parent's.
test_mntns="$(stat -L -c %i /proc/self/ns/mnt)"
if [[ -z "$test_mntns" || "$test_mntns" == "$NODED_PKGTEST_OUTER_MNTNS" ||
	"$test_mntns" == "$(stat -L -c %i "/proc/$PPID/ns/mnt" 2>/dev/null)" ]]; then
	die "not in a private mount namespace (NODED_PKGTEST_OUTER_MNTNS is for the test's own re-exec)"
fi
# The host's mounts below /run were copied into this namespace and are
# now hidden under the tmpfs: not the test's, whatever their paths say.
hidden_mounts="$(nt_mounts_under /run)"
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
mkdir -p /run/lock
# test_mounts DIR...: the mounts at or below each DIR that the test made.
test_mounts() {
	local d
	for d in "$@"; do
		nt_mounts_under "$d"
	done | grep -vxF -e "${hidden_mounts:-/nonexistent}" || true
}

cgroup=noded-pkgtest-$$

# test_pids lists the processes this test started and may have left:
# those in its own mount namespace (noded, the monitors, the registry, CNI
# plugins) and those in its pod's cgroup (the containers, which have mount
# namespaces of their own). Nothing else can match: every other process
# on the machine is in another mount namespace and another cgroup. (Never
# match by the paths a process's mounts name, as nt_leftover_pids does:
# from in here, every process of the host is in "another mount namespace"
# whose mounts may name /run/noded.)
test_pids() {
	local p pid ns
	for p in /proc/[0-9]*; do
		pid=${p#/proc/}
		((pid != $$ && pid != BASHPID)) || continue
		ns="$(stat -L -c %i "$p/ns/mnt" 2>/dev/null)" || continue
		if [[ "$ns" == "$test_mntns" ]] || grep -qs "/$cgroup/" "$p/cgroup"; then
			echo "$pid"
		fi
	done
}

# kill_test_pids SIGKILLs what test_pids finds, naming each, a few times
# over (a monitor can start a process as it dies).
kill_test_pids() {
	local pids=() i p
	for ((i = 0; i < 50; i++)); do
		mapfile -t pids < <(test_pids)
		((${#pids[@]})) || return 0
		# The test starts a handful of processes: more means that
		# test_pids is wrong, and killing them could hit anything.
		if ((${#pids[@]} > 20)); then
			say "NOT killing ${#pids[@]} processes test_pids found (too many to be this test's): ${pids[*]}"
			return 1
		fi
		for p in "${pids[@]}"; do
			[[ -e "/proc/$p" ]] && say "killing leftover process $p: $(tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline" | cut -c1-200)"
		done
		kill -KILL "${pids[@]}" 2>/dev/null
		sleep 0.1
	done
}

deb=${1:-}
if [[ -z "$deb" ]]; then
	deb="$(make --no-print-directory deb | tail -n1)"
fi
[[ -f "$deb" ]] || die "no package at '$deb'"
say "package: $deb"

work="$(mktemp -d /tmp/noded-pkgtest.XXXXXX)"

# fingerprint PATH...: every file and directory below each PATH with its
# type, mode, size, mtime and (files) checksum, or "absent".
fingerprint() {
	local p
	for p in "$@"; do
		if [[ ! -e "$p" && ! -L "$p" ]]; then
			echo "$p absent"
			continue
		fi
		find "$p" -printf '%p %y %m %s %T@ %l\n' | sort
		find "$p" -type f -print0 | sort -z | xargs -0 -r sha256sum
	done
}
fingerprint /etc/crictl.yaml /etc/cni >"$work/before.txt"
fingerprint /etc/crictl.yaml >"$work/before-crictl.txt"
# Writing and removing a file changes its directory's mtime: put them back.
[[ ! -d /etc/cni ]] || find /etc/cni -type d -printf '%T@ %p\n' >"$work/dir-times"
# Leftovers of an earlier noded on the default paths go aside, and back at
# the end: its state, and the default network a noded run from source
# wrote (which would pass for an existing network of the host's).
moved=()
for d in "${state_dirs[@]}" /etc/cni/net.d/99-noded-bridge.conflist; do
	if [[ -e "$d" ]]; then
		mkdir -p "$work/saved$(dirname "$d")"
		mv "$d" "$work/saved$d"
		moved+=("$d")
		say "moved aside $d (restored at the end)"
	fi
done
crictl_before=0 cni_net_before=0 cni_dir_before=0
[[ -e /etc/crictl.yaml ]] && crictl_before=1
[[ -d /etc/cni/net.d ]] && cni_dir_before=1
if compgen -G '/etc/cni/net.d/*.conflist' >/dev/null || compgen -G '/etc/cni/net.d/*.conf' >/dev/null ||
	compgen -G '/etc/cni/net.d/*.json' >/dev/null; then
	cni_net_before=1
fi
bridge_before=0
[[ -e /sys/class/net/noded0 ]] && bridge_before=1
sysctls=(/proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv6/conf/all/forwarding)
declare -A sysctl_before=()
for s in "${sysctls[@]}"; do
	[[ -e "$s" ]] && sysctl_before[$s]="$(cat "$s")"
done


noded_pid="" reg_pid=""
failed=0
cleanup() {
	local rc=$? d s t mounts_left
	set +e
	if [[ -n "$noded_pid" ]] && kill -0 "$noded_pid" 2>/dev/null; then
		"$crictl" -r unix:///run/noded/noded.sock --timeout 20s rmp -fa >/dev/null 2>&1
	fi
	nt_stop_pid "$noded_pid" noded
	nt_stop_pid "$reg_pid" "test registry"
	kill_test_pids
	rm -f /etc/noded/noded.toml.d/50-package-test.toml
	case "$(pkg_status)" in
	"" | not-installed) ;;
	*) dpkg -P noded >>"$work/dpkg.log" 2>&1 || say "dpkg -P at cleanup failed: $(tail -n3 "$work/dpkg.log")" ;;
	esac
	for d in /run/noded /var/lib/noded; do
		nt_unmount_under "$d" >/dev/null
		mounts_left="$(test_mounts "$d")"
		[[ -z "$mounts_left" ]] || say "mounts left below $d: $mounts_left"
	done
	rm -rf /var/lib/noded /etc/noded /var/lib/cni/networks/noded
	for d in "${moved[@]}"; do
		mkdir -p "$(dirname "$d")"
		mv "$work/saved$d" "$d" && say "restored $d"
	done
	if ((!bridge_before)) && [[ -e /sys/class/net/noded0 ]] && [[ -z "$(ls /sys/class/net/noded0/brif)" ]]; then
		ip link del noded0
	fi
	for s in "${!sysctl_before[@]}"; do
		[[ "$(cat "$s")" == "${sysctl_before[$s]}" ]] || echo "${sysctl_before[$s]}" >"$s"
	done
	for d in /sys/fs/cgroup/*/"$cgroup" /sys/fs/cgroup/"$cgroup"; do
		[[ -d "$d" ]] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
	done
	# What the package may have left where the host had nothing.
	((crictl_before)) || rm -f /etc/crictl.yaml
	if ((!cni_dir_before)); then
		rm -f /etc/cni/net.d/99-noded-bridge.conflist
		rmdir /etc/cni/net.d /etc/cni 2>/dev/null
	fi
	if [[ -f "$work/dir-times" ]]; then
		while read -r t d; do
			[[ -d "$d" ]] && touch -m -d "@$t" "$d"
		done <"$work/dir-times"
	fi
	fingerprint /etc/crictl.yaml /etc/cni >"$work/after.txt"
	if ! diff -u "$work/before.txt" "$work/after.txt" >&2; then
		say "FAIL: /etc/crictl.yaml or /etc/cni differ from before the test (diff above)"
		rc=1
	fi
	if ((rc == 0)); then
		rm -rf "$work"
	else
		say "logs kept in $work"
	fi
	exit "$rc"
}
trap cleanup EXIT

check() { # check DESCRIPTION CMD...: fails the test (at the end) when CMD fails
	local what=$1
	shift
	if "$@"; then
		say "ok: $what"
	else
		say "FAIL: $what"
		failed=1
	fi
}
absent() { [[ ! -e "$1" && ! -L "$1" ]]; }
running_from_usr_bin() { # PIDs whose executable is one of the package's
	local p
	for p in /proc/[0-9]*; do
		case "$(readlink "$p/exe" 2>/dev/null)" in
		/usr/bin/noded | /usr/bin/conmon-go | /usr/bin/noded-pause) echo "${p#/proc/}" ;;
		esac
	done
}

say "dpkg -i"
dpkg -i "$deb" >"$work/dpkg.log" 2>&1 || die "dpkg -i failed: $(cat "$work/dpkg.log")"
cat "$work/dpkg.log" >&2
check "installed" test "$(pkg_status)" = installed
for b in noded conmon-go conmon-go-runtime conmon-go-runtime-criu noded-pause; do
	check "/usr/bin/$b" test -x "/usr/bin/$b"
done
check "/usr/bin/noded --version" /usr/bin/noded --version
check "unit installed" test -f /lib/systemd/system/noded.service
check "unit runs /usr/bin/noded" grep -q '^ExecStart=/usr/bin/noded$' /lib/systemd/system/noded.service
check "unit enabled (multi-user.target.wants)" \
	test "$(readlink /etc/systemd/system/multi-user.target.wants/noded.service)" = /lib/systemd/system/noded.service
check "noded not started" test -z "$(running_from_usr_bin)"
check "noded.toml is a conffile" grep -q '^ /etc/noded/noded.toml [0-9a-f]' <(dpkg-query -W -f='${Conffiles}\n' noded)
check "noded.toml has every key, all commented out" \
	bash -c 'diff <(/usr/bin/noded config --config /dev/null --config-dir "" | sed -n "s/^\([a-z0-9-]*\) = .*/\1/p") \
		<(sed -n "s/^# \([a-z0-9-]*\) = .*/\1/p" /etc/noded/noded.toml) && ! grep -Eq "^[a-z0-9-]+ = " /etc/noded/noded.toml'
check "the installed configuration loads" /usr/bin/noded config >/dev/null
if ((crictl_before)); then
	check "/etc/crictl.yaml left as it was" diff <(fingerprint /etc/crictl.yaml) "$work/before-crictl.txt"
else
	check "/etc/crictl.yaml points at noded" grep -qx 'runtime-endpoint: unix:///run/noded/noded.sock' /etc/crictl.yaml
fi
default_net=/etc/cni/net.d/99-noded-bridge.conflist
if ((cni_net_before)); then
	check "existing CNI network: no default network added" absent "$default_net"
	cni_dir="$work/cni" # noded writes its default network here at start
else
	check "default CNI network written" grep -q '"name": "noded"' "$default_net"
	cni_dir=/etc/cni/net.d
fi

# Run noded from the installed paths, with the installed configuration and
# one drop-in: NRI's socket is a host-wide default (other runtimes, other
# tests' nodeds) and moves into noded's own /run/noded; the test registry
# when busybox is built, else the container runs the built-in pause image.
image=localhost/noded/pause:builtin
dropin=/etc/noded/noded.toml.d/50-package-test.toml
{
	echo "# Written by test/package/deb.sh; removed before the purge."
	if /usr/bin/noded config | grep -q '^nri-listen = '; then
		echo 'nri-listen = "/run/noded/nri.sock"'
	fi
	[[ "$cni_dir" == /etc/cni/net.d ]] || echo "cni-config-dir = \"$cni_dir\""
} >"$dropin"
if [[ -x bin/noded-testregistry && -x _build/busybox/busybox ]]; then
	nt_start_registry bin/noded-testregistry _build/busybox/busybox "$work"
	reg_pid=$NT_REGISTRY_PID
	printf '%s\n' '{ "default": [ { "type": "insecureAcceptAnything" } ] }' >"$work/policy.json"
	printf 'registries-conf = "%s"\nsignature-policy = "%s"\n' "$work/registries.conf" "$work/policy.json" >>"$dropin"
	image=docker.io/library/busybox:1.37.0
fi
say "starting /usr/bin/noded (drop-in: $(grep -v '^#' "$dropin" | tr '\n' ' '))"
setsid /usr/bin/noded >"$work/noded.log" 2>&1 </dev/null &
noded_pid=$!
# crictl as an operator runs it: configured by /etc/crictl.yaml, unless
# that was the host's own.
cr=("$crictl" --timeout 60s)
((!crictl_before)) || cr+=(-r unix:///run/noded/noded.sock -i unix:///run/noded/noded.sock)
for ((i = 0; i < 300; i++)); do
	kill -0 "$noded_pid" 2>/dev/null || die "noded exited: $(tail -n 20 "$work/noded.log")"
	"${cr[@]}" version >/dev/null 2>&1 && break
	sleep 0.2
done
"${cr[@]}" version >/dev/null 2>&1 || die "noded did not answer within 60s: $(tail -n 20 "$work/noded.log")"
check "default network present for noded" test -f "$cni_dir/99-noded-bridge.conflist"

cat >"$work/pod.json" <<EOF
{"metadata": {"name": "pkgtest", "namespace": "default", "uid": "pkgtest-$$"},
 "linux": {"cgroup_parent": "/$cgroup/pkgtest"}, "log_directory": "$work/logs"}
EOF
cat >"$work/ctr.json" <<EOF
{"metadata": {"name": "main"}, "image": {"image": "$image"},
 $([[ "$image" == *busybox* ]] && echo '"command": ["sleep", "3600"],') "log_path": "main.log"}
EOF
mkdir -p "$work/logs"
pod="$("${cr[@]}" runp "$work/pod.json")" || die "crictl runp failed: $(tail -n 20 "$work/noded.log")"
ctr="$("${cr[@]}" create --with-pull "$pod" "$work/ctr.json" "$work/pod.json")" || die "crictl create failed"
"${cr[@]}" start "$ctr" >/dev/null || die "crictl start failed"
ip="$("${cr[@]}" inspectp -o go-template --template '{{.status.network.ip}}' "$pod")"
say "pod ${pod:0:12} has IP $ip; container ${ctr:0:12} ($image) $("${cr[@]}" inspect -o go-template --template '{{.status.state}}' "$ctr")"
check "pod IP $ip is in 10.87.0.0/16" test "${ip#10.87.}" != "$ip"
check "container running" test "$("${cr[@]}" inspect -o go-template --template '{{.status.state}}' "$ctr")" = CONTAINER_RUNNING
if [[ "$image" == *busybox* ]]; then
	check "the container sees its address" grep -q "inet $ip/16" <("${cr[@]}" exec "$ctr" ip -4 addr show eth0)
fi
"${cr[@]}" rmp -f "$pod" >/dev/null || die "crictl rmp failed"
check "no nat rule of the pod left" bash -c "! iptables-save -t nat | grep -q $pod"
nt_stop_pid "$noded_pid" noded
noded_pid=""
nt_stop_pid "$reg_pid" "test registry"
reg_pid=""
check "no process of the package left" test -z "$(running_from_usr_bin)"

say "dpkg -r"
dpkg -r noded >>"$work/dpkg.log" 2>&1 || die "dpkg -r failed: $(tail -n 5 "$work/dpkg.log")"
check "removed, config kept (status config-files)" test "$(pkg_status)" = config-files
check "binaries gone" absent /usr/bin/noded
check "unit gone" absent /lib/systemd/system/noded.service
check "noded.toml kept" test -f /etc/noded/noded.toml
check "state kept (/var/lib/noded/state)" test -d /var/lib/noded/state
check "images kept (/var/lib/noded/storage)" grep -q "${image%:*}" /var/lib/noded/storage/overlay-images/images.json
((crictl_before)) || check "/etc/crictl.yaml kept" test -f /etc/crictl.yaml
((cni_net_before)) || check "default network kept" test -f "$default_net"

say "dpkg -P"
rm -f "$dropin"
dpkg -P noded >>"$work/dpkg.log" 2>&1 || die "dpkg -P failed: $(tail -n 5 "$work/dpkg.log")"
not_installed() { case "$(pkg_status)" in "" | not-installed) return 0 ;; esac; return 1; }
check "purged" not_installed
for p in /etc/noded /var/lib/noded /run/noded /var/lib/cni/networks/noded /lib/systemd/system/noded.service; do
	check "$p gone" absent "$p"
done
check "no unit link or mask left in /etc/systemd" test -z "$(find /etc/systemd -name 'noded*' 2>/dev/null)"
check "no deb-systemd-helper state left" test -z "$(find /var/lib/systemd -name 'noded*' 2>/dev/null)"
((crictl_before)) || check "/etc/crictl.yaml gone" absent /etc/crictl.yaml
((cni_net_before)) || check "default network gone" absent "$default_net"
((cni_dir_before)) || check "/etc/cni gone" absent /etc/cni
((bridge_before)) || check "bridge noded0 gone" absent /sys/class/net/noded0
check "no mount left" test -z "$(test_mounts /run/noded /var/lib/noded)"
check "no process left" test -z "$(test_pids)$(running_from_usr_bin)"

((failed == 0)) || die "some checks failed (above)"
say "PASS"
