//! Bounds-checked XDR decoding of everything a client sends, and encoding
//! of replies.
//!
//! Replies are packed with `nfs3_types`' `Pack` implementations. Requests
//! are *not* unpacked with its `Unpack`: that allocates whatever length a
//! packet claims before reading it, so a forged length could exhaust
//! memory. [`Reader`] borrows from the received record and checks every
//! length against the bytes actually present; it never panics.

use nfs3_types::nfs3::{
    createhow3, createverf3, devicedata3, diropargs3, filename3, mknoddata3, nfs_fh3, nfspath3,
    nfstime3, sattr3, set_atime, set_mtime, specdata3, stable_how,
};
use nfs3_types::xdr_codec::{Opaque, Pack};

/// The packet ended early or held an impossible value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed XDR")]
pub struct Garbage;

pub type Result<T> = std::result::Result<T, Garbage>;

/// A cursor over a received record.
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// Bytes not consumed yet.
    pub fn rest(&self) -> &'a [u8] {
        self.buf
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.buf.len() {
            return Err(Garbage);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64(&mut self) -> Result<u64> {
        Ok((u64::from(self.u32()?) << 32) | u64::from(self.u32()?))
    }

    pub fn bool(&mut self) -> Result<bool> {
        match self.u32()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(Garbage),
        }
    }

    /// Variable-length opaque of at most `max` bytes (plus padding).
    pub fn opaque(&mut self, max: usize) -> Result<&'a [u8]> {
        let len = self.u32()? as usize;
        if len > max {
            return Err(Garbage);
        }
        let data = self.take(len)?;
        self.take((4 - len % 4) % 4)?;
        Ok(data)
    }

    pub fn fixed<const N: usize>(&mut self) -> Result<[u8; N]> {
        let b = self.take(N)?;
        self.take((4 - N % 4) % 4)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    /// A list of u32 (e.g. AUTH_SYS groups) of at most `max` items.
    pub fn u32_list(&mut self, max: usize) -> Result<Vec<u32>> {
        let n = self.u32()? as usize;
        if n > max {
            return Err(Garbage);
        }
        (0..n).map(|_| self.u32()).collect()
    }

    pub fn fh(&mut self) -> Result<nfs_fh3> {
        let data = self.opaque(nfs3_types::nfs3::NFS3_FHSIZE)?;
        Ok(nfs_fh3 {
            data: Opaque::owned(data.to_vec()),
        })
    }

    pub fn filename(&mut self) -> Result<filename3<'a>> {
        Ok(filename3(Opaque::borrowed(self.opaque(4096)?)))
    }

    pub fn diropargs(&mut self) -> Result<diropargs3<'a>> {
        Ok(diropargs3 {
            dir: self.fh()?,
            name: self.filename()?,
        })
    }

    fn time(&mut self) -> Result<nfstime3> {
        Ok(nfstime3 {
            seconds: self.u32()?,
            nseconds: self.u32()?,
        })
    }

    fn opt_u32(&mut self) -> Result<Option<u32>> {
        if self.bool()? {
            Ok(Some(self.u32()?))
        } else {
            Ok(None)
        }
    }

    fn set_time(&mut self) -> Result<(u32, Option<nfstime3>)> {
        match self.u32()? {
            0 => Ok((0, None)),
            1 => Ok((1, None)),
            2 => Ok((2, Some(self.time()?))),
            _ => Err(Garbage),
        }
    }

    pub fn sattr(&mut self) -> Result<sattr3> {
        use nfs3_types::nfs3::Nfs3Option as O;
        let opt = |v: Option<u32>| v.map_or(O::None, O::Some);
        let mode = opt(self.opt_u32()?);
        let uid = opt(self.opt_u32()?);
        let gid = opt(self.opt_u32()?);
        let size = if self.bool()? {
            O::Some(self.u64()?)
        } else {
            O::None
        };
        let atime = match self.set_time()? {
            (1, _) => set_atime::SET_TO_SERVER_TIME,
            (2, Some(t)) => set_atime::SET_TO_CLIENT_TIME(t),
            _ => set_atime::DONT_CHANGE,
        };
        let mtime = match self.set_time()? {
            (1, _) => set_mtime::SET_TO_SERVER_TIME,
            (2, Some(t)) => set_mtime::SET_TO_CLIENT_TIME(t),
            _ => set_mtime::DONT_CHANGE,
        };
        Ok(sattr3 {
            mode,
            uid,
            gid,
            size,
            atime,
            mtime,
        })
    }

    /// `sattrguard3`: the ctime the client expects, if any.
    pub fn guard(&mut self) -> Result<Option<nfstime3>> {
        if self.bool()? {
            Ok(Some(self.time()?))
        } else {
            Ok(None)
        }
    }

    pub fn createhow(&mut self) -> Result<createhow3> {
        match self.u32()? {
            0 => Ok(createhow3::UNCHECKED(self.sattr()?)),
            1 => Ok(createhow3::GUARDED(self.sattr()?)),
            2 => Ok(createhow3::EXCLUSIVE(createverf3(self.fixed::<8>()?))),
            _ => Err(Garbage),
        }
    }

    pub fn stable(&mut self) -> Result<stable_how> {
        match self.u32()? {
            0 => Ok(stable_how::UNSTABLE),
            1 => Ok(stable_how::DATA_SYNC),
            2 => Ok(stable_how::FILE_SYNC),
            _ => Err(Garbage),
        }
    }

    pub fn path(&mut self) -> Result<nfspath3<'a>> {
        Ok(nfspath3(Opaque::borrowed(self.opaque(4096)?)))
    }

    pub fn mknoddata(&mut self) -> Result<mknoddata3> {
        let device = |r: &mut Self| -> Result<devicedata3> {
            Ok(devicedata3 {
                dev_attributes: r.sattr()?,
                spec: specdata3 {
                    specdata1: r.u32()?,
                    specdata2: r.u32()?,
                },
            })
        };
        match self.u32()? {
            3 => Ok(mknoddata3::NF3BLK(device(self)?)),
            4 => Ok(mknoddata3::NF3CHR(device(self)?)),
            6 => Ok(mknoddata3::NF3SOCK(self.sattr()?)),
            7 => Ok(mknoddata3::NF3FIFO(self.sattr()?)),
            // Other types are legal XDR; the procedure answers BADTYPE.
            1 | 2 | 5 => Ok(mknoddata3::default),
            _ => Err(Garbage),
        }
    }
}

/// Appends the XDR encoding of `value` to `out`.
pub fn put<T: Pack>(out: &mut Vec<u8>, value: &T) {
    // Writing into a Vec cannot fail; a too-large object is a bug upstream
    // that we log rather than panic on.
    if let Err(e) = value.pack(out) {
        tracing::error!("cannot encode reply: {e}");
    }
}

pub fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub fn put_opaque(out: &mut Vec<u8>, data: &[u8]) {
    put_u32(out, data.len() as u32);
    out.extend_from_slice(data);
    out.resize(out.len() + (4 - data.len() % 4) % 4, 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_lengths_beyond_the_packet() {
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xff, 1, 2]);
        assert_eq!(r.opaque(usize::MAX), Err(Garbage));
        let mut r = Reader::new(&[0, 0, 0, 200]);
        assert_eq!(r.u32_list(16), Err(Garbage));
        let mut r = Reader::new(&[0, 0, 0, 3, b'a', b'b', b'c', 0, 0, 0, 0, 7]);
        assert_eq!(r.opaque(10).unwrap(), b"abc");
        assert_eq!(r.u32().unwrap(), 7);
        assert_eq!(r.u32(), Err(Garbage));
    }

    #[test]
    fn sattr_round_trip() {
        let s = sattr3 {
            mode: nfs3_types::nfs3::Nfs3Option::Some(0o4755),
            size: nfs3_types::nfs3::Nfs3Option::Some(12),
            mtime: set_mtime::SET_TO_CLIENT_TIME(nfstime3 {
                seconds: 5,
                nseconds: 6,
            }),
            ..Default::default()
        };
        let mut buf = Vec::new();
        put(&mut buf, &s);
        let back = Reader::new(&buf).sattr().unwrap();
        assert_eq!(format!("{back:?}"), format!("{s:?}"));
    }
}
