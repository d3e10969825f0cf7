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
    start_services(&shared, &tracker, &shutdown);
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

fn start_services(shared: &Shared, tracker: &TaskTracker, shutdown: &CancellationToken) {
    let policy = shared.settings.supervisor;
    let http_state = bramble_http::AppState {
        status: shared.status.clone(),
        volume: shared.volume.clone(),
        registry: shared.registry.clone(),
        leases: shared.leases.clone(),
        token: shared.token.clone(),
        version: env!("CARGO_PKG_VERSION"),
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
