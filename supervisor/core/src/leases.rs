//! Standalone-mode DHCP leases, shared between DHCP (which grants them) and
//! TFTP/NFS (which map a source address back to a client's MAC).
//!
//! The table lives in memory and in `state/leases.json`; every change is
//! written atomically before the DHCP reply that depends on it is sent, so a
//! restart never hands an address out twice.

use std::collections::BTreeMap;
use std::io;
use std::net::Ipv4Addr;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::atomic;
use crate::clients::Mac;
use crate::volume::Volume;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub mac: Mac,
    pub ip: Ipv4Addr,
    /// Seconds since the Unix epoch.
    pub expires: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct LeasesFile {
    leases: Vec<Lease>,
}

/// The lease table; cheap to clone.
#[derive(Clone)]
pub struct Leases {
    path: std::path::PathBuf,
    map: Arc<RwLock<BTreeMap<Mac, Lease>>>,
}

impl Leases {
    pub fn open(volume: &Volume) -> io::Result<Self> {
        let path = volume.state_dir().join("leases.json");
        let file: LeasesFile = atomic::read_json(&path)?.unwrap_or_default();
        Ok(Self {
            path,
            map: Arc::new(RwLock::new(
                file.leases.into_iter().map(|l| (l.mac, l)).collect(),
            )),
        })
    }

    pub fn all(&self) -> Vec<Lease> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    pub fn by_mac(&self, mac: Mac) -> Option<Lease> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&mac)
            .cloned()
    }

    /// The unexpired lease holding `ip`.
    pub fn by_ip(&self, ip: Ipv4Addr) -> Option<Lease> {
        let t = crate::unix_now();
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .find(|l| l.ip == ip && l.expires > t)
            .cloned()
    }

    /// Inserts or replaces the lease of `lease.mac` and persists the table.
    pub fn put(&self, lease: Lease) -> io::Result<()> {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        let old = map.insert(lease.mac, lease.clone());
        let result = self.save(&map);
        if result.is_err() {
            match old {
                Some(o) => map.insert(o.mac, o),
                None => map.remove(&lease.mac),
            };
        }
        result
    }

    /// Removes the lease of `mac` (release, decline) and persists the table.
    pub fn remove(&self, mac: Mac) -> io::Result<Option<Lease>> {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        let old = map.remove(&mac);
        if old.is_some() {
            self.save(&map)?;
        }
        Ok(old)
    }

    fn save(&self, map: &BTreeMap<Mac, Lease>) -> io::Result<()> {
        atomic::write_json(
            &self.path,
            &LeasesFile {
                leases: map.values().cloned().collect(),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_persist_and_resolve_by_ip() {
        let dir = tempfile::tempdir().unwrap();
        let v = Volume::open(dir.path()).unwrap();
        let l = Leases::open(&v).unwrap();
        let mac: Mac = "dc:a6:32:00:00:01".parse().unwrap();
        l.put(Lease {
            mac,
            ip: Ipv4Addr::new(10, 9, 0, 5),
            expires: crate::unix_now() + 60,
            hostname: None,
        })
        .unwrap();
        let again = Leases::open(&v).unwrap();
        assert_eq!(again.by_ip(Ipv4Addr::new(10, 9, 0, 5)).unwrap().mac, mac);
        again.remove(mac).unwrap();
        assert!(Leases::open(&v).unwrap().all().is_empty());
    }
}
