//! Handler tests: whole requests as bytes in, replies checked on the wire
//! format, against a real registry and lease table on a temporary volume.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use bramble_core::clients::{Client, Mac, Registry};
use bramble_core::leases::Leases;
use bramble_core::settings::{DhcpMode, DhcpSettings, from_toml};
use bramble_core::{Status, Volume};
use dhcproto::v4::MessageType;

use crate::handler::{Now, Port, Received, State, process};
use crate::packet::{Destination, HEADER_LEN, MAGIC, Reply, raw_options};
use crate::pi::encode_option97;
use crate::pxe::pxe_vendor_options;

pub const SERVER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
pub const PI3_CLASS: &[u8] = b"PXEClient:Arch:00000:UNDI:002001";
pub const PI3_XID: u32 = 0x26f3_0339;

pub struct Fixture {
    _dir: tempfile::TempDir,
    pub state: State,
    pub status: Status,
    pub t0: Instant,
}

pub fn settings(mode: DhcpMode) -> DhcpSettings {
    let mode = match mode {
        DhcpMode::Proxy => "proxy",
        DhcpMode::Standalone => "standalone",
        DhcpMode::Off => "off",
    };
    let toml = format!(
        "[dhcp]\nmode = \"{mode}\"\nrange_start = \"10.77.0.100\"\nrange_end = \"10.77.0.102\"\n\
         netmask = \"255.255.255.0\"\nrouter = \"10.77.0.254\"\ndns = [\"10.77.0.53\"]\n\
         lease_time_secs = 3600\nrate_limit_per_client = 0\n"
    );
    from_toml(&toml).unwrap().dhcp
}

impl Fixture {
    pub fn new(settings: DhcpSettings, clients: &[Client]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let volume = Volume::open(dir.path()).unwrap();
        std::fs::create_dir(volume.os_dir().join("bookworm")).unwrap();
        let registry = Registry::open(&volume).unwrap();
        for c in clients {
            registry.add(c.clone()).unwrap();
        }
        let leases = Leases::open(&volume).unwrap();
        let status = Status::new();
        let state = State::new(settings, registry, leases, &status, Some((SERVER, mask())));
        Self {
            _dir: dir,
            state,
            status,
            t0: Instant::now(),
        }
    }

    pub fn proxy(clients: &[Client]) -> Self {
        Self::new(settings(DhcpMode::Proxy), clients)
    }

    pub fn standalone(clients: &[Client]) -> Self {
        Self::new(settings(DhcpMode::Standalone), clients)
    }

    pub fn send(&self, bytes: &[u8]) -> Option<Reply> {
        self.send_at(bytes, Port::Dhcp, 0)
    }

    pub fn send_at(&self, bytes: &[u8], port: Port, secs: u64) -> Option<Reply> {
        let rx = Received {
            port,
            source: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68),
            local_ip: Some(SERVER),
        };
        let now = Now {
            unix: 1_700_000_000 + secs,
            instant: self.t0 + Duration::from_secs(secs),
        };
        process(&self.state, bytes, &rx, now)
    }

    pub fn counter(&self, name: &str) -> u64 {
        self.status
            .counters()
            .into_iter()
            .find(|(s, n, _)| s == "dhcp" && n == name)
            .map(|(_, _, v)| v)
            .unwrap_or(0)
    }
}

fn mask() -> Ipv4Addr {
    Ipv4Addr::new(255, 255, 255, 0)
}

pub fn client(mac: &str) -> Client {
    Client {
        mac: mac.parse().unwrap(),
        serial: None,
        name: None,
        os: "bookworm".into(),
        kernel_args: None,
        fixed_ip: None,
    }
}

/// A client request as a client would put it on the wire.
#[derive(Clone)]
pub struct Pkt {
    pub msg_type: MessageType,
    pub mac: Mac,
    pub xid: u32,
    pub ciaddr: Ipv4Addr,
    pub broadcast: bool,
    pub options: Vec<(u8, Vec<u8>)>,
}

impl Pkt {
    pub fn new(msg_type: MessageType, mac: &str) -> Self {
        Self {
            msg_type,
            mac: mac.parse().unwrap(),
            xid: 0x1234_5678,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            broadcast: false,
            options: Vec::new(),
        }
    }

    pub fn opt(mut self, code: u8, value: &[u8]) -> Self {
        self.options.push((code, value.to_vec()));
        self
    }

    pub fn pi3(mac: &str) -> Self {
        let mut p = Self::new(MessageType::Discover, mac)
            .opt(60, PI3_CLASS)
            .opt(93, &[0, 0]);
        p.xid = PI3_XID;
        p
    }

    pub fn pi4(mac: &str, serial: u32) -> Self {
        let m: Mac = mac.parse().unwrap();
        Self::new(MessageType::Discover, mac)
            .opt(60, PI3_CLASS)
            .opt(93, &[0, 0])
            .opt(97, &encode_option97("RPi4", 0x00c0_3111, m, serial))
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut b = vec![0u8; HEADER_LEN];
        b[0] = 1;
        b[1] = 1;
        b[2] = 6;
        b[4..8].copy_from_slice(&self.xid.to_be_bytes());
        if self.broadcast {
            b[10] = 0x80;
        }
        b[12..16].copy_from_slice(&self.ciaddr.octets());
        b[28..34].copy_from_slice(&self.mac.0);
        b[236..240].copy_from_slice(&MAGIC);
        b.extend([53, 1, u8::from(self.msg_type)]);
        for (code, value) in &self.options {
            b.push(*code);
            b.push(value.len() as u8);
            b.extend_from_slice(value);
        }
        b.push(255);
        b
    }
}

fn yiaddr(r: &Reply) -> Ipv4Addr {
    r.header.yiaddr()
}

fn opts(r: &Reply) -> Vec<(u8, Vec<u8>)> {
    raw_options(&r.encode())
}

const PI3_MAC: &str = "b8:27:eb:00:00:03";
const PI4_MAC: &str = "dc:a6:32:00:00:04";
const PC_MAC: &str = "52:54:00:00:00:01";

// ---- proxy mode ----

#[test]
fn pi3_rom_gets_a_proxy_offer_with_exact_options() {
    let f = Fixture::proxy(&[client(PI3_MAC)]);
    let r = f.send(&Pkt::pi3(PI3_MAC).bytes()).expect("an offer");
    let bytes = r.encode();
    assert_eq!(bytes[0], 2, "BOOTREPLY");
    assert_eq!(&bytes[4..8], &PI3_XID.to_be_bytes());
    assert_eq!(&bytes[16..20], &[0, 0, 0, 0], "yiaddr");
    assert_eq!(&bytes[20..24], &SERVER.octets(), "siaddr");
    assert_eq!(&bytes[28..34], &r.header.chaddr()[..6]);
    assert!(
        bytes[44..236].iter().all(|b| *b == 0),
        "no sname/file for a Pi"
    );
    assert_eq!(
        opts(&r),
        vec![
            (53, vec![2]),
            (54, SERVER.octets().to_vec()),
            (60, b"PXEClient".to_vec()),
            (66, b"10.77.0.1".to_vec()),
            (43, pxe_vendor_options()),
        ]
    );
    assert_eq!(r.destination, Destination::Broadcast);
    assert_eq!(f.counter("offers"), 1);
}

#[test]
fn pi4_eeprom_gets_an_offer_and_its_serial_is_learned() {
    let f = Fixture::proxy(&[client(PI4_MAC)]);
    let p = Pkt::pi4(PI4_MAC, 0x9ffe_fdef);
    let r = f.send(&p.bytes()).expect("an offer");
    let o = opts(&r);
    assert_eq!(o[4], (43, pxe_vendor_options()));
    assert_eq!(o[5].0, 97, "option 97 echoed");
    assert_eq!(
        f.state.registry.by_serial("9ffefdef").map(|c| c.mac),
        Some(PI4_MAC.parse().unwrap())
    );
}

#[test]
fn pi3_roms_sharing_an_xid_are_told_apart_by_mac() {
    let a = "b8:27:eb:00:00:0a";
    let f = Fixture::proxy(&[client(a)]);
    assert!(f.send(&Pkt::pi3(a).bytes()).is_some());
    assert!(f.send(&Pkt::pi3("b8:27:eb:00:00:0b").bytes()).is_none());
    assert!(f.send(&Pkt::pi3(a).bytes()).is_some());
}

#[test]
fn unregistered_boot_clients_are_recorded_and_not_answered() {
    let f = Fixture::proxy(&[]);
    assert!(f.send(&Pkt::pi4(PI4_MAC, 0xcafe_0001).bytes()).is_none());
    assert!(f.send(&Pkt::pi3(PI3_MAC).bytes()).is_none());
    let pxe_pc = Pkt::new(MessageType::Discover, PC_MAC).opt(60, b"PXEClient:Arch:00007");
    assert!(f.send(&pxe_pc.bytes()).is_none());
    let laptop = Pkt::new(MessageType::Discover, "00:11:22:33:44:55");
    assert!(f.send(&laptop.bytes()).is_none());
    let d = f.state.registry.discovered();
    assert_eq!(d.len(), 3, "{d:?}");
    let pi4 = d.iter().find(|d| d.mac.to_string() == PI4_MAC).unwrap();
    assert_eq!(pi4.pi_model.as_deref(), Some("RPi4"));
    assert_eq!(pi4.serial.as_deref(), Some("cafe0001"));
    assert_eq!(pi4.arch, Some(0));
    let pi3 = d.iter().find(|d| d.mac.to_string() == PI3_MAC).unwrap();
    assert_eq!(pi3.pi_model.as_deref(), Some("Pi 3 or older"));
    assert_eq!(f.counter("discovered"), 3);
    assert_eq!(f.counter("offers"), 0);
}

#[test]
fn proxy_mode_ignores_registered_clients_that_are_not_pxe() {
    let f = Fixture::proxy(&[client(PC_MAC)]);
    assert!(
        f.send(&Pkt::new(MessageType::Discover, PC_MAC).bytes())
            .is_none()
    );
}

#[test]
fn pcs_get_a_boot_file_by_architecture() {
    let f = Fixture::proxy(&[client(PC_MAC)]);
    for (arch, file) in [
        (0u8, "undionly.kpxe"),
        (7, "ipxe.efi"),
        (9, "ipxe.efi"),
        (11, "grubnetaa64.efi"),
    ] {
        let p = Pkt::new(MessageType::Discover, PC_MAC)
            .opt(60, b"PXEClient:Arch:00000:UNDI:002001")
            .opt(93, &[0, arch]);
        let r = f.send(&p.bytes()).unwrap();
        let o = opts(&r);
        assert!(o.contains(&(67, file.as_bytes().to_vec())), "{arch}: {o:?}");
        assert_eq!(
            r.header.fname().map(|f| f.to_vec()),
            Some(file.as_bytes().to_vec())
        );
    }
}

#[test]
fn ipxe_gets_the_script_instead_of_looping() {
    let f = Fixture::proxy(&[client(PC_MAC)]);
    let p = Pkt::new(MessageType::Discover, PC_MAC)
        .opt(60, b"PXEClient:Arch:00000:UNDI:002001")
        .opt(77, b"iPXE")
        .opt(93, &[0, 0]);
    let o = opts(&f.send(&p.bytes()).unwrap());
    assert!(o.contains(&(67, b"boot.ipxe".to_vec())));
    assert!(!o.iter().any(|(c, _)| *c == 175), "no 175 in proxy mode");
    // No Pi boot menu for a PC: iPXE would run a menu discovery and fail.
    assert!(o.contains(&(43, vec![6, 1, 8, 255])), "{o:?}");
}

#[test]
fn boot_server_port_acks_unicast_to_the_source() {
    let f = Fixture::proxy(&[client(PC_MAC)]);
    let p = Pkt::new(MessageType::Request, PC_MAC)
        .opt(60, b"PXEClient:Arch:00007:UNDI:003016")
        .opt(93, &[0, 7])
        .opt(43, &[71, 4, 0x80, 0, 0, 0, 255]);
    let rx = Received {
        port: Port::Proxy,
        source: SocketAddrV4::new(Ipv4Addr::new(10, 77, 0, 50), 4011),
        local_ip: Some(SERVER),
    };
    let r = process(&f.state, &p.bytes(), &rx, Now::current()).unwrap();
    assert_eq!(r.msg_type(), Some(MessageType::Ack));
    assert_eq!(
        r.destination,
        Destination::Unicast(Ipv4Addr::new(10, 77, 0, 50), 4011)
    );
    let o = opts(&r);
    assert!(o.contains(&(67, b"ipxe.efi".to_vec())));
    let vendor = o.iter().find(|(c, _)| *c == 43).unwrap();
    assert!(vendor.1.ends_with(&[71, 4, 0x80, 0, 0, 0, 255]));
}

#[test]
fn proxy_request_naming_us_is_acked_others_are_not() {
    let f = Fixture::proxy(&[client(PI3_MAC)]);
    let ours = Pkt {
        msg_type: MessageType::Request,
        ..Pkt::pi3(PI3_MAC)
    }
    .opt(54, &SERVER.octets());
    assert_eq!(
        f.send(&ours.bytes()).unwrap().msg_type(),
        Some(MessageType::Ack)
    );
    let theirs = Pkt {
        msg_type: MessageType::Request,
        ..Pkt::pi3(PI3_MAC)
    }
    .opt(54, &[10, 77, 0, 254]);
    assert!(f.send(&theirs.bytes()).is_none());
}

#[test]
fn mode_off_answers_nobody() {
    let f = Fixture::new(settings(DhcpMode::Off), &[client(PI3_MAC)]);
    assert!(f.send(&Pkt::pi3(PI3_MAC).bytes()).is_none());
}

// ---- standalone mode ----

fn request_for(offer: &Reply, mac: &str) -> Pkt {
    Pkt::new(MessageType::Request, mac)
        .opt(54, &SERVER.octets())
        .opt(50, &offer.header.yiaddr().octets())
}

#[test]
fn standalone_dora_persists_the_lease_before_the_ack() {
    let mac = "02:00:00:00:00:01";
    let f = Fixture::standalone(&[client(mac)]);
    let offer = f
        .send(&Pkt::new(MessageType::Discover, mac).bytes())
        .unwrap();
    assert_eq!(offer.msg_type(), Some(MessageType::Offer));
    assert_eq!(yiaddr(&offer), Ipv4Addr::new(10, 77, 0, 100));
    let o = opts(&offer);
    assert_eq!(o[0], (53, vec![2]));
    assert_eq!(o[1], (54, SERVER.octets().to_vec()));
    assert!(o.contains(&(51, 3600u32.to_be_bytes().to_vec())));
    assert!(o.contains(&(58, 1800u32.to_be_bytes().to_vec())));
    assert!(o.contains(&(59, 3150u32.to_be_bytes().to_vec())));
    assert!(o.contains(&(1, vec![255, 255, 255, 0])));
    assert!(o.contains(&(3, vec![10, 77, 0, 254])));
    assert!(o.contains(&(6, vec![10, 77, 0, 53])));
    assert!(
        !o.iter().any(|(c, _)| *c == 43),
        "no PXE options for udhcpc"
    );
    assert!(f.state.leases.all().is_empty(), "offers are not leases");
    let ack = f.send(&request_for(&offer, mac).bytes()).unwrap();
    assert_eq!(ack.msg_type(), Some(MessageType::Ack));
    assert_eq!(yiaddr(&ack), Ipv4Addr::new(10, 77, 0, 100));
    let lease = f.state.leases.by_mac(mac.parse().unwrap()).unwrap();
    assert_eq!(lease.ip, Ipv4Addr::new(10, 77, 0, 100));
    assert_eq!(lease.expires, 1_700_000_000 + 3600);
    assert_eq!(f.counter("acks"), 1);
}

#[test]
fn second_client_gets_a_different_address_and_the_pool_can_run_out() {
    let macs = [
        "02:00:00:00:00:01",
        "02:00:00:00:00:02",
        "02:00:00:00:00:03",
        "02:00:00:00:00:04",
    ];
    let f = Fixture::standalone(&macs.map(client));
    let mut got = Vec::new();
    for mac in &macs[..3] {
        let offer = f
            .send(&Pkt::new(MessageType::Discover, mac).bytes())
            .unwrap();
        got.push(yiaddr(&offer));
    }
    got.dedup();
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(
        f.send(&Pkt::new(MessageType::Discover, macs[3]).bytes())
            .is_none()
    );
    assert_eq!(f.counter("ignored"), 1);
}

#[test]
fn renew_rebind_release_and_reuse() {
    let mac = "02:00:00:00:00:01";
    let f = Fixture::standalone(&[client(mac)]);
    let offer = f
        .send(&Pkt::new(MessageType::Discover, mac).bytes())
        .unwrap();
    f.send(&request_for(&offer, mac).bytes()).unwrap();
    let ip = yiaddr(&offer);
    // RENEWING: ciaddr set, no 50/54; unicast back to ciaddr.
    let mut renew = Pkt::new(MessageType::Request, mac);
    renew.ciaddr = ip;
    let ack = f.send_at(&renew.bytes(), Port::Dhcp, 100).unwrap();
    assert_eq!(ack.msg_type(), Some(MessageType::Ack));
    assert_eq!(ack.destination, Destination::Unicast(ip, 68));
    assert_eq!(ack.header.ciaddr(), ip);
    assert_eq!(
        f.state.leases.by_mac(mac.parse().unwrap()).unwrap().expires,
        1_700_000_100 + 3600
    );
    // RELEASE frees it.
    let mut release = Pkt::new(MessageType::Release, mac).opt(54, &SERVER.octets());
    release.ciaddr = ip;
    assert!(f.send(&release.bytes()).is_none());
    assert!(f.state.leases.all().is_empty());
}

#[test]
fn a_leased_address_is_not_given_to_another_client_and_wrong_requests_are_naked() {
    let (a, b) = ("02:00:00:00:00:01", "02:00:00:00:00:02");
    let f = Fixture::standalone(&[client(a), client(b)]);
    let offer = f.send(&Pkt::new(MessageType::Discover, a).bytes()).unwrap();
    f.send(&request_for(&offer, a).bytes()).unwrap();
    // B asks (INIT-REBOOT) for A's address: NAK, broadcast.
    let steal = Pkt::new(MessageType::Request, b).opt(50, &offer.header.yiaddr().octets());
    let nak = f.send(&steal.bytes()).unwrap();
    assert_eq!(nak.msg_type(), Some(MessageType::Nak));
    assert_eq!(nak.destination, Destination::Broadcast);
    // Outside the range: NAK.
    let away = Pkt::new(MessageType::Request, b).opt(50, &[192, 168, 1, 7]);
    assert_eq!(
        f.send(&away.bytes()).unwrap().msg_type(),
        Some(MessageType::Nak)
    );
    // Selecting another server: silence.
    let other = Pkt::new(MessageType::Request, b)
        .opt(54, &[10, 77, 0, 9])
        .opt(50, &[10, 77, 0, 101]);
    assert!(f.send(&other.bytes()).is_none());
}

#[test]
fn fixed_addresses_win() {
    let mut c = client("02:00:00:00:00:01");
    c.fixed_ip = Some(Ipv4Addr::new(10, 77, 0, 42));
    let f = Fixture::standalone(&[c, client("02:00:00:00:00:02")]);
    let offer = f
        .send(&Pkt::new(MessageType::Discover, "02:00:00:00:00:01").bytes())
        .unwrap();
    assert_eq!(yiaddr(&offer), Ipv4Addr::new(10, 77, 0, 42));
    let wrong = Pkt::new(MessageType::Request, "02:00:00:00:00:01").opt(50, &[10, 77, 0, 100]);
    assert_eq!(
        f.send(&wrong.bytes()).unwrap().msg_type(),
        Some(MessageType::Nak)
    );
    let other = f
        .send(
            &Pkt::new(MessageType::Discover, "02:00:00:00:00:02")
                .opt(50, &[10, 77, 0, 42])
                .bytes(),
        )
        .unwrap();
    assert_ne!(yiaddr(&other), Ipv4Addr::new(10, 77, 0, 42));
}

#[test]
fn declined_addresses_are_skipped() {
    let mac = "02:00:00:00:00:01";
    let f = Fixture::standalone(&[client(mac)]);
    let offer = f
        .send(&Pkt::new(MessageType::Discover, mac).bytes())
        .unwrap();
    f.send(&request_for(&offer, mac).bytes()).unwrap();
    let decline = Pkt::new(MessageType::Decline, mac)
        .opt(54, &SERVER.octets())
        .opt(50, &offer.header.yiaddr().octets());
    assert!(f.send(&decline.bytes()).is_none());
    assert!(f.state.leases.all().is_empty());
    let again = f
        .send(&Pkt::new(MessageType::Discover, mac).bytes())
        .unwrap();
    assert_ne!(yiaddr(&again), yiaddr(&offer));
}

#[test]
fn inform_gets_configuration_without_an_address() {
    let mac = "02:00:00:00:00:01";
    let f = Fixture::standalone(&[client(mac)]);
    let mut inform = Pkt::new(MessageType::Inform, mac);
    inform.ciaddr = Ipv4Addr::new(10, 77, 0, 7);
    let ack = f.send(&inform.bytes()).unwrap();
    assert_eq!(ack.msg_type(), Some(MessageType::Ack));
    assert_eq!(yiaddr(&ack), Ipv4Addr::UNSPECIFIED);
    assert!(!opts(&ack).iter().any(|(c, _)| *c == 51));
    assert_eq!(
        ack.destination,
        Destination::Unicast(Ipv4Addr::new(10, 77, 0, 7), 68)
    );
}

#[test]
fn standalone_pxe_and_ipxe_clients_get_boot_options_and_175() {
    let f = Fixture::standalone(&[client(PI4_MAC), client(PC_MAC)]);
    let pi = f.send(&Pkt::pi4(PI4_MAC, 1).bytes()).unwrap();
    assert_ne!(yiaddr(&pi), Ipv4Addr::UNSPECIFIED);
    assert!(opts(&pi).contains(&(43, pxe_vendor_options())));
    let ipxe = Pkt::new(MessageType::Discover, PC_MAC)
        .opt(60, b"PXEClient:Arch:00000:UNDI:002001")
        .opt(77, b"iPXE")
        .opt(175, &[177, 5, 1, 0x80, 0x86, 0x10, 0x0e]);
    let o = opts(&f.send(&ipxe.bytes()).unwrap());
    assert!(o.contains(&(175, vec![176, 1, 1])), "{o:?}");
    assert!(o.contains(&(67, b"boot.ipxe".to_vec())));
}

#[test]
fn a_pi_boot_rom_offer_is_committed_as_a_lease() {
    let f = Fixture::standalone(&[client(PI3_MAC)]);
    let offer = f.send(&Pkt::pi3(PI3_MAC).bytes()).unwrap();
    assert_ne!(yiaddr(&offer), Ipv4Addr::UNSPECIFIED);
    let lease = f.state.leases.by_mac(PI3_MAC.parse().unwrap()).unwrap();
    assert_eq!(lease.ip, yiaddr(&offer));
}

#[test]
fn leases_survive_a_restart_of_the_handler() {
    let mac = "02:00:00:00:00:01";
    let f = Fixture::standalone(&[client(mac)]);
    let offer = f
        .send(&Pkt::new(MessageType::Discover, mac).bytes())
        .unwrap();
    f.send(&request_for(&offer, mac).bytes()).unwrap();
    let volume = f.state.registry.volume().clone();
    let again = State::new(
        settings(DhcpMode::Standalone),
        Registry::open(&volume).unwrap(),
        Leases::open(&volume).unwrap(),
        &Status::new(),
        Some((SERVER, mask())),
    );
    let rx = Received {
        port: Port::Dhcp,
        source: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68),
        local_ip: Some(SERVER),
    };
    let now = Now {
        unix: 1_700_000_010,
        instant: Instant::now(),
    };
    // Another client first: it must not get the leased address.
    let r = process(
        &again,
        &Pkt::new(MessageType::Discover, mac).bytes(),
        &rx,
        now,
    )
    .unwrap();
    assert_eq!(yiaddr(&r), yiaddr(&offer));
}

// ---- limits and hostile input ----

#[test]
fn rate_limit_applies_per_client() {
    let mut s = settings(DhcpMode::Proxy);
    s.rate_limit_per_client = 3;
    let f = Fixture::new(s, &[client(PI3_MAC)]);
    let p = Pkt::pi3(PI3_MAC).bytes();
    let answered = (0..10).filter(|_| f.send(&p).is_some()).count();
    assert_eq!(answered, 3);
    assert_eq!(f.counter("rate_limited"), 7);
    assert!(f.send_at(&p, Port::Dhcp, 2).is_some(), "a new second");
}

/// Truncated, oversized and garbage packets: counted, dropped, no panic.
#[test]
fn malformed_corpus_is_dropped_and_counted() {
    let f = Fixture::standalone(&[client(PI3_MAC)]);
    let good = Pkt::pi3(PI3_MAC).bytes();
    let mut corpus: Vec<Vec<u8>> = vec![
        vec![],
        vec![1],
        good[..HEADER_LEN - 1].to_vec(),
        vec![0xff; 4096],
        vec![0; 1500],
    ];
    let mut bad_hlen = good.clone();
    bad_hlen[2] = 200;
    corpus.push(bad_hlen);
    let mut reply_op = good.clone();
    reply_op[0] = 2;
    corpus.push(reply_op);
    let mut no_cookie = good.clone();
    no_cookie[236..240].copy_from_slice(&[1, 2, 3, 4]);
    corpus.push(no_cookie);
    let mut no_type = good[..HEADER_LEN].to_vec();
    no_type.push(255);
    corpus.push(no_type);
    let malformed = corpus.len() as u64;
    for bytes in &corpus {
        assert!(f.send(bytes).is_none());
    }
    assert_eq!(f.counter("malformed"), malformed);
    // Damaged options after a valid header must not panic either.
    let mut weird = vec![good[..HEADER_LEN].to_vec(), good[..HEADER_LEN + 2].to_vec()];
    let mut long_len = good[..HEADER_LEN].to_vec();
    long_len.extend([53, 1, 1, 60, 250, b'P']);
    weird.push(long_len);
    let mut bad_types = good[..HEADER_LEN].to_vec();
    bad_types.extend([
        53, 1, 3, 50, 2, 1, 1, 54, 1, 9, 51, 0, 93, 1, 0, 97, 0, 43, 3, 71, 9, 0, 255,
    ]);
    weird.push(bad_types);
    let mut huge = good.clone();
    huge.pop();
    for _ in 0..40 {
        huge.extend([77, 255]);
        huge.extend([b'x'; 255]);
    }
    weird.push(huge);
    for bytes in &weird {
        let _ = f.send(bytes);
    }
}

mod fuzz {
    use proptest::prelude::*;

    use super::*;

    fn fixture() -> &'static Fixture {
        use std::sync::OnceLock;
        static F: OnceLock<Fixture> = OnceLock::new();
        F.get_or_init(|| {
            Fixture::new(
                settings(DhcpMode::Standalone),
                &[client(PI3_MAC), client(PC_MAC)],
            )
        })
    }

    /// A valid header from a registered MAC followed by arbitrary option bytes.
    fn registered_header() -> impl Strategy<Value = Vec<u8>> {
        (
            prop::sample::select(vec![PI3_MAC, PC_MAC, "02:00:00:00:00:99"]),
            any::<u32>(),
            prop::collection::vec(any::<u8>(), 0..600),
        )
            .prop_map(|(mac, xid, tail)| {
                let mut p = Pkt::new(MessageType::Discover, mac);
                p.xid = xid;
                let mut b = p.bytes();
                b.truncate(HEADER_LEN);
                b.extend(tail);
                b
            })
    }

    /// Well-formed options in random order and values.
    fn structured() -> impl Strategy<Value = Vec<u8>> {
        (
            1u8..=8,
            prop::collection::vec(
                (
                    prop::sample::select(vec![
                        1u8, 3, 6, 12, 43, 50, 51, 54, 55, 57, 60, 61, 77, 82, 93, 94, 97, 175,
                        255, 0,
                    ]),
                    prop::collection::vec(any::<u8>(), 0..40),
                ),
                0..10,
            ),
            any::<[u8; 4]>(),
        )
            .prop_map(|(t, options, ciaddr)| {
                let mut p = Pkt::new(MessageType::Discover, PI3_MAC);
                p.ciaddr = Ipv4Addr::from(ciaddr);
                p.options = options;
                let mut b = p.bytes();
                b[HEADER_LEN + 2] = t;
                b
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..1500)) {
            let _ = fixture().send(&bytes);
        }

        #[test]
        fn arbitrary_options_never_panic(bytes in registered_header()) {
            let _ = fixture().send(&bytes);
        }

        #[test]
        fn structured_requests_never_panic_and_replies_reparse(bytes in structured()) {
            if let Some(reply) = fixture().send(&bytes) {
                let encoded = reply.encode();
                prop_assert!(encoded.len() >= crate::packet::MIN_REPLY_LEN);
                prop_assert_eq!(encoded[0], 2);
                prop_assert_eq!(&encoded[28..34], &bytes[28..34]);
            }
        }
    }
}

// ---- the socket loops ----

mod sockets {
    use std::net::SocketAddr;

    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::{Context, bind, run};

    fn loopback_settings(mode: DhcpMode) -> DhcpSettings {
        let mut s = settings(mode);
        s.listen = "127.0.0.1:0".parse().unwrap();
        s.proxy_listen = "127.0.0.1:0".parse().unwrap();
        s.force_standalone = true;
        s
    }

    #[tokio::test]
    async fn serves_the_boot_server_port_and_stops_on_shutdown() {
        let f = Fixture::proxy(&[client(PC_MAC)]);
        let settings = loopback_settings(DhcpMode::Proxy);
        let sockets = bind(&settings).await.unwrap();
        let (_, proxy_addr) = sockets.local_addrs().unwrap();
        let ctx = Context {
            settings,
            registry: f.state.registry.clone(),
            leases: f.state.leases.clone(),
            status: f.status.clone(),
        };
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(sockets, ctx, shutdown.clone()));

        let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let request = Pkt::new(MessageType::Request, PC_MAC)
            .opt(60, b"PXEClient:Arch:00009:UNDI:003016")
            .opt(93, &[0, 9]);
        client.send_to(&request.bytes(), proxy_addr).await.unwrap();
        let mut buf = [0u8; 1500];
        let (n, from) = tokio::time::timeout(Duration::from_secs(5), client.recv_from(&mut buf))
            .await
            .expect("an ACK from port 4011")
            .unwrap();
        assert_eq!(from, proxy_addr);
        let o = raw_options(&buf[..n]);
        assert_eq!(o[0], (53, vec![5]));
        assert_eq!(
            o[1],
            (54, vec![127, 0, 0, 1]),
            "server address from IP_PKTINFO"
        );
        assert!(o.contains(&(67, b"ipxe.efi".to_vec())));

        shutdown.cancel();
        let result = tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("run returns after shutdown")
            .unwrap();
        assert!(result.is_ok());
        // The ports are free again.
        let again: SocketAddr = proxy_addr;
        assert!(std::net::UdpSocket::bind(again).is_ok());
    }

    #[tokio::test]
    async fn mode_off_waits_for_shutdown() {
        let f = Fixture::proxy(&[]);
        let settings = loopback_settings(DhcpMode::Off);
        let sockets = bind(&settings).await.unwrap();
        let ctx = Context {
            settings,
            registry: f.state.registry.clone(),
            leases: f.state.leases.clone(),
            status: f.status.clone(),
        };
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(sockets, ctx, shutdown.clone()));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!task.is_finished());
        shutdown.cancel();
        assert!(task.await.unwrap().is_ok());
    }
}
