//! A scripted DHCP client for tests and benches: the packets a Pi 3 boot
//! ROM, a Pi 4 EEPROM bootloader or a plain client put on the wire, sent
//! from UDP port 68 inside a client namespace (bound to its `eth0`), and
//! the replies read back raw so tests can check them byte by byte.
//!
//! Also: registering
//! clients on a data volume before bramble starts.

use std::ffi::OsString;

pub use crate::netns::in_netns;
use std::fs;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

/// The DHCP magic cookie.
pub const MAGIC: [u8; 4] = [99, 130, 83, 99];
/// The vendor class every Pi boot ROM/EEPROM sends.
pub const PI_CLASS: &[u8] = b"PXEClient:Arch:00000:UNDI:002001";
/// Every Pi 3 boot ROM uses this transaction id.
pub const PI3_XID: u32 = 0x26f3_0339;

/// Registers clients (`(mac, serial)`, all booting OS `os`) on a data volume
/// before bramble starts, creating `os/<os>`.
pub fn register_clients(data: &Path, os: &str, clients: &[(&str, Option<&str>)]) {
    fs::create_dir_all(data.join("os").join(os)).unwrap();
    fs::create_dir_all(data.join("state")).unwrap();
    let list: Vec<serde_json::Value> = clients
        .iter()
        .map(|(mac, serial)| {
            let mut c = serde_json::json!({"mac": mac, "os": os});
            if let Some(s) = serial {
                c["serial"] = serde_json::json!(s);
            }
            c
        })
        .collect();
    fs::write(
        data.join("state/clients.json"),
        serde_json::to_vec_pretty(&serde_json::json!({ "clients": list })).unwrap(),
    )
    .unwrap();
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn mac(text: &str) -> [u8; 6] {
    let mut out = [0u8; 6];
    let parts: Vec<_> = text.split(':').collect();
    assert_eq!(parts.len(), 6, "MAC {text}");
    for (o, p) in out.iter_mut().zip(parts) {
        *o = u8::from_str_radix(p, 16).expect("hex MAC");
    }
    out
}

/// A BOOTREQUEST with message type `msg_type` and `options` (code, value).
pub fn request(msg_type: u8, mac: [u8; 6], xid: u32, options: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut b = vec![0u8; 236];
    b[0] = 1; // BOOTREQUEST
    b[1] = 1; // Ethernet
    b[2] = 6;
    b[4..8].copy_from_slice(&xid.to_be_bytes());
    b[28..34].copy_from_slice(&mac);
    b.extend(MAGIC);
    b.extend([53, 1, msg_type]);
    for (code, value) in options {
        b.push(*code);
        b.push(value.len() as u8);
        b.extend_from_slice(value);
    }
    b.push(255);
    if b.len() < 300 {
        b.resize(300, 0);
    }
    b
}

/// The DISCOVER a Pi 3 boot ROM sends (shared xid, option 97 = the serial
/// four times, option 93 = 0).
pub fn pi3_discover(mac: [u8; 6], serial: u32) -> Vec<u8> {
    let mut guid = vec![0u8];
    for _ in 0..4 {
        guid.extend(serial.to_be_bytes());
    }
    request(
        1,
        mac,
        PI3_XID,
        &[
            (
                55,
                vec![1, 3, 43, 60, 66, 67, 128, 129, 130, 131, 132, 133, 134, 135],
            ),
            (57, vec![0x05, 0xc0]),
            (93, vec![0, 0]),
            (94, vec![1, 2, 1]),
            (97, guid),
            (60, PI_CLASS.to_vec()),
        ],
    )
}

/// Option 97 as a Pi 4/5 EEPROM builds it: type 0, FourCC, board revision,
/// low four MAC bytes, serial (all big-endian on the wire).
pub fn pi_guid(model: &str, revision: u32, mac: [u8; 6], serial: u32) -> Vec<u8> {
    let fourcc: u32 = if model == "RPi5" {
        0x3569_5052
    } else {
        0x3469_5052
    };
    let mut v = vec![0u8];
    v.extend(fourcc.to_be_bytes());
    v.extend(revision.to_be_bytes());
    v.extend(&mac[2..]);
    v.extend(serial.to_be_bytes());
    v
}

/// The DISCOVER a Pi 4 EEPROM bootloader sends.
pub fn pi4_discover(mac: [u8; 6], xid: u32, serial: u32) -> Vec<u8> {
    request(
        1,
        mac,
        xid,
        &[
            (55, vec![1, 3, 43, 54, 60, 66, 67]),
            (57, vec![0x05, 0xdc]),
            (97, pi_guid("RPi4", 0x00c0_3111, mac, serial)),
            (93, vec![0, 0]),
            (94, vec![1, 2, 1]),
            (60, PI_CLASS.to_vec()),
        ],
    )
}

/// Options of a DHCP packet as (code, value), in order, up to End.
pub fn options(packet: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut rest = packet.get(240..).unwrap_or_default();
    while let [c, tail @ ..] = rest {
        match *c {
            0 => rest = tail,
            255 => break,
            _ => {
                let Some((&len, body)) = tail.split_first() else {
                    break;
                };
                let Some(value) = body.get(..len as usize) else {
                    break;
                };
                out.push((*c, value.to_vec()));
                rest = &body[len as usize..];
            }
        }
    }
    out
}

/// A client's UDP port 68, bound to one interface of its namespace.
pub struct ClientPort {
    sock: UdpSocket,
    server_port: u16,
}

impl ClientPort {
    /// Opens `0.0.0.0:<client_port>` on `iface` inside namespace `ns`.
    pub fn open(ns: &str, iface: &str, client_port: u16) -> io::Result<Self> {
        let iface = iface.to_string();
        let sock = in_netns(ns, move || -> io::Result<UdpSocket> {
            let sock = socket_reuse(client_port)?;
            nix::sys::socket::setsockopt(
                &sock,
                nix::sys::socket::sockopt::BindToDevice,
                &OsString::from(iface),
            )
            .map_err(io::Error::from)?;
            sock.set_broadcast(true)?;
            Ok(sock)
        })?;
        Ok(Self {
            sock,
            server_port: client_port - 1,
        })
    }

    /// Broadcasts a request to 255.255.255.255:67.
    pub fn broadcast(&self, packet: &[u8]) -> io::Result<()> {
        self.sock.send_to(
            packet,
            SocketAddrV4::new(Ipv4Addr::BROADCAST, self.server_port),
        )?;
        Ok(())
    }

    /// Sends to one address (e.g. the boot server port 4011).
    pub fn send_to(&self, packet: &[u8], to: SocketAddrV4) -> io::Result<()> {
        self.sock.send_to(packet, to)?;
        Ok(())
    }

    /// The next BOOTREPLY for `mac` and `xid` within `limit`, with its source.
    pub fn reply(&self, mac: [u8; 6], xid: u32, limit: Duration) -> Option<(Vec<u8>, SocketAddr)> {
        let deadline = Instant::now() + limit;
        let mut buf = vec![0u8; 2048];
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            self.sock
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .ok()?;
            match self.sock.recv_from(&mut buf) {
                Ok((n, from)) => {
                    let p = &buf[..n];
                    if n >= 240 && p[0] == 2 && p[4..8] == xid.to_be_bytes() && p[28..34] == mac {
                        return Some((p.to_vec(), from));
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return None;
                }
                Err(_) => return None,
            }
        }
    }

    /// Any datagram at all within `limit` (for "nothing arrives" checks).
    pub fn anything(&self, limit: Duration) -> Option<Vec<u8>> {
        self.sock.set_read_timeout(Some(limit)).ok()?;
        let mut buf = vec![0u8; 2048];
        self.sock.recv(&mut buf).ok().map(|n| buf[..n].to_vec())
    }

    pub fn socket(&self) -> &UdpSocket {
        &self.sock
    }
}

fn socket_reuse(port: u16) -> io::Result<UdpSocket> {
    use nix::sys::socket::{
        AddressFamily, SockFlag, SockType, SockaddrIn, bind, setsockopt, socket, sockopt,
    };
    let fd = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(io::Error::from)?;
    setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(io::Error::from)?;
    bind(fd.as_raw_fd(), &SockaddrIn::new(0, 0, 0, 0, port)).map_err(io::Error::from)?;
    Ok(UdpSocket::from(fd))
}
