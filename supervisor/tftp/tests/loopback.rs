//! The service in-process on loopback, driven by a minimal TFTP client:
//! identification, generated files, refusals, options, the transfer limit,
//! OS reassignment and shutdown. (The black-box tests with tftp-hpa and
//! curl in network namespaces live in the workspace's `tests/` crate.)

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::time::Duration;

use bramble_core::clients::{Client, Registry};
use bramble_core::leases::{Lease, Leases};
use bramble_core::settings::TftpSettings;
use bramble_core::unix_now as now;
use bramble_core::{Status, Volume};
use bramble_tftp::{Context, bind, run};
use tokio_util::sync::CancellationToken;

/// What a transfer ended with.
#[derive(Debug, PartialEq)]
enum Got {
    File {
        data: Vec<u8>,
        oack: Vec<(String, String)>,
    },
    Error(u16, String),
}

fn rrq(name: &str, opts: &[(&str, &str)]) -> Vec<u8> {
    let mut p = vec![0, 1];
    for s in [name, "octet"]
        .into_iter()
        .chain(opts.iter().flat_map(|(k, v)| [*k, *v]))
    {
        p.extend_from_slice(s.as_bytes());
        p.push(0);
    }
    p
}

fn parse_oack(body: &[u8]) -> Vec<(String, String)> {
    let fields: Vec<String> = body
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    fields
        .chunks(2)
        .map(|c| (c[0].clone(), c.get(1).cloned().unwrap_or_default()))
        .collect()
}

/// A blocking TFTP read: acknowledges every block in order.
fn fetch(server: SocketAddr, name: &str, opts: &[(&str, &str)]) -> Got {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    sock.send_to(&rrq(name, opts), server).unwrap();
    let blksize: usize = opts
        .iter()
        .find(|(k, _)| *k == "blksize")
        .map(|(_, v)| v.parse().unwrap())
        .unwrap_or(512);
    let (mut data, mut oack, mut next) = (Vec::new(), Vec::new(), 1u16);
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, from) = sock.recv_from(&mut buf).expect("answer from the server");
        let p = &buf[..n];
        match u16::from_be_bytes([p[0], p[1]]) {
            3 => {
                let block = u16::from_be_bytes([p[2], p[3]]);
                if block == next {
                    data.extend_from_slice(&p[4..]);
                    next = next.wrapping_add(1);
                }
                sock.send_to(&[0, 4, p[2], p[3]], from).unwrap();
                if block == next.wrapping_sub(1) && n - 4 < blksize {
                    return Got::File { data, oack };
                }
            }
            5 => {
                let msg = String::from_utf8_lossy(&p[4..])
                    .trim_end_matches('\0')
                    .to_string();
                return Got::Error(u16::from_be_bytes([p[2], p[3]]), msg);
            }
            6 => {
                oack = parse_oack(&p[2..]);
                sock.send_to(&[0, 4, 0, 0], from).unwrap();
            }
            other => panic!("unexpected opcode {other}"),
        }
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    os: std::path::PathBuf,
    registry: Registry,
    addr: SocketAddr,
    status: Status,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), bramble_tftp::TftpError>>,
}

fn write(path: &Path, data: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

fn client(mac: &str, os: &str, serial: Option<&str>) -> Client {
    Client {
        mac: mac.parse().unwrap(),
        serial: serial.map(String::from),
        name: None,
        os: os.into(),
        kernel_args: Some("quiet".into()),
        fixed_ip: None,
    }
}

async fn start(max_transfers: u32) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let volume = Volume::open(&dir.path().join("data")).unwrap();
    let os = volume.os_dir();
    write(&os.join("osA/boot/firmware/start4.elf"), &[0xa5; 100_000]);
    write(
        &os.join("osA/boot/firmware/cmdline.txt"),
        b"console=tty1 root=/dev/mmcblk0p2 rw\n",
    );
    write(&os.join("osB/boot/firmware/start4.elf"), b"B");
    let registry = Registry::open(&volume).unwrap();
    registry
        .add(client("dc:a6:32:00:00:01", "osA", Some("1234abcd")))
        .unwrap();
    registry
        .add(client("dc:a6:32:00:00:02", "osB", None))
        .unwrap();
    let leases = Leases::open(&volume).unwrap();
    // Loopback requests come from 127.0.0.1: lease it to the second client.
    leases
        .put(Lease {
            mac: "dc:a6:32:00:00:02".parse().unwrap(),
            ip: Ipv4Addr::LOCALHOST,
            expires: now() + 600,
            hostname: None,
        })
        .unwrap();
    let settings = TftpSettings {
        enabled: true,
        listen: "127.0.0.1:0".parse().unwrap(),
        max_transfers,
    };
    let socket = bind(&settings).await.unwrap();
    let addr = socket.local_addr().unwrap();
    let status = Status::new();
    let ctx = Context {
        settings,
        registry: registry.clone(),
        leases,
        status: status.clone(),
        server_ip: None,
    };
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(run(socket, ctx, shutdown.clone()));
    Fixture {
        _dir: dir,
        os,
        registry,
        addr,
        status,
        shutdown,
        task,
    }
}

async fn get(f: &Fixture, name: &str, opts: &[(&str, &str)]) -> Got {
    let (addr, name) = (f.addr, name.to_string());
    let opts: Vec<(String, String)> = opts
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let opts: Vec<(&str, &str)> = opts.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        fetch(addr, &name, &opts)
    })
    .await
    .unwrap()
}

fn data(got: Got) -> Vec<u8> {
    match got {
        Got::File { data, .. } => data,
        other => panic!("expected a file, got {other:?}"),
    }
}

fn counter(status: &Status, name: &str) -> u64 {
    status
        .counters()
        .into_iter()
        .find(|(s, n, _)| s == "tftp" && n == name)
        .map(|c| c.2)
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_by_serial_and_by_address_with_generated_cmdline() {
    let f = start(10).await;
    assert_eq!(
        data(get(&f, "1234abcd/start4.elf", &[]).await),
        vec![0xa5; 100_000]
    );
    assert_eq!(
        String::from_utf8(data(get(&f, "1234abcd/cmdline.txt", &[]).await)).unwrap(),
        "console=tty1 root=/dev/nfs nfsroot=127.0.0.1:/os/osA,vers=3,tcp ip=dhcp ro rootwait quiet\n"
    );
    // No prefix: 127.0.0.1 is leased to the osB client.
    assert_eq!(data(get(&f, "start4.elf", &[]).await), b"B");
    assert_eq!(
        data(get(&f, "dc-a6-32-00-00-01/start4.elf", &[]).await).len(),
        100_000
    );
    assert_eq!(counter(&f.status, "served"), 4);
    assert!(counter(&f.status, "bytes_sent") >= 200_001);
    f.shutdown.cancel();
    f.task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negotiates_options() {
    let f = start(10).await;
    for blksize in ["512", "1468", "65464"] {
        let got = get(
            &f,
            "1234abcd/start4.elf",
            &[
                ("blksize", blksize),
                ("tsize", "0"),
                ("windowsize", "4"),
                ("timeout", "2"),
            ],
        )
        .await;
        let Got::File { data, oack } = got else {
            panic!("{got:?}")
        };
        assert_eq!(data.len(), 100_000);
        let opt = |k: &str| oack.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(opt("blksize").as_deref(), Some(blksize));
        assert_eq!(opt("tsize").as_deref(), Some("100000"));
        assert_eq!(opt("windowsize").as_deref(), Some("4"));
        assert_eq!(opt("timeout").as_deref(), Some("2"));
    }
    f.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_unknown_clients_missing_files_and_escapes() {
    let f = start(10).await;
    std::os::unix::fs::symlink("/etc/passwd", f.os.join("osA/boot/firmware/passwd")).unwrap();
    // An unknown serial from a known address: that client's own tree.
    assert!(matches!(
        get(&f, "0badf00d/x/start4.elf", &[]).await,
        Got::Error(1, _)
    ));
    assert!(matches!(
        get(&f, "dc-a6-32-00-00-99/start4.elf", &[]).await,
        Got::Error(1, _)
    ));
    assert!(matches!(
        get(&f, "1234abcd/bootsig.bin", &[]).await,
        Got::Error(1, _)
    ));
    // One leading `/` is the client's boot directory (GRUB asks that way):
    // `/etc/passwd` is looked up there, never on the host.
    assert!(matches!(
        get(&f, "/etc/passwd", &[]).await,
        Got::Error(1, _)
    ));
    for name in [
        "../osB/boot/firmware/start4.elf",
        "//etc/passwd",
        "/../etc/passwd",
        "1234abcd/../../../../etc/passwd",
        "1234abcd/passwd",
    ] {
        assert!(
            matches!(get(&f, name, &[]).await, Got::Error(2, _)),
            "{name}"
        );
    }
    let long = format!("1234abcd/{}", "a".repeat(300));
    assert!(matches!(get(&f, &long, &[]).await, Got::Error(2, _)));
    // Writes are refused.
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut wrq = rrq("1234abcd/new", &[]);
    wrq[1] = 2;
    sock.send_to(&wrq, f.addr).unwrap();
    let mut buf = [0u8; 512];
    let (n, _) = sock.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..4], &[0, 5, 0, 4], "{:?}", &buf[..n]);
    assert!(counter(&f.status, "refused") >= 6);
    f.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reassignment_applies_at_once() {
    let f = start(10).await;
    assert_eq!(
        data(get(&f, "1234abcd/start4.elf", &[]).await).len(),
        100_000
    );
    let mut c = f.registry.by_serial("1234abcd").unwrap();
    c.os = "osB".into();
    f.registry.update(c).unwrap();
    assert_eq!(data(get(&f, "1234abcd/start4.elf", &[]).await), b"B");
    assert!(
        String::from_utf8(data(get(&f, "1234abcd/cmdline.txt", &[]).await))
            .unwrap()
            .contains(":/os/osB,")
    );
    f.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_limit_refuses_with_busy_then_recovers() {
    let f = start(1).await;
    // Hold one transfer open: request, never acknowledge.
    let holder = UdpSocket::bind("127.0.0.1:0").unwrap();
    holder
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    holder
        .send_to(&rrq("1234abcd/start4.elf", &[]), f.addr)
        .unwrap();
    let mut buf = [0u8; 1024];
    let (_, transfer) = holder.recv_from(&mut buf).unwrap();
    assert_eq!(buf[1], 3);
    let got = get(&f, "1234abcd/start4.elf", &[]).await;
    assert!(
        matches!(&got, Got::Error(0, m) if m.contains("busy")),
        "{got:?}"
    );
    assert_eq!(counter(&f.status, "busy"), 1);
    // Abandon the held transfer; the slot frees once the server gives up.
    drop((holder, transfer));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Got::File { .. } = get(&f, "1234abcd/start4.elf", &[]).await {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "slot never freed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    f.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_releases_the_port() {
    let f = start(10).await;
    f.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), f.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    UdpSocket::bind(f.addr).expect("port free again after shutdown");
}
