#!/usr/bin/env bash
# Builds the Debian package of noded from the binaries `make build` made:
#
#   packaging/deb/build.sh VERSION   ->  _build/deb/noded_VERSION_ARCH.deb
#
# (`make deb` runs it.) Plain dpkg-deb, no network and no debhelper: the
# tree is staged under _build/deb/root and packed with root ownership.
#
# What the package holds:
#   /usr/bin/noded, conmon-go, conmon-go-runtime(-criu), noded-pause
#       noded finds the monitor and the pause binary next to itself, so the
#       configuration needs no path.
#   /lib/systemd/system/noded.service   contrib/systemd's unit on /usr/bin
#   /etc/noded/noded.toml               every key, commented out (conffile)
#   /etc/noded/noded.toml.d/            drop-ins
# and its maintainer scripts (next to this file):
#   postinst  enables noded.service (does not start it), writes the default
#             CNI network unless the CNI config dir holds one
#             (`noded default-network`) and /etc/crictl.yaml unless it exists;
#   prerm     stops noded.service when systemd runs (containers keep
#             running: KillMode=process);
#   postrm    remove: keeps configuration and state; purge: removes them.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
here="$repo/packaging/deb"
version=${1:?usage: build.sh VERSION}
arch="$(dpkg --print-architecture)"
out="$repo/_build/deb"
root="$out/root"

say() { printf '[deb] %s\n' "$*" >&2; }
die() {
	say "ERROR: $*"
	exit 1
}

command -v dpkg-deb >/dev/null || die "dpkg-deb not found (Debian's dpkg package)"
# A Debian version: digits first, then letters, digits and . + ~ (no
# hyphen: the package is native, it has no Debian revision).
[[ "$version" =~ ^[0-9][A-Za-z0-9.+~]*$ ]] || die "version $version is not a Debian native version"
bins=(noded conmon-go conmon-go-runtime conmon-go-runtime-criu noded-pause)
for b in "${bins[@]}"; do
	[[ -x "$repo/bin/$b" ]] || die "bin/$b missing: run make build"
done

rm -rf "$root"
mkdir -p "$root/DEBIAN" "$root/usr/bin" "$root/lib/systemd/system" "$root/etc/noded/noded.toml.d" \
	"$root/usr/share/doc/noded"
for b in "${bins[@]}"; do
	install -m 0755 "$repo/bin/$b" "$root/usr/bin/$b"
done

# The unit runs the packaged binary (contrib/systemd's is for
# /usr/local/bin, where a hand-installed noded goes).
sed 's|^ExecStart=/usr/local/bin/noded|ExecStart=/usr/bin/noded|' "$repo/contrib/systemd/noded.service" \
	>"$root/lib/systemd/system/noded.service"
grep -q '^ExecStart=/usr/bin/noded' "$root/lib/systemd/system/noded.service" ||
	die "contrib/systemd/noded.service: no ExecStart=/usr/local/bin/noded to rewrite"
chmod 0644 "$root/lib/systemd/system/noded.service"

# The configuration: `noded config` on built-in defaults with every key
# commented out, so the file documents each key and its default while
# changing nothing; an uncommented key is then the operator's choice.
# cgroup-manager's default follows the host when noded starts, not the one
# this build runs on: say so.
{
	"$repo/bin/noded" config --config /dev/null --config-dir "" --cgroup-manager cgroupfs |
		awk '
			NR == 2 {
				print
				print "#"
				print "# Every key is commented out and shows its built-in default; uncomment a"
				print "# key to change it. cgroup-manager defaults to \"systemd\" when systemd"
				print "# is PID 1, \"cgroupfs\" otherwise."
				next
			}
			/^[a-z0-9-]+ = / { print "# " $0; next }
			{ print }'
} >"$root/etc/noded/noded.toml"
chmod 0644 "$root/etc/noded/noded.toml"
if grep -Eq '^[a-z0-9-]+ = ' "$root/etc/noded/noded.toml"; then
	die "etc/noded/noded.toml has an uncommented key"
fi

cat >"$root/usr/share/doc/noded/README.Debian" <<'DOC'
noded for Debian
================

noded.service is enabled on installation but not started:
  systemctl start noded        (or run /usr/bin/noded as root)

The configuration is /etc/noded/noded.toml (every key commented out, with its
default) and drop-ins in /etc/noded/noded.toml.d/*.toml.

When the CNI configuration directory (/etc/cni/net.d) holds no network, the
package (and noded at each start) writes noded's default bridge network,
99-noded-bridge.conflist: bridge noded0, 10.87.0.0/16, and
fd6e:6f64:6564::/64 when the host has IPv6. A network that already exists is
never changed; one installed later whose file sorts first (10-flannel,
05-cilium, ...) is used for new pods. cni-default-network = false turns it off.

/etc/crictl.yaml is written when it does not exist, pointing crictl at
unix:///run/noded/noded.sock.

Removing the package keeps the configuration and the state
(/var/lib/noded: images, pod records); purging it removes them, with
/run/noded, the default network's file and leases, and /etc/crictl.yaml
if the package wrote it and it is unchanged.
DOC
chmod 0644 "$root/usr/share/doc/noded/README.Debian"

for s in postinst prerm postrm; do
	install -m 0755 "$here/$s" "$root/DEBIAN/$s"
done
printf '%s\n' /etc/noded/noded.toml >"$root/DEBIAN/conffiles"

installed_size="$(du -sk --exclude=DEBIAN "$root" | cut -f1)"
# noded is the only binary linked dynamically (conmon-go is pure Go,
# conmon-go-runtime and noded-pause static with musl), against glibc alone:
# it needs the newest glibc symbol version it uses.
glibc="$(objdump -T "$repo/bin/noded" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -n1)"
[[ -n "$glibc" ]] || die "no glibc symbol versions in bin/noded (objdump -T)"
extra_libs="$(ldd "$repo/bin/noded" | awk '$1 !~ /^(linux-vdso|libc\.so|\/lib64\/ld-linux)/ { print $1 }')"
[[ -z "$extra_libs" ]] || die "bin/noded links $extra_libs: add the packages to Depends"
cat >"$root/DEBIAN/control" <<CONTROL
Package: noded
Version: $version
Architecture: $arch
Maintainer: noded developers <noded@noded.dev>
Installed-Size: $installed_size
Depends: libc6 (>= ${glibc#GLIBC_}), containernetworking-plugins, iptables
Suggests: kubelet
Section: admin
Priority: optional
Homepage: https://github.com/noded-dev/noded
Description: Kubernetes container runtime (CRI v1)
 noded serves the kubelet's Container Runtime Interface (RuntimeService and
 ImageService) on a unix socket. Pods are pause sandboxes in a CNI network
 namespace; images are pulled into containers/storage (overlay); containers
 are OCI bundles run by runc's libcontainer under conmon-go, one monitor per
 pod, which outlives a restart of noded.
 .
 The package runs pods out of the box: it installs a default bridge network
 when none exists, and points crictl at noded.
CONTROL

deb="$out/noded_${version}_${arch}.deb"
rm -f "$deb"
dpkg-deb --root-owner-group --build "$root" "$deb" >/dev/null
say "built $deb ($(du -h "$deb" | cut -f1))"
printf '%s\n' "$deb"
