//! The MOUNT protocol v3 (RFC 1813 appendix I, program 100005): MNT of an
//! export or any directory inside one (e.g. `/homes/alice`), UMNT,
//! UMNTALL, EXPORT and DUMP. Only admitted client addresses may mount.

use std::net::IpAddr;
use std::sync::Mutex;

use nfs3_types::mount::{
    dirpath, export_node, fhandle3, mountbody, mountres3, mountres3_ok, mountstat3, name,
};
use nfs3_types::xdr_codec::{List, Opaque};

use crate::attr::is_dir;
use crate::exports::walk;
use crate::rpc::{Accept, Call, Reply};
use crate::server::State;
use crate::xdr::{Reader, put};

pub const PROGRAM: u32 = 100_005;

/// Who mounted what (for DUMP); informational, as in every NFSv3 server.
#[derive(Default)]
pub struct MountTable {
    entries: Mutex<Vec<(String, String)>>,
}

impl MountTable {
    fn add(&self, host: String, dir: String) {
        let mut e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if !e.iter().any(|(h, d)| *h == host && *d == dir) {
            e.push((host, dir));
        }
    }

    fn remove(&self, host: &str, dir: Option<&str>) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(h, d)| !(h == host && dir.is_none_or(|x| x == d)));
    }

    fn list(&self) -> Vec<(String, String)> {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Answers one MOUNT call (runs on a worker thread).
pub fn handle(state: &State, call: &Call<'_>, peer: IpAddr) -> Reply {
    if call.vers != 3 {
        return Reply::prog_mismatch(call.xid, 3, 3);
    }
    let mut r = Reader::new(call.args);
    let mut reply = Reply::success(call.xid);
    let host = peer.to_string();
    match call.proc_ {
        0 => {}
        1 => {
            let Ok(path) = r.opaque(1024) else {
                return Reply::error(call.xid, Accept::GarbageArgs);
            };
            let path = String::from_utf8_lossy(path).into_owned();
            let res = mnt(state, peer, &path);
            if let mountres3::Ok(_) = res {
                tracing::info!(client = %peer, path, "mounted");
                state.mounts.add(host, path);
            } else {
                tracing::info!(client = %peer, path, result = ?res, "mount refused");
            }
            put(&mut reply.buf, &res);
        }
        2 => put(&mut reply.buf, &dump(state)),
        3 => {
            let Ok(path) = r.opaque(1024) else {
                return Reply::error(call.xid, Accept::GarbageArgs);
            };
            state
                .mounts
                .remove(&host, Some(&String::from_utf8_lossy(path)));
        }
        4 => state.mounts.remove(&host, None),
        5 => put(&mut reply.buf, &exports(state)),
        _ => return Reply::error(call.xid, Accept::ProcUnavail),
    }
    reply
}

fn mnt(state: &State, peer: IpAddr, path: &str) -> mountres3<'static> {
    if !state.admission.allowed(peer) {
        return mountres3::Err(mountstat3::MNT3ERR_ACCES);
    }
    let Some((export, rest)) = state.vfs.exports.by_path(path) else {
        return mountres3::Err(mountstat3::MNT3ERR_NOENT);
    };
    let fd = match walk(&export, &rest) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::EACCES) => {
            return mountres3::Err(mountstat3::MNT3ERR_ACCES);
        }
        Err(_) => return mountres3::Err(mountstat3::MNT3ERR_NOENT),
    };
    match state.vfs.node_for(&export, fd) {
        Ok((_, st)) if !is_dir(&st) => mountres3::Err(mountstat3::MNT3ERR_NOTDIR),
        Ok((node, _)) => mountres3::Ok(mountres3_ok {
            fhandle: fhandle3(Opaque::owned(node.handle.clone())),
            auth_flavors: vec![1],
        }),
        Err(_) => mountres3::Err(mountstat3::MNT3ERR_SERVERFAULT),
    }
}

fn dump(state: &State) -> List<mountbody<'static, 'static>> {
    List(
        state
            .mounts
            .list()
            .into_iter()
            .map(|(h, d)| mountbody {
                ml_hostname: name(Opaque::owned(h.into_bytes())),
                ml_directory: dirpath(Opaque::owned(d.into_bytes())),
            })
            .collect(),
    )
}

fn exports(state: &State) -> List<export_node<'static, 'static>> {
    List(
        state
            .vfs
            .exports
            .names()
            .into_iter()
            .map(|n| export_node {
                ex_dir: dirpath(Opaque::owned(n.into_bytes())),
                ex_groups: List(Vec::new()),
            })
            .collect(),
    )
}
