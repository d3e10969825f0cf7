//! The DHCP service as a black box: the real `bramble` binary in a server
//! network namespace (bridge `br0`, 10.77.0.1/24), real clients (busybox
//! udhcpc, ISC dhclient, dnsmasq as a rival server) and scripted Pi boot
//! ROM packets in client namespaces joined by veth pairs. Nothing here
//! reaches a real network. Needs root; skipped otherwise.

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bramble_tests::dhcp_client::{
    ClientPort, PI_CLASS, PI3_XID, mac, options, pi3_discover, pi4_discover, register_clients,
    request,
};
use bramble_tests::harness::{Bramble, Options, curl_in, is_root};
use bramble_tests::netns::{Lan, Netns};

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const OTHER_SERVICES_OFF: &str =
    "[tftp]\nenabled = false\n[nfs]\nenabled = false\n[ldap]\nenabled = false\n";

fn proxy_settings() -> String {
    format!("{OTHER_SERVICES_OFF}[dhcp]\nmode = \"proxy\"\ninterface = \"br0\"\n")
}

fn standalone_settings() -> String {
    format!(
        "{OTHER_SERVICES_OFF}[supervisor]\nbackoff_initial_ms = 200\nbackoff_max_ms = 1000\n\
         [dhcp]\nmode = \"standalone\"\ninterface = \"br0\"\n\
         range_start = \"10.77.0.100\"\nrange_end = \"10.77.0.120\"\nnetmask = \"255.255.255.0\"\n\
         router = \"10.77.0.1\"\ndns = [\"10.77.0.1\"]\nlease_time_secs = 600\n\
         probe_timeout_ms = 4000\n"
    )
}

macro_rules! need_root {
    () => {
        if !is_root() {
            eprintln!("skipping: network namespace tests need root");
            return;
        }
    };
}

/// A LAN with bramble on it and a data volume that outlives restarts.
struct Setup {
    lan: Lan,
    _tmp: tempfile::TempDir,
    data: PathBuf,
    settings: String,
    bramble: Option<Bramble>,
}

impl Setup {
    fn new(tag: &str, settings: String, registered: &[(&str, Option<&str>)]) -> Self {
        let lan = Lan::new(tag);
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        register_clients(&data, "bookworm", registered);
        Self {
            lan,
            _tmp: tmp,
            data,
            settings,
            bramble: None,
        }
    }

    fn start(&mut self) -> &Bramble {
        self.bramble = Some(Bramble::start(Options {
            netns: Some(self.lan.server.name().into()),
            settings: self.settings.clone(),
            data: Some(self.data.clone()),
            ..Options::default()
        }));
        self.bramble()
    }

    /// Starts bramble and waits until the DHCP service reports up.
    fn start_serving(&mut self) -> &Bramble {
        self.start();
        self.bramble()
            .wait_for("/health", Duration::from_secs(15), |code, body| {
                code == 200 && body.contains("\"dhcp\":\"up\"")
            });
        // The service is "up" once bound; give the probe (standalone) time.
        self.wait_log("DHCP serving");
        self.bramble()
    }

    fn restart(&mut self) {
        if let Some(b) = self.bramble.take() {
            b.stop();
        }
        self.start_serving();
    }

    fn bramble(&self) -> &Bramble {
        self.bramble.as_ref().expect("bramble started")
    }

    fn wait_log(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if self.bramble().log().contains(text) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("log never said {text:?}:\n{}", self.bramble().log());
    }

    fn client(&mut self, mac: &str) -> usize {
        self.lan.add_client(mac)
    }

    fn ns(&self, i: usize) -> &Netns {
        self.lan.client(i)
    }

    fn api(&self, path: &str) -> serde_json::Value {
        let auth = format!("Authorization: Bearer {}", self.bramble().token());
        let (code, body) = curl_in(
            self.bramble().netns(),
            &[
                "-sS",
                "-m",
                "5",
                "-H",
                &auth,
                "-w",
                "\n%{http_code}",
                &self.bramble().url(path),
            ],
        )
        .unwrap();
        assert_eq!(code, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    fn leases(&self) -> serde_json::Value {
        fs::read(self.data.join("state/leases.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(serde_json::json!({"leases": []}))
    }

    fn lease_ip(&self, mac: &str) -> Option<String> {
        self.leases()["leases"]
            .as_array()?
            .iter()
            .find(|l| l["mac"] == mac)
            .and_then(|l| l["ip"].as_str().map(String::from))
    }
}

fn wait_until(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

// ---------------------------------------------------------------- proxy mode

/// Option 43 bramble sends: discovery control 3, menu prompt (timeout 0,
/// "PXE"), boot menu item type 0 "Raspberry Pi Boot" + 3 spaces, end.
fn expected_vendor_options() -> Vec<u8> {
    let mut v = vec![
        6, 1, 3, 10, 4, 0x00, b'P', b'X', b'E', 9, 23, 0x00, 0x00, 20,
    ];
    v.extend_from_slice(b"Raspberry Pi Boot   ");
    v.push(255);
    v
}

fn check_proxy_offer(reply: &[u8], discover: &[u8], xid: u32, mac: [u8; 6]) {
    assert!(
        reply.len() >= 300,
        "BOOTP minimum size, got {}",
        reply.len()
    );
    assert_eq!(&reply[0..3], &[2, 1, 6], "BOOTREPLY, Ethernet");
    assert_eq!(&reply[4..8], &xid.to_be_bytes(), "xid");
    assert_eq!(&reply[12..16], &[0; 4], "ciaddr");
    assert_eq!(
        &reply[16..20],
        &[0; 4],
        "yiaddr: proxy offers carry no address"
    );
    assert_eq!(&reply[20..24], &SERVER.octets(), "siaddr = server");
    assert_eq!(&reply[24..28], &[0; 4], "giaddr");
    assert_eq!(&reply[28..34], &mac, "chaddr");
    assert!(
        reply[44..236].iter().all(|b| *b == 0),
        "no sname/file for a Pi"
    );
    let guid = options(discover)
        .into_iter()
        .find(|(c, _)| *c == 97)
        .map(|(_, v)| v)
        .unwrap();
    assert_eq!(
        options(reply),
        vec![
            (53, vec![2]),
            (54, SERVER.octets().to_vec()),
            (60, b"PXEClient".to_vec()),
            (66, b"10.77.0.1".to_vec()),
            (43, expected_vendor_options()),
            (97, guid),
        ]
    );
}

#[test]
fn registered_pi3_and_pi4_get_byte_exact_proxy_offers() {
    need_root!();
    let pi3 = "b8:27:eb:10:00:03";
    let pi4 = "dc:a6:32:10:00:04";
    let mut s = Setup::new("dhpx", proxy_settings(), &[(pi3, None), (pi4, None)]);
    let c3 = s.client(pi3);
    let c4 = s.client(pi4);
    s.start_serving();

    let port3 = ClientPort::open(s.ns(c3).name(), "eth0", 68).unwrap();
    let d3 = pi3_discover(mac(pi3), 0x1234_5678);
    port3.broadcast(&d3).unwrap();
    let (reply, from) = port3
        .reply(mac(pi3), PI3_XID, Duration::from_secs(3))
        .expect("a proxy offer for the Pi 3");
    assert_eq!(from.ip(), std::net::IpAddr::V4(SERVER));
    check_proxy_offer(&reply, &d3, PI3_XID, mac(pi3));

    let port4 = ClientPort::open(s.ns(c4).name(), "eth0", 68).unwrap();
    let xid4 = 0x5250_6934;
    let d4 = pi4_discover(mac(pi4), xid4, 0x9ffe_fdef);
    port4.broadcast(&d4).unwrap();
    let (reply, _) = port4
        .reply(mac(pi4), xid4, Duration::from_secs(3))
        .expect("a proxy offer for the Pi 4");
    check_proxy_offer(&reply, &d4, xid4, mac(pi4));

    let metrics = s.bramble().get("/metrics").unwrap().1;
    assert!(metrics.contains("bramble_dhcp_offers_total 2"), "{metrics}");
}

#[test]
fn a_registered_uefi_pc_gets_its_boot_file_and_a_boot_server_ack() {
    need_root!();
    let pc = "52:54:00:30:00:07";
    let mut s = Setup::new("dhpc", proxy_settings(), &[(pc, None)]);
    let c = s.client(pc);
    // The address the school's own DHCP server gave it.
    s.lan.set_client_ip(c, Ipv4Addr::new(10, 77, 0, 30));
    s.start_serving();
    let port = ClientPort::open(s.ns(c).name(), "eth0", 68).unwrap();
    let class = b"PXEClient:Arch:00007:UNDI:003016".to_vec();

    let discover = request(1, mac(pc), 0x1111, &[(93, vec![0, 7]), (60, class.clone())]);
    port.broadcast(&discover).unwrap();
    let (offer, _) = port
        .reply(mac(pc), 0x1111, Duration::from_secs(3))
        .expect("a proxy offer for the PC");
    assert_eq!(&offer[16..20], &[0; 4], "no address");
    assert_eq!(&offer[44..53], b"10.77.0.1", "sname");
    assert_eq!(&offer[108..117], b"ipxe.efi\0", "file");
    let o = options(&offer);
    assert!(o.contains(&(67, b"ipxe.efi".to_vec())), "{o:?}");
    // A PC gets no Pi boot menu: discovery control 8 = use this boot file.
    assert!(o.contains(&(43, vec![6, 1, 8, 255])), "{o:?}");

    // The PXE ROM then asks the boot server (port 4011) for its boot item.
    let mut req = request(
        3,
        mac(pc),
        0x2222,
        &[
            (93, vec![0, 7]),
            (60, class),
            (43, vec![71, 4, 0x80, 0x00, 0x00, 0x00, 255]),
        ],
    );
    req[12..16].copy_from_slice(&[10, 77, 0, 30]);
    port.send_to(&req, std::net::SocketAddrV4::new(SERVER, 4011))
        .unwrap();
    let (ack, from) = port
        .reply(mac(pc), 0x2222, Duration::from_secs(3))
        .expect("an ACK from the boot server port");
    assert_eq!(from, std::net::SocketAddr::from((SERVER, 4011)));
    let o = options(&ack);
    assert_eq!(o[0], (53, vec![5]));
    assert!(o.contains(&(67, b"ipxe.efi".to_vec())), "{o:?}");
    let vendor = &o.iter().find(|(c, _)| *c == 43).unwrap().1;
    assert_eq!(vendor, &[6, 1, 8, 71, 4, 0x80, 0, 0, 0, 255], "{vendor:?}");
}

#[test]
fn unregistered_pis_get_nothing_and_are_discovered() {
    need_root!();
    let pi3 = "b8:27:eb:20:00:03";
    let pi4 = "dc:a6:32:20:00:04";
    let mut s = Setup::new("dhdi", proxy_settings(), &[]);
    let c3 = s.client(pi3);
    let c4 = s.client(pi4);
    s.start_serving();

    let port3 = ClientPort::open(s.ns(c3).name(), "eth0", 68).unwrap();
    let port4 = ClientPort::open(s.ns(c4).name(), "eth0", 68).unwrap();
    port3.broadcast(&pi3_discover(mac(pi3), 7)).unwrap();
    port4
        .broadcast(&pi4_discover(mac(pi4), 0x0bad_cafe, 0xcafe_0004))
        .unwrap();
    // Both ports see each other's broadcasts; only BOOTREPLYs would matter.
    let deadline = Instant::now() + Duration::from_secs(2);
    for port in [&port3, &port4] {
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match port.anything(left) {
                Some(p) => assert_ne!(p.first(), Some(&2), "a reply to a stranger: {p:?}"),
                None => break,
            }
        }
    }

    let listed = s.api("/api/v1/clients/discovered");
    let find = |m: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["mac"] == m)
            .cloned()
            .unwrap_or_else(|| panic!("{m} not discovered: {listed}"))
    };
    let d4 = find(pi4);
    assert_eq!(d4["pi_model"], "RPi4");
    assert_eq!(d4["serial"], "cafe0004");
    assert_eq!(d4["arch"], 0);
    assert_eq!(d4["vendor_class"], std::str::from_utf8(PI_CLASS).unwrap());
    let d3 = find(pi3);
    assert_eq!(d3["pi_model"], "Pi 3 or older");
    let on_disk = fs::read_to_string(s.data.join("state/discovered.json")).unwrap();
    assert!(
        on_disk.contains(pi4) && on_disk.contains("cafe0004"),
        "{on_disk}"
    );
}

// ----------------------------------------------------------- standalone mode

/// A udhcpc run inside a client namespace, reporting through a script.
struct Udhcpc {
    child: Child,
    events: PathBuf,
}

fn udhcpc_script(dir: &Path) -> PathBuf {
    let script = dir.join("udhcpc.sh");
    fs::write(
        &script,
        "#!/bin/sh\n\
         echo \"$1 ip=$ip mask=$subnet router=$router dns=$dns serverid=$serverid lease=$lease\" >> \"$EVENTS\"\n\
         case \"$1\" in\n\
           bound|renew) ip addr replace \"$ip/24\" dev \"$interface\" ;;\n\
           deconfig) ip addr flush dev \"$interface\" ;;\n\
         esac\n",
    )
    .unwrap();
    Command::new("chmod")
        .args(["+x"])
        .arg(&script)
        .status()
        .unwrap();
    script
}

impl Udhcpc {
    /// `udhcpc -f` (foreground, stays running) with `extra` flags.
    fn spawn(ns: &Netns, dir: &Path, name: &str, extra: &[&str]) -> Self {
        let script = udhcpc_script(dir);
        let events = dir.join(format!("{name}.events"));
        let _ = fs::remove_file(&events);
        let child = ns
            .command("udhcpc")
            .args(["-f", "-i", "eth0", "-t", "5", "-T", "1", "-A", "1", "-s"])
            .arg(&script)
            .args(extra)
            .env("EVENTS", &events)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn udhcpc");
        Self { child, events }
    }

    fn events(&self) -> String {
        fs::read_to_string(&self.events).unwrap_or_default()
    }

    /// Waits for an event line starting with `kind` and returns its ip.
    fn wait(&self, kind: &str, nth: usize) -> String {
        let mut ip = String::new();
        wait_until(
            Duration::from_secs(15),
            &format!("udhcpc {kind} #{nth}"),
            || {
                let lines: Vec<String> = self
                    .events()
                    .lines()
                    .filter(|l| l.starts_with(&format!("{kind} ")))
                    .map(String::from)
                    .collect();
                if let Some(line) = lines.get(nth - 1) {
                    ip = field(line, "ip");
                    true
                } else {
                    false
                }
            },
        );
        ip
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig).unwrap();
    }

    fn wait_exit(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("udhcpc did not exit; events:\n{}", self.events());
    }
}

impl Drop for Udhcpc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn field(line: &str, key: &str) -> String {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn udhcpc_gets_renews_and_releases_a_lease_that_survives_restart() {
    need_root!();
    use nix::sys::signal::Signal;
    let (a, b, c) = (
        "02:00:00:77:00:0a",
        "02:00:00:77:00:0b",
        "02:00:00:77:00:0c",
    );
    let mut s = Setup::new(
        "dhud",
        standalone_settings(),
        &[(a, None), (b, None), (c, None)],
    );
    let (ca, cb, cc) = (s.client(a), s.client(b), s.client(c));
    s.start_serving();
    let work = s._tmp.path().to_path_buf();

    // A: lease, with the options from the settings.
    let ua = Udhcpc::spawn(s.ns(ca), &work, "a", &[]);
    let ip_a = ua.wait("bound", 1);
    let bound = ua.events();
    assert!(bound.contains("mask=255.255.255.0"), "{bound}");
    assert!(bound.contains("router=10.77.0.1"), "{bound}");
    assert!(bound.contains("serverid=10.77.0.1"), "{bound}");
    assert!(bound.contains("lease=600"), "{bound}");
    assert!(ip_a.starts_with("10.77.0.1"), "{ip_a}");
    assert_eq!(s.lease_ip(a).as_deref(), Some(ip_a.as_str()), "persisted");

    // Renew (unicast REQUEST with ciaddr): same address.
    ua.signal(Signal::SIGUSR1);
    assert_eq!(ua.wait("renew", 1), ip_a);

    // B gets a different address.
    let mut ub = Udhcpc::spawn(s.ns(cb), &work, "b", &["-q", "-n"]);
    let ip_b = ub.wait("bound", 1);
    ub.wait_exit();
    assert_ne!(ip_a, ip_b);

    // Restart: the table comes back from the volume. C must not get A's or
    // B's address, and A renews its lease.
    s.restart();
    let mut uc = Udhcpc::spawn(s.ns(cc), &work, "c", &["-q", "-n"]);
    let ip_c = uc.wait("bound", 1);
    uc.wait_exit();
    assert!(ip_c != ip_a && ip_c != ip_b, "{ip_c} reused after restart");
    ua.signal(Signal::SIGUSR1);
    assert_eq!(ua.wait("renew", 2), ip_a);

    // Release (SIGUSR2): the lease is gone from the volume.
    ua.signal(Signal::SIGUSR2);
    wait_until(Duration::from_secs(10), "lease of A released", || {
        s.lease_ip(a).is_none()
    });
    assert!(s.lease_ip(b).is_some() && s.lease_ip(c).is_some());
}

#[test]
fn dhclient_gets_reboots_into_and_releases_a_lease() {
    need_root!();
    let m = "02:00:00:77:00:d1";
    let mut s = Setup::new("dhdc", standalone_settings(), &[(m, None)]);
    let ci = s.client(m);
    s.start_serving();
    let work = s._tmp.path().to_path_buf();
    let script = work.join("dhclient.sh");
    let events = work.join("dhclient.events");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$reason ip=$new_ip_address mask=$new_subnet_mask \
             routers=$new_routers server=$new_dhcp_server_identifier\" >> {events}\n\
             case \"$reason\" in\n\
               BOUND|RENEW|REBIND|REBOOT) ip addr replace \"$new_ip_address/24\" dev \"$interface\" ;;\n\
               RELEASE|EXPIRE|FAIL|STOP) ip addr flush dev \"$interface\" ;;\n\
             esac\nexit 0\n",
            events = events.display()
        ),
    )
    .unwrap();
    Command::new("chmod")
        .args(["+x"])
        .arg(&script)
        .status()
        .unwrap();
    let leasefile = work.join("dhclient.leases");
    let pidfile = work.join("dhclient.pid");
    let dhclient = |extra: &[&str]| {
        s.ns(ci)
            .command("dhclient")
            .args(["-d", "-v", "-1", "-lf"])
            .arg(&leasefile)
            .arg("-pf")
            .arg(&pidfile)
            .arg("-sf")
            .arg(&script)
            .args(extra)
            .arg("eth0")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn dhclient")
    };
    let reason_ip = |reason: &str| -> Option<String> {
        fs::read_to_string(&events)
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with(&format!("{reason} ")))
            .map(|l| field(l, "ip"))
    };

    // Fresh lease (DISCOVER/OFFER/REQUEST/ACK).
    let mut first = dhclient(&[]);
    wait_until(Duration::from_secs(20), "dhclient BOUND", || {
        reason_ip("BOUND").is_some()
    });
    let ip = reason_ip("BOUND").unwrap();
    assert!(ip.starts_with("10.77.0.1"), "{ip}");
    assert_eq!(s.lease_ip(m).as_deref(), Some(ip.as_str()));
    let _ = first.kill();
    let _ = first.wait();

    // Start again with its lease file: INIT-REBOOT, the same address.
    let mut second = dhclient(&[]);
    wait_until(Duration::from_secs(20), "dhclient REBOOT", || {
        reason_ip("REBOOT").is_some()
    });
    assert_eq!(reason_ip("REBOOT").unwrap(), ip);
    let _ = second.kill();
    let _ = second.wait();

    // Release.
    let mut release = dhclient(&["-r"]);
    wait_until(Duration::from_secs(15), "lease released", || {
        s.lease_ip(m).is_none()
    });
    let _ = release.kill();
    let _ = release.wait();
}

#[test]
fn standalone_start_is_refused_when_dnsmasq_serves_the_link() {
    need_root!();
    let mut s = Setup::new("dhrv", standalone_settings(), &[]);
    let rogue = s.client("02:00:00:77:00:99");
    s.lan.set_client_ip(rogue, Ipv4Addr::new(10, 77, 0, 2));
    let work = s._tmp.path().to_path_buf();
    let mut dnsmasq = s
        .ns(rogue)
        .command("dnsmasq")
        .args([
            "--no-daemon",
            "--conf-file=/dev/null",
            "--interface=eth0",
            "--bind-interfaces",
            "--dhcp-range=10.77.0.50,10.77.0.60",
            "--port=0",
            "--user=root",
        ])
        .arg(format!(
            "--dhcp-leasefile={}",
            work.join("dnsmasq.leases").display()
        ))
        .arg(format!("--pid-file={}", work.join("dnsmasq.pid").display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn dnsmasq");
    wait_until(Duration::from_secs(10), "dnsmasq listening on 67", || {
        let out = s.ns(rogue).exec("ss", &["-ulnH", "sport", "=", ":67"]);
        !String::from_utf8_lossy(&out.stdout).trim().is_empty()
    });
    s.start();
    let (code, body) = s
        .bramble()
        .wait_for("/health", Duration::from_secs(20), |code, body| {
            code == 503 && body.contains("10.77.0.2")
        });
    let _ = dnsmasq.kill();
    let _ = dnsmasq.wait();
    assert_eq!(code, 503);
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    let failing = health["failing"].as_array().unwrap();
    let dhcp = failing
        .iter()
        .find(|u| u["name"] == "dhcp")
        .expect("dhcp failing");
    let detail = dhcp["detail"].as_str().unwrap();
    assert!(
        detail.contains("another DHCP server") && detail.contains("10.77.0.2"),
        "{detail}"
    );
    let log = s.bramble().log();
    assert!(
        log.contains("another DHCP server") && log.contains("10.77.0.2"),
        "{log}"
    );
    assert!(!log.contains("DHCP serving"), "{log}");
}
