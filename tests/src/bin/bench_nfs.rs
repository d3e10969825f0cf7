//! bench_nfs: bramble's NFS server against nfs-ganesha (VFS backend) on
//! loopback, with the local file system as the ceiling.
//!
//! - sequential read of a 256 MiB file with `nfs-cat` (MB/s, warm cache);
//! - metadata walk of a large tree with `nfs-ls -R` (entries/s).
//!
//! `cargo build --release && BRAMBLE_BIN=target/release/bramble cargo run
//! --release -p bramble-tests --bin bench_nfs` (root; installs
//! `nfs-ganesha nfs-ganesha-vfs rpcbind` with apt if they are missing; set
//! `BENCH_NO_GANESHA=1` to skip it). Sizes: `BENCH_MB`, `BENCH_DIRS`,
//! `BENCH_FILES`.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bramble_tests::harness::{Bramble, Options, free_port};
use bramble_tests::peers::{Killed, ensure_ganesha};

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Throughput figures of one server.
#[derive(Debug, Clone, Copy)]
struct Figures {
    read_mb_s: f64,
    walk_entries_s: f64,
}

fn main() -> anyhow::Result<()> {
    let mb = env_num("BENCH_MB", 256);
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("data");
    let tree = data.join("os/bench");
    let entries = make_tree(
        &tree,
        mb,
        env_num("BENCH_DIRS", 200),
        env_num("BENCH_FILES", 100),
    )?;
    println!("bench_nfs: {mb} MiB file, tree of {entries} entries");

    let local = local_figures(&tree, mb, entries)?;
    let bramble = bramble_figures(&data, mb)?;
    let ganesha = if std::env::var_os("BENCH_NO_GANESHA").is_some() {
        None
    } else {
        match ganesha_figures(tmp.path(), &tree, mb) {
            Ok(f) => Some(f),
            Err(e) => {
                println!("nfs-ganesha: skipped ({e:#})");
                None
            }
        }
    };
    report(local, bramble, ganesha);
    Ok(())
}

/// Writes the big file and `dirs` x `files` small files; returns entries.
fn make_tree(root: &Path, mb: usize, dirs: usize, files: usize) -> anyhow::Result<usize> {
    fs::create_dir_all(root.join("tree"))?;
    let chunk: Vec<u8> = (0..1 << 20)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut big = fs::File::create(root.join("big"))?;
    for _ in 0..mb {
        std::io::Write::write_all(&mut big, &chunk)?;
    }
    for d in 0..dirs {
        let dir = root.join(format!("tree/d{d:04}"));
        fs::create_dir(&dir)?;
        for f in 0..files {
            fs::write(dir.join(format!("file-{f:04}.txt")), b"x")?;
        }
    }
    Ok(dirs * (files + 1))
}

fn seconds(f: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    let t = Instant::now();
    f()?;
    Ok(t.elapsed().as_secs_f64())
}

fn run_quiet(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("{cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn local_figures(tree: &Path, mb: usize, entries: usize) -> anyhow::Result<Figures> {
    let big = tree.join("big");
    let cat = || run_quiet(Command::new("cat").arg(&big).stdout(Stdio::null())).map(|_| ());
    cat()?;
    let read = seconds(cat)?;
    let find = || run_quiet(Command::new("find").arg(tree.join("tree"))).map(|_| ());
    find()?;
    let walk = seconds(find)?;
    Ok(Figures {
        read_mb_s: mb as f64 / read,
        walk_entries_s: entries as f64 / walk,
    })
}

/// Reads the big file and walks the tree through `url_of(path)`.
fn nfs_figures(url_of: impl Fn(&str) -> String, mb: usize) -> anyhow::Result<Figures> {
    let read_once = || {
        run_quiet(
            Command::new("nfs-cat")
                .arg(url_of("/big"))
                .stdout(Stdio::null()),
        )
        .map(|_| ())
    };
    read_once()?;
    let read = seconds(read_once)?;
    let mut listed = 0;
    let walk = seconds(|| {
        let out = run_quiet(Command::new("nfs-ls").arg("-R").arg(url_of("/tree")))?;
        listed = out.lines().count();
        Ok(())
    })?;
    Ok(Figures {
        read_mb_s: mb as f64 / read,
        walk_entries_s: listed as f64 / walk,
    })
}

fn bramble_figures(data: &Path, mb: usize) -> anyhow::Result<Figures> {
    let port = free_port();
    let nfs = SocketAddr::from(([127, 0, 0, 1], port));
    let pm = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let _bramble = Bramble::start(Options {
        settings: format!(
            "[nfs]\nlisten=\"{nfs}\"\nportmap_listen=\"{pm}\"\nallow_unregistered=true\n\
             [dhcp]\nmode=\"off\"\n[tftp]\nenabled=false\n"
        ),
        data: Some(data.to_path_buf()),
        ..Options::default()
    });
    wait_port(port)?;
    nfs_figures(
        |p| format!("nfs://127.0.0.1/os/bench{p}?nfsport={port}&mountport={port}&version=3"),
        mb,
    )
}

fn wait_port(port: u16) -> anyhow::Result<()> {
    for _ in 0..300 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("nothing listens on port {port}")
}

/// Starts rpcbind unless one answers already (ganesha exits without it).
fn rpcbind() -> anyhow::Result<Option<Killed>> {
    if std::net::TcpStream::connect("127.0.0.1:111").is_ok() {
        return Ok(None);
    }
    let child = Command::new("rpcbind")
        .args(["-f", "-w"])
        .spawn()
        .context("rpcbind")?;
    let guard = Killed(child);
    for _ in 0..100 {
        if std::net::TcpStream::connect("127.0.0.1:111").is_ok() {
            return Ok(Some(guard));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("rpcbind did not start")
}

fn ganesha_figures(work: &Path, tree: &Path, mb: usize) -> anyhow::Result<Figures> {
    ensure_ganesha()?;
    let _rpcbind = rpcbind()?;
    let port = free_port();
    let mnt = free_port();
    let conf: PathBuf = work.join("ganesha.conf");
    fs::write(
        &conf,
        format!(
            "NFS_CORE_PARAM {{ NFS_Port = {port}; MNT_Port = {mnt}; Protocols = 3; \
             Enable_NLM = false; Enable_RQUOTA = false; }}\n\
             NFSV4 {{ Graceless = true; }}\n\
             EXPORT {{ Export_Id = 7; Path = \"{p}\"; Pseudo = \"/bench\"; Access_Type = RO; \
             Squash = No_Root_Squash; SecType = sys; Protocols = 3; Transports = TCP; \
             FSAL {{ Name = VFS; }} }}\n\
             LOG {{ Default_Log_Level = WARN; }}\n",
            p = tree.display()
        ),
    )?;
    let child = Command::new("ganesha.nfsd")
        .arg("-F")
        .arg("-f")
        .arg(&conf)
        .arg("-L")
        .arg(work.join("ganesha.log"))
        .arg("-p")
        .arg(work.join("ganesha.pid"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("ganesha.nfsd")?;
    let _ganesha = Killed(child);
    wait_port(port)?;
    let path = tree.display().to_string();
    let url =
        |p: &str| format!("nfs://127.0.0.1{path}{p}?nfsport={port}&mountport={mnt}&version=3");
    // ganesha accepts mounts a moment after it listens.
    let mut last = None;
    for _ in 0..100 {
        match nfs_figures(url, mb) {
            Ok(f) => return Ok(f),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("ganesha never answered")))
}

fn report(local: Figures, bramble: Figures, ganesha: Option<Figures>) {
    println!();
    println!("{:<28}{:>14}{:>18}", "", "read MB/s", "walk entries/s");
    let row = |name: &str, f: Figures| {
        println!("{name:<28}{:>14.0}{:>18.0}", f.read_mb_s, f.walk_entries_s);
    };
    row("local cat / find (ceiling)", local);
    row("bramble (nfs-cat / nfs-ls)", bramble);
    if let Some(g) = ganesha {
        row("nfs-ganesha VFS", g);
    }
    println!();
    let ratio = |a: f64, b: f64| a / b;
    println!(
        "bramble / local:   read {:.2}  walk {:.2}",
        ratio(bramble.read_mb_s, local.read_mb_s),
        ratio(bramble.walk_entries_s, local.walk_entries_s)
    );
    if let Some(g) = ganesha {
        println!(
            "bramble / ganesha: read {:.2}  walk {:.2}",
            ratio(bramble.read_mb_s, g.read_mb_s),
            ratio(bramble.walk_entries_s, g.walk_entries_s)
        );
        println!(
            "ganesha / local:   read {:.2}  walk {:.2}",
            ratio(g.read_mb_s, local.read_mb_s),
            ratio(g.walk_entries_s, local.walk_entries_s)
        );
    }
}
