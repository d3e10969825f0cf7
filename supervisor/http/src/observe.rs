//! `/health`, `/status` and `/metrics`: what operators and orchestrators read.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/status", get(status))
        .route("/metrics", get(crate::metrics::metrics))
}

async fn health(State(app): State<AppState>) -> impl IntoResponse {
    let failing: Vec<Value> = app
        .status
        .unhealthy()
        .into_iter()
        .map(
            |(name, u)| json!({"name": name, "kind": u.kind, "state": u.state, "detail": u.detail}),
        )
        .collect();
    let units: serde_json::Map<String, Value> = app
        .status
        .snapshot()
        .into_iter()
        .map(|(n, u)| (n, json!(u.state)))
        .collect();
    if failing.is_empty() {
        (
            StatusCode::OK,
            Json(json!({"status": "ok", "units": units})),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "degraded", "failing": failing, "units": units})),
        )
    }
}

async fn status(State(app): State<AppState>) -> impl IntoResponse {
    Json(json!({
        "version": app.version,
        "uptime_secs": app.status.uptime_secs(),
        "pid": std::process::id(),
        "units": app.status.snapshot(),
        "volume": {
            "path": app.volume.root(),
            "free_bytes": app.volume.free_bytes(),
        },
        "clients": app.registry.list().len(),
        "discovered": app.registry.discovered().len(),
        "leases": app.leases.all().len(),
    }))
}

pub fn text(body: String) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}
