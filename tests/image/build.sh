#!/usr/bin/env bash
# Builds the appliance image from the top-level Containerfile with buildah,
# offline from any container registry:
#
#   1. base:    `docker.io/library/debian:bookworm-slim`, made here with
#               `debootstrap --variant=minbase bookworm` (the official slim
#               image is debootstrap minbase too) and tagged with that name;
#   2. builder: that base + gcc/libc6-dev/pkg-config from the Debian mirror +
#               the host's rustup toolchain, laid out like rust:1-bookworm
#               (CARGO_HOME=/usr/local/cargo), passed as BUILDER_IMAGE;
#   3. image:   `buildah bud --isolation chroot` of the real Containerfile, with
#               the cargo registry and target directory in cache volumes so a
#               second run only recompiles what changed.
#
# Everything (buildah storage, debootstrap tarball, cargo caches) lives under
# $CACHE (default /var/cache/bramble-image) and is reused between runs; on a
# fresh machine it is all built from scratch. Needs root, buildah, debootstrap.
#
# Usage: tests/image/build.sh [TAG]    (default localhost/bramble:test)
# Prints the built image's id on the last line of stdout.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
tag=${1:-localhost/bramble:test}
CACHE=${BRAMBLE_IMAGE_CACHE:-/var/cache/bramble-image}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
BASE=docker.io/library/debian:bookworm-slim
TOOLCHAIN=${RUST_TOOLCHAIN_DIR:-$(rustc --print sysroot)}

mkdir -p "$CACHE"
exec 9>"$CACHE/lock"
flock 9   # one build at a time on this machine

bh() { buildah --root "$CACHE/storage" --runroot /run/bramble-image "$@"; }
log() { echo "image: $*" >&2; }
have_image() { bh inspect --type image "$1" >/dev/null 2>&1; }

make_base() {
  local tarball="$CACHE/bookworm-minbase.tar"
  if [ ! -s "$tarball" ]; then
    log "debootstrap --variant=minbase bookworm (once; cached in $tarball)"
    local root
    root=$(mktemp -d "$CACHE/rootfs.XXXXXX")
    debootstrap --variant=minbase bookworm "$root" "$MIRROR" >&2
    # What the official image does too: no daemons start during builds
    # (with chroot isolation they would start on the build host), updates
    # and security sources, no cached package lists.
    printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
    chmod 0755 "$root/usr/sbin/policy-rc.d"
    cat > "$root/etc/apt/sources.list" <<SRC
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb ${MIRROR%/debian}/debian-security bookworm-security main
SRC
    chroot "$root" apt-get clean
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/log/*.log "$root"/var/cache/ldconfig/aux-cache
    tar --numeric-owner -C "$root" -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$root"
  fi
  log "importing $tarball as $BASE"
  local ctr mnt
  ctr=$(bh from scratch)
  mnt=$(bh mount "$ctr")
  tar --numeric-owner -C "$mnt" -xf "$tarball"
  bh umount "$ctr" >/dev/null
  bh config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --cmd bash --os linux --arch "$(go_arch)" "$ctr"
  bh commit --quiet --rm "$ctr" "$BASE" >/dev/null
}

go_arch() {
  case $(uname -m) in x86_64) echo amd64 ;; aarch64) echo arm64 ;; *) uname -m ;; esac
}

make_builder() {
  local name=$1 ctr mnt
  log "making $name: $BASE + gcc + the host's toolchain ($TOOLCHAIN)"
  ctr=$(bh from --pull=never "$BASE")
  bh run --isolation chroot "$ctr" -- sh -c \
    'apt-get update -qq && apt-get install -y -qq --no-install-recommends gcc libc6-dev pkg-config ca-certificates >/dev/null && rm -rf /var/lib/apt/lists/*' >&2
  mnt=$(bh mount "$ctr")
  mkdir -p "$mnt/usr/local/rust" "$mnt/usr/local/cargo"
  # bin/ and lib/ are the compiler; share/ is mostly documentation.
  cp -a "$TOOLCHAIN/bin" "$TOOLCHAIN/lib" "$mnt/usr/local/rust/"
  [ ! -d "$TOOLCHAIN/libexec" ] || cp -a "$TOOLCHAIN/libexec" "$mnt/usr/local/rust/"
  bh umount "$ctr" >/dev/null
  bh config --env CARGO_HOME=/usr/local/cargo \
    --env PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    "$ctr"
  bh commit --quiet --rm "$ctr" "$name" >/dev/null
}

have_image "$BASE" || make_base

# The builder's tag names the toolchain, so a host upgrade makes a new one.
rust_version=$("$TOOLCHAIN/bin/rustc" --version | awk '{print $2}')
builder=localhost/bramble-builder:rust-$rust_version
have_image "$builder" || make_builder "$builder"

# Cargo caches: the registry starts as a copy of the host's (no re-download).
mkdir -p "$CACHE/cargo-registry" "$CACHE/target"
if [ -z "$(ls -A "$CACHE/cargo-registry")" ] && [ -d "${CARGO_HOME:-$HOME/.cargo}/registry" ]; then
  log "seeding the cargo registry cache from ${CARGO_HOME:-$HOME/.cargo}/registry"
  cp -a "${CARGO_HOME:-$HOME/.cargo}/registry/." "$CACHE/cargo-registry/"
fi

version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/Cargo.toml" | head -1)
log "buildah bud -> $tag (version $version)"
start=$(date +%s)
bh bud --isolation chroot --pull=never --format docker --layers=false \
  --build-arg BUILDER_IMAGE="$builder" \
  --build-arg VERSION="$version" \
  -v "$CACHE/cargo-registry:/usr/local/cargo/registry" \
  -v "$CACHE/target:/src/target" \
  -f "$repo/Containerfile" -t "$tag" "$repo" >&2
log "built in $(( $(date +%s) - start )) s"
bh inspect --type image --format '{{.FromImageID}}' "$tag"
