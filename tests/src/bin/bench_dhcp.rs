//! Benchmark: DISCOVER -> OFFER for registered clients, bramble vs dnsmasq.
//!
//! A LAN of network namespaces (never a real network): the server
//! namespace (bridge `br0`, 10.77.0.1) runs bramble in standalone mode,
//! then dnsmasq configured with `dhcp-host` entries for the same MACs and
//! addresses; one client namespace runs the same scripted client loop
//! against each: DISCOVERs (broadcast flag set, so both servers broadcast)
//! from [`CLIENTS`] MACs, [`WINDOW`] in flight, [`REQUESTS`] per round,
//! rounds alternating between the servers. Per-client rate limiting is
//! switched off for bramble (dnsmasq has none). Prints offers/s and p50/p99
//! latency of the best round and the ratios. Needs root; uses `BRAMBLE_BIN`
//! (`make bench` points it at the release build).

use std::collections::HashMap;
use std::fs;
use std::io;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use bramble_tests::dhcp_client::{ClientPort, request};
use bramble_tests::harness::{Bramble, Options, is_root};
use bramble_tests::netns::{Lan, Netns};

const CLIENTS: usize = 200;
const REQUESTS: usize = 20_000;
const WINDOW: usize = 32;
const ROUNDS: usize = 3;
/// A request unanswered this long counts as lost.
const LOST_AFTER: Duration = Duration::from_millis(500);
/// No round runs longer than this.
const ROUND_LIMIT: Duration = Duration::from_secs(60);

fn main() {
    if !is_root() {
        eprintln!("bench_dhcp: skipped (needs root for network namespaces)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let clients: Vec<([u8; 6], Ipv4Addr)> = (0..CLIENTS)
        .map(|i| {
            let mac = [0x02, 0, 0, 0xbb, (i >> 8) as u8, i as u8];
            (mac, Ipv4Addr::new(10, 77, 0, 10 + i as u8))
        })
        .collect();
    let data = tmp.path().join("data");
    write_clients(&data, &clients);
    let dnsmasq_conf = write_dnsmasq_conf(tmp.path(), &clients);
    let mut lan = Lan::new("bdh");
    let idx = lan.add_client("02:00:00:bb:ff:ff");
    let load = ClientPort::open(lan.client(idx).name(), "eth0", 68).expect("client port 68");

    println!(
        "bench_dhcp: DISCOVER->OFFER, {CLIENTS} registered clients, {REQUESTS} requests per round, \
         window {WINDOW}, best of {ROUNDS} rounds per server"
    );
    let mut best: HashMap<&str, Round> = HashMap::new();
    for round in 0..ROUNDS {
        let b = bramble_round(&lan, &data, &load, &clients, round);
        keep_best(&mut best, "bramble", b);
        let d = dnsmasq_round(&lan.server, &dnsmasq_conf, &load, &clients, round);
        keep_best(&mut best, "dnsmasq", d);
    }
    report(&best);
}

#[derive(Debug, Clone)]
struct Round {
    answered: usize,
    lost: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Round {
    fn per_sec(&self) -> f64 {
        self.answered as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.latencies.len() - 1) as f64 * p).round() as usize;
        self.latencies[i]
    }
}

fn keep_best(best: &mut HashMap<&'static str, Round>, name: &'static str, r: Round) {
    println!(
        "  {name:8} {:>9.0} offers/s  p50 {:>7.3} ms  p99 {:>7.3} ms  lost {}",
        r.per_sec(),
        ms(r.percentile(0.50)),
        ms(r.percentile(0.99)),
        r.lost
    );
    let better = best.get(name).is_none_or(|b| r.per_sec() > b.per_sec());
    if better {
        best.insert(name, r);
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn report(best: &HashMap<&str, Round>) {
    let (Some(b), Some(d)) = (best.get("bramble"), best.get("dnsmasq")) else {
        return;
    };
    println!("best rounds:");
    for (name, r) in [("bramble", b), ("dnsmasq", d)] {
        println!(
            "  {name:8} {:>9.0} offers/s  p50 {:>7.3} ms  p99 {:>7.3} ms",
            r.per_sec(),
            ms(r.percentile(0.50)),
            ms(r.percentile(0.99))
        );
    }
    println!(
        "ratio bramble/dnsmasq: throughput {:.2}x, p99 latency {:.2}x (lower is better)",
        b.per_sec() / d.per_sec(),
        ms(b.percentile(0.99)) / ms(d.percentile(0.99)).max(1e-9)
    );
}

fn write_clients(data: &Path, clients: &[([u8; 6], Ipv4Addr)]) {
    fs::create_dir_all(data.join("os/bench")).unwrap();
    fs::create_dir_all(data.join("state")).unwrap();
    let list: Vec<serde_json::Value> = clients
        .iter()
        .map(|(mac, ip)| serde_json::json!({"mac": mac_text(mac), "os": "bench", "fixed_ip": ip}))
        .collect();
    fs::write(
        data.join("state/clients.json"),
        serde_json::to_vec(&serde_json::json!({ "clients": list })).unwrap(),
    )
    .unwrap();
}

fn write_dnsmasq_conf(dir: &Path, clients: &[([u8; 6], Ipv4Addr)]) -> std::path::PathBuf {
    let mut conf = format!(
        "interface=br0\nbind-interfaces\nport=0\nno-ping\nuser=root\n\
         dhcp-range=10.77.0.0,static,255.255.255.0,10m\ndhcp-leasefile={}\npid-file={}\n",
        dir.join("dnsmasq.leases").display(),
        dir.join("dnsmasq.pid").display()
    );
    for (mac, ip) in clients {
        conf.push_str(&format!("dhcp-host={},{ip}\n", mac_text(mac)));
    }
    let path = dir.join("dnsmasq.conf");
    fs::write(&path, conf).unwrap();
    path
}

fn mac_text(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn bramble_round(
    lan: &Lan,
    data: &Path,
    load: &ClientPort,
    clients: &[([u8; 6], Ipv4Addr)],
    round: usize,
) -> Round {
    let settings = "[tftp]\nenabled = false\n[nfs]\nenabled = false\n[ldap]\nenabled = false\n\
        [dhcp]\nmode = \"standalone\"\ninterface = \"br0\"\nforce_standalone = true\n\
        range_start = \"10.77.0.10\"\nrange_end = \"10.77.0.250\"\nnetmask = \"255.255.255.0\"\n\
        router = \"10.77.0.1\"\nrate_limit_per_client = 0\n";
    let bramble = Bramble::start(Options {
        netns: Some(lan.server.name().into()),
        settings: settings.into(),
        data: Some(data.to_path_buf()),
        env: vec![("BRAMBLE_LOG".into(), "info".into())],
        ..Options::default()
    });
    wait_answering(load, clients);
    let r = run_round(load, clients, round);
    bramble.stop();
    r
}

fn dnsmasq_round(
    server: &Netns,
    conf: &Path,
    load: &ClientPort,
    clients: &[([u8; 6], Ipv4Addr)],
    round: usize,
) -> Round {
    let mut child: Child = server
        .command("dnsmasq")
        .arg("--no-daemon")
        .arg(format!("--conf-file={}", conf.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn dnsmasq");
    wait_answering(load, clients);
    let r = run_round(load, clients, round);
    let _ = child.kill();
    let _ = child.wait();
    r
}

/// Waits (bounded) until the server under test answers a DISCOVER.
fn wait_answering(load: &ClientPort, clients: &[([u8; 6], Ipv4Addr)]) {
    let (mac, _) = clients[0];
    for attempt in 0..100u32 {
        let xid = 0x7700_0000 + attempt;
        if load.broadcast(&discover(mac, xid)).is_ok()
            && load.reply(mac, xid, Duration::from_millis(200)).is_some()
        {
            return;
        }
    }
    panic!("server under test never answered");
}

fn discover(mac: [u8; 6], xid: u32) -> Vec<u8> {
    let mut p = request(1, mac, xid, &[(55, vec![1, 3, 6, 54])]);
    p[10] = 0x80; // broadcast flag: both servers broadcast the offer
    p
}

/// One bounded closed-loop round: [`REQUESTS`] DISCOVERs, [`WINDOW`] in flight.
fn run_round(load: &ClientPort, clients: &[([u8; 6], Ipv4Addr)], round: usize) -> Round {
    let sock = load.socket();
    sock.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let base = 0x1000_0000u32.wrapping_mul(round as u32 + 1);
    let mut inflight: HashMap<u32, Instant> = HashMap::with_capacity(WINDOW * 2);
    let mut latencies = Vec::with_capacity(REQUESTS);
    let (mut sent, mut lost) = (0usize, 0usize);
    let mut buf = vec![0u8; 2048];
    let start = Instant::now();
    while latencies.len() + lost < REQUESTS && start.elapsed() < ROUND_LIMIT {
        while inflight.len() < WINDOW && sent < REQUESTS {
            let xid = base.wrapping_add(sent as u32);
            let (mac, _) = clients[sent % clients.len()];
            if sock
                .send_to(&discover(mac, xid), "255.255.255.255:67")
                .is_ok()
            {
                inflight.insert(xid, Instant::now());
            } else {
                lost += 1;
            }
            sent += 1;
        }
        match sock.recv(&mut buf) {
            Ok(n) if n >= 240 && buf[0] == 2 => {
                let xid = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
                if let Some(t) = inflight.remove(&xid) {
                    latencies.push(t.elapsed());
                }
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("receive: {e}"),
        }
        let before = inflight.len();
        inflight.retain(|_, t| t.elapsed() < LOST_AFTER);
        lost += before - inflight.len();
    }
    let elapsed = start.elapsed();
    latencies.sort();
    Round {
        answered: latencies.len(),
        lost: lost + inflight.len(),
        elapsed,
        latencies,
    }
}
