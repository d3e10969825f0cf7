//! The NFSv3 program (RFC 1813, program 100003 version 3): one function
//! per procedure, each decoding its arguments with [`crate::xdr::Reader`],
//! doing the work as the caller (see [`crate::creds`]) and answering an
//! `nfsstat3` with the attributes RFC 1813 asks for.
//!
//! - [`read`]: GETATTR, LOOKUP, ACCESS, READLINK, READ, FSSTAT, FSINFO,
//!   PATHCONF.
//! - [`dir`]: READDIR, READDIRPLUS.
//! - [`write`]: SETATTR, WRITE, CREATE, MKDIR, SYMLINK, MKNOD, REMOVE,
//!   RMDIR, RENAME, LINK, COMMIT.
//!
//! Failures carry RFC 1813's failure bodies (weak cache consistency data),
//! which are large; they are encoded right away, never passed far.
#![allow(clippy::result_large_err)]

pub mod dir;
pub mod read;
pub mod write;

use std::ffi::CString;
use std::net::IpAddr;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use nfs3_types::nfs3::{nfs_fh3, nfsstat3};
use nfs3_types::xdr_codec::{Opaque, Pack};
use nix::sys::stat::{FileStat, stat};

use crate::creds::Identity;
use crate::exports::Kind;
use crate::rpc::{Accept, AuthStat, Call, Cred, Reply};
use crate::server::State;
use crate::vfs::Node;
use crate::xdr::{self, Reader, put, put_u32};

pub const PROGRAM: u32 = 100_003;

/// Procedures that change state: answered from the duplicate-request
/// cache when retransmitted.
pub fn non_idempotent(proc_: u32) -> bool {
    matches!(proc_, 2 | 8 | 9 | 10 | 11 | 12 | 13 | 14 | 15)
}

/// What a procedure gets: the server, the caller and the reply limit.
pub struct Cx<'a> {
    pub state: &'a State,
    pub caller: Identity,
    /// Largest reply the transport carries (UDP datagrams are small).
    pub max_reply: usize,
}

impl Cx<'_> {
    pub fn resolve(&self, fh: &nfs_fh3) -> Result<(Arc<Node>, FileStat), nfsstat3> {
        self.state.vfs.resolve(&fh.data)
    }

    /// The identity operations on `node`'s export run as.
    pub fn effective(&self, node: &Node) -> Identity {
        node.export.effective(&self.caller)
    }

    /// Runs `f` with the thread's credentials switched to the caller's
    /// (squashed as the export says).
    pub fn as_user<T>(&self, node: &Node, f: impl FnOnce() -> T) -> Result<T, nfsstat3> {
        let _guard = self.effective(node).assume().map_err(|e| {
            tracing::error!("{e}");
            nfsstat3::NFS3ERR_SERVERFAULT
        })?;
        Ok(f())
    }

    /// May the caller change things below `node`? ROFS for read-only
    /// exports; in `/shared` only members of the top folder's group write.
    pub fn may_modify(&self, node: &Node) -> Result<(), nfsstat3> {
        match node.export.kind {
            Kind::Os => Err(nfsstat3::NFS3ERR_ROFS),
            Kind::Homes => Ok(()),
            Kind::Shared => match shared_folder_gid(node) {
                Some(gid) if self.effective(node).in_group(gid) => Ok(()),
                _ => Err(nfsstat3::NFS3ERR_ACCES),
            },
        }
    }
}

/// The group owning the top-level folder of `/shared` that holds `node`.
fn shared_folder_gid(node: &Node) -> Option<u32> {
    let fd = std::os::fd::AsRawFd::as_raw_fd(&node.fd);
    let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
    let rel = link.strip_prefix(&node.export.root).ok()?;
    let top = rel.components().next()?;
    stat(&node.export.root.join(top)).ok().map(|st| st.st_gid)
}

/// Checks a name a client wants to create or look up.
pub fn check_name(name: &[u8]) -> Result<CString, nfsstat3> {
    if name.len() > 255 {
        return Err(nfsstat3::NFS3ERR_NAMETOOLONG);
    }
    if name.is_empty() || name.contains(&b'/') {
        return Err(nfsstat3::NFS3ERR_ACCES);
    }
    CString::new(std::ffi::OsStr::from_bytes(name).as_bytes()).map_err(|_| nfsstat3::NFS3ERR_ACCES)
}

/// A name for a new object: also refuses `.` and `..`.
pub fn new_name(name: &[u8]) -> Result<CString, nfsstat3> {
    if name == b"." || name == b".." {
        return Err(nfsstat3::NFS3ERR_EXIST);
    }
    check_name(name)
}

pub fn fh(node: &Node) -> nfs_fh3 {
    nfs_fh3 {
        data: Opaque::owned(node.handle.clone()),
    }
}

/// Encodes a procedure result (`nfsstat3` then the ok or fail body).
pub fn answer<T: Pack, E: Pack>(out: &mut Vec<u8>, res: Result<T, (nfsstat3, E)>) {
    match res {
        Ok(v) => {
            put_u32(out, 0);
            put(out, &v);
        }
        Err((s, e)) => {
            put(out, &s);
            put(out, &e);
        }
    }
}

type Proc = fn(&Cx<'_>, &mut Reader<'_>, &mut Vec<u8>) -> xdr::Result<()>;

fn procedure(n: u32) -> Option<Proc> {
    Some(match n {
        0 => |_, _, _| Ok(()),
        1 => read::getattr,
        2 => write::setattr,
        3 => read::lookup,
        4 => read::access,
        5 => read::readlink,
        6 => read::read,
        7 => write::write,
        8 => write::create,
        9 => write::mkdir,
        10 => write::symlink,
        11 => write::mknod,
        12 => write::remove,
        13 => write::rmdir,
        14 => write::rename,
        15 => write::link,
        16 => dir::readdir,
        17 => dir::readdirplus,
        18 => read::fsstat,
        19 => read::fsinfo,
        20 => read::pathconf,
        21 => write::commit,
        _ => return None,
    })
}

/// Answers one NFS call (runs on a worker thread).
pub fn handle(state: &State, call: &Call<'_>, peer: IpAddr, max_reply: usize) -> Reply {
    if call.vers != 3 {
        return Reply::prog_mismatch(call.xid, 3, 3);
    }
    let Some(proc_fn) = procedure(call.proc_) else {
        return Reply::error(call.xid, Accept::ProcUnavail);
    };
    if call.proc_ != 0 {
        if let Cred::Other(_) = call.cred {
            return Reply::auth_error(call.xid, AuthStat::TooWeak);
        }
        if !state.admission.allowed(peer) {
            return Reply::auth_error(call.xid, AuthStat::TooWeak);
        }
    }
    let cx = Cx {
        state,
        caller: call.cred.identity(),
        max_reply,
    };
    let mut reply = Reply::success(call.xid);
    let mut args = Reader::new(call.args);
    match proc_fn(&cx, &mut args, &mut reply.buf) {
        Ok(()) => reply,
        Err(xdr::Garbage) => Reply::error(call.xid, Accept::GarbageArgs),
    }
}
