//! The wire: turning received bytes into a [`Request`] and a [`Reply`] into
//! bytes.
//!
//! Parsing is strict about what bramble relies on (a BOOTREQUEST from an
//! Ethernet client with the DHCP magic cookie and a message type) and
//! tolerant about everything else; it never panics on hostile input.
//! Encoding writes the options in the order given (message type and server
//! identifier first, as ISC dhcpd and dnsmasq do, which some boot ROMs
//! expect) and pads the packet to the 300-byte BOOTP minimum.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use bramble_core::clients::Mac;
use dhcproto::v4::{self, DhcpOption, MessageType, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};

/// Smallest packet that can hold the fixed header and the magic cookie.
pub const HEADER_LEN: usize = 240;
/// BOOTP's minimum message size (RFC 1542); shorter replies confuse old ROMs.
pub const MIN_REPLY_LEN: usize = 300;
/// The DHCP magic cookie.
pub const MAGIC: [u8; 4] = [99, 130, 83, 99];
/// iPXE's encapsulated options (RFC-less, documented by iPXE).
pub const OPT_IPXE: u8 = 175;

/// Why a received packet was dropped before handling.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("too short: {0} bytes")]
    TooShort(usize),
    #[error("not a BOOTREQUEST (op {0})")]
    NotRequest(u8),
    #[error("not an Ethernet client (htype {0}, hlen {1})")]
    NotEthernet(u8, u8),
    #[error("no DHCP magic cookie")]
    NoCookie,
    #[error("cannot decode: {0}")]
    Decode(String),
    #[error("no DHCP message type (plain BOOTP)")]
    NoMessageType,
}

/// What bramble reads from a client's request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub message: v4::Message,
    pub msg_type: MessageType,
    pub mac: Mac,
    /// Option 60.
    pub vendor_class: Option<Vec<u8>>,
    /// Option 93 (first value).
    pub arch: Option<u16>,
    /// Option 77, raw.
    pub user_class: Option<Vec<u8>>,
    /// Option 175 present (iPXE).
    pub ipxe_options: bool,
    /// Option 97, raw.
    pub machine_id: Option<Vec<u8>>,
    /// Option 50.
    pub requested_ip: Option<Ipv4Addr>,
    /// Option 54.
    pub server_id: Option<Ipv4Addr>,
    /// Option 12.
    pub hostname: Option<String>,
    /// Option 43 sub-option 71 (PXE boot item), echoed on port 4011.
    pub boot_item: Option<Vec<u8>>,
}

impl Request {
    pub fn xid(&self) -> u32 {
        self.message.xid()
    }

    pub fn ciaddr(&self) -> Ipv4Addr {
        self.message.ciaddr()
    }

    pub fn giaddr(&self) -> Ipv4Addr {
        self.message.giaddr()
    }

    pub fn broadcast_flag(&self) -> bool {
        self.message.flags().broadcast()
    }

    /// Option 60 starts with `PXEClient` (PXE ROMs, Pi boot ROM/EEPROM, iPXE).
    pub fn is_pxe(&self) -> bool {
        self.vendor_class
            .as_deref()
            .is_some_and(|v| v.starts_with(b"PXEClient"))
    }

    /// iPXE announces itself by user class `iPXE` or by its option 175.
    pub fn is_ipxe(&self) -> bool {
        self.ipxe_options
            || self
                .user_class
                .as_deref()
                .is_some_and(|u| u.windows(4).any(|w| w == b"iPXE"))
    }

    /// Option 60 as text, for logs and discovery records.
    pub fn vendor_class_text(&self) -> Option<String> {
        self.vendor_class
            .as_deref()
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }
}

/// Parses a received datagram.
///
/// dhcproto decodes the fixed header only; options are walked here, because
/// several of dhcproto's per-option decoders assume well-formed lengths
/// (some `debug_assert!` them) and hostile input must not reach them.
pub fn parse(bytes: &[u8]) -> Result<Request, Malformed> {
    if bytes.len() < HEADER_LEN {
        return Err(Malformed::TooShort(bytes.len()));
    }
    if bytes[0] != 1 {
        return Err(Malformed::NotRequest(bytes[0]));
    }
    if bytes[1] != 1 || bytes[2] != 6 {
        return Err(Malformed::NotEthernet(bytes[1], bytes[2]));
    }
    if bytes[236..240] != MAGIC {
        return Err(Malformed::NoCookie);
    }
    let mut header = bytes[..HEADER_LEN].to_vec();
    header.push(255);
    let message = v4::Message::decode(&mut Decoder::new(&header))
        .map_err(|e| Malformed::Decode(e.to_string()))?;
    let options = walk_options(&bytes[HEADER_LEN..])?;
    let msg_type = match options.get(&53).map(Vec::as_slice) {
        Some([t]) => MessageType::from(*t),
        Some(_) => return Err(Malformed::Decode("option 53 must be one byte".into())),
        None => return Err(Malformed::NoMessageType),
    };
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&bytes[28..34]);
    Ok(from_options(message, msg_type, Mac(mac), options))
}

/// Options by code; a code repeated is concatenated (RFC 3396).
fn walk_options(mut rest: &[u8]) -> Result<BTreeMap<u8, Vec<u8>>, Malformed> {
    let mut out: BTreeMap<u8, Vec<u8>> = BTreeMap::new();
    while let [code, tail @ ..] = rest {
        match *code {
            0 => rest = tail,
            255 => break,
            _ => {
                let (&len, body) = tail
                    .split_first()
                    .ok_or_else(|| Malformed::Decode(format!("option {code} has no length")))?;
                let value = body.get(..len as usize).ok_or_else(|| {
                    Malformed::Decode(format!("option {code} truncated ({len} bytes announced)"))
                })?;
                out.entry(*code).or_default().extend_from_slice(value);
                rest = &body[len as usize..];
            }
        }
    }
    Ok(out)
}

fn ipv4(value: Option<&Vec<u8>>) -> Option<Ipv4Addr> {
    let b: [u8; 4] = value?.as_slice().try_into().ok()?;
    Some(Ipv4Addr::from(b))
}

fn from_options(
    message: v4::Message,
    msg_type: MessageType,
    mac: Mac,
    mut o: BTreeMap<u8, Vec<u8>>,
) -> Request {
    let arch = o
        .get(&93)
        .and_then(|v| v.get(..2))
        .map(|b| u16::from_be_bytes([b[0], b[1]]));
    Request {
        message,
        msg_type,
        mac,
        arch,
        requested_ip: ipv4(o.get(&50)),
        server_id: ipv4(o.get(&54)),
        hostname: o.get(&12).map(|h| String::from_utf8_lossy(h).into_owned()),
        boot_item: o.get(&43).and_then(|v| pxe_sub_option(v, 71)),
        ipxe_options: o.contains_key(&OPT_IPXE),
        vendor_class: o.remove(&60),
        user_class: o.remove(&77),
        machine_id: o.remove(&97),
    }
}

/// Finds sub-option `code` in encapsulated vendor options.
pub fn pxe_sub_option(data: &[u8], code: u8) -> Option<Vec<u8>> {
    let mut rest = data;
    while let [c, tail @ ..] = rest {
        match *c {
            0 => rest = tail,
            255 => return None,
            _ => {
                let (&len, body) = tail.split_first()?;
                let value = body.get(..len as usize)?;
                if *c == code {
                    return Some(value.to_vec());
                }
                rest = &body[len as usize..];
            }
        }
    }
    None
}

/// Where a reply goes (RFC 2131 section 4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// 255.255.255.255 on the interface the request came in on.
    Broadcast,
    /// A unicast address and port (ciaddr:68, or the source of a 4011 request).
    Unicast(Ipv4Addr, u16),
    /// A relay agent (giaddr), at the server port.
    Relay(Ipv4Addr),
}

/// A reply ready to encode: the fixed header plus ordered options.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub header: v4::Message,
    pub options: Vec<DhcpOption>,
    pub destination: Destination,
    /// The address to send from (option 54 and siaddr use it too).
    pub server_ip: Ipv4Addr,
}

impl Reply {
    /// A BOOTREPLY mirroring the request's xid, flags, giaddr and chaddr.
    pub fn to(req: &Request, msg_type: MessageType, server_ip: Ipv4Addr) -> Self {
        let mut header = v4::Message::new_with_id(
            req.xid(),
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            req.giaddr(),
            &req.mac.0,
        );
        header
            .set_opcode(v4::Opcode::BootReply)
            .set_flags(req.message.flags());
        Self {
            header,
            options: vec![
                DhcpOption::MessageType(msg_type),
                DhcpOption::ServerIdentifier(server_ip),
            ],
            destination: Destination::Broadcast,
            server_ip,
        }
    }

    pub fn msg_type(&self) -> Option<MessageType> {
        self.options.iter().find_map(|o| match o {
            DhcpOption::MessageType(t) => Some(*t),
            _ => None,
        })
    }

    /// The option with `code`, if present.
    pub fn option(&self, code: OptionCode) -> Option<&DhcpOption> {
        self.options.iter().find(|o| OptionCode::from(*o) == code)
    }

    /// Header, options in order, End, zero padding to [`MIN_REPLY_LEN`].
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(MIN_REPLY_LEN + 64);
        let mut e = Encoder::new(&mut buf);
        // Options are written below; the header's own map stays empty so
        // dhcproto writes only the fixed part and the cookie.
        let mut ok = self.header.encode(&mut e).is_ok();
        for opt in &self.options {
            ok &= opt.encode(&mut e).is_ok();
        }
        ok &= DhcpOption::End.encode(&mut e).is_ok();
        debug_assert!(ok, "encoding into a Vec cannot fail");
        if buf.len() < MIN_REPLY_LEN {
            buf.resize(MIN_REPLY_LEN, 0);
        }
        buf
    }
}

/// Raw option bytes (code, length, value) of an encoded packet, in order;
/// for tests and the probe. Stops at End or at the first truncated option.
pub fn raw_options(packet: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut rest = packet.get(HEADER_LEN..).unwrap_or_default();
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

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn discover_bytes(mac: [u8; 6], extra: &[(u8, &[u8])]) -> Vec<u8> {
        let mut b = vec![0u8; HEADER_LEN];
        b[0] = 1;
        b[1] = 1;
        b[2] = 6;
        b[4..8].copy_from_slice(&0x26f3_0339u32.to_be_bytes());
        b[28..34].copy_from_slice(&mac);
        b[236..240].copy_from_slice(&MAGIC);
        b.extend([53, 1, 1]);
        for (code, value) in extra {
            b.push(*code);
            b.push(value.len() as u8);
            b.extend_from_slice(value);
        }
        b.push(255);
        b
    }

    #[test]
    fn parses_a_pi3_discover() {
        let b = discover_bytes(
            [0xb8, 0x27, 0xeb, 1, 2, 3],
            &[(60, b"PXEClient:Arch:00000:UNDI:002001"), (93, &[0, 0])],
        );
        let r = parse(&b).unwrap();
        assert_eq!(r.msg_type, MessageType::Discover);
        assert_eq!(r.mac.to_string(), "b8:27:eb:01:02:03");
        assert_eq!(r.xid(), 0x26f30339);
        assert!(r.is_pxe());
        assert_eq!(r.arch, Some(0));
        assert!(!r.is_ipxe());
    }

    #[test]
    fn rejects_what_it_cannot_use() {
        assert_eq!(parse(&[1; 10]), Err(Malformed::TooShort(10)));
        let mut b = discover_bytes([2, 0, 0, 0, 0, 1], &[]);
        b[0] = 2;
        assert_eq!(parse(&b), Err(Malformed::NotRequest(2)));
        let mut b = discover_bytes([2, 0, 0, 0, 0, 1], &[]);
        b[2] = 17;
        assert_eq!(parse(&b), Err(Malformed::NotEthernet(1, 17)));
        let mut b = discover_bytes([2, 0, 0, 0, 0, 1], &[]);
        b[236] = 0;
        assert_eq!(parse(&b), Err(Malformed::NoCookie));
        let mut b = discover_bytes([2, 0, 0, 0, 0, 1], &[]);
        b.truncate(HEADER_LEN);
        assert_eq!(parse(&b), Err(Malformed::NoMessageType));
    }

    #[test]
    fn ipxe_is_recognised_by_user_class_or_option_175() {
        let b = discover_bytes([2, 0, 0, 0, 0, 1], &[(77, b"iPXE")]);
        assert!(parse(&b).unwrap().is_ipxe());
        let b = discover_bytes([2, 0, 0, 0, 0, 1], &[(175, &[177, 1, 1])]);
        assert!(parse(&b).unwrap().is_ipxe());
    }

    #[test]
    fn sub_options_are_found_and_truncation_is_safe() {
        assert_eq!(
            pxe_sub_option(&[71, 4, 0, 0, 0, 0, 255], 71),
            Some(vec![0; 4])
        );
        assert_eq!(pxe_sub_option(&[6, 1, 3, 71, 4, 0, 0], 71), None);
        assert_eq!(pxe_sub_option(&[0, 0, 6], 71), None);
    }

    #[test]
    fn replies_are_padded_and_ordered() {
        let b = discover_bytes([2, 0, 0, 0, 0, 1], &[]);
        let req = parse(&b).unwrap();
        let mut reply = Reply::to(&req, MessageType::Offer, Ipv4Addr::new(10, 0, 0, 1));
        reply
            .options
            .push(DhcpOption::ClassIdentifier(b"PXEClient".to_vec()));
        let bytes = reply.encode();
        assert_eq!(bytes.len(), MIN_REPLY_LEN);
        assert_eq!(bytes[0], 2);
        assert_eq!(&bytes[4..8], &0x26f3_0339u32.to_be_bytes());
        let opts = raw_options(&bytes);
        assert_eq!(
            opts,
            vec![
                (53, vec![2]),
                (54, vec![10, 0, 0, 1]),
                (60, b"PXEClient".to_vec())
            ]
        );
    }
}
