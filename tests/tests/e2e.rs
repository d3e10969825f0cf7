//! End to end: QEMU's PXE ROM (iPXE) boots a real Linux kernel from bramble
//! and mounts its root over bramble's NFS, in proxy mode (next to a dnsmasq
//! "school router") and in standalone mode; an unregistered machine does not
//! boot and is listed as discovered. Runs under TCG in network namespaces.

use std::sync::Mutex;
use std::time::Duration;

use bramble_tests::e2e::{Bench, Mode, OS, check_stat};
use bramble_tests::harness::is_root;

/// QEMU under TCG wants both cores: one boot at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const BOOT_LIMIT: Duration = Duration::from_secs(120);

fn ready() -> bool {
    if !is_root() {
        eprintln!("skipped: needs root (namespaces, tap devices)");
        return false;
    }
    true
}

fn boot_and_check(mode: Mode, mac: &str) {
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let bench = Bench::new(mode);
    bench.register(mac);
    let console = bench
        .data
        .with_extension(format!("console-{mac}.log").replace(':', ""));
    let mut qemu = bench.start_qemu(mac, &console, false);
    let boot = qemu.follow(BOOT_LIMIT).unwrap_or_else(|e| {
        panic!(
            "{mode:?} boot failed: {e}\n--- bramble log ---\n{}",
            bench.bramble.log()
        )
    });
    eprintln!("{mode:?} boot phases (since QEMU start):");
    for (phase, at) in &boot.phases {
        eprintln!("  {phase:<8} {:>6.2} s", at.as_secs_f64());
    }
    let text = &boot.console;
    let root = text
        .lines()
        .find(|l| l.starts_with("E2E-ROOT "))
        .expect("root line");
    assert!(
        root.starts_with("E2E-ROOT nfs ro,"),
        "root is not a read-only NFS mount: {root}"
    );
    assert!(text.contains("E2E-ROOT-READONLY"), "root was writable");
    let tree = bench.data.join("os").join(OS);
    let stats: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("E2E-STAT "))
        .collect();
    assert!(stats.len() >= 9, "too few stat lines: {stats:?}");
    let problems: Vec<String> = stats
        .iter()
        .filter_map(|l| check_stat(l, &tree).err())
        .collect();
    assert!(problems.is_empty(), "attributes differ: {problems:#?}");
    let sum = text
        .lines()
        .find(|l| l.starts_with("E2E-SUM "))
        .expect("checksum line");
    let f: Vec<&str> = sum.split_whitespace().collect();
    assert_eq!(f.len(), 3, "{sum}");
    assert_eq!(
        f[1], f[2],
        "large file read over NFS has the wrong checksum"
    );
    qemu.wait();
}

#[test]
fn proxy_mode_pc_boots_next_to_a_school_router() {
    if ready() {
        boot_and_check(Mode::Proxy, "52:54:00:e2:e0:01");
    }
}

#[test]
fn standalone_mode_pc_boots_from_bramble_alone() {
    if ready() {
        boot_and_check(Mode::Standalone, "52:54:00:e2:e0:02");
    }
}

#[test]
fn unregistered_machine_does_not_boot_and_is_discovered() {
    if !ready() {
        return;
    }
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let bench = Bench::new(Mode::Proxy);
    assert!(!bench.router().name().is_empty());
    let mac = "52:54:00:e2:e0:99";
    let console = bench.data.with_extension("console-unregistered.log");
    let qemu = bench.start_qemu(mac, &console, false);
    let token = bench.bramble.token();
    let url = bench.bramble.url("/api/v1/clients/discovered");
    let auth = format!("Authorization: Bearer {token}");
    let mut seen = false;
    for _ in 0..600 {
        let r = bramble_tests::harness::curl_in(
            bench.bramble.netns(),
            &["-sS", "-H", &auth, "-w", "\n%{http_code}", &url],
        );
        if r.is_ok_and(|(_, body)| body.contains(mac)) {
            seen = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        seen,
        "the unregistered PXE client never showed up as discovered"
    );
    // Give it time to (wrongly) boot: iPXE would load a kernel within seconds.
    std::thread::sleep(Duration::from_secs(15));
    let text = qemu.console();
    assert!(
        !text.contains("E2E-PHASE"),
        "an unregistered machine booted:\n{text}"
    );
    let log = bench.bramble.log();
    assert!(
        !log.contains(&format!("offer to {mac}")),
        "bramble answered it"
    );
}
