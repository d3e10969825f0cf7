//! The async-tftp handler: one read request from name to body.
//!
//! For each request: validate the name ([`crate::path`]), tie it to a
//! registered client ([`crate::identify`]), take a transfer slot
//! ([`crate::body::Slots`]), then open or generate the file
//! ([`crate::content`]). Every refusal becomes a TFTP error packet sent at
//! once (a firmware probe for a missing file costs one round trip) and is
//! counted; unknown clients and refused names are logged at most once per
//! address per minute, busy refusals at most every ten seconds. Writes are
//! always refused: the service is read-only.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_tftp::packet;
use async_tftp::server::Handler;
use bramble_core::status::bump;
use tracing::{debug, info, warn};

use crate::Context;
use crate::beneath::OpenError;
use crate::body::{Body, Slots};
use crate::content::Lookup;
use crate::identify::{Identified, Identifier, peer_ipv4};
use crate::path;

/// How often one address may produce the same kind of log line.
const LOG_INTERVAL: Duration = Duration::from_secs(60);
/// How often "too many transfers" is logged.
const BUSY_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The counters `bramble_tftp_<name>_total`.
struct Counters {
    requests: Arc<AtomicU64>,
    served: Arc<AtomicU64>,
    not_found: Arc<AtomicU64>,
    unknown_client: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
    busy: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
}

impl Counters {
    fn new(status: &bramble_core::Status) -> Self {
        let c = |name| status.counter("tftp", name);
        Self {
            requests: c("requests"),
            served: c("served"),
            not_found: c("not_found"),
            unknown_client: c("unknown_client"),
            refused: c("refused"),
            busy: c("busy"),
            errors: c("errors"),
            bytes: c("bytes_sent"),
        }
    }
}

/// Remembers when something was last logged for an address.
#[derive(Default)]
struct LogLimiter {
    last: Mutex<HashMap<(IpAddr, &'static str), Instant>>,
}

impl LogLimiter {
    /// True when `kind` may be logged for `ip` now (and records that it was).
    fn allow(&self, ip: IpAddr, kind: &'static str) -> bool {
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if last.len() > 4096 {
            last.retain(|_, t| now.duration_since(*t) < LOG_INTERVAL);
        }
        match last.get(&(ip, kind)) {
            Some(t) if now.duration_since(*t) < LOG_INTERVAL => false,
            _ => {
                last.insert((ip, kind), now);
                true
            }
        }
    }
}

/// Counts refusals for lack of slots and logs them now and then.
#[derive(Default)]
struct BusyLog {
    state: Mutex<(Option<Instant>, u64)>,
}

impl BusyLog {
    fn note(&self, max: u32, peer: &SocketAddr, name: &str) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.1 += 1;
        let due = state.0.is_none_or(|t| t.elapsed() >= BUSY_LOG_INTERVAL);
        if due {
            warn!(
                "tftp: limit of {max} concurrent transfers (tftp.max_transfers) reached: \
                 refused {} request(s) since the last report, latest {name:?} from {peer}",
                state.1
            );
            *state = (Some(Instant::now()), 0);
        }
    }
}

/// Everything a request needs; shared with the blocking pool.
struct Shared {
    identifier: Identifier,
    os_root: PathBuf,
    /// Fixed NFS server address (dhcp.server_ip or the listen address).
    server_ip: Option<Ipv4Addr>,
    slots: Arc<Slots>,
    counters: Counters,
    log: LogLimiter,
    busy: BusyLog,
}

/// The async-tftp [`Handler`] of bramble.
pub struct BootHandler {
    shared: Arc<Shared>,
}

impl BootHandler {
    /// A handler for a server whose socket is bound to `local`.
    pub fn new(ctx: Context, local: SocketAddr) -> Self {
        let listen_ip = match local.ip() {
            IpAddr::V4(ip) if !ip.is_unspecified() => Some(ip),
            _ => None,
        };
        let shared = Shared {
            os_root: ctx.registry.volume().os_dir(),
            identifier: Identifier {
                registry: ctx.registry,
                leases: ctx.leases,
                neighbours: Arc::new(bramble_core::neighbours::lookup),
            },
            server_ip: ctx.server_ip.or(listen_ip),
            slots: Slots::new(ctx.settings.max_transfers),
            counters: Counters::new(&ctx.status),
            log: LogLimiter::default(),
            busy: BusyLog::default(),
        };
        Self {
            shared: Arc::new(shared),
        }
    }
}

impl Handler for BootHandler {
    type Reader = Body;
    type Writer = futures_lite::io::Sink;

    async fn read_req_open(
        &mut self,
        client: &SocketAddr,
        path: &Path,
    ) -> Result<(Body, Option<u64>), packet::Error> {
        let shared = Arc::clone(&self.shared);
        let peer = *client;
        let name = path.to_string_lossy().into_owned();
        blocking::unblock(move || shared.open(peer, &name)).await
    }

    async fn write_req_open(
        &mut self,
        client: &SocketAddr,
        path: &Path,
        _size: Option<u64>,
    ) -> Result<futures_lite::io::Sink, packet::Error> {
        bump(&self.shared.counters.refused);
        if self.shared.log.allow(client.ip(), "write") {
            warn!("tftp: refused write request {path:?} from {client}: the service is read-only");
        }
        Err(packet::Error::IllegalOperation)
    }
}

impl Shared {
    /// Serves one read request (runs on the blocking pool).
    fn open(&self, peer: SocketAddr, name: &str) -> Result<(Body, Option<u64>), packet::Error> {
        bump(&self.counters.requests);
        let parts = path::split(name).map_err(|why| self.refuse(&peer, name, &why))?;
        let Some(who) = self.identifier.identify(&peer, &parts) else {
            return Err(self.unknown(&peer, name));
        };
        let Some(slot) = self.slots.try_take() else {
            bump(&self.counters.busy);
            self.busy.note(self.slots.max(), &peer, name);
            return Err(packet::Error::Msg(
                "server busy (too many transfers), try again".into(),
            ));
        };
        let server = self
            .server_address(&peer)
            .map_err(|e| self.error(&peer, name, &e.into()))?;
        let lookup = Lookup {
            os_root: &self.os_root,
            client: &who.client,
            rest: who.rest,
            server,
        };
        let content = lookup
            .content()
            .map_err(|e| self.failed(&peer, name, &who, e))?;
        let size = content.size();
        bump(&self.counters.served);
        debug!(%peer, client = %who.client.mac, os = %who.client.os, via = ?who.via, size, "tftp: sending {name:?}");
        let body = Body::new(content, slot, Arc::clone(&self.counters.bytes));
        Ok((body, Some(size)))
    }

    /// The address clients mount NFS from: fixed, or the local address the
    /// kernel uses towards `peer` (the one its request arrived on).
    fn server_address(&self, peer: &SocketAddr) -> io::Result<Ipv4Addr> {
        if let Some(ip) = self.server_ip {
            return Ok(ip);
        }
        let probe = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
        let ip = peer_ipv4(peer).ok_or_else(|| io::Error::other("not an IPv4 peer"))?;
        probe.connect((ip, peer.port()))?;
        match probe.local_addr()?.ip() {
            IpAddr::V4(ip) => Ok(ip),
            IpAddr::V6(_) => Err(io::Error::other("no IPv4 route to the client")),
        }
    }

    fn refuse(&self, peer: &SocketAddr, name: &str, why: &path::Refusal) -> packet::Error {
        bump(&self.counters.refused);
        if self.log.allow(peer.ip(), "refused") {
            warn!("tftp: refused {name:?} from {peer}: {why}");
        }
        packet::Error::PermissionDenied
    }

    fn unknown(&self, peer: &SocketAddr, name: &str) -> packet::Error {
        bump(&self.counters.unknown_client);
        bump(&self.counters.not_found);
        if self.log.allow(peer.ip(), "unknown") {
            info!(
                "tftp: {peer} is not a registered client (no known serial or MAC prefix in \
                 {name:?}, address not in the leases or neighbour table): file not found \
                 (logged once a minute per address)"
            );
        }
        packet::Error::FileNotFound
    }

    fn failed(
        &self,
        peer: &SocketAddr,
        name: &str,
        who: &Identified,
        e: OpenError,
    ) -> packet::Error {
        match e {
            OpenError::NotFound => {
                bump(&self.counters.not_found);
                debug!(%peer, client = %who.client.mac, os = %who.client.os, "tftp: no {name:?}: file not found");
                packet::Error::FileNotFound
            }
            OpenError::Escape => {
                bump(&self.counters.refused);
                if self.log.allow(peer.ip(), "escape") {
                    warn!(client = %who.client.mac, "tftp: refused {name:?} from {peer}: a symlink in os {:?} points outside its boot directory", who.client.os);
                }
                packet::Error::PermissionDenied
            }
            OpenError::Io(e) => self.error(peer, name, &e.into()),
        }
    }

    fn error(&self, peer: &SocketAddr, name: &str, e: &OpenError) -> packet::Error {
        bump(&self.counters.errors);
        warn!("tftp: cannot serve {name:?} to {peer}: {e}");
        packet::Error::UnknownError
    }
}
