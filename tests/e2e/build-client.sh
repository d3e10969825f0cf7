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

resolve() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}'; }
kpkg=$(resolve)
if [ -z "$kpkg" ]; then apt-get update -qq >/dev/null 2>&1 || true; kpkg=$(resolve); fi
[ -n "$kpkg" ] || { echo "build-client: cannot resolve linux-image-amd64 (apt-get update?)" >&2; exit 1; }
bbver=$(dpkg-query -W -f='${Version}' busybox-static)
key=$(printf '%s %s %s' "$kpkg" "$bbver" "$(sha256sum "$0" "$here"/client/* | sha256sum)" | sha256sum | cut -c1-16)
if [ -f "$cache/$key/done" ]; then
  echo "build-client: cached $cache/$key ($kpkg)"
  rm -rf "$out"; mkdir -p "$(dirname "$out")"; cp -a "$cache/$key" "$out"
  exit 0
fi

work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
echo "build-client: building $kpkg client in $work"
(cd "$work" && apt-get download "$kpkg" >/dev/null 2>&1) || { echo "build-client: apt-get download $kpkg failed" >&2; exit 1; }
dpkg-deb -x "$work"/linux-image-*.deb "$work/k"
kver=$(ls "$work/k/lib/modules")
depmod -b "$work/k" "$kver"

# --- initramfs -------------------------------------------------------------
ir="$work/initramfs"
mkdir -p "$ir"/{bin,dev,proc,sys,tmp,newroot,lib/modules}
cp /bin/busybox "$ir/bin/busybox"
cp "$here/client/init" "$ir/init"
cp "$here/client/udhcpc.sh" "$ir/udhcpc.sh"
chmod 755 "$ir/init" "$ir/udhcpc.sh"
mods="virtio_pci virtio_net af_packet nfsv3"
: > "$ir/modules"
for m in $mods; do
  # modprobe --show-depends lists the closure in load order.
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
echo "console=ttyS0 panic=-1 quiet" > "$t/boot/cmdline.txt"
cp /bin/busybox "$t/bin/busybox"
for app in sh cat stat sha256sum mount grep awk poweroff echo sleep ls head cut sync tr; do ln -s busybox "$t/bin/$app"; done
cp "$here/client/check.sh" "$t/check.sh"; chmod 755 "$t/check.sh"
cp /bin/busybox "$t/special/setuid-tool"; chmod 4755 "$t/special/setuid-tool"
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
rm -rf "$out"; mkdir -p "$(dirname "$out")"; cp -a "$cache/$key" "$out"
echo "build-client: done ($kver) -> $cache/$key"
