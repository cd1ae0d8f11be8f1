#!/bin/sh
# musl-sysroot.sh DIR: prepares DIR for building conmon-go-runtime with
# musl-gcc (cgo: libcontainer's nsenter, libseccomp-golang):
#   DIR/include    the kernel UAPI headers (linux, asm, asm-generic: musl
#                  ships none) and libseccomp's headers
#   DIR/lib        libseccomp.a (Debian's) and libfortify.a (scripts/musl/fortify.c)
#   DIR/pkgconfig  libseccomp.pc pointing at both, for PKG_CONFIG_LIBDIR
#
# Why musl: the runtime is started twice per container operation (the
# helper, then libcontainer's init), and glibc's static start-up costs
# ~0.5 ms more than musl's on a virtual machine: it probes the cache
# hierarchy with dozens of CPUID instructions, each a VM exit.
# Needs musl-tools and libseccomp-dev (scripts/install-build-deps.sh).
set -eu
dir=$1
src=$(cd "$(dirname "$0")" && pwd)
multiarch=$(gcc -print-multiarch)
mkdir -p "$dir/include" "$dir/lib" "$dir/pkgconfig"
dir=$(cd "$dir" && pwd)
ln -sfn /usr/include/linux "$dir/include/linux"
ln -sfn /usr/include/asm-generic "$dir/include/asm-generic"
ln -sfn "/usr/include/$multiarch/asm" "$dir/include/asm"
cp /usr/include/seccomp.h /usr/include/seccomp-syscalls.h "$dir/include/"
cp "/usr/lib/$multiarch/libseccomp.a" "$dir/lib/"
musl-gcc -O2 -c "$src/musl/fortify.c" -o "$dir/lib/fortify.o"
rm -f "$dir/lib/libfortify.a"
ar rcs "$dir/lib/libfortify.a" "$dir/lib/fortify.o"
version=$(pkg-config --modversion libseccomp)
cat >"$dir/pkgconfig/libseccomp.pc" <<PC
Name: libseccomp
Description: Debian's static libseccomp, linked with musl
Version: $version
Libs: -L$dir/lib -lseccomp -lfortify
Cflags: -I$dir/include
PC
