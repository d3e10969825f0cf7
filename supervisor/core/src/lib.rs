//! bramble-core: what every part of the appliance shares.
//!
//! - [`settings`]: the two-layer configuration (raw serde, then validated),
//!   loaded from defaults, `bramble.toml`, `BRAMBLE_*` and flags.
//! - [`clients`]: registered clients and discovered Pis.
//! - [`leases`]: standalone-mode DHCP leases (shared with TFTP/NFS).
//! - [`neighbours`]: the kernel's ARP table (address -> MAC).
//! - [`volume`]: the data volume's layout, modes, schema version, secrets.
//! - [`atomic`]: crash-safe replacement of state files.
//! - [`status`]: live state of services and children, counters.
//! - [`machine`]: the pure restart state machine for children.
//! - [`process`]: the single spawner/reaper and the child driver.
//! - [`service`]: the restart loop for service tasks.

pub mod atomic;
pub mod clients;
pub mod leases;
pub mod machine;
pub mod neighbours;
pub mod process;
pub mod service;
pub mod settings;
pub mod status;
pub mod volume;

pub use settings::Settings;
pub use status::Status;
pub use volume::Volume;

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
