//! The HTTP/1.1 listener: accepts connections and serves them with hyper,
//! with the connection limits of Cloudflare's edge
//! (<https://developers.cloudflare.com/fundamentals/reference/connection-limits/>):
//!
//! - an idle keep-alive connection is closed after 400 s, Cloudflare's
//!   "Connection Keep-Alive HTTP/1.1" limit (the TCP connection is closed);
//! - a request head must arrive in full within 30 s of its first byte, so a
//!   client that trickles its headers (slowloris) cannot hold a connection;
//! - request headers are limited by their total size, not their number
//!   (see [`super::limits`]).
//!
//! `PYFLARE_KEEP_ALIVE_TIMEOUT_MS` and `PYFLARE_HEADER_TIMEOUT_MS` change
//! the two timeouts (tests use short ones).

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use bytes::Bytes;
use http_body::Frame;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Sleep;

use super::AppState;
use super::limits::MAX_HEADER_BYTES;

/// Cloudflare's keep-alive limit for HTTP/1.1 clients.
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(400);
/// Time a request head may take from its first byte.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// hyper's own bound on a request head: past it hyper answers 431 and
/// closes. Above Cloudflare's 128 KB so that pyflare, not hyper, answers
/// requests between the two with Cloudflare's 400.
///
/// Not emulated: a head over this bound gets hyper's bare 431 rather than
/// Cloudflare's 400 page, and a request line over hyper's 64 KB its 414
/// (Cloudflare limits URLs to 16 KB).
const HEAD_HARD_LIMIT: usize = 2 * MAX_HEADER_BYTES;

/// How many header fields hyper parses. Cloudflare limits request headers
/// by their total size only; hyper reserves room for this many fields on
/// every request, and room for the 32,768 that fit in 128 KB cost ~15 % of
/// hello-world throughput (bench/run.sh), so the count has a bound far
/// above what clients send. Not emulated: a request with more fields than
/// this, within 128 KB, gets hyper's 431.
const MAX_HEADER_COUNT: usize = 1024;

/// Connection timeouts.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub keep_alive: Duration,
    pub header: Duration,
}

impl Timeouts {
    /// Cloudflare's, or those of the environment variables.
    pub fn from_env() -> Self {
        let ms = |name: &str, default: Duration| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .filter(|&ms| ms > 0)
                .map_or(default, Duration::from_millis)
        };
        Self {
            keep_alive: ms("PYFLARE_KEEP_ALIVE_TIMEOUT_MS", KEEP_ALIVE_TIMEOUT),
            header: ms("PYFLARE_HEADER_TIMEOUT_MS", HEADER_TIMEOUT),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then lets the
/// connections finish the requests they are serving.
pub async fn serve(
    listener: TcpListener,
    app: AppState,
    timeouts: Timeouts,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // hyper runs this timer whenever it waits for a request head: from
        // the end of the previous response, so it is the idle limit.
        .header_read_timeout(timeouts.keep_alive)
        .max_header_size(HEAD_HARD_LIMIT)
        .max_headers(MAX_HEADER_COUNT);
    let builder = Arc::new(builder);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: wait, go on.
                    tracing::debug!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Reap the connections that ended.
        while connections.try_join_next().is_some() {}
        let _ = stream.set_nodelay(true);
        connections.spawn(serve_connection(
            stream,
            peer,
            app.clone(),
            builder.clone(),
            timeouts.header,
            stop_rx.clone(),
        ));
    }
    drop(listener);
    let _ = stop_tx.send(true);
    while connections.join_next().await.is_some() {}
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: AppState,
    builder: Arc<hyper::server::conn::http1::Builder>,
    header_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let requests = Arc::new(Requests::default());
    let io = HeadTimed {
        stream,
        requests: requests.clone(),
        header_timeout,
        deadline: None,
    };
    let service = hyper::service::service_fn(move |mut request: Request<hyper::body::Incoming>| {
        // Counted now, before hyper reads on: the head is complete. The
        // request is in flight until both its bodies are done with.
        requests.start();
        let (request_mark, response_mark) = (requests.mark(), requests.mark());
        let app = app.clone();
        request.extensions_mut().insert(ConnectInfo(peer));
        request
            .extensions_mut()
            .insert(ConnectionUse(requests.clone()));
        let request = request.map(|body| {
            Body::new(Marked {
                body: Body::new(body),
                _mark: request_mark,
            })
        });
        async move {
            let response = super::handle_request(app, request).await;
            Ok::<_, std::convert::Infallible>(response.map(|body| Marked {
                body,
                _mark: response_mark,
            }))
        }
    });
    // With upgrades: a worker may answer with a WebSocket.
    let connection = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(e) = result {
                tracing::debug!("connection from {peer} ended: {e}");
            }
            return;
        }
        _ = stop.wait_for(|stopping| *stopping) => {}
    }
    // Shutting down: an idle connection closes now, a busy one after its
    // response.
    connection.as_mut().graceful_shutdown();
    let _ = connection.await;
}

/// The requests of one connection and their bodies not yet done with.
#[derive(Debug, Default)]
struct Requests {
    /// Requests begun on the connection.
    started: AtomicU64,
    /// Request and response bodies still in use.
    open: AtomicU64,
}

impl Requests {
    fn start(&self) {
        self.started.fetch_add(1, Ordering::SeqCst);
    }

    fn mark(self: &Arc<Self>) -> InFlight {
        self.open.fetch_add(1, Ordering::SeqCst);
        InFlight(self.clone())
    }

    /// Whether the connection is between requests, waiting for a head; and
    /// how many requests began, to tell one head from the next.
    fn idle(&self) -> (bool, u64) {
        let open = self.open.load(Ordering::SeqCst);
        (open == 0, self.started.load(Ordering::SeqCst))
    }
}

/// One body of a request in flight, until it is dropped (read or sent in
/// full, or abandoned with the connection).
pub(crate) struct InFlight(Arc<Requests>);

/// The connection a request came on, in the request's extensions: a
/// WebSocket upgraded from it holds it busy ([`ConnectionUse::hold`]), so
/// the wait for a next request head never times it out.
#[derive(Clone)]
pub(crate) struct ConnectionUse(Arc<Requests>);

impl ConnectionUse {
    pub(crate) fn hold(&self) -> InFlight {
        self.0.mark()
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A body that carries its [`InFlight`] mark.
struct Marked {
    body: Body,
    _mark: InFlight,
}

impl http_body::Body for Marked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The client's socket, failing a read once a request head has taken more
/// than `header_timeout` since its first byte (hyper then closes the
/// connection). Reads while a request is in flight (its body) are not
/// timed.
struct HeadTimed {
    stream: TcpStream,
    requests: Arc<Requests>,
    header_timeout: Duration,
    /// When the head being read must be complete, and which request it is.
    deadline: Option<(u64, Pin<Box<Sleep>>)>,
}

impl AsyncRead for HeadTimed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let (idle, started) = self.requests.idle();
        // A deadline belongs to one head: gone once that request began.
        if !idle || self.deadline.as_ref().is_some_and(|(n, _)| *n != started) {
            self.deadline = None;
        }
        if let Some((_, sleep)) = self.deadline.as_mut()
            && sleep.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the request head took too long",
            )));
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut self.stream).poll_read(cx, buf);
        if idle
            && self.deadline.is_none()
            && matches!(result, Poll::Ready(Ok(())))
            && buf.filled().len() > before
        {
            let timeout = self.header_timeout;
            self.deadline = Some((started, Box::pin(tokio::time::sleep(timeout))));
        }
        result
    }
}

impl AsyncWrite for HeadTimed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
