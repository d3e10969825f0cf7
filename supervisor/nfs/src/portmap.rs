//! Portmapper v2 (RFC 1833, program 100000): answers GETPORT and DUMP for
//! the two programs this server offers, so the kernel's nfsroot and
//! `mount.nfs` find NFS and MOUNT without port options. SET and UNSET are
//! refused (nobody else registers here); rpcbind v3/v4 callers get
//! PROG_MISMATCH and fall back to v2.

use nfs3_types::portmap::{IPPROTO_TCP, IPPROTO_UDP, mapping};
use nfs3_types::xdr_codec::List;

use crate::rpc::{Accept, Call, Reply};
use crate::xdr::{Reader, put, put_u32};

pub const PROGRAM: u32 = 100_000;
pub const NFS_PROGRAM: u32 = 100_003;
pub const MOUNT_PROGRAM: u32 = 100_005;

/// Where this server's programs listen.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub nfs: u16,
    /// Whether NFS and MOUNT are also served over UDP.
    pub udp: bool,
}

impl Ports {
    fn mappings(&self) -> Vec<mapping> {
        let mut v = Vec::new();
        let mut protos = vec![IPPROTO_TCP];
        if self.udp {
            protos.push(IPPROTO_UDP);
        }
        for prot in protos {
            v.push(mapping {
                prog: PROGRAM,
                vers: 2,
                prot,
                port: 0,
            });
            v.push(mapping {
                prog: NFS_PROGRAM,
                vers: 3,
                prot,
                port: u32::from(self.nfs),
            });
            v.push(mapping {
                prog: MOUNT_PROGRAM,
                vers: 3,
                prot,
                port: u32::from(self.nfs),
            });
        }
        v
    }

    /// The port of (prog, vers, prot), 0 when not offered.
    pub fn getport(&self, prog: u32, vers: u32, prot: u32, own_port: u16) -> u32 {
        if prog == PROGRAM && vers == 2 {
            return u32::from(own_port);
        }
        self.mappings()
            .iter()
            .find(|m| m.prog == prog && m.vers == vers && m.prot == prot)
            .map_or(0, |m| m.port)
    }
}

/// Answers one portmapper call; `own_port` is the port it arrived on.
pub fn handle(call: &Call<'_>, ports: &Ports, own_port: u16) -> Reply {
    if call.vers != 2 {
        return Reply::prog_mismatch(call.xid, 2, 2);
    }
    let mut r = Reader::new(call.args);
    let mut reply = Reply::success(call.xid);
    match call.proc_ {
        0 => {}
        1 | 2 => put_u32(&mut reply.buf, 0),
        3 => {
            let (Ok(prog), Ok(vers), Ok(prot), Ok(_port)) = (r.u32(), r.u32(), r.u32(), r.u32())
            else {
                return Reply::error(call.xid, Accept::GarbageArgs);
            };
            put_u32(&mut reply.buf, ports.getport(prog, vers, prot, own_port));
        }
        4 => {
            let mut list = ports.mappings();
            for m in list.iter_mut().filter(|m| m.prog == PROGRAM) {
                m.port = u32::from(own_port);
            }
            put(&mut reply.buf, &List(list));
        }
        _ => return Reply::error(call.xid, Accept::ProcUnavail),
    }
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn getport_answers_nfs_and_mount() {
        let p = Ports {
            nfs: 2049,
            udp: false,
        };
        assert_eq!(p.getport(NFS_PROGRAM, 3, IPPROTO_TCP, 111), 2049);
        assert_eq!(p.getport(MOUNT_PROGRAM, 3, IPPROTO_TCP, 111), 2049);
        assert_eq!(p.getport(MOUNT_PROGRAM, 3, IPPROTO_UDP, 111), 0);
        assert_eq!(p.getport(NFS_PROGRAM, 4, IPPROTO_TCP, 111), 0);
        assert_eq!(p.getport(PROGRAM, 2, IPPROTO_UDP, 111), 111);
        let p = Ports {
            nfs: 2049,
            udp: true,
        };
        assert_eq!(p.getport(MOUNT_PROGRAM, 3, IPPROTO_UDP, 111), 2049);
    }
}
