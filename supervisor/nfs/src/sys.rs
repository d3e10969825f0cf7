//! Thin, safe wrappers over the Linux system calls the server needs and
//! `nix` does not offer: kernel file handles (`name_to_handle_at`,
//! `open_by_handle_at`), per-thread credentials (`setfsuid`, `setfsgid`,
//! the raw per-thread `setgroups`), `faccessat2` with `AT_EACCESS`, raw
//! `getdents64` with directory offsets, and `unshare(CLONE_FS)`.
//!
//! Every `unsafe` block of the crate lives here; each wrapper checks its
//! buffers and turns `-1` into an [`io::Error`].

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Largest kernel file handle we accept (bytes of `f_handle`).
pub const MAX_KERNEL_HANDLE: usize = 32;

/// A kernel file handle as returned by `name_to_handle_at`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KernelHandle {
    pub handle_type: i32,
    pub bytes: Vec<u8>,
}

#[repr(C)]
struct HandleBuf {
    handle_bytes: u32,
    handle_type: i32,
    f_handle: [u8; 128],
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn check_long(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// `name_to_handle_at(dirfd, name, flags)`; returns the handle and mount id.
pub fn name_to_handle_at(
    dirfd: BorrowedFd<'_>,
    name: &CStr,
    flags: libc::c_int,
) -> io::Result<(KernelHandle, i32)> {
    let mut buf = HandleBuf {
        handle_bytes: 128,
        handle_type: 0,
        f_handle: [0; 128],
    };
    let mut mount_id: libc::c_int = 0;
    // SAFETY: buf is a valid file_handle with room for 128 bytes, name is NUL-terminated.
    check(unsafe {
        libc::name_to_handle_at(
            dirfd.as_raw_fd(),
            name.as_ptr(),
            (&mut buf as *mut HandleBuf).cast(),
            &mut mount_id,
            flags,
        )
    })?;
    let len = (buf.handle_bytes as usize).min(128);
    if len > MAX_KERNEL_HANDLE {
        return Err(io::Error::from_raw_os_error(libc::EOVERFLOW));
    }
    Ok((
        KernelHandle {
            handle_type: buf.handle_type,
            bytes: buf.f_handle[..len].to_vec(),
        },
        mount_id,
    ))
}

/// `open_by_handle_at(mount_fd, handle, flags)` (needs CAP_DAC_READ_SEARCH).
pub fn open_by_handle_at(
    mount_fd: BorrowedFd<'_>,
    handle: &KernelHandle,
    flags: libc::c_int,
) -> io::Result<OwnedFd> {
    if handle.bytes.len() > MAX_KERNEL_HANDLE {
        return Err(io::Error::from_raw_os_error(libc::ESTALE));
    }
    let mut buf = HandleBuf {
        handle_bytes: handle.bytes.len() as u32,
        handle_type: handle.handle_type,
        f_handle: [0; 128],
    };
    buf.f_handle[..handle.bytes.len()].copy_from_slice(&handle.bytes);
    // SAFETY: buf is a valid, initialised file_handle.
    let fd = check(unsafe {
        libc::open_by_handle_at(
            mount_fd.as_raw_fd(),
            (&mut buf as *mut HandleBuf).cast(),
            flags | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: the kernel just gave us this descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sets this thread's file-system uid; returns the previous one.
pub fn setfsuid(uid: u32) -> u32 {
    // SAFETY: plain syscall without pointers.
    unsafe { libc::setfsuid(uid) as u32 }
}

/// Sets this thread's file-system gid; returns the previous one.
pub fn setfsgid(gid: u32) -> u32 {
    // SAFETY: plain syscall without pointers.
    unsafe { libc::setfsgid(gid) as u32 }
}

/// Sets the supplementary groups of *this thread only* (the raw system
/// call; glibc's wrapper would change every thread of the process).
pub fn setgroups_thread(groups: &[u32]) -> io::Result<()> {
    // SAFETY: pointer and length describe a valid slice of gid_t.
    check_long(unsafe {
        libc::syscall(
            libc::SYS_setgroups,
            groups.len() as libc::size_t,
            groups.as_ptr(),
        )
    })
    .map(|_| ())
}

/// `faccessat2(fd, "", mode, AT_EACCESS | AT_EMPTY_PATH)`: may the current
/// (file-system) credentials access the object behind `fd`?
pub fn access_fd(fd: BorrowedFd<'_>, mode: libc::c_int) -> io::Result<()> {
    // SAFETY: empty NUL-terminated path, valid fd.
    check_long(unsafe {
        libc::syscall(
            libc::SYS_faccessat2,
            fd.as_raw_fd(),
            c"".as_ptr(),
            mode,
            libc::AT_EACCESS | libc::AT_EMPTY_PATH,
        )
    })
    .map(|_| ())
}

/// Gives this thread its own cwd/root/umask and sets its umask to 0, so
/// modes requested by clients are applied exactly.
pub fn private_fs_with_zero_umask() -> io::Result<()> {
    // SAFETY: plain syscalls.
    check(unsafe { libc::unshare(libc::CLONE_FS) })?;
    // SAFETY: plain syscall.
    unsafe { libc::umask(0) };
    Ok(())
}

/// One entry of a directory read with `getdents64`.
#[derive(Debug, Clone)]
pub struct DirEntry {
    pub ino: u64,
    /// Offset of the *next* entry (the NFS cookie of this one).
    pub next: u64,
    pub name: Vec<u8>,
}

/// Reads entries from `fd` starting at offset `cookie` into `out`, at most
/// `buf_len` bytes of raw records. Returns false at end of directory.
pub fn read_dir_from(
    fd: RawFd,
    cookie: u64,
    buf_len: usize,
    out: &mut Vec<DirEntry>,
) -> io::Result<bool> {
    // SAFETY: plain syscall.
    if unsafe { libc::lseek(fd, cookie as libc::off_t, libc::SEEK_SET) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = vec![0u8; buf_len.clamp(4096, 1 << 20)];
    // SAFETY: buf is writable for buf.len() bytes.
    let n = check_long(unsafe {
        libc::syscall(libc::SYS_getdents64, fd, buf.as_mut_ptr(), buf.len())
    })? as usize;
    if n == 0 {
        return Ok(false);
    }
    parse_dirents(&buf[..n.min(buf.len())], out);
    Ok(true)
}

/// Parses `struct linux_dirent64` records.
fn parse_dirents(mut buf: &[u8], out: &mut Vec<DirEntry>) {
    while buf.len() >= 19 {
        let ino = u64::from_ne_bytes(buf[0..8].try_into().unwrap_or_default());
        let next = u64::from_ne_bytes(buf[8..16].try_into().unwrap_or_default());
        let reclen = u16::from_ne_bytes([buf[16], buf[17]]) as usize;
        if reclen < 19 || reclen > buf.len() {
            break;
        }
        let raw = &buf[19..reclen];
        let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
        out.push(DirEntry {
            ino,
            next,
            name: raw[..end].to_vec(),
        });
        buf = &buf[reclen..];
    }
}

/// Path of a descriptor in `/proc/self/fd`, for the "reopen an O_PATH fd"
/// idiom (chmod, truncate, utimes, link of the object itself).
pub fn proc_fd_path(fd: BorrowedFd<'_>) -> std::ffi::CString {
    std::ffi::CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .unwrap_or_else(|_| c"/".to_owned())
}

/// `chmod` of the object behind an `O_PATH` descriptor.
pub fn chmod_fd(fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
    let path = proc_fd_path(fd);
    // SAFETY: NUL-terminated path.
    check(unsafe { libc::chmod(path.as_ptr(), mode as libc::mode_t) }).map(|_| ())
}

/// `truncate` of the object behind an `O_PATH` descriptor (checks write
/// permission with the current credentials).
pub fn truncate_fd(fd: BorrowedFd<'_>, size: u64) -> io::Result<()> {
    let path = proc_fd_path(fd);
    let size =
        libc::off_t::try_from(size).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    // SAFETY: NUL-terminated path.
    check(unsafe { libc::truncate(path.as_ptr(), size) }).map(|_| ())
}

/// A time to set: unchanged, now, or an explicit value.
#[derive(Debug, Clone, Copy)]
pub enum SetTime {
    Omit,
    Now,
    At(i64, i64),
}

impl SetTime {
    fn timespec(self) -> libc::timespec {
        match self {
            SetTime::Omit => libc::timespec {
                tv_sec: 0,
                tv_nsec: libc::UTIME_OMIT,
            },
            SetTime::Now => libc::timespec {
                tv_sec: 0,
                tv_nsec: libc::UTIME_NOW,
            },
            SetTime::At(s, n) => libc::timespec {
                tv_sec: s as libc::time_t,
                tv_nsec: n as _,
            },
        }
    }
}

/// `utimensat` of the object behind an `O_PATH` descriptor.
pub fn utimes_fd(fd: BorrowedFd<'_>, atime: SetTime, mtime: SetTime) -> io::Result<()> {
    let path = proc_fd_path(fd);
    let times = [atime.timespec(), mtime.timespec()];
    // SAFETY: NUL-terminated path and two valid timespecs.
    check(unsafe { libc::utimensat(libc::AT_FDCWD, path.as_ptr(), times.as_ptr(), 0) }).map(|_| ())
}

/// Hard-links the object behind an `O_PATH` descriptor as `name` in `dir`.
pub fn link_fd(fd: BorrowedFd<'_>, dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    let path = proc_fd_path(fd);
    // SAFETY: NUL-terminated paths, valid descriptors.
    check(unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            path.as_ptr(),
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    })
    .map(|_| ())
}

/// Raises the open-file soft limit to the hard limit; returns the new limit.
pub fn raise_nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: lim is a valid rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 1024;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: raised is a valid rlimit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return raised.rlim_cur;
        }
    }
    lim.rlim_cur
}

/// Appends up to `count` bytes read at `offset` to `buf` without
/// zero-filling first (one `pread`, retried on EINTR). Returns bytes read.
pub fn pread_append(
    fd: BorrowedFd<'_>,
    buf: &mut Vec<u8>,
    count: usize,
    offset: u64,
) -> io::Result<usize> {
    buf.reserve(count);
    let offset =
        libc::off_t::try_from(offset).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    loop {
        let spare = buf.spare_capacity_mut();
        let want = count.min(spare.len());
        // SAFETY: the kernel writes at most `want` bytes into spare capacity we own.
        let n = unsafe { libc::pread(fd.as_raw_fd(), spare.as_mut_ptr().cast(), want, offset) };
        if n >= 0 {
            let n = n as usize;
            // SAFETY: pread initialised exactly n bytes past the current length.
            unsafe { buf.set_len(buf.len() + n) };
            return Ok(n);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}
