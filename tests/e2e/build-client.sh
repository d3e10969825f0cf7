#!/usr/bin/env bash
# Builds the end-to-end test client from Debian packages and caches it.
#
#   build-client.sh OUT_DIR
#
# OUT_DIR/os-tree/ is an OS tree for bramble (os/<name>/): boot/vmlinuz,
# boot/initrd.img, boot/cmdline.txt, a busybox root with files of every
# special kind, and a large file with its checksum. The initramfs loads the
# virtio and NFS modules, runs udhcpc, mounts its root from the nfsroot= of
# the kernel command line over NFSv3/TCP (read-only) and switch_roots into
# /check.sh, which reports on the serial console and powers off.
#
# The result is cached under ${BRAMBLE_E2E_CACHE:-/var/cache/bramble-e2e}
# keyed by the kernel version, busybox version and this script's checksum.
set -euo pipefail
out=${1:?usage: build-client.sh OUT_DIR}
here=$(cd "$(dirname "$0")" && pwd)
cache=${BRAMBLE_E2E_CACHE:-/var/cache/bramble-e2e}
# shellcheck source=lib.sh
. "$here/lib.sh"

resolve() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}'; }
kpkg=$(resolve)
if [ -z "$kpkg" ]; then apt-get update -qq >/dev/null 2>&1 || true; kpkg=$(resolve); fi
[ -n "$kpkg" ] || { echo "build-client: cannot resolve linux-image-amd64 (apt-get update?)" >&2; exit 1; }
bbver=$(dpkg-query -W -f='${Version}' busybox-static)
key=$(printf '%s %s %s' "$kpkg" "$bbver" "$(sha256sum "$0" "$here/lib.sh" "$here"/client/* | sha256sum)" | sha256sum | cut -c1-16)
cached build-client "$cache" "$key" "$out" && exit 0

work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
echo "build-client: building $kpkg client in $work"
(cd "$work" && apt-get download "$kpkg" >/dev/null 2>&1) || { echo "build-client: apt-get download $kpkg failed" >&2; exit 1; }
dpkg-deb -x "$work"/linux-image-*.deb "$work/k"
kver=$(ls "$work/k/lib/modules")
depmod -b "$work/k" "$kver"

make_initramfs "$work/k" "$kver" /bin/busybox "$here/client" "$work/initrd.img"
t="$work/os-tree"
make_tree "$t" "$(ls "$work"/k/boot/vmlinuz-*)" "$work/initrd.img" /bin/busybox "$here/client" "console=ttyS0 panic=-1 quiet"
publish "$cache" "$key" "$t" "$kver" "$out"
echo "build-client: done ($kver) -> $cache/$key"
