//! The data volume: one directory that holds everything a school owns.
//!
//! [`Volume::open`] creates the layout from the design card with the right
//! modes, removes temporaries a crash left behind, and checks the schema
//! version so a volume written by a newer bramble is refused instead of
//! being misread.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::atomic;

/// Schema of the files under `state/` this bramble reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

/// Directories of the volume and their modes.
const LAYOUT: &[(&str, u32)] = &[
    ("state", 0o755),
    ("os", 0o755),
    ("homes", 0o755),
    ("shared", 0o755),
    ("ldap", 0o700),
    ("secrets", 0o700),
];

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("cannot prepare data volume {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "data volume {path} was written by a newer bramble (schema {found}, written by bramble {by}); \
         this bramble {ours} understands schema {SCHEMA_VERSION} at most: upgrade bramble or restore an older copy of the volume"
    )]
    TooNew {
        path: PathBuf,
        found: u32,
        by: String,
        ours: &'static str,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SchemaFile {
    schema: u32,
    written_by: String,
}

/// An opened, laid-out data volume.
#[derive(Debug, Clone)]
pub struct Volume {
    root: PathBuf,
}

impl Volume {
    /// Creates the layout (if missing), fixes directory modes and checks the schema.
    pub fn open(root: &Path) -> Result<Self, VolumeError> {
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| VolumeError::Io { path, source }
        };
        fs::create_dir_all(root).map_err(io_err(root))?;
        let root = root.canonicalize().map_err(io_err(root))?;
        for (name, mode) in LAYOUT {
            let dir = root.join(name);
            fs::create_dir_all(&dir).map_err(io_err(&dir))?;
            fs::set_permissions(&dir, fs::Permissions::from_mode(*mode)).map_err(io_err(&dir))?;
        }
        let volume = Self { root };
        atomic::remove_stale_temporaries(&volume.state_dir())
            .map_err(io_err(&volume.state_dir()))?;
        volume.check_schema()?;
        Ok(volume)
    }

    fn check_schema(&self) -> Result<(), VolumeError> {
        let path = self.state_dir().join("schema.json");
        let io_err = |source| VolumeError::Io {
            path: path.clone(),
            source,
        };
        let ours = env!("CARGO_PKG_VERSION");
        match atomic::read_json::<SchemaFile>(&path).map_err(io_err)? {
            Some(found) if found.schema > SCHEMA_VERSION => Err(VolumeError::TooNew {
                path: self.root.clone(),
                found: found.schema,
                by: found.written_by,
                ours,
            }),
            Some(found) if found.schema == SCHEMA_VERSION => Ok(()),
            _ => atomic::write_json(
                &path,
                &SchemaFile {
                    schema: SCHEMA_VERSION,
                    written_by: ours.into(),
                },
            )
            .map_err(io_err),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn state_dir(&self) -> PathBuf {
        self.root.join("state")
    }
    pub fn os_dir(&self) -> PathBuf {
        self.root.join("os")
    }
    pub fn homes_dir(&self) -> PathBuf {
        self.root.join("homes")
    }
    pub fn shared_dir(&self) -> PathBuf {
        self.root.join("shared")
    }
    pub fn ldap_dir(&self) -> PathBuf {
        self.root.join("ldap")
    }
    pub fn secrets_dir(&self) -> PathBuf {
        self.root.join("secrets")
    }

    /// Bytes available to an unprivileged writer on the volume's file system.
    pub fn free_bytes(&self) -> Option<u64> {
        let st = nix::sys::statvfs::statvfs(&self.root).ok()?;
        Some(st.blocks_available() as u64 * st.fragment_size() as u64)
    }

    /// Reads a secret from `secrets/<name>`, generating a random one (0600) on first use.
    pub fn secret(&self, name: &str) -> io::Result<String> {
        let path = self.secrets_dir().join(name);
        match fs::read_to_string(&path) {
            Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_string()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let token: String = (0..32)
            .map(|_| format!("{:02x}", rand::random::<u8>()))
            .collect();
        atomic::write_atomic(&path, format!("{token}\n").as_bytes(), 0o600)?;
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_layout_with_modes_and_schema() {
        let dir = tempfile::tempdir().unwrap();
        let v = Volume::open(&dir.path().join("vol")).unwrap();
        for (name, mode) in LAYOUT {
            let m = fs::metadata(v.root().join(name))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777;
            assert_eq!(m, *mode, "{name}");
        }
        assert!(v.state_dir().join("schema.json").exists());
        // Opening again is fine and keeps the schema.
        Volume::open(v.root()).unwrap();
    }

    #[test]
    fn refuses_a_volume_from_a_newer_bramble() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("state")).unwrap();
        fs::write(
            dir.path().join("state/schema.json"),
            r#"{"schema": 99, "written_by": "9.0.0"}"#,
        )
        .unwrap();
        let err = Volume::open(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("newer bramble (schema 99, written by bramble 9.0.0)"),
            "{err}"
        );
    }

    #[test]
    fn secrets_are_generated_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let v = Volume::open(dir.path()).unwrap();
        let a = v.secret("admin-token").unwrap();
        assert_eq!(a.len(), 64);
        assert_eq!(v.secret("admin-token").unwrap(), a);
        let mode = fs::metadata(v.secrets_dir().join("admin-token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
