//! bench_boot: the same busybox client booted under QEMU (TCG) from bramble
//! and from the established stack, dnsmasq (DHCP + TFTP) with nfs-ganesha
//! (NFS), on the same kind of namespace LAN in the same run. Prints the time
//! from QEMU start to each console phase and the ratio of the totals.
//! Timings only: nothing here passes or fails on them.
//!
//! Needs root; installs nfs-ganesha, nfs-ganesha-vfs and rpcbind with apt if
//! missing. `BENCH_ROUNDS` (default 2) boots per stack, best one reported.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use bramble_tests::e2e::{Bench, Boot, Mode, client_tree, start_qemu_on, start_router};
use bramble_tests::harness::is_root;
use bramble_tests::netns::{Lan, Netns};
use bramble_tests::peers::{Killed, ensure_ganesha};

const MAC: &str = "52:54:00:b0:07:01";
const LIMIT: Duration = Duration::from_secs(180);

fn main() -> anyhow::Result<()> {
    if !is_root() {
        println!("bench_boot: skipped (needs root for namespaces and tap devices)");
        return Ok(());
    }
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let mut bramble = Vec::new();
    let mut baseline = Vec::new();
    for round in 0..rounds {
        bramble.push(boot_bramble().with_context(|| format!("bramble boot, round {round}"))?);
        match boot_baseline() {
            Ok(b) => baseline.push(b),
            Err(e) => println!("baseline boot, round {round}: skipped ({e:#})"),
        }
    }
    report("bramble (standalone)", &bramble);
    report("dnsmasq + nfs-ganesha", &baseline);
    if let (Some(b), Some(d)) = (best(&bramble), best(&baseline)) {
        println!(
            "boot to E2E-DONE: bramble {:.2} s, dnsmasq+ganesha {:.2} s, ratio bramble/baseline {:.2}",
            b.as_secs_f64(),
            d.as_secs_f64(),
            b.as_secs_f64() / d.as_secs_f64()
        );
    }
    Ok(())
}

fn total(boot: &Boot) -> Option<Duration> {
    boot.phases
        .iter()
        .find(|(p, _)| p == "read")
        .map(|(_, t)| *t)
}

fn best(boots: &[Boot]) -> Option<Duration> {
    boots.iter().filter_map(total).min()
}

fn report(name: &str, boots: &[Boot]) {
    for (i, boot) in boots.iter().enumerate() {
        let phases: Vec<String> = boot
            .phases
            .iter()
            .map(|(p, t)| format!("{p} {:.2}", t.as_secs_f64()))
            .collect();
        println!("{name:<24} #{i}: {}", phases.join(" | "));
    }
}

fn boot_bramble() -> anyhow::Result<Boot> {
    let bench = Bench::new(Mode::Standalone);
    bench.register(MAC);
    let console = bench.data.with_extension("console.log");
    let mut qemu = bench.start_qemu(MAC, &console, false);
    qemu.follow(LIMIT).map_err(anyhow::Error::msg)
}

/// dnsmasq hands out addresses and serves TFTP (an iPXE script naming the
/// kernel, initrd and the nfsroot command line); ganesha exports the tree.
fn boot_baseline() -> anyhow::Result<Boot> {
    ensure_ganesha()?;
    let work = tempfile::tempdir()?;
    let tree = client_tree(work.path());
    let root = work.path().join("root");
    let status = Command::new("cp")
        .arg("-a")
        .arg(&tree)
        .arg(&root)
        .status()?;
    if !status.success() {
        bail!("cp -a {} failed", tree.display());
    }
    let tftp = work.path().join("tftp");
    fs::create_dir_all(&tftp)?;
    for f in ["vmlinuz", "initrd.img"] {
        fs::copy(root.join("boot").join(f), tftp.join(f))?;
    }
    let server = Lan::SERVER_IP;
    fs::write(
        tftp.join("boot.ipxe"),
        format!(
            "#!ipxe\ninitrd --name initrd tftp://{server}/initrd.img\n\
             kernel tftp://{server}/vmlinuz console=ttyS0 panic=-1 quiet root=/dev/nfs \
             nfsroot={server}:{},vers=3,tcp ip=dhcp ro rootwait initrd=initrd\nboot\n",
            root.display()
        ),
    )?;
    let mut lan = Lan::new("bb");
    start_router(&mut lan, false);
    let _dnsmasq = dnsmasq(&lan.server, &tftp)?;
    let _rpcbind = spawn(&lan.server, "rpcbind", &["-f", "-w"])?;
    wait_tcp(&lan.server, 111)?;
    let _ganesha = ganesha(&lan.server, work.path(), &root)?;
    wait_tcp(&lan.server, 2049)?;
    let console = work.path().join("console.log");
    let mut qemu = start_qemu_on(&lan, MAC, &console, false);
    qemu.follow(LIMIT).map_err(anyhow::Error::msg)
}

fn spawn(ns: &Netns, program: &str, args: &[&str]) -> anyhow::Result<Killed> {
    let child = ns
        .command(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("start {program}"))?;
    Ok(Killed(child))
}

fn dnsmasq(ns: &Netns, tftp: &Path) -> anyhow::Result<Killed> {
    let root = format!("--tftp-root={}", tftp.display());
    spawn(
        ns,
        "dnsmasq",
        &[
            "--no-daemon",
            "--conf-file=/dev/null",
            "--port=0",
            "--interface=br0",
            "--bind-interfaces",
            "--leasefile-ro",
            "--dhcp-authoritative",
            "--no-ping",
            "--dhcp-range=10.77.0.100,10.77.0.150,255.255.255.0,1h",
            "--dhcp-userclass=set:ipxe,iPXE",
            "--dhcp-boot=tag:ipxe,boot.ipxe",
            "--dhcp-option=encap:175,176,1b",
            "--enable-tftp",
            &root,
        ],
    )
}

fn ganesha(ns: &Netns, work: &Path, root: &Path) -> anyhow::Result<Killed> {
    let conf: PathBuf = work.join("ganesha.conf");
    fs::write(
        &conf,
        format!(
            "NFS_CORE_PARAM {{ NFS_Port = 2049; Protocols = 3; Enable_NLM = false; Enable_RQUOTA = false; }}\n\
             NFSV4 {{ Graceless = true; }}\n\
             EXPORT {{ Export_Id = 9; Path = \"{p}\"; Pseudo = \"/e2e\"; Access_Type = RO; \
             Squash = No_Root_Squash; SecType = sys; Protocols = 3; Transports = TCP; \
             FSAL {{ Name = VFS; }} }}\n\
             LOG {{ Default_Log_Level = WARN; }}\n",
            p = root.display()
        ),
    )?;
    let log = work.join("ganesha.log");
    let pid = work.join("ganesha.pid");
    spawn(
        ns,
        "ganesha.nfsd",
        &[
            "-F",
            "-f",
            conf.to_str().unwrap(),
            "-L",
            log.to_str().unwrap(),
            "-p",
            pid.to_str().unwrap(),
        ],
    )
}

fn wait_tcp(ns: &Netns, port: u16) -> anyhow::Result<()> {
    for _ in 0..200 {
        let probe = ns.exec(
            "bash",
            &["-c", &format!("exec 3<>/dev/tcp/127.0.0.1/{port}")],
        );
        if probe.status.success() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("nothing listens on port {port} in {}", ns.name())
}
