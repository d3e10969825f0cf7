//! Settings: where they come from and what makes them valid.
//!
//! Two layers. [`RawSettings`] is the serde shape of `bramble.toml`
//! (`deny_unknown_fields`, addresses still as text). [`load`] merges built-in
//! defaults, `<data>/bramble.toml`, `BRAMBLE_<SECTION>__<KEY>` environment
//! variables and command-line `--set key=value` overrides (figment), then
//! [`RawSettings::validate`] turns the result into [`Settings`] without side
//! effects, reporting every problem at once, each with its full key name.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// One problem with the settings, named by its full key (`dhcp.range_start`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Every problem found while loading settings.
#[derive(Debug, Clone, thiserror::Error)]
pub struct SettingsError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} problem(s) in the settings:", self.problems.len())?;
        for p in &self.problems {
            writeln!(f, "  {p}")?;
        }
        Ok(())
    }
}

/// How the DHCP service behaves on the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DhcpMode {
    /// Boot information only, next to the school's own DHCP server (default).
    Proxy,
    /// Addresses from `dhcp.range_start..range_end` plus boot information.
    Standalone,
    /// No DHCP at all.
    Off,
}

/// Settings as written in `bramble.toml` (every field optional there).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSettings {
    pub http: RawHttp,
    pub dhcp: RawDhcp,
    pub tftp: RawTftp,
    pub nfs: RawNfs,
    pub ldap: RawLdap,
    pub supervisor: RawSupervisor,
    pub children: Vec<RawChild>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawHttp {
    pub listen: String,
}

impl Default for RawHttp {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:8080".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDhcp {
    pub mode: String,
    pub interface: String,
    pub listen: String,
    pub proxy_listen: String,
    pub server_ip: String,
    pub range_start: String,
    pub range_end: String,
    pub netmask: String,
    pub router: String,
    pub dns: Vec<String>,
    pub lease_time_secs: u64,
    pub force_standalone: bool,
    pub probe_timeout_ms: u64,
    pub pi_mac_prefixes: Vec<String>,
    pub boot_file_bios: String,
    pub boot_file_efi_x64: String,
    pub boot_file_efi_arm64: String,
    pub ipxe_script: String,
    pub rate_limit_per_client: u32,
}

impl Default for RawDhcp {
    fn default() -> Self {
        Self {
            mode: "proxy".into(),
            interface: String::new(),
            listen: "0.0.0.0:67".into(),
            proxy_listen: "0.0.0.0:4011".into(),
            server_ip: String::new(),
            range_start: String::new(),
            range_end: String::new(),
            netmask: String::new(),
            router: String::new(),
            dns: Vec::new(),
            lease_time_secs: 12 * 3600,
            force_standalone: false,
            probe_timeout_ms: 4000,
            pi_mac_prefixes: [
                "b8:27:eb", "dc:a6:32", "e4:5f:01", "d8:3a:dd", "28:cd:c1", "2c:cf:67", "88:a2:9e",
            ]
            .map(String::from)
            .to_vec(),
            boot_file_bios: "undionly.kpxe".into(),
            boot_file_efi_x64: "ipxe.efi".into(),
            boot_file_efi_arm64: "grubnetaa64.efi".into(),
            ipxe_script: "boot.ipxe".into(),
            rate_limit_per_client: 20,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTftp {
    pub enabled: bool,
    pub listen: String,
    pub max_transfers: u32,
}

impl Default for RawTftp {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: "0.0.0.0:69".into(),
            max_transfers: 1000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawNfs {
    pub enabled: bool,
    pub listen: String,
    pub portmap_listen: String,
    pub allow_unregistered: bool,
}

impl Default for RawNfs {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: "0.0.0.0:2049".into(),
            portmap_listen: "0.0.0.0:111".into(),
            allow_unregistered: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLdap {
    pub enabled: bool,
    pub listen: String,
    pub base_dn: String,
    /// Directory holding the `slapd` binary and friends (empty: search PATH and /usr/sbin).
    pub slapd_path: String,
}

impl Default for RawLdap {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: "0.0.0.0:389".into(),
            base_dn: "dc=bramble,dc=local".into(),
            slapd_path: String::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSupervisor {
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    pub fast_failure_secs: u64,
    pub give_up_after: u32,
    pub stop_timeout_ms: u64,
}

impl Default for RawSupervisor {
    fn default() -> Self {
        Self {
            backoff_initial_ms: 500,
            backoff_max_ms: 30_000,
            fast_failure_secs: 10,
            give_up_after: 8,
            stop_timeout_ms: 5_000,
        }
    }
}

/// An extra supervised child process (`[[children]]`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawChild {
    pub name: String,
    pub command: Vec<String>,
    /// Ready once a TCP connect to this address succeeds (else: once spawned).
    pub ready_tcp: String,
}

/// Validated settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub http: HttpSettings,
    pub dhcp: DhcpSettings,
    pub tftp: TftpSettings,
    pub nfs: NfsSettings,
    pub ldap: LdapSettings,
    pub supervisor: Policy,
    pub children: Vec<ChildSpec>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpSettings {
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DhcpSettings {
    pub mode: DhcpMode,
    pub interface: Option<String>,
    pub listen: SocketAddr,
    pub proxy_listen: SocketAddr,
    pub server_ip: Option<Ipv4Addr>,
    pub range: Option<(Ipv4Addr, Ipv4Addr)>,
    pub netmask: Option<Ipv4Addr>,
    pub router: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub lease_time: Duration,
    pub force_standalone: bool,
    pub probe_timeout: Duration,
    pub pi_mac_prefixes: Vec<[u8; 3]>,
    pub boot_file_bios: String,
    pub boot_file_efi_x64: String,
    pub boot_file_efi_arm64: String,
    pub ipxe_script: String,
    pub rate_limit_per_client: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TftpSettings {
    pub enabled: bool,
    pub listen: SocketAddr,
    pub max_transfers: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NfsSettings {
    pub enabled: bool,
    pub listen: SocketAddr,
    pub portmap_listen: SocketAddr,
    pub allow_unregistered: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LdapSettings {
    pub enabled: bool,
    pub listen: SocketAddr,
    pub base_dn: String,
    pub slapd_path: Option<std::path::PathBuf>,
}

/// Restart policy shared by supervised children and service tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// A run shorter than this counts as a fast failure.
    pub fast_failure: Duration,
    /// Give up after this many fast failures in a row.
    pub give_up_after: u32,
    /// Time between SIGTERM and SIGKILL on shutdown.
    pub stop_timeout: Duration,
}

impl Policy {
    /// Delay before restart number `n` (1-based) of a run of fast failures:
    /// `backoff_initial` doubled each time, capped at `backoff_max`.
    pub fn backoff(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX);
        self.backoff_initial
            .saturating_mul(factor)
            .min(self.backoff_max)
    }
}

impl Default for Policy {
    fn default() -> Self {
        RawSupervisor::default().to_policy()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildSpec {
    pub name: String,
    pub command: Vec<String>,
    pub ready_tcp: Option<SocketAddr>,
}

/// Loads settings: defaults, then `<data>/bramble.toml`, then `BRAMBLE_*__*`
/// environment, then `overrides` (`key=value` pairs from the command line).
pub fn load(data_dir: &Path, overrides: &[String]) -> Result<Settings, SettingsError> {
    let mut figment = Figment::from(Serialized::defaults(RawSettings::default()))
        .merge(Toml::file(data_dir.join("bramble.toml")))
        .merge(env_provider());
    let mut problems = Vec::new();
    for item in overrides {
        match item.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => {
                figment = figment.merge((key.trim().to_string(), parse_flag_value(value)));
            }
            _ => problems.push(Problem {
                key: item.clone(),
                message: "expected --set KEY=VALUE".into(),
            }),
        }
    }
    if !problems.is_empty() {
        return Err(SettingsError { problems });
    }
    from_figment(&figment)
}

/// Parses settings from TOML text alone (defaults underneath, no environment).
pub fn from_toml(text: &str) -> Result<Settings, SettingsError> {
    from_figment(
        &Figment::from(Serialized::defaults(RawSettings::default())).merge(Toml::string(text)),
    )
}

fn env_provider() -> Env {
    // Only BRAMBLE_<SECTION>__<KEY>: BRAMBLE_DATA, BRAMBLE_LOG, BRAMBLE_TOKEN
    // are for the process itself, not settings keys.
    Env::prefixed("BRAMBLE_")
        .split("__")
        .filter(|key| key.as_str().contains('.'))
}

fn parse_flag_value(value: &str) -> figment::value::Value {
    use std::str::FromStr;
    figment::value::Value::from_str(value)
        .unwrap_or_else(|_| figment::value::Value::from(value.to_string()))
}

fn from_figment(figment: &Figment) -> Result<Settings, SettingsError> {
    let raw: RawSettings = figment.extract().map_err(|e| SettingsError {
        problems: e.into_iter().map(figment_problem).collect(),
    })?;
    raw.validate()
}

fn figment_problem(error: figment::Error) -> Problem {
    use figment::error::Kind;
    let mut key = error.path.join(".");
    let message = match &error.kind {
        Kind::UnknownField(field, expected) => {
            if key.is_empty() {
                key = field.clone();
            }
            format!("unknown key (expected one of: {})", expected.join(", "))
        }
        other => other.to_string(),
    };
    let source = error
        .metadata
        .as_ref()
        .and_then(|m| m.source.as_ref().map(|s| format!(" (from {s})")))
        .unwrap_or_else(|| {
            error
                .metadata
                .as_ref()
                .map(|m| format!(" (from {})", m.name))
                .unwrap_or_default()
        });
    Problem {
        key: if key.is_empty() {
            "<settings>".into()
        } else {
            key
        },
        message: format!("{message}{source}"),
    }
}

/// Collects problems while converting raw values.
#[derive(Default)]
struct Check {
    problems: Vec<Problem>,
}

impl Check {
    fn fail(&mut self, key: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            key: key.to_string(),
            message: message.into(),
        });
    }

    fn socket(&mut self, key: &str, text: &str) -> SocketAddr {
        text.parse().unwrap_or_else(|_| {
            self.fail(key, format!("not an address:port: {text:?}"));
            SocketAddr::from(([0, 0, 0, 0], 0))
        })
    }

    fn ipv4(&mut self, key: &str, text: &str) -> Option<Ipv4Addr> {
        if text.is_empty() {
            return None;
        }
        match text.parse() {
            Ok(ip) => Some(ip),
            Err(_) => {
                self.fail(key, format!("not an IPv4 address: {text:?}"));
                None
            }
        }
    }

    fn mac_prefix(&mut self, key: &str, text: &str) -> Option<[u8; 3]> {
        let parts: Vec<_> = text.split([':', '-']).collect();
        let bytes: Option<Vec<u8>> = parts
            .iter()
            .map(|p| {
                (p.len() == 2)
                    .then(|| u8::from_str_radix(p, 16).ok())
                    .flatten()
            })
            .collect();
        match bytes {
            Some(b) if b.len() == 3 => Some([b[0], b[1], b[2]]),
            _ => {
                self.fail(key, format!("not a MAC prefix like \"b8:27:eb\": {text:?}"));
                None
            }
        }
    }
}

impl RawSettings {
    /// Converts to validated [`Settings`], reporting every problem at once.
    pub fn validate(&self) -> Result<Settings, SettingsError> {
        let mut c = Check::default();
        let http = HttpSettings {
            listen: c.socket("http.listen", &self.http.listen),
        };
        let dhcp = self.dhcp.validate(&mut c);
        let tftp = TftpSettings {
            enabled: self.tftp.enabled,
            listen: c.socket("tftp.listen", &self.tftp.listen),
            max_transfers: self.tftp.max_transfers,
        };
        if self.tftp.max_transfers == 0 {
            c.fail("tftp.max_transfers", "must be at least 1");
        }
        let nfs = NfsSettings {
            enabled: self.nfs.enabled,
            listen: c.socket("nfs.listen", &self.nfs.listen),
            portmap_listen: c.socket("nfs.portmap_listen", &self.nfs.portmap_listen),
            allow_unregistered: self.nfs.allow_unregistered,
        };
        let ldap = self.ldap.validate(&mut c);
        let supervisor = self.supervisor.to_policy();
        if self.supervisor.backoff_initial_ms == 0 {
            c.fail("supervisor.backoff_initial_ms", "must be at least 1");
        }
        if self.supervisor.backoff_max_ms < self.supervisor.backoff_initial_ms {
            c.fail(
                "supervisor.backoff_max_ms",
                "must not be smaller than supervisor.backoff_initial_ms",
            );
        }
        let children = self.validate_children(&mut c);
        if c.problems.is_empty() {
            Ok(Settings {
                http,
                dhcp,
                tftp,
                nfs,
                ldap,
                supervisor,
                children,
            })
        } else {
            Err(SettingsError {
                problems: c.problems,
            })
        }
    }

    fn validate_children(&self, c: &mut Check) -> Vec<ChildSpec> {
        let mut seen = std::collections::BTreeSet::new();
        let mut out = Vec::new();
        for (i, child) in self.children.iter().enumerate() {
            let key = format!("children[{i}]");
            let name_ok = !child.name.is_empty()
                && child
                    .name
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_');
            if !name_ok {
                c.fail(
                    &format!("{key}.name"),
                    format!("must be letters, digits, - or _: {:?}", child.name),
                );
            } else if !seen.insert(child.name.clone()) {
                c.fail(
                    &format!("{key}.name"),
                    format!("duplicate child {:?}", child.name),
                );
            }
            if child.command.is_empty() {
                c.fail(&format!("{key}.command"), "must name a program to run");
            }
            let ready_tcp = (!child.ready_tcp.is_empty())
                .then(|| c.socket(&format!("{key}.ready_tcp"), &child.ready_tcp));
            out.push(ChildSpec {
                name: child.name.clone(),
                command: child.command.clone(),
                ready_tcp,
            });
        }
        out
    }
}

impl RawDhcp {
    fn validate(&self, c: &mut Check) -> DhcpSettings {
        let mode = match self.mode.as_str() {
            "proxy" => DhcpMode::Proxy,
            "standalone" => DhcpMode::Standalone,
            "off" => DhcpMode::Off,
            other => {
                c.fail(
                    "dhcp.mode",
                    format!("must be \"proxy\", \"standalone\" or \"off\", not {other:?}"),
                );
                DhcpMode::Off
            }
        };
        let start = c.ipv4("dhcp.range_start", &self.range_start);
        let end = c.ipv4("dhcp.range_end", &self.range_end);
        let range = match (start, end) {
            (Some(s), Some(e)) if u32::from(s) > u32::from(e) => {
                c.fail(
                    "dhcp.range_end",
                    format!("{e} is before dhcp.range_start {s}"),
                );
                None
            }
            (Some(s), Some(e)) => Some((s, e)),
            _ => None,
        };
        if mode == DhcpMode::Standalone {
            if self.range_start.is_empty() {
                c.fail(
                    "dhcp.range_start",
                    "required when dhcp.mode = \"standalone\"",
                );
            }
            if self.range_end.is_empty() {
                c.fail("dhcp.range_end", "required when dhcp.mode = \"standalone\"");
            }
        }
        let netmask = c.ipv4("dhcp.netmask", &self.netmask);
        if let Some(mask) = netmask {
            let bits = u32::from(mask);
            if bits.leading_ones() + bits.trailing_zeros() != 32 {
                c.fail("dhcp.netmask", format!("not a contiguous netmask: {mask}"));
            }
        }
        let dns = self
            .dns
            .iter()
            .enumerate()
            .filter_map(|(i, d)| c.ipv4(&format!("dhcp.dns[{i}]"), d))
            .collect();
        let pi_mac_prefixes = self
            .pi_mac_prefixes
            .iter()
            .enumerate()
            .filter_map(|(i, p)| c.mac_prefix(&format!("dhcp.pi_mac_prefixes[{i}]"), p))
            .collect();
        if self.lease_time_secs < 60 {
            c.fail(
                "dhcp.lease_time_secs",
                format!("must be at least 60, not {}", self.lease_time_secs),
            );
        }
        if self.interface.len() > 15 || self.interface.contains(['/', ' ']) {
            c.fail(
                "dhcp.interface",
                format!("not an interface name: {:?}", self.interface),
            );
        }
        DhcpSettings {
            mode,
            interface: (!self.interface.is_empty()).then(|| self.interface.clone()),
            listen: c.socket("dhcp.listen", &self.listen),
            proxy_listen: c.socket("dhcp.proxy_listen", &self.proxy_listen),
            server_ip: c.ipv4("dhcp.server_ip", &self.server_ip),
            range,
            netmask,
            router: c.ipv4("dhcp.router", &self.router),
            dns,
            lease_time: Duration::from_secs(self.lease_time_secs),
            force_standalone: self.force_standalone,
            probe_timeout: Duration::from_millis(self.probe_timeout_ms),
            pi_mac_prefixes,
            boot_file_bios: self.boot_file_bios.clone(),
            boot_file_efi_x64: self.boot_file_efi_x64.clone(),
            boot_file_efi_arm64: self.boot_file_efi_arm64.clone(),
            ipxe_script: self.ipxe_script.clone(),
            rate_limit_per_client: self.rate_limit_per_client,
        }
    }
}

impl RawLdap {
    fn validate(&self, c: &mut Check) -> LdapSettings {
        let dn_ok = !self.base_dn.is_empty()
            && self.base_dn.split(',').all(|rdn| {
                rdn.split_once('=').is_some_and(|(k, v)| {
                    !k.trim().is_empty()
                        && k.trim().chars().all(|ch| ch.is_ascii_alphanumeric())
                        && !v.trim().is_empty()
                        && !v.contains(['"', '\\', '+', ';', '<', '>', '#'])
                })
            });
        if !dn_ok {
            c.fail(
                "ldap.base_dn",
                format!("not a DN like \"dc=school,dc=example\": {:?}", self.base_dn),
            );
        }
        LdapSettings {
            enabled: self.enabled,
            listen: c.socket("ldap.listen", &self.listen),
            base_dn: self.base_dn.clone(),
            slapd_path: (!self.slapd_path.is_empty()).then(|| self.slapd_path.clone().into()),
        }
    }
}

impl RawSupervisor {
    fn to_policy(&self) -> Policy {
        Policy {
            backoff_initial: Duration::from_millis(self.backoff_initial_ms),
            backoff_max: Duration::from_millis(self.backoff_max_ms),
            fast_failure: Duration::from_secs(self.fast_failure_secs),
            give_up_after: self.give_up_after,
            stop_timeout: Duration::from_millis(self.stop_timeout_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../../rootfs-overlay/etc/bramble/bramble.example.toml");

    fn keys(err: SettingsError) -> Vec<String> {
        err.problems.into_iter().map(|p| p.key).collect()
    }

    #[test]
    fn defaults_are_valid_and_safe() {
        let s = from_toml("").unwrap();
        assert_eq!(s.http.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(s.dhcp.mode, DhcpMode::Proxy);
        assert_eq!(s.dhcp.pi_mac_prefixes.len(), 7);
    }

    #[test]
    fn shipped_example_parses() {
        let s = from_toml(EXAMPLE).unwrap();
        assert_eq!(s.dhcp.mode, DhcpMode::Proxy);
    }

    #[test]
    fn shipped_example_with_every_line_uncommented_parses() {
        // The example documents each key as a commented `# key = value` line;
        // uncommented, they must still be a valid configuration.
        let text: String = EXAMPLE
            .lines()
            .map(|l| {
                l.strip_prefix("# ")
                    .filter(|r| r.contains(" = ") || r.starts_with('['))
                    .unwrap_or(l)
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let s = from_toml(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(s.dhcp.interface.as_deref(), Some("eth0"));
        assert!(s.dhcp.range.is_some());
        assert_eq!(s.children.len(), 1);
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_name() {
        let err = from_toml("[http]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n").unwrap_err();
        assert_eq!(keys(err.clone()), vec!["http.lisen"]);
        assert!(err.to_string().contains("unknown key"), "{err}");
        let err = from_toml("[htp]\nlisten = \"x\"\n").unwrap_err();
        assert_eq!(keys(err), vec!["htp"]);
    }

    #[test]
    fn bad_values_are_all_reported_at_once() {
        let err = from_toml(
            "[http]\nlisten = \"nowhere\"\n[dhcp]\nmode = \"standalone\"\nrange_start = \"10.0.0.x\"\nnetmask = \"255.0.255.0\"\npi_mac_prefixes = [\"zz:00\"]\n",
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("dhcp.range_start: not an IPv4 address: \"10.0.0.x\""),
            "{text}"
        );
        assert_eq!(
            keys(err),
            vec![
                "http.listen",
                "dhcp.range_start",
                "dhcp.range_end",
                "dhcp.netmask",
                "dhcp.pi_mac_prefixes[0]",
            ]
        );
    }

    #[test]
    // figment's Jail closure returns figment::Error, whose size is not ours.
    #[allow(clippy::result_large_err)]
    fn environment_overrides_file_and_flags_override_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("bramble.toml", "[http]\nlisten = \"127.0.0.1:1000\"\n")?;
            let dir = jail.directory().to_path_buf();
            assert_eq!(load(&dir, &[]).unwrap().http.listen.port(), 1000);
            jail.set_env("BRAMBLE_HTTP__LISTEN", "127.0.0.1:2000");
            jail.set_env("BRAMBLE_DATA", "/elsewhere");
            jail.set_env("BRAMBLE_LOG", "debug");
            assert_eq!(load(&dir, &[]).unwrap().http.listen.port(), 2000);
            let s = load(
                &dir,
                &[
                    "http.listen=127.0.0.1:3000".into(),
                    "tftp.max_transfers=7".into(),
                ],
            )
            .unwrap();
            assert_eq!(s.http.listen.port(), 3000);
            assert_eq!(s.tftp.max_transfers, 7);
            jail.set_env("BRAMBLE_DHCP__MODDE", "off");
            let err = load(&dir, &[]).unwrap_err();
            assert_eq!(keys(err), vec!["dhcp.modde"]);
            Ok(())
        });
    }
}
