//! Sockets: binding with the options DHCP needs, receiving with the local
//! address and interface (IP_PKTINFO), sending replies out of the same
//! interface, and finding an interface's address.
//!
//! Broadcast replies need the outgoing interface chosen explicitly (a
//! namespace or a server with several interfaces has no route for
//! 255.255.255.255), which `SO_BINDTODEVICE` or the `ipi_ifindex` of the
//! request's packet info provides.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsRawFd, RawFd};

use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, SockaddrIn, recvmsg, sendmsg, setsockopt,
    sockopt,
};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// One received datagram's metadata.
#[derive(Debug, Clone, Copy)]
pub struct Meta {
    pub len: usize,
    pub source: SocketAddrV4,
    /// Local address the reply should come from (`ipi_spec_dst`).
    pub local_ip: Option<Ipv4Addr>,
    /// Interface the datagram arrived on.
    pub ifindex: Option<u32>,
    /// The datagram did not fit the buffer.
    pub truncated: bool,
}

/// A UDP socket for DHCP: SO_REUSEADDR, SO_BROADCAST, IP_PKTINFO and, if
/// `interface` is given, SO_BINDTODEVICE; non-blocking, registered with tokio.
pub fn udp_socket(addr: SocketAddr, interface: Option<&str>) -> io::Result<UdpSocket> {
    let SocketAddr::V4(_) = addr else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("DHCP listens on IPv4 only, not {addr}"),
        ));
    };
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_broadcast(true)?;
    if let Some(name) = interface {
        socket.bind_device(Some(name.as_bytes())).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot bind to interface {name:?}: {e}"))
        })?;
    }
    setsockopt(&socket, sockopt::Ipv4PacketInfo, &true).map_err(io::Error::from)?;
    socket.set_nonblocking(true)?;
    socket
        .bind(&addr.into())
        .map_err(|e| io::Error::new(e.kind(), format!("cannot bind {addr}: {e}")))?;
    UdpSocket::from_std(socket.into())
}

/// Receives one datagram with its packet info.
pub async fn recv(sock: &UdpSocket, buf: &mut [u8]) -> io::Result<Meta> {
    let fd = sock.as_raw_fd();
    sock.async_io(Interest::READABLE, || recv_now(fd, buf))
        .await
}

fn recv_now(fd: RawFd, buf: &mut [u8]) -> io::Result<Meta> {
    let mut cmsg = nix::cmsg_space!(libc::in_pktinfo);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrIn>(fd, &mut iov, Some(&mut cmsg), MsgFlags::MSG_TRUNC)
        .map_err(io::Error::from)?;
    let source = msg
        .address
        .map(|a| SocketAddrV4::new(a.ip(), a.port()))
        .unwrap_or(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
    let mut meta = Meta {
        len: msg.bytes,
        source,
        local_ip: None,
        ifindex: None,
        truncated: msg.flags.contains(MsgFlags::MSG_TRUNC),
    };
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            if let ControlMessageOwned::Ipv4PacketInfo(info) = c {
                let spec = Ipv4Addr::from(u32::from_be(info.ipi_spec_dst.s_addr));
                meta.local_ip = (!spec.is_unspecified()).then_some(spec);
                meta.ifindex = u32::try_from(info.ipi_ifindex).ok().filter(|i| *i != 0);
            }
        }
    }
    meta.len = meta.len.min(iov[0].len());
    Ok(meta)
}

/// Sends `bytes` to `dest`, out of interface `ifindex` (if known) from
/// `source` (if known).
pub async fn send(
    sock: &UdpSocket,
    bytes: &[u8],
    dest: SocketAddrV4,
    ifindex: Option<u32>,
    source: Option<Ipv4Addr>,
) -> io::Result<()> {
    let fd = sock.as_raw_fd();
    sock.async_io(Interest::WRITABLE, || {
        send_now(fd, bytes, dest, ifindex, source)
    })
    .await
}

fn send_now(
    fd: RawFd,
    bytes: &[u8],
    dest: SocketAddrV4,
    ifindex: Option<u32>,
    source: Option<Ipv4Addr>,
) -> io::Result<()> {
    let info = libc::in_pktinfo {
        ipi_ifindex: ifindex.and_then(|i| i32::try_from(i).ok()).unwrap_or(0),
        ipi_spec_dst: libc::in_addr {
            s_addr: u32::from(source.unwrap_or(Ipv4Addr::UNSPECIFIED)).to_be(),
        },
        ipi_addr: libc::in_addr { s_addr: 0 },
    };
    let cmsgs = [ControlMessage::Ipv4PacketInfo(&info)];
    let addr = SockaddrIn::from(dest);
    sendmsg(
        fd,
        &[IoSlice::new(bytes)],
        &cmsgs,
        MsgFlags::empty(),
        Some(&addr),
    )
    .map_err(io::Error::from)?;
    Ok(())
}

/// The first IPv4 address and netmask of interface `name`.
pub fn interface_address(name: &str) -> Option<(Ipv4Addr, Ipv4Addr)> {
    let addrs = nix::ifaddrs::getifaddrs().ok()?;
    addrs.filter(|a| a.interface_name == name).find_map(|a| {
        let ip = a.address?.as_sockaddr_in()?.ip();
        let mask = a
            .netmask
            .and_then(|m| m.as_sockaddr_in().map(|s| s.ip()))
            .unwrap_or(Ipv4Addr::new(255, 255, 255, 0));
        Some((ip, mask))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_has_an_address() {
        assert_eq!(
            interface_address("lo").map(|(ip, _)| ip),
            Some(Ipv4Addr::LOCALHOST)
        );
        assert_eq!(interface_address("no-such-if0"), None);
    }

    #[tokio::test]
    async fn receives_packet_info() {
        let server = udp_socket("127.0.0.1:0".parse().unwrap(), None).unwrap();
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .send_to(b"hello", server.local_addr().unwrap())
            .unwrap();
        let mut buf = [0u8; 64];
        let meta = recv(&server, &mut buf).await.unwrap();
        assert_eq!(&buf[..meta.len], b"hello");
        assert_eq!(meta.local_ip, Some(Ipv4Addr::LOCALHOST));
        assert!(meta.ifindex.is_some());
        let SocketAddr::V4(src) = client.local_addr().unwrap() else {
            unreachable!()
        };
        assert_eq!(meta.source, src);
        send(&server, b"back", meta.source, meta.ifindex, meta.local_ip)
            .await
            .unwrap();
        let n = client.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"back");
    }

    #[test]
    fn ipv6_is_refused() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let err = rt
            .block_on(async { udp_socket("[::1]:0".parse().unwrap(), None) })
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
