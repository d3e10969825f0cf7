//! bramble-tests: the harness for black-box tests and benches.
//!
//! - [`harness`]: start the real `bramble` binary, wait for `/health`, talk
//!   to it with curl and its own CLI, kill it on drop (printing its log when
//!   a test fails).
//! - [`netns`]: network namespaces, a bridge and veth pairs with unique
//!   names, deleted on drop, so no test traffic ever reaches a real network.
//! - [`peers`]: dnsmasq / nfs-ganesha helpers for the benches.
//! - [`e2e`]: the end-to-end bench (QEMU + iPXE + a Debian kernel booting
//!   from bramble with its root over NFS).
//! - [`e2e_arm64`]: the same for a UEFI arm64 machine (QEMU virt, EDK2 PXE,
//!   Debian's GRUB network image).

pub mod dhcp_client;
pub mod e2e;
pub mod e2e_arm64;
pub mod harness;
pub mod netns;
pub mod nfs_client;
pub mod peers;
