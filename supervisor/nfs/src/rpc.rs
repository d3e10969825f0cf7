//! ONC RPC v2 (RFC 5531): call headers, AUTH_SYS credentials, reply
//! framing and TCP record marking (multi-fragment records).
//!
//! A [`Reply`] buffer always starts with four reserved bytes so the TCP
//! path can fill in the record mark without copying the body (a 1 MiB READ
//! is written straight from the buffer it was read into).

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::creds::Identity;
use crate::xdr::{Garbage, Reader, put_u32};

/// Largest record accepted from a client: a 1 MiB WRITE plus headers.
pub const MAX_RECORD: usize = (1 << 20) + 64 * 1024;

const AUTH_NULL: u32 = 0;
const AUTH_SYS: u32 = 1;

/// `accept_stat` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Accept {
    Success = 0,
    ProgUnavail = 1,
    ProgMismatch = 2,
    ProcUnavail = 3,
    GarbageArgs = 4,
    SystemErr = 5,
}

/// `auth_stat` values we send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum AuthStat {
    BadCred = 1,
    TooWeak = 5,
}

/// The caller's credentials as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cred {
    Null,
    Sys {
        machine: String,
        id: Identity,
    },
    /// A flavour we do not support (e.g. RPCSEC_GSS).
    Other(u32),
}

impl Cred {
    /// The identity for file access: AUTH_SYS as claimed, else anonymous.
    pub fn identity(&self) -> Identity {
        match self {
            Cred::Sys { id, .. } => id.clone(),
            _ => Identity::anonymous(),
        }
    }
}

/// A decoded call header; `args` borrows the rest of the record.
#[derive(Debug)]
pub struct Call<'a> {
    pub xid: u32,
    pub prog: u32,
    pub vers: u32,
    pub proc_: u32,
    pub cred: Cred,
    pub args: &'a [u8],
}

/// What a record turned out to be.
#[derive(Debug)]
pub enum Parsed<'a> {
    Call(Call<'a>),
    /// A call with an RPC version other than 2 (answer RPC_MISMATCH).
    BadRpcVersion(u32),
    /// Not a call at all, or unreadable: drop it.
    Junk,
}

/// Decodes a call header.
pub fn parse(record: &[u8]) -> Parsed<'_> {
    let mut r = Reader::new(record);
    let Ok(xid) = r.u32() else {
        return Parsed::Junk;
    };
    match parse_rest(xid, &mut r) {
        Ok(p) => p,
        Err(Garbage) => Parsed::Junk,
    }
}

fn parse_rest<'a>(xid: u32, r: &mut Reader<'a>) -> Result<Parsed<'a>, Garbage> {
    if r.u32()? != 0 {
        return Ok(Parsed::Junk);
    }
    let rpcvers = r.u32()?;
    if rpcvers != 2 {
        return Ok(Parsed::BadRpcVersion(xid));
    }
    let prog = r.u32()?;
    let vers = r.u32()?;
    let proc_ = r.u32()?;
    let flavor = r.u32()?;
    let body = r.opaque(400)?;
    let cred = parse_cred(flavor, body)?;
    let _verf_flavor = r.u32()?;
    let _verf = r.opaque(400)?;
    Ok(Parsed::Call(Call {
        xid,
        prog,
        vers,
        proc_,
        cred,
        args: r.rest(),
    }))
}

fn parse_cred(flavor: u32, body: &[u8]) -> Result<Cred, Garbage> {
    match flavor {
        AUTH_NULL => Ok(Cred::Null),
        AUTH_SYS => {
            let mut r = Reader::new(body);
            let _stamp = r.u32()?;
            let machine = String::from_utf8_lossy(r.opaque(255)?).into_owned();
            let uid = r.u32()?;
            let gid = r.u32()?;
            let groups = r.u32_list(16)?;
            Ok(Cred::Sys {
                machine,
                id: Identity { uid, gid, groups },
            })
        }
        other => Ok(Cred::Other(other)),
    }
}

/// An encoded reply with 4 reserved bytes in front for the record mark.
#[derive(Debug, Clone)]
pub struct Reply {
    pub buf: Vec<u8>,
}

impl Reply {
    /// A successful reply header; the caller appends the results.
    pub fn success(xid: u32) -> Self {
        Self::accepted(xid, Accept::Success, 256)
    }

    fn accepted(xid: u32, stat: Accept, capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity);
        buf.extend_from_slice(&[0; 4]);
        for v in [xid, 1, 0, AUTH_NULL, 0, stat as u32] {
            put_u32(&mut buf, v);
        }
        Self { buf }
    }

    /// PROG_UNAVAIL, PROC_UNAVAIL, GARBAGE_ARGS or SYSTEM_ERR.
    pub fn error(xid: u32, stat: Accept) -> Self {
        Self::accepted(xid, stat, 32)
    }

    pub fn prog_mismatch(xid: u32, low: u32, high: u32) -> Self {
        let mut r = Self::accepted(xid, Accept::ProgMismatch, 40);
        put_u32(&mut r.buf, low);
        put_u32(&mut r.buf, high);
        r
    }

    /// MSG_DENIED / RPC_MISMATCH (we speak version 2 only).
    pub fn rpc_mismatch(xid: u32) -> Self {
        Self::denied(xid, &[0, 2, 2])
    }

    /// MSG_DENIED / AUTH_ERROR.
    pub fn auth_error(xid: u32, why: AuthStat) -> Self {
        Self::denied(xid, &[1, why as u32])
    }

    fn denied(xid: u32, tail: &[u32]) -> Self {
        let mut buf = vec![0; 4];
        for v in [xid, 1, 1].iter().chain(tail) {
            put_u32(&mut buf, *v);
        }
        Self { buf }
    }

    /// The RPC message without the reserved record-mark bytes (for UDP).
    pub fn message(&self) -> &[u8] {
        self.buf.get(4..).unwrap_or_default()
    }

    /// The whole buffer as one last-fragment TCP record.
    pub fn as_record(&mut self) -> &[u8] {
        let len = (self.buf.len() - 4) as u32 | 0x8000_0000;
        self.buf[..4].copy_from_slice(&len.to_be_bytes());
        &self.buf
    }
}

/// Reads one RPC record (all fragments) from a stream. `Ok(None)` at a
/// clean end of stream; an error for oversize or truncated records.
pub async fn read_record<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<Option<Vec<u8>>> {
    let mut record = Vec::new();
    loop {
        let mut mark = [0u8; 4];
        match r.read_exact(&mut mark).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && record.is_empty() => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        }
        let word = u32::from_be_bytes(mark);
        let len = (word & 0x7fff_ffff) as usize;
        if record.len() + len > MAX_RECORD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("RPC record larger than {MAX_RECORD} bytes"),
            ));
        }
        let start = record.len();
        record.resize(start + len, 0);
        r.read_exact(&mut record[start..]).await?;
        if word & 0x8000_0000 != 0 {
            return Ok(Some(record));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call_bytes(flavor: u32, body: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        for v in [7u32, 0, 2, 100003, 3, 1, flavor] {
            put_u32(&mut b, v);
        }
        crate::xdr::put_opaque(&mut b, body);
        for v in [0u32, 0, 0xdead] {
            put_u32(&mut b, v);
        }
        b
    }

    #[test]
    fn parses_auth_sys() {
        let mut body = Vec::new();
        put_u32(&mut body, 1);
        crate::xdr::put_opaque(&mut body, b"pi");
        for v in [1000u32, 100, 2, 27, 44] {
            put_u32(&mut body, v);
        }
        let rec = call_bytes(1, &body);
        let Parsed::Call(c) = parse(&rec) else {
            panic!()
        };
        assert_eq!((c.xid, c.prog, c.vers, c.proc_), (7, 100003, 3, 1));
        assert_eq!(c.args, &[0, 0, 0xde, 0xad]);
        assert_eq!(
            c.cred.identity(),
            Identity {
                uid: 1000,
                gid: 100,
                groups: vec![27, 44]
            }
        );
    }

    #[test]
    fn junk_and_versions() {
        assert!(matches!(parse(&[1, 2, 3]), Parsed::Junk));
        let mut rec = call_bytes(0, &[]);
        rec[11] = 3;
        assert!(matches!(parse(&rec), Parsed::BadRpcVersion(7)));
        // An AUTH_SYS body claiming 2^32-1 groups is garbage, not a panic.
        let mut body = vec![0; 8];
        body.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(parse(&call_bytes(1, &body)), Parsed::Junk));
    }

    #[tokio::test]
    async fn reads_multi_fragment_records() {
        let mut wire = Vec::new();
        wire.extend_from_slice(&3u32.to_be_bytes());
        wire.extend_from_slice(b"abc");
        wire.extend_from_slice(&(0x8000_0002u32).to_be_bytes());
        wire.extend_from_slice(b"de");
        let mut r = &wire[..];
        assert_eq!(read_record(&mut r).await.unwrap().unwrap(), b"abcde");
        assert!(read_record(&mut r).await.unwrap().is_none());
        let huge = 0x8fff_ffffu32.to_be_bytes();
        assert!(read_record(&mut &huge[..]).await.is_err());
    }
}
