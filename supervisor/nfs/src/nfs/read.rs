//! Procedures that only look: GETATTR, LOOKUP, ACCESS, READLINK, READ,
//! FSSTAT, FSINFO, PATHCONF.

use std::os::fd::{AsFd, OwnedFd};

use nfs3_types::nfs3::{
    ACCESS3_DELETE, ACCESS3_EXECUTE, ACCESS3_EXTEND, ACCESS3_LOOKUP, ACCESS3_MODIFY, ACCESS3_READ,
    ACCESS3resfail, ACCESS3resok, FSF3_CANSETTIME, FSF3_HOMOGENEOUS, FSF3_LINK, FSF3_SYMLINK,
    FSINFO3resfail, FSINFO3resok, FSSTAT3resfail, FSSTAT3resok, GETATTR3resok, LOOKUP3resfail,
    LOOKUP3resok, PATHCONF3resfail, PATHCONF3resok, READ3resfail, READLINK3resfail, READLINK3resok,
    nfspath3, nfsstat3, nfstime3,
};
use nfs3_types::xdr_codec::{Opaque, Void};
use nix::fcntl::{OFlag, openat, readlinkat};
use nix::sys::stat::{FileStat, Mode};
use nix::sys::statvfs::fstatvfs;

use super::{Cx, answer, check_name, fh};
use crate::attr::{fattr, file_type, is_dir, is_reg, post_op};
use crate::error::errno_to_nfs;
use crate::sys::{access_fd, pread_append};
use crate::vfs::Node;
use crate::xdr::{Reader, Result, put, put_u32};

/// Largest READ and WRITE (FSINFO rtmax/wtmax).
pub const MAX_IO: u32 = 1 << 20;

pub fn getattr(cx: &Cx<'_>, r: &mut Reader<'_>, out: &mut Vec<u8>) -> Result<()> {
    let fh = r.fh()?;
    let res = cx
        .resolve(&fh)
        .map(|(_, st)| GETATTR3resok {
            obj_attributes: fattr(&st),
        })
        .map_err(|s| (s, Void));
    answer(out, res);
    Ok(())
}

/// Opens `name` in `dir` as the caller, without following symlinks;
/// `..` at the export root is the root itself.
fn lookup_fd(
    cx: &Cx<'_>,
    dir: &Node,
    dst: &FileStat,
    name: &[u8],
) -> std::result::Result<OwnedFd, nfsstat3> {
    let at_root = dir.export.is_root(dst);
    let name = match name {
        b"." => c".".to_owned(),
        b".." if at_root => c".".to_owned(),
        b".." => c"..".to_owned(),
        other => check_name(other)?,
    };
    cx.as_user(dir, || {
        openat(
            &dir.fd,
            name.as_c_str(),
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
    })?
    .map_err(errno_to_nfs)
}

pub fn lookup(cx: &Cx<'_>, r: &mut Reader<'_>, out: &mut Vec<u8>) -> Result<()> {
    let args = r.diropargs()?;
    let res = (|| {
        let (dir, dst) = cx
            .resolve(&args.dir)
            .map_err(|s| (s, LOOKUP3resfail::default()))?;
        let fail = |s| {
            (
                s,
                LOOKUP3resfail {
                    dir_attributes: post_op(Some(&dst)),
                },
            )
        };
        if !is_dir(&dst) {
            return Err(fail(nfsstat3::NFS3ERR_NOTDIR));
        }
        let fd = lookup_fd(cx, &dir, &dst, args.name.as_ref()).map_err(fail)?;
        let (node, st) = cx.state.vfs.node_for(&dir.export, fd).map_err(fail)?;
        Ok(LOOKUP3resok {
            object: fh(&node),
            obj_attributes: post_op(Some(&st)),
            dir_attributes: post_op(Some(&dst)),
        })
    })();
    answer(out, res);
    Ok(())
}

/// The ACCESS bits the kernel grants the caller on `node`.
fn granted(
    cx: &Cx<'_>,
    node: &Node,
    st: &FileStat,
    want: u32,
) -> std::result::Result<u32, nfsstat3> {
    let dir = is_dir(st);
    let ok = |mode| access_fd(node.fd.as_fd(), mode).is_ok();
    let mut bits = cx.as_user(node, || {
        let mut bits = 0;
        if want & ACCESS3_READ != 0 && ok(libc::R_OK) {
            bits |= ACCESS3_READ;
        }
        if dir {
            if want & ACCESS3_LOOKUP != 0 && ok(libc::X_OK) {
                bits |= ACCESS3_LOOKUP;
            }
            if want & (ACCESS3_MODIFY | ACCESS3_EXTEND | ACCESS3_DELETE) != 0
                && ok(libc::W_OK | libc::X_OK)
            {
                bits |= ACCESS3_MODIFY | ACCESS3_EXTEND | ACCESS3_DELETE;
            }
        } else {
            if want & (ACCESS3_MODIFY | ACCESS3_EXTEND) != 0 && ok(libc::W_OK) {
                bits |= ACCESS3_MODIFY | ACCESS3_EXTEND;
            }
            if want & ACCESS3_EXECUTE != 0 && ok(libc::X_OK) {
                bits |= ACCESS3_EXECUTE;
            }
        }
        bits
    })?;
    if cx.may_modify(node).is_err() {
        bits &= !(ACCESS3_MODIFY | ACCESS3_EXTEND | ACCESS3_DELETE);
    }
    Ok(bits & want)
}

pub fn access(cx: &Cx<'_>, r: &mut Reader<'_>, out: &mut Vec<u8>) -> Result<()> {
    let fh = r.fh()?;
    let want = r.u32()?;
    let res = (|| {
        let (node, st) = cx
            .resolve(&fh)
            .map_err(|s| (s, ACCESS3resfail::default()))?;
        let access = granted(cx, &node, &st, want).map_err(|s| {
            (
                s,
                ACCESS3resfail {
                    obj_attributes: post_op(Some(&st)),
                },
            )
        })?;
        Ok(ACCESS3resok {
            obj_attributes: post_op(Some(&st)),
            access,
        })
    })();
    answer(out, res);
    Ok(())
}

pub fn readlink(cx: &Cx<'_>, r: &mut Reader<'_>, out: &mut Vec<u8>) -> Result<()> {
    let fh = r.fh()?;
    let res = (|| {
        let (node, st) = cx
            .resolve(&fh)
            .map_err(|s| (s, READLINK3resfail::default()))?;
        let fail = |s| {
            (
                s,
                READLINK3resfail {
                    symlink_attributes: post_op(Some(&st)),
                },
            )
        };
        if file_type(st.st_mode) != nfs3_types::nfs3::ftype3::NF3LNK {
            return Err(fail(nfsstat3::NFS3ERR_INVAL));
        }
        let target = readlinkat(&node.fd, c"").map_err(|e| fail(errno_to_nfs(e)))?;
        Ok(READLINK3resok {
            symlink_attributes: post_op(Some(&st)),
            data: nfspath3(Opaque::owned(
                std::os::unix::ffi::OsStrExt::as_bytes(target.as_os_str()).to_vec(),
            )),
        })
    })();
    answer(out, res);
    Ok(())
}

/// READ permission as knfsd grants it: the owner may always read (the
/// client checked at open time), everyone else needs the kernel's yes.
fn may_read(cx: &Cx<'_>, node: &Node, st: &FileStat) -> std::result::Result<(), nfsstat3> {
    if cx.effective(node).uid == st.st_uid {
        return Ok(());
    }
    cx.as_user(node, || access_fd(node.fd.as_fd(), libc::R_OK))?
        .map_err(|_| nfsstat3::NFS3ERR_ACCES)
}

pub fn read(cx: &Cx<'_>, r: &mut Reader<'_>, out: &mut Vec<u8>) -> Result<()> {
    let fh = r.fh()?;
    let offset = r.u64()?;
    let count = r.u32()?.min(MAX_IO) as usize;
    let count = count.min(cx.max_reply.saturating_sub(256));
    let checked = (|| {
        let (node, st) = cx.resolve(&fh).map_err(|s| (s, None))?;
        let fail = |s| (s, Some(st));
        if is_dir(&st) {
            return Err(fail(nfsstat3::NFS3ERR_ISDIR));
        }
        if !is_reg(&st) {
            return Err(fail(nfsstat3::NFS3ERR_INVAL));
        }
        may_read(cx, &node, &st).map_err(fail)?;
        let file = node
            .reader()
            .map_err(|e| fail(crate::error::io_to_nfs(&e)))?;
        Ok((file, st))
    })();
    match checked {
        Ok((file, st)) => encode_read(out, &file, &st, offset, count),
        Err((s, st)) => answer::<Void, _>(
            out,
            Err((
                s,
                READ3resfail {
                    file_attributes: post_op(st.as_ref()),
                },
            )),
        ),
    }
    Ok(())
}

/// Writes a READ3resok, reading the data straight into the reply buffer.
fn encode_read(out: &mut Vec<u8>, file: &std::fs::File, st: &FileStat, offset: u64, count: usize) {
    out.reserve(count + 128);
    let mark = out.len();
    put_u32(out, 0);
    put(out, &post_op(Some(st)));
    let fields = out.len();
    out.extend_from_slice(&[0; 12]); // count, eof, opaque length
    let data = out.len();
    while out.len() - data < count {
        let done = out.len() - data;
        match pread_append(file.as_fd(), out, count - done, offset + done as u64) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                out.truncate(mark);
                let fail = READ3resfail {
                    file_attributes: post_op(Some(st)),
                };
                answer::<Void, _>(out, Err((crate::error::io_to_nfs(&e), fail)));
                return;
            }
        }
    }
    let n = out.len() - data;
    out.resize(data + n + (4 - n % 4) % 4, 0);
    let eof = offset.saturating_add(n as u64) >= st.st_size as u64;
    out[fields..fields + 4].copy_from_slice(&(n as u32).to_be_bytes());
    out[fields + 4..fields + 8].copy_from_slice(&u32::from(eof).to_be_bytes());
    out[fields + 8..fields + 12].copy_from_slice(&(n as u32).to_be_bytes());
}

pub fn fsstat(cx: &Cx<'_>, r: &mut Reader<'_>, out: &mut Vec<u8>) -> Result<()> {
    let fh = r.fh()?;
    let res = (|| {
        let (node, st) = cx
            .resolve(&fh)
            .map_err(|s| (s, FSSTAT3resfail::default()))?;
        let v = fstatvfs(&node.fd).map_err(|e| {
            (
                errno_to_nfs(e),
                FSSTAT3resfail {
                    obj_attributes: post_op(Some(&st)),
                },
            )
        })?;
        let unit = v.fragment_size() as u64;
        Ok(FSSTAT3resok {
            obj_attributes: post_op(Some(&st)),
            tbytes: v.blocks() as u64 * unit,
            fbytes: v.blocks_free() as u64 * unit,
            abytes: v.blocks_available() as u64 * unit,
            tfiles: v.files() as u64,
            ffiles: v.files_free() as u64,
            afiles: v.files_available() as u64,
            invarsec: 0,
        })
    })();
    answer(out, res);
    Ok(())
}

pub fn fsinfo(cx: &Cx<'_>, r: &mut Reader<'_>, out: &mut Vec<u8>) -> Result<()> {
    let fh = r.fh()?;
    let res = cx
        .resolve(&fh)
        .map(|(_, st)| FSINFO3resok {
            obj_attributes: post_op(Some(&st)),
            rtmax: MAX_IO,
            rtpref: MAX_IO,
            rtmult: 4096,
            wtmax: MAX_IO,
            wtpref: MAX_IO,
            wtmult: 4096,
            dtpref: 64 * 1024,
            maxfilesize: i64::MAX as u64,
            time_delta: nfstime3 {
                seconds: 0,
                nseconds: 1,
            },
            properties: FSF3_LINK | FSF3_SYMLINK | FSF3_HOMOGENEOUS | FSF3_CANSETTIME,
        })
        .map_err(|s| (s, FSINFO3resfail::default()));
    answer(out, res);
    Ok(())
}

pub fn pathconf(cx: &Cx<'_>, r: &mut Reader<'_>, out: &mut Vec<u8>) -> Result<()> {
    let fh = r.fh()?;
    let res = cx
        .resolve(&fh)
        .map(|(_, st)| PATHCONF3resok {
            obj_attributes: post_op(Some(&st)),
            linkmax: 65000,
            name_max: 255,
            no_trunc: true,
            chown_restricted: true,
            case_insensitive: false,
            case_preserving: true,
        })
        .map_err(|s| (s, PATHCONF3resfail::default()));
    answer(out, res);
    Ok(())
}
