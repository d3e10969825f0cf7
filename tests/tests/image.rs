//! The appliance image: the top-level `Containerfile` built for real with
//! `buildah bud --isolation chroot` (tests/image/build.sh: a debootstrapped
//! `debian:bookworm-slim` base and a local Rust builder, no registry), then
//! its entrypoint run as PID 1 in fresh mount/pid/net namespaces
//! (tests/image/run.sh) with only the capabilities `compose.yaml` grants and
//! a data directory bound at /var/lib/bramble.
//!
//! It shows: `/health` is 200 with slapd up as bramble's child; the image's
//! own `bramble user add` and `client add` work; SIGTERM ends PID 1 cleanly
//! within 10 s; a second start on the same volume keeps clients, users and
//! leases; the image holds no build toolchain; its size is printed.
//!
//! Needs root, buildah and debootstrap (skipped otherwise). The first run
//! on a machine debootstraps the base and builds the builder (minutes);
//! later runs reuse /var/cache/bramble-image.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use bramble_tests::harness::{children, is_root};
use serde_json::Value;

const CACHE: &str = "/var/cache/bramble-image";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `buildah` against the test's own storage under [`CACHE`].
fn buildah(args: &[&str]) -> Output {
    Command::new("buildah")
        .args([
            "--root",
            &format!("{CACHE}/storage"),
            "--runroot",
            "/run/bramble-image",
        ])
        .args(args)
        .output()
        .expect("run buildah")
}

fn buildah_ok(args: &[&str]) -> String {
    let o = buildah(args);
    assert!(o.status.success(), "buildah {args:?}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// The built image: a working container with its root mounted; the
/// container, the mount and the image are removed on drop.
struct Image {
    tag: String,
    container: String,
    rootfs: PathBuf,
    config: Value,
}

impl Image {
    fn build() -> Self {
        let tag = format!("localhost/bramble:test-{}", std::process::id());
        let log = PathBuf::from(format!("{CACHE}/build-{}.log", std::process::id()));
        fs::create_dir_all(CACHE).unwrap();
        let started = Instant::now();
        let status = Command::new(repo().join("tests/image/build.sh"))
            .arg(&tag)
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .status()
            .expect("run tests/image/build.sh");
        let output = fs::read_to_string(&log).unwrap_or_default();
        let _ = fs::remove_file(&log);
        if !status.success() {
            let tail: Vec<&str> = output.lines().rev().take(80).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            panic!("image build failed; last lines:\n{}", tail.join("\n"));
        }
        eprintln!(
            "image: {tag} built in {:.0} s",
            started.elapsed().as_secs_f64()
        );
        let inspect: Value =
            serde_json::from_str(&buildah_ok(&["inspect", "--type", "image", &tag])).unwrap();
        let container = buildah_ok(&["from", "--pull=never", &tag]);
        let rootfs = PathBuf::from(buildah_ok(&["mount", &container]));
        Self {
            tag,
            container,
            rootfs,
            config: inspect,
        }
    }

    /// The image's `Entrypoint` and `Env` (OCI config).
    fn entrypoint_and_env(&self) -> (Vec<String>, Vec<(String, String)>) {
        let c = &self.config["OCIv1"]["config"];
        let entry = c["Entrypoint"]
            .as_array()
            .expect("image has an entrypoint")
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        let env = c["Env"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str()?.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            })
            .unwrap_or_default();
        (entry, env)
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = buildah(&["umount", &self.container]);
        let _ = buildah(&["rm", &self.container]);
        let _ = buildah(&["rmi", &self.tag]);
    }
}

/// The capabilities `compose.yaml` adds (after `cap_drop: [ALL]`).
fn compose_caps() -> Vec<String> {
    let compose = fs::read_to_string(repo().join("compose.yaml")).unwrap();
    assert!(
        compose.contains("cap_drop: [ALL]"),
        "compose drops all caps"
    );
    let mut lines = compose.lines().skip_while(|l| l.trim() != "cap_add:");
    lines.next().expect("compose.yaml has cap_add");
    lines
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .map_while(|l| l.strip_prefix("- "))
        .map(|c| c.trim().to_lowercase())
        .collect()
}

/// The image's entrypoint running as PID 1 in its own namespaces.
struct Running<'a> {
    image: &'a Image,
    /// `unshare`, on the host; its exit status is PID 1's.
    child: Option<Child>,
    /// bramble's pid as the host sees it.
    pid: u32,
    log: PathBuf,
}

impl<'a> Running<'a> {
    fn start(image: &'a Image, data: &Path) -> Self {
        let (entry, env) = image.entrypoint_and_env();
        let caps = compose_caps().join(",");
        let log = data.with_extension(format!("log.{}", rand::random::<u32>()));
        let logfile = fs::File::create(&log).unwrap();
        let child = Command::new("unshare")
            .args(["--mount", "--pid", "--fork", "--mount-proc", "--net", "--"])
            .arg(repo().join("tests/image/run.sh"))
            .arg(&image.rootfs)
            .arg(data)
            .arg(&caps)
            .args(&entry)
            .env_clear()
            .envs(env)
            .env("BRAMBLE_LOG", "info,bramble=debug")
            .stdin(Stdio::null())
            .stdout(logfile.try_clone().unwrap())
            .stderr(logfile)
            .spawn()
            .expect("spawn unshare");
        let mut r = Self {
            image,
            pid: 0,
            child: Some(child),
            log,
        };
        r.pid = r.find_pid1();
        r.wait_health(Duration::from_secs(30));
        r
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().unwrap())
    }

    /// unshare's only child becomes PID 1 and then execs bramble.
    fn find_pid1(&mut self) -> u32 {
        let wrapper = self.child.as_ref().unwrap().id();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(s) = self.exited() {
                panic!("PID 1 exited at once ({s}); log:\n{}", self.log());
            }
            if let Some(&pid) = children(wrapper).first() {
                let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                if comm.trim() == "bramble" {
                    return pid;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("bramble never became PID 1; log:\n{}", self.log());
    }

    /// curl inside the container's network namespace.
    fn curl(&self, args: &[&str]) -> Result<(u16, String), String> {
        let out = Command::new("nsenter")
            .arg(format!("--net=/proc/{}/ns/net", self.pid))
            .args(["curl", "-sS", "-m", "5", "-w", "\n%{http_code}"])
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(text(&out));
        }
        let s = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = s.rsplit_once('\n').ok_or("no status line")?;
        Ok((code.trim().parse().map_err(|_| "bad status")?, body.into()))
    }

    fn get(&self, path: &str) -> (u16, String) {
        self.curl(&[&format!("http://127.0.0.1:8080{path}")])
            .unwrap_or_else(|e| panic!("GET {path}: {e}; log:\n{}", self.log()))
    }

    fn wait_health(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut last = String::new();
        while Instant::now() < deadline {
            if let Some(s) = self.exited() {
                panic!("PID 1 exited ({s}); log:\n{}", self.log());
            }
            match self.curl(&["http://127.0.0.1:8080/health"]) {
                Ok((200, _)) => return,
                Ok((code, body)) => last = format!("{code} {body}"),
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "/health not 200 within {limit:?} (last: {last}); log:\n{}",
            self.log()
        );
    }

    /// The image's own `bramble` CLI, as `docker compose exec` would run it:
    /// in the container's namespaces and root, with the image's environment.
    fn exec(&self, args: &[&str], stdin: &str) -> Output {
        let (entry, env) = self.image.entrypoint_and_env();
        let p = self.pid.to_string();
        let mut child = Command::new("nsenter")
            .args(["-t", &p, "--net", "--mount", "--pid", "--root", "--wd"])
            .arg("--")
            .arg(&entry[0])
            .args(args)
            .env_clear()
            .envs(env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nsenter");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    fn exec_ok(&self, args: &[&str], stdin: &str) -> String {
        let o = self.exec(args, stdin);
        assert!(
            o.status.success(),
            "bramble {args:?}: {}\nlog:\n{}",
            text(&o),
            self.log()
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// SIGTERM to PID 1; returns its exit code and how long it took.
    fn stop(mut self) -> (Option<i32>, Duration) {
        let t = Instant::now();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let deadline = t + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Some(s) = self.exited() {
                let code = s.code();
                self.child = None;
                return (code, t.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        (None, t.elapsed())
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // Killing PID 1 kills the whole namespace.
            if self.pid != 0 {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(self.pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = c.kill();
            let _ = c.wait();
            if std::thread::panicking() {
                eprintln!("---- container log ----\n{}", self.log());
            }
        }
        let _ = fs::remove_file(&self.log);
    }
}

/// Capability numbers (linux/capability.h) of the names compose.yaml may use.
fn cap_number(name: &str) -> u32 {
    match name {
        "chown" => 0,
        "dac_override" => 1,
        "dac_read_search" => 2,
        "fowner" => 3,
        "fsetid" => 4,
        "kill" => 5,
        "setgid" => 6,
        "setuid" => 7,
        "setpcap" => 8,
        "net_bind_service" => 10,
        "net_admin" => 12,
        "net_raw" => 13,
        "sys_chroot" => 18,
        "sys_admin" => 21,
        other => panic!("add {other} to cap_number"),
    }
}

/// A field of /proc/PID/status.
fn proc_status(pid: u32, field: &str) -> String {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
        .trim()
        .to_string()
}

/// bramble is PID 1 in its namespace and holds exactly compose's capabilities.
fn assert_pid1_and_caps(pid: u32) {
    let nspid = proc_status(pid, "NSpid");
    assert_eq!(nspid.split_whitespace().last(), Some("1"), "NSpid {nspid}");
    let want = compose_caps()
        .iter()
        .fold(0u64, |m, c| m | 1 << cap_number(c));
    for field in ["CapEff", "CapBnd"] {
        let have = u64::from_str_radix(&proc_status(pid, field), 16).unwrap();
        assert_eq!(
            have, want,
            "{field} {have:#x}, compose.yaml grants {want:#x}"
        );
    }
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// Checks that no compiler or build tool made it into the runtime image.
fn assert_no_toolchain(rootfs: &Path) {
    let forbidden = [
        "usr/bin/cargo",
        "usr/bin/rustc",
        "usr/bin/gcc",
        "usr/bin/cc",
        "usr/bin/c++",
        "usr/bin/ld",
        "usr/bin/as",
        "usr/bin/make",
        "usr/local/cargo",
        "usr/local/rustup",
        "usr/local/rust",
        "src/target",
    ];
    for f in forbidden {
        assert!(
            fs::symlink_metadata(rootfs.join(f)).is_err(),
            "the runtime image contains /{f}"
        );
    }
    let bin = rootfs.join("usr/local/bin/bramble");
    assert!(bin.is_file(), "no /usr/local/bin/bramble in the image");
    eprintln!(
        "image: /usr/local/bin/bramble is {:.1} MB",
        fs::metadata(&bin).unwrap().len() as f64 / 1e6
    );
}

fn image_size(image: &Image) {
    let size = buildah_ok(&["images", "--format", "{{.Size}}", &image.tag]);
    let du = Command::new("du")
        .args(["-sh", "--one-file-system"])
        .arg(&image.rootfs)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let du = du.split_whitespace().next().unwrap_or("?");
    eprintln!("image: size {size} (root filesystem {du})");
}

fn assert_image_config(image: &Image) {
    let d = &image.config["Docker"]["config"];
    assert_eq!(d["StopSignal"], "SIGTERM", "STOPSIGNAL: {d}");
    let health = d["Healthcheck"]["Test"].to_string();
    assert!(health.contains("health"), "HEALTHCHECK: {health}");
    assert!(
        d["Volumes"].get("/var/lib/bramble").is_some(),
        "VOLUME: {d}"
    );
    let labels = &d["Labels"];
    assert!(
        labels["org.opencontainers.image.source"]
            .as_str()
            .is_some_and(|s| s.starts_with("https://")),
        "labels: {labels}"
    );
    assert_eq!(
        labels["org.opencontainers.image.version"],
        env!("CARGO_PKG_VERSION")
    );
}

const MAC: &str = "dc:a6:32:01:02:03";
const LEASE_MAC: &str = "b8:27:eb:aa:bb:cc";

/// A lease as a standalone-mode server would have written it.
fn seed_lease(data: &Path) {
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 86_400;
    fs::create_dir_all(data.join("state")).unwrap();
    fs::write(
        data.join("state/leases.json"),
        format!(
            r#"{{"leases":[{{"mac":"{LEASE_MAC}","ip":"10.77.0.150","expires":{expires},"hostname":"pi-7"}}]}}"#
        ),
    )
    .unwrap();
}

fn leases(r: &Running, token: &str) -> Value {
    let (code, body) = r
        .curl(&[
            "-H",
            &format!("Authorization: Bearer {token}"),
            "http://127.0.0.1:8080/api/v1/leases",
        ])
        .unwrap();
    assert_eq!(code, 200, "{body}");
    json(&body)
}

#[test]
fn image_builds_and_runs_as_pid1() {
    if !is_root() {
        eprintln!("skipped: needs root (buildah, namespaces)");
        return;
    }
    for tool in ["buildah", "debootstrap", "unshare", "nsenter"] {
        if !have(tool) {
            eprintln!("skipped: {tool} is not installed (apt-get install buildah debootstrap)");
            return;
        }
    }
    let image = Image::build();
    assert_image_config(&image);
    assert_no_toolchain(&image.rootfs);
    image_size(&image);

    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    fs::create_dir_all(data.join("os/raspios")).unwrap();
    seed_lease(&data);

    // First start: defaults only (no bramble.toml), as on a fresh host.
    let r = Running::start(&image, &data);
    assert_pid1_and_caps(r.pid);
    let (_, status) = r.get("/status");
    let status = json(&status);
    let slapd = &status["units"]["slapd"];
    assert_eq!(slapd["state"], "up", "/status: {status}");
    let slapd_pid = children(r.pid)
        .into_iter()
        .find(|p| fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "slapd"))
        .unwrap_or_else(|| panic!("slapd is not a child of PID 1; log:\n{}", r.log()));
    eprintln!(
        "image: PID 1 is bramble (host pid {}), slapd its child ({slapd_pid})",
        r.pid
    );
    for unit in ["http", "dhcp", "tftp", "nfs", "slapd"] {
        assert_eq!(
            status["units"][unit]["state"], "up",
            "{unit} with the compose capabilities: {status}"
        );
    }

    r.exec_ok(
        &["user", "add", "alice", "--password-stdin"],
        "correct horse 1\n",
    );
    r.exec_ok(&["client", "add", MAC, "--os", "raspios"], "");
    let home = fs::metadata(data.join("homes/alice")).expect("alice's home");
    use std::os::unix::fs::MetadataExt;
    assert_ne!(home.uid(), 0, "home owned by alice's uid");
    let token = fs::read_to_string(data.join("secrets/admin-token"))
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(leases(&r, &token)[0]["mac"], LEASE_MAC);
    let health = r.exec_ok(&["health"], "");
    assert!(health.contains("\"ok\""), "bramble health: {health}");

    let (code, took) = r.stop();
    eprintln!("image: SIGTERM -> exit {code:?} in {took:?}");
    assert_eq!(code, Some(0), "clean exit on SIGTERM");
    assert!(took < Duration::from_secs(10), "stopped in {took:?}");

    // Second start on the same volume.
    let r = Running::start(&image, &data);
    let clients = r.exec_ok(&["client", "list"], "");
    assert!(clients.contains(MAC), "client kept: {clients}");
    let users = r.exec_ok(&["user", "list"], "");
    assert!(users.contains("alice"), "user kept: {users}");
    let l = leases(&r, &token);
    assert_eq!(l[0]["mac"], LEASE_MAC, "lease kept: {l}");
    assert_eq!(l[0]["ip"], "10.77.0.150");
    let (code, took) = r.stop();
    assert_eq!(code, Some(0), "clean exit on SIGTERM (second run)");
    assert!(took < Duration::from_secs(10), "stopped in {took:?}");
}
