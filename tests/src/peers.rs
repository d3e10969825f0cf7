//! The established tools the benches compare bramble with (dnsmasq,
//! nfs-ganesha): installing them on demand and stopping them on drop.

use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Kills a process we started when dropped.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Installs nfs-ganesha (VFS backend) and rpcbind with apt if missing.
pub fn ensure_ganesha() -> anyhow::Result<()> {
    let have = |p: &str| Path::new(p).exists();
    if have("/usr/bin/ganesha.nfsd")
        && have("/usr/sbin/rpcbind")
        && have("/usr/lib/x86_64-linux-gnu/ganesha/libfsalvfs.so")
    {
        return Ok(());
    }
    println!("installing nfs-ganesha nfs-ganesha-vfs rpcbind ...");
    let status = Command::new("apt-get")
        .args([
            "install",
            "-y",
            "-q",
            "nfs-ganesha",
            "nfs-ganesha-vfs",
            "rpcbind",
        ])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "apt-get install nfs-ganesha failed");
    Ok(())
}
