#!/usr/bin/env bash
# Builds the one-node cluster's programs from the Go module proxy, and only
# from there: etcd (go.etcd.io/etcd/server/v3, whose main package is the
# etcd server) and, from k8s.io/kubernetes, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubelet, kube-proxy and kubectl.
#
# Built binaries are cached outside the clone, keyed by version
# ($NODED_TEST_CACHE/k8s-<v>/bin, $NODED_TEST_CACHE/etcd-<v>/bin), so that a
# fresh clone (CI) reuses them; the Go build cache ($(go env GOCACHE)) keeps
# the compiled packages, so a build cut short resumes where it stopped. The
# binaries are then symlinked into _build/cluster-tools/ for the scripts.
#
# kubernetes' go.mod points every k8s.io/* staging module at
# ./staging/src/...; replace directives of a dependency do not apply to the
# main module, so a throw-away go.mod requires k8s.io/kubernetes and
# replaces each of those modules with its published v0.<minor>.<patch>.
#
# Usage: build-tools.sh [binary...]   (default: all of the cluster's, and
# agnhost, whose image the cluster scenarios' grpc probe runs; the e2e
# suite's e2e.test and ginkgo, for make e2e-conformance, only when named)
# Environment:
#   NODED_TEST_CACHE   cache root            (default: /var/cache/noded-test)
#   K8S_VERSION        kubernetes release    (default: v1.37.2)
#   ETCD_VERSION       etcd release          (default: v3.6.16)
set -euo pipefail

# shellcheck source=../../scripts/lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
# shellcheck source=versions.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/versions.sh"
ensure_go

cache="${NODED_TEST_CACHE:-/var/cache/noded-test}"
k8s_dir="$cache/k8s-$K8S_VERSION"
etcd_dir="$cache/etcd-$ETCD_VERSION"
link_dir="$NODED_REPO_ROOT/_build/cluster-tools"
mkdir -p "$k8s_dir/bin" "$etcd_dir/bin" "$link_dir"

# One build at a time per cache (two clones, or make -j, share it).
exec {lock_fd}>"$cache/.build.lock"
flock -w 7200 "$lock_fd" || die "timed out waiting for $cache/.build.lock"

# Outside any repository: neither noded's go.mod nor a go.work applies.
export GOWORK=off GOTOOLCHAIN=local
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=mod"

# built_at BIN MODULE VERSION: BIN exists and `go version -m` says it was
# built from MODULE at VERSION (an interrupted build leaves only *.new).
built_at() {
	[[ -x "$1" ]] && go version -m "$1" 2>/dev/null |
		awk -v m="$2" -v v="$3" '($1 == "mod" || $1 == "dep") && $2 == m && $3 == v { f = 1 } END { exit !f }'
}

# gomod_dir MODULE VERSION prints the module's directory in the module cache,
# downloading it from the proxy when absent.
gomod_dir() {
	local j
	j="$(cd / && go mod download -json "$1@$2")" || die "go mod download $1@$2 failed: $j"
	jq -r '.Dir // empty' <<<"$j"
}

# prepare_k8s_module writes the throw-away module that builds kubernetes'
# commands, once per version.
prepare_k8s_module() {
	local src="$k8s_dir/src" kdir staging m
	[[ -f "$src/go.mod" ]] && return 0
	kdir="$(gomod_dir k8s.io/kubernetes "$K8S_VERSION")"
	staging="v0.${K8S_VERSION#v1.}"
	rm -rf "$src.new" && mkdir -p "$src.new"
	{
		printf 'module noded.dev/cluster-tools\n\n'
		# Same language version and GODEBUG defaults as kubernetes itself.
		grep -E '^(go|godebug) ' "$kdir/go.mod"
		printf '\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$K8S_VERSION"
		# Every `k8s.io/x => ./staging/src/k8s.io/x` becomes `k8s.io/x => k8s.io/x v0.N.P`.
		while read -r m; do
			printf '\t%s => %s %s\n' "$m" "$m" "$staging"
		done < <(awk '$2 == "=>" && $3 ~ /^\.\/staging\// { print $1 }' "$kdir/go.mod")
		printf ')\n'
	} >"$src.new/go.mod"
	# go build -mod=mod fills go.sum (checked against the checksum database
	# through the proxy).
	mv "$src.new" "$src"
}

# k8s_ldflags stamps the version as kubernetes' hack/lib/version.sh does
# (kubectl version, the node's kubeletVersion and skew checks read it).
k8s_ldflags() {
	local v=$K8S_VERSION minor pkg out=""
	minor="${v#v1.}"
	minor="${minor%%.*}"
	for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
		out+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
		out+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
	done
	printf '%s' "$out"
}

# build NAME: builds one binary into its cache dir (to NAME.new, then
# renamed) unless it is there at the right version, and links it.
build() {
	local name=$1 dir module version pkg start
	case "$name" in
	etcd)
		dir="$etcd_dir" module=go.etcd.io/etcd/server/v3 version="$ETCD_VERSION"
		;;
	kube-apiserver | kube-controller-manager | kube-scheduler | kubelet | kube-proxy | kubectl | e2e.test | agnhost)
		dir="$k8s_dir" module=k8s.io/kubernetes version="$K8S_VERSION"
		;;
	ginkgo)
		# Not a kubernetes package: keyed by the ginkgo kubernetes requires.
		dir="$k8s_dir" module=github.com/onsi/ginkgo/v2
		version="$(awk '$1 == "github.com/onsi/ginkgo/v2" { print $2; exit }' "$(gomod_dir k8s.io/kubernetes "$K8S_VERSION")/go.mod")"
		;;
	*) die "unknown binary $name" ;;
	esac
	if built_at "$dir/bin/$name" "$module" "$version"; then
		log "$name $version cached in $dir/bin"
	else
		start=$SECONDS
		log "building $name $version from the Go module proxy"
		if [[ $name == etcd ]]; then
			build_etcd
		else
			prepare_k8s_module
			build_k8s "$name" "$dir/bin/$name.new" || die "building $name failed"
		fi
		mv -f "$dir/bin/$name.new" "$dir/bin/$name"
		log "built $name in $((SECONDS - start)) s"
	fi
	ln -sfn "$dir/bin/$name" "$link_dir/$name"
}

# build_k8s NAME OUT: one program of k8s.io/kubernetes, in the shared
# throw-away module. e2e.test is the e2e suite's test binary (go test -c
# k8s.io/kubernetes/test/e2e, as kubernetes' make WHAT=test/e2e/e2e.test);
# agnhost is the e2e test image's multi-tool, static so that it runs from
# any image (test/testimages puts it in the agnhost image), its version the
# image tag of test/images/agnhost/VERSION; ginkgo is the CLI of the
# ginkgo version kubernetes pins, which runs e2e.test in parallel.
build_k8s() {
	local name=$1 out=$2 kdir
	case "$name" in
	e2e.test)
		(cd "$k8s_dir/src" && nice -n 19 go test -c -trimpath -ldflags "$(k8s_ldflags)" \
			-o "$out" k8s.io/kubernetes/test/e2e)
		;;
	agnhost)
		kdir="$(gomod_dir k8s.io/kubernetes "$K8S_VERSION")"
		(cd "$k8s_dir/src" && CGO_ENABLED=0 nice -n 19 go build -trimpath \
			-ldflags "-X main.Version=$(cat "$kdir/test/images/agnhost/VERSION")" \
			-o "$out" k8s.io/kubernetes/test/images/agnhost)
		;;
	ginkgo)
		(cd "$k8s_dir/src" && nice -n 19 go build -trimpath -o "$out" github.com/onsi/ginkgo/v2/ginkgo)
		;;
	*)
		(cd "$k8s_dir/src" && nice -n 19 go build -trimpath -ldflags "$(k8s_ldflags)" \
			-o "$out" "k8s.io/kubernetes/cmd/$name")
		;;
	esac
}

# build_etcd: etcd's server/go.mod replaces its sibling modules with ../api
# and so on, so `go install ...@version` refuses it; a throw-away module
# pins them to the same release instead.
build_etcd() {
	local src="$etcd_dir/src" m
	if [[ ! -f "$src/go.mod" ]]; then
		rm -rf "$src.new" && mkdir -p "$src.new"
		{
			printf 'module noded.dev/etcd-build\n\ngo 1.26.0\n\nrequire go.etcd.io/etcd/server/v3 %s\n\nreplace (\n' "$ETCD_VERSION"
			for m in go.etcd.io/etcd/api/v3 go.etcd.io/etcd/client/pkg/v3 go.etcd.io/etcd/client/v3 go.etcd.io/etcd/pkg/v3; do
				printf '\t%s => %s %s\n' "$m" "$m" "$ETCD_VERSION"
			done
			printf ')\n'
		} >"$src.new/go.mod"
		mv "$src.new" "$src"
	fi
	(cd "$src" && CGO_ENABLED=0 nice -n 19 go build -trimpath -o "$etcd_dir/bin/etcd.new" go.etcd.io/etcd/server/v3) ||
		die "building etcd failed"
}

# Cheapest first, kubelet (the largest) last: a run cut short keeps what it
# finished, and the build cache keeps the rest of its work.
names=("$@")
if ((${#names[@]} == 0)); then
	names=(etcd agnhost kubectl kube-scheduler kube-proxy kube-controller-manager kube-apiserver kubelet)
fi
total=$SECONDS
for n in "${names[@]}"; do
	build "$n"
done
log "cluster tools in $link_dir ($((SECONDS - total)) s)"
