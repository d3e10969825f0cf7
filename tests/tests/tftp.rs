//! The TFTP service as a black box: the real `bramble` binary in a server
//! network namespace, real clients (tftp-hpa, curl) in client namespaces
//! joined by veth pairs. Nothing here reaches a real network.
//!
//! bramble's HTTP endpoint lives inside the server namespace; the harness
//! and these tests reach it with curl run in that namespace.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use bramble_tests::harness::{Bramble, Options, curl_in, free_port, is_root};
use bramble_tests::netns::{Lan, Netns, in_netns};
use rand::RngCore;

const SETTINGS: &str = "[tftp]\nlisten = \"10.77.0.1:69\"\n[dhcp]\nmode = \"off\"\n\
                        [nfs]\nenabled = false\n[ldap]\nenabled = false\n";
const SERVER: &str = "10.77.0.1";
const STOCK_CMDLINE: &str = "console=serial0,115200 console=tty1 root=PARTUUID=3e8c1e1b-02 \
    rootfstype=ext4 fsck.repair=yes rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot\n";

fn random_bytes(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rand::rng().fill_bytes(&mut v);
    v
}

fn write(path: &Path, data: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, data).unwrap();
}

/// One OS tree with random firmware, a stock cmdline and escape symlinks.
fn make_os(data: &Path, name: &str, kernel_len: usize) {
    let fw = data.join("os").join(name).join("boot/firmware");
    write(&fw.join("start4.elf"), &random_bytes(700_000));
    write(&fw.join("bootcode.bin"), &random_bytes(52_000));
    write(&fw.join("kernel8.img"), &random_bytes(kernel_len));
    write(&fw.join("overlays/vc4-kms-v3d.dtbo"), &random_bytes(3_000));
    write(&fw.join("cmdline.txt"), STOCK_CMDLINE.as_bytes());
    std::os::unix::fs::symlink("/etc/passwd", fw.join("passwd")).unwrap();
    std::os::unix::fs::symlink("/etc", fw.join("etc")).unwrap();
    std::os::unix::fs::symlink("../../../../../../../etc/hostname", fw.join("up")).unwrap();
}

struct Pi {
    mac: String,
    os: &'static str,
    serial: String,
    kernel_args: Option<&'static str>,
}

fn write_clients(data: &Path, pis: &[Pi]) {
    let clients: Vec<serde_json::Value> = pis
        .iter()
        .map(|p| {
            let mut c = serde_json::json!({"mac": p.mac, "os": p.os, "serial": p.serial});
            if let Some(a) = p.kernel_args {
                c["kernel_args"] = a.into();
            }
            c
        })
        .collect();
    write(
        &data.join("state/clients.json"),
        serde_json::to_string_pretty(&serde_json::json!({ "clients": clients }))
            .unwrap()
            .as_bytes(),
    );
}

fn expected_cmdline(os: &str, extra: &str) -> String {
    format!(
        "console=serial0,115200 console=tty1 fsck.repair=yes quiet root=/dev/nfs \
         nfsroot={SERVER}:/os/{os},vers=3,tcp ip=dhcp ro rootwait{extra}\n"
    )
}

/// A LAN with bramble serving TFTP on 10.77.0.1 and the given clients.
struct Setup {
    lan: Lan,
    bramble: Option<Bramble>,
    data: PathBuf,
    http: SocketAddr,
    _tmp: tempfile::TempDir,
}

impl Setup {
    /// Creates the volume with `pis` registered; client `i` (the `pis`, then
    /// `extra_macs`) gets address 10.77.0.(10 + i).
    fn new(tag: &str, pis: &[Pi], extra_macs: &[&str], kernel_len: usize) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        for os in ["osA", "osB"] {
            make_os(&data, os, kernel_len);
        }
        write_clients(&data, pis);
        let mut lan = Lan::new(tag);
        let macs = pis
            .iter()
            .map(|p| p.mac.as_str())
            .chain(extra_macs.iter().copied());
        for (i, mac) in macs.enumerate() {
            let idx = lan.add_client(mac);
            lan.set_client_ip(idx, Ipv4Addr::new(10, 77, 0, 10 + i as u8));
        }
        let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut s = Self {
            lan,
            bramble: None,
            data,
            http,
            _tmp: tmp,
        };
        s.start();
        s
    }

    fn start(&mut self) {
        self.bramble = Some(Bramble::start(Options {
            netns: Some(self.lan.server.name().into()),
            settings: SETTINGS.into(),
            data: Some(self.data.clone()),
            http: Some(self.http),
            ..Options::default()
        }));
    }

    fn restart(&mut self) {
        if let Some(b) = self.bramble.take() {
            b.stop();
        }
        self.start();
    }

    fn client(&self, i: usize) -> &Netns {
        self.lan.client(i)
    }

    fn file(&self, os: &str, name: &str) -> Vec<u8> {
        fs::read(
            self.data
                .join("os")
                .join(os)
                .join("boot/firmware")
                .join(name),
        )
        .unwrap()
    }

    fn out(&self, name: &str) -> PathBuf {
        self._tmp
            .path()
            .join(format!("out-{name}-{}", rand::random::<u32>()))
    }

    fn log(&self) -> String {
        self.bramble.as_ref().map(|b| b.log()).unwrap_or_default()
    }
}

/// Result of one download by a real client.
#[derive(Debug)]
struct Download {
    ok: bool,
    data: Vec<u8>,
    text: String,
    code: Option<i32>,
}

fn download(out: &Path, o: Output) -> Download {
    let data = fs::read(out).unwrap_or_default();
    let _ = fs::remove_file(out);
    Download {
        ok: o.status.success() && !String::from_utf8_lossy(&o.stdout).contains("Error code"),
        data,
        text: format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        code: o.status.code(),
    }
}

/// tftp-hpa (`tftp -m binary SERVER -c get NAME OUT`) inside `ns`.
fn hpa(s: &Setup, ns: &Netns, name: &str) -> Download {
    let out = s.out("hpa");
    let o = ns
        .command("timeout")
        .args(["20", "tftp", "-m", "binary", SERVER, "-c", "get", name])
        .arg(&out)
        .output()
        .unwrap();
    download(&out, o)
}

/// curl with `--tftp-blksize 1468` inside `ns`.
fn curl_tftp(s: &Setup, ns: &Netns, name: &str) -> Download {
    let out = s.out("curl");
    let o = ns
        .command("curl")
        .args(["-sS", "-m", "60", "--tftp-blksize", "1468", "-o"])
        .arg(&out)
        .arg(format!("tftp://{SERVER}/{name}"))
        .output()
        .unwrap();
    download(&out, o)
}

fn pi(n: u8, os: &'static str, kernel_args: Option<&'static str>) -> Pi {
    Pi {
        mac: format!("dc:a6:32:00:00:{n:02x}"),
        os,
        serial: format!("1234ab{n:02x}"),
        kernel_args,
    }
}

macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("skipped: needs root for network namespaces");
            return;
        }
    };
}

#[test]
fn tftp_hpa_and_curl_fetch_a_registered_pis_files() {
    require_root!();
    let s = Setup::new("tfa", &[pi(1, "osA", Some("splash"))], &[], 1 << 20);
    let ns = s.client(0);
    let cmdline = expected_cmdline("osA", " splash");
    for fetch in [hpa, curl_tftp] {
        let got = fetch(&s, ns, "1234ab01/start4.elf");
        assert!(got.ok, "{got:?}\n{}", s.log());
        assert_eq!(got.data, s.file("osA", "start4.elf"));
        let got = fetch(&s, ns, "1234ab01/cmdline.txt");
        assert_eq!(String::from_utf8_lossy(&got.data), cmdline, "{}", got.text);
        // Pi 3 ROM: no prefix, identified by its address (neighbour table).
        let got = fetch(&s, ns, "bootcode.bin");
        assert!(got.ok, "{got:?}\n{}", s.log());
        assert_eq!(got.data, s.file("osA", "bootcode.bin"));
        let got = fetch(&s, ns, "1234ab01/overlays/vc4-kms-v3d.dtbo");
        assert_eq!(got.data, s.file("osA", "overlays/vc4-kms-v3d.dtbo"));
        // Pi 4 TFTP_PREFIX=2: the MAC with dashes.
        let got = fetch(&s, ns, "dc-a6-32-00-00-01/start4.elf");
        assert_eq!(got.data, s.file("osA", "start4.elf"), "{}", got.text);
        // Firmware probes for missing files get a clean not-found.
        let got = fetch(&s, ns, "1234ab01/recover4.elf");
        assert!(!got.ok && got.data.is_empty(), "{got:?}");
    }
    let probe = curl_tftp(&s, ns, "1234ab01/pieeprom.sig");
    assert_eq!(probe.code, Some(68), "curl: TFTP file not found: {probe:?}");
    let metrics = curl_in(
        Some(s.lan.server.name()),
        &[
            "-sS",
            "-m",
            "5",
            "-w",
            "\n%{http_code}",
            &format!("http://{}/metrics", s.http),
        ],
    );
    let (code, text) = metrics.expect("GET /metrics");
    assert_eq!(code, 200);
    assert!(text.contains("bramble_tftp_not_found_total"), "{text}");
}

#[test]
fn clients_get_their_own_os_and_strangers_get_nothing() {
    require_root!();
    let s = Setup::new(
        "tfb",
        &[pi(1, "osA", None), pi(2, "osB", None)],
        &["dc:a6:32:00:00:99"],
        1 << 20,
    );
    let a = hpa(&s, s.client(0), "1234ab01/start4.elf");
    let b = hpa(&s, s.client(1), "1234ab02/start4.elf");
    assert_eq!(a.data, s.file("osA", "start4.elf"));
    assert_eq!(b.data, s.file("osB", "start4.elf"));
    assert_ne!(a.data, b.data);
    assert_eq!(
        hpa(&s, s.client(1), "bootcode.bin").data,
        s.file("osB", "bootcode.bin")
    );
    let cmd = curl_tftp(&s, s.client(1), "1234ab02/cmdline.txt");
    assert_eq!(
        String::from_utf8_lossy(&cmd.data),
        expected_cmdline("osB", "")
    );
    // The unregistered machine (third namespace) gets nothing at all.
    let stranger = s.client(2);
    for name in [
        "bootcode.bin",
        "start4.elf",
        "cmdline.txt",
        "0badf00d/start4.elf",
    ] {
        let got = hpa(&s, stranger, name);
        assert!(!got.ok && got.data.is_empty(), "{name}: {got:?}");
        assert!(got.text.contains("Error code 1"), "{name}: {}", got.text);
        let got = curl_tftp(&s, stranger, name);
        assert_eq!(got.code, Some(68), "{name}: {got:?}");
    }
    let log = s.log();
    let unknown_lines = log
        .lines()
        .filter(|l| l.contains("not a registered client"))
        .count();
    assert_eq!(
        unknown_lines, 1,
        "logged once per minute per client:\n{log}"
    );
}

#[test]
fn reassigning_a_clients_os_changes_what_it_gets() {
    require_root!();
    let mut s = Setup::new("tfc", &[pi(1, "osA", None)], &[], 1 << 20);
    let ns = s.client(0);
    assert_eq!(
        curl_tftp(&s, ns, "1234ab01/start4.elf").data,
        s.file("osA", "start4.elf")
    );
    let token = s.bramble.as_ref().unwrap().token();
    let body = r#"{"mac":"dc:a6:32:00:00:01","os":"osB","serial":"1234ab01"}"#;
    let put = curl_in(
        Some(s.lan.server.name()),
        &[
            "-sS",
            "-m",
            "5",
            "-X",
            "PUT",
            "-H",
            &format!("Authorization: Bearer {token}"),
            "-H",
            "Content-Type: application/json",
            "-d",
            body,
            "-w",
            "\n%{http_code}",
            &format!("http://{}/api/v1/clients/dc:a6:32:00:00:01", s.http),
        ],
    )
    .unwrap();
    assert_eq!(put.0, 200, "{put:?}");
    // At once: no restart, no cache.
    let ns = s.client(0);
    assert_eq!(
        curl_tftp(&s, ns, "1234ab01/start4.elf").data,
        s.file("osB", "start4.elf")
    );
    assert_eq!(
        hpa(&s, ns, "bootcode.bin").data,
        s.file("osB", "bootcode.bin")
    );
    assert_eq!(
        String::from_utf8_lossy(&hpa(&s, ns, "1234ab01/cmdline.txt").data),
        expected_cmdline("osB", "")
    );
    // And after a restart with clients.json rewritten by hand.
    write_clients(&s.data, &[pi(1, "osA", Some("quiet=2"))]);
    s.restart();
    let ns = s.client(0);
    assert_eq!(
        hpa(&s, ns, "1234ab01/start4.elf").data,
        s.file("osA", "start4.elf")
    );
    assert_eq!(
        String::from_utf8_lossy(&hpa(&s, ns, "1234ab01/cmdline.txt").data),
        expected_cmdline("osA", " quiet=2")
    );
}

/// Sends a raw read request from inside `ns`; true if any DATA came back.
fn raw_rrq_gets_data(ns: &str, packet: Vec<u8>) -> bool {
    in_netns(ns, move || {
        let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        sock.send_to(&packet, (SERVER, 69)).unwrap();
        let mut buf = [0u8; 2048];
        matches!(sock.recv_from(&mut buf), Ok((n, _)) if n >= 4 && buf[1] == 3)
    })
}

#[test]
fn every_traversal_attempt_is_refused() {
    require_root!();
    let s = Setup::new("tfd", &[pi(1, "osA", None)], &[], 1 << 20);
    let ns = s.client(0);
    let long = format!("1234ab01/{}", "a".repeat(300));
    for name in [
        "../../../../etc/passwd",
        "1234ab01/../../../../../etc/passwd",
        "1234ab01/../../osB/boot/firmware/start4.elf",
        "/etc/passwd",
        "//etc/passwd",
        "1234ab01/passwd",
        "1234ab01/etc/passwd",
        "1234ab01/up",
        "passwd",
        long.as_str(),
    ] {
        let got = hpa(&s, ns, name);
        assert!(!got.ok && got.data.is_empty(), "{name}: {got:?}");
        assert!(got.text.contains("Error code 2"), "{name}: {}", got.text);
    }
    // curl normalises `..` unless told not to.
    let got = curl_tftp(&s, ns, "1234ab01/passwd");
    assert_eq!(got.code, Some(69), "{got:?}");
    // NUL bytes inside the name: never a file.
    for packet in [
        b"\x00\x011234ab01/passwd\x00\x00octet\x00".to_vec(),
        b"\x00\x01../\x00etc/passwd\x00octet\x00".to_vec(),
        b"\x00\x011234ab01/start4.elf\x00/../../../etc/passwd\x00octet\x00".to_vec(),
    ] {
        assert!(!raw_rrq_gets_data(ns.name(), packet));
    }
    // The server still serves afterwards.
    assert!(hpa(&s, ns, "1234ab01/start4.elf").ok);
}

#[test]
fn fifty_concurrent_clients_fetch_an_8mib_kernel_identically() {
    require_root!();
    const N: u8 = 50;
    let pis: Vec<Pi> = (1..=N)
        .map(|n| pi(n, if n % 2 == 0 { "osB" } else { "osA" }, None))
        .collect();
    let s = Setup::new("tfe", &pis, &[], 8 << 20);
    let outs: Vec<PathBuf> = (0..N).map(|i| s.out(&format!("k{i}"))).collect();
    let children: Vec<_> = pis
        .iter()
        .enumerate()
        .map(|(i, p)| {
            s.client(i)
                .command("curl")
                .args(["-sS", "-m", "120", "--tftp-blksize", "1468", "-o"])
                .arg(&outs[i])
                .arg(format!("tftp://{SERVER}/{}/kernel8.img", p.serial))
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, child) in children.into_iter().enumerate() {
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "client {i}: {o:?}\n{}", s.log());
    }
    let sha = |p: &Path| {
        let o = Command::new("sha256sum").arg(p).output().unwrap();
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_string()
    };
    let root = s.data.join("os");
    let want_a = sha(&root.join("osA/boot/firmware/kernel8.img"));
    let want_b = sha(&root.join("osB/boot/firmware/kernel8.img"));
    assert_ne!(want_a, want_b);
    for (i, p) in pis.iter().enumerate() {
        let want = if p.os == "osA" { &want_a } else { &want_b };
        assert_eq!(&sha(&outs[i]), want, "client {i} ({})", p.os);
    }
}
