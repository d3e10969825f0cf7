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
key=arm64-$(printf '%s %s' "$versions" "$(cat "$0" "$here"/client/* | sha256sum)" | sha256sum | cut -c1-16)
if [ -f "$cache/$key/done" ]; then
  echo "build-arm64-client: cached $cache/$key ($kpkg)"
  rm -rf "$out"; mkdir -p "$(dirname "$out")"; cp -a "$cache/$key" "$out"
  exit 0
fi

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

# --- initramfs -------------------------------------------------------------
ir="$work/initramfs"
mkdir -p "$ir"/{bin,dev,proc,sys,tmp,newroot,lib/modules}
cp "$busybox" "$ir/bin/busybox"
cp "$here/client/init" "$ir/init"
cp "$here/client/udhcpc.sh" "$ir/udhcpc.sh"
chmod 755 "$ir/init" "$ir/udhcpc.sh"
mods="virtio_pci virtio_net af_packet nfsv3"
: > "$ir/modules"
for m in $mods; do
  # modprobe --show-depends lists the closure in load order (built-ins: none).
  modprobe -d "$work/k" -S "$kver" --show-depends "$m" | awk '$1=="insmod"{print $2}' | while read -r f; do
    rel=${f#"$work/k"}
    mkdir -p "$ir$(dirname "$rel")"
    cp "$f" "$ir$rel"
    grep -qx "$rel" "$ir/modules" || echo "$rel" >> "$ir/modules"
  done
done
(cd "$ir" && find . | cpio -o -H newc --quiet | gzip -1) > "$work/initrd.img"

# --- the OS tree served by bramble -----------------------------------------
t="$work/os-tree"
mkdir -p "$t"/{boot,bin,sbin,dev,proc,sys,tmp,special}
cp "$work"/k/boot/vmlinuz-* "$t/boot/vmlinuz"
cp "$work/initrd.img" "$t/boot/initrd.img"
cp "$work/grub/usr/lib/grub/arm64-efi-signed/grubnetaa64.efi.signed" "$t/boot/grubnetaa64.efi"
echo "console=ttyAMA0 panic=-1 quiet" > "$t/boot/cmdline.txt"
cp "$busybox" "$t/bin/busybox"
for app in sh cat stat sha256sum mount grep awk poweroff echo sleep ls head cut sync tr; do ln -s busybox "$t/bin/$app"; done
cp "$here/client/check.sh" "$t/check.sh"; chmod 755 "$t/check.sh"
cp "$busybox" "$t/special/setuid-tool"; chmod 4755 "$t/special/setuid-tool"
mknod "$t/special/null" c 1 3
mknod "$t/special/loop0" b 7 0
mkfifo "$t/special/fifo"
echo owned > "$t/special/owned"; chown 1000:1000 "$t/special/owned"; chmod 640 "$t/special/owned"
echo linked > "$t/special/link-a"; ln "$t/special/link-a" "$t/special/link-b"
ln -s link-a "$t/special/symlink"
mkdir "$t/special/sticky"; chmod 1777 "$t/special/sticky"
head -c $((48 * 1024 * 1024)) /dev/urandom > "$t/big.bin"
sha256sum "$t/big.bin" | cut -d' ' -f1 > "$t/big.sha256"

mkdir -p "$cache"
rm -rf "${cache:?}/$key.tmp"; mkdir -p "$cache/$key.tmp"
cp -a "$t" "$cache/$key.tmp/os-tree"
echo "$kver" > "$cache/$key.tmp/kernel-version"
touch "$cache/$key.tmp/done"
rm -rf "${cache:?}/$key"; mv "$cache/$key.tmp" "$cache/$key"
rm -f "$apt"/debs/*.deb
rm -rf "$out"; mkdir -p "$(dirname "$out")"; cp -a "$cache/$key" "$out"
echo "build-arm64-client: done ($kver) -> $cache/$key"
