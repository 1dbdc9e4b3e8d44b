//! The encryption endpoints, outside the Kubernetes API (as k3s's `/v1-k3s/encrypt/...`):
//! `GET /v1-kubelab/encryption/status`, `POST /v1-kubelab/encryption/rotate?rate=N`,
//! `POST /v1-kubelab/encryption/reencrypt?rate=N`, `POST /v1-kubelab/encryption/enable?rate=N`
//! and `.../disable?rate=N` (the `secret-encryption` addon). RBAC decides who may use them, as
//! for any non-resource URL (cluster-admin may; view, edit and admin may not).
//!
//! A rotation runs in its own task: a client that goes away does not stop it halfway.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Extension;

use super::rotation::{Report, RotationError, Rotator};
use crate::error::ApiError;
use crate::Authenticated;

#[derive(serde::Deserialize)]
struct RateQuery {
    #[serde(default)]
    rate: u32,
}

#[derive(Clone)]
pub struct Endpoints {
    rotator: Arc<Rotator>,
    authorizer: Arc<crate::authz::Authorizer>,
}

pub fn router<S>(
    rotator: Arc<Rotator>,
    authorizer: Arc<crate::authz::Authorizer>,
) -> axum::Router<S> {
    axum::Router::new()
        .route("/v1-kubelab/encryption/status", axum::routing::get(status))
        .route(
            "/v1-kubelab/encryption/{operation}",
            axum::routing::post(operation),
        )
        .with_state(Endpoints {
            rotator,
            authorizer,
        })
}

/// What authorization looks at.
struct Request {
    method: http::Method,
    uri: http::Uri,
    headers: http::HeaderMap,
}

/// RBAC decides, as for any non-resource URL: verb `get` for the status, `post` for the
/// rest (cluster-admin's `nonResourceURLs: ["*"]` allows them; `view` and `edit` do not).
async fn authorize(
    endpoints: &Endpoints,
    auth: Option<Extension<Authenticated>>,
    request: &Request,
) -> Result<(), ApiError> {
    let Some(Extension(Authenticated(Some(caller)))) = auth else {
        return Err(ApiError::Unauthorized);
    };
    let (method, uri) = (&request.method, &request.uri);
    let identity =
        crate::authz::impersonate(&endpoints.authorizer, caller, &request.headers).await?;
    let query = crate::request::Query::parse(uri.query())?;
    let attributes = crate::authz::Attributes::of_request(method, uri.path(), &query);
    endpoints
        .authorizer
        .authorize(&identity, &attributes)
        .await
        .map_err(|reason| crate::authz::forbidden(&identity.user, &attributes, &reason))
}

/// A `Status` object, as every other failure of the server.
fn failure(e: RotationError) -> Response {
    match e {
        RotationError::NotEnabled(message) => ApiError::bad_request(message).into_response(),
        other => ApiError::internal(other).into_response(),
    }
}

async fn status(
    State(endpoints): State<Endpoints>,
    auth: Option<Extension<Authenticated>>,
    method: http::Method,
    uri: http::Uri,
    headers: http::HeaderMap,
) -> Response {
    if let Err(e) = authorize(
        &endpoints,
        auth,
        &Request {
            method,
            uri,
            headers,
        },
    )
    .await
    {
        return e.into_response();
    }
    match endpoints.rotator.status().await {
        Ok(status) => axum::Json(status).into_response(),
        Err(e) => failure(e),
    }
}

/// Runs one of the rotator's operations in its own task (a client going away does not stop
/// it halfway) and answers its report.
async fn run<F, Fut>(
    endpoints: Endpoints,
    auth: Option<Extension<Authenticated>>,
    request: Request,
    operation: F,
) -> Response
where
    F: FnOnce(Arc<Rotator>) -> Fut,
    Fut: std::future::Future<Output = Result<Report, RotationError>> + Send + 'static,
{
    if let Err(e) = authorize(&endpoints, auth, &request).await {
        return e.into_response();
    }
    match tokio::spawn(operation(endpoints.rotator.clone())).await {
        Ok(Ok(report)) => axum::Json(report).into_response(),
        Ok(Err(e)) => failure(e),
        Err(e) => ApiError::internal(e).into_response(),
    }
}

/// `POST /v1-kubelab/encryption/<operation>`.
async fn operation(
    State(endpoints): State<Endpoints>,
    Path(operation): Path<String>,
    auth: Option<Extension<Authenticated>>,
    method: http::Method,
    uri: http::Uri,
    headers: http::HeaderMap,
    Query(query): Query<RateQuery>,
) -> Response {
    let rate = query.rate;
    let request = Request {
        method,
        uri,
        headers,
    };
    if !["rotate", "reencrypt", "enable", "disable"].contains(&operation.as_str()) {
        return ApiError::NoRoute.into_response();
    }
    run(endpoints, auth, request, move |r| async move {
        match operation.as_str() {
            "rotate" => r.rotate(rate).await,
            "reencrypt" => r.reencrypt(rate).await,
            "enable" => r.enable(rate).await,
            _ => r.disable(rate).await,
        }
    })
    .await
}
