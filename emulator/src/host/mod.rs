//! The isolate host: one Node process running Pyodide and the worker,
//! connected to pyflare over a Unix socket speaking `protocol` in `transport`
//! frames.
//!
//! A `Host` multiplexes many events over the one connection, as an isolate
//! interleaves them at `await` points. Request and response bodies, and the
//! bodies of binding calls both ways, stream as chunk frames under a credit
//! window (`protocol::BODY_WINDOW_BYTES`) in each direction, so a large body
//! is never held whole in memory.
//!
//! By job: this file starts a host (`Host::start`, the process under
//! `sandbox`'s flags) and delivers events to it; `wire` writes and reads
//! the frames and routes each message; `bodies` streams bodies; `calls`
//! runs the worker's binding calls; `watchdog` enforces the CPU limit;
//! `process` forwards the host's output; `events` types each event kind and
//! its outcome; `supervisor` keeps the current host serving.

#[cfg(test)]
mod binding_event_tests;
mod blocking;
mod bodies;
#[cfg(test)]
mod call_body_tests;
mod calls;
pub mod events;
mod process;
pub mod protocol;
pub mod sandbox;
pub mod supervisor;
pub mod transport;
mod watchdog;
mod wire;

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
pub use bodies::ResponseBody;
use bodies::{CancelGuard, pump_request_body};
use calls::run_call;
pub use events::{
    BindingEvent, BindingOutcome, FetchOutcome, FetchRequest, Reply, ScheduledEvent,
    ScheduledOutcome, Undelivered, WorkerEvent,
};
use process::forward_output;
use protocol::{BODY_WINDOW_BYTES, FromHost, PROTOCOL_VERSION, ToHost, WorkerInit};
use pyflare_bindings::{Binding, BodyStream, WireError};
use transport::{CHUNK_BYTES, Frame};
use watchdog::watchdog;
use wire::{FrameReader, read_loop, wait_ready, write_frames};

/// How long a host may take to load Pyodide and the worker.
const LOAD_TIMEOUT: Duration = Duration::from_secs(120);

/// V8's young-generation size for a worker host. By default it grows to
/// 3 x 16 MB; with the old-generation growth the host sets once loaded (see
/// `serve` in main.mjs), a host under load measured ~175 MB RSS with 4 MB
/// semi-spaces, ~180 MB with 8 MB and ~194 MB with 16 MB, for 3,370, 3,600
/// and 3,780 requests/s: 8 MB keeps a margin under 200 MB.
///
/// 16 MB was measured again against 8 with binding calls (two hosts loaded
/// at once, 6-8 trials in each order): the host's CPU per request fell
/// ~3 % for KV put+get and ~4.5 % for D1 select (requests waiting on a
/// call keep objects alive across scavenges), but rose ~3 % for hello
/// world, and the RSS under load rose 5-9 MB. No target changes side
/// either way: 8 stays.
///
/// That growth (30 %) on the ~25 MB a restored worker holds made V8 collect
/// the old generation every ~200 ms under load, ~12-15 us of the host's
/// main thread per request (perf, KV put+get). Its first limit at 48 MB
/// keeps the RSS (190-192 MB under bench/run.sh's hello load, against
/// 190-197) and cut the host's CPU per hello request from ~210 to ~180 us:
/// 6,200-6,700 requests/s against 5,500-5,900.
const HOST_HEAP_FLAGS: [&str; 2] = ["--max-semi-space-size=8", "--initial-old-space-size=48"];

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
    /// With a 101: the WebSocket the worker answered with, whose client
    /// pyflare's front connects.
    pub websocket: Option<HostSocket>,
}

/// What the worker does with a WebSocket it answered a request with.
#[derive(Debug, PartialEq)]
pub enum SocketEvent {
    Text(String),
    Binary(Bytes),
    /// The worker closed it (no code: 1005, none given).
    Close {
        code: Option<u16>,
        reason: String,
    },
}

/// The worker's side of a WebSocket it answered a fetch with: what it
/// sends arrives on `events` (which ends when the host stops), and what the
/// client sends goes to it with `send_*` and `closed`.
pub struct HostSocket {
    id: u32,
    pub events: mpsc::UnboundedReceiver<SocketEvent>,
    shared: Arc<Shared>,
}

impl HostSocket {
    /// A text message from the client.
    pub fn send_text(&self, text: String) {
        self.shared.send(&ToHost::WsMessage {
            stream: self.id,
            text: Some(text),
            binary: None,
        });
    }

    /// A binary message from the client.
    pub fn send_binary(&self, bytes: &[u8]) {
        use base64::Engine as _;
        self.shared.send(&ToHost::WsMessage {
            stream: self.id,
            text: None,
            binary: Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
        });
    }

    /// The client closed the socket, or its connection broke off.
    pub fn closed(&self, code: u16, reason: String, was_clean: bool) {
        self.shared.send(&ToHost::WsClose {
            stream: self.id,
            code,
            reason,
            was_clean,
        });
    }
}

impl std::fmt::Debug for HostSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostSocket").field("id", &self.id).finish()
    }
}

impl Drop for HostSocket {
    fn drop(&mut self) {
        lock(&self.shared.sockets).remove(&self.id);
    }
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
    /// WebSockets the worker answered with, by the id of their fetch.
    sockets: Mutex<HashMap<u32, mpsc::UnboundedSender<SocketEvent>>>,
    ping: Mutex<PingState>,
    exit: watch::Sender<Option<ExitReason>>,
    /// Replaced once, when a standby host is activated for a reload whose
    /// bindings were opened after it was prepared.
    bindings: std::sync::RwLock<Arc<BindingMap>>,
    /// Set when the host has written its snapshots (see `Host::snapshot_done`).
    snapshot_done: watch::Sender<Option<protocol::Imported>>,
}

impl Shared {
    fn bindings(&self) -> Arc<BindingMap> {
        self.bindings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

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
    /// The live bindings this host's worker calls.
    pub fn bindings(&self) -> Arc<BindingMap> {
        self.shared.bindings()
    }

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
        // The host's standard input is its second connection to pyflare,
        // for calls that block the isolate (blocking.rs).
        let (blocking_lane, host_end) = std::os::unix::net::UnixStream::pair()
            .context("cannot make a socket pair for the host")
            .map_err(StartError::Host)?;
        let mut child = Command::new(&runtime.node)
            .arg("--no-warnings")
            .args(HOST_HEAP_FLAGS)
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
            .stdin(Stdio::from(std::os::fd::OwnedFd::from(host_end)))
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
            sockets: Mutex::default(),
            ping: Mutex::default(),
            exit: exit_tx,
            bindings: std::sync::RwLock::new(bindings),
            snapshot_done: watch::channel(None).0,
        });
        let (lane_shared, runtime_handle) =
            (Arc::downgrade(&shared), tokio::runtime::Handle::current());
        std::thread::Builder::new()
            .name("pyflare-blocking-calls".into())
            .spawn(move || blocking::serve(blocking_lane, lane_shared, runtime_handle))
            .context("cannot start the thread for blocking calls")
            .map_err(StartError::Host)?;
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

    /// Resolves once a host started to take snapshots has written them,
    /// with what the worker imported from `python_modules/`.
    pub async fn snapshot_done(&self) -> protocol::Imported {
        let mut rx = self.shared.snapshot_done.subscribe();
        match rx.wait_for(Option::is_some).await {
            Ok(done) => done.clone().unwrap_or_default(),
            Err(_) => protocol::Imported::default(),
        }
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
    /// Imports the worker's current code and starts serving, calling
    /// `bindings`: those of the reload, opened after this host was prepared
    /// (the same names and kinds, but a namespace, a database or the assets
    /// may have changed).
    pub async fn activate(
        self,
        snapshot_path: Option<String>,
        bindings: Arc<BindingMap>,
    ) -> Result<Arc<Host>, StartError> {
        let launched = self.0;
        *launched
            .shared
            .bindings
            .write()
            .unwrap_or_else(|p| p.into_inner()) = bindings;
        launched.shared.send(&ToHost::Load { snapshot_path });
        launched.until_ready(false).await?.into_host()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.stop(ExitReason::Stopped);
    }
}
