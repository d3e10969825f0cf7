//! The kernel's IPv4 neighbour (ARP) table: who has which address.
//!
//! This is how a TFTP request or an NFS mount is tied to a registered
//! machine when bramble does not hand out the addresses itself (proxy DHCP
//! next to the school's router, static addresses), like dnsmasq's
//! `tftp-unique-root=mac`. The table is read from `/proc/net/arp`, which
//! shows the network namespace of the reading process.

use std::net::Ipv4Addr;

use crate::clients::Mac;

/// `ATF_COM` in the flags column: the entry is resolved.
const ATF_COM: u32 = 0x2;

/// Looks `ip` up in the live neighbour table.
pub fn lookup(ip: Ipv4Addr) -> Option<Mac> {
    let text = std::fs::read_to_string("/proc/net/arp").ok()?;
    find(&text, ip)
}

/// Finds the resolved entry for `ip` in `/proc/net/arp` text.
pub fn find(table: &str, ip: Ipv4Addr) -> Option<Mac> {
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (addr, flags, mac) = (fields.first()?, fields.get(2)?, fields.get(3)?);
        let flags = u32::from_str_radix(flags.trim_start_matches("0x"), 16).ok()?;
        let mac: Mac = mac.parse().ok()?;
        let usable =
            addr.parse::<Ipv4Addr>().ok()? == ip && flags & ATF_COM != 0 && mac != Mac([0; 6]);
        usable.then_some(mac)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
IP address       HW type     Flags       HW address            Mask     Device
10.77.0.9        0x1         0x0         00:00:00:00:00:00     *        br0
10.77.0.2        0x1         0x2         dc:a6:32:00:00:02     *        br0
10.77.0.3        0x1         0x6         dc:a6:32:00:00:03     *        br0
";

    #[test]
    fn finds_resolved_entries_only() {
        let two: Mac = "dc:a6:32:00:00:02".parse().unwrap();
        assert_eq!(find(TABLE, Ipv4Addr::new(10, 77, 0, 2)), Some(two));
        assert!(find(TABLE, Ipv4Addr::new(10, 77, 0, 3)).is_some());
        assert_eq!(find(TABLE, Ipv4Addr::new(10, 77, 0, 9)), None);
        assert_eq!(find(TABLE, Ipv4Addr::new(10, 77, 0, 4)), None);
        assert_eq!(find("garbage\n1 2\n", Ipv4Addr::new(1, 2, 3, 4)), None);
    }

    #[test]
    fn live_table_is_readable() {
        // Loopback never has an entry; this only checks that reading works.
        assert_eq!(lookup(Ipv4Addr::LOCALHOST), None);
    }
}
