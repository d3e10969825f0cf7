//! Address choice in standalone mode.
//!
//! A client gets, in order: its fixed address, the address it was just
//! offered, the address it last leased, the address it asks for, or the
//! lowest free one in `dhcp.range`. An address is free when no other
//! client holds an unexpired lease or a pending offer on it, it is not
//! another client's fixed address, it was not declined recently, and it is
//! not the server's own.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use bramble_core::clients::{Client, Mac};

use crate::handler::State;

/// Addresses this client may not use right now.
pub struct Taken {
    set: HashSet<Ipv4Addr>,
    server_ip: Ipv4Addr,
    range: Option<(u32, u32)>,
}

impl Taken {
    pub fn for_client(state: &State, mac: Mac, server_ip: Ipv4Addr, now: u64) -> Self {
        let mut set: HashSet<Ipv4Addr> = state
            .leases
            .all()
            .into_iter()
            .filter(|l| l.mac != mac && l.expires > now)
            .map(|l| l.ip)
            .collect();
        set.extend(
            state
                .offers()
                .iter()
                .filter(|(m, o)| **m != mac && o.expires > now)
                .map(|(_, o)| o.ip),
        );
        set.extend(
            state
                .registry
                .list()
                .into_iter()
                .filter(|c| c.mac != mac)
                .filter_map(|c| c.fixed_ip),
        );
        set.extend(
            state
                .declined()
                .iter()
                .filter(|(_, until)| **until > now)
                .map(|(ip, _)| *ip),
        );
        Self {
            set,
            server_ip,
            range: state
                .settings
                .range
                .map(|(a, b)| (u32::from(a), u32::from(b))),
        }
    }

    fn in_range(&self, ip: Ipv4Addr) -> bool {
        self.range
            .is_some_and(|(a, b)| (a..=b).contains(&u32::from(ip)))
    }

    /// May `client` hold `ip`?
    pub fn acceptable(&self, client: &Client, ip: Ipv4Addr) -> bool {
        match client.fixed_ip {
            Some(fixed) => fixed == ip,
            None => self.in_range(ip) && ip != self.server_ip && !self.set.contains(&ip),
        }
    }

    /// The address to offer `client`, given what it had and asks for.
    pub fn choose(&self, client: &Client, preferred: &[Option<Ipv4Addr>]) -> Option<Ipv4Addr> {
        if let Some(fixed) = client.fixed_ip {
            return Some(fixed);
        }
        if let Some(ip) = preferred
            .iter()
            .flatten()
            .find(|ip| self.acceptable(client, **ip))
        {
            return Some(*ip);
        }
        let (start, end) = self.range?;
        (start..=end)
            .map(Ipv4Addr::from)
            .find(|ip| self.acceptable(client, *ip))
    }
}
