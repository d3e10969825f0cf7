//! `bramble serve`: open the volume, start every service and child under
//! supervision, and shut all of it down in order on SIGTERM/SIGINT.
//!
//! The first signal starts a graceful shutdown (services stop accepting,
//! children get TERM, then KILL after `supervisor.stop_timeout_ms`); a
//! second signal, or a shutdown that takes longer than [`SHUTDOWN_LIMIT`],
//! kills every child and exits at once.

use std::time::Duration;

use anyhow::Context as _;
use bramble_core::clients::Registry;
use bramble_core::leases::Leases;
use bramble_core::process::{ChildUnit, Readiness, Reaper, supervise_child};
use bramble_core::service::supervise_service;
use bramble_core::settings::DhcpMode;
use bramble_core::status::{Kind, UnitState};
use bramble_core::{Settings, Status, Volume};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::cli::ServeArgs;

/// Longest graceful shutdown before everything is killed.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(9);

/// Shared handles every service gets.
#[derive(Clone)]
pub struct Shared {
    pub settings: Settings,
    pub volume: Volume,
    pub registry: Registry,
    pub leases: Leases,
    pub status: Status,
    pub token: String,
}

pub fn main(args: ServeArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(args))
}

fn open(args: &ServeArgs) -> anyhow::Result<Shared> {
    let settings = bramble_core::settings::load(&args.data.data, &args.set)?;
    let volume = Volume::open(&args.data.data)?;
    let token = volume
        .secret("admin-token")
        .context("cannot create the admin token in secrets/")?;
    let registry = Registry::open(&volume).context("cannot read state/clients.json")?;
    let leases = Leases::open(&volume).context("cannot read state/leases.json")?;
    Ok(Shared {
        settings,
        volume,
        registry,
        leases,
        status: Status::new(),
        token,
    })
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // Handlers first: as PID 1 an unhandled SIGTERM would be ignored.
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let shared = open(&args)?;
    info!(
        version = env!("CARGO_PKG_VERSION"),
        data = %shared.volume.root().display(),
        pid = std::process::id(),
        "bramble starting"
    );
    let reaper = Reaper::new();
    tokio::spawn(reaper.clone().run());
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    // Every unit is known to /health before anything starts.
    register_units(&shared);
    start_services(&shared, &tracker, &shutdown);
    start_slapd(&shared, &tracker, &shutdown, &reaper);
    start_children(&shared, &tracker, &shutdown, &reaper);
    tracker.close();

    let which = tokio::select! {
        _ = sigterm.recv() => "SIGTERM",
        _ = sigint.recv() => "SIGINT",
    };
    info!("{which} received: shutting down (send it again to force)");
    shutdown.cancel();
    let forced = tokio::select! {
        _ = tracker.wait() => false,
        _ = sigterm.recv() => { warn!("second signal: forcing shutdown"); true }
        _ = sigint.recv() => { warn!("second signal: forcing shutdown"); true }
        _ = tokio::time::sleep(SHUTDOWN_LIMIT) => { error!("shutdown took longer than {SHUTDOWN_LIMIT:?}: forcing it"); true }
    };
    if forced {
        reaper.kill_all();
        reaper.reap_all();
        std::process::exit(1);
    }
    reaper.reap_all();
    info!("bramble stopped");
    Ok(())
}

fn register_units(shared: &Shared) {
    let s = &shared.settings;
    let services = [
        ("http", true),
        ("dhcp", s.dhcp.mode != DhcpMode::Off),
        ("tftp", s.tftp.enabled),
        ("nfs", s.nfs.enabled),
    ];
    for (name, enabled) in services {
        if enabled {
            shared.status.register(name, Kind::Service);
        }
    }
    if s.ldap.enabled {
        shared.status.register("slapd", Kind::Child);
    }
    for child in &s.children {
        shared.status.register(&child.name, Kind::Child);
    }
}

fn start_services(shared: &Shared, tracker: &TaskTracker, shutdown: &CancellationToken) {
    let policy = shared.settings.supervisor;
    let http_state = bramble_http::AppState {
        status: shared.status.clone(),
        volume: shared.volume.clone(),
        registry: shared.registry.clone(),
        leases: shared.leases.clone(),
        token: shared.token.clone(),
        version: env!("CARGO_PKG_VERSION"),
        accounts: shared.settings.ldap.enabled.then(|| {
            bramble_ldap::Accounts::new(shared.volume.clone(), shared.settings.ldap.base_dn.clone())
        }),
    };
    let listen = shared.settings.http.listen;
    tracker.spawn(supervise_service(
        "http",
        shared.status.clone(),
        policy,
        shutdown.clone(),
        move || async move {
            tokio::net::TcpListener::bind(listen)
                .await
                .map_err(|e| format!("binding http.listen {listen}: {e}"))
        },
        move |listener, token| bramble_http::run(listener, http_state.clone(), token),
    ));
    start_dhcp(shared, tracker, shutdown);
    start_tftp(shared, tracker, shutdown);
    start_nfs(shared, tracker, shutdown);
}

fn start_nfs(shared: &Shared, tracker: &TaskTracker, shutdown: &CancellationToken) {
    if !shared.settings.nfs.enabled {
        info!("nfs.enabled = false: no NFS service");
        return;
    }
    let shared = shared.clone();
    let bind_settings = shared.settings.nfs.clone();
    tracker.spawn(supervise_service(
        "nfs",
        shared.status.clone(),
        shared.settings.supervisor,
        shutdown.clone(),
        move || {
            let settings = bind_settings.clone();
            async move { bramble_nfs::bind(&settings).await }
        },
        move |sockets, token| {
            let ctx = bramble_nfs::Context {
                settings: shared.settings.nfs.clone(),
                volume: shared.volume.clone(),
                registry: shared.registry.clone(),
                leases: shared.leases.clone(),
                status: shared.status.clone(),
            };
            bramble_nfs::run(sockets, ctx, token)
        },
    ));
}

fn start_dhcp(shared: &Shared, tracker: &TaskTracker, shutdown: &CancellationToken) {
    let settings = shared.settings.dhcp.clone();
    if settings.mode == DhcpMode::Off {
        info!("dhcp.mode = \"off\": no DHCP service");
        return;
    }
    let shared = shared.clone();
    tracker.spawn(supervise_service(
        "dhcp",
        shared.status.clone(),
        shared.settings.supervisor,
        shutdown.clone(),
        move || {
            let settings = settings.clone();
            async move {
                bramble_dhcp::bind(&settings).await.map_err(|e| {
                    format!(
                        "binding dhcp.listen {} / dhcp.proxy_listen {}{}: {e}",
                        settings.listen,
                        settings.proxy_listen,
                        settings
                            .interface
                            .as_deref()
                            .map(|i| format!(" on {i}"))
                            .unwrap_or_default()
                    )
                })
            }
        },
        move |sockets, token| {
            let ctx = bramble_dhcp::Context {
                settings: shared.settings.dhcp.clone(),
                registry: shared.registry.clone(),
                leases: shared.leases.clone(),
                status: shared.status.clone(),
            };
            bramble_dhcp::run(sockets, ctx, token)
        },
    ));
}

fn start_tftp(shared: &Shared, tracker: &TaskTracker, shutdown: &CancellationToken) {
    if !shared.settings.tftp.enabled {
        info!("tftp.enabled = false: no TFTP service");
        return;
    }
    let listen = shared.settings.tftp.listen;
    let shared = shared.clone();
    let bind_settings = shared.settings.tftp.clone();
    tracker.spawn(supervise_service(
        "tftp",
        shared.status.clone(),
        shared.settings.supervisor,
        shutdown.clone(),
        move || {
            let settings = bind_settings.clone();
            async move {
                bramble_tftp::bind(&settings)
                    .await
                    .map_err(|e| format!("binding tftp.listen {listen}: {e}"))
            }
        },
        move |socket, token| {
            let ctx = bramble_tftp::Context {
                settings: shared.settings.tftp.clone(),
                registry: shared.registry.clone(),
                leases: shared.leases.clone(),
                status: shared.status.clone(),
                server_ip: shared.settings.dhcp.server_ip,
            };
            bramble_tftp::run(socket, ctx, token)
        },
    ));
}

/// Prepares slapd's configuration and supervises it; a failure to prepare
/// (no slapd installed, bad volume) is reported in /health as `slapd`.
fn start_slapd(
    shared: &Shared,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
    reaper: &Reaper,
) {
    if !shared.settings.ldap.enabled {
        info!("ldap.enabled = false: no accounts");
        return;
    }
    // register_units already made "slapd" known to /health before this
    // (slow) preparation starts.
    let (shared, shutdown, reaper) = (shared.clone(), shutdown.clone(), reaper.clone());
    tracker.spawn(async move {
        match bramble_ldap::slapd::prepare(&shared.volume, &shared.settings.ldap, &reaper).await {
            Ok(unit) => {
                supervise_child(
                    unit,
                    reaper,
                    shared.status.clone(),
                    shared.settings.supervisor,
                    shutdown,
                )
                .await
            }
            Err(e) => {
                error!("slapd cannot start: {e}");
                shared
                    .status
                    .set("slapd", UnitState::Failed, Some(e.to_string()));
                shutdown.cancelled().await;
                shared.status.set("slapd", UnitState::Stopped, None);
            }
        }
    });
}

fn start_children(
    shared: &Shared,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
    reaper: &Reaper,
) {
    for spec in &shared.settings.children {
        let unit = ChildUnit {
            name: spec.name.clone(),
            command: spec.command.clone(),
            env: Vec::new(),
            readiness: spec.ready_tcp.map_or(Readiness::Spawned, Readiness::Tcp),
        };
        tracker.spawn(supervise_child(
            unit,
            reaper.clone(),
            shared.status.clone(),
            shared.settings.supervisor,
            shutdown.clone(),
        ));
    }
}
