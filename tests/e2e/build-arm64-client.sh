#!/usr/bin/env bash
# Builds the arm64 end-to-end test client from Debian packages and caches it.
#
#   build-arm64-client.sh OUT_DIR
#
# The arm64 twin of build-client.sh, for a UEFI machine (qemu -M virt with
# Debian's qemu-efi-aarch64 firmware) that PXE-boots with option 93 = 11:
# OUT_DIR/os-tree/ is an OS tree for bramble (os/<name>/) with
# boot/grubnetaa64.efi (Debian's signed GRUB network image, which reads
# grub.cfg from the TFTP server; bramble generates it), boot/vmlinuz,
# boot/initrd.img, boot/cmdline.txt, and the same busybox root as the x86
# client (arm64 busybox-static, the same client/init, udhcpc.sh, check.sh).
#
# The arm64 packages come through a private apt configuration under the
# cache (the system's apt sources and dpkg architectures are left alone),
# from the mirror of /etc/apt/sources.list.d/debian.sources (bookworm main).
# The result is cached under ${BRAMBLE_E2E_CACHE:-/var/cache/bramble-e2e}
# keyed by the package versions and the checksums of this script and
# client/*.
set -euo pipefail
out=${1:?usage: build-arm64-client.sh OUT_DIR}
here=$(cd "$(dirname "$0")" && pwd)
cache=${BRAMBLE_E2E_CACHE:-/var/cache/bramble-e2e}
apt="$cache/apt-arm64"
# shellcheck source=lib.sh
. "$here/lib.sh"

mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}
mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/debs"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror bookworm main" > "$apt/sources.list"
opts=(-o APT::Architecture=arm64 -o APT::Architectures=arm64
      -o Dir::State::Lists="$apt/lists" -o Dir::Cache="$apt/cache"
      -o Dir::Etc::SourceList="$apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
      -o Dir::State::status=/dev/null -o Debug::NoLocking=1)
# Refresh the private lists at most once a day.
if [ -z "$(find "$apt/lists" -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null | head -n1)" ]; then
  apt-get "${opts[@]}" update -qq >/dev/null 2>&1 || echo "build-arm64-client: apt-get update (arm64) failed; using old lists" >&2
fi
kpkg=$(apt-cache "${opts[@]}" depends linux-image-arm64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
[ -n "$kpkg" ] || { echo "build-arm64-client: cannot resolve linux-image-arm64" >&2; exit 1; }
ver() { apt-cache "${opts[@]}" policy "$1" 2>/dev/null | awk '/Candidate:/{print $2; exit}'; }
pkgs="$kpkg busybox-static grub-efi-arm64-signed"
versions=""
for p in $pkgs; do versions="$versions $p=$(ver "$p")"; done
# Contents only (not paths), so the key does not depend on how this is called.
key=arm64-$(printf '%s %s' "$versions" "$(cat "$0" "$here/lib.sh" "$here"/client/* | sha256sum)" | sha256sum | cut -c1-16)
cached build-arm64-client "$cache" "$key" "$out" && exit 0

work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
echo "build-arm64-client: building $kpkg client in $work"
# shellcheck disable=SC2086
(cd "$apt/debs" && rm -f ./*.deb && apt-get "${opts[@]}" download $pkgs >/dev/null 2>&1) \
  || { echo "build-arm64-client: apt-get download $pkgs (arm64) failed" >&2; exit 1; }
dpkg-deb -x "$apt"/debs/linux-image-*.deb "$work/k"
dpkg-deb -x "$apt"/debs/busybox-static_*.deb "$work/bb"
dpkg-deb -x "$apt"/debs/grub-efi-arm64-signed_*.deb "$work/grub"
kver=$(ls "$work/k/lib/modules")
depmod -b "$work/k" "$kver"
busybox="$work/bb/bin/busybox"
file "$busybox" 2>/dev/null | grep -q aarch64 || [ ! -x /usr/bin/file ] || { echo "build-arm64-client: $busybox is not arm64" >&2; exit 1; }

make_initramfs "$work/k" "$kver" "$busybox" "$here/client" "$work/initrd.img"
t="$work/os-tree"
make_tree "$t" "$(ls "$work"/k/boot/vmlinuz-*)" "$work/initrd.img" "$busybox" "$here/client" "console=ttyAMA0 panic=-1 quiet"
cp "$work/grub/usr/lib/grub/arm64-efi-signed/grubnetaa64.efi.signed" "$t/boot/grubnetaa64.efi"
publish "$cache" "$key" "$t" "$kver" "$out"
rm -f "$apt"/debs/*.deb
echo "build-arm64-client: done ($kver) -> $cache/$key"
