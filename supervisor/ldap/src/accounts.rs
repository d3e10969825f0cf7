//! Users with their homes, CSV import and shared folders: what the admin API
//! and `bramble user|folder ...` call.
//!
//! A user is an LDAP entry plus `homes/<name>` (mode 0700, owned by the
//! user's uid and the `users` group). Removing a user needs an explicit
//! decision about the home: archive it under `archive/homes/` or delete it.
//! Shared folders are `shared/<name>`: owned by root and the `teachers`
//! group, mode 2775 (everyone reads, teachers write, new files stay in the
//! teachers group).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use bramble_core::Volume;
use serde::{Deserialize, Serialize};

use crate::directory::{Directory, Entry, LdapError};
use crate::{FIRST_UID, TEACHERS_GID, USERS_GID};

#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    #[error("{0}")]
    Invalid(String),
    #[error("user {0:?} already exists")]
    Exists(String),
    #[error("no user {0:?}")]
    NoSuchUser(String),
    #[error("shared folder {0:?} already exists")]
    FolderExists(String),
    #[error("no shared folder {0:?}")]
    NoSuchFolder(String),
    #[error("shared folder {0:?} is not empty (use --force to remove it anyway)")]
    FolderNotEmpty(String),
    #[error("directory (slapd) error: {0}")]
    Ldap(#[from] LdapError),
    #[error("{0}")]
    Io(String),
}

fn io(context: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> AccountsError {
    move |e| AccountsError::Io(format!("{context}: {e}"))
}

/// A user as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub full_name: String,
    pub teacher: bool,
    pub must_change_password: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_login: Option<String>,
    pub home: String,
}

/// A request to create a user.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub name: String,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub full_name: Option<String>,
    #[serde(default)]
    pub teacher: bool,
    #[serde(default)]
    pub must_change_password: bool,
}

/// What happens to a removed user's home directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HomeAction {
    Archive,
    Delete,
}

/// The outcome of a CSV import.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ImportReport {
    pub imported: Vec<String>,
    /// `line N: why` for each line that was not imported.
    pub errors: Vec<String>,
}

/// A shared folder as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Folder {
    pub name: String,
    pub entries: usize,
}

/// Names that would clash with system accounts on the clients.
const RESERVED: &[&str] = &[
    "root", "nobody", "daemon", "bin", "sys", "admin", "pi", "users", "teachers",
];

/// Validates a user or folder name: letters, digits, `.`, `_`, `-`, not
/// starting with `-` or `.`, at most 32 characters.
pub fn validate_name(kind: &str, name: &str) -> Result<(), AccountsError> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if name.is_empty() || name.len() > 32 || !ok_chars || name.starts_with(['-', '.']) {
        return Err(AccountsError::Invalid(format!(
            "{kind} name {name:?}: use 1-32 letters, digits, '.', '_' or '-', not starting with '-' or '.'"
        )));
    }
    if kind == "user" && RESERVED.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(AccountsError::Invalid(format!(
            "user name {name:?} is reserved for the system"
        )));
    }
    Ok(())
}

fn validate_password(password: &str) -> Result<(), AccountsError> {
    if password.chars().count() < 4 || password.contains(['\n', '\r', '\0']) {
        return Err(AccountsError::Invalid(
            "password: at least 4 characters, one line".into(),
        ));
    }
    Ok(())
}

#[derive(Clone)]
pub struct Accounts {
    directory: Directory,
    volume: Volume,
}

impl Accounts {
    pub fn new(volume: Volume, base_dn: String) -> Self {
        let directory = Directory::new(crate::slapd::socket_path(&volume), base_dn);
        Self { directory, volume }
    }

    fn home(&self, name: &str) -> PathBuf {
        self.volume.homes_dir().join(name)
    }

    pub async fn list(&self) -> Result<Vec<User>, AccountsError> {
        let teachers = self.directory.teachers().await?;
        Ok(self
            .directory
            .users()
            .await?
            .into_iter()
            .map(|e| to_user(e, &teachers))
            .collect())
    }

    pub async fn get(&self, name: &str) -> Result<User, AccountsError> {
        self.list()
            .await?
            .into_iter()
            .find(|u| u.name == name)
            .ok_or_else(|| AccountsError::NoSuchUser(name.into()))
    }

    /// Creates the entry, sets the password, creates the home.
    pub async fn add(&self, req: NewUser) -> Result<User, AccountsError> {
        validate_name("user", &req.name)?;
        if let Some(p) = &req.password {
            validate_password(p)?;
        }
        let full_name = req
            .full_name
            .clone()
            .filter(|f| !f.trim().is_empty())
            .unwrap_or_else(|| req.name.clone());
        if full_name.contains(['\n', '\r', '\0']) {
            return Err(AccountsError::Invalid("full_name: must be one line".into()));
        }
        let existing = self.directory.users().await?;
        if existing
            .iter()
            .any(|e| e.name.eq_ignore_ascii_case(&req.name))
        {
            return Err(AccountsError::Exists(req.name));
        }
        let uid = existing
            .iter()
            .map(|e| e.uid_number + 1)
            .max()
            .unwrap_or(FIRST_UID)
            .max(FIRST_UID);
        self.directory
            .add_user(
                &req.name,
                uid,
                &full_name,
                req.teacher,
                req.must_change_password,
            )
            .await?;
        if let Some(p) = &req.password {
            self.directory
                .set_password(&req.name, p, req.must_change_password)
                .await?;
        }
        self.make_home(&req.name, uid)?;
        tracing::info!(user = %req.name, uid, teacher = req.teacher, "user added");
        self.get(&req.name).await
    }

    fn make_home(&self, name: &str, uid: u32) -> Result<(), AccountsError> {
        let home = self.home(name);
        match fs::create_dir(&home) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io(home.display())(e)),
        }
        nix::unistd::chown(&home, Some(uid.into()), Some(USERS_GID.into()))
            .map_err(|e| AccountsError::Io(format!("chown {}: {e}", home.display())))?;
        fs::set_permissions(&home, fs::Permissions::from_mode(0o700)).map_err(io(home.display()))
    }

    pub async fn set_password(
        &self,
        name: &str,
        password: &str,
        must_change: bool,
    ) -> Result<(), AccountsError> {
        validate_password(password)?;
        self.get(name).await?;
        self.directory
            .set_password(name, password, must_change)
            .await?;
        tracing::info!(user = %name, "password changed");
        Ok(())
    }

    /// Deletes the user; the home is archived or deleted as asked.
    pub async fn remove(
        &self,
        name: &str,
        home: HomeAction,
    ) -> Result<Option<PathBuf>, AccountsError> {
        validate_name("user", name)?;
        self.get(name).await?;
        self.directory.remove_user(name).await?;
        let path = self.home(name);
        if !path.exists() {
            return Ok(None);
        }
        let kept = match home {
            HomeAction::Delete => {
                fs::remove_dir_all(&path).map_err(io(path.display()))?;
                None
            }
            HomeAction::Archive => {
                let dir = self.volume.root().join("archive/homes");
                fs::create_dir_all(&dir).map_err(io(dir.display()))?;
                fs::set_permissions(
                    self.volume.root().join("archive"),
                    fs::Permissions::from_mode(0o700),
                )
                .map_err(io("archive"))?;
                let to = dir.join(format!("{name}-{}", bramble_core::unix_now()));
                fs::rename(&path, &to).map_err(io(path.display()))?;
                Some(to)
            }
        };
        tracing::info!(user = %name, ?home, "user removed");
        Ok(kept)
    }

    /// Imports `user,password[,full name]` lines; bad lines are reported, the rest imported.
    pub async fn import_csv(&self, text: &str, must_change: bool) -> ImportReport {
        let mut report = ImportReport::default();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            let n = i + 1;
            if line.is_empty()
                || line.starts_with('#')
                || (n == 1 && line.to_ascii_lowercase().starts_with("user,password"))
            {
                continue;
            }
            let fields: Vec<&str> = line.splitn(3, ',').map(str::trim).collect();
            let (name, password) = match fields.as_slice() {
                [name, password, ..] if !password.is_empty() => (*name, *password),
                _ => {
                    report
                        .errors
                        .push(format!("line {n}: expected user,password[,full name]"));
                    continue;
                }
            };
            let req = NewUser {
                name: name.to_string(),
                password: Some(password.to_string()),
                full_name: fields.get(2).map(|s| s.to_string()),
                teacher: false,
                must_change_password: must_change,
            };
            match self.add(req).await {
                Ok(u) => report.imported.push(u.name),
                Err(e) => report.errors.push(format!("line {n}: {e}")),
            }
        }
        report
    }

    pub fn folders(&self) -> Result<Vec<Folder>, AccountsError> {
        let dir = self.volume.shared_dir();
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io(dir.display()))?.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                let entries = fs::read_dir(entry.path()).map(|d| d.count()).unwrap_or(0);
                out.push(Folder {
                    name: entry.file_name().to_string_lossy().into_owned(),
                    entries,
                });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    pub fn add_folder(&self, name: &str) -> Result<Folder, AccountsError> {
        validate_name("folder", name)?;
        let path = self.volume.shared_dir().join(name);
        match fs::create_dir(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(AccountsError::FolderExists(name.into()));
            }
            Err(e) => return Err(io(path.display())(e)),
        }
        nix::unistd::chown(&path, Some(0.into()), Some(TEACHERS_GID.into()))
            .map_err(|e| AccountsError::Io(format!("chown {}: {e}", path.display())))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o2775))
            .map_err(io(path.display()))?;
        tracing::info!(folder = %name, "shared folder added");
        Ok(Folder {
            name: name.into(),
            entries: 0,
        })
    }

    pub fn remove_folder(&self, name: &str, force: bool) -> Result<(), AccountsError> {
        validate_name("folder", name)?;
        let path = self.volume.shared_dir().join(name);
        let meta =
            fs::symlink_metadata(&path).map_err(|_| AccountsError::NoSuchFolder(name.into()))?;
        if !meta.is_dir() {
            return Err(AccountsError::NoSuchFolder(name.into()));
        }
        let empty = fs::read_dir(&path)
            .map_err(io(path.display()))?
            .next()
            .is_none();
        if !empty && !force {
            return Err(AccountsError::FolderNotEmpty(name.into()));
        }
        fs::remove_dir_all(&path).map_err(io(path.display()))?;
        tracing::info!(folder = %name, force, "shared folder removed");
        Ok(())
    }
}

fn to_user(e: Entry, teachers: &std::collections::HashSet<String>) -> User {
    User {
        teacher: teachers.contains(&e.name),
        name: e.name,
        uid: e.uid_number,
        gid: e.gid_number,
        full_name: e.full_name,
        must_change_password: e.must_change_password,
        last_login: e.last_login,
        home: e.home,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        for good in ["alice", "a.b", "a_b-c", "Bob2"] {
            validate_name("user", good).unwrap();
        }
        for bad in ["", "-x", ".x", "a b", "a/b", "é", "root", &"x".repeat(33)] {
            assert!(validate_name("user", bad).is_err(), "{bad:?}");
        }
        validate_name("folder", "maths.y7").unwrap();
        assert!(validate_name("folder", "..").is_err());
    }
}
