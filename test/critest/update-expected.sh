#!/usr/bin/env bash
# Updates test/critest/expected-failures.txt from the last critest run
# (the lists test/critest/run.sh leaves in _build/critest/):
#   - lines of specs that now PASS are removed (and printed);
#   - specs that FAIL and are not listed are appended at the end, under a
#     dated heading, with the reason given as $1 (default "TODO: triage");
#   - every other line (comments, reasons, specs that still fail, specs this
#     run skipped or did not know) is kept as it is.
# Review the diff before committing it: a new line is an accepted failure.
#
# Refuses to work from a run in which noded crashed (every spec after the
# crash fails for that reason alone) unless FORCE=1.
#
# Usage: test/critest/update-expected.sh ["reason for the new failures"]
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out="$repo/_build/critest"
expected_file="$repo/test/critest/expected-failures.txt"
reason="${1:-TODO: triage}"

die() {
	printf '[update-expected] ERROR: %s\n' "$*" >&2
	exit 1
}

for f in passed.txt failed.txt summary.txt; do
	[[ -f "$out/$f" ]] || die "$out/$f missing: run make critest (test/critest/run.sh) first"
done
if grep -q '^NODED CRASHED' "$out/summary.txt" && [[ "${FORCE:-0}" != 1 ]]; then
	die "noded crashed during the last run (see $out/summary.txt); fix that first, or FORCE=1"
fi
[[ "$reason" != *" | "* ]] || die "the reason must not contain ' | '"

export LC_ALL=C
new="$(mktemp)"
trap 'rm -f "$new"' EXIT

# Keep every line except entries for specs that passed. The name is the
# text before the first " | ", trimmed, exactly as run.sh reads it.
awk -v passed="$out/passed.txt" '
	BEGIN { while ((getline l < passed) > 0) ok[l] = 1 }
	/^[[:space:]]*#/ || /^[[:space:]]*$/ { print; next }
	{
		i = index($0, " | "); n = (i ? substr($0, 1, i - 1) : $0)
		sub(/^[[:space:]]+/, "", n); sub(/[[:space:]]+$/, "", n)
		if (n in ok) { print "removed (passes now): " n > "/dev/stderr"; next }
		print
	}' "$expected_file" >"$new"

# Failing specs not listed yet.
listed="$(sed -e '/^[[:space:]]*#/d' -e '/^[[:space:]]*$/d' "$expected_file" |
	awk '{ i = index($0, " | "); n = (i ? substr($0, 1, i - 1) : $0); sub(/^[[:space:]]+/, "", n); sub(/[[:space:]]+$/, "", n); print n }' | sort -u)"
added="$(comm -23 "$out/failed.txt" <(printf '%s\n' "$listed"))"
if [[ -n "$added" ]]; then
	last_line="$(tail -n1 "$new")"
	{
		# Exactly one blank line before the new section.
		[[ -z "$last_line" ]] || echo
		echo "# ---- New failures recorded $(date -u +%Y-%m-%d): give each a real reason."
		while IFS= read -r n; do
			printf '%s | %s\n' "$n" "$reason"
			printf 'added: %s\n' "$n" >&2
		done <<<"$added"
	} >>"$new"
fi

if cmp -s "$new" "$expected_file"; then
	echo "[update-expected] $expected_file is up to date"
else
	cat "$new" >"$expected_file"
	echo "[update-expected] updated $expected_file; review: git diff -- test/critest/expected-failures.txt"
fi
