//! The end-to-end bench: a QEMU PC with iPXE boots from bramble.
//!
//! A [`Bench`] is a LAN namespace (bridge `br0`, bramble on the real ports
//! 67/69/111/2049), a tap device per QEMU client, optionally a "school
//! router" namespace running dnsmasq that hands out addresses only (proxy
//! mode). The client OS is built from Debian packages by
//! `tests/e2e/build-client.sh` (cached) and installed as `os/e2e`.
//! [`Bench::boot`] runs QEMU under TCG and follows the serial console.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Bramble, Options};
use crate::netns::{Lan, run, unique};

pub const OS: &str = "e2e";

/// How bramble hands out addresses in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// dnsmasq plays the school router; bramble adds boot information.
    Proxy,
    /// bramble alone.
    Standalone,
}

/// Builds (or takes from the cache) the Debian systemd client converted by
/// `images/netboot-convert.sh`; `busybox_client` is [`client_tree`]'s parent.
pub fn debian_tree(busybox_client: &Path, work: &Path) -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e/build-debian-client.sh");
    let out = work.join("debian");
    let status = Command::new("bash")
        .arg(&script)
        .arg(busybox_client)
        .arg(&out)
        .status()
        .expect("run build-debian-client.sh");
    assert!(status.success(), "build-debian-client.sh failed");
    out
}

/// Builds (or takes from the cache) the client OS tree; returns its path.
pub fn client_tree(work: &Path) -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e/build-client.sh");
    let out = work.join("client");
    let status = Command::new("bash")
        .arg(&script)
        .arg(&out)
        .status()
        .expect("run build-client.sh");
    assert!(status.success(), "build-client.sh failed");
    out.join("os-tree")
}

pub struct Bench {
    pub lan: Lan,
    pub bramble: Bramble,
    pub mode: Mode,
    router: usize,
    pub data: PathBuf,
    work: tempfile::TempDir,
}

fn settings(mode: Mode, accounts: bool) -> String {
    let dhcp = match mode {
        Mode::Proxy => "mode = \"proxy\"".to_string(),
        Mode::Standalone => "mode = \"standalone\"\nrange_start = \"10.77.0.100\"\nrange_end = \"10.77.0.150\"\nnetmask = \"255.255.255.0\"\nrouter = \"10.77.0.1\"\nforce_standalone = false\nprobe_timeout_ms = 1000".to_string(),
    };
    format!(
        "[dhcp]\ninterface = \"br0\"\nserver_ip = \"{ip}\"\n{dhcp}\n[tftp]\nlisten = \"0.0.0.0:69\"\n[nfs]\nlisten = \"0.0.0.0:2049\"\nportmap_listen = \"0.0.0.0:111\"\n{ldap}",
        ip = Lan::SERVER_IP,
        ldap = if accounts {
            "[ldap]\nlisten = \"0.0.0.0:389\"\n"
        } else {
            ""
        },
    )
}

impl Bench {
    /// Sets up the LAN, installs the client OS and starts bramble.
    pub fn new(mode: Mode) -> Self {
        Self::with_accounts(mode, false)
    }

    /// Like [`Bench::new`], with slapd (LDAP accounts) on port 389 when `accounts`.
    pub fn with_accounts(mode: Mode, accounts: bool) -> Self {
        let work = tempfile::tempdir().unwrap();
        let tree = client_tree(work.path());
        let data = work.path().join("data");
        fs::create_dir_all(data.join("os")).unwrap();
        run(
            "cp",
            &[
                "-a",
                tree.to_str().unwrap(),
                data.join("os").join(OS).to_str().unwrap(),
            ],
        );
        let mut lan = Lan::new("e2e");
        let router = start_router(&mut lan, mode == Mode::Proxy);
        let bramble = Bramble::start(Options {
            settings: settings(mode, accounts),
            netns: Some(lan.server.name().to_string()),
            data: Some(data.clone()),
            http: Some("127.0.0.1:8080".parse().unwrap()),
            ..Options::default()
        });
        bramble.wait_for("/health", Duration::from_secs(30), |code, _| code == 200);
        Self {
            lan,
            bramble,
            mode,
            router,
            data,
            work,
        }
    }

    /// Where the busybox client (kernel, initramfs, tree) was built.
    pub fn client_dir(&self) -> PathBuf {
        self.work.path().join("client")
    }

    /// A scratch directory that lives as long as the bench.
    pub fn work_dir(&self) -> &Path {
        self.work.path()
    }

    /// Registers `mac` to boot the e2e OS.
    pub fn register(&self, mac: &str) {
        self.register_os(mac, OS);
    }

    /// Copies `tree` into the volume as `os/<name>`.
    pub fn install_os(&self, name: &str, tree: &Path) {
        let to = self.data.join("os").join(name);
        run("cp", &["-a", tree.to_str().unwrap(), to.to_str().unwrap()]);
    }

    /// Registers `mac` to boot `os`.
    pub fn register_os(&self, mac: &str, os: &str) {
        let out = self.bramble.cli(&["client", "add", mac, "--os", os]);
        assert!(
            out.status.success(),
            "client add: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Adds a tap device on the bridge and starts QEMU on it.
    pub fn start_qemu(&self, mac: &str, console: &Path, interactive: bool) -> Qemu {
        start_qemu_on(&self.lan, mac, console, interactive)
    }

    /// Adds a tap device on the bridge and starts `program` (another QEMU,
    /// e.g. `qemu-system-aarch64`) with `args` followed by a tap `-netdev`
    /// with id `n0` (the NIC in `args` names `netdev=n0`) and `-nographic`;
    /// the serial console goes to `console` as in [`Bench::start_qemu`].
    pub fn start_qemu_with(&self, program: &str, args: &[String], console: &Path) -> Qemu {
        let tap = unique("tap");
        self.lan
            .server
            .ip(&["tuntap", "add", "dev", &tap, "mode", "tap"]);
        self.lan.server.ip(&["link", "set", &tap, "master", "br0"]);
        self.lan.server.ip(&["link", "set", &tap, "up"]);
        let mut cmd = self.lan.server.command(program);
        cmd.args(args)
            .args([
                "-netdev",
                &format!("tap,id=n0,ifname={tap},script=no,downscript=no"),
            ])
            .arg("-nographic");
        let out = fs::File::create(console).expect("console file");
        cmd.stdin(Stdio::piped())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start {program}: {e}"));
        let stdin = child.stdin.take();
        Qemu {
            child,
            stdin,
            console: console.to_path_buf(),
            started: Instant::now(),
        }
    }

    /// The router namespace (RAs always; IPv4 DHCP in proxy mode).
    pub fn router(&self) -> &crate::netns::Netns {
        self.lan.client(self.router)
    }
}

/// Adds a tap device on `lan`'s bridge and starts a QEMU PC (iPXE ROM,
/// network boot) on it; the serial console goes to `console` unless
/// `interactive`.
pub fn start_qemu_on(lan: &Lan, mac: &str, console: &Path, interactive: bool) -> Qemu {
    let tap = unique("tap");
    lan.server
        .ip(&["tuntap", "add", "dev", &tap, "mode", "tap"]);
    lan.server.ip(&["link", "set", &tap, "master", "br0"]);
    lan.server.ip(&["link", "set", &tap, "up"]);
    let mut cmd = lan.server.command("qemu-system-x86_64");
    cmd.args([
        "-M",
        "pc",
        "-m",
        "512",
        "-accel",
        "tcg",
        "-no-reboot",
        "-boot",
        "n",
    ])
    .args([
        "-netdev",
        &format!("tap,id=n0,ifname={tap},script=no,downscript=no"),
    ])
    .args(["-device", &format!("virtio-net-pci,netdev=n0,mac={mac}")]);
    // -nographic: the firmware (SeaBIOS, iPXE) and the kernel both
    // write to the serial console, so a failed PXE step is visible too.
    cmd.arg("-nographic");
    if !interactive {
        let out = fs::File::create(console).expect("console file");
        cmd.stdin(Stdio::piped())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
    }
    let mut child = cmd.spawn().expect("start qemu-system-x86_64");
    let stdin = child.stdin.take();
    Qemu {
        child,
        stdin,
        console: console.to_path_buf(),
        started: Instant::now(),
    }
}

/// The school router: its own namespace on the bridge. It always sends IPv6
/// router advertisements (without them iPXE waits ~13 s for IPv6
/// autoconfiguration) and, in proxy mode, runs dnsmasq handing out IPv4
/// addresses only (no boot options).
pub fn start_router(lan: &mut Lan, dhcp: bool) -> usize {
    let idx = lan.add_client("02:00:00:00:00:fe");
    lan.set_client_ip(idx, "10.77.0.254".parse().unwrap());
    let ns = lan.client(idx);
    ns.ip(&["-6", "addr", "add", "fd77::fe/64", "dev", "eth0", "nodad"]);
    let mut args = vec![
        "--no-daemon",
        "--conf-file=/dev/null",
        "--port=0",
        "--interface=eth0",
        "--bind-interfaces",
        "--leasefile-ro",
        "--log-facility=-",
        "--enable-ra",
        "--dhcp-range=::,constructor:eth0,ra-only",
    ];
    if dhcp {
        args.extend([
            "--dhcp-range=10.77.0.50,10.77.0.90,255.255.255.0,1h",
            "--dhcp-option=3,10.77.0.254",
            "--dhcp-authoritative",
        ]);
    }
    let child = ns
        .command("dnsmasq")
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start dnsmasq (apt-get install dnsmasq-base)");
    // The namespace's drop kills it; do not wait here.
    std::mem::forget(child);
    idx
}

/// Console markers of the firmware phases: iPXE got its DHCP answer and
/// fetched the script, then the kernel and initrd.
const FIRMWARE_MARKERS: [(&str, &str); 3] = [
    ("pxe-dhcp", "Filename:"),
    ("script", "[script]"),
    ("kernel-loaded", "initrd... ok"),
];

pub struct Qemu {
    child: Child,
    /// The serial console's input (scripted logins).
    stdin: Option<std::process::ChildStdin>,
    console: PathBuf,
    pub started: Instant,
}

/// What a boot showed on the console, with the time each marker appeared.
#[derive(Debug, Default)]
pub struct Boot {
    pub console: String,
    pub phases: Vec<(String, Duration)>,
}

impl Qemu {
    /// Types `text` on the serial console.
    pub fn send(&mut self, text: &str) {
        use std::io::Write;
        let stdin = self.stdin.as_mut().expect("console input");
        stdin
            .write_all(text.as_bytes())
            .expect("write to the console");
        stdin.flush().unwrap();
    }

    /// Waits until `needle` appears on the console after byte offset `from`;
    /// returns the offset just past it.
    pub fn expect(&mut self, needle: &str, from: usize, limit: Duration) -> Result<usize, String> {
        let deadline = Instant::now() + limit;
        loop {
            let text = self.console();
            if let Some(at) = text.get(from..).and_then(|t| t.find(needle)) {
                return Ok(from + at + needle.len());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "qemu exited ({status}) waiting for {needle:?}\n{}",
                    tail(&text, 40)
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "no {needle:?} within {limit:?}\n{}",
                    tail(&text, 40)
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn console(&self) -> String {
        fs::read(&self.console)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Follows the console until `E2E-DONE`, a failure marker, QEMU's exit or
    /// the time limit; records when each `E2E-PHASE` line appeared.
    pub fn follow(&mut self, limit: Duration) -> Result<Boot, String> {
        let mut boot = Boot::default();
        let deadline = self.started + limit;
        loop {
            let text = self.console();
            for (name, marker) in FIRMWARE_MARKERS {
                if text.contains(marker) && !boot.phases.iter().any(|(n, _)| n == name) {
                    boot.phases.push((name.to_string(), self.started.elapsed()));
                }
            }
            for line in text.lines() {
                let Some(at) = line.find("E2E-PHASE ") else {
                    continue;
                };
                let name = line[at..]
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("?")
                    .to_string();
                if !boot.phases.iter().any(|(n, _)| *n == name) {
                    boot.phases.push((name, self.started.elapsed()));
                }
            }
            boot.console = text;
            if boot.console.contains("E2E-DONE") {
                return Ok(boot);
            }
            if let Some(line) = boot.console.lines().find(|l| l.starts_with("E2E-FAIL")) {
                return Err(format!("{line}\n{}", tail(&boot.console, 30)));
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "qemu exited ({status}) before E2E-DONE\n{}",
                    tail(&boot.console, 30)
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "no E2E-DONE within {limit:?}\n{}",
                    tail(&boot.console, 30)
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// QEMU's exit status, if it has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub fn wait(&mut self) {
        let _ = self.child.wait();
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Checks one `E2E-STAT <path> <mode hex> <uid> <gid> <nlink> <major hex> <minor hex> <size>`
/// line against the server's own `lstat` of the same file in the tree.
pub fn check_stat(line: &str, tree: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let f: Vec<&str> = line.split_whitespace().collect();
    let [_, path, mode, uid, gid, nlink, major, minor, size] = f[..] else {
        return Err(format!("malformed stat line: {line}"));
    };
    let meta = fs::symlink_metadata(tree.join(path.trim_start_matches('/')))
        .map_err(|e| format!("{path}: {e}"))?;
    let rdev = meta.rdev();
    let expected = format!(
        "{:x} {} {} {} {:x} {:x} {}",
        meta.mode(),
        meta.uid(),
        meta.gid(),
        meta.nlink(),
        libc::major(rdev),
        libc::minor(rdev),
        meta.size()
    );
    let got = format!("{mode} {uid} {gid} {nlink} {major} {minor} {size}");
    if expected == got {
        Ok(())
    } else {
        Err(format!("{path}: guest sees {got}, server has {expected}"))
    }
}

/// Asserts what the check script reported on the console: the root is a
/// read-only NFS mount, every special file's attributes equal the server's
/// `lstat` in `tree`, and the large file's checksum is right.
pub fn assert_console_checks(text: &str, tree: &Path) {
    let root = text
        .lines()
        .find(|l| l.starts_with("E2E-ROOT "))
        .expect("root line");
    assert!(
        root.starts_with("E2E-ROOT nfs ro,"),
        "root is not a read-only NFS mount: {root}"
    );
    assert!(text.contains("E2E-ROOT-READONLY"), "root was writable");
    let stats: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("E2E-STAT "))
        .collect();
    assert!(stats.len() >= 9, "too few stat lines: {stats:?}");
    let problems: Vec<String> = stats
        .iter()
        .filter_map(|l| check_stat(l, tree).err())
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
}
