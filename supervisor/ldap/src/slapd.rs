//! slapd as a supervised child: prepare `ldap/` on the volume, regenerate
//! the configuration, and describe the process and its readiness check.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bramble_core::Volume;
use bramble_core::process::{ChildUnit, Readiness, Reaper};
use bramble_core::settings::LdapSettings;
use tracing::{info, warn};

use crate::config::{ConfigInput, cn_config};
use crate::directory::Directory;

#[derive(Debug, thiserror::Error)]
pub enum SlapdError {
    #[error(
        "slapd not found (looked in {0}): install the Debian package `slapd`, set ldap.slapd_path, or ldap.enabled = false"
    )]
    NotFound(String),
    #[error("cannot prepare {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("slapadd could not load the generated configuration: {0}")]
    Slapadd(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SlapdError + '_ {
    move |source| SlapdError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Finds the slapd binary (and slapadd beside it).
fn find_slapd(settings: &LdapSettings) -> Result<PathBuf, SlapdError> {
    let mut dirs: Vec<PathBuf> = settings.slapd_path.iter().cloned().collect();
    if settings.slapd_path.is_none() {
        dirs.push("/usr/sbin".into());
        if let Some(path) = std::env::var_os("PATH") {
            dirs.extend(std::env::split_paths(&path));
        }
    }
    dirs.iter()
        .map(|d| d.join("slapd"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            SlapdError::NotFound(
                dirs.iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            )
        })
}

/// Path of the ldapi socket on the volume.
pub fn socket_path(volume: &Volume) -> PathBuf {
    volume.ldap_dir().join("ldapi")
}

/// Percent-encodes a socket path for an `ldapi://` URL.
pub fn ldapi_url(socket: &Path) -> String {
    let mut url = String::from("ldapi://");
    for b in socket.to_string_lossy().bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            url.push(b as char);
        } else {
            url.push_str(&format!("%{b:02X}"));
        }
    }
    url
}

/// Regenerates `ldap/slapd.d` from settings and returns slapd as a child.
pub async fn prepare(
    volume: &Volume,
    settings: &LdapSettings,
    reaper: &Reaper,
) -> Result<ChildUnit, SlapdError> {
    let slapd = find_slapd(settings)?;
    let slapadd = slapd.with_file_name("slapadd");
    let ldap = volume.ldap_dir();
    let confdir = ldap.join("slapd.d");
    let data = ldap.join("data");
    if confdir.exists() {
        std::fs::remove_dir_all(&confdir).map_err(io_err(&confdir))?;
    }
    for dir in [&confdir, &data] {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    let ldif = cn_config(&ConfigInput {
        ldap_dir: &ldap,
        base_dn: &settings.base_dn,
        module_path: Path::new("/usr/lib/ldap"),
        schema_dir: Path::new("/etc/ldap/schema"),
        admin_uid: nix::unistd::geteuid().as_raw(),
        admin_gid: nix::unistd::getegid().as_raw(),
    });
    let ldif_path = ldap.join("cn-config.ldif");
    bramble_core::atomic::write_atomic(&ldif_path, ldif.as_bytes(), 0o600)
        .map_err(io_err(&ldif_path))?;
    let mut cmd = std::process::Command::new(&slapadd);
    cmd.args(["-n0", "-F"])
        .arg(&confdir)
        .arg("-l")
        .arg(&ldif_path);
    let (ok, output) = reaper
        .run_to_completion(&mut cmd)
        .await
        .map_err(io_err(&slapadd))?;
    if !ok {
        return Err(SlapdError::Slapadd(output));
    }
    let socket = socket_path(volume);
    if socket.exists() {
        // A slapd killed with SIGKILL leaves its socket behind.
        if let Err(e) = std::fs::remove_file(&socket) {
            warn!("cannot remove stale {}: {e}", socket.display());
        }
    }
    let listen = format!("ldap://{}/", settings.listen);
    let urls = format!("{} {listen}", ldapi_url(&socket));
    info!(listen = %settings.listen, base_dn = %settings.base_dn, "slapd configuration generated");
    let directory = Directory::new(socket, settings.base_dn.clone());
    let check = Arc::new(move || {
        let directory = directory.clone();
        Box::pin(async move {
            directory.whoami().await.is_ok() && directory.ensure_base().await.is_ok()
        }) as std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>
    });
    Ok(ChildUnit {
        name: "slapd".into(),
        command: vec![
            slapd.display().to_string(),
            "-d".into(),
            "0".into(),
            "-F".into(),
            confdir.display().to_string(),
            "-h".into(),
            urls,
        ],
        env: Vec::new(),
        readiness: Readiness::Check(check),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldapi_urls_are_percent_encoded() {
        assert_eq!(
            ldapi_url(Path::new("/var/lib/bramble/ldap/ldapi")),
            "ldapi://%2Fvar%2Flib%2Fbramble%2Fldap%2Fldapi"
        );
    }
}
