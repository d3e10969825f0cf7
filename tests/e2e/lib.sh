# Shared by build-client.sh (amd64) and build-arm64-client.sh: the busybox
# initramfs, the e2e OS tree and the cache, whatever the architecture.
# Source it; every function takes its inputs as arguments.

# cached NAME CACHE KEY OUT: copies a finished build to OUT and succeeds,
# or fails when CACHE/KEY is not built yet.
cached() {
  local name=$1 cache=$2 key=$3 out=$4
  [ -f "$cache/$key/done" ] || return 1
  echo "$name: cached $cache/$key"
  rm -rf "$out"; mkdir -p "$(dirname "$out")"; cp -a "$cache/$key" "$out"
}

# make_initramfs KROOT KVER BUSYBOX CLIENT_DIR OUT_IMG: busybox, the client's
# init and udhcpc script, and the virtio/NFS modules (with their
# dependencies, in load order) from the unpacked kernel package KROOT.
make_initramfs() {
  local k=$1 kver=$2 busybox=$3 client=$4 img=$5
  local ir
  ir=$(mktemp -d)
  mkdir -p "$ir"/{bin,dev,proc,sys,tmp,newroot,lib/modules}
  cp "$busybox" "$ir/bin/busybox"
  cp "$client/init" "$ir/init"
  cp "$client/udhcpc.sh" "$ir/udhcpc.sh"
  chmod 755 "$ir/init" "$ir/udhcpc.sh"
  : > "$ir/modules"
  for m in virtio_pci virtio_net af_packet nfsv3; do
    # modprobe --show-depends lists the closure in load order.
    modprobe -d "$k" -S "$kver" --show-depends "$m" | awk '$1=="insmod"{print $2}' | while read -r f; do
      rel=${f#"$k"}
      mkdir -p "$ir$(dirname "$rel")"
      cp "$f" "$ir$rel"
      grep -qx "$rel" "$ir/modules" || echo "$rel" >> "$ir/modules"
    done
  done
  (cd "$ir" && find . | cpio -o -H newc --quiet | gzip -1) > "$img"
  rm -rf "$ir"
}

# make_tree T KERNEL INITRD BUSYBOX CLIENT_DIR CMDLINE: the OS tree bramble
# serves: boot files, a busybox root with /check.sh, files of every special
# kind under /special, and a 48 MiB file with its checksum.
make_tree() {
  local t=$1 kernel=$2 initrd=$3 busybox=$4 client=$5 cmdline=$6
  mkdir -p "$t"/{boot,bin,sbin,dev,proc,sys,tmp,special}
  cp "$kernel" "$t/boot/vmlinuz"
  cp "$initrd" "$t/boot/initrd.img"
  echo "$cmdline" > "$t/boot/cmdline.txt"
  cp "$busybox" "$t/bin/busybox"
  for app in sh cat stat sha256sum mount grep awk poweroff echo sleep ls head cut sync tr; do ln -s busybox "$t/bin/$app"; done
  cp "$client/check.sh" "$t/check.sh"; chmod 755 "$t/check.sh"
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
}

# publish CACHE KEY T KVER OUT: stores tree T as CACHE/KEY (atomically: a
# half-written entry is never taken as done) and copies it to OUT.
publish() {
  local cache=$1 key=$2 t=$3 kver=$4 out=$5
  mkdir -p "$cache"
  rm -rf "${cache:?}/$key.tmp"; mkdir -p "$cache/$key.tmp"
  cp -a "$t" "$cache/$key.tmp/os-tree"
  echo "$kver" > "$cache/$key.tmp/kernel-version"
  touch "$cache/$key.tmp/done"
  rm -rf "${cache:?}/$key"; mv "$cache/$key.tmp" "$cache/$key"
  rm -rf "$out"; mkdir -p "$(dirname "$out")"; cp -a "$cache/$key" "$out"
}
