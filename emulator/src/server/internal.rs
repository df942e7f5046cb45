//! The routes under `/cdn-cgi/` that the worker never sees, as one axum
//! `Router` behind one loopback-only layer: tools and tests drive the
//! emulator through them, a remote client or the worker itself gets 403.
//!
//! - `POST /cdn-cgi/pyflare/clock/advance?seconds=N` moves pyflare's clock
//!   forward (KV expiry, cron minutes), so tests need not sleep. Answers
//!   `{"now_ms": ...}`.
//! - `GET /cdn-cgi/pyflare/health`: 200 `{"status":"ready"}` once the
//!   worker has loaded, 503 with the reason before that or when it cannot
//!   load (for container health checks).
//! - `/cdn-cgi/pyflare/<route>/...`: a binding kind's own routes (see
//!   `inspect`).
//! - wrangler's `/cdn-cgi/handler/*` routes (see `handlers`).

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::IntoResponse;
use axum::routing::{any, get, post};
use serde::Deserialize;
use std::net::SocketAddr;
use tower::ServiceExt;

use super::{AppState, WORKER_SUBREQUEST_HEADER, handlers, inspect};
use crate::host::supervisor::Slot;
use pyflare_bindings::Clock;

/// Prefix of pyflare's own routes.
pub const PREFIX: &str = "/cdn-cgi/pyflare/";

/// Whether `path` is one of the routes this module answers.
pub fn is_internal(path: &str) -> bool {
    path.starts_with(PREFIX) || handlers::is_handler_path(path)
}

/// Answers a request for one of the internal routes.
pub async fn answer(app: AppState, request: Request<Body>) -> Response<Body> {
    match router(app.clone()).with_state(app).oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

fn router(app: AppState) -> Router<AppState> {
    Router::new()
        .route("/cdn-cgi/pyflare/clock/advance", post(advance_clock))
        .route("/cdn-cgi/pyflare/health", get(health))
        .route("/cdn-cgi/pyflare/{route}", any(binding_route))
        .route("/cdn-cgi/pyflare/{route}/{*rest}", any(binding_route))
        .route(handlers::SCHEDULED, any(handlers::scheduled))
        .route(handlers::LEGACY_SCHEDULED, any(handlers::legacy_scheduled))
        .route(handlers::EMAIL, any(handlers::email))
        .route("/cdn-cgi/handler/{*rest}", any(handlers::unknown))
        .fallback(|| async { InternalError::NoSuchRoute })
        .layer(middleware::from_fn_with_state(app, loopback_only))
}

/// The one guard of every internal route: the client is on this machine,
/// and it is not the worker. A worker's subrequest comes from loopback too:
/// it is known by the process holding its end of the connection (a worker
/// host, see `peer`), and by the `CF-Worker` header the host adds, as
/// Cloudflare marks a worker's subrequests.
/// `PYFLARE_INTERNAL_ROUTES=any` lets clients that are not on loopback in
/// too (a container's published port), never the worker.
async fn loopback_only(
    State(app): State<AppState>,
    request: Request<Body>,
    next: Next,
) -> Response<Body> {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0);
    let local = app.internal_from_any || peer.is_some_and(|peer| peer.ip().is_loopback());
    if !local
        || request.headers().contains_key(WORKER_SUBREQUEST_HEADER)
        || peer.is_some_and(super::peer::from_own_host)
    {
        return InternalError::NotLoopback.into_response();
    }
    next.run(request).await
}

async fn binding_route(State(app): State<AppState>, request: Request<Body>) -> Response<Body> {
    match inspect::kind_for(request.uri().path()) {
        Some(kind) => inspect::answer(app, kind, request).await,
        None => InternalError::NoSuchRoute.into_response(),
    }
}

async fn health(State(app): State<AppState>) -> Response<Body> {
    let (status, body) = match app.supervisor.now() {
        Slot::Ready(_) => (StatusCode::OK, serde_json::json!({ "status": "ready" })),
        Slot::Failed(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({ "status": "failed", "error": &*why }),
        ),
        Slot::Starting => (
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({ "status": "starting" }),
        ),
        Slot::Stopped => (
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({ "status": "stopped" }),
        ),
    };
    json(status, &body)
}

/// A JSON answer of an internal route.
pub(super) fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(Body::from(format!("{value}\n")));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[derive(Debug, Deserialize)]
struct Advance {
    seconds: f64,
}

async fn advance_clock(
    State(app): State<AppState>,
    query: Result<Query<Advance>, QueryRejection>,
) -> Result<Response<Body>, InternalError> {
    let seconds = query
        .ok()
        .map(|Query(advance)| advance.seconds)
        .filter(|s| s.is_finite() && *s >= 0.0)
        .ok_or(InternalError::BadQuery("expected ?seconds=N with N >= 0"))?;
    app.clock.advance((seconds * 1000.0) as i64);
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "now_ms": app.clock.now_ms() }),
    ))
}

/// Why an internal route answered with an error.
#[derive(Debug)]
pub enum InternalError {
    /// A remote client, or the worker's own subrequest.
    NotLoopback,
    /// The query string is not what the route takes.
    BadQuery(&'static str),
    /// Nothing under `/cdn-cgi/pyflare/` by that name.
    NoSuchRoute,
}

impl IntoResponse for InternalError {
    fn into_response(self) -> Response<Body> {
        let (status, body) = match self {
            Self::NotLoopback => (
                StatusCode::FORBIDDEN,
                "pyflare's /cdn-cgi/ routes answer only to local clients on loopback".into(),
            ),
            Self::BadQuery(what) => (StatusCode::BAD_REQUEST, what.to_owned()),
            Self::NoSuchRoute => (StatusCode::NOT_FOUND, "no such pyflare route".into()),
        };
        text(status, format!("{body}\n"))
    }
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain;charset=UTF-8"),
    );
    response
}
