//! Files generated per client, in memory, never written anywhere.
//!
//! Pure functions of their inputs, so changing the server address or a
//! client's OS needs no rewrite of anything:
//! - [`cmdline`]: the OS's own `cmdline.txt` with its root settings replaced
//!   by an NFS root on bramble, plus the client's extra arguments;
//! - [`config_txt`]: the OS's own `config.txt` plus operator additions;
//! - [`ipxe_script`]: for PCs, an iPXE script naming the OS's kernel and
//!   initrd (chosen by [`pick_kernel`]) with the same command line;
//! - [`grub_cfg`]: the same for GRUB network images (UEFI arm64 and x64,
//!   DHCP option 93 = 11 / 7 / 9), which read `<prefix>/grub.cfg` from the
//!   server (Debian's signed `grubnetaa64.efi` asks for
//!   `/grub/arm64-efi/grub.cfg`, then `/grub/grub.cfg`).

use std::cmp::Ordering;
use std::net::Ipv4Addr;

use bramble_core::clients::Mac;

/// Kernel arguments that bramble decides, removed from the OS's cmdline.
const REPLACED_PREFIXES: &[&str] = &["root=", "nfsroot=", "ip=", "rootfstype=", "init="];
/// Flags bramble appends itself; dropped from the original to avoid
/// duplicates or contradictions (`rw` on a read-only export).
const REPLACED_FLAGS: &[&str] = &["ro", "rw", "rootwait"];

/// Which generated file a name inside a boot directory is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generated {
    CmdLine,
    ConfigTxt,
    Ipxe,
    GrubCfg,
}

impl Generated {
    /// `cmdline.txt`, `config.txt` and any `*.ipxe` at the top level (the
    /// DHCP side names `dhcp.ipxe_script`, `boot.ipxe` by default), and
    /// `grub.cfg` in any directory (wherever a GRUB image's prefix points).
    pub fn from_name(rest: &[&str]) -> Option<Self> {
        match rest {
            ["cmdline.txt"] => Some(Self::CmdLine),
            ["config.txt"] => Some(Self::ConfigTxt),
            [name] if name.len() > 5 && name.ends_with(".ipxe") => Some(Self::Ipxe),
            [.., "grub.cfg"] => Some(Self::GrubCfg),
            _ => None,
        }
    }
}

/// The NFS export path of OS `os`.
pub fn nfs_export(os: &str) -> String {
    format!("/os/{os}")
}

/// The kernel command line for a client of OS `os` served from `server`.
pub fn cmdline(original: &str, server: Ipv4Addr, os: &str, extra: Option<&str>) -> String {
    let first_line = original.lines().next().unwrap_or("");
    let kept = first_line.split_whitespace().filter(|arg| {
        !REPLACED_PREFIXES.iter().any(|p| arg.starts_with(p)) && !REPLACED_FLAGS.contains(arg)
    });
    let nfsroot = format!("nfsroot={server}:{},vers=3,tcp", nfs_export(os));
    let ours = [
        "root=/dev/nfs",
        nfsroot.as_str(),
        "ip=dhcp",
        "ro",
        "rootwait",
    ];
    let extra = extra.unwrap_or("").split_whitespace();
    let all: Vec<&str> = kept.chain(ours).chain(extra).collect();
    format!("{}\n", all.join(" "))
}

/// The OS's `config.txt` followed by operator additions (if any).
pub fn config_txt(original: Option<&[u8]>, additions: Option<&[u8]>) -> Option<Vec<u8>> {
    let Some(additions) = additions else {
        return original.map(<[u8]>::to_vec);
    };
    let mut out = original.unwrap_or_default().to_vec();
    if !out.is_empty() && !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    out.extend_from_slice(b"\n# added by bramble\n[all]\n");
    out.extend_from_slice(additions);
    if !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    Some(out)
}

/// A kernel and its initrd inside a boot directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelPair {
    pub kernel: String,
    pub initrd: Option<String>,
}

/// Chooses the kernel a PC boots from the names in its boot directory:
/// `vmlinuz` if present, else the newest `vmlinuz-<version>`; the initrd
/// with the same suffix, else `initrd.img`.
pub fn pick_kernel(names: &[String]) -> Option<KernelPair> {
    let has = |n: &str| names.iter().any(|x| x == n);
    let kernel = if has("vmlinuz") {
        "vmlinuz".to_string()
    } else {
        names
            .iter()
            .filter(|n| n.starts_with("vmlinuz-"))
            .max_by(|a, b| natural_cmp(a, b))?
            .clone()
    };
    let versioned = kernel
        .strip_prefix("vmlinuz-")
        .map(|v| format!("initrd.img-{v}"))
        .filter(|n| has(n));
    let initrd = versioned.or_else(|| has("initrd.img").then(|| "initrd.img".to_string()));
    Some(KernelPair { kernel, initrd })
}

/// Compares names so that embedded numbers sort by value (`6.10` > `6.9`).
fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a, b);
    loop {
        match (chunk(a), chunk(b)) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some((x, ra)), Some((y, rb))) => {
                let order = match (x.parse::<u64>(), y.parse::<u64>()) {
                    (Ok(m), Ok(n)) => m.cmp(&n),
                    _ => x.cmp(y),
                };
                if order != Ordering::Equal {
                    return order;
                }
                (a, b) = (ra, rb);
            }
        }
    }
}

/// The leading run of digits or of non-digits, and the rest.
fn chunk(s: &str) -> Option<(&str, &str)> {
    let first = s.chars().next()?;
    let digit = first.is_ascii_digit();
    let end = s
        .find(|c: char| c.is_ascii_digit() != digit)
        .unwrap_or(s.len());
    Some(s.split_at(end))
}

/// An iPXE script booting `pair` with `cmdline`. File names are relative
/// with a `<mac>/` prefix (dashes: a colon would read as a URI scheme), so
/// iPXE fetches them from the same server and bramble knows who asks.
pub fn ipxe_script(mac: Mac, os: &str, pair: &KernelPair, cmdline: &str) -> String {
    let prefix = mac.to_string().replace(':', "-");
    let mut out = format!("#!ipxe\n# generated by bramble for {mac} (os {os})\n");
    let mut kernel_args = String::new();
    if let Some(initrd) = &pair.initrd {
        out.push_str(&format!("initrd --name initrd {prefix}/{initrd}\n"));
        kernel_args.push_str(" initrd=initrd");
    }
    out.push_str(&format!(
        "kernel {prefix}/{}{kernel_args} {}\nboot\n",
        pair.kernel,
        cmdline.trim()
    ));
    out
}

/// A GRUB configuration booting `pair` with `cmdline` at once (no menu).
/// Paths are absolute on GRUB's root device (the TFTP server it was loaded
/// from) under a `<mac>/` prefix, as in [`ipxe_script`]; the `echo` lines
/// show on the console how far GRUB got.
pub fn grub_cfg(mac: Mac, os: &str, pair: &KernelPair, cmdline: &str) -> String {
    let prefix = mac.to_string().replace(':', "-");
    let mut out = format!("# generated by bramble for {mac} (os {os})\n");
    out.push_str(&format!(
        "echo 'bramble: loading {kernel}'\nlinux /{prefix}/{kernel} {args}\n",
        kernel = pair.kernel,
        args = cmdline.trim()
    ));
    if let Some(initrd) = &pair.initrd {
        out.push_str(&format!(
            "echo 'bramble: loading {initrd}'\ninitrd /{prefix}/{initrd}\n"
        ));
    }
    out.push_str("echo 'bramble: booting'\nboot\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);

    #[test]
    fn cmdline_replaces_root_settings() {
        let stock = "console=serial0,115200 console=tty1 root=PARTUUID=3e8c-02 rootfstype=ext4 fsck.repair=yes rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot rw\n";
        assert_eq!(
            cmdline(stock, SERVER, "bookworm", Some(" splash  quiet ")),
            "console=serial0,115200 console=tty1 fsck.repair=yes quiet root=/dev/nfs \
             nfsroot=10.77.0.1:/os/bookworm,vers=3,tcp ip=dhcp ro rootwait splash quiet\n"
        );
    }

    #[test]
    fn cmdline_without_original() {
        assert_eq!(
            cmdline("", SERVER, "x", None),
            "root=/dev/nfs nfsroot=10.77.0.1:/os/x,vers=3,tcp ip=dhcp ro rootwait\n"
        );
        // Only the first line counts, as for the firmware.
        assert!(!cmdline("a\nb=1\n", SERVER, "x", None).contains("b=1"));
    }

    #[test]
    fn config_txt_additions() {
        assert_eq!(config_txt(None, None), None);
        assert_eq!(config_txt(Some(b"a=1"), None).unwrap(), b"a=1");
        assert_eq!(
            config_txt(Some(b"a=1"), Some(b"b=2")).unwrap(),
            b"a=1\n\n# added by bramble\n[all]\nb=2\n"
        );
        assert_eq!(
            config_txt(None, Some(b"b=2\n")).unwrap(),
            b"\n# added by bramble\n[all]\nb=2\n"
        );
    }

    #[test]
    fn generated_names() {
        assert_eq!(
            Generated::from_name(&["cmdline.txt"]),
            Some(Generated::CmdLine)
        );
        assert_eq!(
            Generated::from_name(&["config.txt"]),
            Some(Generated::ConfigTxt)
        );
        assert_eq!(Generated::from_name(&["boot.ipxe"]), Some(Generated::Ipxe));
        assert_eq!(Generated::from_name(&[".ipxe"]), None);
        assert_eq!(
            Generated::from_name(&["grub.cfg"]),
            Some(Generated::GrubCfg)
        );
        assert_eq!(
            Generated::from_name(&["debian-installer", "arm64", "grub", "grub.cfg"]),
            Some(Generated::GrubCfg)
        );
        assert_eq!(Generated::from_name(&["grub", "grub.cfg.bak"]), None);
        assert_eq!(Generated::from_name(&["a", "cmdline.txt"]), None);
        assert_eq!(Generated::from_name(&["start4.elf"]), None);
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn kernel_choice() {
        let pair = pick_kernel(&names(&[
            "vmlinuz-6.1.0-9-amd64",
            "vmlinuz-6.1.0-10-amd64",
            "initrd.img-6.1.0-10-amd64",
            "initrd.img-6.1.0-9-amd64",
            "config-6.1.0-10-amd64",
        ]))
        .unwrap();
        assert_eq!(pair.kernel, "vmlinuz-6.1.0-10-amd64");
        assert_eq!(pair.initrd.as_deref(), Some("initrd.img-6.1.0-10-amd64"));
        let pair = pick_kernel(&names(&["vmlinuz", "initrd.img", "vmlinuz-7"])).unwrap();
        assert_eq!(
            (pair.kernel.as_str(), pair.initrd.as_deref()),
            ("vmlinuz", Some("initrd.img"))
        );
        assert_eq!(pick_kernel(&names(&["vmlinuz-1"])).unwrap().initrd, None);
        assert_eq!(pick_kernel(&names(&["kernel8.img"])), None);
    }

    #[test]
    fn ipxe_script_names_files_under_the_mac() {
        let mac: Mac = "52:54:00:12:34:56".parse().unwrap();
        let pair = KernelPair {
            kernel: "vmlinuz".into(),
            initrd: Some("initrd.img".into()),
        };
        let s = ipxe_script(mac, "deb", &pair, "root=/dev/nfs ro\n");
        assert_eq!(
            s,
            "#!ipxe\n# generated by bramble for 52:54:00:12:34:56 (os deb)\n\
             initrd --name initrd 52-54-00-12-34-56/initrd.img\n\
             kernel 52-54-00-12-34-56/vmlinuz initrd=initrd root=/dev/nfs ro\nboot\n"
        );
    }

    #[test]
    fn grub_cfg_names_files_under_the_mac() {
        let mac: Mac = "52:54:00:12:34:56".parse().unwrap();
        let pair = KernelPair {
            kernel: "vmlinuz".into(),
            initrd: Some("initrd.img".into()),
        };
        let args = cmdline("console=ttyAMA0 quiet\n", SERVER, "arm", None);
        assert_eq!(
            grub_cfg(mac, "arm", &pair, &args),
            "# generated by bramble for 52:54:00:12:34:56 (os arm)\n\
             echo 'bramble: loading vmlinuz'\n\
             linux /52-54-00-12-34-56/vmlinuz console=ttyAMA0 quiet root=/dev/nfs \
             nfsroot=10.77.0.1:/os/arm,vers=3,tcp ip=dhcp ro rootwait\n\
             echo 'bramble: loading initrd.img'\n\
             initrd /52-54-00-12-34-56/initrd.img\n\
             echo 'bramble: booting'\nboot\n"
        );
        let bare = KernelPair {
            kernel: "vmlinuz-6.1".into(),
            initrd: None,
        };
        let s = grub_cfg(mac, "arm", &bare, "ro\n");
        assert!(
            s.contains("linux /52-54-00-12-34-56/vmlinuz-6.1 ro\n"),
            "{s}"
        );
        assert!(!s.contains("initrd"), "{s}");
    }
}
