//! pyflare's own routes under `/cdn-cgi/pyflare/`, answered only to
//! loopback clients: tools and tests drive the emulator through them.
//!
//! - `POST /cdn-cgi/pyflare/clock/advance?seconds=N` moves pyflare's clock
//!   forward (KV expiry, and later cron and queue delays), so tests need not
//!   sleep. Answers `{"now_ms": ...}`.

use axum::body::Body;
use axum::http::{Method, Response, StatusCode, header};
use std::net::SocketAddr;

use super::AppState;
use pyflare_bindings::Clock;

/// Prefix of pyflare's internal routes.
pub const PREFIX: &str = "/cdn-cgi/pyflare/";

/// Answers an internal route.
pub fn handle(
    app: &AppState,
    peer: Option<SocketAddr>,
    method: &Method,
    path_and_query: &str,
) -> Response<Body> {
    if !peer.is_some_and(|p| p.ip().is_loopback()) {
        return text(
            StatusCode::FORBIDDEN,
            "pyflare's internal routes answer only on loopback\n",
        );
    }
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    match (method, &path[PREFIX.len()..]) {
        (&Method::POST, "clock/advance") => {
            let seconds = query
                .split('&')
                .filter_map(|pair| pair.split_once('='))
                .find(|(k, _)| *k == "seconds")
                .and_then(|(_, v)| v.parse::<f64>().ok())
                .filter(|s| s.is_finite() && *s >= 0.0);
            let Some(seconds) = seconds else {
                return text(StatusCode::BAD_REQUEST, "expected ?seconds=N with N >= 0\n");
            };
            app.clock.advance((seconds * 1000.0) as i64);
            let body = serde_json::json!({ "now_ms": app.clock.now_ms() }).to_string();
            let mut response = Response::new(Body::from(body));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                "application/json".parse().expect("static header"),
            );
            response
        }
        _ => text(StatusCode::NOT_FOUND, "no such pyflare route\n"),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
}
