//! End to end: QEMU's PXE ROM (iPXE) boots a real Linux kernel from bramble
//! and mounts its root over bramble's NFS, in proxy mode (next to a dnsmasq
//! "school router") and in standalone mode; an unregistered machine does not
//! boot and is listed as discovered. Runs under TCG in network namespaces.

use std::sync::Mutex;
use std::time::Duration;

use bramble_tests::e2e::{Bench, Mode, OS, assert_console_checks};
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
    assert_console_checks(text, &bench.data.join("os").join(OS));
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

/// The fuller client: a debootstrapped Debian (systemd) converted by the
/// `images/` recipe boots to multi-user with a read-only NFS root, and an
/// LDAP user logs in on the serial console, writes `~/proof` into their NFS
/// home; a second user on a second client cannot read it.
#[test]
fn debian_client_reaches_multi_user_and_an_ldap_user_logs_in() {
    if !ready() {
        return;
    }
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let bench = Bench::with_accounts(Mode::Standalone, true);
    let tree = bramble_tests::e2e::debian_tree(&bench.client_dir(), bench.work_dir());
    bench.install_os("debian", &tree);
    let (first, second) = ("52:54:00:e2:e0:03", "52:54:00:e2:e0:04");
    bench.register_os(first, "debian");
    bench.register_os(second, "debian");
    for (user, pass, extra) in [
        ("alice", "alice-pass-1", None),
        ("bob", "bob-pass-1", None),
        ("carol", "carol-first-1", Some("--must-change-password")),
    ] {
        let mut args = vec!["user", "add", user, "--password-stdin"];
        args.extend(extra);
        let out = bench.bramble.cli_stdin(&args, &format!("{pass}\n"));
        assert!(
            out.status.success(),
            "user add {user}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // Client one: alice writes ~/proof into her NFS home.
    let mut session = Session::boot(&bench, first, "alice", "alice-pass-1");
    let proof = session.run("echo written-by-$(id -un) > ~/proof && echo E2E-PR''OOF $(id -u) $(stat -c %u:%a ~/proof) $(pwd)", "E2E-PROOF ");
    assert_eq!(proof, "10000 10000:644 /home/alice");
    drop(session);

    // On the server: the file is in alice's home, owned by her uid.
    use std::os::unix::fs::MetadataExt;
    let path = bench.data.join("homes/alice/proof");
    let meta = std::fs::metadata(&path).expect("homes/alice/proof on the server");
    assert_eq!(meta.uid(), 10000);
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "written-by-alice\n"
    );

    // Client two: bob cannot read it.
    let mut session = Session::boot(&bench, second, "bob", "bob-pass-1");
    let status = session.run(
        "cat /home/alice/proof; echo E2E-BOB-RE''AD $?",
        "E2E-BOB-READ ",
    );
    assert_ne!(status, "0", "bob could read alice's proof");
    assert!(
        !session
            .qemu
            .console()
            .contains("written-by-alice\r\nE2E-BOB"),
        "bob saw the content"
    );

    // carol must change her password at first login, then it is the new one.
    session.qemu.send("exit\n");
    session.login_changing("carol", "carol-first-1", "carol-second-2");
    let who = session.run("echo E2E-CA''ROL $(id -un)", "E2E-CAROL ");
    assert_eq!(who, "carol");
    let whoami = |pass: &str| {
        bench.lan.server.exec(
            "ldapwhoami",
            &[
                "-x",
                "-H",
                "ldap://127.0.0.1",
                "-D",
                "uid=carol,ou=people,dc=bramble,dc=local",
                "-w",
                pass,
            ],
        )
    };
    assert!(
        whoami("carol-second-2").status.success(),
        "the new password does not bind"
    );
    assert!(
        !whoami("carol-first-1").status.success(),
        "the first password still binds"
    );
}

/// A Debian client booted to multi-user with one LDAP user logged in on its
/// serial console.
struct Session<'a> {
    bench: &'a Bench,
    qemu: bramble_tests::e2e::Qemu,
    pos: usize,
}

impl<'a> Session<'a> {
    fn fail(&self, e: String) -> ! {
        panic!(
            "{e}\n--- bramble log ---\n{}",
            bramble_tests::e2e::tail(&self.bench.bramble.log(), 40)
        )
    }

    fn boot(bench: &'a Bench, mac: &str, user: &str, pass: &str) -> Self {
        let console = bench
            .data
            .with_extension(format!("console-{}.log", mac.replace(':', "")));
        let qemu = bench.start_qemu(mac, &console, false);
        let mut s = Session {
            bench,
            qemu,
            pos: 0,
        };
        let limit = Duration::from_secs(300);
        let at = s
            .qemu
            .expect("E2E-MULTI-USER", 0, limit)
            .unwrap_or_else(|e| s.fail(e));
        let line = s.qemu.console()[at..]
            .lines()
            .next()
            .unwrap_or("")
            .to_string();
        let words: Vec<&str> = line.split_whitespace().collect();
        let root_ro = words
            .windows(2)
            .any(|w| w[0] == "root=nfs" && w[1].starts_with("ro,"));
        assert!(root_ro, "{mac}: root is not read-only NFS: {line}");
        eprintln!(
            "debian client {mac}: multi-user after {:.1} s ({line})",
            s.qemu.started.elapsed().as_secs_f64()
        );
        // agetty may have printed its prompt before the marker: ask for a fresh one.
        s.qemu.send("\n");
        s.pos = s
            .qemu
            .expect("login: ", at, limit)
            .unwrap_or_else(|e| s.fail(e));
        s.qemu.send(&format!("{user}\n"));
        let p = s
            .qemu
            .expect("Password:", s.pos, Duration::from_secs(60))
            .unwrap_or_else(|e| s.fail(e));
        s.qemu.send(&format!("{pass}\n"));
        s.pos = s
            .qemu
            .expect("$ ", p, Duration::from_secs(90))
            .unwrap_or_else(|e| s.fail(e));
        s
    }

    /// Logs in as a user whose password has expired and answers the
    /// change-password dialogue (current, new, retype) until a shell prompt.
    fn login_changing(&mut self, user: &str, old: &str, new: &str) {
        self.pos = self
            .qemu
            .expect("login: ", self.pos, Duration::from_secs(60))
            .unwrap_or_else(|e| self.fail(e));
        self.qemu.send(&format!("{user}\n"));
        self.pos = self
            .qemu
            .expect("Password:", self.pos, Duration::from_secs(60))
            .unwrap_or_else(|e| self.fail(e));
        self.qemu.send(&format!("{old}\n"));
        let mut answered = Vec::new();
        for _ in 0..6 {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            let (next, kind) = loop {
                let text = self.qemu.console();
                let rest = &text[self.pos..];
                let found = [
                    ("$ ", "shell"),
                    ("urrent", "current"),
                    ("etype", "retype"),
                    ("ew password", "new"),
                    ("ew LDAP password", "new"),
                ]
                .iter()
                .filter_map(|(needle, kind)| rest.find(needle).map(|at| (at + needle.len(), *kind)))
                .min_by_key(|(at, _)| *at);
                if let Some((at, kind)) = found {
                    // Wait for the prompt's colon before answering.
                    if kind == "shell" || rest[at..].contains(':') {
                        let colon = if kind == "shell" {
                            0
                        } else {
                            rest[at..].find(':').unwrap() + 1
                        };
                        break (self.pos + at + colon, kind);
                    }
                }
                if std::time::Instant::now() > deadline {
                    self.fail(format!(
                        "no password-change prompt after {answered:?}\n{}",
                        bramble_tests::e2e::tail(&text, 30)
                    ));
                }
                std::thread::sleep(Duration::from_millis(100));
            };
            self.pos = next;
            answered.push(kind);
            match kind {
                "shell" => break,
                "current" => self.qemu.send(&format!("{old}\n")),
                _ => self.qemu.send(&format!("{new}\n")),
            }
        }
        assert!(
            answered.contains(&"new") && answered.last() == Some(&"shell"),
            "password change dialogue: {answered:?}"
        );
    }

    /// Types `command`; returns the rest of the line after `marker` in its
    /// output (write the marker with quotes in the command so the
    /// terminal's echo does not match).
    fn run(&mut self, command: &str, marker: &str) -> String {
        self.qemu.send(&format!("{command}\n"));
        self.pos = self
            .qemu
            .expect(marker, self.pos, Duration::from_secs(60))
            .unwrap_or_else(|e| self.fail(e));
        self.qemu.console()[self.pos..]
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_string()
    }
}
