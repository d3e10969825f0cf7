//! The supervisor as a black box: PID 1 duties, supervision of children,
//! shutdown, settings errors, the volume schema and crash-safe state.

use std::fs;
use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use bramble_tests::harness::{Bramble, Options, bramble_bin, children, is_root};
use nix::sys::signal::Signal;

fn proc_state(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

fn cmdline(pid: u32) -> String {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    false
}

fn worker_pids(main: u32, marker: &str) -> Vec<u32> {
    children(main)
        .into_iter()
        .filter(|c| cmdline(*c).contains(marker))
        .collect()
}

const WORKER: &str = r#"
[supervisor]
backoff_initial_ms = 1500
[[children]]
name = "worker"
# Leaves an orphan (the backgrounded sleep's parent exits at once), then
# becomes the long-running worker.
command = ["/bin/sh", "-c", "(sleep 0.3 &); exec sleep 1001"]
"#;

#[test]
fn pid1_reaps_orphans_restarts_children_and_stops_cleanly() {
    if !is_root() {
        eprintln!("skipped: needs root for a PID namespace");
        return;
    }
    let mut b = Bramble::start(Options {
        settings: WORKER.into(),
        as_pid1: true,
        ..Options::default()
    });
    b.wait_for("/health", Duration::from_secs(10), |code, _| code == 200);
    let main = b.main_pid();
    let (_, status) = b.get("/status").unwrap();
    assert!(
        status.contains(r#""pid":1"#),
        "bramble is not PID 1: {status}"
    );

    // The orphaned sleep is reparented to bramble (PID 1) and reaped.
    assert!(
        wait_until(Duration::from_secs(5), || b
            .log()
            .contains("reaped orphan process")),
        "no orphan reaped; log:\n{}",
        b.log()
    );
    let zombies: Vec<u32> = children(main)
        .into_iter()
        .filter(|c| proc_state(*c) == Some('Z'))
        .collect();
    assert!(zombies.is_empty(), "zombies left: {zombies:?}");

    // SIGKILL the worker: health is degraded, then it is restarted.
    let first = worker_pids(main, "sleep 1001");
    assert_eq!(first.len(), 1, "children: {:?}", children(main));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(first[0] as i32), Signal::SIGKILL).unwrap();
    let (code, body) = b.wait_for("/health", Duration::from_secs(5), |code, _| code == 503);
    assert_eq!(code, 503);
    assert!(
        body.contains(r#""name":"worker""#) && body.contains("killed by SIGKILL"),
        "{body}"
    );
    b.wait_for("/health", Duration::from_secs(10), |code, _| code == 200);
    let second = worker_pids(main, "sleep 1001");
    assert_eq!(second.len(), 1);
    assert_ne!(first, second, "worker was not restarted");
    let (_, status) = b.get("/status").unwrap();
    assert!(status.contains(r#""restarts":1"#), "{status}");

    // SIGTERM: exit 0 within 10 s, worker stopped by us, port free.
    let http = b.http;
    let started = Instant::now();
    b.signal(main, Signal::SIGTERM);
    let code = b.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(0), "log:\n{}", b.log());
    assert!(started.elapsed() < Duration::from_secs(10));
    let log = b.log();
    assert!(
        log.contains("sending SIGTERM") && log.contains("bramble stopped"),
        "{log}"
    );
    assert!(proc_state(second[0]).is_none(), "worker still exists");
    TcpListener::bind(http).expect("http port still taken after shutdown");
}

#[test]
fn children_are_stopped_on_sigterm_without_pid_namespace() {
    let mut b = Bramble::start(Options {
        settings: WORKER.into(),
        ..Options::default()
    });
    b.wait_for("/health", Duration::from_secs(10), |code, _| code == 200);
    let main = b.main_pid();
    let worker = worker_pids(main, "sleep 1001");
    assert_eq!(worker.len(), 1);
    b.signal(main, Signal::SIGTERM);
    assert_eq!(
        b.wait_exit(Duration::from_secs(10)),
        Some(0),
        "log:\n{}",
        b.log()
    );
    assert!(
        wait_until(Duration::from_secs(2), || proc_state(worker[0]).is_none()),
        "worker survived"
    );
}

#[test]
fn second_signal_forces_shutdown_of_a_child_ignoring_term() {
    let mut b = Bramble::start(Options {
        settings: r#"
[supervisor]
stop_timeout_ms = 8000
[[children]]
name = "stubborn"
command = ["/bin/sh", "-c", "trap '' TERM; while :; do sleep 0.05; done"]
"#
        .into(),
        ..Options::default()
    });
    b.wait_for("/health", Duration::from_secs(10), |code, _| code == 200);
    let main = b.main_pid();
    let stubborn = worker_pids(main, "trap");
    assert_eq!(stubborn.len(), 1);
    b.signal(main, Signal::SIGTERM);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        proc_state(stubborn[0]).is_some(),
        "child should still ignore TERM"
    );
    let t = Instant::now();
    b.signal(main, Signal::SIGTERM);
    let code = b.wait_exit(Duration::from_secs(3));
    assert!(
        code.is_some_and(|c| c != 0),
        "forced exit should be non-zero: {code:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(3));
    assert!(wait_until(Duration::from_secs(2), || proc_state(
        stubborn[0]
    )
    .is_none_or(|s| s == 'Z')));
    assert!(b.log().contains("forcing shutdown"));
}

#[test]
fn a_child_that_keeps_failing_is_given_up_and_reported() {
    let b = Bramble::start(Options {
        settings: r#"
[supervisor]
backoff_initial_ms = 10
backoff_max_ms = 20
give_up_after = 3
[[children]]
name = "broken"
command = ["/bin/false"]
"#
        .into(),
        ..Options::default()
    });
    let (_, body) = b.wait_for("/health", Duration::from_secs(10), |_, body| {
        body.contains("\"failed\"")
    });
    assert!(body.contains("gave up after 3 fast failures"), "{body}");
}

fn check_config(data: &std::path::Path, toml: &str, env: &[(&str, &str)]) -> (bool, String) {
    fs::create_dir_all(data).unwrap();
    fs::write(data.join("bramble.toml"), toml).unwrap();
    let out = Command::new(bramble_bin())
        .args(["check-config", "--data"])
        .arg(data)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn check_config_lists_every_problem_with_key_names() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out) = check_config(
        dir.path(),
        "[dhcp]\nmode = \"standalone\"\nrange_start = \"10.0.0.x\"\nrange_end = \"10.0.0.9\"\nlease_time_secs = 5\n",
        &[("BRAMBLE_HTTP__LISTEN", "localhost")],
    );
    assert!(!ok);
    for expected in [
        "http.listen: not an address:port: \"localhost\"",
        "dhcp.range_start: not an IPv4 address: \"10.0.0.x\"",
        "dhcp.lease_time_secs: must be at least 60",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    let (ok, out) = check_config(
        dir.path(),
        "[tftp]\nlisten = \"0.0.0.0:69\"\nport = 69\n",
        &[],
    );
    assert!(!ok);
    assert!(out.contains("tftp.port: unknown key"), "{out}");
    let (ok, out) = check_config(
        dir.path(),
        "",
        &[("BRAMBLE_TFTP__LISTEN", "127.0.0.1:6969")],
    );
    assert!(ok, "{out}");
    assert!(out.contains("tftp 127.0.0.1:6969"), "{out}");
    // Validating starts nothing and creates nothing on the volume.
    assert!(!dir.path().join("state").exists());
}

#[test]
fn a_volume_from_a_newer_bramble_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("state")).unwrap();
    fs::write(
        dir.path().join("state/schema.json"),
        r#"{"schema": 7, "written_by": "3.0.0"}"#,
    )
    .unwrap();
    let out = Command::new(bramble_bin())
        .args(["serve", "--set", "http.listen=127.0.0.1:0", "--data"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("written by a newer bramble (schema 7, written by bramble 3.0.0)"),
        "{err}"
    );
}

#[test]
fn json_logs_on_request() {
    let b = Bramble::start(Options {
        env: vec![("BRAMBLE_LOG_FORMAT".into(), "json".into())],
        ..Options::default()
    });
    b.wait_for("/health", Duration::from_secs(10), |code, _| code == 200);
    let log = b.log();
    let first = log.lines().next().expect("a log line");
    let v: serde_json::Value =
        serde_json::from_str(first).unwrap_or_else(|e| panic!("{e}: {first}"));
    assert_eq!(v["fields"]["message"], "bramble starting");
}

#[test]
fn admin_api_needs_the_token() {
    let b = Bramble::start(Options::default());
    let url = b.url("/api/v1/clients");
    let (code, _) = bramble_tests::harness::curl(&["-sS", "-w", "\n%{http_code}", &url]).unwrap();
    assert_eq!(code, 401);
    let bad = "Authorization: Bearer nope";
    let (code, _) =
        bramble_tests::harness::curl(&["-sS", "-H", bad, "-w", "\n%{http_code}", &url]).unwrap();
    assert_eq!(code, 401);
    let good = format!("Authorization: Bearer {}", b.token());
    let (code, body) =
        bramble_tests::harness::curl(&["-sS", "-H", &good, "-w", "\n%{http_code}", &url]).unwrap();
    assert_eq!((code, body.as_str()), (200, "[]"));
}

#[test]
fn client_cli_round_trip() {
    let b = Bramble::start(Options::default());
    fs::create_dir_all(b.data.join("os/bookworm")).unwrap();
    let out = b.cli(&[
        "client",
        "add",
        "DC:A6:32:01:02:03",
        "--os",
        "bookworm",
        "--serial",
        "0x1234ABCD",
    ]);
    assert!(out.status.success(), "{out:?}");
    let out = b.cli(&["client", "add", "dc:a6:32:01:02:03", "--os", "bookworm"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already registered"));
    let out = b.cli(&["client", "add", "dc:a6:32:01:02:04", "--os", "nosuch"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("os \"nosuch\" does not exist"),
        "{out:?}"
    );
    let out = b.cli(&["client", "list"]);
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(
        list.contains("dc:a6:32:01:02:03") && list.contains("1234abcd"),
        "{list}"
    );
    let saved = fs::read_to_string(b.data.join("state/clients.json")).unwrap();
    assert!(saved.contains("dc:a6:32:01:02:03"));
    assert!(
        b.cli(&["client", "remove", "dc:a6:32:01:02:03"])
            .status
            .success()
    );
    let out = b.cli(&["client", "list"]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("dc:a6:32"));
}
