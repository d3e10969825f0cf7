#!/usr/bin/env bash
# Builds the fuller end-to-end client: a debootstrapped Debian bookworm
# (systemd, LDAP login, NFS homes) converted by images/netboot-convert.sh,
# booted with the kernel and initramfs of the busybox client.
#
#   build-debian-client.sh BUSYBOX_CLIENT_DIR OUT_DIR
#
# Cached under ${BRAMBLE_E2E_CACHE:-/var/cache/bramble-e2e}/debian-<key>.
set -euo pipefail
bb=${1:?usage: build-debian-client.sh BUSYBOX_CLIENT_DIR OUT_DIR}
out=${2:?usage: build-debian-client.sh BUSYBOX_CLIENT_DIR OUT_DIR}
here=$(cd "$(dirname "$0")" && pwd)
images=$(cd "$here/../../images" && pwd)
cache=${BRAMBLE_E2E_CACHE:-/var/cache/bramble-e2e}
mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}
key=$(cat "$0" "$images/netboot-convert.sh" "$images/debian/build.sh" "$images"/client/* | sha256sum | cut -c1-16)
dir="$cache/debian-$key"
if [ ! -f "$dir/done" ]; then
  echo "build-debian-client: debootstrap bookworm from $mirror (a few minutes)"
  rm -rf "$dir"; mkdir -p "$dir"
  "$images/debian/build.sh" "$dir/tree" "$mirror" > "$dir/build.log" 2>&1 || { tail -30 "$dir/build.log" >&2; exit 1; }
  # Test-only: a console marker once multi-user.target is reached.
  cat > "$dir/tree/etc/systemd/system/bramble-e2e-marker.service" <<'UNIT'
[Unit]
Description=bramble e2e: report multi-user on the console
DefaultDependencies=no
After=multi-user.target
[Service]
Type=oneshot
ExecStart=/bin/sh -c 'for u in home.mount mnt-shared.mount nslcd.service; do systemctl -q is-active $u || journalctl -b -u $u --no-pager -n 8; done > /dev/console 2>&1; echo "E2E-MULTI-USER $(cut -d" " -f1 /proc/uptime) root=$(findmnt -no FSTYPE,OPTIONS /)" > /dev/console'
[Install]
WantedBy=default.target
UNIT
  mkdir -p "$dir/tree/etc/systemd/system/default.target.wants"
  ln -sf ../bramble-e2e-marker.service "$dir/tree/etc/systemd/system/default.target.wants/"
  touch "$dir/done"
fi
rm -rf "$out"; mkdir -p "$(dirname "$out")"
cp -a "$dir/tree" "$out"
mkdir -p "$out/boot"
cp "$bb/os-tree/boot/vmlinuz" "$bb/os-tree/boot/initrd.img" "$out/boot/"
echo "console=ttyS0 panic=-1 quiet" > "$out/boot/cmdline.txt"
echo "build-debian-client: $out"
