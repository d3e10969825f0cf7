//! A small synchronous ONC RPC client over TCP for NFSv3, MOUNT and the
//! portmapper, built on `nfs3_types`: it reaches what the libnfs tools do
//! not (raw GETATTR, ACCESS, MKNOD, LINK, forged handles, chosen
//! credentials, malformed calls).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use nfs3_types::mount::{dirpath, mountres3};
use nfs3_types::nfs3::{self, nfs_fh3};
use nfs3_types::rpc::{auth_unix, opaque_auth};
use nfs3_types::xdr_codec::{Opaque, Pack, Unpack};

pub const NFS: u32 = 100_003;
pub const MOUNT: u32 = 100_005;
pub const PORTMAP: u32 = 100_000;

/// How a call was answered at the RPC level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// SUCCESS, with the procedure's result bytes.
    Success(Vec<u8>),
    /// Accepted but not run: PROG_UNAVAIL (1), PROG_MISMATCH (2),
    /// PROC_UNAVAIL (3), GARBAGE_ARGS (4), SYSTEM_ERR (5).
    Accepted(u32),
    /// MSG_DENIED: reject_stat then its details (e.g. [1, auth_stat]).
    Denied(Vec<u32>),
}

/// One TCP connection to a server, calling as a chosen AUTH_SYS user.
pub struct Client {
    stream: TcpStream,
    xid: u32,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

fn pack<T: Pack>(v: &T) -> Vec<u8> {
    let mut out = Vec::new();
    v.pack(&mut out).expect("pack");
    out
}

fn be(b: &[u8], i: usize) -> u32 {
    u32::from_be_bytes(b[i..i + 4].try_into().unwrap())
}

impl Client {
    pub fn connect(addr: SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            xid: rand::random(),
            uid: 0,
            gid: 0,
            groups: Vec::new(),
        })
    }

    /// Makes the next call use transaction id `xid` (retransmit tests).
    pub fn next_xid(&mut self, xid: u32) {
        self.xid = xid.wrapping_sub(1);
    }

    /// Calls as this user from now on.
    pub fn user(mut self, uid: u32, gid: u32, groups: &[u32]) -> Self {
        self.set_user(uid, gid, groups);
        self
    }

    pub fn set_user(&mut self, uid: u32, gid: u32, groups: &[u32]) {
        self.uid = uid;
        self.gid = gid;
        self.groups = groups.to_vec();
    }

    fn cred(&self) -> Vec<u8> {
        let auth = auth_unix {
            stamp: 1,
            machinename: Opaque::borrowed(b"test"),
            uid: self.uid,
            gid: self.gid,
            gids: self.groups.clone(),
        };
        pack(&opaque_auth::auth_unix(&auth))
    }

    /// Sends a call with raw argument bytes (split into two fragments to
    /// exercise record marking) and reads the matching reply.
    pub fn call_raw(
        &mut self,
        prog: u32,
        vers: u32,
        proc_: u32,
        args: &[u8],
    ) -> io::Result<Outcome> {
        self.call_with_cred(prog, vers, proc_, &self.cred(), args)
    }

    /// Like [`Client::call_raw`] with an explicit encoded credential.
    pub fn call_with_cred(
        &mut self,
        prog: u32,
        vers: u32,
        proc_: u32,
        cred: &[u8],
        args: &[u8],
    ) -> io::Result<Outcome> {
        self.xid = self.xid.wrapping_add(1);
        let mut msg = Vec::new();
        for v in [self.xid, 0, 2, prog, vers, proc_] {
            msg.extend_from_slice(&v.to_be_bytes());
        }
        msg.extend_from_slice(cred);
        msg.extend_from_slice(&[0; 8]);
        msg.extend_from_slice(args);
        self.send_record(&msg)?;
        loop {
            let reply = self.read_record()?;
            if be(&reply, 0) == self.xid {
                return Ok(parse_reply(&reply));
            }
        }
    }

    fn send_record(&mut self, msg: &[u8]) -> io::Result<()> {
        let cut = msg.len() / 2;
        let mut wire = Vec::with_capacity(msg.len() + 8);
        wire.extend_from_slice(&(cut as u32).to_be_bytes());
        wire.extend_from_slice(&msg[..cut]);
        wire.extend_from_slice(&((msg.len() - cut) as u32 | 0x8000_0000).to_be_bytes());
        wire.extend_from_slice(&msg[cut..]);
        self.stream.write_all(&wire)
    }

    /// Writes arbitrary bytes (for malformed-record tests).
    pub fn send_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    fn read_record(&mut self) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let mut mark = [0u8; 4];
            self.stream.read_exact(&mut mark)?;
            let word = u32::from_be_bytes(mark);
            let start = out.len();
            out.resize(start + (word & 0x7fff_ffff) as usize, 0);
            self.stream.read_exact(&mut out[start..])?;
            if word & 0x8000_0000 != 0 {
                return Ok(out);
            }
        }
    }

    /// Calls and decodes a successful result as `R`.
    pub fn call<A: Pack, R: Unpack>(
        &mut self,
        prog: u32,
        vers: u32,
        proc_: u32,
        args: &A,
    ) -> io::Result<R> {
        match self.call_raw(prog, vers, proc_, &pack(args))? {
            Outcome::Success(body) => R::unpack(&mut &body[..])
                .map(|(r, _)| r)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
            other => Err(io::Error::other(format!("RPC failed: {other:?}"))),
        }
    }

    /// MOUNT v3 MNT.
    pub fn mount(
        &mut self,
        path: &str,
    ) -> io::Result<Result<nfs_fh3, nfs3_types::mount::mountstat3>> {
        let res: mountres3 = self.call(
            MOUNT,
            3,
            1,
            &dirpath(Opaque::owned(path.as_bytes().to_vec())),
        )?;
        Ok(match res {
            mountres3::Ok(ok) => Ok(nfs_fh3 {
                data: Opaque::owned(ok.fhandle.0.to_vec()),
            }),
            mountres3::Err(e) => Err(e),
        })
    }

    /// NFSv3 procedure `proc_` with typed arguments and result.
    pub fn nfs<A: Pack, R: Unpack>(&mut self, proc_: u32, args: &A) -> io::Result<R> {
        self.call(NFS, 3, proc_, args)
    }

    pub fn getattr(&mut self, fh: &nfs_fh3) -> io::Result<nfs3::GETATTR3res> {
        self.nfs(1, &nfs3::GETATTR3args { object: fh.clone() })
    }

    pub fn lookup(&mut self, dir: &nfs_fh3, name: &str) -> io::Result<nfs3::LOOKUP3res> {
        self.nfs(
            3,
            &nfs3::LOOKUP3args {
                what: diropargs(dir, name),
            },
        )
    }

    /// Looks up a `/`-separated path below `dir`; panics on failure.
    pub fn walk(&mut self, dir: &nfs_fh3, path: &str) -> nfs_fh3 {
        let mut fh = dir.clone();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            fh = match self.lookup(&fh, part).unwrap() {
                nfs3::Nfs3Result::Ok(ok) => ok.object,
                nfs3::Nfs3Result::Err((s, _)) => panic!("LOOKUP {part} in {path}: {s}"),
            };
        }
        fh
    }

    pub fn access(&mut self, fh: &nfs_fh3, bits: u32) -> io::Result<nfs3::ACCESS3res> {
        self.nfs(
            4,
            &nfs3::ACCESS3args {
                object: fh.clone(),
                access: bits,
            },
        )
    }

    pub fn read(
        &mut self,
        fh: &nfs_fh3,
        offset: u64,
        count: u32,
    ) -> io::Result<nfs3::READ3res<'static>> {
        self.nfs(
            6,
            &nfs3::READ3args {
                file: fh.clone(),
                offset,
                count,
            },
        )
    }
}

pub fn diropargs<'a>(dir: &nfs_fh3, name: &'a str) -> nfs3::diropargs3<'a> {
    nfs3::diropargs3 {
        dir: dir.clone(),
        name: nfs3::filename3(Opaque::borrowed(name.as_bytes())),
    }
}

fn parse_reply(r: &[u8]) -> Outcome {
    // xid, REPLY, reply_stat
    if be(r, 8) == 1 {
        let words = (12..r.len()).step_by(4).map(|i| be(r, i)).collect();
        return Outcome::Denied(words);
    }
    let verf_len = be(r, 16) as usize;
    let at = 20 + verf_len.div_ceil(4) * 4;
    match be(r, at) {
        0 => Outcome::Success(r[at + 4..].to_vec()),
        stat => Outcome::Accepted(stat),
    }
}
