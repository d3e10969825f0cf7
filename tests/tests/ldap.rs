//! Accounts against the real OpenLDAP slapd supervised by bramble, checked
//! with the standard OpenLDAP clients (ldapwhoami, ldapsearch, ldappasswd).

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::{Command, Output};
use std::time::Duration;

use bramble_tests::harness::{Bramble, Options, free_port};

const BASE: &str = "dc=school,dc=test";

struct Ldap {
    b: Bramble,
    url: String,
}

fn start() -> Option<Ldap> {
    if !std::path::Path::new("/usr/sbin/slapd").exists() {
        eprintln!("skipped: slapd is not installed (apt-get install slapd)");
        return None;
    }
    let port = free_port();
    let b = Bramble::start(Options {
        settings: format!(
            "[ldap]\nlisten = \"127.0.0.1:{port}\"\nbase_dn = \"{BASE}\"\n[supervisor]\nbackoff_initial_ms = 1500\n"
        ),
        ..Options::default()
    });
    b.wait_for("/health", Duration::from_secs(20), |code, _| code == 200);
    Some(Ldap {
        b,
        url: format!("ldap://127.0.0.1:{port}"),
    })
}

fn dn(user: &str) -> String {
    format!("uid={user},ou=people,{BASE}")
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

impl Ldap {
    fn add_user(&self, name: &str, password: &str, extra: &[&str]) {
        let mut args = vec!["user", "add", name, "--password-stdin"];
        args.extend_from_slice(extra);
        let out = self.b.cli_stdin(&args, &format!("{password}\n"));
        assert!(out.status.success(), "user add {name}: {}", text(&out));
    }

    fn whoami(&self, user: &str, password: &str) -> Output {
        run(
            "ldapwhoami",
            &["-x", "-H", &self.url, "-D", &dn(user), "-w", password],
        )
    }

    fn admin_search(&self, filter: &str, attrs: &[&str]) -> String {
        let socket = self.b.data.join("ldap/ldapi");
        let url = format!(
            "ldapi://{}",
            socket.display().to_string().replace('/', "%2F")
        );
        let mut args = vec![
            "-Q", "-LLL", "-Y", "EXTERNAL", "-H", &url, "-b", BASE, filter,
        ];
        args.extend_from_slice(attrs);
        text(&run("ldapsearch", &args))
    }
}

#[test]
fn users_bind_with_their_password_and_nobody_reads_hashes() {
    let Some(l) = start() else { return };
    l.add_user("alice", "correct horse", &["--full-name", "Alice Liddell"]);
    l.add_user("bob", "bob-secret", &["--teacher"]);

    let ok = l.whoami("alice", "correct horse");
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(text(&ok).contains(&dn("alice")));
    assert!(!l.whoami("alice", "wrong").status.success());

    // slapd hashed it with salted argon2 (the admin can see the scheme).
    let stored = l.admin_search("(uid=alice)", &["userPassword"]);
    assert!(
        stored.contains("userPassword:: e0FSR09OMn0"),
        "not {{ARGON2}}: {stored}"
    );

    // Neither anonymous nor another user can read the hash.
    let anon = text(&run(
        "ldapsearch",
        &[
            "-x",
            "-LLL",
            "-H",
            &l.url,
            "-b",
            BASE,
            "(uid=alice)",
            "userPassword",
            "uidNumber",
        ],
    ));
    assert!(anon.contains("uidNumber: 10000"), "{anon}");
    assert!(!anon.contains("userPassword"), "{anon}");
    let as_bob = text(&run(
        "ldapsearch",
        &[
            "-x",
            "-LLL",
            "-H",
            &l.url,
            "-D",
            &dn("bob"),
            "-w",
            "bob-secret",
            "-b",
            BASE,
            "(uid=alice)",
            "userPassword",
        ],
    ));
    assert!(
        as_bob.contains(&dn("alice")) && !as_bob.contains("userPassword"),
        "{as_bob}"
    );

    // A user changes their own password.
    let change = run(
        "ldappasswd",
        &[
            "-x",
            "-H",
            &l.url,
            "-D",
            &dn("alice"),
            "-w",
            "correct horse",
            "-s",
            "battery staple",
        ],
    );
    assert!(change.status.success(), "{}", text(&change));
    assert!(l.whoami("alice", "battery staple").status.success());
    assert!(!l.whoami("alice", "correct horse").status.success());

    // Homes: 0700, owned by the user's uid.
    let home = fs::metadata(l.b.data.join("homes/alice")).unwrap();
    assert_eq!((home.uid(), home.mode() & 0o7777), (10000, 0o700));
    assert_eq!(
        fs::metadata(l.b.data.join("homes/bob")).unwrap().uid(),
        10001
    );

    // Listing shows teachers and last login.
    let list = text(&l.b.cli(&["user", "list"]));
    assert!(
        list.lines()
            .any(|x| x.starts_with("bob") && x.contains("yes")),
        "{list}"
    );
    assert!(
        list.lines()
            .any(|x| x.starts_with("alice") && !x.contains("never")),
        "no last login: {list}"
    );

    // Duplicates and bad names are refused with a clear error.
    let dup =
        l.b.cli_stdin(&["user", "add", "alice", "--password-stdin"], "x1234\n");
    assert!(
        !dup.status.success() && text(&dup).contains("already exists"),
        "{}",
        text(&dup)
    );
    let bad =
        l.b.cli_stdin(&["user", "add", "-x", "--password-stdin"], "x1234\n");
    assert!(!bad.status.success());
    let bad =
        l.b.cli_stdin(&["user", "add", ".hidden", "--password-stdin"], "x1234\n");
    assert!(
        text(&bad).contains("not starting with '-' or '.'"),
        "{}",
        text(&bad)
    );

    // Removal needs a decision about the home; archive keeps it.
    assert!(!l.b.cli(&["user", "remove", "alice"]).status.success());
    let rm = l.b.cli(&["user", "remove", "alice", "--archive-home"]);
    assert!(rm.status.success(), "{}", text(&rm));
    assert!(!l.b.data.join("homes/alice").exists());
    let archived: Vec<_> = fs::read_dir(l.b.data.join("archive/homes"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(archived.len(), 1);
    assert!(!l.whoami("alice", "battery staple").status.success());
}

#[test]
fn slapd_killed_is_restarted_and_users_survive() {
    let Some(l) = start() else { return };
    l.add_user("carol", "carol-pass", &[]);
    let (_, status) = l.b.get("/status").unwrap();
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    let pid = v["units"]["slapd"]["pid"].as_u64().expect("slapd pid") as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let (_, body) =
        l.b.wait_for("/health", Duration::from_secs(5), |code, _| code == 503);
    assert!(body.contains("slapd"), "{body}");
    l.b.wait_for("/health", Duration::from_secs(20), |code, _| code == 200);
    assert!(l.whoami("carol", "carol-pass").status.success());
    assert!(text(&l.b.cli(&["user", "list"])).contains("carol"));
}

#[test]
fn csv_import_reports_bad_lines_and_imports_the_rest() {
    let Some(l) = start() else { return };
    let csv = l.b.data.with_extension("users.csv");
    fs::write(&csv, "user,password,full name\ndave,dave-pass,Dave Jones\nbad line\n-eve,eve-pass\nfrank,frank-pass\ndave,again1\n").unwrap();
    let out = l.b.cli(&["user", "import", csv.to_str().unwrap()]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("imported 2 user(s)"), "{t}");
    assert!(t.contains("line 3: expected user,password"), "{t}");
    assert!(t.contains("line 4: user name \"-eve\""), "{t}");
    assert!(t.contains("line 6: user \"dave\" already exists"), "{t}");
    assert!(l.whoami("dave", "dave-pass").status.success());
    assert!(l.whoami("frank", "frank-pass").status.success());
    let listed = l.admin_search("(uid=dave)", &["shadowLastChange", "cn"]);
    assert!(
        listed.contains("shadowLastChange: 0") && listed.contains("cn: Dave Jones"),
        "{listed}"
    );
    fs::remove_file(csv).unwrap();
}

#[test]
fn shared_folders_are_teacher_writable_and_removal_is_guarded() {
    let Some(l) = start() else { return };
    assert!(l.b.cli(&["folder", "add", "maths"]).status.success());
    assert!(!l.b.cli(&["folder", "add", "maths"]).status.success());
    assert!(!l.b.cli(&["folder", "add", "../up"]).status.success());
    let meta = fs::metadata(l.b.data.join("shared/maths")).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.permissions().mode() & 0o7777),
        (0, 10001, 0o2775)
    );
    fs::write(l.b.data.join("shared/maths/sheet.txt"), "1+1").unwrap();
    assert!(text(&l.b.cli(&["folder", "list"])).contains("maths"));
    let refused = l.b.cli(&["folder", "remove", "maths"]);
    assert!(text(&refused).contains("not empty"), "{}", text(&refused));
    assert!(
        l.b.cli(&["folder", "remove", "maths", "--force"])
            .status
            .success()
    );
    assert!(!l.b.data.join("shared/maths").exists());
}
