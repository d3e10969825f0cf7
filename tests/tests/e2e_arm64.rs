//! End to end on arm64: a UEFI machine (QEMU virt, Debian's EDK2 firmware)
//! PXE-boots from bramble with option 93 = 11 into Debian's GRUB network
//! image, which loads the Debian arm64 kernel and a busybox initramfs from
//! bramble's generated grub.cfg; the root is mounted from bramble over NFS
//! and checked from the guest's console (read-only NFS root, attributes of
//! special files, checksum of a large file). Runs under TCG in network
//! namespaces.
//!
//! Standalone mode only: in proxy mode EDK2 takes the boot file from
//! bramble's proxy offer and loads GRUB, but Debian's GRUB 2.06 configures
//! its network from the router's DHCPACK alone (its efinet driver ignores
//! the PXE proxy offer; Fedora carries a patch "efinet: Add DHCP proxy
//! support" for this), so it looks for grub.cfg on the router and stops at
//! its prompt. A proxy-mode arm64 client needs a GRUB with that patch, or
//! iPXE.

use std::sync::Mutex;
use std::time::Duration;

use bramble_tests::e2e::{Bench, Mode, assert_console_checks};
use bramble_tests::e2e_arm64;
use bramble_tests::harness::is_root;

/// Firmware PXE, GRUB over TFTP and an arm64 kernel under TCG take minutes.
const BOOT_LIMIT: Duration = Duration::from_secs(300);

/// QEMU under TCG wants both cores: one boot at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn ready() -> bool {
    if !is_root() {
        eprintln!("skipped: needs root (namespaces, tap devices)");
        return false;
    }
    if let Err(why) = e2e_arm64::host_ready() {
        panic!("the arm64 bench cannot run: {why}");
    }
    true
}

#[test]
fn standalone_mode_arm64_uefi_machine_boots_through_grub() {
    if ready() {
        boot_and_check(Mode::Standalone, "52:54:00:e2:a6:01");
    }
}

fn boot_and_check(mode: Mode, mac: &str) {
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let bench = Bench::new(mode);
    e2e_arm64::install(&bench, mac);
    let console = bench.data.with_extension("console-arm64.log");
    let mut qemu = e2e_arm64::start(&bench, mac, &console);
    let result = e2e_arm64::follow(&mut qemu, BOOT_LIMIT);
    let boot = result.unwrap_or_else(|e| {
        panic!(
            "arm64 {mode:?} boot failed: {e}\n--- bramble log ---\n{}",
            bench.bramble.log()
        )
    });
    eprintln!("arm64 {mode:?} boot phases (since QEMU start):");
    for (phase, at) in &boot.phases {
        eprintln!("  {phase:<14} {:>7.2} s", at.as_secs_f64());
    }
    let text = &boot.console;
    assert_console_checks(text, &bench.data.join("os").join(e2e_arm64::OS));
    qemu.wait();
}
