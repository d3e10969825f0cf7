//! From file handles to open objects, and back.
//!
//! A [`Node`] is an `O_PATH` descriptor of one file inside one export,
//! plus lazily opened read and read-write descriptors (the open-file cache:
//! READ and WRITE never open or close per call). Nodes are cached by handle
//! bytes; LOOKUP, MKDIR and friends fill the cache with the descriptor they
//! already hold, and a handle not in the cache (e.g. after a restart) is
//! opened with `open_by_handle_at` on the export's mount.
//!
//! Containment: only handles that carry a valid MAC get this far, and the
//! server only issues handles for objects reached from an export root
//! without following symlinks or leaving the root with `..`. On a cold
//! open a directory is also checked to still lie below the export root,
//! and every object must live on the export's file system.

use std::collections::HashMap;
use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, Mutex, OnceLock};

use nfs3_types::nfs3::nfsstat3;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, fstat, fstatat};

use crate::error::io_to_nfs;
use crate::exports::{Export, Exports};
use crate::handle::Codec;
use crate::sys;

/// One file of an export, resolved.
pub struct Node {
    pub export: Arc<Export>,
    /// `O_PATH | O_NOFOLLOW` descriptor of the object itself.
    pub fd: OwnedFd,
    pub handle: Vec<u8>,
    read: OnceLock<Arc<File>>,
    write: OnceLock<Arc<File>>,
}

impl Node {
    pub fn stat(&self) -> io::Result<FileStat> {
        Ok(fstat(&self.fd)?)
    }

    /// A read-only descriptor of this (regular) file, opened once, as root.
    pub fn reader(&self) -> io::Result<Arc<File>> {
        if let Some(f) = self.read.get() {
            return Ok(f.clone());
        }
        let f = Arc::new(self.reopen(OFlag::O_RDONLY)?);
        Ok(self.read.get_or_init(|| f).clone())
    }

    /// A read-write descriptor of this (regular) file, opened once, as root.
    pub fn writer(&self) -> io::Result<Arc<File>> {
        if let Some(f) = self.write.get() {
            return Ok(f.clone());
        }
        let f = Arc::new(self.reopen(OFlag::O_RDWR)?);
        Ok(self.write.get_or_init(|| f).clone())
    }

    fn reopen(&self, mode: OFlag) -> io::Result<File> {
        let path = sys::proc_fd_path(self.fd.as_fd());
        let fd = nix::fcntl::open(
            path.as_c_str(),
            mode | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK | OFlag::O_NOCTTY,
            nix::sys::stat::Mode::empty(),
        )?;
        Ok(File::from(fd))
    }
}

/// Resolves handles and issues them.
pub struct Vfs {
    pub exports: Exports,
    codec: Codec,
    cache: Mutex<HashMap<Vec<u8>, Arc<Node>>>,
    capacity: usize,
}

impl Vfs {
    pub fn new(exports: Exports, codec: Codec, capacity: usize) -> Self {
        Self {
            exports,
            codec,
            cache: Mutex::default(),
            capacity: capacity.max(64),
        }
    }

    fn cached(&self, fh: &[u8]) -> Option<Arc<Node>> {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(fh)
            .cloned()
    }

    fn evict(&self, fh: &[u8]) {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(fh);
    }

    fn insert(&self, node: Arc<Node>) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= self.capacity {
            let keep = self.capacity * 3 / 4;
            let mut n = cache.len();
            cache.retain(|_, v| {
                if n > keep && Arc::strong_count(v) == 1 {
                    n -= 1;
                    false
                } else {
                    true
                }
            });
        }
        cache.insert(node.handle.clone(), node);
    }

    /// Handle bytes -> node and its current attributes. BADHANDLE for
    /// forged handles, STALE for objects that are gone.
    pub fn resolve(&self, fh: &[u8]) -> Result<(Arc<Node>, FileStat), nfsstat3> {
        if let Some(node) = self.cached(fh) {
            match node.stat() {
                Ok(st) if st.st_nlink > 0 => return Ok((node, st)),
                _ => self.evict(fh),
            }
            return Err(nfsstat3::NFS3ERR_STALE);
        }
        let decoded = self.codec.decode(fh)?;
        let export = self
            .exports
            .by_id(decoded.export_id)
            .ok_or(nfsstat3::NFS3ERR_STALE)?;
        if decoded.dev != export.dev {
            return Err(nfsstat3::NFS3ERR_STALE);
        }
        let fd = sys::open_by_handle_at(
            export.root_fd.as_fd(),
            &decoded.kernel,
            libc::O_PATH | libc::O_NOFOLLOW,
        )
        .map_err(|e| {
            tracing::debug!("open_by_handle_at in {}: {e}", export.name);
            match e.raw_os_error() {
                Some(libc::ESTALE | libc::ENOENT | libc::EINVAL) => nfsstat3::NFS3ERR_STALE,
                _ => io_to_nfs(&e),
            }
        })?;
        let st = fstat(&fd).map_err(|_| nfsstat3::NFS3ERR_STALE)?;
        if st.st_dev != export.dev || st.st_nlink == 0 || !contained(&export, &fd, &st) {
            return Err(nfsstat3::NFS3ERR_STALE);
        }
        let node = Arc::new(Node {
            export,
            fd,
            handle: fh.to_vec(),
            read: OnceLock::new(),
            write: OnceLock::new(),
        });
        self.insert(node.clone());
        Ok((node, st))
    }

    /// Issues the handle for `fd` (an `O_PATH` descriptor reached inside
    /// `export`) and caches the node.
    pub fn node_for(
        &self,
        export: &Arc<Export>,
        fd: OwnedFd,
    ) -> Result<(Arc<Node>, FileStat), nfsstat3> {
        let st = fstat(&fd).map_err(|e| io_to_nfs(&e.into()))?;
        let handle = self.handle_at(export, fd.as_fd(), c"", libc::AT_EMPTY_PATH)?;
        if let Some(node) = self.cached(&handle) {
            return Ok((node, st));
        }
        let node = Arc::new(Node {
            export: export.clone(),
            fd,
            handle,
            read: OnceLock::new(),
            write: OnceLock::new(),
        });
        self.insert(node.clone());
        Ok((node, st))
    }

    /// The handle of `name` in `dir` (no descriptor opened), for
    /// READDIRPLUS. Objects on another mount get none (ACCES).
    pub fn handle_at(
        &self,
        export: &Export,
        dir: BorrowedFd<'_>,
        name: &CStr,
        flags: libc::c_int,
    ) -> Result<Vec<u8>, nfsstat3> {
        let (kernel, mount_id) =
            sys::name_to_handle_at(dir, name, flags).map_err(|e| io_to_nfs(&e))?;
        if mount_id != export.mount_id {
            return Err(nfsstat3::NFS3ERR_ACCES);
        }
        self.codec
            .encode(export.id, export.dev, &kernel)
            .ok_or(nfsstat3::NFS3ERR_SERVERFAULT)
    }

    /// Attributes of `name` in `dir` without following symlinks.
    pub fn stat_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<FileStat> {
        Ok(fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)?)
    }
}

/// A directory opened cold must still lie below its export's root.
fn contained(export: &Export, fd: &OwnedFd, st: &FileStat) -> bool {
    if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
        return true;
    }
    let link = format!("/proc/self/fd/{}", fd.as_raw_fd());
    match std::fs::read_link(link) {
        Ok(path) => {
            let root = export.root.as_os_str().as_bytes();
            let p = path.as_os_str().as_bytes();
            p == root || (p.starts_with(root) && p.get(root.len()) == Some(&b'/'))
        }
        Err(_) => false,
    }
}
