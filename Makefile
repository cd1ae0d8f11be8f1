# noded build, test and benchmark entry points. Scripts under scripts/ install
# what these targets need on a fresh Debian machine.

GO        ?= go
BIN       := bin
BUILD     := _build
TOOLS     := $(BUILD)/tools
# Semantic (the kubelet parses RuntimeVersion; a bare commit shows as
# "noded://Unknown" in `kubectl get nodes -o wide`): 0.1.0+<commit>[.dirty].
VERSION   ?= 0.1.0+$(shell git describe --always --dirty 2>/dev/null | tr - . || echo dev)
# containers/image without gpgme (pure-Go OpenPGP) and containers/storage
# without the btrfs and devicemapper drivers: no C libraries beyond libseccomp.
BUILDTAGS := containers_image_openpgp exclude_graphdriver_btrfs exclude_graphdriver_devicemapper
GOFLAGS_BUILD := -trimpath -tags "$(BUILDTAGS)"
LDFLAGS   := -X main.version=$(VERSION)
PKGS      := ./cmd/... ./internal/... ./conmon-go/... ./test/testimages/... ./test/registry/...

export PATH := /usr/local/go/bin:$(PATH)

.PHONY: cluster-e2e all build noded noded-failpoints conmon-go pause testregistry run test integration soak critest \
	bench bench-pull bench-pods bench-exec bench-events bench-stats lint fmt vet clean readme-config \
	cluster-tools cluster-up cluster-down e2e-tools e2e-conformance e2e-conformance-ci

all: build

build: noded conmon-go pause testregistry

noded:
	$(GO) build $(GOFLAGS_BUILD) -ldflags "$(LDFLAGS)" -o $(BIN)/noded ./cmd/noded

# The per-pod monitor stays small (no libcontainer); conmon-go-runtime is
# the short-lived libcontainer helper it runs for each operation, and the
# container's init. It is linked statically with musl (libseccomp.a; netgo
# and osusergo keep NSS out): it starts twice per container operation, and
# being static skips the dynamic loader (~130 page faults), being musl skips
# glibc's CPUID probing of the caches (~0.5 ms a start on a VM). The sysroot
# is scripts/musl-sysroot.sh's. It is built twice: conmon-go-runtime without
# checkpoint/restore (runc_nocriu), for every operation, and
# conmon-go-runtime-criu with it, which the monitor runs only to checkpoint
# and restore: CRIU's code (go-criu, its protobuf descriptors registered at
# start) makes each start ~0.7 ms and ~140 page faults dearer, twice per
# container create and exec.
MUSL := $(BUILD)/musl

$(MUSL)/pkgconfig/libseccomp.pc: scripts/musl-sysroot.sh scripts/musl/fortify.c
	scripts/musl-sysroot.sh $(MUSL)

conmon-go: $(MUSL)/pkgconfig/libseccomp.pc
	# The monitor is built with Go's previous garbage collector: Green Tea
	# (Go 1.26's default) keeps ~70 KiB more of anonymous memory in an idle
	# monitor, a per-pod cost (conmon-go/README.md).
	GOEXPERIMENT=nogreenteagc $(GO) build $(GOFLAGS_BUILD) -ldflags "-s -w" -o $(BIN)/conmon-go ./conmon-go
	CC=musl-gcc PKG_CONFIG_LIBDIR=$(CURDIR)/$(MUSL)/pkgconfig CGO_CFLAGS="-O2 -I$(CURDIR)/$(MUSL)/include" \
		$(GO) build -trimpath -tags "$(BUILDTAGS) seccomp runc_nocriu netgo osusergo" \
		-ldflags "-s -w -linkmode external -extldflags -static" -o $(BIN)/conmon-go-runtime ./conmon-go/runtime
	CC=musl-gcc PKG_CONFIG_LIBDIR=$(CURDIR)/$(MUSL)/pkgconfig CGO_CFLAGS="-O2 -I$(CURDIR)/$(MUSL)/include" \
		$(GO) build -trimpath -tags "$(BUILDTAGS) seccomp netgo osusergo" \
		-ldflags "-s -w -linkmode external -extldflags -static" -o $(BIN)/conmon-go-runtime-criu ./conmon-go/runtime

# The pause process is C, static and tiny: it sits in every pod. musl keeps
# it at ~17 KB and ~32 kB resident (glibc static: ~700 kB resident).
pause:
	@mkdir -p $(BIN)
	musl-gcc -Os -static -s -o $(BIN)/noded-pause internal/pause/pause.c

testregistry:
	$(GO) build $(GOFLAGS_BUILD) -o $(BIN)/noded-testregistry ./test/registry

run: build
	./$(BIN)/noded

# Unit tests. Tests that need root or a kernel feature skip themselves with a
# reason when it is missing.
test:
	$(GO) test $(GOFLAGS_BUILD) -count=1 $(PKGS)

# A test build of noded whose create steps can kill it (NODED_FAILPOINT,
# cmd/noded/failpoint.go), for the crash tests; never installed.
noded-failpoints:
	$(GO) build -trimpath -tags "$(BUILDTAGS) failpoints" -ldflags "$(LDFLAGS)" -o $(BIN)/noded-failpoints ./cmd/noded

# Integration tests drive the real daemon over its socket, as crictl would.
integration: build noded-failpoints
	$(GO) test -trimpath -tags "$(BUILDTAGS) integration" -count=1 -p 1 ./test/integration/...

# The soak test (TestChurn, also part of `make integration` for 60 s) for
# as long as SOAK says, e.g. make soak SOAK=30m.
SOAK ?= 30m
soak: build
	NODED_SOAK=$(SOAK) $(GO) test -trimpath -tags "$(BUILDTAGS) integration" -count=1 -run TestChurn -v -timeout 2h ./test/integration/

# Two passes: the whole suite (SPDY streams), then the streaming specs
# again with critest's WebSocket clients (exec and attach over
# v5.channel.k8s.io, port-forward as SPDY tunnelled in a WebSocket: what
# kubectl >= 1.30 speaks).
critest: build
	test/critest/run.sh
	CRITEST_OUT=$(CURDIR)/$(BUILD)/critest-websocket \
		CRITEST_ARGS="--ginkgo.focus=Streaming -websocket-exec -websocket-attach -websocket-portforward" test/critest/run.sh

bench: bench-pull bench-pods bench-exec bench-events bench-stats

# bench-pull, bench-pods and bench-exec take BENCH_ARGS: -endpoint
# unix:///path measures any CRI runtime instead of a noded started here;
# -compare also starts Debian's containerd 1.6.20 + runc and containerd 2.4
# + runc 1.4 (built from the Go module proxy by
# test/bench/peer/build-containerd2.sh, cached in /var/cache/noded-test) on
# private directories and prints each figure for each runtime and the
# ratio to the best peer, e.g. make bench-pods BENCH_ARGS=-compare;
# -noded-args "..." adds to the started noded's command line.
BENCH_ARGS ?=

bench-pull: build
	$(GO) run $(GOFLAGS_BUILD) ./test/bench/pull $(BENCH_ARGS)

bench-pods: build
	$(GO) run $(GOFLAGS_BUILD) ./test/bench/pods $(BENCH_ARGS)

# ExecSync, streaming exec and port-forward against Debian's containerd
# 1.6.20 + runc 1.1.5 (apt-get download, unpacked into _build/containerd).
bench-exec: build
	$(GO) run $(GOFLAGS_BUILD) ./test/bench/exec $(BENCH_ARGS)

# ListPodSandboxStats and ListContainerStats with 50 pods running, against
# Debian's containerd 1.6.20 (as bench-exec).
bench-stats: build
	$(GO) run $(GOFLAGS_BUILD) ./test/bench/stats

# Container exit to CONTAINER_STOPPED at a GetContainerEvents subscriber,
# p50/p95 over N exits.
bench-events: build
	$(GO) run $(GOFLAGS_BUILD) ./test/bench/events

# The one-node Kubernetes cluster on a private noded (test/cluster): the
# control plane and kubelet built from the Go module proxy (cached under
# /var/cache/noded-test, keyed by version), then started on loopback with
# all state under _build/cluster; cluster-down stops it by PID and checks
# that nothing is left.
cluster-tools:
	test/cluster/build-tools.sh

cluster-up: build cluster-tools
	test/cluster/up.sh

cluster-down:
	test/cluster/down.sh

# The cluster's scenarios (test/cluster/e2e.sh): up, smoke and
# observability checks through a real kubelet, down.
cluster-e2e: build cluster-tools
	test/cluster/e2e.sh

# Kubernetes' e2e suite (e2e.test, agnhost for its images, the ginkgo CLI;
# k8s.io/kubernetes at the cluster's version, cached like cluster-tools)
# against the cluster: test/e2e/run.sh brings it up, runs the
# [NodeConformance] specs (results in _build/e2e, checked against
# test/e2e/expected-failures.txt) and brings it down, under the cluster lock.
e2e-tools:
	test/cluster/build-tools.sh e2e.test agnhost ginkgo

e2e-conformance: build cluster-tools e2e-tools
	test/e2e/run.sh

# The CI subset (a few minutes): test/e2e/ci-focus.txt.
e2e-conformance-ci: build cluster-tools e2e-tools
	E2E_FOCUS_FILE=test/e2e/ci-focus.txt E2E_OUT=$(BUILD)/e2e-ci test/e2e/run.sh

lint: vet
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo 'gofmt: files above need formatting'; exit 1; }
	$(TOOLS)/golangci-lint run ./...

vet:
	$(GO) vet $(GOFLAGS_BUILD) $(PKGS)

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf $(BIN) $(BUILD)/critest

# The Debian package, _build/deb/noded_<version>_<arch>.deb (dpkg-deb, no
# network; packaging/deb/build.sh says what it holds). Its test installs it
# on this machine: test/package/deb.sh.
.PHONY: deb
deb: build
	packaging/deb/build.sh "$(VERSION)"

# Regenerates the configuration reference in README.md from `noded config`
# on built-in defaults (cgroupfs fixed: the default follows the host).
readme-config: noded
	env -u CONTAINERS_REGISTRIES_CONF ./$(BIN)/noded config --config /dev/null --config-dir "" --cgroup-manager cgroupfs > $(BUILD)/config.toml.tmp
	python3 scripts/replace-block.py README.md "noded config" $(BUILD)/config.toml.tmp
