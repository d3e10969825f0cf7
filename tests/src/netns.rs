//! Network namespaces, bridges and veth pairs that tests create for
//! themselves: unique names per test, everything deleted on drop.
//!
//! Test traffic never touches a real network: a [`Lan`] is a server
//! namespace holding a bridge, and each client is a namespace of its own
//! joined to that bridge by a veth pair.

use std::net::Ipv4Addr;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Runs a command, panicking with its output if it fails.
pub fn run(cmd: &str, args: &[&str]) -> Output {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A unique short name: `<tag><pid % 10000><n>` (interface names are <= 15 bytes).
pub fn unique(tag: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!(
        "{}{}x{n}",
        &tag[..tag.len().min(5)],
        std::process::id() % 100_000
    )
}

/// A network namespace deleted (with everything in it) on drop.
pub struct Netns {
    name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Self {
        let name = format!("bramble-{}", unique(tag));
        run("ip", &["netns", "add", &name]);
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command that runs inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Runs `program args` inside the namespace and returns its output (any status).
    pub fn exec(&self, program: &str, args: &[&str]) -> Output {
        self.command(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program} in {}: {e}", self.name))
    }

    /// `ip <args>` inside the namespace; panics on failure.
    pub fn ip(&self, args: &[&str]) {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        run("ip", &full);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Kill whatever still runs inside, then delete the namespace.
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A LAN: the server namespace with bridge `br0` at [`Lan::SERVER_IP`]/24,
/// and client namespaces attached by veth pairs.
pub struct Lan {
    pub server: Netns,
    clients: Vec<Netns>,
}

impl Lan {
    pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
    pub const PREFIX: u8 = 24;

    pub fn new(tag: &str) -> Self {
        let server = Netns::new(tag);
        server.ip(&["link", "add", "br0", "type", "bridge", "forward_delay", "0"]);
        server.ip(&[
            "addr",
            "add",
            &format!("{}/{}", Self::SERVER_IP, Self::PREFIX),
            "dev",
            "br0",
        ]);
        server.ip(&["link", "set", "br0", "up"]);
        Self {
            server,
            clients: Vec::new(),
        }
    }

    /// Adds a client namespace whose `eth0` has `mac`, is up, and has no address.
    /// Returns the index for [`Lan::client`].
    pub fn add_client(&mut self, mac: &str) -> usize {
        let ns = Netns::new("cl");
        let host_end = unique("vh");
        run(
            "ip",
            &[
                "link",
                "add",
                &host_end,
                "netns",
                self.server.name(),
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                ns.name(),
            ],
        );
        self.server.ip(&["link", "set", &host_end, "master", "br0"]);
        self.server.ip(&["link", "set", &host_end, "up"]);
        ns.ip(&["link", "set", "eth0", "address", mac]);
        ns.ip(&["link", "set", "eth0", "up"]);
        self.clients.push(ns);
        self.clients.len() - 1
    }

    pub fn client(&self, index: usize) -> &Netns {
        &self.clients[index]
    }

    /// Gives a client a static address on the LAN (for TFTP/NFS tests).
    pub fn set_client_ip(&self, index: usize, ip: Ipv4Addr) {
        self.clients[index].ip(&[
            "addr",
            "add",
            &format!("{ip}/{}", Self::PREFIX),
            "dev",
            "eth0",
        ]);
    }
}

/// Runs `f` on a thread that has entered network namespace `ns`; sockets it
/// creates stay in that namespace.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    use std::os::fd::AsRawFd;
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("open netns");
        // SAFETY: setns affects only this thread; the fd is a valid namespace.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .expect("netns thread")
}
