#!/usr/bin/env bash
# Installs what building noded needs on a fresh Debian 12 (bookworm).
#
# Idempotent: when everything is already installed it touches neither apt
# nor the network. Go itself is not installed here: it is expected at
# /usr/local/go (the project's machines ship it); this script only checks
# that it is there and new enough.
#
# The binaries are built with `containers_image_openpgp` (pure-Go OpenPGP)
# and `exclude_graphdriver_btrfs`, so they link neither gpgme nor btrfs.
# The headers are still installed so that plain `go vet ./...` and editors,
# which know nothing of the Makefile's build tags, compile every package.
set -euo pipefail

# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

build_packages=(
	# cgo: libseccomp-golang links against libseccomp; conmon-go-runtime is
	# linked statically with musl, from libseccomp.a (libseccomp-dev; see
	# scripts/musl-sysroot.sh); libc6-dev (which gcc alone does not pull
	# when recommends are off) is for the plain cgo builds of tests and vet.
	gcc
	libc6-dev
	make
	pkg-config
	libseccomp-dev
	# musl-gcc builds the static pause binary a tenth the size of glibc's,
	# and conmon-go-runtime (cheaper to start than with glibc).
	musl-tools
	libgpgme-dev
	libbtrfs-dev
	# go needs git for modules not on the proxy; ca-certificates for TLS to
	# the module proxy.
	git
	ca-certificates
	# noded shells out to / links the same functionality as ip(8) and
	# iptables(8) for pod networking (CNI plugins call them too).
	iproute2
	iptables
)

apt_install "${build_packages[@]}"
ensure_go
log "build dependencies present; $(go version)"
