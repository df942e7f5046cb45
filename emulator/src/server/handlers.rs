//! wrangler's `/cdn-cgi/handler/*` routes, answered as Miniflare answers
//! them (workers-sdk packages/miniflare/src/workers/core/entry.worker.ts):
//! `/cdn-cgi/handler/scheduled?cron=&time=` runs the scheduled handler and
//! answers `ok` (200) or the outcome (500); any other handler path is a 404
//! naming the valid ones. Routed, behind the loopback-only layer, by
//! `internal`.

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, Response, StatusCode, Uri, header};
use serde::Deserialize;

use super::AppState;
use crate::cron::schedule;
use crate::logging;
use pyflare_bindings::Clock;

pub const SCHEDULED: &str = "/cdn-cgi/handler/scheduled";
pub const EMAIL: &str = "/cdn-cgi/handler/email";
/// Miniflare's deprecated alias of [`SCHEDULED`].
pub const LEGACY_SCHEDULED: &str = "/cdn-cgi/mf/scheduled";

/// Whether `path` is one of these routes.
pub fn is_handler_path(path: &str) -> bool {
    path.starts_with("/cdn-cgi/handler/") || path == LEGACY_SCHEDULED
}

/// The query of the scheduled routes; unknown parameters are ignored, and
/// `time` is read as JavaScript's `parseInt` reads it.
#[derive(Debug, Default, Deserialize)]
pub struct ScheduledQuery {
    #[serde(default)]
    cron: String,
    time: Option<String>,
    format: Option<String>,
}

/// `/cdn-cgi/handler/scheduled?cron=&time=&format=`
pub async fn scheduled(
    State(app): State<AppState>,
    query: Result<Query<ScheduledQuery>, QueryRejection>,
) -> Response<Body> {
    let query = query.map(|Query(q)| q).unwrap_or_default();
    let time = query
        .time
        .as_deref()
        .and_then(parse_int)
        .unwrap_or_else(|| app.clock.now_ms());
    let outcome = schedule::run_once(&app.supervisor, &query.cron, time).await;
    let status = if outcome.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    if query.format.as_deref() == Some("json") {
        let body =
            serde_json::json!({ "outcome": outcome.as_str(), "noRetry": outcome.no_retry() })
                .to_string();
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        return response;
    }
    text(status, outcome.as_str().to_owned())
}

/// Miniflare's deprecated `/cdn-cgi/mf/scheduled`: the same, with its warning.
pub async fn legacy_scheduled(
    state: State<AppState>,
    query: Result<Query<ScheduledQuery>, QueryRejection>,
) -> Response<Body> {
    logging::warn(&format!(
        "Triggering scheduled handlers via a request to `{LEGACY_SCHEDULED}` is deprecated, and will be removed in a future version of Miniflare. Instead, send a request to `{SCHEDULED}`"
    ));
    scheduled(state, query).await
}

/// `/cdn-cgi/handler/email`. Not emulated: email handlers.
pub async fn email() -> Response<Body> {
    text(
        StatusCode::NOT_IMPLEMENTED,
        "pyflare does not emulate email handlers (Not emulated: email)".into(),
    )
}

/// Any other `/cdn-cgi/handler/...` path.
pub async fn unknown(uri: Uri) -> Response<Body> {
    let path = uri.path();
    text(
        StatusCode::NOT_FOUND,
        format!(
            "\"{path}\" is not a valid handler. Did you mean to use \"{SCHEDULED}\" or \"{EMAIL}\"?"
        ),
    )
}

/// JavaScript's `parseInt`: leading digits (with a sign), else nothing.
fn parse_int(text: &str) -> Option<i64> {
    let text = text.trim_start();
    let end = text
        .char_indices()
        .find(|(i, c)| !(c.is_ascii_digit() || (*i == 0 && (*c == '-' || *c == '+'))))
        .map_or(text.len(), |(i, _)| i);
    text[..end].parse().ok()
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

#[cfg(test)]
#[test]
fn parse_int_reads_leading_digits() {
    assert_eq!(parse_int("1000"), Some(1000));
    assert_eq!(parse_int("1000abc"), Some(1000));
    assert_eq!(parse_int("-5"), Some(-5));
    assert_eq!(parse_int("abc"), None);
}
