//! Looking for another DHCP server before serving addresses.
//!
//! Standalone mode on a network that already has a DHCP server would hand
//! out conflicting addresses, so [`probe_other_server`] broadcasts a
//! DISCOVER from a random, locally administered MAC and reports the first
//! server that offers anything.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use dhcproto::v4::{self, DhcpOption, MessageType, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable};
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::net;

/// Broadcasts a DISCOVER (from port `listen_port + 1` to `listen_port`) on
/// `interface` and returns the address of the first server answering it
/// within `timeout` (option 54, else the reply's source address).
pub async fn probe_other_server(
    interface: Option<&str>,
    listen_port: u16,
    timeout: Duration,
) -> Option<Ipv4Addr> {
    let client_port = listen_port.checked_add(1)?;
    let bind = SocketAddr::from((Ipv4Addr::UNSPECIFIED, client_port));
    let sock = match net::udp_socket(bind, interface) {
        Ok(s) => s,
        Err(e) => {
            warn!("cannot probe for another DHCP server: {e}");
            return None;
        }
    };
    let mac: [u8; 6] = {
        let r: [u8; 5] = rand::random();
        [0x02, r[0], r[1], r[2], r[3], r[4]]
    };
    let xid: u32 = rand::random();
    let discover = discover_packet(xid, mac);
    let dest = SocketAddrV4::new(Ipv4Addr::BROADCAST, listen_port);
    let deadline = Instant::now() + timeout;
    // Two tries: one at once, one halfway, in case the first is lost.
    let resend_at = Instant::now() + timeout / 2;
    let mut resent = false;
    if let Err(e) = net::send(&sock, &discover, dest, None, None).await {
        warn!("cannot send the probe DISCOVER: {e}");
        return None;
    }
    let mut buf = vec![0u8; 2048];
    loop {
        let wake = if resent { deadline } else { resend_at };
        match tokio::time::timeout_at(wake, net::recv(&sock, &mut buf)).await {
            Ok(Ok(meta)) => {
                if let Some(server) = answer_from(&buf[..meta.len], xid, mac, meta.source) {
                    return Some(server);
                }
            }
            Ok(Err(e)) => debug!("probe receive error: {e}"),
            Err(_) if !resent => {
                resent = true;
                let _ = net::send(&sock, &discover, dest, None, None).await;
            }
            Err(_) => return None,
        }
    }
}

fn discover_packet(xid: u32, mac: [u8; 6]) -> Vec<u8> {
    let unspecified = Ipv4Addr::UNSPECIFIED;
    let mut msg = v4::Message::new_with_id(
        xid,
        unspecified,
        unspecified,
        unspecified,
        unspecified,
        &mac,
    );
    msg.set_flags(v4::Flags::default().set_broadcast());
    let opts = msg.opts_mut();
    opts.insert(DhcpOption::MessageType(MessageType::Discover));
    opts.insert(DhcpOption::ParameterRequestList(vec![
        OptionCode::SubnetMask,
        OptionCode::Router,
        OptionCode::ServerIdentifier,
    ]));
    let mut bytes = msg.to_vec().unwrap_or_default();
    if bytes.len() < crate::packet::MIN_REPLY_LEN {
        bytes.resize(crate::packet::MIN_REPLY_LEN, 0);
    }
    bytes
}

/// The answering server, if `bytes` is a reply to our DISCOVER.
fn answer_from(bytes: &[u8], xid: u32, mac: [u8; 6], source: SocketAddrV4) -> Option<Ipv4Addr> {
    if bytes.len() < crate::packet::HEADER_LEN || bytes[0] != 2 || bytes.get(28..34)? != mac {
        return None;
    }
    let msg = v4::Message::decode(&mut Decoder::new(bytes)).ok()?;
    if msg.xid() != xid {
        return None;
    }
    let server = match msg.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(ip)) => *ip,
        _ => *source.ip(),
    };
    Some(server)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_only_answers_to_our_discover() {
        let mac = [2, 1, 2, 3, 4, 5];
        let d = discover_packet(7, mac);
        let src = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 9), 67);
        // Our own DISCOVER (op 1) is not an answer.
        assert_eq!(answer_from(&d, 7, mac, src), None);
        let mut offer = d.clone();
        offer[0] = 2;
        assert_eq!(
            answer_from(&offer, 7, mac, src),
            Some(Ipv4Addr::new(10, 0, 0, 9))
        );
        assert_eq!(answer_from(&offer, 8, mac, src), None);
        assert_eq!(answer_from(&offer[..100], 7, mac, src), None);
    }

    #[tokio::test]
    async fn nobody_answers_on_loopback() {
        let got = probe_other_server(Some("lo"), 40_067, Duration::from_millis(200)).await;
        assert_eq!(got, None);
    }
}
