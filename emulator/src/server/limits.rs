//! Cloudflare's limits on an incoming request, and the answers its edge
//! gives above them (<https://developers.cloudflare.com/workers/platform/limits/#request-limits>):
//!
//! - request headers: 128 KB in total; above, the edge answers
//!   `400 Bad Request` with its "Request Header Or Cookie Too Large" page;
//! - request body: 100 MB on the Free and Pro plans (200 MB Business,
//!   500 MB Enterprise); above, `413 Request Entity Too Large`. A
//!   `Content-Length` over the limit is refused before the worker runs; a
//!   chunked body is cut off once it passes the limit, without buffering.
//!
//! It also turns header bytes into the text the worker reads.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

/// Total size of the request headers Cloudflare accepts (128 KB).
pub const MAX_HEADER_BYTES: usize = 128 * 1024;

/// Request body size Cloudflare accepts on the Free and Pro plans (100 MB).
pub const DEFAULT_MAX_BODY_BYTES: u64 = 100 * 1024 * 1024;

/// Reads a size for `--max-body-size`: bytes, or a number with `KB`, `MB`
/// or `GB` (powers of 1024, as Cloudflare's "100 MB" is taken here).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let upper = text.to_ascii_uppercase();
    let (number, unit) = [
        ("GB", 1u64 << 30),
        ("MB", 1 << 20),
        ("KB", 1 << 10),
        ("B", 1),
    ]
    .iter()
    .find_map(|(suffix, unit)| upper.strip_suffix(suffix).map(|n| (n.trim(), *unit)))
    .unwrap_or((upper.as_str(), 1));
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("`{text}` is not a size such as 100MB, 200MB or 1048576"))
}

/// Size of the request's header fields as they came on the wire: each
/// `name: value` line with its CRLF.
pub fn header_bytes(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum()
}

/// Cloudflare's edge answers with nginx's error pages, signed `cloudflare`:
/// `title` is the page's title, `heading` its status line, `detail` a line
/// under it.
fn edge_page(
    status: StatusCode,
    title: &str,
    heading: &str,
    detail: Option<&str>,
) -> Response<Body> {
    let detail = detail
        .map(|d| format!("<center>{d}</center>\r\n"))
        .unwrap_or_default();
    let body = format!(
        "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{heading}</h1></center>\r\n{detail}<hr><center>cloudflare</center>\r\n</body>\r\n</html>\r\n"
    );
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    // The rest of the request is not read: the connection ends here.
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Cloudflare's answer to request headers over [`MAX_HEADER_BYTES`].
pub fn headers_too_large() -> Response<Body> {
    edge_page(
        StatusCode::BAD_REQUEST,
        "400 Request Header Or Cookie Too Large",
        "400 Bad Request",
        Some("Request Header Or Cookie Too Large"),
    )
}

/// Cloudflare's answer to a request body over the plan's limit (its page
/// still says "Entity", as nginx's does).
pub fn body_too_large() -> Response<Body> {
    let title = "413 Request Entity Too Large";
    let mut response = edge_page(StatusCode::PAYLOAD_TOO_LARGE, title, title, None);
    // nginx's status line, where hyper would say "Payload Too Large".
    if let Ok(reason) = hyper::ext::ReasonPhrase::try_from(&b"Request Entity Too Large"[..]) {
        response.extensions_mut().insert(reason);
    }
    response
}

/// A malformed request the edge refuses (a Host that is no host name).
pub fn bad_request() -> Response<Body> {
    edge_page(
        StatusCode::BAD_REQUEST,
        "400 Bad Request",
        "400 Bad Request",
        None,
    )
}

/// Whether `host` can stand in a URL as its authority (`name[:port]`,
/// ASCII only, a host name the URL standard accepts): anything else is
/// refused with a 400 before the worker runs.
pub fn is_valid_host(host: &[u8]) -> bool {
    let Ok(host) = std::str::from_utf8(host) else {
        return false;
    };
    host.is_ascii()
        && !host.is_empty()
        && !host.contains(['@', '/', '\\', '?', '#'])
        && url::Url::parse(&format!("http://{host}/")).is_ok_and(|url| url.has_host())
}

/// The text the worker reads for a header value. workerd decodes the bytes
/// as UTF-8 (cloudflare/workerd#6927); pyflare does the same when the
/// result fits in a JS `Headers` value (every character at most U+00FF),
/// which covers ASCII and Latin-1 text written in UTF-8.
///
/// Not emulated: a value that is not UTF-8, or whose characters go past
/// U+00FF, cannot be held by Node's `Headers`; the worker gets its bytes one
/// character each (Latin-1, as the Fetch standard and browsers have it)
/// where workerd gives the UTF-8 decoding (with U+FFFD for invalid bytes).
/// Returns whether the value had to be passed that way.
pub fn header_text(bytes: &[u8]) -> (String, bool) {
    if let Ok(text) = std::str::from_utf8(bytes)
        && text.chars().all(|c| u32::from(c) <= 0xFF)
    {
        return (text.to_owned(), false);
    }
    (bytes.iter().map(|&b| char::from(b)).collect(), true)
}

/// A request body that fails once more than `limit` bytes have come, and
/// records that it did so the request is answered with a 413.
pub struct LimitedBody {
    inner: Body,
    limit: u64,
    seen: u64,
    over: Arc<AtomicBool>,
}

impl LimitedBody {
    pub fn new(inner: Body, limit: u64, over: Arc<AtomicBool>) -> Self {
        Self {
            inner,
            limit,
            seen: 0,
            over,
        }
    }
}

impl http_body::Body for LimitedBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.over.load(Ordering::Relaxed) {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.seen += data.len() as u64;
                    if self.seen > self.limit {
                        self.over.store(true, Ordering::Relaxed);
                        return Poll::Ready(Some(Err(format!(
                            "the request body is larger than {} bytes (413 Request Entity Too Large)",
                            self.limit
                        )
                        .into())));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn header_text_is_utf8_when_it_fits_else_latin1() {
        assert_eq!(header_text(b"plain"), ("plain".into(), false));
        assert_eq!(header_text("café".as_bytes()), ("café".into(), false));
        // U+2026 does not fit a byte string: one character per byte.
        assert_eq!(
            header_text("…".as_bytes()),
            ("\u{e2}\u{80}\u{a6}".into(), true)
        );
        assert_eq!(header_text(b"\xff"), ("\u{ff}".into(), true));
    }

    #[test]
    fn sizes_read_with_units() {
        assert_eq!(parse_size("100MB"), Ok(DEFAULT_MAX_BODY_BYTES));
        assert_eq!(parse_size("200 mb"), Ok(200 << 20));
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("2KB"), Ok(2048));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("0").is_err());
    }

    #[test]
    fn hosts_must_be_ascii_authorities() {
        assert!(is_valid_host(b"example.com"));
        assert!(is_valid_host(b"127.0.0.1:8787"));
        assert!(is_valid_host(b"[::1]:8787"));
        assert!(!is_valid_host("exämple.com".as_bytes()));
        assert!(!is_valid_host(b"a b"));
        assert!(!is_valid_host(b"user@host"));
        assert!(!is_valid_host(b"host/path"));
        assert!(!is_valid_host(b""));
        assert!(!is_valid_host(b"host:99999"));
        assert!(!is_valid_host(b"a%zzb"));
        assert!(!is_valid_host(b"1.2.3.256"));
        assert!(!is_valid_host(b"[::1"));
    }

    #[tokio::test]
    async fn limited_body_fails_past_the_limit() {
        let over = Arc::new(AtomicBool::new(false));
        let body = LimitedBody::new(Body::from(vec![0u8; 10]), 9, over.clone());
        assert!(body.collect().await.is_err());
        assert!(over.load(Ordering::Relaxed));
        let over = Arc::new(AtomicBool::new(false));
        let body = LimitedBody::new(Body::from(vec![0u8; 10]), 10, over.clone());
        assert_eq!(body.collect().await.unwrap().to_bytes().len(), 10);
        assert!(!over.load(Ordering::Relaxed));
    }

    #[test]
    fn edge_pages_match_cloudflare() {
        let response = body_too_large();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let response = headers_too_large();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers()["connection"], "close");
    }
}
