//! Admin API for accounts: `/api/v1/users` and `/api/v1/folders`.
//! Mounted under the same token check as the rest of the admin API.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, put};
use axum::{Json, Router};
use bramble_ldap::accounts::AccountsError;
use bramble_ldap::{Accounts, HomeAction, NewUser};
use serde::Deserialize;

use crate::AppState;
use crate::admin::error;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/users", get(list).post(add))
        .route("/users/import", axum::routing::post(import))
        .route("/users/{name}", get(get_user).delete(remove))
        .route("/users/{name}/password", put(passwd))
        .route("/folders", get(folders).post(add_folder))
        .route("/folders/{name}", delete(remove_folder))
}

fn accounts(app: &AppState) -> Result<&Accounts, Response> {
    app.accounts.as_ref().ok_or_else(|| {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "accounts are disabled (ldap.enabled = false)".into(),
        )
    })
}

fn fail(e: AccountsError) -> Response {
    let code = match &e {
        AccountsError::Invalid(_) => StatusCode::BAD_REQUEST,
        AccountsError::Exists(_)
        | AccountsError::FolderExists(_)
        | AccountsError::FolderNotEmpty(_) => StatusCode::CONFLICT,
        AccountsError::NoSuchUser(_) | AccountsError::NoSuchFolder(_) => StatusCode::NOT_FOUND,
        AccountsError::Ldap(_) => StatusCode::SERVICE_UNAVAILABLE,
        AccountsError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(code, e.to_string())
}

fn respond<T: serde::Serialize>(code: StatusCode, r: Result<T, AccountsError>) -> Response {
    match r {
        Ok(v) => (code, Json(v)).into_response(),
        Err(e) => fail(e),
    }
}

async fn list(State(app): State<AppState>) -> Response {
    match accounts(&app) {
        Ok(a) => respond(StatusCode::OK, a.list().await),
        Err(r) => r,
    }
}

async fn get_user(State(app): State<AppState>, Path(name): Path<String>) -> Response {
    match accounts(&app) {
        Ok(a) => respond(StatusCode::OK, a.get(&name).await),
        Err(r) => r,
    }
}

async fn add(State(app): State<AppState>, body: Bytes) -> Response {
    let req: NewUser = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid user: {e}")),
    };
    match accounts(&app) {
        Ok(a) => respond(StatusCode::CREATED, a.add(req).await),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Password {
    password: String,
    #[serde(default)]
    must_change_password: bool,
}

async fn passwd(State(app): State<AppState>, Path(name): Path<String>, body: Bytes) -> Response {
    let req: Password = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("expected {{\"password\": ..}}: {e}"),
            );
        }
    };
    match accounts(&app) {
        Ok(a) => respond(
            StatusCode::OK,
            a.set_password(&name, &req.password, req.must_change_password)
                .await
                .map(|()| serde_json::json!({"changed": name})),
        ),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct RemoveQuery {
    home: Option<HomeAction>,
}

async fn remove(
    State(app): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<RemoveQuery>,
) -> Response {
    let Some(home) = q.home else {
        return error(
            StatusCode::BAD_REQUEST,
            "say what happens to the home: ?home=archive or ?home=delete".into(),
        );
    };
    match accounts(&app) {
        Ok(a) => respond(
            StatusCode::OK,
            a.remove(&name, home)
                .await
                .map(|kept| serde_json::json!({"removed": name, "archived_home": kept})),
        ),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct ImportQuery {
    #[serde(default = "yes")]
    must_change: bool,
}

fn yes() -> bool {
    true
}

async fn import(
    State(app): State<AppState>,
    Query(q): Query<ImportQuery>,
    body: Bytes,
) -> Response {
    let Ok(text) = std::str::from_utf8(&body) else {
        return error(StatusCode::BAD_REQUEST, "the CSV is not UTF-8".into());
    };
    match accounts(&app) {
        Ok(a) => Json(a.import_csv(text, q.must_change).await).into_response(),
        Err(r) => r,
    }
}

async fn folders(State(app): State<AppState>) -> Response {
    match accounts(&app) {
        Ok(a) => respond(StatusCode::OK, a.folders()),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewFolder {
    name: String,
}

async fn add_folder(State(app): State<AppState>, body: Bytes) -> Response {
    let req: NewFolder = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("expected {{\"name\": ..}}: {e}"),
            );
        }
    };
    match accounts(&app) {
        Ok(a) => respond(StatusCode::CREATED, a.add_folder(&req.name)),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct ForceQuery {
    #[serde(default)]
    force: bool,
}

async fn remove_folder(
    State(app): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<ForceQuery>,
) -> Response {
    match accounts(&app) {
        Ok(a) => respond(
            StatusCode::OK,
            a.remove_folder(&name, q.force)
                .map(|()| serde_json::json!({"removed": name})),
        ),
        Err(r) => r,
    }
}
