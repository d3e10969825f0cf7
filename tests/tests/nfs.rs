//! The NFS service as a black box: the real binary, the libnfs tools
//! (`nfs-ls`, `nfs-cp`, `nfs-cat`) and, for what they do not reach, the
//! RPC test client in `bramble_tests::nfs_client`.
//!
//! Run with `cargo build && cargo test -p bramble-tests --test nfs`
//! (as root: device nodes, ownership and the namespace test need it).

use std::fs;
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use bramble_tests::harness::{Bramble, Options, free_port, is_root};
use bramble_tests::netns::Lan;
use bramble_tests::nfs_client::{Client, MOUNT, NFS, Outcome, PORTMAP, diropargs};
use nfs3_types::nfs3::{self, Nfs3Result, nfs_fh3, nfsstat3};
use nfs3_types::xdr_codec::Opaque;
use nix::sys::stat::{Mode, SFlag, makedev, mknod};

const ALICE: u32 = 1001;
const BOB: u32 = 1002;
const CAROL: u32 = 1003;
const STAFF: u32 = 2000;

/// A running server on loopback with its ports.
struct Server {
    bramble: Bramble,
    nfs: SocketAddr,
    portmap: SocketAddr,
}

fn settings(nfs: SocketAddr, portmap: SocketAddr, allow_unregistered: bool) -> String {
    format!(
        "[nfs]\nlisten=\"{nfs}\"\nportmap_listen=\"{portmap}\"\nallow_unregistered={allow_unregistered}\n\
         [dhcp]\nmode=\"off\"\n[tftp]\nenabled=false\n"
    )
}

impl Server {
    fn start(data: &Path) -> Self {
        let nfs = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let portmap = SocketAddr::from(([127, 0, 0, 1], free_port()));
        Self::start_on(data, nfs, portmap)
    }

    fn start_on(data: &Path, nfs: SocketAddr, portmap: SocketAddr) -> Self {
        let bramble = Bramble::start(Options {
            settings: settings(nfs, portmap, true),
            data: Some(data.to_path_buf()),
            ..Options::default()
        });
        wait_tcp(nfs);
        Self {
            bramble,
            nfs,
            portmap,
        }
    }

    fn client(&self, uid: u32, gid: u32, groups: &[u32]) -> Client {
        Client::connect(self.nfs).unwrap().user(uid, gid, groups)
    }

    /// A libnfs URL for `path` as `uid`/`gid`.
    fn url(&self, path: &str, uid: u32, gid: u32) -> String {
        let p = self.nfs.port();
        format!("nfs://127.0.0.1{path}?nfsport={p}&mountport={p}&version=3&uid={uid}&gid={gid}")
    }
}

fn wait_tcp(addr: SocketAddr) {
    for _ in 0..200 {
        if std::net::TcpStream::connect(addr).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on {addr}");
}

fn tool(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e} (apt-get install libnfs-utils)"))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn chown(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(p, Some(uid), Some(gid)).unwrap();
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

/// A data directory with an OS tree holding every file type, and homes.
fn prepare() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let os = data.join("os/deb");
    fs::create_dir_all(os.join("etc")).unwrap();
    fs::write(os.join("etc/hostname"), "client\n").unwrap();
    fs::write(os.join("regular"), "some bytes\n").unwrap();
    fs::write(os.join("su"), "#!/bin/sh\n").unwrap();
    chmod(&os.join("su"), 0o4755);
    fs::write(os.join("link-a"), "shared inode").unwrap();
    fs::hard_link(os.join("link-a"), os.join("link-b")).unwrap();
    fs::write(os.join("users-file"), "mine").unwrap();
    chown(&os.join("users-file"), 1000, 1000);
    std::os::unix::fs::symlink("/etc", os.join("etclink")).unwrap();
    std::os::unix::fs::symlink("regular", os.join("rel-link")).unwrap();
    nix::unistd::mkfifo(&os.join("fifo"), Mode::from_bits_truncate(0o640)).unwrap();
    drop(std::os::unix::net::UnixListener::bind(os.join("socket")).unwrap());
    mknod(
        &os.join("null"),
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o666),
        makedev(1, 3),
    )
    .unwrap();
    mknod(
        &os.join("disk"),
        SFlag::S_IFBLK,
        Mode::from_bits_truncate(0o660),
        makedev(259, 70000),
    )
    .unwrap();
    fs::create_dir(os.join("tmp")).unwrap();
    chmod(&os.join("tmp"), 0o1777);
    fs::create_dir(os.join("setgid-dir")).unwrap();
    chmod(&os.join("setgid-dir"), 0o2775);

    let homes = data.join("homes");
    for (name, uid) in [("alice", ALICE), ("bob", BOB)] {
        let h = homes.join(name);
        fs::create_dir_all(&h).unwrap();
        chown(&h, uid, uid);
        chmod(&h, 0o700);
    }
    let secret = homes.join("alice/secret.txt");
    fs::write(&secret, "alice's secret\n").unwrap();
    chown(&secret, ALICE, ALICE);
    chmod(&secret, 0o600);
    let tmpdir = homes.join("tmp");
    fs::create_dir(&tmpdir).unwrap();
    chmod(&tmpdir, 0o1777);
    let staff = homes.join("staff");
    fs::create_dir(&staff).unwrap();
    chown(&staff, 0, STAFF);
    chmod(&staff, 0o770);
    let shared = data.join("shared/teachers");
    fs::create_dir_all(&shared).unwrap();
    chown(&shared, 0, STAFF);
    chmod(&shared, 0o2775);
    fs::write(shared.join("timetable"), "monday\n").unwrap();
    (tmp, data)
}

fn ok<T, E: std::fmt::Debug>(r: Nfs3Result<T, E>, what: &str) -> T {
    match r {
        Nfs3Result::Ok(v) => v,
        Nfs3Result::Err((s, e)) => panic!("{what}: {s} {e:?}"),
    }
}

fn status<T, E>(r: Nfs3Result<T, E>) -> nfsstat3 {
    match r {
        Nfs3Result::Ok(_) => nfsstat3::NFS3_OK,
        Nfs3Result::Err((s, _)) => s,
    }
}

fn mount(c: &mut Client, path: &str) -> nfs_fh3 {
    c.mount(path)
        .unwrap()
        .unwrap_or_else(|e| panic!("MNT {path}: {e}"))
}

fn fattr(c: &mut Client, fh: &nfs_fh3) -> nfs3::fattr3 {
    ok(c.getattr(fh).unwrap(), "GETATTR").obj_attributes
}

fn assert_attrs_equal(name: &str, a: &nfs3::fattr3, m: &fs::Metadata) {
    let kind = match m.mode() & libc::S_IFMT {
        libc::S_IFDIR => nfs3::ftype3::NF3DIR,
        libc::S_IFLNK => nfs3::ftype3::NF3LNK,
        libc::S_IFCHR => nfs3::ftype3::NF3CHR,
        libc::S_IFBLK => nfs3::ftype3::NF3BLK,
        libc::S_IFIFO => nfs3::ftype3::NF3FIFO,
        libc::S_IFSOCK => nfs3::ftype3::NF3SOCK,
        _ => nfs3::ftype3::NF3REG,
    };
    assert_eq!(a.type_, kind, "{name}: type");
    assert_eq!(a.mode, m.mode() & 0o7777, "{name}: mode");
    assert_eq!(u64::from(a.nlink), m.nlink(), "{name}: nlink");
    assert_eq!((a.uid, a.gid), (m.uid(), m.gid()), "{name}: owner");
    assert_eq!(a.size, m.size(), "{name}: size");
    assert_eq!(a.used, m.blocks() * 512, "{name}: used");
    assert_eq!(a.fileid, m.ino(), "{name}: fileid");
    if matches!(kind, nfs3::ftype3::NF3CHR | nfs3::ftype3::NF3BLK) {
        let (ma, mi) = (libc::major(m.rdev()), libc::minor(m.rdev()));
        assert_eq!(
            (a.rdev.specdata1, a.rdev.specdata2),
            (ma, mi),
            "{name}: rdev"
        );
    }
    let t = |s: i64, n: i64| (s as u32, n as u32);
    assert_eq!(
        (a.mtime.seconds, a.mtime.nseconds),
        t(m.mtime(), m.mtime_nsec()),
        "{name}: mtime"
    );
    assert_eq!(
        (a.ctime.seconds, a.ctime.nseconds),
        t(m.ctime(), m.ctime_nsec()),
        "{name}: ctime"
    );
    assert_eq!(
        (a.atime.seconds, a.atime.nseconds),
        t(m.atime(), m.atime_nsec()),
        "{name}: atime"
    );
}

#[test]
fn every_attribute_equals_stat_on_the_server() {
    if !is_root() {
        eprintln!("skipped: needs root for device nodes and ownership");
        return;
    }
    let (_tmp, data) = prepare();
    let srv = Server::start(&data);
    let mut c = srv.client(0, 0, &[]);
    let root = mount(&mut c, "/os/deb");
    let os = data.join("os/deb");
    let names = [
        ".",
        "etc",
        "etc/hostname",
        "regular",
        "su",
        "link-a",
        "link-b",
        "users-file",
        "etclink",
        "rel-link",
        "fifo",
        "socket",
        "null",
        "disk",
        "tmp",
        "setgid-dir",
    ];
    let mut seen = Vec::new();
    for name in names {
        let fh = c.walk(&root, name);
        let a = fattr(&mut c, &fh);
        let m = fs::symlink_metadata(os.join(name)).unwrap();
        assert_attrs_equal(name, &a, &m);
        seen.push(a.mode);
    }
    assert!(seen.contains(&0o4755) && seen.contains(&0o1777) && seen.contains(&0o2775));
    let (la, lb) = (c.walk(&root, "link-a"), c.walk(&root, "link-b"));
    let a = fattr(&mut c, &la);
    assert_eq!(a.nlink, 2);
    assert_eq!(a.fileid, fattr(&mut c, &lb).fileid);

    // The libnfs listing (which prints no set-id bits) agrees on names and owners.
    let out = tool("nfs-ls", &[&srv.url("/os/deb", 0, 0)]);
    let listing = text(&out);
    assert!(out.status.success(), "{listing}");
    for name in &names[1..] {
        let top = name.split('/').next().unwrap();
        assert!(listing.contains(top), "{top} missing from:\n{listing}");
    }
    let users = listing.lines().find(|l| l.ends_with("users-file")).unwrap();
    assert!(users.contains(" 1000  1000 "), "{users}");
    let cat = tool("nfs-cat", &[&srv.url("/os/deb/etc/hostname", 0, 0)]);
    assert_eq!(String::from_utf8_lossy(&cat.stdout), "client\n");

    // READLINK gives the link text; READDIRPLUS sees every entry.
    let link = c.walk(&root, "etclink");
    let r: nfs3::READLINK3res = c.nfs(5, &nfs3::READLINK3args { symlink: link }).unwrap();
    assert_eq!(ok(r, "READLINK").data.0.as_ref(), b"/etc");
    let rdp: nfs3::READDIRPLUS3res = c
        .nfs(
            17,
            &nfs3::READDIRPLUS3args {
                dir: root.clone(),
                cookie: 0,
                cookieverf: nfs3::cookieverf3::default(),
                dircount: 4096,
                maxcount: 65536,
            },
        )
        .unwrap();
    let list = ok(rdp, "READDIRPLUS").reply;
    assert!(list.eof);
    let got: Vec<String> = list
        .entries
        .0
        .iter()
        .map(|e| String::from_utf8_lossy(e.name.as_ref()).into_owned())
        .collect();
    for name in &names[1..] {
        let top = name.split('/').next().unwrap();
        assert!(got.iter().any(|g| g == top), "{top} not in {got:?}");
    }
}

#[test]
fn homes_permission_matrix() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let (tmp, data) = prepare();
    let srv = Server::start(&data);
    let homes = data.join("homes");

    // Alice lists, reads and writes her own 0700 home; the file is hers.
    let ls = tool("nfs-ls", &[&srv.url("/homes/alice", ALICE, ALICE)]);
    assert!(text(&ls).contains("secret.txt"), "{}", text(&ls));
    let cat = tool(
        "nfs-cat",
        &[&srv.url("/homes/alice/secret.txt", ALICE, ALICE)],
    );
    assert_eq!(String::from_utf8_lossy(&cat.stdout), "alice's secret\n");
    let local = tmp.path().join("upload.txt");
    fs::write(&local, "written over nfs\n").unwrap();
    let cp = tool(
        "nfs-cp",
        &[
            local.to_str().unwrap(),
            &srv.url("/homes/alice/new.txt", ALICE, ALICE),
        ],
    );
    assert!(cp.status.success(), "{}", text(&cp));
    let m = fs::metadata(homes.join("alice/new.txt")).unwrap();
    assert_eq!(
        (m.uid(), m.gid()),
        (ALICE, ALICE),
        "created file owned by the caller"
    );
    assert_eq!(
        fs::read_to_string(homes.join("alice/new.txt")).unwrap(),
        "written over nfs\n"
    );

    // Bob cannot list or read Alice's home.
    let ls = tool("nfs-ls", &[&srv.url("/homes/alice", BOB, BOB)]);
    assert!(
        !ls.status.success() && text(&ls).contains("ACCES"),
        "{}",
        text(&ls)
    );
    let cat = tool("nfs-cat", &[&srv.url("/homes/alice/secret.txt", BOB, BOB)]);
    assert!(!cat.status.success());

    let mut alice = srv.client(ALICE, ALICE, &[]);
    let home = mount(&mut alice, "/homes");
    let alice_home = alice.walk(&home, "alice");
    let secret = alice.walk(&alice_home, "secret.txt");
    let all = 0x3f;
    assert_eq!(
        ok(alice.access(&alice_home, all).unwrap(), "ACCESS").access,
        0x1f
    );
    assert_eq!(
        ok(alice.access(&secret, all).unwrap(), "ACCESS").access & 0x0d,
        0x0d
    );

    let mut bob = srv.client(BOB, BOB, &[]);
    assert_eq!(
        ok(bob.access(&alice_home, all).unwrap(), "ACCESS").access,
        0,
        "bob: no rights on alice's home"
    );
    assert_eq!(ok(bob.access(&secret, all).unwrap(), "ACCESS").access, 0);
    assert_eq!(
        status(bob.read(&secret, 0, 100).unwrap()),
        nfsstat3::NFS3ERR_ACCES
    );
    assert_eq!(
        status(bob.lookup(&alice_home, "secret.txt").unwrap()),
        nfsstat3::NFS3ERR_ACCES
    );
    let read = ok(alice.read(&secret, 0, 100).unwrap(), "READ as alice");
    assert_eq!(read.data.as_ref(), b"alice's secret\n");
    assert!(read.eof);

    // Root is squashed to nobody: no rights in Alice's home, new files in
    // a world-writable directory belong to 65534.
    let mut root = srv.client(0, 0, &[0]);
    assert_eq!(
        status(root.read(&secret, 0, 10).unwrap()),
        nfsstat3::NFS3ERR_ACCES
    );
    assert_eq!(
        ok(root.access(&alice_home, all).unwrap(), "ACCESS").access,
        0
    );
    let tmpdir = root.walk(&home, "tmp");
    let made: nfs3::CREATE3res = root
        .nfs(8, &create_args(&tmpdir, "by-root", 0o644))
        .unwrap();
    ok(made, "CREATE as squashed root");
    let m = fs::metadata(homes.join("tmp/by-root")).unwrap();
    assert_eq!((m.uid(), m.gid()), (65534, 65534));

    // Sticky /homes/tmp: Bob may not remove Alice's file there.
    let made: nfs3::CREATE3res = alice
        .nfs(8, &create_args(&tmpdir, "alices", 0o666))
        .unwrap();
    ok(made, "CREATE in sticky dir");
    let rm: nfs3::REMOVE3res = bob
        .nfs(
            12,
            &nfs3::REMOVE3args {
                object: diropargs(&tmpdir, "alices"),
            },
        )
        .unwrap();
    assert_eq!(
        status(rm),
        nfsstat3::NFS3ERR_PERM,
        "EPERM, as the kernel says for sticky dirs"
    );
    let rm: nfs3::REMOVE3res = alice
        .nfs(
            12,
            &nfs3::REMOVE3args {
                object: diropargs(&tmpdir, "alices"),
            },
        )
        .unwrap();
    ok(rm, "owner removes in sticky dir");

    // Supplementary groups: only a member of staff (2000) writes in /homes/staff.
    let mut carol = srv.client(CAROL, CAROL, &[STAFF]);
    let staff = carol.walk(&home, "staff");
    let made: nfs3::MKDIR3res = carol.nfs(9, &mkdir_args(&staff, "plans", 0o750)).unwrap();
    ok(made, "MKDIR via supplementary group");
    let m = fs::metadata(homes.join("staff/plans")).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (CAROL, CAROL, 0o750));
    let made: nfs3::MKDIR3res = bob.nfs(9, &mkdir_args(&staff, "nope", 0o755)).unwrap();
    assert_eq!(status(made), nfsstat3::NFS3ERR_ACCES);

    // /shared: members of the folder's group write, others only read.
    let shared = mount(&mut carol, "/shared/teachers");
    let made: nfs3::CREATE3res = carol.nfs(8, &create_args(&shared, "notes", 0o664)).unwrap();
    ok(made, "CREATE in /shared as a teacher");
    assert_eq!(
        fs::metadata(data.join("shared/teachers/notes"))
            .unwrap()
            .gid(),
        STAFF,
        "setgid folder"
    );
    let shared_b = mount(&mut bob, "/shared/teachers");
    let tt = bob.walk(&shared_b, "timetable");
    assert_eq!(
        ok(bob.read(&tt, 0, 100).unwrap(), "READ shared")
            .data
            .as_ref(),
        b"monday\n"
    );
    let made: nfs3::CREATE3res = bob
        .nfs(8, &create_args(&shared_b, "graffiti", 0o666))
        .unwrap();
    assert_eq!(status(made), nfsstat3::NFS3ERR_ACCES);
}

fn sattr_mode(mode: u32) -> nfs3::sattr3 {
    nfs3::sattr3 {
        mode: nfs3::Nfs3Option::Some(mode),
        ..Default::default()
    }
}

fn create_args<'a>(dir: &nfs_fh3, name: &'a str, mode: u32) -> nfs3::CREATE3args<'a> {
    nfs3::CREATE3args {
        where_: diropargs(dir, name),
        how: nfs3::createhow3::GUARDED(sattr_mode(mode)),
    }
}

fn mkdir_args<'a>(dir: &nfs_fh3, name: &'a str, mode: u32) -> nfs3::MKDIR3args<'a> {
    nfs3::MKDIR3args {
        where_: diropargs(dir, name),
        attributes: sattr_mode(mode),
    }
}

#[test]
fn os_exports_are_read_only() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let (tmp, data) = prepare();
    let srv = Server::start(&data);
    let local = tmp.path().join("x");
    fs::write(&local, "x").unwrap();
    let cp = tool(
        "nfs-cp",
        &[local.to_str().unwrap(), &srv.url("/os/deb/new", 0, 0)],
    );
    assert!(
        !cp.status.success() && text(&cp).contains("ROFS"),
        "{}",
        text(&cp)
    );

    let mut c = srv.client(0, 0, &[]);
    let root = mount(&mut c, "/os/deb");
    let file = c.walk(&root, "regular");
    let r: nfs3::CREATE3res = c.nfs(8, &create_args(&root, "new", 0o644)).unwrap();
    assert_eq!(status(r), nfsstat3::NFS3ERR_ROFS);
    let r: nfs3::MKDIR3res = c.nfs(9, &mkdir_args(&root, "d", 0o755)).unwrap();
    assert_eq!(status(r), nfsstat3::NFS3ERR_ROFS);
    let r: nfs3::REMOVE3res = c
        .nfs(
            12,
            &nfs3::REMOVE3args {
                object: diropargs(&root, "regular"),
            },
        )
        .unwrap();
    assert_eq!(status(r), nfsstat3::NFS3ERR_ROFS);
    let r: nfs3::SETATTR3res = c
        .nfs(
            2,
            &nfs3::SETATTR3args {
                object: file.clone(),
                new_attributes: sattr_mode(0o777),
                guard: nfs3::Nfs3Option::None,
            },
        )
        .unwrap();
    assert_eq!(status(r), nfsstat3::NFS3ERR_ROFS);
    let r: nfs3::WRITE3res = c
        .nfs(
            7,
            &nfs3::WRITE3args {
                file: file.clone(),
                offset: 0,
                count: 1,
                stable: nfs3::stable_how::FILE_SYNC,
                data: Opaque::borrowed(b"y"),
            },
        )
        .unwrap();
    assert_eq!(status(r), nfsstat3::NFS3ERR_ROFS);
    let access = ok(c.access(&root, 0x3f).unwrap(), "ACCESS").access;
    assert_eq!(
        access & 0x1c,
        0,
        "no modify/extend/delete on a read-only export"
    );
    assert_eq!(
        fs::read_to_string(data.join("os/deb/regular")).unwrap(),
        "some bytes\n"
    );
}

#[test]
fn nothing_escapes_an_export() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let (_tmp, data) = prepare();
    let srv = Server::start(&data);
    let mut c = srv.client(0, 0, &[]);
    let root = mount(&mut c, "/os/deb");
    let root_id = fattr(&mut c, &root).fileid;

    // `..` at an export root is the root.
    let up = c.walk(&root, "..");
    assert_eq!(fattr(&mut c, &up).fileid, root_id);
    let up2 = c.walk(&up, "../..");
    assert_eq!(fattr(&mut c, &up2).fileid, root_id);
    let homes = mount(&mut c, "/homes");
    let homes_id = fattr(&mut c, &homes).fileid;
    let homes_up = c.walk(&homes, "..");
    assert_eq!(fattr(&mut c, &homes_up).fileid, homes_id);

    // The symlink to /etc is a symlink: nothing is looked up through it.
    let link = c.walk(&root, "etclink");
    assert_eq!(fattr(&mut c, &link).type_, nfs3::ftype3::NF3LNK);
    assert_eq!(
        status(c.lookup(&link, "passwd").unwrap()),
        nfsstat3::NFS3ERR_NOTDIR
    );
    assert!(c.mount("/os/deb/etclink").unwrap().is_err());
    assert!(c.mount("/os/deb/../../etc").unwrap().is_err());
    assert!(c.mount("/etc").unwrap().is_err());
    let cat = tool("nfs-cat", &[&srv.url("/os/deb/etclink/hostname", 0, 0)]);
    assert_ne!(
        String::from_utf8_lossy(&cat.stdout),
        fs::read_to_string("/etc/hostname").unwrap_or_default(),
        "read the host's /etc/hostname through the symlink"
    );

    // Any changed byte makes a handle worthless.
    let file = c.walk(&root, "regular");
    for i in 0..file.data.len() {
        let mut bytes = file.data.to_vec();
        bytes[i] ^= 0x5a;
        let forged = nfs_fh3 {
            data: Opaque::owned(bytes),
        };
        let s = status(c.getattr(&forged).unwrap());
        assert!(
            matches!(s, nfsstat3::NFS3ERR_BADHANDLE | nfsstat3::NFS3ERR_STALE),
            "byte {i}: {s}"
        );
    }
    // A handle moved to another export (export id swapped) is refused too.
    let mut alice = srv.client(ALICE, ALICE, &[]);
    let secret = alice.walk(&homes, "alice/secret.txt");
    let mut moved = secret.data.to_vec();
    moved[4..8].copy_from_slice(&root.data[4..8]);
    let moved = nfs_fh3 {
        data: Opaque::owned(moved),
    };
    assert_eq!(
        status(c.getattr(&moved).unwrap()),
        nfsstat3::NFS3ERR_BADHANDLE
    );
    // Cross-export rename and link are refused.
    let alice_home = alice.walk(&homes, "alice");
    let r: nfs3::LINK3res = alice
        .nfs(
            15,
            &nfs3::LINK3args {
                file: file.clone(),
                link: diropargs(&alice_home, "stolen"),
            },
        )
        .unwrap();
    assert_eq!(status(r), nfsstat3::NFS3ERR_XDEV);
    assert!(!data.join("homes/alice/stolen").exists());
}

#[test]
fn handles_survive_a_restart() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let (_tmp, data) = prepare();
    let srv = Server::start(&data);
    let (nfs, portmap) = (srv.nfs, srv.portmap);
    let mut c = srv.client(ALICE, ALICE, &[]);
    let homes = mount(&mut c, "/homes");
    let secret = c.walk(&homes, "alice/secret.txt");
    let dir = c.walk(&homes, "alice");
    drop(c);
    srv.bramble.stop();

    let srv = Server::start_on(&data, nfs, portmap);
    let mut c = srv.client(ALICE, ALICE, &[]);
    let read = ok(
        c.read(&secret, 0, 100).unwrap(),
        "READ with a handle from before the restart",
    );
    assert_eq!(read.data.as_ref(), b"alice's secret\n");
    let again = ok(
        c.lookup(&dir, "secret.txt").unwrap(),
        "LOOKUP in an old directory handle",
    );
    assert_eq!(again.object, secret, "handles are stable");
}

#[test]
fn rpc_portmapper_and_mount_protocol() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let (_tmp, data) = prepare();
    let srv = Server::start(&data);
    let port = u32::from(srv.nfs.port());

    // Portmapper over TCP and UDP.
    let mut pm = Client::connect(srv.portmap).unwrap();
    let getport = |c: &mut Client, prog: u32, prot: u32| -> u32 {
        let args = nfs3_types::portmap::mapping {
            prog,
            vers: 3,
            prot,
            port: 0,
        };
        c.call(PORTMAP, 2, 3, &args).unwrap()
    };
    assert_eq!(getport(&mut pm, NFS, 6), port);
    assert_eq!(getport(&mut pm, MOUNT, 6), port);
    assert_eq!(getport(&mut pm, 100_099, 6), 0);
    let dump: nfs3_types::portmap::pmaplist = pm
        .call(PORTMAP, 2, 4, &nfs3_types::xdr_codec::Void)
        .unwrap();
    assert!(
        dump.0
            .iter()
            .any(|m| m.prog == NFS && m.vers == 3 && m.port == port)
    );
    assert_eq!(udp_getport(srv.portmap, MOUNT, 17), port);
    assert_eq!(udp_getport(srv.portmap, NFS, 6), port);

    // RPC-level errors.
    let mut c = srv.client(0, 0, &[]);
    assert_eq!(
        c.call_raw(100_099, 1, 0, &[]).unwrap(),
        Outcome::Accepted(1),
        "PROG_UNAVAIL"
    );
    assert_eq!(
        c.call_raw(NFS, 4, 0, &[]).unwrap(),
        Outcome::Accepted(2),
        "PROG_MISMATCH"
    );
    assert_eq!(
        c.call_raw(NFS, 3, 99, &[]).unwrap(),
        Outcome::Accepted(3),
        "PROC_UNAVAIL"
    );
    assert_eq!(
        c.call_raw(NFS, 3, 1, &[0, 0, 1]).unwrap(),
        Outcome::Accepted(4),
        "GARBAGE_ARGS"
    );
    let gss = [0, 0, 0, 6, 0, 0, 0, 0];
    assert_eq!(
        c.call_with_cred(NFS, 3, 1, &gss, &[0; 4]).unwrap(),
        Outcome::Denied(vec![1, 5]),
        "AUTH_TOOWEAK"
    );
    assert_eq!(
        c.call_raw(NFS, 3, 0, &[]).unwrap(),
        Outcome::Success(vec![]),
        "NULL"
    );

    // MOUNT: EXPORT, MNT of a subdirectory, DUMP, UMNT.
    let exports: nfs3_types::mount::exports =
        c.call(MOUNT, 3, 5, &nfs3_types::xdr_codec::Void).unwrap();
    let names: Vec<String> = exports
        .0
        .iter()
        .map(|e| String::from_utf8_lossy(&e.ex_dir.0).into_owned())
        .collect();
    assert_eq!(names, vec!["/homes", "/os/deb", "/shared"]);
    let sub = mount(&mut c, "/homes/alice");
    assert_eq!(
        fattr(&mut c, &sub).fileid,
        fs::metadata(data.join("homes/alice")).unwrap().ino()
    );
    assert!(matches!(
        c.mount("/homes/alice/secret.txt").unwrap(),
        Err(nfs3_types::mount::mountstat3::MNT3ERR_NOTDIR)
    ));
    let dump: nfs3_types::mount::mountlist =
        c.call(MOUNT, 3, 2, &nfs3_types::xdr_codec::Void).unwrap();
    assert!(
        dump.0
            .iter()
            .any(|m| m.ml_directory.0.as_ref() == b"/homes/alice")
    );
    let path = nfs3_types::mount::dirpath(Opaque::borrowed(b"/homes/alice"));
    let _: nfs3_types::xdr_codec::Void = c.call(MOUNT, 3, 3, &path).unwrap();
    let dump: nfs3_types::mount::mountlist =
        c.call(MOUNT, 3, 2, &nfs3_types::xdr_codec::Void).unwrap();
    assert!(dump.0.is_empty());

    // A record claiming 2 GiB closes the connection instead of allocating it.
    let mut bad = srv.client(0, 0, &[]);
    bad.send_bytes(&[0xff, 0xff, 0xff, 0xff, 0, 0]).unwrap();
    assert!(bad.call_raw(NFS, 3, 0, &[]).is_err());
    assert_eq!(
        c.call_raw(NFS, 3, 0, &[]).unwrap(),
        Outcome::Success(vec![]),
        "server still up"
    );
}

fn udp_getport(portmap: SocketAddr, prog: u32, prot: u32) -> u32 {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut msg = Vec::new();
    for v in [77u32, 0, 2, PORTMAP, 2, 3, 0, 0, 0, 0, prog, 3, prot, 0] {
        msg.extend_from_slice(&v.to_be_bytes());
    }
    s.send_to(&msg, portmap).unwrap();
    let mut buf = [0u8; 512];
    let n = s.recv(&mut buf).unwrap();
    assert!(n >= 28, "short reply");
    u32::from_be_bytes(buf[24..28].try_into().unwrap())
}

#[test]
fn write_procedures_as_a_user() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let (_tmp, data) = prepare();
    let srv = Server::start(&data);
    let home = data.join("homes/alice");
    let mut c = srv.client(ALICE, ALICE, &[]);
    let dir = mount(&mut c, "/homes/alice");

    // CREATE modes: guarded refuses an existing name, exclusive is idempotent.
    let made: nfs3::CREATE3res = c.nfs(8, &create_args(&dir, "secret.txt", 0o600)).unwrap();
    assert_eq!(status(made), nfsstat3::NFS3ERR_EXIST);
    let excl = |v: u8| nfs3::CREATE3args {
        where_: diropargs(&dir, "excl"),
        how: nfs3::createhow3::EXCLUSIVE(nfs3::createverf3([v; 8])),
    };
    let first: nfs3::CREATE3res = c.nfs(8, &excl(7)).unwrap();
    let first = ok(first, "CREATE EXCLUSIVE").obj;
    let again: nfs3::CREATE3res = c.nfs(8, &excl(7)).unwrap();
    assert_eq!(ok(again, "CREATE EXCLUSIVE retransmitted").obj, first);
    let other: nfs3::CREATE3res = c.nfs(8, &excl(8)).unwrap();
    assert_eq!(status(other), nfsstat3::NFS3ERR_EXIST);

    // WRITE + COMMIT, then SETATTR size and mode (setuid kept for the owner).
    let f = c.walk(&dir, "excl");
    let w: nfs3::WRITE3res = c
        .nfs(
            7,
            &nfs3::WRITE3args {
                file: f.clone(),
                offset: 0,
                count: 5,
                stable: nfs3::stable_how::UNSTABLE,
                data: Opaque::borrowed(b"hello"),
            },
        )
        .unwrap();
    assert_eq!(ok(w, "WRITE").count, 5);
    let cm: nfs3::COMMIT3res = c
        .nfs(
            21,
            &nfs3::COMMIT3args {
                file: f.clone(),
                offset: 0,
                count: 0,
            },
        )
        .unwrap();
    ok(cm, "COMMIT");
    let set = |mode: Option<u32>, size: Option<u64>, uid: Option<u32>| nfs3::SETATTR3args {
        object: f.clone(),
        new_attributes: nfs3::sattr3 {
            mode: mode.map_or(nfs3::Nfs3Option::None, nfs3::Nfs3Option::Some),
            size: size.map_or(nfs3::Nfs3Option::None, nfs3::Nfs3Option::Some),
            uid: uid.map_or(nfs3::Nfs3Option::None, nfs3::Nfs3Option::Some),
            ..Default::default()
        },
        guard: nfs3::Nfs3Option::None,
    };
    let r: nfs3::SETATTR3res = c.nfs(2, &set(Some(0o4750), Some(4), None)).unwrap();
    ok(r, "SETATTR mode+size");
    let m = fs::metadata(home.join("excl")).unwrap();
    assert_eq!((m.mode() & 0o7777, m.len()), (0o4750, 4));
    assert_eq!(fs::read(home.join("excl")).unwrap(), b"hell");
    let r: nfs3::SETATTR3res = c.nfs(2, &set(None, None, Some(BOB))).unwrap();
    assert_eq!(
        status(r),
        nfsstat3::NFS3ERR_PERM,
        "only root gives files away"
    );

    // MKNOD: FIFOs and sockets for users, devices only for real root.
    let fifo: nfs3::MKNOD3res = c
        .nfs(
            11,
            &nfs3::MKNOD3args {
                where_: diropargs(&dir, "pipe"),
                what: nfs3::mknoddata3::NF3FIFO(sattr_mode(0o600)),
            },
        )
        .unwrap();
    ok(fifo, "MKNOD fifo");
    assert!(
        fs::symlink_metadata(home.join("pipe"))
            .unwrap()
            .file_type()
            .is_fifo_like()
    );
    let sock: nfs3::MKNOD3res = c
        .nfs(
            11,
            &nfs3::MKNOD3args {
                where_: diropargs(&dir, "sock"),
                what: nfs3::mknoddata3::NF3SOCK(sattr_mode(0o600)),
            },
        )
        .unwrap();
    ok(sock, "MKNOD socket");
    let dev = nfs3::devicedata3 {
        dev_attributes: sattr_mode(0o600),
        spec: nfs3::specdata3 {
            specdata1: 1,
            specdata2: 3,
        },
    };
    let chr: nfs3::MKNOD3res = c
        .nfs(
            11,
            &nfs3::MKNOD3args {
                where_: diropargs(&dir, "null"),
                what: nfs3::mknoddata3::NF3CHR(dev),
            },
        )
        .unwrap();
    assert_eq!(status(chr), nfsstat3::NFS3ERR_PERM);

    // LINK, SYMLINK, RENAME, RMDIR, REMOVE.
    let l: nfs3::LINK3res = c
        .nfs(
            15,
            &nfs3::LINK3args {
                file: f.clone(),
                link: diropargs(&dir, "excl2"),
            },
        )
        .unwrap();
    let l = ok(l, "LINK");
    assert!(matches!(l.file_attributes, nfs3::Nfs3Option::Some(ref a) if a.nlink == 2));
    let s: nfs3::SYMLINK3res = c
        .nfs(
            10,
            &nfs3::SYMLINK3args {
                where_: diropargs(&dir, "to-excl"),
                symlink: nfs3::symlinkdata3 {
                    symlink_attributes: nfs3::sattr3::default(),
                    symlink_data: nfs3::nfspath3(Opaque::borrowed(b"excl")),
                },
            },
        )
        .unwrap();
    ok(s, "SYMLINK");
    assert_eq!(
        fs::read_link(home.join("to-excl")).unwrap(),
        Path::new("excl")
    );
    assert_eq!(
        fs::symlink_metadata(home.join("to-excl")).unwrap().uid(),
        ALICE
    );
    let mv: nfs3::RENAME3res = c
        .nfs(
            14,
            &nfs3::RENAME3args {
                from: diropargs(&dir, "excl2"),
                to: diropargs(&dir, "renamed"),
            },
        )
        .unwrap();
    ok(mv, "RENAME");
    assert!(home.join("renamed").exists() && !home.join("excl2").exists());
    let md: nfs3::MKDIR3res = c.nfs(9, &mkdir_args(&dir, "sub", 0o700)).unwrap();
    ok(md, "MKDIR");
    let rd: nfs3::RMDIR3res = c
        .nfs(
            13,
            &nfs3::RMDIR3args {
                object: diropargs(&dir, "sub"),
            },
        )
        .unwrap();
    ok(rd, "RMDIR");
    let rm: nfs3::REMOVE3res = c
        .nfs(
            12,
            &nfs3::REMOVE3args {
                object: diropargs(&dir, "renamed"),
            },
        )
        .unwrap();
    ok(rm, "REMOVE");
    let gone = c.walk(&dir, "pipe");
    let rm: nfs3::REMOVE3res = c
        .nfs(
            12,
            &nfs3::REMOVE3args {
                object: diropargs(&dir, "pipe"),
            },
        )
        .unwrap();
    ok(rm, "REMOVE fifo");
    assert_eq!(status(c.getattr(&gone).unwrap()), nfsstat3::NFS3ERR_STALE);

    // FSSTAT, FSINFO, PATHCONF.
    let info: nfs3::FSINFO3res = c
        .nfs(
            19,
            &nfs3::FSINFO3args {
                fsroot: dir.clone(),
            },
        )
        .unwrap();
    let info = ok(info, "FSINFO");
    assert_eq!((info.rtmax, info.wtmax), (1 << 20, 1 << 20));
    let st: nfs3::FSSTAT3res = c
        .nfs(
            18,
            &nfs3::FSSTAT3args {
                fsroot: dir.clone(),
            },
        )
        .unwrap();
    assert!(ok(st, "FSSTAT").tbytes > 0);
    let pc: nfs3::PATHCONF3res = c
        .nfs(
            20,
            &nfs3::PATHCONF3args {
                object: dir.clone(),
            },
        )
        .unwrap();
    assert_eq!(ok(pc, "PATHCONF").name_max, 255);
}

trait FifoLike {
    fn is_fifo_like(&self) -> bool;
}

impl FifoLike for fs::FileType {
    fn is_fifo_like(&self) -> bool {
        std::os::unix::fs::FileTypeExt::is_fifo(self)
    }
}

#[test]
fn only_registered_clients_mount() {
    if !is_root() {
        eprintln!("skipped: needs root for network namespaces");
        return;
    }
    let (_tmp, data) = prepare();
    let registered = "dc:a6:32:00:00:0a";
    let by_arp = "dc:a6:32:00:00:0c";
    let stranger = "dc:a6:32:00:00:0b";
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    fs::create_dir_all(data.join("state")).unwrap();
    fs::write(
        data.join("state/clients.json"),
        format!(
            r#"{{"clients":[{{"mac":"{registered}","os":"deb"}},{{"mac":"{by_arp}","os":"deb"}}]}}"#
        ),
    )
    .unwrap();
    fs::write(
        data.join("state/leases.json"),
        format!(r#"{{"leases":[{{"mac":"{registered}","ip":"10.77.0.10","expires":{expires}}}]}}"#),
    )
    .unwrap();

    let mut lan = Lan::new("nfs");
    let ips = ["10.77.0.10", "10.77.0.11", "10.77.0.12"];
    let mut clients = Vec::new();
    for (mac, ip) in [registered, stranger, by_arp].into_iter().zip(ips) {
        let i = lan.add_client(mac);
        lan.set_client_ip(i, ip.parse().unwrap());
        clients.push(i);
    }
    let port = 20490;
    let nfs = SocketAddr::from((Lan::SERVER_IP, port));
    let portmap = SocketAddr::from((Lan::SERVER_IP, 20111));
    let _bramble = Bramble::start(Options {
        settings: settings(nfs, portmap, false),
        data: Some(data.clone()),
        netns: Some(lan.server.name().to_string()),
        ..Options::default()
    });
    let url = format!(
        "nfs://{}/os/deb?nfsport={port}&mountport={port}&version=3",
        Lan::SERVER_IP
    );
    let ls = |i: usize| {
        let ns = lan.client(i);
        let mut last = String::new();
        for _ in 0..50 {
            let out = ns.exec("nfs-ls", &[&url]);
            last = text(&out);
            if out.status.success() || last.contains("MNT3ERR_ACCES") || last.contains("ACCES") {
                return (out.status.success(), last);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        (false, last)
    };
    let (ok_leased, out) = ls(clients[0]);
    assert!(
        ok_leased && out.contains("etc"),
        "registered client with a lease: {out}"
    );
    let (ok_stranger, out) = ls(clients[1]);
    assert!(!ok_stranger, "unregistered client mounted: {out}");
    let (ok_arp, out) = ls(clients[2]);
    assert!(ok_arp, "registered client known through ARP: {out}");
}

#[test]
fn retransmits_and_parallel_clients() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let (_tmp, data) = prepare();
    let home = data.join("homes/alice");
    for i in 0..16 {
        fs::write(
            home.join(format!("f{i}")),
            format!("file {i}\n").repeat(10_000),
        )
        .unwrap();
        chown(&home.join(format!("f{i}")), ALICE, ALICE);
    }
    let srv = Server::start(&data);

    // A retransmitted REMOVE (same xid) gets the first answer again.
    let mut c = srv.client(ALICE, ALICE, &[]);
    let dir = mount(&mut c, "/homes/alice");
    let remove = nfs3::REMOVE3args {
        object: diropargs(&dir, "f0"),
    };
    c.next_xid(4242);
    let first: nfs3::REMOVE3res = c.nfs(12, &remove).unwrap();
    ok(first, "REMOVE");
    c.next_xid(4242);
    let again: nfs3::REMOVE3res = c.nfs(12, &remove).unwrap();
    ok(
        again,
        "REMOVE retransmitted: answered from the duplicate-request cache",
    );
    let fresh: nfs3::REMOVE3res = c.nfs(12, &remove).unwrap();
    assert_eq!(status(fresh), nfsstat3::NFS3ERR_NOENT);

    // Sixteen clients read at once and all get their own bytes.
    let readers: Vec<_> = (1..16)
        .map(|i| {
            let url = srv.url(&format!("/homes/alice/f{i}"), ALICE, ALICE);
            std::thread::spawn(move || (i, tool("nfs-cat", &[&url])))
        })
        .collect();
    for r in readers {
        let (i, out) = r.join().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("file {i}\n").repeat(10_000),
            "client {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
