//! The HTTP front: Cloudflare's edge limits, then pyflare's internal routes
//! under `/cdn-cgi/` (`internal`, loopback only), else the worker's fetch
//! handler through the current host.

pub mod error;
pub mod handlers;
pub mod inspect;
pub mod internal;
pub mod limits;
pub mod listen;
pub mod peer;
pub mod websocket;

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Request, Response, StatusCode, header};
use http_body::Body as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::host::supervisor::Supervisor;
use crate::host::{FetchOutcome, FetchRequest};
use crate::logging;
use error::ServerError;
use pyflare_bindings::assets::{AssetRequest, AssetResponse, Assets};

/// Shared state of the HTTP server.
#[derive(Debug, Clone)]
pub struct AppState {
    pub supervisor: Arc<Supervisor>,
    /// `ip:port` the server listens on, for URLs of requests without Host.
    pub authority: String,
    /// The clock the bindings read; internal routes move it.
    pub clock: Arc<pyflare_bindings::OffsetClock>,
    /// Largest request body accepted (Cloudflare's plan limit).
    pub max_body_bytes: u64,
    /// pyflare's own `/cdn-cgi/` routes answer clients that are not on
    /// loopback too (`PYFLARE_INTERNAL_ROUTES=any`, for a container whose
    /// published port is the only way in); never the worker itself.
    pub internal_from_any: bool,
    /// The worker's static assets, if it has any (replaced on reload).
    pub assets: SharedAssets,
}

/// The current version's static assets.
pub type SharedAssets = Arc<std::sync::RwLock<Option<Arc<Assets>>>>;

/// The header the isolate host adds to every request the worker makes.
pub const WORKER_SUBREQUEST_HEADER: &str = "cf-worker";

/// Answers one request: Cloudflare's edge limits first, then pyflare's own
/// routes or the worker.
pub async fn handle_request(app: AppState, request: Request<Body>) -> Response<Body> {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    let wants_html = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));

    let response = if let Some(refused) = refuse_at_edge(&app, &request) {
        refused
    } else if internal::is_internal(request.uri().path()) {
        internal::answer(app.clone(), request).await
    } else if let Some(answer) = asset_answer(&app, &request) {
        serve_asset(answer).await
    } else {
        match dispatch(&app, request, &path).await {
            Ok(response) => response,
            Err(error) => error.into_response(wants_html),
        }
    };
    let status = response.status();
    logging::request(
        &method,
        &path,
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        started.elapsed(),
    );
    response
}

/// The static assets' answer to `request`, if Cloudflare's router would
/// send it to the assets rather than run the worker.
fn asset_answer(app: &AppState, request: &Request<Body>) -> Option<AssetResponse> {
    let assets = app
        .assets
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone()?;
    // Parsed, as the asset server sees `new URL(request.url)`: the path
    // without `.` or `..` segments.
    let target = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let authority = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or(&app.authority);
    let url = url::Url::parse(&format!("http://{authority}{target}"))
        .or_else(|_| url::Url::parse(&format!("http://{}{target}", app.authority)))
        .ok()?;
    let asset_request = AssetRequest {
        method: request.method().as_str().to_owned(),
        url,
        headers: request
            .headers()
            .iter()
            .map(|(name, value)| {
                let (text, _) = limits::header_text(value.as_bytes());
                (name.as_str().to_owned(), text)
            })
            .collect(),
    };
    assets.answer_first(&asset_request)
}

/// `answer` as an HTTP response, its file streamed.
async fn serve_asset(answer: AssetResponse) -> Response<Body> {
    let body = match answer.body_stream().await {
        Ok(Some(stream)) => Body::from_stream(stream),
        Ok(None) => Body::empty(),
        Err(e) => {
            let file = answer.body.as_deref().unwrap_or(std::path::Path::new(""));
            logging::error(&format!("cannot read the asset {}: {e}", file.display()));
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            return response;
        }
    };
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    append_headers(response.headers_mut(), answer.headers);
    response
}

/// Appends `pairs` to `headers`, leaving out any name or value HTTP cannot
/// carry.
fn append_headers(headers: &mut axum::http::HeaderMap, pairs: Vec<(String, String)>) {
    for (name, value) in pairs {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            headers.append(name, value);
        }
    }
}

/// The answer Cloudflare's edge gives instead of running the worker, if any.
fn refuse_at_edge(app: &AppState, request: &Request<Body>) -> Option<Response<Body>> {
    if limits::header_bytes(request.headers()) > limits::MAX_HEADER_BYTES {
        return Some(limits::headers_too_large());
    }
    if let Some(host) = request.headers().get(header::HOST)
        && !limits::is_valid_host(host.as_bytes())
    {
        return Some(limits::bad_request());
    }
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > app.max_body_bytes) {
        return Some(limits::body_too_large());
    }
    None
}

async fn dispatch(
    app: &AppState,
    request: Request<Body>,
    path: &str,
) -> Result<Response<Body>, ServerError> {
    let (mut parts, body) = request.into_parts();
    let upgrade = websocket::Upgrade::take(&parts.method, &parts.headers, &mut parts.extensions);
    let authority = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or(&app.authority);
    let url = format!("http://{authority}{path}");
    let headers = parts
        .headers
        .iter()
        .map(|(name, value)| {
            let (text, as_bytes) = limits::header_text(value.as_bytes());
            if as_bytes {
                logging::warn(&format!(
                    "request header `{name}` is not UTF-8 text of Latin-1 characters: the worker gets its bytes as Latin-1 characters (on Cloudflare, its UTF-8 decoding)"
                ));
            }
            (name.as_str().to_owned(), text)
        })
        .collect();
    let method_allows_body = !matches!(parts.method.as_str(), "GET" | "HEAD");
    // A body past the plan's limit fails the worker's read, and the
    // request is answered with Cloudflare's 413 instead.
    let too_large = Arc::new(AtomicBool::new(false));
    let body = (method_allows_body && !body.is_end_stream()).then(|| {
        Body::new(limits::LimitedBody::new(
            body,
            app.max_body_bytes,
            too_large.clone(),
        ))
    });

    let request = FetchRequest {
        method: parts.method.as_str().to_owned(),
        url,
        headers,
        body,
    };
    let outcome = app.supervisor.dispatch(request).await;
    if too_large.load(Ordering::Relaxed) {
        return Ok(limits::body_too_large());
    }
    match outcome {
        FetchOutcome::Response(mut head) => match (head.websocket.take(), upgrade) {
            (Some(socket), Some(upgrade)) => Ok(websocket::accept(upgrade, head, socket)),
            (Some(socket), None) => {
                let error = websocket::not_an_upgrade(socket);
                logging::error(&format!("uncaught exception in fetch:\n{error}"));
                Err(ServerError::WorkerThrew(error))
            }
            (None, _) => Ok(build_response(head)),
        },
        FetchOutcome::Exception(traceback) => {
            logging::error(&format!("uncaught exception in fetch:\n{traceback}"));
            Err(ServerError::WorkerThrew(traceback))
        }
        FetchOutcome::HostGone(reason) => Err(reason.into()),
        FetchOutcome::Undelivered(why) => Err(why.into()),
    }
}

fn build_response(head: crate::host::HostResponse) -> Response<Body> {
    let body = match head.body {
        Some(stream) => Body::from_stream(stream),
        None => Body::empty(),
    };
    let mut response = Response::new(body);
    let status = StatusCode::from_u16(head.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    *response.status_mut() = status;
    if !head.status_text.is_empty()
        && Some(head.status_text.as_str()) != status.canonical_reason()
        && let Ok(reason) = hyper::ext::ReasonPhrase::try_from(head.status_text.into_bytes())
    {
        response.extensions_mut().insert(reason);
    }
    let headers = response.headers_mut();
    append_headers(headers, head.headers);
    // A body known in full goes out with its length, as workerd sends it;
    // a streamed one is chunked.
    if let Some(length) = head.body_length
        && !headers.contains_key(header::CONTENT_LENGTH)
    {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    }
    response
}
