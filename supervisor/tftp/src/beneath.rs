//! Opening files strictly inside an OS's boot directory.
//!
//! The boot directory of OS `<name>` is `os/<name>/boot/firmware` when that
//! exists (Bookworm-style trees), else `os/<name>/boot`. Files are opened
//! relative to a descriptor of that directory with `openat2` and
//! `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`, so symlinks that stay inside
//! the directory work (`vmlinuz -> vmlinuz-6.1.0-...`) while absolute
//! symlinks and `..` ones that leave it are refused by the kernel. Kernels
//! without `openat2` (before 5.6) get a component-by-component walk with
//! `O_NOFOLLOW`, which refuses every symlink. Only regular files are
//! served: directories, FIFOs and devices are "not found" (a FIFO is opened
//! with `O_NONBLOCK` so it can never stall the server).

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, open, openat, openat2};
use nix::sys::stat::Mode;

/// Why a file could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("no such file")]
    NotFound,
    #[error("path leaves the boot directory (symlink)")]
    Escape,
    #[error("{0}")]
    Io(#[from] io::Error),
}

impl From<Errno> for OpenError {
    fn from(e: Errno) -> Self {
        match e {
            Errno::ENOENT | Errno::ENOTDIR | Errno::EISDIR => OpenError::NotFound,
            Errno::EXDEV | Errno::ELOOP => OpenError::Escape,
            other => OpenError::Io(other.into()),
        }
    }
}

/// An open boot directory of one OS.
#[derive(Debug)]
pub struct BootDir {
    fd: OwnedFd,
    /// The OS tree itself (`os/<name>`), for bramble's metadata in it.
    tree: OwnedFd,
    /// For listing names only (never for opening files).
    pub path: PathBuf,
}

const DIR_FLAGS: OFlag = OFlag::O_PATH
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_CLOEXEC);
const FILE_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_NONBLOCK)
    .union(OFlag::O_NOCTTY)
    .union(OFlag::O_CLOEXEC);

impl BootDir {
    /// Opens the boot directory of OS `name` under `os_root` (`<data>/os`).
    /// `name` must already be a valid OS name (one plain component).
    pub fn open(os_root: &Path, name: &str) -> Result<Self, OpenError> {
        let root = open(os_root, DIR_FLAGS, Mode::empty())?;
        let tree = openat(&root, name, DIR_FLAGS | OFlag::O_NOFOLLOW, Mode::empty())?;
        for sub in ["boot/firmware", "boot"] {
            match open_beneath(&tree, &[sub], DIR_FLAGS) {
                Ok(fd) => {
                    return Ok(Self {
                        fd,
                        tree,
                        path: os_root.join(name).join(sub),
                    });
                }
                Err(OpenError::NotFound) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(OpenError::NotFound)
    }

    /// Opens the regular file `parts` (validated components) for reading.
    pub fn open_file(&self, parts: &[&str]) -> Result<File, OpenError> {
        let fd = open_beneath(&self.fd, parts, FILE_FLAGS)?;
        let file = File::from(fd);
        if !file.metadata()?.is_file() {
            return Err(OpenError::NotFound);
        }
        Ok(file)
    }

    /// Reads a small regular file completely; `None` when it does not exist.
    pub fn read_optional(&self, parts: &[&str], limit: u64) -> Result<Option<Vec<u8>>, OpenError> {
        read_small(self.open_file(parts), limit)
    }

    /// Reads `os/<name>/.bramble/<file>` (operator additions), if present.
    pub fn read_meta(&self, file: &str, limit: u64) -> Result<Option<Vec<u8>>, OpenError> {
        let opened = open_beneath(&self.tree, &[META_DIR, file], FILE_FLAGS).and_then(|fd| {
            let file = File::from(fd);
            if file.metadata()?.is_file() {
                Ok(file)
            } else {
                Err(OpenError::NotFound)
            }
        });
        read_small(opened, limit)
    }

    /// The names in the boot directory (for choosing a kernel).
    pub fn names(&self) -> Vec<String> {
        std::fs::read_dir(&self.path)
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Directory inside an OS tree holding bramble's per-OS additions.
pub const META_DIR: &str = ".bramble";

fn read_small(opened: Result<File, OpenError>, limit: u64) -> Result<Option<Vec<u8>>, OpenError> {
    use std::io::Read;
    match opened {
        Ok(file) => {
            let mut out = Vec::new();
            file.take(limit).read_to_end(&mut out)?;
            Ok(Some(out))
        }
        Err(OpenError::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Opens `parts` relative to `dir` without ever resolving outside it.
fn open_beneath(dir: &OwnedFd, parts: &[&str], flags: OFlag) -> Result<OwnedFd, OpenError> {
    let how = OpenHow::new()
        .flags(flags)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    match openat2(dir, parts.join("/").as_str(), how) {
        Err(Errno::ENOSYS) => walk_nofollow(dir, parts, flags),
        other => Ok(other?),
    }
}

/// The fallback for kernels without `openat2`: one component at a time,
/// following no symlinks at all.
fn walk_nofollow(dir: &OwnedFd, parts: &[&str], flags: OFlag) -> Result<OwnedFd, OpenError> {
    let names: Vec<&str> = parts.iter().flat_map(|p| p.split('/')).collect();
    let mut current: Option<OwnedFd> = None;
    for (i, name) in names.iter().enumerate() {
        if matches!(*name, "" | "." | "..") {
            return Err(OpenError::Escape);
        }
        let step = if i + 1 == names.len() {
            flags
        } else {
            DIR_FLAGS
        };
        let parent = current.as_ref().unwrap_or(dir);
        current = Some(openat(
            parent,
            *name,
            step | OFlag::O_NOFOLLOW,
            Mode::empty(),
        )?);
    }
    current.ok_or(OpenError::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let os = dir.path().join("os");
        let fw = os.join("osA/boot/firmware");
        std::fs::create_dir_all(fw.join("overlays")).unwrap();
        std::fs::write(fw.join("start4.elf"), b"elf").unwrap();
        std::fs::write(fw.join("overlays/a.dtbo"), b"dtbo").unwrap();
        symlink("start4.elf", fw.join("inside")).unwrap();
        symlink("/etc/passwd", fw.join("abs")).unwrap();
        symlink("../../../../../../etc/passwd", fw.join("up")).unwrap();
        symlink("../cmdline.txt", fw.join("parent")).unwrap();
        symlink("/etc", fw.join("etcdir")).unwrap();
        std::fs::write(os.join("osA/boot/cmdline.txt"), b"outside").unwrap();
        nix::unistd::mkfifo(&fw.join("fifo"), Mode::from_bits_truncate(0o644)).unwrap();
        std::fs::create_dir_all(os.join("osB/boot")).unwrap();
        std::fs::write(os.join("osB/boot/vmlinuz"), b"k").unwrap();
        (dir, os)
    }

    fn read(dir: &BootDir, name: &str) -> Result<Vec<u8>, OpenError> {
        let parts: Vec<&str> = name.split('/').collect();
        dir.read_optional(&parts, 1 << 20)?
            .ok_or(OpenError::NotFound)
    }

    #[test]
    fn prefers_boot_firmware_then_boot() {
        let (_d, os) = tree();
        assert!(
            BootDir::open(&os, "osA")
                .unwrap()
                .path
                .ends_with("boot/firmware")
        );
        let b = BootDir::open(&os, "osB").unwrap();
        assert_eq!(read(&b, "vmlinuz").unwrap(), b"k");
        assert!(matches!(
            BootDir::open(&os, "osC"),
            Err(OpenError::NotFound)
        ));
    }

    #[test]
    fn serves_files_and_inside_symlinks() {
        let (_d, os) = tree();
        let b = BootDir::open(&os, "osA").unwrap();
        assert_eq!(read(&b, "start4.elf").unwrap(), b"elf");
        assert_eq!(read(&b, "overlays/a.dtbo").unwrap(), b"dtbo");
        assert_eq!(read(&b, "inside").unwrap(), b"elf");
    }

    #[test]
    fn refuses_escapes_and_non_files() {
        let (_d, os) = tree();
        let b = BootDir::open(&os, "osA").unwrap();
        for name in ["abs", "up", "parent", "etcdir/passwd"] {
            assert!(matches!(read(&b, name), Err(OpenError::Escape)), "{name}");
        }
        for name in ["fifo", "overlays", "missing.elf", "start4.elf/x"] {
            assert!(matches!(read(&b, name), Err(OpenError::NotFound)), "{name}");
        }
    }

    #[test]
    fn fallback_walk_refuses_every_symlink() {
        let (_d, os) = tree();
        let b = BootDir::open(&os, "osA").unwrap();
        let walk = |name: &str| {
            let parts: Vec<&str> = name.split('/').collect();
            walk_nofollow(&b.fd, &parts, FILE_FLAGS)
        };
        assert!(walk("overlays/a.dtbo").is_ok());
        for name in ["abs", "up", "inside", "etcdir/passwd"] {
            assert!(
                matches!(walk(name), Err(OpenError::Escape | OpenError::NotFound)),
                "{name}"
            );
        }
    }
}
