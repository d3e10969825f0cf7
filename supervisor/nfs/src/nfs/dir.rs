//! READDIR and READDIRPLUS: directory listings with the kernel's own
//! directory offsets as cookies, sized to what the client asked for.
//! READDIRPLUS adds attributes and handles with `fstatat` and
//! `name_to_handle_at` per entry, never opening or following anything.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nfs3_types::nfs3::{
    Nfs3Option, READDIR3resfail, READDIR3resok, READDIRPLUS3resfail, READDIRPLUS3resok,
    cookieverf3, dirlist3, dirlistplus3, entry3, entryplus3, filename3, nfs_fh3, nfsstat3,
};
use nfs3_types::xdr_codec::{List, Opaque};
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{FileStat, Mode};

use super::{Cx, answer};
use crate::attr::{is_dir, post_op};
use crate::error::{errno_to_nfs, io_to_nfs};
use crate::sys::{DirEntry, read_dir_from};
use crate::vfs::{Node, Vfs};
use crate::xdr::{Reader, Result};

/// Bytes of a reply outside the entries (status, attributes, verifier, eof).
const OVERHEAD: usize = 128;

fn padded(n: usize) -> usize {
    n.div_ceil(4) * 4
}

/// Size of an `entry3` on the wire.
fn entry_size(name: &[u8]) -> usize {
    4 + 8 + 4 + padded(name.len()) + 8
}

/// Size of an `entryplus3` on the wire (attributes and a full handle).
fn entry_plus_size(name: &[u8]) -> usize {
    entry_size(name) + 4 + 84 + 4 + 4 + 64
}

/// Opens the directory for reading as the caller (needs read permission).
fn open_dir(cx: &Cx<'_>, node: &Node, st: &FileStat) -> std::result::Result<OwnedFd, nfsstat3> {
    if !is_dir(st) {
        return Err(nfsstat3::NFS3ERR_NOTDIR);
    }
    cx.as_user(node, || {
        openat(
            &node.fd,
            c".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
    })?
    .map_err(errno_to_nfs)
}

/// Reads entries from `cookie` on while `fits(entry, used)` holds.
/// Returns the entries and whether the directory was exhausted.
fn collect(
    dir: &OwnedFd,
    cookie: u64,
    mut fits: impl FnMut(&DirEntry) -> bool,
) -> std::result::Result<(Vec<DirEntry>, bool), nfsstat3> {
    let mut out = Vec::new();
    let mut pos = cookie;
    loop {
        let mut batch = Vec::new();
        let more = read_dir_from(dir.as_raw_fd(), pos, 32 * 1024, &mut batch)
            .map_err(|e| io_to_nfs(&e))?;
        if !more {
            return Ok((out, true));
        }
        for e in batch {
            if !fits(&e) {
                return Ok((out, false));
            }
            pos = e.next;
            out.push(e);
        }
    }
}

pub fn readdir(cx: &Cx<'_>, r: &mut Reader<'_>, out: &mut Vec<u8>) -> Result<()> {
    let fh = r.fh()?;
    let cookie = r.u64()?;
    let _verf = r.fixed::<8>()?;
    let count = (r.u32()? as usize).min(cx.max_reply);
    let res = (|| {
        let (node, st) = cx
            .resolve(&fh)
            .map_err(|s| (s, READDIR3resfail::default()))?;
        let fail = |s| {
            (
                s,
                READDIR3resfail {
                    dir_attributes: post_op(Some(&st)),
                },
            )
        };
        let dir = open_dir(cx, &node, &st).map_err(fail)?;
        let mut used = OVERHEAD;
        let (entries, eof) = collect(&dir, cookie, |e| {
            used += entry_size(&e.name);
            used <= count
        })
        .map_err(fail)?;
        if entries.is_empty() && !eof {
            return Err(fail(nfsstat3::NFS3ERR_TOOSMALL));
        }
        let root_ino = node.export.ino;
        let at_root = node.export.is_root(&st);
        let list = entries
            .into_iter()
            .map(|e| entry3 {
                fileid: if at_root && e.name == b".." {
                    root_ino
                } else {
                    e.ino
                },
                name: filename3(Opaque::owned(e.name)),
                cookie: e.next,
            })
            .collect();
        Ok(READDIR3resok {
            dir_attributes: post_op(Some(&st)),
            cookieverf: cookieverf3::default(),
            reply: dirlist3 {
                entries: List(list),
                eof,
            },
        })
    })();
    answer(out, res);
    Ok(())
}

/// Attributes and handle of one entry, or none if it cannot be had
/// (no search permission, another mount, vanished meanwhile).
fn entry_plus(cx: &Cx<'_>, node: &Node, st: &FileStat, e: DirEntry) -> entryplus3<'static> {
    let at_root = node.export.is_root(st);
    let name: &[u8] = if (at_root && e.name == b"..") || e.name == b"." {
        b"."
    } else {
        &e.name
    };
    let looked = CString::new(name).ok().and_then(|c| {
        let attrs = Vfs::stat_at(node.fd.as_fd(), &c).ok()?;
        let handle = cx
            .state
            .vfs
            .handle_at(&node.export, node.fd.as_fd(), &c, 0)
            .ok()?;
        Some((attrs, handle))
    });
    let fileid = looked.as_ref().map_or(e.ino, |(a, _)| a.st_ino);
    let (name_attributes, name_handle) = match looked {
        Some((a, h)) => (
            post_op(Some(&a)),
            Nfs3Option::Some(nfs_fh3 {
                data: Opaque::owned(h),
            }),
        ),
        None => (Nfs3Option::None, Nfs3Option::None),
    };
    entryplus3 {
        fileid,
        name: filename3(Opaque::owned(e.name)),
        cookie: e.next,
        name_attributes,
        name_handle,
    }
}

pub fn readdirplus(cx: &Cx<'_>, r: &mut Reader<'_>, out: &mut Vec<u8>) -> Result<()> {
    let fh = r.fh()?;
    let cookie = r.u64()?;
    let _verf = r.fixed::<8>()?;
    let dircount = r.u32()? as usize;
    let maxcount = (r.u32()? as usize).min(cx.max_reply);
    let res = (|| {
        let (node, st) = cx
            .resolve(&fh)
            .map_err(|s| (s, READDIRPLUS3resfail::default()))?;
        let fail = |s| {
            (
                s,
                READDIRPLUS3resfail {
                    dir_attributes: post_op(Some(&st)),
                },
            )
        };
        let dir = open_dir(cx, &node, &st).map_err(fail)?;
        let (mut used, mut dir_used) = (OVERHEAD, 0);
        let (entries, eof) = collect(&dir, cookie, |e| {
            used += entry_plus_size(&e.name);
            dir_used += entry_size(&e.name);
            used <= maxcount && (dir_used <= dircount.max(1024))
        })
        .map_err(fail)?;
        if entries.is_empty() && !eof {
            return Err(fail(nfsstat3::NFS3ERR_TOOSMALL));
        }
        let list = cx
            .as_user(&node, || {
                entries
                    .into_iter()
                    .map(|e| entry_plus(cx, &node, &st, e))
                    .collect::<Vec<_>>()
            })
            .map_err(fail)?;
        Ok(READDIRPLUS3resok {
            dir_attributes: post_op(Some(&st)),
            cookieverf: cookieverf3::default(),
            reply: dirlistplus3 {
                entries: List(list),
                eof,
            },
        })
    })();
    answer(out, res);
    Ok(())
}
