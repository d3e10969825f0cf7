//! Benchmark: bramble's TFTP against dnsmasq's, same files, same run.
//!
//! A LAN of network namespaces (never a real network): bramble on
//! 10.77.0.1, `dnsmasq --port=0 --enable-tftp` on 10.77.0.2 of the same
//! bridge, one client namespace running curl. Measured: one 20 MiB file at
//! blksize 512, 1024 and 1468 (best of three, servers alternating), and 50
//! concurrent 8 MiB transfers at blksize 1468. Prints MB/s and the ratio
//! bramble / dnsmasq. Needs root; uses `BRAMBLE_BIN` (`make bench` points
//! it at the release build).

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use bramble_tests::harness::{Bramble, Options, is_root};
use bramble_tests::netns::{Lan, Netns};
use rand::RngCore;

const BRAMBLE_IP: &str = "10.77.0.1";
const DNSMASQ_IP: &str = "10.77.0.2";
const SERIAL: &str = "1234ab00";
const BIG: usize = 20 << 20;
const KERNEL: usize = 8 << 20;
const CONCURRENT: usize = 50;
const RUNS: usize = 3;

fn main() {
    if !is_root() {
        eprintln!("bench_tftp: skipped (needs root for network namespaces)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (data, dns_root) = prepare(tmp.path());
    let mut lan = Lan::new("btf");
    lan.server
        .ip(&["addr", "add", &format!("{DNSMASQ_IP}/24"), "dev", "br0"]);
    let idx = lan.add_client("dc:a6:32:00:00:01");
    lan.set_client_ip(idx, Ipv4Addr::new(10, 77, 0, 10));
    let bramble = Bramble::start(Options {
        netns: Some(lan.server.name().into()),
        settings: format!(
            "[tftp]\nlisten = \"{BRAMBLE_IP}:69\"\nmax_transfers = 1000\n[dhcp]\nmode = \"off\"\n\
             [nfs]\nenabled = false\n[ldap]\nenabled = false\n"
        ),
        data: Some(data),
        ..Options::default()
    });
    let mut dnsmasq = start_dnsmasq(&lan.server, &dns_root);
    let client = lan.client(idx);
    for ip in [BRAMBLE_IP, DNSMASQ_IP] {
        wait_ready(client, ip, tmp.path());
    }
    println!(
        "bench_tftp: curl client, bramble {BRAMBLE_IP} vs dnsmasq {DNSMASQ_IP}, MB = 10^6 bytes"
    );
    for blksize in [512, 1024, 1468] {
        let [b, d] =
            [BRAMBLE_IP, DNSMASQ_IP].map(|ip| best_single(client, ip, blksize, tmp.path()));
        report(&format!("20 MiB, blksize {blksize}"), BIG, b, d);
    }
    let [b, d] = [BRAMBLE_IP, DNSMASQ_IP].map(|ip| concurrent(client, ip, tmp.path()));
    report(
        &format!("{CONCURRENT} x 8 MiB concurrent, blksize 1468"),
        CONCURRENT * KERNEL,
        b,
        d,
    );
    let _ = dnsmasq.kill();
    let _ = dnsmasq.wait();
    drop(bramble);
}

/// The volume (one client, one OS with the two files) and a dnsmasq root
/// holding hard links to the same files under the same names.
fn prepare(tmp: &Path) -> (PathBuf, PathBuf) {
    let data = tmp.join("data");
    let fw = data.join("os/bench/boot/firmware");
    fs::create_dir_all(&fw).unwrap();
    for (name, len) in [("big.bin", BIG), ("kernel8.img", KERNEL)] {
        let mut bytes = vec![0u8; len];
        rand::rng().fill_bytes(&mut bytes);
        fs::write(fw.join(name), bytes).unwrap();
    }
    fs::create_dir_all(data.join("state")).unwrap();
    fs::write(
        data.join("state/clients.json"),
        format!(
            r#"{{"clients":[{{"mac":"dc:a6:32:00:00:01","os":"bench","serial":"{SERIAL}"}}]}}"#
        ),
    )
    .unwrap();
    let dns_root = tmp.join("dnsmasq");
    fs::create_dir_all(dns_root.join(SERIAL)).unwrap();
    for name in ["big.bin", "kernel8.img"] {
        fs::hard_link(fw.join(name), dns_root.join(SERIAL).join(name)).unwrap();
    }
    (data, dns_root)
}

fn start_dnsmasq(server: &Netns, root: &Path) -> Child {
    server
        .command("dnsmasq")
        .args([
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--port=0",
            "--enable-tftp",
            "--tftp-max=100",
            "--bind-interfaces",
            "--user=root",
            "--pid-file",
        ])
        .arg(format!("--listen-address={DNSMASQ_IP}"))
        .arg(format!("--tftp-root={}", root.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("dnsmasq (apt-get install dnsmasq)")
}

/// A curl TFTP download inside `ns`; the output file is removed after.
fn curl(ns: &Netns, ip: &str, name: &str, blksize: u32, out: &Path) -> Child {
    ns.command("curl")
        .args([
            "-sS",
            "-m",
            "300",
            "--tftp-blksize",
            &blksize.to_string(),
            "-o",
        ])
        .arg(out)
        .arg(format!("tftp://{ip}/{SERIAL}/{name}"))
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

fn finish(child: Child, out: &Path, want: usize) {
    let o = child.wait_with_output().unwrap();
    let len = fs::metadata(out).map(|m| m.len() as usize).unwrap_or(0);
    let _ = fs::remove_file(out);
    assert!(
        o.status.success() && len == want,
        "transfer failed: {o:?}, {len} bytes"
    );
}

fn wait_ready(ns: &Netns, ip: &str, tmp: &Path) {
    let out = tmp.join("ready");
    for _ in 0..100 {
        let ok = curl(ns, ip, "kernel8.img", 1468, &out)
            .wait()
            .unwrap()
            .success();
        let _ = fs::remove_file(&out);
        if ok {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("TFTP server {ip} never answered");
}

fn best_single(ns: &Netns, ip: &str, blksize: u32, tmp: &Path) -> Duration {
    let out = tmp.join("single");
    (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            finish(curl(ns, ip, "big.bin", blksize, &out), &out, BIG);
            t.elapsed()
        })
        .min()
        .unwrap()
}

fn concurrent(ns: &Netns, ip: &str, tmp: &Path) -> Duration {
    let outs: Vec<PathBuf> = (0..CONCURRENT).map(|i| tmp.join(format!("c{i}"))).collect();
    let t = Instant::now();
    let children: Vec<Child> = outs
        .iter()
        .map(|o| curl(ns, ip, "kernel8.img", 1468, o))
        .collect();
    for (child, out) in children.into_iter().zip(&outs) {
        finish(child, out, KERNEL);
    }
    t.elapsed()
}

fn report(what: &str, bytes: usize, bramble: Duration, dnsmasq: Duration) {
    let rate = |d: Duration| bytes as f64 / d.as_secs_f64() / 1e6;
    println!(
        "{what:<40} bramble {:>7.1} MB/s  dnsmasq {:>7.1} MB/s  ratio {:.2}",
        rate(bramble),
        rate(dnsmasq),
        rate(bramble) / rate(dnsmasq)
    );
}
