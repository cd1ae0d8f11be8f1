#!/usr/bin/env bash
# Builds a static busybox from Debian's busybox *source* package, for the
# offline critest images (see test/images/README.md).
#
# Why not Debian's busybox-static binary: it is configured to run applets
# inside its own shell (FEATURE_SH_STANDALONE / PREFER_APPLETS) and leaves out
# ipcs and pgrep, which breaks critest specs (HostIpc, checkSleep, ...). An
# upstream `make defconfig` build has every applet critest calls.
#
# Output: <repo>/_build/busybox/busybox (override with NODED_BUSYBOX_OUT).
# Idempotent: does nothing when the output binary already exists.
#
# Environment:
#   NODED_BUSYBOX_OUT    output binary path   (default: _build/busybox/busybox)
#   NODED_BUSYBOX_CACHE  source/build cache   (default: _build/busybox/cache)
#   NODED_BUSYBOX_FORCE  set to 1 to rebuild even if the output exists
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out="${NODED_BUSYBOX_OUT:-$repo_root/_build/busybox/busybox}"
cache="${NODED_BUSYBOX_CACHE:-$repo_root/_build/busybox/cache}"
src_list=/etc/apt/sources.list.d/noded-deb-src.sources

say() { printf '[build-busybox] %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }
trap 'say "ERROR: line $LINENO: \"$BASH_COMMAND\" failed"' ERR

if [[ -x "$out" && "${NODED_BUSYBOX_FORCE:-0}" != 1 ]]; then
	say "$out already exists; nothing to do (NODED_BUSYBOX_FORCE=1 rebuilds)"
	exit 0
fi

as_root() {
	if [[ $EUID -eq 0 ]]; then
		"$@"
	else
		sudo "$@"
	fi
}

# has_deb_src reports whether apt already knows a deb-src entry, so that we
# never add a duplicate next to one an administrator configured.
has_deb_src() {
	[[ -f "$src_list" ]] && return 0
	grep -Eqs '^[[:space:]]*(deb-src[[:space:]]|Types:.*deb-src)' \
		/etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources
}

# add_deb_src mirrors the binary package sources as source sources: the same
# URIs/Suites/Components/Signed-By, only the Types change. Comments are
# dropped so the generated file stays obvious.
add_deb_src() {
	local tmp
	tmp="$(mktemp)"
	if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
		say "adding deb-src entries to $src_list (copied from debian.sources)"
		grep -v '^[[:space:]]*#' /etc/apt/sources.list.d/debian.sources |
			sed -E 's/^Types:.*/Types: deb-src/' >"$tmp"
	elif [[ -f /etc/apt/sources.list ]]; then
		say "adding deb-src entries to $src_list (converted from sources.list)"
		# One-line "deb [opts] URI suite comps" -> deb822 stanza per line.
		awk '$1 == "deb" {
			i = 2; opts = ""
			if ($2 ~ /^\[/) { while ($i !~ /\]$/) { i++ }; i++ }
			uri = $i; suite = $(i + 1); comps = ""
			for (j = i + 2; j <= NF; j++) comps = comps (comps ? " " : "") $j
			printf "Types: deb-src\nURIs: %s\nSuites: %s\nComponents: %s\n\n", uri, suite, comps
		}' /etc/apt/sources.list >"$tmp"
	else
		rm -f "$tmp"
		die "no /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list to copy deb-src entries from"
	fi
	[[ -s "$tmp" ]] || { rm -f "$tmp"; die "could not derive any deb-src entry"; }
	as_root install -m 0644 "$tmp" "$src_list"
	rm -f "$tmp"
}

if has_deb_src; then
	say "deb-src entries already configured"
else
	add_deb_src
fi

say "apt-get update"
as_root apt-get update -qq

say "installing build dependencies: build-essential dpkg-dev"
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	build-essential dpkg-dev >/dev/null

mkdir -p "$cache"
src_dir="$(find "$cache" -mindepth 1 -maxdepth 1 -type d -name 'busybox-*' | sort | tail -n1)"
if [[ -z "$src_dir" ]]; then
	say "apt-get source busybox (into $cache)"
	(cd "$cache" && apt-get source -qq busybox)
	src_dir="$(find "$cache" -mindepth 1 -maxdepth 1 -type d -name 'busybox-*' | sort | tail -n1)"
	[[ -n "$src_dir" ]] || die "apt-get source busybox did not produce a busybox-* directory"
else
	say "reusing unpacked source $src_dir"
fi

# No embedded build timestamp (KCONFIG_NOTIMESTAMP) and a date pinned to
# Debian's changelog: rebuilds are byte-identical, so image digests stay put.
SOURCE_DATE_EPOCH="$(cd "$src_dir" && dpkg-parsechangelog -STimestamp)"
export SOURCE_DATE_EPOCH KCONFIG_NOTIMESTAMP=1 KBUILD_BUILD_USER=noded KBUILD_BUILD_HOST=noded

obj="$cache/obj"
rm -rf "$obj"
mkdir -p "$obj"

say "configuring: upstream defconfig + CONFIG_STATIC=y (out-of-tree in $obj)"
make -s -C "$src_dir" O="$obj" defconfig >/dev/null

# set_config NAME VALUE rewrites one Kconfig symbol; VALUE "n" unsets it.
set_config() {
	local name=$1 value=$2
	sed -i -E "/^(# )?CONFIG_${name}( is not set|=.*)$/d" "$obj/.config"
	if [[ $value == n ]]; then
		echo "# CONFIG_${name} is not set" >>"$obj/.config"
	else
		echo "CONFIG_${name}=${value}" >>"$obj/.config"
	fi
}

set_config STATIC y
# tc needs the CBQ qdisc uapi that Linux 6.8 headers dropped; keep it where
# it still compiles (bookworm), drop it elsewhere. No critest spec uses tc.
if ! grep -qs TCA_CBQ_MAX /usr/include/linux/pkt_sched.h; then
	say "kernel headers lack TCA_CBQ_*: disabling CONFIG_TC"
	set_config TC n
fi
# Keep applets as separate processes: critest greps process lists
# (pgrep sleep, pidof nginx) and expects real exec()s.
set_config FEATURE_SH_STANDALONE n
set_config FEATURE_PREFER_APPLETS n
# `yes` dies of SIGPIPE once make exits; that is expected, so judge the
# pipeline by make's status alone.
(set +o pipefail; yes '' | make -s -C "$src_dir" O="$obj" oldconfig >/dev/null)

jobs="$(nproc 2>/dev/null || echo 2)"
say "building busybox with $jobs jobs (a few minutes)"
start=$SECONDS
if ! make -s -C "$src_dir" O="$obj" -j"$jobs" busybox >"$obj/build.log" 2>&1; then
	tail -n 40 "$obj/build.log" >&2
	die "busybox build failed; full log in $obj/build.log"
fi
say "build took $((SECONDS - start))s"

bin="$obj/busybox"
file_out="$(file -b "$bin" 2>/dev/null || true)"
if [[ -n "$file_out" && "$file_out" != *static* ]]; then
	die "built binary is not static: $file_out"
fi

# Fail early if an applet critest relies on is missing, instead of failing
# deep inside a critest run.
required=(sh sleep echo cat ls ipcs pgrep pidof hostname wget nc id ps top
	httpd touch mount mkdir grep chmod brctl netstat ping dd adduser addgroup)
applets="$("$bin" --list)"
for a in "${required[@]}"; do
	grep -qx "$a" <<<"$applets" || die "applet $a missing from the build"
done

mkdir -p "$(dirname "$out")"
install -m 0755 "$bin" "$out.tmp"
mv -f "$out.tmp" "$out"
banner="$("$out" --help 2>&1 | head -n1 || true)"
say "wrote $out ($banner)"
