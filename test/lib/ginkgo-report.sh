# shellcheck shell=bash
# shellcheck disable=SC2034 # gr_* variables are the callers'
# The ginkgo report handling that test/critest/run.sh and test/e2e/run.sh
# share: classifying a JSON report's specs, reading an expected-failures
# file, and the summary's verdict. Source it; it defines functions only
# (prefix gr_) and needs `say` from the caller. LC_ALL=C sorting throughout,
# so that comm(1) agrees with sort(1).

# Spec name: ginkgo's full text (containers and It joined by spaces);
# setup nodes that failed are named after their type. Only It specs the
# focus selects are counted (a suite's report lists every spec, the others
# as skipped), and every failure.
# shellcheck disable=SC2016 # jq's $focus, not the shell's
gr_jq_specs='
	def name: if .LeafNodeType == "It"
		then (((.ContainerHierarchyTexts // []) + [.LeafNodeText]) | join(" "))
		else "[" + .LeafNodeType + "]" end;
	def failed: .State != "passed" and .State != "skipped" and .State != "pending";
	def specs: .[].SpecReports[] | select((.LeafNodeType == "It" and (name | test($focus))) or failed);
'

# gr_classify REPORT OUT [FOCUS]: OUT/passed.txt, skipped.txt and
# failed.txt (failed, panicked, timed out, interrupted, aborted), sorted;
# sets gr_pass, gr_fail, gr_skip.
gr_classify() {
	local report=$1 out=$2 focus=${3:-.}
	LC_ALL=C jq -r --arg focus "$focus" "$gr_jq_specs"'specs | select(.State == "passed") | name' "$report" | LC_ALL=C sort -u >"$out/passed.txt"
	LC_ALL=C jq -r --arg focus "$focus" "$gr_jq_specs"'specs | select(.State == "skipped" or .State == "pending") | name' "$report" | LC_ALL=C sort -u >"$out/skipped.txt"
	LC_ALL=C jq -r --arg focus "$focus" "$gr_jq_specs"'specs | select(failed) | name' "$report" | LC_ALL=C sort -u >"$out/failed.txt"
	gr_pass=$(wc -l <"$out/passed.txt")
	gr_fail=$(wc -l <"$out/failed.txt")
	gr_skip=$(wc -l <"$out/skipped.txt")
}

# gr_verdict EXPECTED_FILE OUT TMP: reads the "<full spec name> | <reason>"
# lines of EXPECTED_FILE (the name ends at the first " | ": spec names
# contain "|" but never " | "; blank lines and #-comments ignored) and
# compares them with OUT's lists. Sets gr_unexpected_fail (fail, not
# listed), gr_unexpected_pass (listed, pass) and gr_stale (listed, not in
# the run at all). Warns of names listed twice.
gr_verdict() {
	local file=$1 out=$2 tmp=$3 dups
	sed -e '/^[[:space:]]*#/d' -e '/^[[:space:]]*$/d' "$file" |
		awk '{ i = index($0, " | "); n = (i ? substr($0, 1, i - 1) : $0); sub(/^[[:space:]]+/, "", n); sub(/[[:space:]]+$/, "", n); print n }' |
		LC_ALL=C sort >"$tmp/expected.all"
	LC_ALL=C sort -u "$tmp/expected.all" >"$tmp/expected.txt"
	dups="$(uniq -d "$tmp/expected.all")"
	[[ -z "$dups" ]] || say "warning: listed more than once in $(basename "$file"): $dups"
	gr_unexpected_fail="$(LC_ALL=C comm -23 "$out/failed.txt" "$tmp/expected.txt")"
	gr_unexpected_pass="$(LC_ALL=C comm -12 "$out/passed.txt" "$tmp/expected.txt")"
	gr_stale="$(LC_ALL=C comm -23 "$tmp/expected.txt" <(LC_ALL=C sort -u "$out/passed.txt" "$out/failed.txt" "$out/skipped.txt"))"
}

# gr_findings EXPECTED_FILE OUT: the summary's middle, on stdout: the
# failed specs, and the unexpected failures and passes (of gr_verdict).
gr_findings() {
	local name
	name="$(basename "$1")"
	echo "failed specs ($gr_fail):"
	if ((gr_fail)); then sed 's/^/  /' "$2/failed.txt"; else echo "  (none)"; fi
	echo
	if [[ -n "$gr_unexpected_fail" ]]; then
		echo "UNEXPECTED FAILURES (fail, not in $name):"
		printf '%s\n' "$gr_unexpected_fail" | sed 's/^/  /'
		echo
	fi
	if [[ -n "$gr_unexpected_pass" ]]; then
		echo "UNEXPECTED PASSES (listed in $name, but pass: remove them):"
		printf '%s\n' "$gr_unexpected_pass" | sed 's/^/  /'
		echo
	fi
}

# gr_result DIED: the result line; DIED (the daemon's crash, or "") fails
# it too.
gr_result() {
	if [[ -z "$gr_unexpected_fail" && -z "$gr_unexpected_pass" && -z "$1" ]]; then
		echo "result: OK (every failure is expected, no expected failure passed)"
	else
		echo "result: FAIL ($(grep -c . <<<"$gr_unexpected_fail" || true) unexpected failure(s), $(grep -c . <<<"$gr_unexpected_pass" || true) unexpected pass(es)${1:+, noded died})"
	fi
}

# gr_explain REPORT [FOCUS]: for each unexpected failure, the first lines
# of ginkgo's failure message (usually enough to see what broke), on
# stderr.
gr_explain() {
	[[ -n "$gr_unexpected_fail" ]] || return 0
	jq -r --arg focus "${2:-.}" --rawfile names <(printf '%s\n' "$gr_unexpected_fail") "$gr_jq_specs"'
		($names | split("\n") | map(select(length > 0))) as $want
		| specs | select(failed) | name as $n
		| select(any($want[]; . == $n))
		| "--- \($n) [\(.State)]\n"
		  + ((.Failure.Message // "") | split("\n") | .[0:6] | map("    " + .) | join("\n"))
	' "$1" >&2 || true
}
