#!/usr/bin/env bash
# Runs Kubernetes' own e2e suite (e2e.test of k8s.io/kubernetes v1.37.2,
# test/cluster/build-tools.sh) against the one-node cluster of test/cluster
# on a private noded, focused on the [NodeConformance] specs, and checks the
# result against test/e2e/expected-failures.txt. `make e2e-conformance`
# (all of them) and `make e2e-conformance-ci` (the CI subset) call it.
#
# What it does:
#   1. takes the cluster lock (/tmp/noded-cluster.lock: one cluster at a
#      time on a machine), unless it is inherited from a caller that holds
#      it (`flock /tmp/noded-cluster.lock make e2e-conformance`);
#   2. brings the cluster up (test/cluster/up.sh) with the e2e images in its
#      test registry: agnhost built from k8s.io/kubernetes/test/images/agnhost
#      and busybox-based stand-ins (test/testimages/e2e.go), under the names
#      the suite's image manifest gives them;
#   3. runs e2e.test with --ginkgo.focus (default '\[NodeConformance\]') and
#      --ginkgo.skip for what cannot run on one offline node (skips.txt: each
#      with its reason), with a ginkgo JSON and JUnit report;
#   4. summarises the report (passed / failed / skipped, among the focused
#      specs) and compares the failures with expected-failures.txt: a
#      failure not listed there, or a listed spec that passes, fails the run;
#   5. always brings the cluster down again (test/cluster/down.sh, which
#      checks that nothing is left).
#
# Results under _build/e2e/ (E2E_OUT): e2e.log, report.json, junit.xml,
# summary.txt, passed.txt, failed.txt, skipped.txt, cluster-logs/.
#
# Environment:
#   E2E_FOCUS      ginkgo focus regexp   (default '\[NodeConformance\]')
#   E2E_FOCUS_FILE a file of focus regexps, one a line (# comments), joined
#                  with | (make e2e-conformance-ci: ci-focus.txt)
#   E2E_SKIP       more to skip, a regexp (joined to skips.txt's)
#   E2E_PARALLEL   ginkgo processes      (default 2; 1 runs e2e.test alone)
#   E2E_TIMEOUT    ginkgo suite timeout  (default 60m)
#   E2E_ARGS       extra e2e.test arguments (shell quoting rules)
#   E2E_OUT        results directory     (default _build/e2e)
#   E2E_EXPECTED   expected failures     (default test/e2e/expected-failures.txt)
#   E2E_VERBOSE    1: stream the suite's whole output, not one line a spec
#   E2E_LOCK_WAIT  seconds to wait for the cluster lock (default 3600)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# The cluster's paths (repo, tools, C) and pid_alive.
# shellcheck source-path=SCRIPTDIR source=../cluster/config.sh
source "$here/../cluster/config.sh"
# shellcheck source-path=SCRIPTDIR source=../lib/ginkgo-report.sh
source "$here/../lib/ginkgo-report.sh"
say() { printf '[e2e] %s\n' "$*" >&2; }
die() {
	say "ERROR: $*"
	exit 1
}

out="${E2E_OUT:-$repo/_build/e2e}"
[[ "$out" == /* ]] || out="$PWD/$out"
expected_file="${E2E_EXPECTED:-$here/expected-failures.txt}"
skips_file="$here/skips.txt"
focus="${E2E_FOCUS:-\[NodeConformance\]}"
if [[ -n "${E2E_FOCUS_FILE:-}" ]]; then
	[[ -f "$E2E_FOCUS_FILE" ]] || die "E2E_FOCUS_FILE $E2E_FOCUS_FILE not found"
	focus="$(sed -e '/^[[:space:]]*#/d' -e '/^[[:space:]]*$/d' "$E2E_FOCUS_FILE" | paste -sd'|')"
fi
parallel="${E2E_PARALLEL:-2}"
suite_timeout="${E2E_TIMEOUT:-60m}"
lock=/tmp/noded-cluster.lock
cluster_dir="$C"

# ---------------------------------------------------------------- checks
[[ $EUID -eq 0 ]] || die "must run as root (the cluster's kubelet and noded)"
command -v jq >/dev/null 2>&1 || die "'jq' not found; run scripts/install-test-deps.sh"
for b in e2e.test agnhost kubectl; do
	[[ -x "$tools/$b" ]] || die "$tools/$b missing; run test/cluster/build-tools.sh e2e.test agnhost ginkgo"
done
[[ "$parallel" =~ ^[1-9][0-9]*$ ]] || die "E2E_PARALLEL must be a positive integer, got '$parallel'"
((parallel == 1)) || [[ -x "$tools/ginkgo" ]] || die "E2E_PARALLEL=$parallel needs $tools/ginkgo; run test/cluster/build-tools.sh ginkgo"
[[ -f "$expected_file" && -f "$skips_file" ]] || die "$expected_file or $skips_file missing"

extra_args=()
if [[ -n "${E2E_ARGS:-}" ]]; then
	mapfile -t extra_args < <(xargs -r printf '%s\n' <<<"$E2E_ARGS")
fi
extra_args+=("$@")

# "<regexp> | <reason>" and "label <expression> | <reason>" lines: the
# regexps, joined with |, are the skip; the expressions, joined with &&, the
# label filter.
skip_lines="$(sed -e '/^[[:space:]]*#/d' -e '/^[[:space:]]*$/d' -e 's/ | .*//' "$skips_file")"
skip="$(grep -v '^label ' <<<"$skip_lines" | paste -sd'|' || true)"
label_filter="$(grep '^label ' <<<"$skip_lines" | sed 's/^label //' | paste -sd'&' | sed 's/&/ \&\& /g' || true)"
[[ -z "${E2E_SKIP:-}" ]] || skip="${skip:+$skip|}$E2E_SKIP"

# ---------------------------------------------------------------- 1. lock
# A caller that holds the lock (flock FILE make ...) passes its descriptor
# down: taking it again on a new one would wait for ourselves.
held=0
for fd in "/proc/$$/fd/"*; do
	[[ "$(readlink "$fd" 2>/dev/null)" == "$lock" ]] && held=1
done
if ((!held)); then
	exec {lock_fd}>>"$lock"
	say "waiting for the cluster lock $lock"
	flock -w "${E2E_LOCK_WAIT:-3600}" "$lock_fd" || die "timed out waiting for $lock"
fi

mkdir -p "$out"
rm -rf "$out"/{e2e.log,report.json,junit.xml,summary.txt,passed.txt,failed.txt,skipped.txt,cluster-logs,ginkgo}
tmp="$(mktemp -d /tmp/noded-e2e.XXXXXX)"
e2e_pid=""
follower_pid=""
cluster_started=0
cleanup_done=0
cleanup() {
	((cleanup_done)) && return 0
	cleanup_done=1
	set +e
	[[ -z "$e2e_pid" ]] || kill -TERM "$e2e_pid" 2>/dev/null
	[[ -z "$e2e_pid" ]] || wait "$e2e_pid" 2>/dev/null
	[[ -z "$follower_pid" ]] || kill "$follower_pid" 2>/dev/null
	if ((cluster_started)); then
		[[ -d "$cluster_dir/logs" ]] && cp -rL "$cluster_dir/logs" "$out/cluster-logs" 2>/dev/null
		"$repo/test/cluster/down.sh" || down_failed=1
	fi
	rm -rf "$tmp"
	set -e
}
down_failed=0
on_exit() {
	local rc=$?
	trap - INT TERM
	cleanup
	exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- 2. cluster
# noded-testregistry serves the e2e images too when given agnhost.
export NODED_TESTREGISTRY_AGNHOST="$tools/agnhost"
cluster_started=1
# The noded under test: the binary the cluster starts now (a later build
# of bin/noded does not replace the running one).
noded_version="$("$repo/bin/noded" --version 2>/dev/null | head -n1)"
"$repo/test/cluster/up.sh" || die "the cluster did not come up (logs in $cluster_dir/logs)"

# ---------------------------------------------------------------- 3. e2e.test
e2e_args=(
	--kubeconfig "$cluster_dir/kubeconfig"
	--provider local
	--kubectl-path "$tools/kubectl"
	--kubelet-root-dir "$cluster_dir/kubelet"
	--container-runtime-endpoint "unix://$cluster_dir/noded.sock"
	--container-runtime-process-name noded
	--e2e-output-dir "$tmp"
	--repo-root "$tmp"
	# Dumps every namespace's events and pods into the log on failure.
	--dump-logs-on-failure=true
	--disable-log-dump
)
ginkgo_flags=(
	--v --no-color --timeout "$suite_timeout"
	--focus "$focus"
)
[[ -z "$skip" ]] || ginkgo_flags+=(--skip "$skip")
[[ -z "$label_filter" ]] || ginkgo_flags+=(--label-filter "$label_filter")
if ((parallel == 1)); then
	# The same flags as --ginkgo.NAME (their values left alone).
	cmd=("$tools/e2e.test")
	for ((i = 0; i < ${#ginkgo_flags[@]}; i++)); do
		a=${ginkgo_flags[i]}
		case "$a" in
		--v | --no-color) cmd+=("--ginkgo.${a#--}") ;;
		--*)
			cmd+=("--ginkgo.${a#--}" "${ginkgo_flags[i + 1]}")
			i=$((i + 1))
			;;
		esac
	done
	cmd+=(--ginkgo.json-report "$out/report.json" --ginkgo.junit-report "$out/junit.xml" "${e2e_args[@]}" "${extra_args[@]}")
else
	# The ginkgo CLI runs e2e.test in PARALLEL processes ([Serial] specs
	# last, alone) and
	# merges their reports (names relative to --output-dir).
	cmd=("$tools/ginkgo" --procs "$parallel" "${ginkgo_flags[@]}" --output-dir "$out"
		--json-report report.json --junit-report junit.xml "$tools/e2e.test" -- "${e2e_args[@]}" "${extra_args[@]}")
fi
say "focus: $focus"
say "skip:  $skip"
say "label filter: $label_filter"
say "running: ${cmd[*]}"
say "full output: $out/e2e.log"
start=$SECONDS
(cd "$tmp" && exec timeout --kill-after=60s 120m "${cmd[@]}") >"$out/e2e.log" 2>&1 </dev/null &
e2e_pid=$!
if [[ "${E2E_VERBOSE:-0}" == 1 ]]; then
	tail -n +1 -F --pid="$e2e_pid" "$out/e2e.log" 2>/dev/null &
else
	# One line per finished spec (ginkgo -v: "• [FAILED] [12.3 seconds]", the
	# spec's texts on the next lines).
	tail -n +1 -F --pid="$e2e_pid" "$out/e2e.log" 2>/dev/null |
		awk '/^• / { line = $0; if ((getline nxt) > 0) print line " " nxt; else print line; fflush() }' >&2 &
fi
follower_pid=$!
e2e_rc=0
wait "$e2e_pid" || e2e_rc=$?
e2e_pid=""
wait "$follower_pid" 2>/dev/null || true
follower_pid=""
elapsed=$((SECONDS - start))
say "the suite exited with $e2e_rc after $((elapsed / 60)) min $((elapsed % 60)) s"

noded_died=""
if ! pid_alive noded; then
	noded_died="noded was not running at the end of the suite; see $cluster_dir/logs/noded.log"
	say "ERROR: $noded_died"
fi

# ---------------------------------------------------------------- 4. summary
[[ -s "$out/report.json" ]] || {
	tail -n 40 "$out/e2e.log" >&2
	die "the suite wrote no report ($out/report.json); see $out/e2e.log"
}
# Only specs the focus selects are counted: the report lists every spec of
# the suite, the others as skipped.
gr_classify "$out/report.json" "$out" "$focus"
n_pass=$gr_pass n_fail=$gr_fail n_skip=$gr_skip

# ---------------------------------------------------------------- expectations
# "<full spec name> | <reason>", as test/critest/expected-failures.txt.
gr_verdict "$expected_file" "$out" "$tmp"
unexpected_fail=$gr_unexpected_fail unexpected_pass=$gr_unexpected_pass

summary_line="e2e: $n_pass passed, $n_fail failed, $n_skip skipped"
{
	echo "e2e.test $(basename "$(readlink -f "$tools/e2e.test")") (k8s $("$tools/kubectl" version --client -o json 2>/dev/null | jq -r .clientVersion.gitVersion)) against $noded_version, $(date -u +%Y-%m-%d)"
	echo "focus: $focus"
	echo "report: $out/report.json   log: $out/e2e.log   cluster logs: $out/cluster-logs/"
	echo "took $((elapsed / 60)) min $((elapsed % 60)) s with $parallel ginkgo process(es)"
	seed="$(jq -r '.[0].SuiteConfig.RandomSeed // empty' "$out/report.json" 2>/dev/null || true)"
	[[ -z "$seed" ]] || echo "random seed: $seed (E2E_ARGS=--ginkgo.seed=$seed replays this order with E2E_PARALLEL=1)"
	echo
	gr_findings "$expected_file" "$out"
	[[ -z "$noded_died" ]] || echo "NODED DIED: $noded_died"
	gr_result "$noded_died"
	echo "$summary_line"
} >"$out/summary.txt"

gr_explain "$out/report.json" "$focus"

cleanup
((down_failed == 0)) || say "ERROR: make cluster-down reported something left behind"
cat "$out/summary.txt"
[[ -z "$unexpected_fail" && -z "$unexpected_pass" && -z "$noded_died" && $down_failed == 0 ]]
