//! The encryption endpoints, outside the Kubernetes API (as k3s's `/v1-k3s/encrypt/...`):
//! `GET /v1-kubelab/encryption/status`, `POST /v1-kubelab/encryption/rotate?rate=N`,
//! `POST /v1-kubelab/encryption/reencrypt?rate=N`, `POST /v1-kubelab/encryption/enable?rate=N`
//! and `.../disable?rate=N` (the `secret-encryption` addon). Only cluster administrators (groups
//! `system:masters` or `kubelab:cluster-admins`) may use them.
//!
//! A rotation runs in its own task: a client that goes away does not stop it halfway.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::Extension;

use super::rotation::{Report, RotationError, Rotator};
use crate::error::ApiError;
use crate::Authenticated;

const ADMIN_GROUPS: [&str; 2] = ["system:masters", "kubelab:cluster-admins"];

#[derive(serde::Deserialize)]
struct RateQuery {
    #[serde(default)]
    rate: u32,
}

pub fn router<S>(rotator: Arc<Rotator>) -> axum::Router<S> {
    axum::Router::new()
        .route("/v1-kubelab/encryption/status", axum::routing::get(status))
        .route("/v1-kubelab/encryption/rotate", axum::routing::post(rotate))
        .route(
            "/v1-kubelab/encryption/reencrypt",
            axum::routing::post(reencrypt),
        )
        .route("/v1-kubelab/encryption/enable", axum::routing::post(enable))
        .route(
            "/v1-kubelab/encryption/disable",
            axum::routing::post(disable),
        )
        .with_state(rotator)
}

fn authorize(auth: Option<Extension<Authenticated>>) -> Result<(), ApiError> {
    let Some(Extension(Authenticated(Some(identity)))) = auth else {
        return Err(ApiError::Unauthorized);
    };
    if identity
        .groups
        .iter()
        .any(|g| ADMIN_GROUPS.contains(&g.as_str()))
    {
        return Ok(());
    }
    Err(ApiError::Forbidden {
        message: format!(
            "User \"{}\" cannot manage encryption keys: only cluster administrators can",
            identity.user
        ),
        details: None,
    })
}

/// A `Status` object, as every other failure of the server.
fn failure(e: RotationError) -> Response {
    match e {
        RotationError::NotEnabled(message) => ApiError::bad_request(message).into_response(),
        other => ApiError::internal(other).into_response(),
    }
}

async fn status(
    State(rotator): State<Arc<Rotator>>,
    auth: Option<Extension<Authenticated>>,
) -> Response {
    if let Err(e) = authorize(auth) {
        return e.into_response();
    }
    match rotator.status().await {
        Ok(status) => axum::Json(status).into_response(),
        Err(e) => failure(e),
    }
}

/// Runs one of the rotator's operations in its own task (a client going away does not stop
/// it halfway) and answers its report.
async fn run<F>(auth: Option<Extension<Authenticated>>, operation: F) -> Response
where
    F: std::future::Future<Output = Result<Report, RotationError>> + Send + 'static,
{
    if let Err(e) = authorize(auth) {
        return e.into_response();
    }
    match tokio::spawn(operation).await {
        Ok(Ok(report)) => axum::Json(report).into_response(),
        Ok(Err(e)) => failure(e),
        Err(e) => ApiError::internal(e).into_response(),
    }
}

async fn rotate(
    State(rotator): State<Arc<Rotator>>,
    auth: Option<Extension<Authenticated>>,
    Query(query): Query<RateQuery>,
) -> Response {
    run(auth, async move { rotator.rotate(query.rate).await }).await
}

async fn reencrypt(
    State(rotator): State<Arc<Rotator>>,
    auth: Option<Extension<Authenticated>>,
    Query(query): Query<RateQuery>,
) -> Response {
    run(auth, async move { rotator.reencrypt(query.rate).await }).await
}

async fn enable(
    State(rotator): State<Arc<Rotator>>,
    auth: Option<Extension<Authenticated>>,
    Query(query): Query<RateQuery>,
) -> Response {
    run(auth, async move { rotator.enable(query.rate).await }).await
}

async fn disable(
    State(rotator): State<Arc<Rotator>>,
    auth: Option<Extension<Authenticated>>,
    Query(query): Query<RateQuery>,
) -> Response {
    run(auth, async move { rotator.disable(query.rate).await }).await
}
