//! bramble-http: the appliance's HTTP endpoint.
//!
//! - `GET /health`: 200 when every enabled service and child is up, else
//!   503 naming the failing ones (compose healthchecks, load balancers).
//! - `GET /status`: version, uptime, units, volume path and free space.
//! - `GET /metrics`: Prometheus text format.
//! - `/api/v1/...`: the admin API (clients, discovered devices, leases),
//!   users and shared folders, guarded by the admin token from `secrets/admin-token`.
//!
//! [`run`] serves on a listener the caller bound until the token is cancelled.

// Handlers return `Result<_, Response>` to answer early with an error body;
// the size of `Response` does not matter on this path.
#![allow(clippy::result_large_err)]

mod accounts;
mod admin;
mod metrics;
mod observe;

use std::io;

use axum::Router;
use bramble_core::clients::Registry;
use bramble_core::leases::Leases;
use bramble_core::{Status, Volume};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Everything the handlers read.
#[derive(Clone)]
pub struct AppState {
    pub status: Status,
    pub volume: Volume,
    pub registry: Registry,
    pub leases: Leases,
    /// The admin API token (`Authorization: Bearer <token>`).
    pub token: String,
    pub version: &'static str,
    /// User and folder management; `None` when `ldap.enabled = false`.
    pub accounts: Option<bramble_ldap::Accounts>,
}

/// The full router (public endpoints and the admin API).
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(observe::routes())
        .nest("/api/v1", admin::routes(state.clone()))
        .with_state(state)
}

/// Serves HTTP on `listener` until `shutdown` is cancelled.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
