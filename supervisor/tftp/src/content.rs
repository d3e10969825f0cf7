//! What an identified client gets for a name: a file from its OS's boot
//! directory, or one of the generated files of [`crate::generate`].
//!
//! Nothing is cached per client: the boot directory is opened for every
//! request from the client's current record, so reassigning a client's OS
//! takes effect with its next request.

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::Path;

use bramble_core::clients::{Client, Mac};

use crate::beneath::{BootDir, OpenError};
use crate::generate::{self, Generated};

/// Largest source file read for generating (`cmdline.txt`, `config.txt`).
const SOURCE_LIMIT: u64 = 64 * 1024;

/// The body of a transfer.
#[derive(Debug)]
pub enum Content {
    File { file: File, size: u64 },
    Memory(Vec<u8>),
}

impl Content {
    pub fn size(&self) -> u64 {
        match self {
            Content::File { size, .. } => *size,
            Content::Memory(bytes) => bytes.len() as u64,
        }
    }
}

/// One request of an identified client.
pub struct Lookup<'a> {
    /// `<data>/os`.
    pub os_root: &'a Path,
    pub client: &'a Client,
    /// The name inside the boot directory (prefix removed, validated).
    pub rest: &'a [&'a str],
    /// The address clients mount NFS from.
    pub server: Ipv4Addr,
}

impl Lookup<'_> {
    /// Opens or generates the requested file.
    pub fn content(&self) -> Result<Content, OpenError> {
        let boot = BootDir::open(self.os_root, &self.client.os)?;
        match Generated::from_name(self.rest) {
            Some(Generated::CmdLine) => {
                self.cmdline(&boot).map(|s| Content::Memory(s.into_bytes()))
            }
            Some(Generated::ConfigTxt) => self.config_txt(&boot),
            Some(Generated::Ipxe) => self.script(&boot, "an iPXE script", generate::ipxe_script),
            Some(Generated::GrubCfg) => self.script(&boot, "a GRUB grub.cfg", generate::grub_cfg),
            None => {
                let file = boot.open_file(self.rest)?;
                let size = file.metadata()?.len();
                Ok(Content::File { file, size })
            }
        }
    }

    fn cmdline(&self, boot: &BootDir) -> Result<String, OpenError> {
        let original = boot
            .read_optional(&["cmdline.txt"], SOURCE_LIMIT)?
            .unwrap_or_default();
        Ok(generate::cmdline(
            &String::from_utf8_lossy(&original),
            self.server,
            &self.client.os,
            self.client.kernel_args.as_deref(),
        ))
    }

    fn config_txt(&self, boot: &BootDir) -> Result<Content, OpenError> {
        let original = boot.read_optional(&["config.txt"], SOURCE_LIMIT)?;
        let additions = boot.read_meta("config.txt", SOURCE_LIMIT)?;
        generate::config_txt(original.as_deref(), additions.as_deref())
            .map(Content::Memory)
            .ok_or(OpenError::NotFound)
    }

    /// A boot script (iPXE or GRUB) naming the OS's kernel and initrd.
    fn script(
        &self,
        boot: &BootDir,
        what: &str,
        make: fn(Mac, &str, &generate::KernelPair, &str) -> String,
    ) -> Result<Content, OpenError> {
        let Some(pair) = generate::pick_kernel(&boot.names()) else {
            tracing::warn!(
                os = %self.client.os,
                "tftp: os {:?} has no kernel (vmlinuz or vmlinuz-*) in its boot directory; \
                 cannot generate {what}",
                self.client.os
            );
            return Err(OpenError::NotFound);
        };
        let cmdline = self.cmdline(boot)?;
        let script = make(self.client.mac, &self.client.os, &pair, &cmdline);
        Ok(Content::Memory(script.into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(os: &str, args: Option<&str>) -> Client {
        Client {
            mac: "52:54:00:00:00:01".parse().unwrap(),
            serial: None,
            name: None,
            os: os.into(),
            kernel_args: args.map(String::from),
            fixed_ip: None,
        }
    }

    fn get(os_root: &Path, c: &Client, name: &str) -> Result<Vec<u8>, OpenError> {
        let rest: Vec<&str> = name.split('/').collect();
        let lookup = Lookup {
            os_root,
            client: c,
            rest: &rest,
            server: Ipv4Addr::new(10, 0, 0, 1),
        };
        match lookup.content()? {
            Content::Memory(m) => Ok(m),
            Content::File { file, size } => {
                let mut out = Vec::new();
                std::io::Read::read_to_end(&mut &file, &mut out).unwrap();
                assert_eq!(out.len() as u64, size);
                Ok(out)
            }
        }
    }

    #[test]
    fn files_and_generated_files() {
        let dir = tempfile::tempdir().unwrap();
        let os = dir.path();
        let fw = os.join("pi/boot/firmware");
        std::fs::create_dir_all(&fw).unwrap();
        std::fs::create_dir_all(os.join("pi/.bramble")).unwrap();
        std::fs::write(fw.join("start4.elf"), b"elf").unwrap();
        std::fs::write(
            fw.join("cmdline.txt"),
            b"console=tty1 root=/dev/mmcblk0p2\n",
        )
        .unwrap();
        std::fs::write(fw.join("config.txt"), b"arm_64bit=1\n").unwrap();
        std::fs::write(os.join("pi/.bramble/config.txt"), b"enable_uart=1\n").unwrap();
        let c = client("pi", Some("quiet"));
        assert_eq!(get(os, &c, "start4.elf").unwrap(), b"elf");
        assert_eq!(
            String::from_utf8(get(os, &c, "cmdline.txt").unwrap()).unwrap(),
            "console=tty1 root=/dev/nfs nfsroot=10.0.0.1:/os/pi,vers=3,tcp ip=dhcp ro rootwait quiet\n"
        );
        let config = String::from_utf8(get(os, &c, "config.txt").unwrap()).unwrap();
        assert!(config.starts_with("arm_64bit=1\n") && config.ends_with("[all]\nenable_uart=1\n"));
        assert!(matches!(get(os, &c, "boot.ipxe"), Err(OpenError::NotFound)));
        assert!(matches!(
            get(os, &c, "bootsig.bin"),
            Err(OpenError::NotFound)
        ));
        assert!(matches!(
            get(os, &client("gone", None), "start4.elf"),
            Err(OpenError::NotFound)
        ));
    }

    #[test]
    fn ipxe_for_a_pc_tree() {
        let dir = tempfile::tempdir().unwrap();
        let boot = dir.path().join("deb/boot");
        std::fs::create_dir_all(&boot).unwrap();
        std::fs::write(boot.join("vmlinuz-6.1.0-10-amd64"), b"k").unwrap();
        std::fs::write(boot.join("initrd.img-6.1.0-10-amd64"), b"i").unwrap();
        let script =
            String::from_utf8(get(dir.path(), &client("deb", None), "boot.ipxe").unwrap()).unwrap();
        assert!(script.contains("kernel 52-54-00-00-00-01/vmlinuz-6.1.0-10-amd64 initrd=initrd root=/dev/nfs nfsroot=10.0.0.1:/os/deb,vers=3,tcp"), "{script}");
        assert!(
            script.contains("initrd --name initrd 52-54-00-00-00-01/initrd.img-6.1.0-10-amd64")
        );
    }

    #[test]
    fn grub_cfg_for_an_arm64_tree_wherever_the_prefix_points() {
        let dir = tempfile::tempdir().unwrap();
        let boot = dir.path().join("arm/boot");
        std::fs::create_dir_all(&boot).unwrap();
        std::fs::write(boot.join("vmlinuz"), b"k").unwrap();
        std::fs::write(boot.join("initrd.img"), b"i").unwrap();
        std::fs::write(boot.join("cmdline.txt"), b"console=ttyAMA0\n").unwrap();
        let c = client("arm", None);
        for name in ["grub/arm64-efi/grub.cfg", "grub/grub.cfg", "grub.cfg"] {
            let cfg = String::from_utf8(get(dir.path(), &c, name).unwrap()).unwrap();
            assert!(cfg.contains("linux /52-54-00-00-00-01/vmlinuz console=ttyAMA0 root=/dev/nfs nfsroot=10.0.0.1:/os/arm,vers=3,tcp"), "{cfg}");
            assert!(
                cfg.contains("initrd /52-54-00-00-00-01/initrd.img\n"),
                "{cfg}"
            );
        }
    }
}
