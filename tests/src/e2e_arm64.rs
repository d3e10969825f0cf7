//! The arm64 client of the end-to-end bench: a UEFI machine boots from
//! bramble the way a Pi 4/5 with UEFI firmware or any ARM board does.
//!
//! `qemu-system-aarch64 -M virt` (TCG) with Debian's EDK2 build
//! (`qemu-efi-aarch64`) PXE-boots from its own virtio-net driver with
//! option 93 = 11; bramble answers `dhcp.boot_file_efi_arm64`
//! (`grubnetaa64.efi`, Debian's signed GRUB network image, in the OS's boot
//! directory), GRUB reads the `grub.cfg` bramble generates, loads the Debian
//! arm64 kernel and the busybox initramfs, which mounts the root over NFS
//! and runs the same `check.sh` as the x86 client. The OS tree is built by
//! `tests/e2e/build-arm64-client.sh` (cached) and installed as [`OS`] next
//! to the x86 one of [`Bench`].

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::e2e::{Bench, Boot, Qemu, tail};

pub const OS: &str = "e2e-arm64";

/// The firmware: Debian's EDK2 for QEMU's arm64 virt machine.
pub const FIRMWARE: &str = "/usr/share/qemu-efi-aarch64/QEMU_EFI.fd";

/// Console markers of the firmware and GRUB phases, in order: EDK2's PXE
/// got an address and the boot file name, GRUB read bramble's grub.cfg
/// (the `echo` lines of the config bramble generates), loaded the
/// kernel and initrd, and the kernel started.
pub const FIRMWARE_MARKERS: [(&str, &str); 5] = [
    ("pxe-dhcp", "Station IP address"),
    ("grub.cfg", "bramble: loading vmlinuz"),
    ("kernel-loaded", "bramble: loading initrd"),
    ("initrd-loaded", "bramble: booting"),
    ("kernel", "E2E-PHASE kernel"),
];

/// Builds (or takes from the cache) the arm64 client OS tree.
pub fn client_tree(work: &Path) -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e/build-arm64-client.sh");
    let out = work.join("client-arm64");
    let status = Command::new("bash")
        .arg(&script)
        .arg(&out)
        .status()
        .expect("run build-arm64-client.sh");
    assert!(status.success(), "build-arm64-client.sh failed");
    out.join("os-tree")
}

/// Installs the arm64 client in `bench` as [`OS`] and registers `mac` to it.
pub fn install(bench: &Bench, mac: &str) {
    let tree = client_tree(bench.work_dir());
    bench.install_os(OS, &tree);
    bench.register_os(mac, OS);
}

/// QEMU's arguments for the arm64 UEFI machine with NIC `mac` on netdev n0.
pub fn qemu_args(mac: &str) -> Vec<String> {
    [
        "-M",
        "virt",
        "-cpu",
        "cortex-a57",
        "-smp",
        "2",
        "-m",
        "1024",
        "-accel",
        "tcg",
        "-no-reboot",
        "-bios",
        FIRMWARE,
        "-device",
        // romfile=: no iPXE option ROM (Debian's are x86), EDK2's own
        // VirtioNetDxe and PXE do the network boot.
        &format!("virtio-net-pci,netdev=n0,mac={mac},romfile="),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Starts the arm64 machine on the bench LAN.
pub fn start(bench: &Bench, mac: &str, console: &Path) -> Qemu {
    bench.start_qemu_with("qemu-system-aarch64", &qemu_args(mac), console)
}

/// Console text that means the boot is stuck: GRUB's rescue shell or
/// prompt (no or a broken grub.cfg), a kernel panic.
const STUCK: [&str; 3] = ["grub rescue>", "grub> ", "Kernel panic"];

/// Follows the console through the firmware phases of [`FIRMWARE_MARKERS`]
/// (failing at once when the boot is stuck) and then to `E2E-DONE` as
/// [`Qemu::follow`] does, all within `limit` from QEMU's start; the phases
/// are in the order they appeared.
pub fn follow(qemu: &mut Qemu, limit: Duration) -> Result<Boot, String> {
    let mut phases = Vec::new();
    let mut at = 0;
    for (name, marker) in FIRMWARE_MARKERS {
        loop {
            let text = qemu.console();
            if let Some(i) = text.get(at..).and_then(|t| t.find(marker)) {
                at += i + marker.len();
                phases.push((name.to_string(), qemu.started.elapsed()));
                break;
            }
            let why = if let Some(stuck) = STUCK.iter().find(|s| text.contains(**s)) {
                Some(format!("stuck ({:?} on the console)", stuck.trim()))
            } else if qemu.started.elapsed() > limit {
                Some(format!("no {marker:?} within {limit:?}"))
            } else {
                qemu.exited()
                    .map(|status| format!("qemu exited ({status})"))
            };
            if let Some(why) = why {
                return Err(format!(
                    "stopped before the {name:?} phase: {why}\n{}",
                    tail(&text, 40)
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let mut boot = qemu.follow(limit)?;
    boot.phases
        .retain(|(n, _)| !phases.iter().any(|(p, _)| p == n));
    phases.append(&mut boot.phases);
    boot.phases = phases;
    Ok(boot)
}

/// True when the host has what the arm64 boot needs (QEMU and firmware).
pub fn host_ready() -> Result<(), String> {
    if !Path::new(FIRMWARE).exists() {
        return Err(format!(
            "{FIRMWARE} missing (apt-get install qemu-efi-aarch64)"
        ));
    }
    let found = Command::new("qemu-system-aarch64")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        return Err("qemu-system-aarch64 missing (apt-get install qemu-system-arm)".into());
    }
    Ok(())
}
