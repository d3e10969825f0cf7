//! The admin API under `/api/v1`: registered clients, discovered devices,
//! leases. Every route needs `Authorization: Bearer <admin token>`; without
//! it the answer is 401. Errors are JSON `{"error": "..."}` naming the bad value.

use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bramble_core::clients::{Client, Mac, RegistryError};
use serde_json::json;

use crate::AppState;

pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/clients", get(list_clients).post(add_client))
        .route("/clients/discovered", get(discovered))
        .route(
            "/clients/{mac}",
            get(get_client).put(update_client).delete(remove_client),
        )
        .route("/leases", get(leases))
        .merge(crate::accounts::routes())
        .layer(middleware::from_fn_with_state(state, require_token))
}

async fn require_token(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if constant_time_eq(presented.as_bytes(), app.token.as_bytes()) {
        next.run(req).await
    } else {
        error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong admin token (Authorization: Bearer <secrets/admin-token>)".into(),
        )
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn error(code: StatusCode, message: String) -> Response {
    (code, Json(json!({ "error": message }))).into_response()
}

fn registry_error(e: RegistryError) -> Response {
    let code = match &e {
        RegistryError::Exists(_) => StatusCode::CONFLICT,
        RegistryError::NotFound(_) => StatusCode::NOT_FOUND,
        RegistryError::NoSuchOs(_) | RegistryError::Invalid(_) => StatusCode::BAD_REQUEST,
        RegistryError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(code, e.to_string())
}

fn parse_mac(text: &str) -> Result<Mac, Response> {
    text.parse()
        .map_err(|e: String| error(StatusCode::BAD_REQUEST, e))
}

fn parse_client(body: serde_json::Value) -> Result<Client, Response> {
    let mut client: Client = serde_json::from_value(body)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("invalid client: {e}")))?;
    if let Some(s) = &client.serial {
        client.serial = Some(
            bramble_core::clients::parse_serial(s)
                .map_err(|e| error(StatusCode::BAD_REQUEST, format!("serial: {e}")))?,
        );
    }
    Ok(client)
}

async fn list_clients(State(app): State<AppState>) -> Response {
    Json(app.registry.list()).into_response()
}

async fn add_client(State(app): State<AppState>, Json(body): Json<serde_json::Value>) -> Response {
    let client = match parse_client(body) {
        Ok(c) => c,
        Err(r) => return r,
    };
    match app.registry.add(client) {
        Ok(c) => {
            tracing::info!(mac = %c.mac, os = %c.os, "client registered");
            (StatusCode::CREATED, Json(c)).into_response()
        }
        Err(e) => registry_error(e),
    }
}

async fn get_client(State(app): State<AppState>, Path(mac): Path<String>) -> Response {
    let mac = match parse_mac(&mac) {
        Ok(m) => m,
        Err(r) => return r,
    };
    match app.registry.get(mac) {
        Some(c) => Json(c).into_response(),
        None => registry_error(RegistryError::NotFound(mac)),
    }
}

async fn update_client(
    State(app): State<AppState>,
    Path(mac): Path<String>,
    Json(body): Json<serde_json::Value>,
) -> Response {
    let (mac, mut client) = match (parse_mac(&mac), parse_client(body)) {
        (Ok(m), Ok(c)) => (m, c),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    if client.mac != mac {
        return error(
            StatusCode::BAD_REQUEST,
            format!("mac in body ({}) differs from the URL ({mac})", client.mac),
        );
    }
    client.mac = mac;
    match app.registry.update(client) {
        Ok(c) => {
            tracing::info!(mac = %c.mac, os = %c.os, "client updated");
            Json(c).into_response()
        }
        Err(e) => registry_error(e),
    }
}

async fn remove_client(State(app): State<AppState>, Path(mac): Path<String>) -> Response {
    let mac = match parse_mac(&mac) {
        Ok(m) => m,
        Err(r) => return r,
    };
    match app.registry.remove(mac) {
        Ok(c) => {
            tracing::info!(mac = %c.mac, "client removed");
            Json(c).into_response()
        }
        Err(e) => registry_error(e),
    }
}

async fn discovered(State(app): State<AppState>) -> Response {
    Json(app.registry.discovered()).into_response()
}

async fn leases(State(app): State<AppState>) -> impl IntoResponse {
    Json(app.leases.all())
}
