//! The registry of clients: registered machines and discovered Pis.
//!
//! Registered clients (MAC, optional Pi serial, name, assigned OS, extra
//! kernel arguments, optional fixed address) are what every service serves;
//! nothing else gets an answer. Devices that ask for a network boot without
//! being registered are recorded as *discovered* so the operator can adopt
//! them. Both lists live in `state/` on the volume, written atomically.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::atomic;
use crate::volume::Volume;

/// A hardware (Ethernet) address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mac(pub [u8; 6]);

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl FromStr for Mac {
    type Err = String;
    /// Accepts `aa:bb:cc:dd:ee:ff`, `aa-bb-cc-dd-ee-ff` and `aabbccddeeff`.
    fn from_str(s: &str) -> Result<Self, String> {
        let hex: String = s.chars().filter(|c| *c != ':' && *c != '-').collect();
        let separators_ok = s.len() == 12
            || (s.len() == 17 && s.chars().skip(2).step_by(3).all(|c| c == ':' || c == '-'));
        if hex.len() != 12 || !separators_ok || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!("not a MAC address: {s:?}"));
        }
        let mut out = [0u8; 6];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16).map_err(|e| e.to_string())?;
        }
        Ok(Mac(out))
    }
}

impl Serialize for Mac {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Normalises a Raspberry Pi serial: 8 hex digits, lowercase (`"0x1234abcd"` ok).
pub fn parse_serial(s: &str) -> Result<String, String> {
    let t = s.trim().trim_start_matches("0x").to_ascii_lowercase();
    if t.is_empty() || t.len() > 16 || !t.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!("not a Raspberry Pi serial (hex digits): {s:?}"));
    }
    Ok(if t.len() < 8 {
        format!("{t:0>8}")
    } else {
        t[t.len() - 8..].to_string()
    })
}

/// Most writes of `state/discovered.json` in one second.
const DISCOVERY_SAVES_PER_SEC: u32 = 10;

/// Most devices kept in the discovered list.
pub const MAX_DISCOVERED: usize = 4096;

/// A registered client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Client {
    pub mac: Mac,
    /// Pi serial (8 lowercase hex digits) used in TFTP paths.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Name of the OS tree under `os/` this client boots.
    pub os: String,
    /// Extra kernel command-line arguments appended for this client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_args: Option<String>,
    /// Fixed address in standalone mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_ip: Option<Ipv4Addr>,
}

/// A device that asked to boot but is not registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discovered {
    pub mac: Mac,
    pub first_seen: u64,
    pub last_seen: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<Ipv4Addr>,
    /// Client system architecture (DHCP option 93).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor_class: Option<String>,
    /// `RPi4`, `RPi5` (option 97) or `Pi 3 or older` (MAC prefix, Pi PXE class).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pi_model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    pub requests: u64,
}

/// What a DHCP request told us about an unregistered device.
#[derive(Debug, Clone, Default)]
pub struct Sighting {
    pub ip: Option<Ipv4Addr>,
    pub arch: Option<u16>,
    pub vendor_class: Option<String>,
    pub pi_model: Option<String>,
    pub serial: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("client {0} is already registered")]
    Exists(Mac),
    #[error("no client {0} is registered")]
    NotFound(Mac),
    #[error("os {0:?} does not exist (no directory os/{0} on the volume)")]
    NoSuchOs(String),
    #[error("{0}")]
    Invalid(String),
    #[error("cannot save state: {0}")]
    Io(#[from] io::Error),
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct ClientsFile {
    clients: Vec<Client>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct DiscoveredFile {
    discovered: Vec<Discovered>,
}

/// Registered and discovered clients; shared by every service.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    volume: Volume,
    clients: RwLock<BTreeMap<Mac, Client>>,
    discovered: RwLock<BTreeMap<Mac, Discovered>>,
    /// Serials learned from option 97 of registered Pis that had none.
    learned_serials: RwLock<BTreeMap<String, Mac>>,
    /// (second of the last save, saves made in that second).
    last_discovery_save: RwLock<(u64, u32)>,
}

/// Checks a name for an OS tree: one plain path component.
pub fn valid_os_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

impl Registry {
    /// Loads both lists from the volume.
    pub fn open(volume: &Volume) -> io::Result<Self> {
        let clients: ClientsFile =
            atomic::read_json(&volume.state_dir().join("clients.json"))?.unwrap_or_default();
        let discovered: DiscoveredFile =
            atomic::read_json(&volume.state_dir().join("discovered.json"))?.unwrap_or_default();
        Ok(Self {
            inner: Arc::new(Inner {
                volume: volume.clone(),
                clients: RwLock::new(clients.clients.into_iter().map(|c| (c.mac, c)).collect()),
                discovered: RwLock::new(
                    discovered
                        .discovered
                        .into_iter()
                        .map(|d| (d.mac, d))
                        .collect(),
                ),
                learned_serials: RwLock::default(),
                last_discovery_save: RwLock::new((0, 0)),
            }),
        })
    }

    pub fn volume(&self) -> &Volume {
        &self.inner.volume
    }

    fn clients_path(&self) -> PathBuf {
        self.inner.volume.state_dir().join("clients.json")
    }

    fn save_clients(&self, clients: &BTreeMap<Mac, Client>) -> io::Result<()> {
        atomic::write_json(
            &self.clients_path(),
            &ClientsFile {
                clients: clients.values().cloned().collect(),
            },
        )
    }

    fn validate(&self, client: &Client) -> Result<(), RegistryError> {
        if !valid_os_name(&client.os) {
            return Err(RegistryError::Invalid(format!(
                "os: not a valid OS name: {:?}",
                client.os
            )));
        }
        if !self.inner.volume.os_dir().join(&client.os).is_dir() {
            return Err(RegistryError::NoSuchOs(client.os.clone()));
        }
        if let Some(s) = &client.serial
            && parse_serial(s).as_deref() != Ok(s.as_str())
        {
            return Err(RegistryError::Invalid(format!(
                "serial: must be 8 lowercase hex digits: {s:?}"
            )));
        }
        if let Some(args) = &client.kernel_args
            && args.contains(['\n', '\r', '\0'])
        {
            return Err(RegistryError::Invalid(
                "kernel_args: must be a single line".into(),
            ));
        }
        Ok(())
    }

    /// Registers a new client (the OS tree must exist).
    pub fn add(&self, client: Client) -> Result<Client, RegistryError> {
        self.validate(&client)?;
        let mut clients = self
            .inner
            .clients
            .write()
            .unwrap_or_else(|p| p.into_inner());
        if clients.contains_key(&client.mac) {
            return Err(RegistryError::Exists(client.mac));
        }
        clients.insert(client.mac, client.clone());
        if let Err(e) = self.save_clients(&clients) {
            clients.remove(&client.mac);
            return Err(e.into());
        }
        drop(clients);
        self.inner
            .discovered
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&client.mac);
        Ok(client)
    }

    /// Replaces an existing client's record (e.g. a new OS assignment).
    pub fn update(&self, client: Client) -> Result<Client, RegistryError> {
        self.validate(&client)?;
        let mut clients = self
            .inner
            .clients
            .write()
            .unwrap_or_else(|p| p.into_inner());
        let Some(old) = clients.insert(client.mac, client.clone()) else {
            clients.remove(&client.mac);
            return Err(RegistryError::NotFound(client.mac));
        };
        if let Err(e) = self.save_clients(&clients) {
            clients.insert(old.mac, old);
            return Err(e.into());
        }
        Ok(client)
    }

    pub fn remove(&self, mac: Mac) -> Result<Client, RegistryError> {
        let mut clients = self
            .inner
            .clients
            .write()
            .unwrap_or_else(|p| p.into_inner());
        let old = clients.remove(&mac).ok_or(RegistryError::NotFound(mac))?;
        if let Err(e) = self.save_clients(&clients) {
            clients.insert(mac, old);
            return Err(e.into());
        }
        Ok(old)
    }

    pub fn get(&self, mac: Mac) -> Option<Client> {
        self.inner
            .clients
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&mac)
            .cloned()
    }

    pub fn list(&self) -> Vec<Client> {
        self.inner
            .clients
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// The client with this Pi serial (from its record, or learned from option 97).
    pub fn by_serial(&self, serial: &str) -> Option<Client> {
        let serial = serial.to_ascii_lowercase();
        let clients = self.inner.clients.read().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients
            .values()
            .find(|c| c.serial.as_deref() == Some(&serial))
        {
            return Some(c.clone());
        }
        let learned = self
            .inner
            .learned_serials
            .read()
            .unwrap_or_else(|p| p.into_inner());
        learned
            .get(&serial)
            .and_then(|mac| clients.get(mac).cloned())
    }

    /// Remembers that a registered client's firmware reported this serial.
    pub fn learn_serial(&self, mac: Mac, serial: &str) {
        if let Ok(s) = parse_serial(serial) {
            self.inner
                .learned_serials
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(s, mac);
        }
    }

    /// Records a request from an unregistered device. Saved at once for a
    /// new device, at most every 5 s otherwise, at most 10 writes a second;
    /// the list keeps the [`MAX_DISCOVERED`] most recently seen devices.
    pub fn record_discovered(&self, mac: Mac, seen: Sighting) {
        let t = crate::unix_now();
        let mut map = self
            .inner
            .discovered
            .write()
            .unwrap_or_else(|p| p.into_inner());
        let is_new = !map.contains_key(&mac);
        if is_new && map.len() >= MAX_DISCOVERED {
            // A flood of spoofed MACs must not grow the list (and the file)
            // without bound: forget the device seen longest ago.
            if let Some(oldest) = map.values().min_by_key(|d| d.last_seen).map(|d| d.mac) {
                map.remove(&oldest);
            }
        }
        let entry = map.entry(mac).or_insert_with(|| Discovered {
            mac,
            first_seen: t,
            last_seen: t,
            ip: None,
            arch: None,
            vendor_class: None,
            pi_model: None,
            serial: None,
            requests: 0,
        });
        entry.last_seen = t;
        entry.requests += 1;
        entry.ip = seen.ip.or(entry.ip);
        entry.arch = seen.arch.or(entry.arch);
        entry.vendor_class = seen.vendor_class.or(entry.vendor_class.take());
        entry.pi_model = seen.pi_model.or(entry.pi_model.take());
        entry.serial = seen.serial.or(entry.serial.take());
        let mut last = self
            .inner
            .last_discovery_save
            .write()
            .unwrap_or_else(|p| p.into_inner());
        // A new device is saved at once, a known one every 5 s; never more
        // than DISCOVERY_SAVES_PER_SEC writes a second, so a flood of new
        // MACs does not turn into a write per packet.
        let (second, count) = *last;
        let budget = t > second || count < DISCOVERY_SAVES_PER_SEC;
        if budget && (is_new || t >= second + 5) {
            *last = (t, if t > second { 1 } else { count + 1 });
            let file = DiscoveredFile {
                discovered: map.values().cloned().collect(),
            };
            if let Err(e) = atomic::write_json(
                &self.inner.volume.state_dir().join("discovered.json"),
                &file,
            ) {
                tracing::warn!("cannot save discovered clients: {e}");
            }
        }
    }

    pub fn discovered(&self) -> Vec<Discovered> {
        self.inner
            .discovered
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, Registry) {
        let dir = tempfile::tempdir().unwrap();
        let v = Volume::open(dir.path()).unwrap();
        std::fs::create_dir(v.os_dir().join("bookworm")).unwrap();
        let r = Registry::open(&v).unwrap();
        (dir, r)
    }

    fn client(mac: &str) -> Client {
        Client {
            mac: mac.parse().unwrap(),
            serial: Some("1234abcd".into()),
            name: None,
            os: "bookworm".into(),
            kernel_args: None,
            fixed_ip: None,
        }
    }

    #[test]
    fn mac_forms() {
        let m: Mac = "DC-A6-32-01-02-03".parse().unwrap();
        assert_eq!(m.to_string(), "dc:a6:32:01:02:03");
        assert_eq!("dca632010203".parse::<Mac>().unwrap(), m);
        assert!("dc:a6:32:01:02".parse::<Mac>().is_err());
        assert!("dc:a6:32:01:02:0g".parse::<Mac>().is_err());
        assert!("dca6:32:01:02:03".parse::<Mac>().is_err());
    }

    #[test]
    fn serials_normalise() {
        assert_eq!(parse_serial("0x1234ABCD").unwrap(), "1234abcd");
        assert_eq!(parse_serial("abcd").unwrap(), "0000abcd");
        assert_eq!(parse_serial("100000001234abcd").unwrap(), "1234abcd");
        assert!(parse_serial("xyz").is_err());
    }

    #[test]
    fn add_list_remove_persist() {
        let (dir, r) = setup();
        r.add(client("dc:a6:32:00:00:01")).unwrap();
        assert!(matches!(
            r.add(client("dc:a6:32:00:00:01")),
            Err(RegistryError::Exists(_))
        ));
        let mut bad = client("dc:a6:32:00:00:02");
        bad.os = "missing".into();
        assert!(matches!(r.add(bad), Err(RegistryError::NoSuchOs(_))));
        let mut evil = client("dc:a6:32:00:00:02");
        evil.os = "../etc".into();
        assert!(matches!(r.add(evil), Err(RegistryError::Invalid(_))));
        let reopened = Registry::open(&Volume::open(dir.path()).unwrap()).unwrap();
        assert_eq!(reopened.list().len(), 1);
        assert_eq!(reopened.by_serial("1234ABCD").unwrap().os, "bookworm");
        reopened
            .remove("dc:a6:32:00:00:01".parse().unwrap())
            .unwrap();
        assert!(
            Registry::open(&Volume::open(dir.path()).unwrap())
                .unwrap()
                .list()
                .is_empty()
        );
    }

    #[test]
    fn discovered_list_is_bounded() {
        let (_dir, r) = setup();
        for i in 0..(MAX_DISCOVERED as u32 + 10) {
            let b = i.to_be_bytes();
            r.record_discovered(Mac([2, 0, b[0], b[1], b[2], b[3]]), Sighting::default());
        }
        assert_eq!(r.discovered().len(), MAX_DISCOVERED);
    }

    #[test]
    fn discovered_devices_are_recorded_and_adopted() {
        let (_dir, r) = setup();
        let mac: Mac = "dc:a6:32:00:00:09".parse().unwrap();
        r.record_discovered(
            mac,
            Sighting {
                pi_model: Some("RPi4".into()),
                serial: Some("cafe0001".into()),
                ..Default::default()
            },
        );
        r.record_discovered(mac, Sighting::default());
        let d = r.discovered();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].requests, 2);
        assert_eq!(d[0].pi_model.as_deref(), Some("RPi4"));
        r.add(client("dc:a6:32:00:00:09")).unwrap();
        assert!(r.discovered().is_empty());
    }
}
