//! `/cdn-cgi/pyflare/<route>/...`: a binding kind's own loopback-only
//! routes (a queue's counts, a Durable Object's storage), answered by the
//! live bindings of that kind through `Binding::inspect`.
//!
//! Every binding of the kind is asked, in the order of their names; the JSON
//! objects they answer are merged into one, so a listing covers them all,
//! and a request about one thing is answered by the binding that holds it.

use axum::body::{Body, to_bytes};
use axum::http::{Request, Response, StatusCode};
use percent_encoding::percent_decode_str;
use pyflare_bindings::{BINDINGS, BindingKind, Inspect, InspectError};

use super::AppState;
use super::internal::{PREFIX, json};
use crate::host::supervisor::Slot;

/// Largest body an inspect request may carry.
const MAX_BODY: usize = 1 << 20;

/// The binding kind whose route `path` is under, if any.
pub fn kind_for(path: &str) -> Option<&'static dyn BindingKind> {
    let segment = path.strip_prefix(PREFIX)?.split('/').next()?;
    BINDINGS
        .iter()
        .copied()
        .find(|kind| kind.route() == segment)
}

/// Answers one request under `/cdn-cgi/pyflare/<route>/`, the route of
/// `kind` (see [`kind_for`]).
pub async fn answer(
    app: AppState,
    kind: &'static dyn BindingKind,
    request: Request<Body>,
) -> Response<Body> {
    let path = request.uri().path().to_owned();
    let segments = path[PREFIX.len() + kind.route().len()..]
        .split('/')
        .filter(|segment| !segment.is_empty())
        .map(|segment| percent_decode_str(segment).decode_utf8_lossy().into_owned())
        .collect();
    let query = request
        .uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let method = request.method().as_str().to_owned();
    let Ok(body) = to_bytes(request.into_body(), MAX_BODY).await else {
        return json(
            StatusCode::PAYLOAD_TOO_LARGE,
            &error_body("the request body is larger than 1 MiB"),
        );
    };
    let inspect = Inspect {
        method,
        path: segments,
        query,
        body,
    };

    let Slot::Ready(host) = app.supervisor.current().await else {
        return json(
            StatusCode::SERVICE_UNAVAILABLE,
            &error_body("the worker is not running (see pyflare's log); its bindings are not open"),
        );
    };
    let mut bindings: Vec<_> = host
        .bindings()
        .values()
        .filter(|binding| binding.kind() == kind.wire_name())
        .cloned()
        .collect();
    bindings.sort_by(|a, b| a.name().cmp(b.name()));

    let mut merged = serde_json::Map::new();
    let mut answered = false;
    for binding in bindings {
        match binding.inspect(&inspect).await {
            None => {}
            Some(Ok(serde_json::Value::Object(fields))) => {
                answered = true;
                merged.extend(fields);
            }
            Some(Ok(other)) => {
                answered = true;
                merged.insert(binding.name().to_owned(), other);
            }
            Some(Err(error)) => {
                let status = match error {
                    InspectError::NotFound(_) => StatusCode::NOT_FOUND,
                    InspectError::BadRequest(_) => StatusCode::BAD_REQUEST,
                    InspectError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
                };
                return json(status, &error_body(&error.to_string()));
            }
        }
    }
    if !answered {
        return json(StatusCode::NOT_FOUND, &error_body("no such pyflare route"));
    }
    json(StatusCode::OK, &serde_json::Value::Object(merged))
}

fn error_body(message: &str) -> serde_json::Value {
    serde_json::json!({ "error": message })
}
