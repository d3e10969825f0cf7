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
#   3. image:   `buildah bud --isolation chroot` of the real Containerfile; its
#               cache mounts (cargo registry, target directory) persist here,
#               so a second run only recompiles what changed.
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

# Only a self-contained (rustup) toolchain can be copied into the builder.
if [ ! -x "$TOOLCHAIN/bin/cargo" ] || [ "$TOOLCHAIN" = /usr ] || [ "$TOOLCHAIN" = /usr/local ]; then
  echo "image: need a rustup toolchain (rustc --print sysroot = $TOOLCHAIN); set RUST_TOOLCHAIN_DIR" >&2
  exit 1
fi

mkdir -p "$CACHE"
exec 9>"$CACHE/lock"
flock 9   # one build at a time on this machine

bh() { buildah --root "$CACHE/storage" --runroot /run/bramble-image "$@"; }
log() { echo "image: $*" >&2; }
have_image() { bh inspect --type image "$1" >/dev/null 2>&1; }

# Bump when make_base changes, so cached bases are rebuilt.
BASE_RECIPE=2

have_base() {
  [ "$(bh inspect --type image --format '{{index .ImageAnnotations "org.bramble.base-recipe"}}' "$BASE" 2>/dev/null)" = "$BASE_RECIPE" ]
}

make_base() {
  local tarball="$CACHE/bookworm-minbase-r$BASE_RECIPE.tar"
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
    # Like the official -slim variant: no documentation, manual pages or
    # translations, now or from packages installed later (copyright kept).
    cat > "$root/etc/dpkg/dpkg.cfg.d/slim" <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
DPKG
    find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$root"/usr/share/{man,info,groff,lintian}/*
    find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
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
    --cmd bash --os linux --arch "$(go_arch)" \
    --annotation org.bramble.base-recipe="$BASE_RECIPE" "$ctr"
  bh commit --quiet --rm "$ctr" "$BASE" >/dev/null
}

go_arch() {
  case $(uname -m) in x86_64) echo amd64 ;; aarch64) echo arm64 ;; *) uname -m ;; esac
}

make_builder() {
  local name=$1 ctr mnt
  log "making $name: $BASE + gcc + the host's toolchain ($TOOLCHAIN)"
  # Builders for other toolchains or bases are stale now.
  bh images --format '{{.Name}}:{{.Tag}}' | grep '^localhost/bramble-builder:' |
    while read -r old; do bh rmi "$old" >/dev/null || true; done
  ctr=$(bh from --pull=never "$BASE")
  bh run --isolation chroot "$ctr" -- sh -c \
    'apt-get update -qq && apt-get install -y -qq --no-install-recommends gcc libc6-dev pkg-config ca-certificates >/dev/null && rm -rf /var/lib/apt/lists/*' >&2
  mnt=$(bh mount "$ctr")
  mkdir -p "$mnt/usr/local/rust" "$mnt/usr/local/cargo"
  # bin/ and lib/ are the compiler; share/ is mostly documentation.
  cp -a "$TOOLCHAIN/bin" "$TOOLCHAIN/lib" "$mnt/usr/local/rust/"
  [ ! -d "$TOOLCHAIN/libexec" ] || cp -a "$TOOLCHAIN/libexec" "$mnt/usr/local/rust/"
  # Trust what the host trusts (a TLS-inspecting proxy's CA, if any), so a
  # crate missing from the seeded registry can still be downloaded.
  cp /etc/ssl/certs/ca-certificates.crt "$mnt/etc/ssl/certs/ca-certificates.crt"
  bh umount "$ctr" >/dev/null
  bh config --env CARGO_HOME=/usr/local/cargo \
    --env PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    "$ctr"
  bh commit --quiet --rm "$ctr" "$name" >/dev/null
}

have_base || make_base

# The builder's tag names the toolchain and the base recipe, so a host
# upgrade or a new base makes a new one.
rust_version=$("$TOOLCHAIN/bin/rustc" --version | awk '{print $2}')
builder=localhost/bramble-builder:rust-$rust_version-r$BASE_RECIPE
have_image "$builder" || make_builder "$builder"

# The Containerfile's cache mounts (ids bramble-cargo-registry and
# bramble-target) live in buildah's cache directory, $TMPDIR/buildah-cache
# for root, kept here under $CACHE; the registry starts as a copy of the
# host's so nothing is downloaded again.
export TMPDIR=$CACHE/tmp
registry=$TMPDIR/buildah-cache/bramble-cargo-registry
mkdir -p "$registry"
host_registry=${CARGO_HOME:-$HOME/.cargo}/registry
if [ -z "$(ls -A "$registry")" ] && [ -d "$host_registry" ]; then
  log "seeding the cargo registry cache from $host_registry"
  cp -a "$host_registry/." "$registry/"
fi

version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/Cargo.toml" | head -1)
log "buildah bud -> $tag (version $version)"
start=$(date +%s)
bh bud --isolation chroot --pull=never --format docker --layers=false \
  --build-arg BUILDER_IMAGE="$builder" \
  --build-arg VERSION="$version" \
  -f "$repo/Containerfile" -t "$tag" "$repo" >&2
log "built in $(( $(date +%s) - start )) s"
bh rmi --prune >/dev/null 2>&1 || true   # untagged leftovers of earlier builds
bh inspect --type image --format '{{.FromImageID}}' "$tag"
