//! The packet handler: bytes in, at most one reply out, no sockets.
//!
//! [`process`] parses, rate-limits and counts; [`handle`] decides. Only
//! registered clients get answers. An unregistered PXE client or device
//! with a Raspberry Pi MAC prefix is recorded as discovered and gets no
//! reply, so bramble never disturbs anything else on the network. The
//! per-mode decisions live in [`crate::proxy`] and [`crate::standalone`].

use std::collections::HashMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bramble_core::clients::{Client, Mac, Registry, Sighting};
use bramble_core::leases::Leases;
use bramble_core::settings::{DhcpMode, DhcpSettings};
use bramble_core::status::{Status, bump};
use tracing::{debug, info};

use crate::packet::{self, Destination, Reply, Request};
use crate::pi;
use crate::pxe::BootKind;
use crate::ratelimit::RateLimiter;
use crate::{proxy, standalone};

/// Which socket a request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// `dhcp.listen` (67).
    Dhcp,
    /// `dhcp.proxy_listen` (4011): PXE boot server requests.
    Proxy,
}

/// Where a datagram came from and which local address it reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    pub port: Port,
    pub source: SocketAddrV4,
    /// The local address for replies (IP_PKTINFO `ipi_spec_dst`).
    pub local_ip: Option<Ipv4Addr>,
}

/// The time as the handler sees it (passed in so tests control it).
#[derive(Debug, Clone, Copy)]
pub struct Now {
    /// Seconds since the Unix epoch, for leases.
    pub unix: u64,
    /// Monotonic, for the rate limiter.
    pub instant: Instant,
}

impl Now {
    pub fn current() -> Self {
        Self {
            unix: bramble_core::unix_now(),
            instant: Instant::now(),
        }
    }
}

/// Why a request got no reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Silence {
    /// Neither registered, PXE nor a Pi: not ours to look at.
    Stranger,
    /// Unregistered boot client: recorded, not answered.
    Discovered,
    ModeOff,
    /// Proxy mode answers PXE clients only.
    NotPxe,
    /// A request addressed to another server (or a message we never answer).
    NotForUs,
    NoServerAddress,
    RateLimited,
    Released,
    Declined,
    PoolExhausted,
    LeaseNotSaved,
}

impl fmt::Display for Silence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Silence::Stranger => "not a registered client, PXE client or Pi",
            Silence::Discovered => "unregistered boot client recorded",
            Silence::ModeOff => "dhcp.mode is off",
            Silence::NotPxe => "not a PXE client (proxy mode)",
            Silence::NotForUs => "not for this server",
            Silence::NoServerAddress => "no server address known",
            Silence::RateLimited => "rate limited",
            Silence::Released => "lease released",
            Silence::Declined => "address declined",
            Silence::PoolExhausted => "no free address in dhcp.range",
            Silence::LeaseNotSaved => "cannot save the lease",
        };
        f.write_str(text)
    }
}

/// The decision for one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Reply(Box<Reply>),
    Silent(Silence),
}

/// Counters in [`Status`] (`bramble_dhcp_<name>_total`).
pub struct Counters {
    pub received: Arc<AtomicU64>,
    pub malformed: Arc<AtomicU64>,
    pub offers: Arc<AtomicU64>,
    pub acks: Arc<AtomicU64>,
    pub naks: Arc<AtomicU64>,
    pub discovered: Arc<AtomicU64>,
    pub ignored: Arc<AtomicU64>,
    pub rate_limited: Arc<AtomicU64>,
    pub send_errors: Arc<AtomicU64>,
}

impl Counters {
    fn new(status: &Status) -> Self {
        let c = |name| status.counter("dhcp", name);
        Self {
            received: c("received"),
            malformed: c("malformed"),
            offers: c("offers"),
            acks: c("acks"),
            naks: c("naks"),
            discovered: c("discovered"),
            ignored: c("ignored"),
            rate_limited: c("rate_limited"),
            send_errors: c("send_errors"),
        }
    }
}

/// An address offered in standalone mode, held until the client requests
/// it (or someone else's offer times out). Keyed by MAC: every Pi 3 ROM
/// uses the same xid, so the xid alone identifies nobody.
#[derive(Debug, Clone, Copy)]
pub struct PendingOffer {
    pub ip: Ipv4Addr,
    pub xid: u32,
    pub expires: u64,
}

/// Everything the handler reads and the little it remembers between packets.
pub struct State {
    pub settings: DhcpSettings,
    pub registry: Registry,
    pub leases: Leases,
    pub counters: Counters,
    /// From `dhcp.server_ip` or the interface; else per packet from IP_PKTINFO.
    pub server_ip: Option<Ipv4Addr>,
    /// Subnet mask handed out in standalone mode.
    pub netmask: Ipv4Addr,
    pub(crate) offers: Mutex<HashMap<Mac, PendingOffer>>,
    /// Addresses a client declined (someone else uses them), until when.
    pub(crate) declined: Mutex<HashMap<Ipv4Addr, u64>>,
    limiter: Mutex<RateLimiter>,
}

impl State {
    /// `interface` is the address and mask of `dhcp.interface`, if known.
    pub fn new(
        settings: DhcpSettings,
        registry: Registry,
        leases: Leases,
        status: &Status,
        interface: Option<(Ipv4Addr, Ipv4Addr)>,
    ) -> Self {
        let netmask = settings
            .netmask
            .or(interface.map(|(_, mask)| mask))
            .unwrap_or(Ipv4Addr::new(255, 255, 255, 0));
        Self {
            server_ip: settings.server_ip.or(interface.map(|(ip, _)| ip)),
            netmask,
            limiter: Mutex::new(RateLimiter::new(settings.rate_limit_per_client)),
            settings,
            registry,
            leases,
            counters: Counters::new(status),
            offers: Mutex::default(),
            declined: Mutex::default(),
        }
    }

    /// Replies to clients go to this port (68 when serving on 67).
    pub fn client_port(&self) -> u16 {
        self.settings.listen.port().wrapping_add(1)
    }

    /// Relay agents listen on the server port.
    pub fn relay_port(&self) -> u16 {
        self.settings.listen.port()
    }

    pub(crate) fn offers(&self) -> MutexGuard<'_, HashMap<Mac, PendingOffer>> {
        self.offers.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn declined(&self) -> MutexGuard<'_, HashMap<Ipv4Addr, u64>> {
        self.declined.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Parses, rate-limits, handles and counts one datagram.
pub fn process(state: &State, bytes: &[u8], rx: &Received, now: Now) -> Option<Reply> {
    bump(&state.counters.received);
    let req = match packet::parse(bytes) {
        Ok(r) => r,
        Err(e) => {
            bump(&state.counters.malformed);
            debug!(source = %rx.source, "dropping malformed packet: {e}");
            return None;
        }
    };
    let allowed = state
        .limiter
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .allow(req.mac, now.instant);
    if !allowed {
        bump(&state.counters.rate_limited);
        return None;
    }
    match handle(state, &req, rx, now) {
        Outcome::Reply(reply) => {
            count_reply(state, &reply);
            debug!(mac = %req.mac, xid = format_args!("{:#010x}", req.xid()),
                request = ?req.msg_type, reply = ?reply.msg_type(), to = ?reply.destination, "answering");
            Some(*reply)
        }
        Outcome::Silent(why) => {
            if why != Silence::Discovered {
                bump(&state.counters.ignored);
            }
            debug!(mac = %req.mac, request = ?req.msg_type, "no reply: {why}");
            None
        }
    }
}

fn count_reply(state: &State, reply: &Reply) {
    use dhcproto::v4::MessageType;
    match reply.msg_type() {
        Some(MessageType::Offer) => bump(&state.counters.offers),
        Some(MessageType::Ack) => bump(&state.counters.acks),
        Some(MessageType::Nak) => bump(&state.counters.naks),
        _ => {}
    }
}

/// Decides what to answer to one parsed request.
pub fn handle(state: &State, req: &Request, rx: &Received, now: Now) -> Outcome {
    if state.settings.mode == DhcpMode::Off {
        return Outcome::Silent(Silence::ModeOff);
    }
    let Some(client) = state.registry.get(req.mac) else {
        return discover(state, req, rx);
    };
    let pi_id = req.machine_id.as_deref().and_then(pi::decode_option97);
    if let Some(id) = &pi_id {
        state.registry.learn_serial(req.mac, &id.serial);
    }
    let Some(server_ip) = state.server_ip.or(rx.local_ip) else {
        return Outcome::Silent(Silence::NoServerAddress);
    };
    let kind = boot_kind(state, &client, req, pi_id.is_some());
    let ctx = Ctx {
        state,
        client: &client,
        req,
        rx,
        server_ip,
        kind,
        now,
    };
    match (state.settings.mode, rx.port) {
        (_, Port::Proxy) => proxy::on_boot_server_port(&ctx),
        (DhcpMode::Standalone, Port::Dhcp) => standalone::handle(&ctx),
        _ => proxy::on_dhcp_port(&ctx),
    }
}

/// What the mode handlers need about one request.
pub struct Ctx<'a> {
    pub state: &'a State,
    pub client: &'a Client,
    pub req: &'a Request,
    pub rx: &'a Received,
    pub server_ip: Ipv4Addr,
    pub kind: BootKind,
    pub now: Now,
}

impl Ctx<'_> {
    /// RFC 2131 4.1: relay first, NAKs broadcast, ciaddr unicast, else broadcast.
    pub fn destination(&self, nak: bool) -> Destination {
        let req = self.req;
        if !req.giaddr().is_unspecified() {
            Destination::Relay(req.giaddr())
        } else if nak || req.ciaddr().is_unspecified() {
            Destination::Broadcast
        } else {
            Destination::Unicast(req.ciaddr(), self.state.client_port())
        }
    }
}

fn boot_kind(state: &State, client: &Client, req: &Request, pi_guid: bool) -> BootKind {
    let pi = pi_guid
        || client.serial.is_some()
        || pi::has_pi_prefix(req.mac, &state.settings.pi_mac_prefixes);
    if pi && !req.is_ipxe() {
        BootKind::Pi
    } else {
        BootKind::Pc
    }
}

/// Records an unregistered boot client; never answers it.
fn discover(state: &State, req: &Request, rx: &Received) -> Outcome {
    let pi_prefix = pi::has_pi_prefix(req.mac, &state.settings.pi_mac_prefixes);
    if !req.is_pxe() && !pi_prefix {
        return Outcome::Silent(Silence::Stranger);
    }
    let pi_id = req.machine_id.as_deref().and_then(pi::decode_option97);
    let pi_model = match &pi_id {
        Some(id) => Some(id.model.to_string()),
        None if pi_prefix && req.is_pxe() => Some(pi::OLDER_PI.to_string()),
        None if pi_prefix => Some("Raspberry Pi".to_string()),
        None => None,
    };
    let ip = [req.ciaddr(), *rx.source.ip()]
        .into_iter()
        .find(|ip| !ip.is_unspecified());
    let known = state.registry.discovered().iter().any(|d| d.mac == req.mac);
    if !known {
        info!(mac = %req.mac, model = ?pi_model, serial = ?pi_id.as_ref().map(|p| &p.serial),
            "unregistered boot client discovered (not answered)");
    }
    state.registry.record_discovered(
        req.mac,
        Sighting {
            ip,
            arch: req.arch,
            vendor_class: req.vendor_class_text(),
            pi_model,
            serial: pi_id.map(|p| p.serial),
        },
    );
    bump(&state.counters.discovered);
    Outcome::Silent(Silence::Discovered)
}
