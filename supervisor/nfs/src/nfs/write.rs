//! Procedures that change the file system: SETATTR, WRITE, CREATE,
//! MKDIR, SYMLINK, MKNOD, REMOVE, RMDIR, RENAME, LINK, COMMIT.
//!
//! Every change runs with the caller's credentials, so the kernel decides
//! permissions and new objects belong to the caller; read-only exports
//! answer NFS3ERR_ROFS before touching anything.

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use nfs3_types::nfs3::{
    COMMIT3resfail, COMMIT3resok, CREATE3resfail, CREATE3resok, LINK3resfail, LINK3resok,
    MKDIR3resfail, MKDIR3resok, MKNOD3resfail, MKNOD3resok, Nfs3Option, REMOVE3resfail,
    REMOVE3resok, RENAME3resfail, RENAME3resok, RMDIR3resfail, RMDIR3resok, SETATTR3resfail,
    SETATTR3resok, SYMLINK3resfail, SYMLINK3resok, WRITE3resfail, WRITE3resok, createhow3,
    mknoddata3, nfs_fh3, nfsstat3, sattr3, set_atime, set_mtime, stable_how, wcc_data, writeverf3,
};
use nix::fcntl::{AtFlags, OFlag, openat, renameat};
use nix::sys::stat::{FileStat, Mode, SFlag, mkdirat, mknodat};
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchownat, symlinkat, unlinkat};

use super::{Cx, answer, fh, new_name};
use crate::attr::{ctime, is_dir, is_reg, makedev, post_op, wcc};
use crate::error::{errno_to_nfs, io_to_nfs};
use crate::sys::{SetTime, access_fd, chmod_fd, link_fd, truncate_fd, utimes_fd};
use crate::vfs::Node;
use crate::xdr::{Reader, Result};

type Fail = (nfsstat3, wcc_data);

/// A directory about to change, with its attributes before the change.
struct DirOp {
    dir: Arc<Node>,
    before: FileStat,
    name: CString,
}

impl DirOp {
    /// Resolves the directory, checks the export allows changes and the name.
    fn begin(
        cx: &Cx<'_>,
        dir: &nfs_fh3,
        name: &[u8],
        new: bool,
    ) -> std::result::Result<Self, Fail> {
        let (node, before) = cx.resolve(dir).map_err(|s| (s, wcc_data::default()))?;
        let fail = |s| (s, wcc(Some(&before), Some(&before)));
        cx.may_modify(&node).map_err(fail)?;
        if !is_dir(&before) {
            return Err(fail(nfsstat3::NFS3ERR_NOTDIR));
        }
        let name = if new {
            new_name(name)
        } else {
            super::check_name(name)
        }
        .map_err(fail)?;
        Ok(Self {
            dir: node,
            before,
            name,
        })
    }

    fn wcc(&self) -> wcc_data {
        let after = self.dir.stat().ok();
        wcc(Some(&self.before), after.as_ref())
    }

    fn fail(&self, s: nfsstat3) -> Fail {
        (s, self.wcc())
    }

    /// Opens the entry just created (as the caller) and issues its handle.
    fn created(&self, cx: &Cx<'_>) -> std::result::Result<(Arc<Node>, FileStat), nfsstat3> {
        let fd = cx
            .as_user(&self.dir, || open_path(&self.dir.fd, &self.name))?
            .map_err(errno_to_nfs)?;
        cx.state.vfs.node_for(&self.dir.export, fd)
    }
}

fn open_path(dir: &OwnedFd, name: &CStr) -> nix::Result<OwnedFd> {
    openat(
        dir,
        name,
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

fn set_time_a(t: set_atime) -> SetTime {
    match t {
        set_atime::DONT_CHANGE => SetTime::Omit,
        set_atime::SET_TO_SERVER_TIME => SetTime::Now,
        set_atime::SET_TO_CLIENT_TIME(t) => SetTime::At(t.seconds.into(), t.nseconds.into()),
    }
}

fn set_time_m(t: set_mtime) -> SetTime {
    match t {
        set_mtime::DONT_CHANGE => SetTime::Omit,
        set_mtime::SET_TO_SERVER_TIME => SetTime::Now,
        set_mtime::SET_TO_CLIENT_TIME(t) => SetTime::At(t.seconds.into(), t.nseconds.into()),
    }
}

fn opt<T: Copy + nfs3_types::xdr_codec::Pack + nfs3_types::xdr_codec::Unpack>(
    o: &Nfs3Option<T>,
) -> Option<T> {
    match o {
        Nfs3Option::Some(v) => Some(*v),
        Nfs3Option::None => None,
    }
}

/// Applies `s` to the object behind `fd` with the current (caller's)
/// credentials: owner and group first and size next (both may clear
/// set-id bits), then mode and times.
fn apply_sattr(
    fd: &OwnedFd,
    st: &FileStat,
    s: &sattr3,
    with_mode: bool,
) -> std::result::Result<(), nfsstat3> {
    let link = st.st_mode & libc::S_IFMT == libc::S_IFLNK;
    let (uid, gid) = (opt(&s.uid), opt(&s.gid));
    if uid.is_some() || gid.is_some() {
        fchownat(
            fd,
            c"",
            uid.map(Uid::from_raw),
            gid.map(Gid::from_raw),
            AtFlags::AT_EMPTY_PATH,
        )
        .map_err(errno_to_nfs)?;
    }
    if let Some(size) = opt(&s.size) {
        if is_dir(st) {
            return Err(nfsstat3::NFS3ERR_ISDIR);
        }
        if !is_reg(st) {
            return Err(nfsstat3::NFS3ERR_INVAL);
        }
        truncate_fd(fd.as_fd(), size).map_err(|e| io_to_nfs(&e))?;
    }
    // Mode after size: a truncate by a non-root caller clears set-id bits.
    if let (Some(mode), true, false) = (opt(&s.mode), with_mode, link) {
        chmod_fd(fd.as_fd(), mode & 0o7777).map_err(|e| io_to_nfs(&e))?;
    }
    let (a, m) = (set_time_a(s.atime), set_time_m(s.mtime));
    if !matches!((a, m), (SetTime::Omit, SetTime::Omit)) && !link {
        utimes_fd(fd.as_fd(), a, m).map_err(|e| io_to_nfs(&e))?;
    }
    Ok(())
}

pub fn setattr(cx: &Cx<'_>, r: &mut Reader<'_>, out: &mut Vec<u8>) -> Result<()> {
    let fh = r.fh()?;
    let attrs = r.sattr()?;
    let guard = r.guard()?;
    let res = (|| {
        let (node, before) = cx
            .resolve(&fh)
            .map_err(|s| (s, SETATTR3resfail::default()))?;
        let fail = |s, node: &Node| {
            let after = node.stat().ok();
            (
                s,
                SETATTR3resfail {
                    obj_wcc: wcc(Some(&before), after.as_ref()),
                },
            )
        };
        if guard.is_some_and(|t| t != ctime(&before)) {
            return Err(fail(nfsstat3::NFS3ERR_NOT_SYNC, &node));
        }
        cx.may_modify(&node).map_err(|s| fail(s, &node))?;
        cx.as_user(&node, || apply_sattr(&node.fd, &before, &attrs, true))
            .and_then(|r| r)
            .map_err(|s| fail(s, &node))?;
        let after = node.stat().ok();
        Ok(SETATTR3resok {
            obj_wcc: wcc(Some(&before), after.as_ref()),
        })
    })();
    answer(out, res);
    Ok(())
}

/// WRITE permission as knfsd grants it: owner override, else the kernel.
fn may_write(cx: &Cx<'_>, node: &Node, st: &FileStat) -> std::result::Result<(), nfsstat3> {
    if cx.effective(node).uid == st.st_uid {
        return Ok(());
    }
    cx.as_user(node, || access_fd(node.fd.as_fd(), libc::W_OK))?
        .map_err(|_| nfsstat3::NFS3ERR_ACCES)
}

pub fn write(cx: &Cx<'_>, r: &mut Reader<'_>, out: &mut Vec<u8>) -> Result<()> {
    let fh = r.fh()?;
    let offset = r.u64()?;
    let count = r.u32()? as usize;
    let stable = r.stable()?;
    let data = r.opaque(super::read::MAX_IO as usize)?;
    let data = &data[..count.min(data.len())];
    let res = (|| {
        let (node, before) = cx.resolve(&fh).map_err(|s| (s, WRITE3resfail::default()))?;
        let fail = |s| {
            let after = node.stat().ok();
            (
                s,
                WRITE3resfail {
                    file_wcc: wcc(Some(&before), after.as_ref()),
                },
            )
        };
        cx.may_modify(&node).map_err(fail)?;
        if is_dir(&before) {
            return Err(fail(nfsstat3::NFS3ERR_ISDIR));
        }
        if !is_reg(&before) {
            return Err(fail(nfsstat3::NFS3ERR_INVAL));
        }
        may_write(cx, &node, &before).map_err(fail)?;
        let file = node.writer().map_err(|e| fail(io_to_nfs(&e)))?;
        // Written as the caller, so the kernel clears set-id bits as usual.
        cx.as_user(&node, || file.write_all_at(data, offset))
            .map_err(fail)?
            .map_err(|e| fail(io_to_nfs(&e)))?;
        let committed = match stable {
            stable_how::UNSTABLE => stable_how::UNSTABLE,
            _ => {
                file.sync_data().map_err(|e| fail(io_to_nfs(&e)))?;
                stable_how::FILE_SYNC
            }
        };
        let after = node.stat().ok();
        Ok(WRITE3resok {
            file_wcc: wcc(Some(&before), after.as_ref()),
            count: data.len() as u32,
            committed,
            verf: writeverf3(cx.state.verifier),
        })
    })();
    answer(out, res);
    Ok(())
}

pub fn commit(cx: &Cx<'_>, r: &mut Reader<'_>, out: &mut Vec<u8>) -> Result<()> {
    let fh = r.fh()?;
    let _offset = r.u64()?;
    let _count = r.u32()?;
    let res = (|| {
        let (node, before) = cx.resolve(&fh).map_err(|s| {
            (
                s,
                COMMIT3resfail {
                    file_wcc: wcc_data::default(),
                },
            )
        })?;
        let fail = |s| {
            (
                s,
                COMMIT3resfail {
                    file_wcc: wcc(Some(&before), Some(&before)),
                },
            )
        };
        if !is_reg(&before) {
            return Err(fail(nfsstat3::NFS3ERR_INVAL));
        }
        let file = if node.export.writable() {
            node.writer()
        } else {
            node.reader()
        };
        file.and_then(|f| f.sync_all())
            .map_err(|e| fail(io_to_nfs(&e)))?;
        let after = node.stat().ok();
        Ok(COMMIT3resok {
            file_wcc: wcc(Some(&before), after.as_ref()),
            verf: writeverf3(cx.state.verifier),
        })
    })();
    answer(out, res);
    Ok(())
}

/// How CREATE treats an existing name.
enum How {
    Unchecked(sattr3),
    Guarded(sattr3),
    Exclusive([u8; 8]),
}

/// Exclusive create stores the client's verifier in atime/mtime seconds
/// (as knfsd does) so a retransmitted CREATE recognises its own file.
fn verifier_times(v: [u8; 8]) -> (i64, i64) {
    let a = u32::from_be_bytes([v[0], v[1], v[2], v[3]]);
    let m = u32::from_be_bytes([v[4], v[5], v[6], v[7]]);
    (i64::from(a), i64::from(m))
}

fn create_file(
    cx: &Cx<'_>,
    op: &DirOp,
    how: &How,
) -> std::result::Result<(Arc<Node>, FileStat), nfsstat3> {
    let mode = match how {
        How::Unchecked(s) | How::Guarded(s) => opt(&s.mode).unwrap_or(0o644) & 0o7777,
        How::Exclusive(_) => 0o600,
    };
    let made = cx.as_user(&op.dir, || {
        mknodat(
            &op.dir.fd,
            op.name.as_c_str(),
            SFlag::S_IFREG,
            Mode::from_bits_truncate(mode),
            0,
        )
    })?;
    let existed = match made {
        Ok(()) => false,
        Err(nix::Error::EEXIST) => true,
        Err(e) => return Err(errno_to_nfs(e)),
    };
    let (node, st) = op.created(cx)?;
    let apply = |s: &sattr3, with_mode| {
        cx.as_user(&op.dir, || apply_sattr(&node.fd, &st, s, with_mode))
            .and_then(|r| r)
    };
    match (how, existed) {
        (How::Guarded(_), true) => return Err(nfsstat3::NFS3ERR_EXIST),
        (_, true) if !is_reg(&st) => return Err(nfsstat3::NFS3ERR_EXIST),
        (How::Exclusive(v), true) => {
            let (a, m) = verifier_times(*v);
            if st.st_atime != a || st.st_mtime != m {
                return Err(nfsstat3::NFS3ERR_EXIST);
            }
        }
        (How::Exclusive(v), false) => {
            let (a, m) = verifier_times(*v);
            cx.as_user(&op.dir, || {
                utimes_fd(node.fd.as_fd(), SetTime::At(a, 0), SetTime::At(m, 0))
            })?
            .map_err(|e| io_to_nfs(&e))?;
        }
        (How::Unchecked(s), true) => {
            let only_size = sattr3 {
                size: s.size,
                ..Default::default()
            };
            apply(&only_size, false)?;
        }
        (How::Unchecked(s) | How::Guarded(s), false) => {
            apply(s, st.st_mode & 0o7777 != mode)?;
        }
    }
    let st = node.stat().map_err(|e| io_to_nfs(&e))?;
    Ok((node, st))
}

pub fn create(cx: &Cx<'_>, r: &mut Reader<'_>, out: &mut Vec<u8>) -> Result<()> {
    let args = r.diropargs()?;
    let how = match r.createhow()? {
        createhow3::UNCHECKED(s) => How::Unchecked(s),
        createhow3::GUARDED(s) => How::Guarded(s),
        createhow3::EXCLUSIVE(v) => How::Exclusive(v.0),
    };
    let res = (|| {
        let op = DirOp::begin(cx, &args.dir, args.name.as_ref(), true)
            .map_err(|(s, w)| (s, CREATE3resfail { dir_wcc: w }))?;
        let (node, st) =
            create_file(cx, &op, &how).map_err(|s| (s, CREATE3resfail { dir_wcc: op.wcc() }))?;
        Ok(CREATE3resok {
            obj: Nfs3Option::Some(fh(&node)),
            obj_attributes: post_op(Some(&st)),
            dir_wcc: op.wcc(),
        })
    })();
    answer(out, res);
    Ok(())
}

/// Makes a new directory entry with `make` (as the caller), then opens it,
/// fixes its mode if a umask got in the way, applies owner and times, and
/// returns its handle and attributes.
fn make_entry(
    cx: &Cx<'_>,
    op: &DirOp,
    attrs: &sattr3,
    mode: Option<u32>,
    make: impl FnOnce() -> nix::Result<()>,
) -> std::result::Result<(Arc<Node>, FileStat), nfsstat3> {
    cx.as_user(&op.dir, make)?.map_err(errno_to_nfs)?;
    let (node, st) = op.created(cx)?;
    let rest = sattr3 {
        mode: match mode {
            Some(m) if st.st_mode & 0o7777 != m => Nfs3Option::Some(m),
            _ => Nfs3Option::None,
        },
        size: Nfs3Option::None,
        ..attrs.clone()
    };
    cx.as_user(&op.dir, || apply_sattr(&node.fd, &st, &rest, true))
        .and_then(|r| r)?;
    let st = node.stat().map_err(|e| io_to_nfs(&e))?;
    Ok((node, st))
}

pub fn mkdir(cx: &Cx<'_>, r: &mut Reader<'_>, out: &mut Vec<u8>) -> Result<()> {
    let args = r.diropargs()?;
    let attrs = r.sattr()?;
    let res = (|| {
        let op = DirOp::begin(cx, &args.dir, args.name.as_ref(), true)
            .map_err(|(s, w)| (s, MKDIR3resfail { dir_wcc: w }))?;
        let mode = opt(&attrs.mode).unwrap_or(0o755) & 0o7777;
        let (node, st) = make_entry(cx, &op, &attrs, Some(mode), || {
            mkdirat(
                &op.dir.fd,
                op.name.as_c_str(),
                Mode::from_bits_truncate(mode),
            )
        })
        .map_err(|s| (s, MKDIR3resfail { dir_wcc: op.wcc() }))?;
        Ok(MKDIR3resok {
            obj: Nfs3Option::Some(fh(&node)),
            obj_attributes: post_op(Some(&st)),
            dir_wcc: op.wcc(),
        })
    })();
    answer(out, res);
    Ok(())
}

pub fn symlink(cx: &Cx<'_>, r: &mut Reader<'_>, out: &mut Vec<u8>) -> Result<()> {
    let args = r.diropargs()?;
    let attrs = r.sattr()?;
    let target = r.path()?;
    let res = (|| {
        let op = DirOp::begin(cx, &args.dir, args.name.as_ref(), true)
            .map_err(|(s, w)| (s, SYMLINK3resfail { dir_wcc: w }))?;
        let fail = |s| (s, SYMLINK3resfail { dir_wcc: op.wcc() });
        let target = CString::new(target.0.to_vec()).map_err(|_| fail(nfsstat3::NFS3ERR_INVAL))?;
        let plain = sattr3 {
            uid: attrs.uid,
            gid: attrs.gid,
            ..Default::default()
        };
        let (node, st) = make_entry(cx, &op, &plain, None, || {
            symlinkat(target.as_c_str(), &op.dir.fd, op.name.as_c_str())
        })
        .map_err(fail)?;
        Ok(SYMLINK3resok {
            obj: Nfs3Option::Some(fh(&node)),
            obj_attributes: post_op(Some(&st)),
            dir_wcc: op.wcc(),
        })
    })();
    answer(out, res);
    Ok(())
}

pub fn mknod(cx: &Cx<'_>, r: &mut Reader<'_>, out: &mut Vec<u8>) -> Result<()> {
    let args = r.diropargs()?;
    let what = r.mknoddata()?;
    let res = (|| {
        let op = DirOp::begin(cx, &args.dir, args.name.as_ref(), true)
            .map_err(|(s, w)| (s, MKNOD3resfail { dir_wcc: w }))?;
        let fail = |s| (s, MKNOD3resfail { dir_wcc: op.wcc() });
        let (kind, attrs, dev) = match what {
            mknoddata3::NF3CHR(d) => (
                SFlag::S_IFCHR,
                d.dev_attributes,
                makedev(d.spec.specdata1, d.spec.specdata2),
            ),
            mknoddata3::NF3BLK(d) => (
                SFlag::S_IFBLK,
                d.dev_attributes,
                makedev(d.spec.specdata1, d.spec.specdata2),
            ),
            mknoddata3::NF3SOCK(s) => (SFlag::S_IFSOCK, s, 0),
            mknoddata3::NF3FIFO(s) => (SFlag::S_IFIFO, s, 0),
            mknoddata3::default => return Err(fail(nfsstat3::NFS3ERR_BADTYPE)),
        };
        let mode = opt(&attrs.mode).unwrap_or(0o644) & 0o7777;
        let (node, st) = make_entry(cx, &op, &attrs, Some(mode), || {
            mknodat(
                &op.dir.fd,
                op.name.as_c_str(),
                kind,
                Mode::from_bits_truncate(mode),
                dev,
            )
        })
        .map_err(fail)?;
        Ok(MKNOD3resok {
            obj: Nfs3Option::Some(fh(&node)),
            obj_attributes: post_op(Some(&st)),
            dir_wcc: op.wcc(),
        })
    })();
    answer(out, res);
    Ok(())
}

fn unlink(
    cx: &Cx<'_>,
    r: &mut Reader<'_>,
    dir_flag: UnlinkatFlags,
) -> Result<std::result::Result<wcc_data, Fail>> {
    let args = r.diropargs()?;
    Ok((|| {
        let name = args.name.as_ref();
        let op = DirOp::begin(cx, &args.dir, name, false)?;
        match (name, dir_flag) {
            (b".", UnlinkatFlags::RemoveDir) => return Err(op.fail(nfsstat3::NFS3ERR_INVAL)),
            (b"..", UnlinkatFlags::RemoveDir) => return Err(op.fail(nfsstat3::NFS3ERR_NOTEMPTY)),
            (b"." | b"..", _) => return Err(op.fail(nfsstat3::NFS3ERR_ISDIR)),
            _ => {}
        }
        cx.as_user(&op.dir, || {
            unlinkat(&op.dir.fd, op.name.as_c_str(), dir_flag)
        })
        .map_err(|s| op.fail(s))?
        .map_err(|e| op.fail(errno_to_nfs(e)))?;
        Ok(op.wcc())
    })())
}

pub fn remove(cx: &Cx<'_>, r: &mut Reader<'_>, out: &mut Vec<u8>) -> Result<()> {
    let res = unlink(cx, r, UnlinkatFlags::NoRemoveDir)?
        .map(|w| REMOVE3resok { dir_wcc: w })
        .map_err(|(s, w)| (s, REMOVE3resfail { dir_wcc: w }));
    answer(out, res);
    Ok(())
}

pub fn rmdir(cx: &Cx<'_>, r: &mut Reader<'_>, out: &mut Vec<u8>) -> Result<()> {
    let res = unlink(cx, r, UnlinkatFlags::RemoveDir)?
        .map(|w| RMDIR3resok { dir_wcc: w })
        .map_err(|(s, w)| (s, RMDIR3resfail { dir_wcc: w }));
    answer(out, res);
    Ok(())
}

pub fn rename(cx: &Cx<'_>, r: &mut Reader<'_>, out: &mut Vec<u8>) -> Result<()> {
    let from = r.diropargs()?;
    let to = r.diropargs()?;
    let res = (|| {
        let src = DirOp::begin(cx, &from.dir, from.name.as_ref(), true).map_err(|(s, w)| {
            (
                s,
                RENAME3resfail {
                    fromdir_wcc: w,
                    todir_wcc: wcc_data::default(),
                },
            )
        })?;
        let dst = DirOp::begin(cx, &to.dir, to.name.as_ref(), true).map_err(|(s, w)| {
            (
                s,
                RENAME3resfail {
                    fromdir_wcc: src.wcc(),
                    todir_wcc: w,
                },
            )
        })?;
        let fail = |s| {
            (
                s,
                RENAME3resfail {
                    fromdir_wcc: src.wcc(),
                    todir_wcc: dst.wcc(),
                },
            )
        };
        if src.dir.export.id != dst.dir.export.id {
            return Err(fail(nfsstat3::NFS3ERR_XDEV));
        }
        cx.as_user(&src.dir, || {
            renameat(
                &src.dir.fd,
                src.name.as_c_str(),
                &dst.dir.fd,
                dst.name.as_c_str(),
            )
        })
        .map_err(fail)?
        .map_err(|e| fail(errno_to_nfs(e)))?;
        Ok(RENAME3resok {
            fromdir_wcc: src.wcc(),
            todir_wcc: dst.wcc(),
        })
    })();
    answer(out, res);
    Ok(())
}

pub fn link(cx: &Cx<'_>, r: &mut Reader<'_>, out: &mut Vec<u8>) -> Result<()> {
    let file = r.fh()?;
    let to = r.diropargs()?;
    let res = (|| {
        let (node, st) = cx.resolve(&file).map_err(|s| {
            (
                s,
                LINK3resfail {
                    file_attributes: Nfs3Option::None,
                    linkdir_wcc: wcc_data::default(),
                },
            )
        })?;
        let op = DirOp::begin(cx, &to.dir, to.name.as_ref(), true).map_err(|(s, w)| {
            (
                s,
                LINK3resfail {
                    file_attributes: post_op(Some(&st)),
                    linkdir_wcc: w,
                },
            )
        })?;
        let fail = |s| {
            (
                s,
                LINK3resfail {
                    file_attributes: post_op(Some(&st)),
                    linkdir_wcc: op.wcc(),
                },
            )
        };
        if node.export.id != op.dir.export.id {
            return Err(fail(nfsstat3::NFS3ERR_XDEV));
        }
        if is_dir(&st) {
            return Err(fail(nfsstat3::NFS3ERR_ISDIR));
        }
        cx.as_user(&op.dir, || {
            link_fd(node.fd.as_fd(), op.dir.fd.as_fd(), &op.name)
        })
        .map_err(fail)?
        .map_err(|e| fail(io_to_nfs(&e)))?;
        let after = node.stat().ok();
        Ok(LINK3resok {
            file_attributes: post_op(after.as_ref()),
            linkdir_wcc: op.wcc(),
        })
    })();
    answer(out, res);
    Ok(())
}
