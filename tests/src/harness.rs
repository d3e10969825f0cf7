//! Runs the real `bramble` binary for tests: spawn, wait for `/health`
//! readiness (never a fixed sleep), kill on drop and print its log.

use std::fs;
use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Path of the `bramble` binary built by `cargo build` (override: BRAMBLE_BIN).
pub fn bramble_bin() -> PathBuf {
    if let Ok(p) = std::env::var("BRAMBLE_BIN") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target"));
    let bin = target.join("debug/bramble");
    assert!(
        bin.exists(),
        "{} missing: run `cargo build` first",
        bin.display()
    );
    bin
}

/// A free TCP port on loopback (bound and released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `bramble serve` process with its own data directory.
pub struct Bramble {
    child: Option<Child>,
    pub data: PathBuf,
    pub http: SocketAddr,
    log: PathBuf,
    /// Network namespace bramble runs in (HTTP and CLI calls go there too).
    netns: Option<String>,
    _tmp: Option<tempfile::TempDir>,
}

/// How to start bramble.
#[derive(Default)]
pub struct Options {
    /// `bramble.toml` content written into the data dir (http.listen is added;
    /// services whose section is absent are switched off, see [`isolate`]).
    pub settings: String,
    /// Run inside this network namespace (`ip netns exec`).
    pub netns: Option<String>,
    /// Existing data directory to reuse (restart tests); else a fresh temp dir.
    pub data: Option<PathBuf>,
    /// Wrap in `unshare --pid --fork --mount-proc` so bramble is PID 1.
    pub as_pid1: bool,
    pub env: Vec<(String, String)>,
    /// Address to serve HTTP on; default 127.0.0.1:<free port>.
    pub http: Option<SocketAddr>,
}

impl Bramble {
    /// Starts bramble and waits until `/health` answers (any status).
    pub fn start(opts: Options) -> Self {
        let (tmp, data) = match opts.data {
            Some(d) => (None, d),
            None => {
                let t = tempfile::tempdir().unwrap();
                let d = t.path().join("data");
                (Some(t), d)
            }
        };
        fs::create_dir_all(&data).unwrap();
        let http = opts
            .http
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], free_port())));
        fs::write(data.join("bramble.toml"), isolate(&opts.settings)).unwrap();
        let log = data.with_extension(format!("log.{}", rand::random::<u32>()));
        let mut cmd = Vec::<String>::new();
        if let Some(ns) = &opts.netns {
            cmd.extend(["ip", "netns", "exec", ns].map(String::from));
        }
        if opts.as_pid1 {
            cmd.extend(["unshare", "--pid", "--fork", "--mount-proc"].map(String::from));
        }
        cmd.push(bramble_bin().display().to_string());
        cmd.extend(["serve", "--data"].map(String::from));
        cmd.push(data.display().to_string());
        cmd.push("--set".into());
        cmd.push(format!("http.listen={http}"));
        let logfile = fs::File::create(&log).unwrap();
        let child = Command::new(&cmd[0])
            .args(&cmd[1..])
            .envs(opts.env.iter().map(|(k, v)| (k, v)))
            .env(
                "BRAMBLE_LOG",
                std::env::var("BRAMBLE_LOG").unwrap_or("info,bramble=debug".into()),
            )
            .stdin(Stdio::null())
            .stdout(logfile.try_clone().unwrap())
            .stderr(logfile)
            .spawn()
            .expect("spawn bramble");
        let mut b = Self {
            child: Some(child),
            data,
            http,
            log,
            netns: opts.netns.clone(),
            _tmp: tmp,
        };
        b.wait_http(Duration::from_secs(20));
        b
    }

    fn wait_http(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("bramble exited early ({status}); log:\n{}", self.log());
            }
            if self.get("/health").is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "bramble did not answer /health in {limit:?}; log:\n{}",
            self.log()
        );
    }

    /// Base URL of the HTTP endpoint.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// The admin token generated on first start.
    pub fn token(&self) -> String {
        fs::read_to_string(self.data.join("secrets/admin-token"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// Blocking GET returning (status, body). Uses curl to stay runtime-free.
    pub fn get(&self, path: &str) -> Result<(u16, String), String> {
        let url = self.url(path);
        let args = ["-sS", "-m", "5", "-w", "\n%{http_code}", url.as_str()];
        match &self.netns {
            Some(ns) => curl_in(Some(ns), &args),
            None => curl(&args),
        }
    }

    /// The network namespace bramble runs in, if any.
    pub fn netns(&self) -> Option<&str> {
        self.netns.as_deref()
    }

    /// Waits until `check(status, body)` holds for GET `path`, or panics.
    pub fn wait_for(
        &self,
        path: &str,
        limit: Duration,
        check: impl Fn(u16, &str) -> bool,
    ) -> (u16, String) {
        let deadline = Instant::now() + limit;
        let mut last = (0, String::new());
        while Instant::now() < deadline {
            if let Ok(r) = self.get(path) {
                if check(r.0, &r.1) {
                    return r;
                }
                last = r;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "GET {path} never satisfied the check; last {last:?}; log:\n{}",
            self.log()
        )
    }

    /// A `bramble` command aimed at this instance (its namespace, data dir, URL).
    fn cli_command(&self, args: &[&str]) -> Command {
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(bramble_bin());
                c
            }
            None => Command::new(bramble_bin()),
        };
        cmd.args(args)
            .env("BRAMBLE_DATA", &self.data)
            .env("BRAMBLE_URL", self.url(""));
        cmd
    }

    /// Runs a `bramble` CLI subcommand against this instance's data dir.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        self.cli_command(args).output().unwrap()
    }

    /// Like [`Bramble::cli`], with `input` on standard input (passwords).
    pub fn cli_stdin(&self, args: &[&str], input: &str) -> std::process::Output {
        use std::io::Write;
        let mut child = self
            .cli_command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A command that fails on its arguments exits without reading its
        // input: a broken pipe here is its answer, not the test's problem.
        let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
        child.wait_with_output().unwrap()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// Sends a signal to the process we spawned (the `unshare`/`ip` wrapper
    /// forwards nothing, so callers wanting bramble itself use [`Bramble::main_pid`]).
    pub fn signal(&self, pid: u32, sig: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
    }

    /// The pid of the bramble process itself (host view), found as the
    /// deepest descendant of the spawned wrapper running the bramble binary.
    pub fn main_pid(&self) -> u32 {
        self.find_main_pid()
            .unwrap_or_else(|| panic!("cannot find the bramble process under pid {}", self.pid()))
    }

    fn find_main_pid(&self) -> Option<u32> {
        let bin = bramble_bin();
        let mut pid = self.pid();
        for _ in 0..4 {
            if fs::read_link(format!("/proc/{pid}/exe")).ok().as_deref() == Some(bin.as_path()) {
                return Some(pid);
            }
            pid = *children(pid).first()?;
        }
        None
    }

    /// Waits for the spawned process to exit; returns its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(s) = self.child.as_mut().unwrap().try_wait().unwrap() {
                return s.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Stops it (SIGTERM to bramble, then KILL) and returns the data dir for reuse.
    pub fn stop(mut self) -> PathBuf {
        self.terminate();
        self.data.clone()
    }

    fn terminate(&mut self) {
        let running = self
            .child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)));
        if running {
            let pid = self.main_pid_or_wrapper();
            self.signal(pid, nix::sys::signal::Signal::SIGTERM);
        }
        if let Some(mut child) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn main_pid_or_wrapper(&self) -> u32 {
        self.find_main_pid().unwrap_or_else(|| self.pid())
    }
}

impl Drop for Bramble {
    fn drop(&mut self) {
        let running = self.child.is_some();
        self.terminate();
        if running && std::thread::panicking() {
            eprintln!(
                "---- bramble log ({}) ----\n{}",
                self.log.display(),
                self.log()
            );
        }
        let _ = fs::remove_file(&self.log);
    }
}

/// Services a test does not configure are switched off, so tests never
/// fight over the real ports (67, 69, 111, 389, 2049) or reach a network.
pub fn isolate(settings: &str) -> String {
    let mut out = settings.to_string();
    for (section, off) in [
        ("[dhcp]", "mode = \"off\""),
        ("[tftp]", "enabled = false"),
        ("[nfs]", "enabled = false"),
        ("[ldap]", "enabled = false"),
    ] {
        if !settings.lines().any(|l| l.trim() == section) {
            out = format!("{section}\n{off}\n{out}");
        }
    }
    out
}

/// Direct children of `pid` (host view, all threads).
pub fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(s) = fs::read_to_string(t.path().join("children")) {
                out.extend(s.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Runs curl; returns (http status, body) from `-w "\n%{http_code}"` output.
pub fn curl(args: &[&str]) -> Result<(u16, String), String> {
    curl_in(None, args)
}

/// Runs curl inside a network namespace (or here with `None`).
pub fn curl_in(netns: Option<&str>, args: &[&str]) -> Result<(u16, String), String> {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "curl"]);
            c
        }
        None => Command::new("curl"),
    };
    let out = cmd.args(args).output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').ok_or("no status line")?;
    Ok((
        code.trim().parse().map_err(|_| "bad status")?,
        body.to_string(),
    ))
}

/// True when the test runs as root (netns tests need it).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}
