#!/usr/bin/env bash
# Runs a built image's entrypoint as PID 1, roughly as a container engine
# would, without one. Start it inside fresh namespaces:
#
#   unshare --mount --pid --fork --mount-proc --net -- \
#     tests/image/run.sh ROOTFS DATA CAPS ENTRYPOINT [ARGS...]
#
# ROOTFS is the image's root (`buildah mount`), DATA the host directory to
# bind at /var/lib/bramble, CAPS a comma list like `net_bind_service,chown`
# (the compose file's cap_add): every other capability is dropped from the
# bounding set before the entrypoint runs. The network namespace has only
# loopback, so nothing reaches a real network. The mounts vanish with the
# mount namespace when PID 1 exits.
set -euo pipefail
root=$1 data=$2 caps=$3
shift 3

mount --make-rprivate /
ip link set lo up

mkdir -p "$root/var/lib/bramble"
mount --bind "$data" "$root/var/lib/bramble"
mount -t proc proc "$root/proc"
mount -t sysfs -o ro sysfs "$root/sys"
mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
mount -t tmpfs -o mode=0755 tmpfs "$root/run"
# A minimal /dev like an engine's: a tmpfs with the usual nodes.
mount -t tmpfs -o mode=0755,nosuid tmpfs "$root/dev"
for d in null zero full random urandom tty; do
  touch "$root/dev/$d"
  mount --bind "/dev/$d" "$root/dev/$d"
done
mkdir -p "$root/dev/shm" "$root/dev/pts"
ln -s /proc/self/fd "$root/dev/fd"

# chroot execs setpriv execs the entrypoint: it stays PID 1.
bounding="-all"
[ -z "$caps" ] || bounding="-all,+${caps//,/,+}"
exec chroot "$root" /usr/bin/setpriv --inh-caps=-all --bounding-set="$bounding" -- "$@"
