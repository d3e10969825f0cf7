//! Which client addresses may use the server.
//!
//! With `nfs.allow_unregistered = false` (the default) a caller's address
//! must map to the MAC of a registered client: through its DHCP lease
//! (`Leases::by_ip`) or, for clients with static addresses or a proxy-mode
//! DHCP, through the kernel's neighbour table (`/proc/net/arp`). Loopback
//! and other addresses without a MAC are refused. Answers are cached for a
//! few seconds per address.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bramble_core::clients::Registry;
use bramble_core::leases::Leases;

const TTL: Duration = Duration::from_secs(5);

/// Decides whether an address belongs to a registered client.
pub struct Admission {
    allow_unregistered: bool,
    registry: Registry,
    leases: Leases,
    cache: Mutex<HashMap<IpAddr, (bool, Instant)>>,
}

impl Admission {
    pub fn new(allow_unregistered: bool, registry: Registry, leases: Leases) -> Self {
        Self {
            allow_unregistered,
            registry,
            leases,
            cache: Mutex::default(),
        }
    }

    /// True when `ip` may mount and use exports.
    pub fn allowed(&self, ip: IpAddr) -> bool {
        if self.allow_unregistered {
            return true;
        }
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((ok, at)) = cache.get(&ip)
            && at.elapsed() < TTL
        {
            return *ok;
        }
        let ok = self.registered(ip);
        if cache.len() > 4096 {
            cache.clear();
        }
        cache.insert(ip, (ok, Instant::now()));
        ok
    }

    fn registered(&self, ip: IpAddr) -> bool {
        let Some(v4) = ipv4(ip) else { return false };
        if v4.is_loopback() || v4.is_unspecified() {
            return false;
        }
        let mac = self
            .leases
            .by_ip(v4)
            .map(|l| l.mac)
            .or_else(|| bramble_core::neighbours::lookup(v4));
        match mac {
            Some(mac) => self.registry.get(mac).is_some(),
            None => false,
        }
    }
}

fn ipv4(ip: IpAddr) -> Option<Ipv4Addr> {
    match ip {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(v6) => v6.to_ipv4_mapped(),
    }
}
