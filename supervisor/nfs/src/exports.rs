//! The export table: `/os/<name>` (one read-only export per OS tree),
//! `/homes` and `/shared` (read-write, root squashed), and the policy each
//! export applies.
//!
//! Export ids are derived from the export's name, so handles stay valid
//! across restarts and OS trees added at run time get an export on first
//! use. Paths given to MOUNT are resolved here, component by component,
//! never following symlinks and never going above the export root.

use std::collections::HashMap;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use bramble_core::Volume;
use bramble_core::clients::valid_os_name;
use nix::fcntl::{OFlag, open, openat};
use nix::sys::stat::{Mode, fstat};

use crate::creds::Identity;
use crate::sys;

/// What kind of export, which decides its policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A client OS tree: read-only, no root squash.
    Os,
    /// Home directories: read-write, root squashed.
    Homes,
    /// Shared folders: writable by each folder's group, root squashed.
    Shared,
}

/// One exported directory tree.
#[derive(Debug)]
pub struct Export {
    pub id: u32,
    /// The path clients mount, e.g. `/os/bookworm`.
    pub name: String,
    pub kind: Kind,
    pub root: PathBuf,
    /// Read-only descriptor of the root (also the mount fd for
    /// `open_by_handle_at`, which refuses `O_PATH` descriptors).
    pub root_fd: OwnedFd,
    pub dev: u64,
    pub ino: u64,
    pub mount_id: i32,
}

impl Export {
    fn open(name: String, kind: Kind, root: PathBuf) -> io::Result<Self> {
        let root_fd = open(
            &root,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        let st = fstat(&root_fd)?;
        let (_, mount_id) = sys::name_to_handle_at(root_fd.as_fd(), c"", libc::AT_EMPTY_PATH)?;
        Ok(Self {
            id: export_id(&name),
            name,
            kind,
            root,
            root_fd,
            dev: st.st_dev,
            ino: st.st_ino,
            mount_id,
        })
    }

    pub fn writable(&self) -> bool {
        self.kind != Kind::Os
    }

    /// The identity file operations run as for this caller.
    pub fn effective(&self, caller: &Identity) -> Identity {
        match self.kind {
            Kind::Os => caller.clone(),
            Kind::Homes | Kind::Shared => caller.squashed(),
        }
    }

    /// True for the root directory of this export.
    pub fn is_root(&self, st: &libc::stat) -> bool {
        st.st_dev == self.dev && st.st_ino == self.ino
    }
}

/// Stable export id: the first four bytes of a hash of the export name.
pub fn export_id(name: &str) -> u32 {
    let h = blake3::hash(name.as_bytes());
    let b = h.as_bytes();
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// All exports of a volume, looked up by id or by mount path.
pub struct Exports {
    volume: Volume,
    by_id: RwLock<HashMap<u32, Arc<Export>>>,
}

impl Exports {
    pub fn new(volume: Volume) -> Self {
        let e = Self {
            volume,
            by_id: RwLock::default(),
        };
        e.rescan();
        e
    }

    /// Names of every export (for MOUNT EXPORT), sorted.
    pub fn names(&self) -> Vec<String> {
        self.rescan();
        let mut v: Vec<String> = self
            .by_id
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|e| e.name.clone())
            .collect();
        v.sort();
        v
    }

    /// The export with this id (rescanning `os/` once if unknown).
    pub fn by_id(&self, id: u32) -> Option<Arc<Export>> {
        if let Some(e) = self.get(id) {
            return Some(e);
        }
        self.rescan();
        self.get(id)
    }

    fn get(&self, id: u32) -> Option<Arc<Export>> {
        self.by_id
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }

    /// Splits a MOUNT path into its export and the components below it.
    pub fn by_path(&self, path: &str) -> Option<(Arc<Export>, Vec<String>)> {
        let parts: Vec<&str> = path
            .split('/')
            .filter(|p| !p.is_empty() && *p != ".")
            .collect();
        let (name, rest) = match parts.as_slice() {
            ["homes", rest @ ..] => ("/homes".to_string(), rest),
            ["shared", rest @ ..] => ("/shared".to_string(), rest),
            ["os", os, rest @ ..] if valid_os_name(os) => (format!("/os/{os}"), rest),
            _ => return None,
        };
        let export = self.by_id(export_id(&name))?;
        Some((export, rest.iter().map(|s| s.to_string()).collect()))
    }

    /// Rebuilds the table from the volume (keeps existing entries' fds).
    pub fn rescan(&self) {
        let mut wanted = vec![
            ("/homes".to_string(), Kind::Homes, self.volume.homes_dir()),
            (
                "/shared".to_string(),
                Kind::Shared,
                self.volume.shared_dir(),
            ),
        ];
        if let Ok(dir) = std::fs::read_dir(self.volume.os_dir()) {
            for entry in dir.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
                if is_dir && valid_os_name(&name) {
                    wanted.push((format!("/os/{name}"), Kind::Os, entry.path()));
                }
            }
        }
        let mut map = self.by_id.write().unwrap_or_else(|p| p.into_inner());
        let mut next = HashMap::new();
        for (name, kind, root) in wanted {
            let id = export_id(&name);
            if let Some(old) = map.remove(&id) {
                next.insert(id, old);
                continue;
            }
            match Export::open(name.clone(), kind, root) {
                Ok(e) => {
                    next.insert(id, Arc::new(e));
                }
                Err(e) => tracing::warn!("cannot export {name}: {e}"),
            }
        }
        *map = next;
    }
}

/// Walks `components` below `export`'s root without following symlinks
/// and without `..`; returns an `O_PATH` descriptor of the target.
pub fn walk(export: &Export, components: &[String]) -> io::Result<OwnedFd> {
    let mut fd = nix::unistd::dup(&export.root_fd)?;
    for c in components {
        if c == ".." || c.contains('\0') {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let name = CString::new(Path::new(c).as_os_str().as_bytes())
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        fd = openat(
            &fd,
            name.as_c_str(),
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
    }
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_exports() {
        let dir = tempfile::tempdir().unwrap();
        let v = Volume::open(dir.path()).unwrap();
        std::fs::create_dir_all(v.os_dir().join("deb")).unwrap();
        std::fs::create_dir_all(v.homes_dir().join("alice")).unwrap();
        let e = Exports::new(v);
        assert_eq!(e.names(), vec!["/homes", "/os/deb", "/shared"]);
        let (x, rest) = e.by_path("/homes/alice/").unwrap();
        assert_eq!((x.kind, rest), (Kind::Homes, vec!["alice".to_string()]));
        let (x, rest) = e.by_path("/os/deb").unwrap();
        assert_eq!((x.kind, rest.len()), (Kind::Os, 0));
        assert!(e.by_path("/os/nope").is_none());
        assert!(e.by_path("/os/../etc").is_none());
        assert!(e.by_path("/etc").is_none());
        assert!(walk(&x, &["..".into()]).is_err());
    }
}
