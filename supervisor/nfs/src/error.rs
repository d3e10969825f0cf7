//! Errors: [`NfsError`] for the service as a whole, and the mapping of
//! system errors to the `nfsstat3` a client sees.

use std::io;

use nfs3_types::nfs3::nfsstat3;

/// Why the NFS service could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum NfsError {
    #[error("cannot read the file-handle key secrets/nfs-handle-key: {0}")]
    HandleKey(#[source] io::Error),
    #[error("cannot start NFS worker threads: {0}")]
    Workers(#[source] io::Error),
    #[error("NFS socket failed: {0}")]
    Socket(#[source] io::Error),
}

/// The NFSv3 status for a failed system call.
pub fn io_to_nfs(e: &io::Error) -> nfsstat3 {
    use nfsstat3 as S;
    match e.raw_os_error().unwrap_or(0) {
        libc::EPERM => S::NFS3ERR_PERM,
        libc::ENOENT => S::NFS3ERR_NOENT,
        libc::EIO => S::NFS3ERR_IO,
        libc::ENXIO => S::NFS3ERR_NXIO,
        libc::EACCES => S::NFS3ERR_ACCES,
        libc::EEXIST => S::NFS3ERR_EXIST,
        libc::EXDEV => S::NFS3ERR_XDEV,
        libc::ENODEV => S::NFS3ERR_NODEV,
        libc::ENOTDIR => S::NFS3ERR_NOTDIR,
        libc::EISDIR => S::NFS3ERR_ISDIR,
        libc::EINVAL | libc::ELOOP => S::NFS3ERR_INVAL,
        libc::EFBIG => S::NFS3ERR_FBIG,
        libc::ENOSPC => S::NFS3ERR_NOSPC,
        libc::EROFS => S::NFS3ERR_ROFS,
        libc::EMLINK => S::NFS3ERR_MLINK,
        libc::ENAMETOOLONG => S::NFS3ERR_NAMETOOLONG,
        libc::ENOTEMPTY => S::NFS3ERR_NOTEMPTY,
        libc::EDQUOT => S::NFS3ERR_DQUOT,
        libc::ESTALE => S::NFS3ERR_STALE,
        libc::EOPNOTSUPP => S::NFS3ERR_NOTSUPP,
        libc::EAGAIN => S::NFS3ERR_JUKEBOX,
        _ => S::NFS3ERR_IO,
    }
}

/// Same for `nix` errors.
pub fn errno_to_nfs(e: nix::Error) -> nfsstat3 {
    io_to_nfs(&io::Error::from(e))
}
