//! Who is asking: mapping a request to a registered client.
//!
//! In order: (a) a leading `<serial>/` component naming a registered Pi
//! (Pi 3/4/5 firmware), (b) a leading `<mac>/` component with dashes or
//! colons (Pi 4 `TFTP_PREFIX=2`, and bramble's own iPXE scripts), (c) the
//! source address, through standalone-mode leases and then the kernel
//! neighbour table. A leading component that looks like a serial but names
//! no client is stripped when (c) identifies the machine (its serial may
//! simply not be known yet). Nothing here ever picks "some" client: no
//! match means the request is refused.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use bramble_core::clients::{Client, Mac, Registry};
use bramble_core::leases::Leases;

/// How a request was tied to its client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Serial,
    MacPrefix,
    Lease,
    Neighbour,
}

/// A request tied to a client: the client, how, and the name inside its
/// boot directory (prefix removed).
#[derive(Debug, Clone)]
pub struct Identified<'a> {
    pub client: Client,
    pub via: Via,
    pub rest: &'a [&'a str],
}

/// Looks up the MAC behind an address (the neighbour table in production).
pub type NeighbourLookup = Arc<dyn Fn(Ipv4Addr) -> Option<Mac> + Send + Sync>;

/// Maps requests to clients; cheap to clone.
#[derive(Clone)]
pub struct Identifier {
    pub registry: Registry,
    pub leases: Leases,
    pub neighbours: NeighbourLookup,
}

/// What the first component of a multi-component name claims to be.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Prefix {
    Serial(String),
    Mac(Mac),
}

fn prefix(parts: &[&str]) -> Option<Prefix> {
    let (first, rest) = parts.split_first()?;
    if rest.is_empty() {
        return None;
    }
    if first.len() == 8 && first.chars().all(|c| c.is_ascii_hexdigit()) {
        return Some(Prefix::Serial(first.to_ascii_lowercase()));
    }
    if first.len() == 17 {
        return first.parse().ok().map(Prefix::Mac);
    }
    None
}

/// The IPv4 address of a peer (IPv4-mapped IPv6 included).
pub fn peer_ipv4(peer: &SocketAddr) -> Option<Ipv4Addr> {
    match peer.ip() {
        IpAddr::V4(ip) => Some(ip),
        IpAddr::V6(ip) => ip.to_ipv4_mapped(),
    }
}

impl Identifier {
    /// Ties `parts` (a validated name) from `peer` to a registered client.
    pub fn identify<'a>(&self, peer: &SocketAddr, parts: &'a [&'a str]) -> Option<Identified<'a>> {
        let claimed = prefix(parts);
        match &claimed {
            Some(Prefix::Serial(serial)) => {
                if let Some(client) = self.registry.by_serial(serial) {
                    return Some(Identified {
                        client,
                        via: Via::Serial,
                        rest: &parts[1..],
                    });
                }
            }
            Some(Prefix::Mac(mac)) => {
                // An explicit MAC that is not registered gets nothing.
                return self.registry.get(*mac).map(|client| Identified {
                    client,
                    via: Via::MacPrefix,
                    rest: &parts[1..],
                });
            }
            None => {}
        }
        let (client, via) = self.by_address(peer)?;
        let rest = if claimed.is_some() {
            &parts[1..]
        } else {
            parts
        };
        Some(Identified { client, via, rest })
    }

    /// The registered client holding the peer's address, if any.
    fn by_address(&self, peer: &SocketAddr) -> Option<(Client, Via)> {
        let ip = peer_ipv4(peer)?;
        if let Some(client) = self
            .leases
            .by_ip(ip)
            .and_then(|lease| self.registry.get(lease.mac))
        {
            return Some((client, Via::Lease));
        }
        let mac = (self.neighbours)(ip)?;
        self.registry.get(mac).map(|c| (c, Via::Neighbour))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bramble_core::Volume;
    use bramble_core::leases::Lease;
    use bramble_core::unix_now as now;

    fn setup() -> (tempfile::TempDir, Identifier) {
        let dir = tempfile::tempdir().unwrap();
        let v = Volume::open(dir.path()).unwrap();
        for os in ["osA", "osB"] {
            std::fs::create_dir(v.os_dir().join(os)).unwrap();
        }
        let registry = Registry::open(&v).unwrap();
        for (mac, os, serial) in [
            ("dc:a6:32:00:00:01", "osA", Some("1234abcd")),
            ("dc:a6:32:00:00:02", "osB", None),
            ("dc:a6:32:00:00:03", "osB", None),
        ] {
            registry
                .add(Client {
                    mac: mac.parse().unwrap(),
                    serial: serial.map(String::from),
                    name: None,
                    os: os.into(),
                    kernel_args: None,
                    fixed_ip: None,
                })
                .unwrap();
        }
        let leases = Leases::open(&v).unwrap();
        leases
            .put(Lease {
                mac: "dc:a6:32:00:00:03".parse().unwrap(),
                ip: Ipv4Addr::new(10, 0, 0, 3),
                expires: now() + 60,
                hostname: None,
            })
            .unwrap();
        let neighbours: NeighbourLookup = Arc::new(|ip| {
            (ip == Ipv4Addr::new(10, 0, 0, 2)).then(|| "dc:a6:32:00:00:02".parse().unwrap())
        });
        (
            dir,
            Identifier {
                registry,
                leases,
                neighbours,
            },
        )
    }

    fn peer(last: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, last], 1234))
    }

    fn who(id: &Identifier, from: u8, name: &str) -> Option<(String, Via, String)> {
        let parts: Vec<&str> = name.split('/').collect();
        id.identify(&peer(from), &parts)
            .map(|i| (i.client.mac.to_string(), i.via, i.rest.join("/")))
    }

    #[test]
    fn serial_prefix_wins() {
        let (_d, id) = setup();
        let (mac, via, rest) = who(&id, 99, "1234ABCD/start4.elf").unwrap();
        assert_eq!(
            (mac.as_str(), via, rest.as_str()),
            ("dc:a6:32:00:00:01", Via::Serial, "start4.elf")
        );
        // Even from another registered client's address.
        assert_eq!(who(&id, 2, "1234abcd/x").unwrap().1, Via::Serial);
    }

    #[test]
    fn mac_prefix_with_dashes_or_colons() {
        let (_d, id) = setup();
        for name in [
            "dc-a6-32-00-00-02/kernel8.img",
            "dc:a6:32:00:00:02/kernel8.img",
        ] {
            let (mac, via, rest) = who(&id, 99, name).unwrap();
            assert_eq!(
                (mac.as_str(), via, rest.as_str()),
                ("dc:a6:32:00:00:02", Via::MacPrefix, "kernel8.img")
            );
        }
        // An unregistered MAC gets nothing, even from a known address.
        assert!(who(&id, 2, "dc-a6-32-00-00-99/kernel8.img").is_none());
    }

    #[test]
    fn address_through_leases_then_neighbours() {
        let (_d, id) = setup();
        assert_eq!(who(&id, 3, "bootcode.bin").unwrap().1, Via::Lease);
        let (mac, via, rest) = who(&id, 2, "bootcode.bin").unwrap();
        assert_eq!(
            (mac.as_str(), via, rest.as_str()),
            ("dc:a6:32:00:00:02", Via::Neighbour, "bootcode.bin")
        );
        // An unknown serial prefix from a known address is stripped.
        assert_eq!(who(&id, 2, "0badf00d/start.elf").unwrap().2, "start.elf");
        // A directory that merely is not a prefix stays.
        assert_eq!(who(&id, 2, "overlays/a.dtbo").unwrap().2, "overlays/a.dtbo");
    }

    #[test]
    fn unknown_peers_get_nothing() {
        let (_d, id) = setup();
        assert!(who(&id, 50, "bootcode.bin").is_none());
        assert!(who(&id, 50, "0badf00d/start.elf").is_none());
        let v6: SocketAddr = "[::1]:69".parse().unwrap();
        assert!(id.identify(&v6, &["bootcode.bin"]).is_none());
    }
}
