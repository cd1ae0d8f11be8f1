#!/usr/bin/env bash
# Runs the CRI validation suite (critest, cri-tools v1.37.0) against a
# private, throw-away noded and checks the result against
# test/critest/expected-failures.txt. `make critest` calls this.
#
# What it does:
#   1. makes a private temp dir for noded's root, runroot, state, socket and
#      CNI config, so it never touches (or is disturbed by) a noded running
#      on the host, nor another engineer's critest run;
#   2. starts the offline test registry (bin/noded-testregistry), which
#      serves the busybox-based critest images and writes a registries.conf
#      that mirrors docker.io, registry.k8s.io, gcr.io, ... to itself;
#   3. writes a bridge CNI network on a private subnet;
#   4. starts bin/noded on all of that and waits until crictl gets an answer;
#   5. runs critest with a ginkgo JSON + JUnit report;
#   6. summarises the report (pass/fail/skip counts, failing spec names);
#   7. compares the failures with expected-failures.txt: a failure that is
#      not listed, or a listed spec that passes, fails the run;
#   8. always stops what it started (by PID), unmounts what is left under the
#      temp dir, deletes the bridge it created and the temp dir.
#
# Results are kept under _build/critest/: critest.log, report.json,
# junit.xml, summary.txt, noded.log, registry.log.
#
# Environment:
#   CRITEST_ARGS      extra critest arguments, split like a shell would
#                     (quotes work), e.g.
#                     CRITEST_ARGS="--ginkgo.focus='Runtime info'"
#   CRITEST_PARALLEL  ginkgo parallel processes (default 1)
#   CRITEST_TIMEOUT   ginkgo suite timeout (default 60m)
#   CRITEST_VERBOSE   1: stream critest's full output, not one line a spec
#   CRITEST_OUT       results directory (default _build/critest)
#   CRITEST_KEEP_TMP  1: do not delete the temp dir (debugging; mounts are
#                     still undone and processes still stopped)
#   NODED_BIN, NODED_TESTREGISTRY_BIN
#                     binaries to use instead of bin/noded and
#                     bin/noded-testregistry
# Arguments given to this script are passed to critest after CRITEST_ARGS.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
tools="$repo/_build/tools"
out="${CRITEST_OUT:-$repo/_build/critest}"
# critest runs in the temp dir: a relative CRITEST_OUT is the caller's.
[[ "$out" == /* ]] || out="$PWD/$out"
expected_file="$repo/test/critest/expected-failures.txt"

# Overridable to try the harness against another build.
noded_bin="${NODED_BIN:-$repo/bin/noded}"
registry_bin="${NODED_TESTREGISTRY_BIN:-$repo/bin/noded-testregistry}"
busybox_bin="$repo/_build/busybox/busybox"
crictl="$tools/crictl"
critest="$tools/critest"

parallel="${CRITEST_PARALLEL:-1}"
suite_timeout="${CRITEST_TIMEOUT:-60m}"
# Bounded waits (seconds).
registry_start_timeout=60
noded_start_timeout=60
stop_timeout=20

say() { printf '[critest] %s\n' "$*" >&2; }
die() {
	say "ERROR: $*"
	exit 1
}

# ---------------------------------------------------------------- checks
[[ $EUID -eq 0 ]] || die "must run as root: noded mounts, creates namespaces and cgroups"
for tool in jq findmnt ip; do
	command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found; run scripts/install-test-deps.sh"
done
[[ -x "$critest" && -x "$crictl" ]] || die "$critest / $crictl missing; run scripts/install-test-deps.sh"
[[ -x "$noded_bin" ]] || die "$noded_bin missing; run make build"
[[ -x "$registry_bin" ]] || die "$registry_bin missing; run make build"
[[ -x "$busybox_bin" ]] || die "$busybox_bin missing; run test/images/build-busybox.sh (or scripts/install-test-deps.sh)"
[[ -f "$expected_file" ]] || die "$expected_file missing"
[[ "$parallel" =~ ^[1-9][0-9]*$ ]] || die "CRITEST_PARALLEL must be a positive integer, got '$parallel'"
if ((parallel > 1)); then
	# critest re-runs itself through the ginkgo CLI found on PATH.
	[[ -x "$tools/ginkgo" ]] || die "CRITEST_PARALLEL=$parallel needs $tools/ginkgo; run scripts/install-test-deps.sh"
	export PATH="$tools:$PATH"
fi

# Extra critest arguments: CRITEST_ARGS split with shell quoting rules
# (xargs understands quotes, without eval'ing anything), then "$@".
extra_args=()
if [[ -n "${CRITEST_ARGS:-}" ]]; then
	mapfile -t extra_args < <(xargs -r printf '%s\n' <<<"$CRITEST_ARGS")
fi
extra_args+=("$@")

# ---------------------------------------------------------------- state
# Short path under /tmp: the socket path must stay under the 108-byte
# sun_path limit.
tmp="$(mktemp -d /tmp/noded-critest.XXXXXX)"
run_id="${tmp##*.}"
# A per-run bridge name (<= 15 bytes) so concurrent runs do not share one,
# and so cleanup deletes only ours.
bridge="ndct-$(tr -dc 'a-z0-9' <<<"${run_id,,}" | head -c 8)"
noded_pid=""
registry_pid=""
critest_pid=""
follower_pid=""
netns_before="$(ls -A /run/netns 2>/dev/null || true)"

mkdir -p "$out"
# Replace the previous run's results, so nothing stale is mistaken for ours.
rm -f "$out"/{critest.log,report.json,junit.xml,summary.txt,noded.log,registry.log,failed.txt,passed.txt,skipped.txt}

# The private-noded pieces (stop by PID, leftover processes, unmounts,
# the test registry, the CNI network, noded itself), shared with the
# cluster test bed.
# shellcheck source-path=SCRIPTDIR source=../cluster/noded-env.sh
source "$repo/test/cluster/noded-env.sh"
# shellcheck source-path=SCRIPTDIR source=../lib/ginkgo-report.sh
source "$repo/test/lib/ginkgo-report.sh"

# cleanup undoes everything this run did. Idempotent: it runs before the
# summary is printed (so the count line comes last) and again from the EXIT
# trap, where it matters after a failure or a signal.
cleanup_done=0
cleanup() {
	((cleanup_done)) && return 0
	cleanup_done=1
	set +e

	nt_stop_pid "$critest_pid" critest "$stop_timeout"
	nt_stop_pid "$follower_pid" "log follower" "$stop_timeout"
	nt_stop_pid "$noded_pid" noded "$stop_timeout"
	nt_stop_pid "$registry_pid" noded-testregistry "$stop_timeout"

	# Containers and their monitors outlive noded by design (a CRI runtime
	# restart must not kill pods). Critest removes its pods as it goes, so
	# these exist only after a failure or an interrupted run.
	nt_kill_leftovers "$tmp"

	# Keep the daemons' logs next to critest's.
	[[ -f "$tmp/noded.log" ]] && cp "$tmp/noded.log" "$out/noded.log"
	[[ -f "$tmp/registry.log" ]] && cp "$tmp/registry.log" "$out/registry.log"

	# Unmount what is left under the temp dir (overlays, shm, pinned
	# network namespaces, critest's propagation test mounts).
	local left
	nt_unmount_under "$tmp" >/dev/null

	# The bridge plugin leaves its bridge behind when the last pod goes.
	if ip link show "$bridge" >/dev/null 2>&1; then
		ip link del "$bridge" 2>/dev/null || say "warning: could not delete bridge $bridge"
	fi
	# The portmap plugin leaves its shared chains (the host-port specs).
	nt_remove_idle_hostport_chains

	local netns_after
	netns_after="$(ls -A /run/netns 2>/dev/null || true)"
	if [[ "$netns_after" != "$netns_before" ]]; then
		say "warning: /run/netns changed during the run (noded should pin its netns under its own dirs); not touching it:"
		diff <(printf '%s\n' "$netns_before") <(printf '%s\n' "$netns_after") | sed 's/^/    /' >&2
	fi

	mapfile -t left < <(nt_mounts_under "$tmp")
	if ((${#left[@]})); then
		# rm -rf through a bind mount would delete the bind source: keep it.
		say "warning: still mounted under $tmp, so it is NOT deleted: ${left[*]}"
	elif [[ "${CRITEST_KEEP_TMP:-0}" == 1 ]]; then
		say "CRITEST_KEEP_TMP=1: keeping $tmp"
	else
		rm -rf --one-file-system "$tmp"
	fi
	set -e
}
on_exit() {
	local rc=$?
	trap - INT TERM
	cleanup
	exit "$rc"
}
trap on_exit EXIT
# Turn signals into a normal exit, so the EXIT trap runs once and exits
# with the conventional 128+N.
trap 'exit 130' INT
trap 'exit 143' TERM

say "temp dir: $tmp"

# ------------------------------------------------------- 1. private dirs
# Empty config file and drop-in dir (the host's /etc/noded must not change
# what is tested) and an accept-anything policy (the test registry's images
# are unsigned).
nt_noded_files "$tmp"
mkdir -p "$tmp/tmp"
sock="$tmp/noded.sock"
endpoint="unix://$sock"

# crictl reads /etc/crictl.yaml by default and warns when it is absent;
# give it (and critest, for the same reason) an explicit one.
cat >"$tmp/crictl.yaml" <<EOF
runtime-endpoint: $endpoint
image-endpoint: $endpoint
timeout: 10
EOF

# ------------------------------------------------------- 2. test registry
say "starting the test registry"
nt_start_registry "$registry_bin" "$busybox_bin" "$tmp" "$registry_start_timeout"
registry_pid=$NT_REGISTRY_PID

# ------------------------------------------------------- 3. CNI network
# A random /24 in 10.213.0.0/16: far from the usual defaults (podman's
# 10.88/16, docker's 172.17/16, kube's 10.244/16 and 10.96/12) and
# different per run, so two runs at once rarely clash. host-local keeps its
# leases in the temp dir. No ipMasq: pods have no business reaching out.
# noded brings the pod's lo up itself, so no loopback plugin is needed (it
# uses only the first config file, and loopback in a chain would act on
# eth0).
subnet_octet=$((RANDOM % 256))
nt_cni_conflist "$tmp/cni/10-noded-critest.conflist" "noded-critest-$run_id" "$bridge" "10.213.$subnet_octet.0/24" "$tmp/cni-ipam"

# ------------------------------------------------------- 4. noded
say "starting noded"
# seccomp-when-empty=unconfined: critest's "nil profile, which is
# unconfined" spec follows containerd's choice for a request that names no
# profile; noded's default is CRI-O's (runtime default), which
# TestStrictDefaults checks. The kubelet always names a profile.
# nri-plugin-request-timeout 10s: critest's NRI synchronization specs hold a
# plugin's Synchronize open for 2 s on purpose (to create containers while
# it runs); with the library's 2 s default the plugin would be cut off.
nt_start_noded "$noded_bin" "$tmp" "$sock" "$crictl" "$noded_start_timeout" \
	--seccomp-when-empty unconfined --log-level debug --log-format text \
	--nri-plugin-request-timeout 10s
noded_pid=$NT_NODED_PID
say "noded (pid $noded_pid) is up: $("$crictl" --config "$tmp/crictl.yaml" --runtime-endpoint "$endpoint" version 2>/dev/null | tr '\n' ' ')"

# ------------------------------------------------------- 5. critest
critest_args=(
	--runtime-endpoint "$endpoint"
	--image-endpoint "$endpoint"
	--config "$tmp/crictl.yaml"
	--ginkgo.v
	--ginkgo.no-color
	--ginkgo.timeout "$suite_timeout"
	--ginkgo.json-report "$out/report.json"
	--ginkgo.junit-report "$out/junit.xml"
	# noded's private NRI socket (nt_start_noded): the NRI specs run.
	-nri-socket "$tmp/nri.sock"
)
# Only when > 1: ginkgo rejects a suite run in-process with -parallel set
# ("Use of go test -parallel"); > 1 makes critest re-run itself through
# the ginkgo CLI instead.
if ((parallel > 1)); then
	critest_args+=(--parallel "$parallel")
fi
critest_args+=("${extra_args[@]}")
say "running: critest ${critest_args[*]}"
say "full output: $out/critest.log"
# Run from the temp dir (critest looks for crictl.yaml in its working dir)
# with TMPDIR there too, so whatever critest creates is cleaned up with it.
# The outer timeout is a backstop should ginkgo's own not fire. critest runs
# in the background and we `wait` for it, so a SIGTERM to this script is
# handled at once (bash defers traps while a foreground job runs).
: >"$out/critest.log"
(cd "$tmp" && exec env TMPDIR="$tmp/tmp" timeout --kill-after=30s 90m "$critest" "${critest_args[@]}") \
	>"$out/critest.log" 2>&1 </dev/null &
critest_pid=$!
if [[ "${CRITEST_VERBOSE:-0}" == 1 ]]; then
	tail -n +1 -F --pid="$critest_pid" "$out/critest.log" 2>/dev/null &
else
	# One line per finished spec: ginkgo -v prints "• [FAILED] [1.2 seconds]"
	# (or "• [0.1 seconds]" for a pass) and the spec name on the next line.
	tail -n +1 -F --pid="$critest_pid" "$out/critest.log" 2>/dev/null |
		awk '/^• / { line = $0; if ((getline nxt) > 0) print line " " nxt; else print line; fflush() }' &
fi
follower_pid=$!
critest_rc=0
wait "$critest_pid" || critest_rc=$?
critest_pid=""
# tail --pid notices critest's end within a second and drains the log.
wait "$follower_pid" 2>/dev/null || true
follower_pid=""
say "critest exited with $critest_rc"

# A crash of noded makes every later spec fail, expected or not; that must
# never pass as "expected failures", so it fails the run on its own.
noded_died=""
if ! kill -0 "$noded_pid" 2>/dev/null; then
	noded_rc=0
	wait "$noded_pid" 2>/dev/null || noded_rc=$?
	noded_pid=""
	noded_died="noded EXITED during the run (exit status $noded_rc); see $out/noded.log"
	say "ERROR: $noded_died; its last lines:"
	grep -m1 -A12 -E '^(panic|fatal error):' "$tmp/noded.log" >&2 || tail -n 20 "$tmp/noded.log" >&2
fi

# ------------------------------------------------------- 6. summary
[[ -s "$out/report.json" ]] || {
	tail -n 40 "$out/critest.log" >&2
	die "critest wrote no report ($out/report.json); see $out/critest.log"
}

gr_classify "$out/report.json" "$out"
n_pass=$gr_pass n_fail=$gr_fail n_skip=$gr_skip

# ------------------------------------------------------- 7. expectations
gr_verdict "$expected_file" "$out" "$tmp"
unexpected_fail=$gr_unexpected_fail unexpected_pass=$gr_unexpected_pass

summary_line="critest: $n_pass passed, $n_fail failed, $n_skip skipped"
{
	echo "critest ${CRITEST_ARGS:+(CRITEST_ARGS=$CRITEST_ARGS) }against $("$noded_bin" --version 2>/dev/null | head -n1)"
	echo "report: $out/report.json   log: $out/critest.log   noded log: $out/noded.log"
	# critest randomises the spec order; the seed replays it.
	seed="$(jq -r '.[0].SuiteConfig.RandomSeed // empty' "$out/report.json" 2>/dev/null || true)"
	[[ -z "$seed" ]] || echo "random seed: $seed (CRITEST_ARGS=--ginkgo.seed=$seed replays this order)"
	echo
	gr_findings "$expected_file" "$out"
	# Listed specs that critest does not know at all (renamed or removed
	# upstream): not an error, but the list should be tidied.
	if [[ -n "$gr_stale" ]]; then
		echo "note: listed in $(basename "$expected_file") but not in this critest at all:"
		printf '%s\n' "$gr_stale" | sed 's/^/  /'
		echo
	fi
	if [[ -n "$noded_died" ]]; then
		echo "NODED CRASHED: $noded_died"
		echo
	fi
	gr_result "$noded_died"
	echo "$summary_line"
} >"$out/summary.txt"

# For unexpected failures, show why.
gr_explain "$out/report.json"

# Tear down now rather than in the EXIT trap, so that the count line is the
# last thing printed.
cleanup
cat "$out/summary.txt"
[[ -z "$unexpected_fail" && -z "$unexpected_pass" && -z "$noded_died" ]]
