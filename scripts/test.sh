#!/usr/bin/env bash
# The README's "test" command (and what CI runs): installs the test
# dependencies, then runs every test suite and prints a closing summary.
#
#   make build        the binaries every later step uses
#   make test         unit tests
#   make integration  integration tests (./test/integration/..., build tag
#                     `integration`); skipped while that directory has none
#   test/package/deb.sh  the Debian package (make deb) installed, run,
#                     removed and purged on this machine
#   make critest      CRI validation (test/critest/run.sh) against a private
#                     noded, checked against test/critest/expected-failures.txt
#   make cluster-e2e  a one-node Kubernetes v1.37 cluster on a private noded
#                     (test/cluster): smoke and observability scenarios
#   make e2e-conformance-ci  a few [NodeConformance] specs of Kubernetes' e2e
#                     suite against that cluster (test/e2e/ci-focus.txt)
#
# Every step runs even when an earlier one failed (except that integration
# and critest need a build), so one run reports everything that is broken.
# Exits non-zero if any step failed.
#
# Safe under CI=true with no stdin: nothing reads stdin (it is /dev/null for
# every step) and apt runs non-interactively.
set -euo pipefail

# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Nothing below may wait for a terminal: CI has no stdin.
exec </dev/null

if [[ $EUID -ne 0 ]]; then
	die "the tests need root (critest runs a real noded that mounts and creates namespaces); try: sudo $0"
fi

cd "$NODED_REPO_ROOT"

steps=()   # step names, in order
results=() # PASS / FAIL / SKIP (reason) per step
durations=()
failed=0

record() {
	steps+=("$1")
	results+=("$2")
	durations+=("$3")
}

# run_step NAME CMD...: runs one step, streaming its output, and records how
# it ended; never aborts the script.
run_step() {
	local name=$1 start rc
	shift
	log "===== $name: $* ====="
	start=$SECONDS
	if "$@"; then
		rc=0
		record "$name" PASS $((SECONDS - start))
	else
		rc=$?
		record "$name" "FAIL (exit $rc)" $((SECONDS - start))
		failed=1
	fi
	return 0
}

run_step "install test deps" "$NODED_REPO_ROOT/scripts/install-test-deps.sh"
ensure_go

run_step "build (make build)" make build
build_ok=1
[[ "${results[-1]}" == PASS ]] || build_ok=0

# Unit tests do not need the binaries: run them even when the build broke.
run_step "unit (make test)" make test

critest_ran=0
e2e_ran=0
if ((build_ok)); then
	# The integration suite may not exist yet; `go test` on a pattern that
	# matches no package is an error, so look for test files first.
	if [[ -d test/integration ]] && [[ -n "$(find test/integration -name '*_test.go' -print -quit)" ]]; then
		run_step "integration (make integration)" make integration
	else
		record "integration (make integration)" "SKIP (no tests under test/integration yet)" 0
	fi

	# The Debian package (make deb), installed, run, removed and purged on
	# this machine; exit 77 is a skip, its reason in NODED_SKIP_FILE.
	pkg_skip="$(mktemp)"
	pkg_start=$SECONDS
	log "===== package (test/package/deb.sh) ====="
	if NODED_SKIP_FILE="$pkg_skip" test/package/deb.sh; then
		record "package (test/package/deb.sh)" PASS $((SECONDS - pkg_start))
	elif (($? == 77)); then
		record "package (test/package/deb.sh)" "SKIP ($(cat "$pkg_skip"))" $((SECONDS - pkg_start))
	else
		record "package (test/package/deb.sh)" FAIL $((SECONDS - pkg_start))
		failed=1
	fi
	rm -f "$pkg_skip"

	run_step "critest (make critest)" make critest
	critest_ran=1

	run_step "cluster e2e (make cluster-e2e)" make cluster-e2e

	# The e2e suite's CI subset needs e2e.test, agnhost and ginkgo
	# (install-test-deps.sh builds them unless NODED_SKIP_E2E_TOOLS=1).
	e2e_bin="${NODED_TEST_CACHE:-/var/cache/noded-test}/k8s-$(source test/cluster/versions.sh && echo "$K8S_VERSION")/bin"
	if [[ -x "$e2e_bin/e2e.test" && -x "$e2e_bin/agnhost" && -x "$e2e_bin/ginkgo" ]]; then
		run_step "e2e CI (make e2e-conformance-ci)" make e2e-conformance-ci
		e2e_ran=1
	else
		record "e2e CI (make e2e-conformance-ci)" "SKIP (no e2e.test/agnhost/ginkgo in $e2e_bin: make e2e-tools)" 0
	fi
else
	record "integration (make integration)" "SKIP (build failed)" 0
	record "package (test/package/deb.sh)" "SKIP (build failed)" 0
	record "critest (make critest)" "SKIP (build failed)" 0
	record "cluster e2e (make cluster-e2e)" "SKIP (build failed)" 0
	record "e2e CI (make e2e-conformance-ci)" "SKIP (build failed)" 0
fi

# Closing summary. critest's own count line is repeated here so it is not
# lost in the scroll-back.
n_pass=0 n_fail=0 n_skip=0
{
	echo
	echo "==================== test summary ===================="
	for i in "${!steps[@]}"; do
		printf '%-34s %-48s %5ss\n' "${steps[$i]}" "${results[$i]}" "${durations[$i]}"
		case "${results[$i]}" in
		PASS) n_pass=$((n_pass + 1)) ;;
		FAIL*) n_fail=$((n_fail + 1)) ;;
		*) n_skip=$((n_skip + 1)) ;;
		esac
	done
	if ((critest_ran)) && [[ -f _build/critest/summary.txt ]]; then
		echo "critest details: _build/critest/summary.txt"
		grep -E '^critest: [0-9]+ passed' _build/critest/summary.txt | sed 's/^/  /' || true
		[[ -f _build/critest-websocket/summary.txt ]] &&
			grep -E '^critest: [0-9]+ passed' _build/critest-websocket/summary.txt | sed 's/^/  websocket pass: /' || true
	fi
	if ((e2e_ran)) && [[ -f _build/e2e-ci/summary.txt ]]; then
		grep -E '^e2e: [0-9]+ passed' _build/e2e-ci/summary.txt | sed 's/^/  e2e CI subset: /' || true
	fi
	echo "======================================================"
	if ((failed)); then
		echo "RESULT: FAIL"
	else
		echo "RESULT: PASS"
	fi
	# Steps, not individual tests: each step prints its own test counts.
	echo "steps: $n_pass passed, $n_fail failed, $n_skip skipped"
}

exit "$failed"
