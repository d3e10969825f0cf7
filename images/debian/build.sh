#!/usr/bin/env bash
# Builds a Debian bookworm netboot client tree (systemd, LDAP login, NFS
# homes) with debootstrap and converts it with ../netboot-convert.sh.
#
#   build.sh TREE [MIRROR]
set -euo pipefail
t=${1:?usage: build.sh TREE [MIRROR]}
mirror=${2:-http://deb.debian.org/debian}
here=$(cd "$(dirname "$0")" && pwd)
pkgs=systemd-sysv,udev,netbase,libnss-ldapd,libpam-ldapd,nslcd,nfs-common,procps,iproute2,login
rm -rf "$t"
DEBIAN_FRONTEND=noninteractive debootstrap --variant=minbase --include="$pkgs" bookworm "$t" "$mirror"
chroot "$t" apt-get clean
rm -rf "$t"/var/lib/apt/lists/*
"$here/../netboot-convert.sh" "$t"
