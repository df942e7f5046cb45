//! The isolate host: one Node process running Pyodide and the worker,
//! connected to pyflare over a Unix socket speaking `protocol` in `transport`
//! frames.
//!
//! A `Host` multiplexes many events over the one connection, as an isolate
//! interleaves them at `await` points. Request and response bodies, and the
//! bodies of binding calls both ways, stream as chunk frames under a credit
//! window (`protocol::BODY_WINDOW_BYTES`) in each direction, so a large body
//! is never held whole in memory. A watchdog
//! pings the host; a host whose event loop does not answer within the
//! worker's CPU limit is running away and is killed.

#[cfg(test)]
mod call_body_tests;
pub mod events;
pub mod protocol;
pub mod sandbox;
pub mod supervisor;
pub mod transport;

use anyhow::{Context, anyhow};
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::UnixListener;
use tokio::process::{Child, Command};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};

use crate::logging;
use crate::runtime::Runtime;
pub use events::{
    FetchOutcome, FetchRequest, Reply, ScheduledEvent, ScheduledOutcome, Undelivered, WorkerEvent,
};
use protocol::{BODY_WINDOW_BYTES, FromHost, PROTOCOL_VERSION, ToHost, WorkerInit};
use pyflare_bindings::{Binding, BodyStream, WireError};
use transport::{CHUNK_BYTES, Frame};

/// How long a host may take to load Pyodide and the worker.
const LOAD_TIMEOUT: Duration = Duration::from_secs(120);

/// V8's young-generation size for a worker host. By default it grows to
/// 3 x 16 MB; with the old-generation growth the host sets once loaded (see
/// `serve` in main.mjs), a host under load measured ~175 MB RSS with 4 MB
/// semi-spaces, ~180 MB with 8 MB and ~194 MB with 16 MB, for 3,370, 3,600
/// and 3,780 requests/s: 8 MB keeps a margin under 200 MB.
const HOST_HEAP_FLAG: &str = "--max-semi-space-size=8";

/// The worker's bindings by name, as the host calls them.
pub type BindingMap = HashMap<String, Arc<dyn Binding>>;

/// Why a host stopped.
#[derive(Debug, Clone, PartialEq)]
pub enum ExitReason {
    /// An event ran longer than `limits.cpu_ms` without yielding.
    CpuLimit,
    /// The isolate's memory passed its limit; the host's message.
    MemoryLimit(String),
    /// Pyodide suffered a fatal error (`os._exit()`, a crash inside it)
    /// and can run no more Python; the host's message.
    Fatal(String),
    /// The process exited or the connection broke.
    Crashed(String),
    /// pyflare asked it to stop (shutdown or reload).
    Stopped,
}

/// Why a host could not start.
#[derive(Debug)]
pub enum StartError {
    /// The worker's Python failed to load; the message is its traceback.
    Load(String),
    /// The host process itself failed.
    Host(anyhow::Error),
}

/// Status line and headers of the worker's response, and its body stream.
#[derive(Debug)]
pub struct HostResponse {
    pub status: u16,
    pub status_text: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<ResponseBody>,
    /// The body's length, when the worker's body was complete at once (a
    /// string or bytes, not a stream still being written).
    pub body_length: Option<u64>,
}

type BodyItem = Result<Bytes, BodyError>;

/// A response body (or binding call body) that broke off before its end.
pub use pyflare_bindings::BodyError;

enum Outgoing {
    Json(Bytes),
    /// A body chunk; `true` when it ends its stream.
    Chunk(u32, Bytes, bool),
}

#[derive(Default)]
struct PingState {
    next_seq: u64,
    outstanding: Option<(u64, Instant)>,
}

struct Shared {
    out: mpsc::UnboundedSender<Outgoing>,
    next_id: AtomicU32,
    pending: Mutex<HashMap<u32, oneshot::Sender<Reply>>>,
    /// Request bodies being sent: credit granted by the host.
    credit: Mutex<HashMap<u32, Arc<Semaphore>>>,
    /// Reply bodies of binding calls being sent: credit granted by the host.
    /// Apart from `credit`: a call's own body may end (or be dropped) while
    /// its reply body is still being sent.
    reply_credit: Mutex<HashMap<u32, Arc<Semaphore>>>,
    /// Bodies being received (responses, binding call bodies).
    bodies: Mutex<HashMap<u32, mpsc::UnboundedSender<BodyItem>>>,
    ping: Mutex<PingState>,
    exit: watch::Sender<Option<ExitReason>>,
    bindings: Arc<BindingMap>,
    /// Set when the host has written its snapshots (see `Host::snapshot_done`).
    snapshot_done: watch::Sender<bool>,
}

impl Shared {
    fn send(&self, message: &ToHost) {
        let json = serde_json::to_vec(message).expect("protocol messages serialize");
        let _ = self.out.send(Outgoing::Json(Bytes::from(json)));
    }

    fn set_exit(&self, reason: ExitReason) {
        self.exit.send_if_modified(|current| {
            if current.is_none() {
                *current = Some(reason);
                true
            } else {
                false
            }
        });
    }

    /// Records a pending event, unless the host has stopped. Checked under
    /// the `pending` lock, which `read_loop` and `stop_if_idle` also take
    /// after setting the exit reason, so no entry is left unanswered.
    fn register(&self, id: u32) -> Option<oneshot::Receiver<Reply>> {
        let mut pending = lock(&self.pending);
        if self.exit_reason().is_some() {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        pending.insert(id, tx);
        Some(rx)
    }

    fn exit_reason(&self) -> Option<ExitReason> {
        self.exit.borrow().clone()
    }

    fn finish_request_body(&self, id: u32) {
        if let Some(sem) = lock(&self.credit).remove(&id) {
            sem.close();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves consistent data (plain
    // map operations), so a poisoned lock is still usable.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running isolate host.
pub struct Host {
    shared: Arc<Shared>,
    child: Mutex<Option<Child>>,
    /// Milliseconds the host took to load Pyodide and the worker.
    pub startup_ms: u64,
    /// How it loaded: `restored` (snapshot), `baseline`, `fresh` or `standby`.
    pub origin: String,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("startup_ms", &self.startup_ms)
            .finish()
    }
}

static SOCKET_COUNTER: AtomicU32 = AtomicU32::new(0);

impl Host {
    /// Starts a host, sends it the worker and waits until it is ready.
    pub async fn start(
        runtime: &Runtime,
        init: WorkerInit,
        socket_dir: &Path,
        cpu_limit: Duration,
        bindings: Arc<BindingMap>,
    ) -> Result<Arc<Self>, StartError> {
        let launched = Self::launch(runtime, init, socket_dir, cpu_limit, bindings, false).await?;
        launched.until_ready(false).await?.into_host()
    }

    /// Starts a host that prepares everything but the worker's own code and
    /// waits for [`Standby::activate`].
    pub async fn start_standby(
        runtime: &Runtime,
        init: WorkerInit,
        socket_dir: &Path,
        cpu_limit: Duration,
        bindings: Arc<BindingMap>,
    ) -> Result<Standby, StartError> {
        let launched = Self::launch(runtime, init, socket_dir, cpu_limit, bindings, true).await?;
        Ok(Standby(launched.until_ready(true).await?))
    }

    async fn launch(
        runtime: &Runtime,
        init: WorkerInit,
        socket_dir: &Path,
        cpu_limit: Duration,
        bindings: Arc<BindingMap>,
        standby: bool,
    ) -> Result<Launched, StartError> {
        let n = SOCKET_COUNTER.fetch_add(1, Ordering::Relaxed);
        let socket_path: PathBuf = socket_dir.join(format!("host-{n}.sock"));
        let _ = std::fs::remove_file(&socket_path);
        let listener = UnixListener::bind(&socket_path)
            .with_context(|| format!("cannot listen on {}", socket_path.display()))
            .map_err(StartError::Host)?;

        // Snapshots are written by the host, which may create no folder
        // outside the one it is allowed to write.
        let _ = std::fs::create_dir_all(&runtime.snapshot_dir);
        let mut child = Command::new(&runtime.node)
            .arg("--no-warnings")
            .arg(HOST_HEAP_FLAG)
            .args(sandbox::node_flags(runtime, &init))
            .arg(&runtime.host_main)
            .arg(&socket_path)
            // One malloc arena: the host runs JavaScript on one thread, and
            // each extra arena keeps what V8's helper threads once freed.
            // Blocks from 16 KiB up (V8's compiler zones among them) are
            // mapped and unmapped, not left to fragment the heap: ~20 MB
            // less RSS under load.
            .env_clear()
            .envs(sandbox::inherited_env())
            .env("MALLOC_ARENA_MAX", "1")
            .env("MALLOC_MMAP_THRESHOLD_", "16384")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", runtime.node.display()))
            .map_err(StartError::Host)?;
        forward_output(&mut child);

        let stream = tokio::select! {
            accepted = listener.accept() => accepted.map(|(s, _)| s).context("host did not connect").map_err(StartError::Host)?,
            status = child.wait() => {
                return Err(StartError::Host(anyhow!("the host process exited before connecting ({})", status.map(|s| s.to_string()).unwrap_or_default())));
            }
            _ = tokio::time::sleep(Duration::from_secs(30)) => {
                return Err(StartError::Host(anyhow!("the host process did not connect within 30 s")));
            }
        };
        drop(listener);
        let _ = std::fs::remove_file(&socket_path);

        let (read, write) = stream.into_split();
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        tokio::spawn(write_frames(write, out_rx));
        let (exit_tx, _) = watch::channel(None);
        let shared = Arc::new(Shared {
            out: out_tx,
            next_id: AtomicU32::new(1),
            pending: Mutex::default(),
            credit: Mutex::default(),
            reply_credit: Mutex::default(),
            bodies: Mutex::default(),
            ping: Mutex::default(),
            exit: exit_tx,
            bindings,
            snapshot_done: watch::channel(false).0,
        });
        shared.send(&ToHost::Hello {
            version: PROTOCOL_VERSION,
            worker: Box::new(init),
            standby,
        });
        Ok(Launched {
            child,
            shared,
            reader: FrameReader::new(read),
            cpu_limit,
            startup_ms: 0,
            origin: String::new(),
        })
    }

    /// Resolves when the host has stopped, with the reason.
    pub async fn exited(&self) -> ExitReason {
        let mut rx = self.shared.exit.subscribe();
        loop {
            if let Some(reason) = rx.borrow_and_update().clone() {
                return reason;
            }
            if rx.changed().await.is_err() {
                return ExitReason::Crashed("host state dropped".into());
            }
        }
    }

    /// Resolves once a host started to take snapshots has written them.
    pub async fn snapshot_done(&self) {
        let mut rx = self.shared.snapshot_done.subscribe();
        let _ = rx.wait_for(|done| *done).await;
    }

    /// Whether the host is still serving.
    pub fn is_alive(&self) -> bool {
        self.shared.exit_reason().is_none()
    }

    /// Requests and events not finished yet (including response bodies).
    pub fn in_flight(&self) -> usize {
        lock(&self.shared.pending).len() + lock(&self.shared.bodies).len()
    }

    /// Stops the host process.
    pub fn stop(&self, reason: ExitReason) {
        // A host past a limit or broken by a fatal error is of no more use.
        let runaway = !matches!(reason, ExitReason::Stopped | ExitReason::Crashed(_));
        self.shared.set_exit(reason);
        self.shared.send(&ToHost::Shutdown);
        let Some(mut child) = lock(&self.child).take() else {
            return;
        };
        // A runaway host cannot read `shutdown`: kill it now. Others get a
        // moment to exit by themselves, then are killed all the same.
        if runaway || tokio::runtime::Handle::try_current().is_err() {
            let _ = child.start_kill();
            return;
        }
        tokio::spawn(async move {
            if tokio::time::timeout(Duration::from_millis(300), child.wait())
                .await
                .is_err()
            {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
        });
    }

    /// Delivers an event and waits for its outcome (for a fetch, the
    /// response head). Hands the event back, unsent, when this host has
    /// already stopped (a reload swapped it out): the caller sends it to the
    /// new one (see [`supervisor::Supervisor::dispatch`]).
    pub async fn deliver<E: WorkerEvent>(self: &Arc<Self>, event: E) -> Result<E::Outcome, E> {
        let shared = &self.shared;
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let Some(rx) = shared.register(id) else {
            return Err(event);
        };
        let mut guard = CancelGuard {
            shared: shared.clone(),
            id,
            armed: true,
        };
        let (event, body) = event.into_wire();
        shared.send(&ToHost::Event { id, event });
        if let Some(body) = body {
            let credit = Arc::new(Semaphore::new(BODY_WINDOW_BYTES));
            lock(&shared.credit).insert(id, credit.clone());
            tokio::spawn(pump_request_body(shared.clone(), id, body, credit));
        }
        let reply = match rx.await {
            Ok(reply) => reply,
            Err(_) => Reply::HostGone(
                shared
                    .exit_reason()
                    .unwrap_or_else(|| ExitReason::Crashed("connection lost".into())),
            ),
        };
        guard.armed = false;
        Ok(E::outcome(reply))
    }

    /// Stops the host if nothing is in flight; atomic with [`Shared::register`],
    /// so a request is either refused here or counted.
    pub fn stop_if_idle(&self) -> bool {
        {
            let pending = lock(&self.shared.pending);
            if !pending.is_empty() || !lock(&self.shared.bodies).is_empty() {
                return false;
            }
            self.shared.set_exit(ExitReason::Stopped);
        }
        self.stop(ExitReason::Stopped);
        true
    }
}

/// A host process connected and told what to load.
struct Launched {
    child: Child,
    shared: Arc<Shared>,
    reader: FrameReader,
    cpu_limit: Duration,
    startup_ms: u64,
    origin: String,
}

impl Launched {
    /// Waits for `ready` (or, for a standby, `standby_ready`).
    async fn until_ready(mut self, standby: bool) -> Result<Self, StartError> {
        let (startup_ms, origin) = tokio::select! {
            ready = wait_ready(&mut self.reader, &self.shared, standby) => ready?,
            status = self.child.wait() => {
                return Err(StartError::Host(anyhow!("the host process exited while loading the worker ({})", status.map(|s| s.to_string()).unwrap_or_default())));
            }
            _ = tokio::time::sleep(LOAD_TIMEOUT) => {
                return Err(StartError::Host(anyhow!("the worker did not load within {} s", LOAD_TIMEOUT.as_secs())));
            }
        };
        self.startup_ms = startup_ms;
        self.origin = origin;
        Ok(self)
    }

    fn into_host(self) -> Result<Arc<Host>, StartError> {
        let host = Arc::new(Host {
            shared: self.shared.clone(),
            child: Mutex::new(Some(self.child)),
            startup_ms: self.startup_ms,
            origin: self.origin,
        });
        tokio::spawn(read_loop(self.reader, self.shared));
        tokio::spawn(watchdog(Arc::downgrade(&host), self.cpu_limit));
        Ok(host)
    }
}

/// A host with Pyodide, the SDK and the bindings ready, waiting to import
/// the worker's code: a reload with it only has to run the new imports.
pub struct Standby(Launched);

impl std::fmt::Debug for Standby {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Standby")
    }
}

impl Standby {
    /// Imports the worker's current code and starts serving.
    pub async fn activate(self, snapshot_path: Option<String>) -> Result<Arc<Host>, StartError> {
        let launched = self.0;
        launched.shared.send(&ToHost::Load { snapshot_path });
        launched.until_ready(false).await?.into_host()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.stop(ExitReason::Stopped);
    }
}

/// Tells the host to drop a request whose client went away.
struct CancelGuard {
    shared: Arc<Shared>,
    id: u32,
    armed: bool,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if self.armed {
            lock(&self.shared.pending).remove(&self.id);
            self.shared.finish_request_body(self.id);
            self.shared.send(&ToHost::Cancel { stream: self.id });
        }
    }
}

async fn pump_request_body(
    shared: Arc<Shared>,
    id: u32,
    body: axum::body::Body,
    credit: Arc<Semaphore>,
) {
    let mut stream = body.into_data_stream();
    let mut error = None;
    'outer: while let Some(item) = stream.next().await {
        match item {
            Ok(bytes) => {
                let mut rest = bytes;
                while !rest.is_empty() {
                    let piece = rest.split_to(rest.len().min(CHUNK_BYTES));
                    // The window is far below u32::MAX, as is a chunk.
                    let Ok(permit) = credit.acquire_many(piece.len() as u32).await else {
                        error = Some("request body no longer read".to_owned());
                        break 'outer;
                    };
                    permit.forget();
                    let _ = shared.out.send(Outgoing::Chunk(id, piece, false));
                }
            }
            Err(e) => {
                error = Some(e.to_string());
                break;
            }
        }
    }
    shared.send(&ToHost::BodyEnd { stream: id, error });
}

fn forward_output(child: &mut Child) {
    if let Some(stdout) = child.stdout.take() {
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                logging::host_output(&line);
            }
        });
    }
    if let Some(stderr) = child.stderr.take() {
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                logging::host_output(&line);
            }
        });
    }
}

async fn write_frames(
    write: tokio::net::unix::OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
) {
    let mut writer = BufWriter::with_capacity(256 * 1024, write);
    let mut header = BytesMut::with_capacity(64);
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(item) = next.take() {
            header.clear();
            let result = match item {
                Outgoing::Json(json) => {
                    transport::encode_json(&json, &mut header);
                    writer.write_all(&header).await
                }
                Outgoing::Chunk(stream, data, last) => {
                    transport::encode_chunk_header(stream, data.len(), last, &mut header);
                    match writer.write_all(&header).await {
                        Ok(()) => writer.write_all(&data).await,
                        Err(e) => Err(e),
                    }
                }
            };
            if result.is_err() {
                return;
            }
            next = rx.try_recv().ok();
        }
        if writer.flush().await.is_err() {
            return;
        }
    }
}

struct FrameReader {
    read: tokio::net::unix::OwnedReadHalf,
    buf: BytesMut,
}

impl FrameReader {
    fn new(read: tokio::net::unix::OwnedReadHalf) -> Self {
        Self {
            read,
            buf: BytesMut::with_capacity(256 * 1024),
        }
    }

    async fn next(&mut self) -> anyhow::Result<Option<Frame>> {
        loop {
            if let Some(frame) = transport::decode(&mut self.buf)? {
                return Ok(Some(frame));
            }
            if self.buf.capacity() - self.buf.len() < 64 * 1024 {
                self.buf.reserve(256 * 1024);
            }
            if self.read.read_buf(&mut self.buf).await? == 0 {
                return Ok(None);
            }
        }
    }
}

async fn wait_ready(
    reader: &mut FrameReader,
    shared: &Arc<Shared>,
    standby: bool,
) -> Result<(u64, String), StartError> {
    loop {
        let frame = reader
            .next()
            .await
            .map_err(StartError::Host)?
            .ok_or_else(|| {
                StartError::Host(anyhow!("the host closed the connection while loading"))
            })?;
        let json = match frame {
            Frame::Json(json) => json,
            // Bodies of binding calls the worker makes while it loads.
            Frame::Chunk { stream, data, last } => {
                on_chunk(shared, stream, data, last);
                continue;
            }
        };
        match serde_json::from_slice::<FromHost>(&json) {
            Ok(FromHost::Ready {
                version,
                startup_ms,
                origin,
            }) => {
                if version != PROTOCOL_VERSION {
                    return Err(StartError::Host(anyhow!(
                        "protocol version mismatch: pyflare speaks {PROTOCOL_VERSION}, the host speaks {version}"
                    )));
                }
                let origin = origin.unwrap_or_default();
                tracing::debug!("host ready in {startup_ms} ms ({origin})");
                return Ok((startup_ms, origin));
            }
            Ok(FromHost::StandbyReady { startup_ms }) if standby => {
                return Ok((startup_ms, "standby".into()));
            }
            Ok(FromHost::LoadError { message }) => return Err(StartError::Load(message)),
            Ok(FromHost::Log { level, message }) => logging::worker(level, &message),
            // Binding calls made at import time are answered as usual.
            Ok(
                message @ (FromHost::Call { .. }
                | FromHost::BodyEnd { .. }
                | FromHost::Credit { .. }
                | FromHost::Cancel { .. }),
            ) => handle_message(shared, message),
            Ok(_) => {}
            Err(e) => return Err(StartError::Host(anyhow!("bad message from the host: {e}"))),
        }
    }
}

async fn read_loop(mut reader: FrameReader, shared: Arc<Shared>) {
    let reason = loop {
        match reader.next().await {
            Ok(Some(Frame::Chunk { stream, data, last })) => on_chunk(&shared, stream, data, last),
            Ok(Some(Frame::Json(json))) => match serde_json::from_slice::<FromHost>(&json) {
                // Nothing the host sends after this counts.
                Ok(FromHost::Abort { reason, message }) => break abort_reason(reason, message),
                Ok(message) => handle_message(&shared, message),
                Err(e) => tracing::warn!("ignoring a bad message from the host: {e}"),
            },
            Ok(None) => break ExitReason::Crashed("the host process exited".into()),
            Err(e) => break ExitReason::Crashed(format!("connection to the host failed: {e}")),
        }
    };
    let pending: Vec<_> = {
        let mut pending = lock(&shared.pending);
        shared.set_exit(reason);
        pending.drain().collect()
    };
    let reason = shared.exit_reason().unwrap_or(ExitReason::Stopped);
    for (_, tx) in pending {
        let _ = tx.send(Reply::HostGone(reason.clone()));
    }
    let bodies: Vec<_> = lock(&shared.bodies).drain().collect();
    for (_, tx) in bodies {
        let _ = tx.send(Err(BodyError("the worker host stopped".into())));
    }
    let mut credits: Vec<_> = lock(&shared.credit).drain().collect();
    credits.extend(lock(&shared.reply_credit).drain());
    for (_, sem) in credits {
        sem.close();
    }
}

fn abort_reason(reason: protocol::AbortReason, message: String) -> ExitReason {
    logging::error(&message);
    match reason {
        protocol::AbortReason::Fatal => ExitReason::Fatal(message),
        protocol::AbortReason::MemoryLimit => ExitReason::MemoryLimit(message),
    }
}

/// A piece of a response body or of a binding call's body; the last one
/// ends its stream as `body_end` does.
fn on_chunk(shared: &Arc<Shared>, stream: u32, data: Bytes, last: bool) {
    if let Some(tx) = lock(&shared.bodies).get(&stream) {
        let _ = tx.send(Ok(data));
    }
    if last {
        handle_message(
            shared,
            FromHost::BodyEnd {
                stream,
                error: None,
            },
        );
    }
}

fn handle_message(shared: &Arc<Shared>, message: FromHost) {
    match message {
        FromHost::Response {
            id,
            status,
            status_text,
            headers,
            has_body,
            body_length,
        } => {
            let Some(tx) = lock(&shared.pending).remove(&id) else {
                // The client went away; tell the host to stop the body.
                if has_body {
                    shared.send(&ToHost::Cancel { stream: id });
                }
                return;
            };
            let body = if has_body {
                let (body_tx, body_rx) = mpsc::unbounded_channel();
                lock(&shared.bodies).insert(id, body_tx);
                Some(ResponseBody {
                    id,
                    rx: body_rx,
                    shared: shared.clone(),
                    finished: false,
                })
            } else {
                shared.finish_request_body(id);
                None
            };
            let _ = tx.send(Reply::Response(HostResponse {
                status,
                status_text,
                headers,
                body,
                body_length,
            }));
        }
        FromHost::Call {
            id,
            binding,
            method,
            args,
            has_body,
        } => {
            // The call runs at once; its body streams in as the binding
            // reads it, each chunk taken granting the host credit.
            let body = has_body.then(|| {
                let (body_tx, body_rx) = mpsc::unbounded_channel();
                lock(&shared.bodies).insert(id, body_tx);
                BodyStream::from_stream(ResponseBody {
                    id,
                    rx: body_rx,
                    shared: shared.clone(),
                    finished: false,
                })
            });
            tokio::spawn(run_call(shared.clone(), id, binding, method, args, body));
        }
        FromHost::Cancel { stream } => {
            // The worker stopped reading a binding call's reply body.
            if let Some(sem) = lock(&shared.reply_credit).remove(&stream) {
                sem.close();
            }
        }
        FromHost::BodyEnd { stream, error } => {
            shared.finish_request_body(stream);
            if let Some(tx) = lock(&shared.bodies).remove(&stream)
                && let Some(error) = error
            {
                let _ = tx.send(Err(BodyError(error)));
            }
        }
        FromHost::Credit { stream, bytes } => {
            if let Some(sem) = lock(&shared.credit).get(&stream) {
                sem.add_permits(bytes);
            } else if let Some(sem) = lock(&shared.reply_credit).get(&stream) {
                sem.add_permits(bytes);
            }
        }
        FromHost::Pong { seq } => {
            let mut ping = lock(&shared.ping);
            if ping.outstanding.is_some_and(|(s, _)| s == seq) {
                ping.outstanding = None;
            }
        }
        FromHost::Log { level, message } => logging::worker(level, &message),
        FromHost::EventResult {
            id,
            outcome,
            message,
            result,
        } => {
            shared.finish_request_body(id);
            let tx = lock(&shared.pending).remove(&id);
            match (tx, message) {
                (Some(tx), message) => {
                    let _ = tx.send(Reply::Finished {
                        status: outcome,
                        message,
                        result,
                    });
                }
                // Its caller went away: the failure is only logged.
                (None, Some(message)) => logging::worker(protocol::LogLevel::Error, &message),
                (None, None) => {}
            }
        }
        FromHost::SnapshotDone => {
            shared.snapshot_done.send_replace(true);
        }
        FromHost::Ready { .. }
        | FromHost::LoadError { .. }
        | FromHost::StandbyReady { .. }
        | FromHost::Abort { .. } => {}
    }
}

/// Runs one binding call from the worker and sends the reply.
async fn run_call(
    shared: Arc<Shared>,
    id: u32,
    binding: String,
    method: String,
    args: serde_json::Value,
    body: Option<BodyStream>,
) {
    let result = match shared.bindings.get(&binding) {
        Some(target) => target.call(&method, args, body).await,
        None => Err(WireError::error(format!(
            "pyflare has no binding named {binding}"
        ))),
    };
    match result {
        Ok(reply) => {
            shared.send(&ToHost::CallReply {
                id,
                ok: Some(reply.value),
                error: None,
                has_body: reply.body.is_some(),
            });
            if let Some(body) = reply.body {
                send_call_body(&shared, id, body).await;
            }
        }
        Err(error) => shared.send(&ToHost::CallReply {
            id,
            ok: None,
            error: Some(error),
            has_body: false,
        }),
    }
}

/// Sends a binding call's reply body. A small body at hand leaves at once,
/// its last chunk ending the stream; any other body is sent as it is
/// produced, at most `BODY_WINDOW_BYTES` ahead of what the host has taken,
/// then ended with `body_end`.
async fn send_call_body(shared: &Arc<Shared>, id: u32, mut body: BodyStream) {
    if let Some(bytes) = body.as_whole()
        && bytes.len() <= BODY_WINDOW_BYTES
    {
        let mut bytes = bytes.clone();
        loop {
            let piece = bytes.split_to(bytes.len().min(CHUNK_BYTES));
            let last = bytes.is_empty();
            let _ = shared.out.send(Outgoing::Chunk(id, piece, last));
            if last {
                return;
            }
        }
    }
    let credit = Arc::new(Semaphore::new(BODY_WINDOW_BYTES));
    lock(&shared.reply_credit).insert(id, credit.clone());
    if shared.exit_reason().is_some() {
        // read_loop has already closed the others.
        return;
    }
    let mut error = None;
    'outer: while let Some(item) = body.next().await {
        match item {
            Ok(mut rest) => {
                while !rest.is_empty() {
                    let piece = rest.split_to(rest.len().min(CHUNK_BYTES));
                    // The window is far below u32::MAX, as is a chunk.
                    let Ok(permit) = credit.acquire_many(piece.len() as u32).await else {
                        // The worker cancelled the stream, or the host stopped.
                        return;
                    };
                    permit.forget();
                    let _ = shared.out.send(Outgoing::Chunk(id, piece, false));
                }
            }
            Err(e) => {
                error = Some(e.0);
                break 'outer;
            }
        }
    }
    lock(&shared.reply_credit).remove(&id);
    shared.send(&ToHost::BodyEnd { stream: id, error });
}

/// Kills the host when its event loop stays blocked past the CPU limit.
async fn watchdog(host: std::sync::Weak<Host>, cpu_limit: Duration) {
    let tick = (cpu_limit / 10).clamp(Duration::from_millis(10), Duration::from_millis(100));
    let mut interval = tokio::time::interval(tick);
    loop {
        interval.tick().await;
        let Some(host) = host.upgrade() else { return };
        if !host.is_alive() {
            return;
        }
        let mut ping = lock(&host.shared.ping);
        match ping.outstanding {
            Some((_, sent)) if sent.elapsed() > cpu_limit => {
                drop(ping);
                logging::error("Worker exceeded CPU time limit.");
                host.stop(ExitReason::CpuLimit);
                return;
            }
            Some(_) => {}
            None => {
                let seq = ping.next_seq;
                ping.next_seq += 1;
                ping.outstanding = Some((seq, Instant::now()));
                drop(ping);
                host.shared.send(&ToHost::Ping { seq });
            }
        }
    }
}

/// The worker's response body as it streams in from the host; every chunk
/// taken grants the host credit for another. The body of a binding call
/// arrives the same way.
pub struct ResponseBody {
    id: u32,
    rx: mpsc::UnboundedReceiver<BodyItem>,
    shared: Arc<Shared>,
    finished: bool,
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("id", &self.id)
            .finish()
    }
}

impl Stream for ResponseBody {
    type Item = BodyItem;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<BodyItem>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(bytes))) => {
                // The host sends nothing after a stream's last chunk, so
                // that one needs no credit.
                let ended = self.rx.is_closed() && self.rx.is_empty();
                if ended {
                    self.finished = true;
                } else {
                    self.shared.send(&ToHost::Credit {
                        stream: self.id,
                        bytes: bytes.len(),
                    });
                }
                Poll::Ready(Some(Ok(bytes)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.finished = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                self.finished = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        if !self.finished {
            lock(&self.shared.bodies).remove(&self.id);
            self.shared.finish_request_body(self.id);
            self.shared.send(&ToHost::Cancel { stream: self.id });
        }
    }
}
