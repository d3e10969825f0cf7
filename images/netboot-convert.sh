#!/usr/bin/env bash
# Converts a stock Debian (or Raspberry Pi OS) root tree into a bramble
# netboot client, in place:
#
#   netboot-convert.sh TREE
#
# - read-only NFS root: tmpfs for every place the system writes at run time
#   (fstab), transient machine-id, nothing that resizes or swaps to an SD card;
# - LDAP accounts (nslcd + libnss-ldapd + libpam-ldapd) and NFS homes, both
#   pointing at the server the kernel booted from: a systemd generator reads
#   nfsroot=<server>:... from /proc/cmdline at every boot, so one tree serves
#   any bramble server and no per-server rewrite is needed;
# - /home from <server>:/homes, shared folders at /mnt/shared;
# - no local default user (Raspberry Pi OS's `pi`, any uid 1000-59999) and a
#   locked root password.
# Requires in the tree: systemd, nslcd, libnss-ldapd, libpam-ldapd, nfs-common.
set -euo pipefail
t=${1:?usage: netboot-convert.sh TREE}
here=$(cd "$(dirname "$0")" && pwd)
[ -d "$t/etc" ] || { echo "netboot-convert: $t is not a root tree" >&2; exit 1; }

# Writable places on tmpfs.
cat > "$t/etc/fstab" <<'FSTAB'
# bramble netboot client: the root is read-only NFS (from the kernel command
# line); everything the system writes at run time lives in RAM.
tmpfs  /tmp               tmpfs  mode=1777,nosuid,nodev  0 0
tmpfs  /var/tmp           tmpfs  mode=1777,nosuid,nodev  0 0
tmpfs  /var/log           tmpfs  mode=0755               0 0
tmpfs  /var/cache         tmpfs  mode=0755               0 0
tmpfs  /var/lib/systemd   tmpfs  mode=0755               0 0
tmpfs  /var/lib/nfs       tmpfs  mode=0755               0 0
tmpfs  /var/spool         tmpfs  mode=0755               0 0
FSTAB
: > "$t/etc/machine-id"          # empty: systemd uses a transient id on a read-only root
rm -f "$t/var/lib/dbus/machine-id"

# Server-specific configuration generated at boot.
install -D -m 0755 "$here/client/bramble-netboot-generator" "$t/usr/lib/systemd/system-generators/bramble-netboot"
ln -sf /run/bramble/nslcd.conf "$t/etc/nslcd.conf"
mkdir -p "$t/mnt/shared" "$t/home"

# Accounts from LDAP.
sed -i -E 's/^(passwd|group|shadow):.*/\1:         files ldap/' "$t/etc/nsswitch.conf"
# No local users with a password anyone knows.
awk -F: '$3>=1000 && $3<60000 {print $1}' "$t/etc/passwd" | while read -r user; do
  chroot "$t" /usr/sbin/userdel "$user" 2>/dev/null || sed -i "/^$user:/d" "$t/etc/passwd" "$t/etc/shadow"
done
sed -i -E 's/^root:[^:]*:/root:*:/' "$t/etc/shadow"

# Services that would write to the root or fight the netboot setup.
for unit in apt-daily.timer apt-daily-upgrade.timer dphys-swapfile.service resize2fs_once.service \
            rpi-eeprom-update.service sshswitch.service systemd-timesyncd.service e2scrub_reap.service; do
  ln -sf /dev/null "$t/etc/systemd/system/$unit"
done
echo "netboot-convert: $t is a bramble netboot client"
