//! POSIX attributes as NFSv3 sees them: `fattr3` straight from `stat`
//! (file id = inode, real nlink, all mode bits including setuid, setgid
//! and sticky, device numbers, nanosecond times), and weak cache
//! consistency data.

use nfs3_types::nfs3::{
    Nfs3Option, fattr3, ftype3, nfstime3, post_op_attr, pre_op_attr, specdata3, wcc_attr, wcc_data,
};
use nix::sys::stat::FileStat;

/// Linux `major()` of a device number.
pub fn major(dev: u64) -> u32 {
    (((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0x0000_0fff)) as u32
}

/// Linux `minor()` of a device number.
pub fn minor(dev: u64) -> u32 {
    (((dev >> 12) & 0xffff_ff00) | (dev & 0x0000_00ff)) as u32
}

/// Linux `makedev()`.
pub fn makedev(major: u32, minor: u32) -> u64 {
    let (ma, mi) = (u64::from(major), u64::from(minor));
    ((ma & 0xffff_f000) << 32)
        | ((ma & 0x0000_0fff) << 8)
        | ((mi & 0xffff_ff00) << 12)
        | (mi & 0xff)
}

pub fn file_type(mode: u32) -> ftype3 {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => ftype3::NF3DIR,
        libc::S_IFLNK => ftype3::NF3LNK,
        libc::S_IFBLK => ftype3::NF3BLK,
        libc::S_IFCHR => ftype3::NF3CHR,
        libc::S_IFSOCK => ftype3::NF3SOCK,
        libc::S_IFIFO => ftype3::NF3FIFO,
        _ => ftype3::NF3REG,
    }
}

pub fn is_dir(st: &FileStat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

pub fn is_reg(st: &FileStat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFREG
}

fn time(sec: i64, nsec: i64) -> nfstime3 {
    nfstime3 {
        seconds: sec.clamp(0, i64::from(u32::MAX)) as u32,
        nseconds: nsec.clamp(0, 999_999_999) as u32,
    }
}

pub fn mtime(st: &FileStat) -> nfstime3 {
    time(st.st_mtime, st.st_mtime_nsec)
}

pub fn ctime(st: &FileStat) -> nfstime3 {
    time(st.st_ctime, st.st_ctime_nsec)
}

pub fn fattr(st: &FileStat) -> fattr3 {
    let kind = file_type(st.st_mode);
    let rdev = if matches!(kind, ftype3::NF3BLK | ftype3::NF3CHR) {
        specdata3 {
            specdata1: major(st.st_rdev),
            specdata2: minor(st.st_rdev),
        }
    } else {
        specdata3::default()
    };
    fattr3 {
        type_: kind,
        mode: st.st_mode & 0o7777,
        nlink: st.st_nlink as u32,
        uid: st.st_uid,
        gid: st.st_gid,
        size: st.st_size as u64,
        used: (st.st_blocks as u64).saturating_mul(512),
        rdev,
        fsid: st.st_dev,
        fileid: st.st_ino,
        atime: time(st.st_atime, st.st_atime_nsec),
        mtime: mtime(st),
        ctime: ctime(st),
    }
}

pub fn post_op(st: Option<&FileStat>) -> post_op_attr {
    st.map_or(Nfs3Option::None, |s| Nfs3Option::Some(fattr(s)))
}

pub fn pre_op(st: Option<&FileStat>) -> pre_op_attr {
    st.map_or(Nfs3Option::None, |s| {
        Nfs3Option::Some(wcc_attr {
            size: s.st_size as u64,
            mtime: mtime(s),
            ctime: ctime(s),
        })
    })
}

pub fn wcc(before: Option<&FileStat>, after: Option<&FileStat>) -> wcc_data {
    wcc_data {
        before: pre_op(before),
        after: post_op(after),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_numbers_round_trip() {
        for (ma, mi) in [(1, 3), (8, 1), (259, 70000), (4095, 255), (4096, 256)] {
            let d = makedev(ma, mi);
            assert_eq!((major(d), minor(d)), (ma, mi));
            assert_eq!(d, libc::makedev(ma, mi));
        }
    }
}
