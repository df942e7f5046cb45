//! Answers pyflare gives instead of the worker's: an uncaught exception, a
//! hang or a fatal Pyodide error (Cloudflare error 1101), an exceeded CPU
//! or memory limit (1102), a worker that failed to load or a host that
//! stopped. Browsers get an HTML developer page, other clients plain text;
//! both carry the Python traceback or the runtime's message.

use axum::body::Body;
use axum::http::{HeaderValue, Response, StatusCode, header};

use crate::host::{ExitReason, Undelivered};

/// Why pyflare answers for the worker.
#[derive(Debug)]
pub enum ServerError {
    /// The handler raised; the Python traceback.
    WorkerThrew(String),
    /// An event ran past `limits.cpu_ms`.
    CpuExceeded,
    /// The isolate passed its memory limit; the host's measurement.
    MemoryExceeded(String),
    /// Pyodide suffered a fatal error; workerd's message for it.
    Fatal(String),
    /// The worker's code failed to load; the traceback.
    LoadFailed(String),
    /// The host process stopped while handling the request.
    HostStopped(String),
    /// pyflare is shutting down.
    ShuttingDown,
}

impl ServerError {
    /// Status code, Cloudflare error code (if any) and title.
    fn parts(&self) -> (StatusCode, Option<u16>, &'static str) {
        match self {
            // https://developers.cloudflare.com/support/troubleshooting/http-status-codes/cloudflare-1xxx-errors/error-1101/
            // workerd aborts the isolate on a fatal Pyodide error with an
            // Error, which the request sees as an exception:
            // https://github.com/cloudflare/workerd/blob/6552d999c79ef651b5463c6d692d065a8ce6f859/src/pyodide/internal/python.ts#L272-L281
            Self::WorkerThrew(_) | Self::Fatal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                Some(1101),
                "Worker threw exception",
            ),
            // https://developers.cloudflare.com/support/troubleshooting/http-status-codes/cloudflare-1xxx-errors/error-1102/
            // covers both the CPU time and the 128 MB memory limit.
            Self::CpuExceeded | Self::MemoryExceeded(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                Some(1102),
                "Worker exceeded resource limits",
            ),
            Self::LoadFailed(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                None,
                "Worker failed to load",
            ),
            Self::HostStopped(_) => (StatusCode::BAD_GATEWAY, None, "Worker host stopped"),
            Self::ShuttingDown => (
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                "pyflare is shutting down",
            ),
        }
    }

    fn detail(&self) -> String {
        match self {
            Self::WorkerThrew(traceback) | Self::LoadFailed(traceback) => traceback.clone(),
            Self::CpuExceeded => "Worker exceeded CPU time limit.".into(),
            Self::MemoryExceeded(measured) | Self::Fatal(measured) => measured.clone(),
            Self::HostStopped(why) => {
                format!("The worker's host process stopped before answering: {why}.")
            }
            Self::ShuttingDown => "pyflare is shutting down.".into(),
        }
    }

    /// The response, as HTML when the client accepts it.
    pub fn into_response(self, wants_html: bool) -> Response<Body> {
        let (status, code, title) = self.parts();
        let heading = match code {
            Some(code) => format!("Error {code}: {title}"),
            None => title.to_owned(),
        };
        let detail = self.detail();
        let (content_type, body) = if wants_html {
            (
                "text/html; charset=UTF-8",
                format!(
                    "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{heading} | pyflare</title>\
<style>body{{font-family:system-ui,sans-serif;margin:2rem;color:#222}}pre{{background:#f6f6f6;padding:1rem;overflow:auto;border-left:4px solid #f38020}}</style>\
</head><body><h1>{heading}</h1><pre>{}</pre><p>pyflare local development server</p></body></html>\n",
                    escape_html(&detail)
                ),
            )
        } else {
            (
                "text/plain; charset=UTF-8",
                format!("{heading}\n\n{detail}\n"),
            )
        };
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = status;
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        if let Some(code) = code {
            response
                .headers_mut()
                .insert("cf-error-code", HeaderValue::from(code));
        }
        response
    }
}

impl From<ExitReason> for ServerError {
    /// The answer for requests in flight when their host stopped.
    fn from(reason: ExitReason) -> Self {
        match reason {
            ExitReason::CpuLimit => Self::CpuExceeded,
            ExitReason::MemoryLimit(message) => Self::MemoryExceeded(message),
            ExitReason::Fatal(message) => Self::Fatal(message),
            ExitReason::Stopped => Self::ShuttingDown,
            ExitReason::Crashed(why) => Self::HostStopped(why),
        }
    }
}

impl From<Undelivered> for ServerError {
    /// The answer for a request no worker took.
    fn from(why: Undelivered) -> Self {
        match why {
            Undelivered::LoadFailed(traceback) => Self::LoadFailed(traceback.to_string()),
            Undelivered::ShuttingDown => Self::ShuttingDown,
            Undelivered::Replaced => Self::HostStopped("the worker host was replaced".into()),
        }
    }
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exception_page_escapes_the_traceback() {
        let response = ServerError::WorkerThrew("ValueError: <b>".into()).into_response(true);
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(response.headers()["cf-error-code"], "1101");
        let response = ServerError::CpuExceeded.into_response(false);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(escape_html("<b>&"), "&lt;b&gt;&amp;");
    }

    #[test]
    fn stopped_hosts_answer_as_cloudflare_does() {
        let memory = ServerError::from(ExitReason::MemoryLimit(
            "Worker exceeded memory limit.".into(),
        ));
        let response = memory.into_response(false);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()["cf-error-code"], "1102");
        let fatal = ServerError::from(ExitReason::Fatal("Python worker fatal error: x".into()));
        let response = fatal.into_response(false);
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(response.headers()["cf-error-code"], "1101");
        let crashed = ServerError::from(ExitReason::Crashed("gone".into()));
        assert_eq!(
            crashed.into_response(false).status(),
            StatusCode::BAD_GATEWAY
        );
    }
}
