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

use bramble_core::clients::{Mac, Registry};
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
            .or_else(|| arp_lookup(v4));
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

/// The MAC of `ip` in this network namespace's neighbour table.
fn arp_lookup(ip: Ipv4Addr) -> Option<Mac> {
    let table = std::fs::read_to_string("/proc/net/arp").ok()?;
    parse_arp(&table, ip)
}

fn parse_arp(table: &str, ip: Ipv4Addr) -> Option<Mac> {
    table.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let (addr, flags, mac) = (cols.first()?, cols.get(2)?, cols.get(3)?);
        // Flag 0x2 = ATF_COM: a complete entry.
        let complete = u32::from_str_radix(flags.trim_start_matches("0x"), 16).ok()? & 2 != 0;
        (addr.parse::<Ipv4Addr>().ok()? == ip && complete)
            .then(|| mac.parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_arp_table() {
        let t = "IP address       HW type     Flags       HW address            Mask     Device\n\
                 10.77.0.5        0x1         0x2         dc:a6:32:00:00:05     *        br0\n\
                 10.77.0.6        0x1         0x0         00:00:00:00:00:00     *        br0\n";
        assert_eq!(
            parse_arp(t, "10.77.0.5".parse().unwrap()),
            Some("dc:a6:32:00:00:05".parse().unwrap())
        );
        assert_eq!(parse_arp(t, "10.77.0.6".parse().unwrap()), None);
        assert_eq!(parse_arp(t, "10.77.0.7".parse().unwrap()), None);
    }
}
