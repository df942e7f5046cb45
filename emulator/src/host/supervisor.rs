//! Keeps one host serving the worker: starts it, starts a new one when it
//! crashes, is killed for exceeding its CPU or memory limit or gives up
//! after a fatal Pyodide error, and swaps in a new one when the code
//! changes (live reload).
//!
//! A reload starts the new host while the old one keeps serving; once the
//! new one is ready it takes all new requests, and the old one is stopped
//! when its in-flight requests have finished. Requests never fail because of
//! a swap. If the new code fails to load, its traceback is served until the
//! next change fixes it.
//!
//! Every event reaches the worker through [`Supervisor::dispatch`] (or a
//! [`Dispatcher`]), which sends it to the current host and, when a reload
//! stopped that host before it took the event, to the new one: no event of
//! any kind is lost to a swap.

use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc, watch};

use super::protocol::{Imported, WorkerInit};
use super::{BindingMap, ExitReason, Host, Standby, StartError, Undelivered, WorkerEvent};
use crate::logging;
use crate::runtime::Runtime;

/// How long after the first start the first standby host is prepared.
const STANDBY_DELAY: Duration = Duration::from_millis(500);

/// How long a reload waits for a standby host still being prepared (one
/// takes ~0.5 s) before it starts a host of its own.
const STANDBY_WAIT: Duration = Duration::from_secs(3);

/// How long an old host may finish its in-flight requests after a swap.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Hosts an event is offered to before it fails: each is tried only
/// after the previous one was swapped out, so more than two means reloads
/// in quick succession.
const DELIVERY_ATTEMPTS: u32 = 5;

/// How long an event waits for the host that replaces a stopped one.
const SWAP_WAIT: Duration = Duration::from_secs(5);

/// What requests see of the worker right now.
#[derive(Debug, Clone)]
pub enum Slot {
    Starting,
    Ready(Arc<Host>),
    /// The worker cannot run: its load traceback, or why the host failed.
    Failed(Arc<str>),
    Stopped,
}

/// Owner of the worker's host process.
#[derive(Debug)]
pub struct Supervisor {
    slot: watch::Sender<Slot>,
    stop: Notify,
    reloads: mpsc::UnboundedSender<HostSpec>,
    /// The host writing this start's snapshots, while it runs.
    maker: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// True while a snapshot maker runs.
    making: watch::Sender<bool>,
    /// Test hook: event kinds held back after picking their host (see
    /// `hold_for_test`).
    held_kinds: Vec<String>,
}

/// A handle that delivers events to whatever host serves the worker now,
/// through reloads and restarts (see [`Supervisor::dispatch`]). It does not
/// keep the supervisor alive: after shutdown, events are `ShuttingDown`.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    supervisor: Weak<Supervisor>,
}

impl Dispatcher {
    /// Delivers `event` and waits for its outcome.
    pub async fn dispatch<E: WorkerEvent>(&self, event: E) -> E::Outcome {
        match self.supervisor.upgrade() {
            Some(supervisor) => supervisor.dispatch(event).await,
            None => E::undelivered(Undelivered::ShuttingDown),
        }
    }
}

/// How the supervisor starts hosts.
#[derive(Debug, Clone)]
pub struct HostSpec {
    pub runtime: Runtime,
    pub init: WorkerInit,
    pub socket_dir: PathBuf,
    pub cpu_limit: Duration,
    pub bindings: Arc<BindingMap>,
    /// Keep a standby host ready for reloads (live reload is on).
    pub standby: bool,
}

impl Supervisor {
    /// Starts the first host in the background.
    pub fn spawn(spec: HostSpec) -> Arc<Self> {
        let (slot, _) = watch::channel(Slot::Starting);
        let (reloads, reload_rx) = mpsc::unbounded_channel();
        let supervisor = Arc::new(Self {
            slot,
            stop: Notify::new(),
            reloads,
            maker: std::sync::Mutex::new(None),
            making: watch::channel(false).0,
            held_kinds: held_kinds_for_test(),
        });
        tokio::spawn(run(supervisor.clone(), spec, reload_rx));
        supervisor
    }

    /// Waits until a host is ready or the worker has failed.
    pub async fn current(&self) -> Slot {
        let mut rx = self.slot.subscribe();
        let slot = rx
            .wait_for(|slot| !matches!(slot, Slot::Starting))
            .await
            .map(|slot| slot.clone());
        slot.unwrap_or(Slot::Stopped)
    }

    /// The slot as it is now, without waiting for a start to end.
    pub fn now(&self) -> Slot {
        self.slot.borrow().clone()
    }

    /// Resolves once `host` is no longer the one serving (swapped, failed).
    pub async fn replaced(&self, host: &Arc<Host>) {
        let mut rx = self.slot.subscribe();
        let _ = rx
            .wait_for(|slot| !matches!(slot, Slot::Ready(current) if Arc::ptr_eq(current, host)))
            .await;
    }

    /// A handle for delivering events from elsewhere (bindings).
    pub fn dispatcher(self: &Arc<Self>) -> Dispatcher {
        Dispatcher {
            supervisor: Arc::downgrade(self),
        }
    }

    /// Delivers `event` to the current host and waits for its outcome.
    ///
    /// An event that reaches a host a reload has just stopped comes back
    /// unsent and goes to the host that replaced it, so a request or a cron
    /// fired during a swap runs once, on the new code.
    pub async fn dispatch<E: WorkerEvent>(&self, mut event: E) -> E::Outcome {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let host = match self.current().await {
                Slot::Ready(host) => host,
                Slot::Failed(message) => return E::undelivered(Undelivered::LoadFailed(message)),
                Slot::Stopped | Slot::Starting => {
                    return E::undelivered(Undelivered::ShuttingDown);
                }
            };
            if attempts == 1 {
                self.hold_for_test::<E>(&host).await;
            }
            match host.deliver(event).await {
                Ok(outcome) => return outcome,
                Err(unsent) if attempts < DELIVERY_ATTEMPTS && !self.is_stopped() => {
                    event = unsent;
                    let _ = tokio::time::timeout(SWAP_WAIT, self.replaced(&host)).await;
                }
                Err(_) if self.is_stopped() => return E::undelivered(Undelivered::ShuttingDown),
                Err(_) => return E::undelivered(Undelivered::Replaced),
            }
        }
    }

    /// Test hook, in debug builds only: with `PYFLARE_TEST_HOLD_EVENTS`
    /// naming this event's kind, an event that has picked its host waits
    /// until a reload has replaced and stopped that host, so that tests can
    /// reproduce the race of an event with a swap deterministically.
    async fn hold_for_test<E: WorkerEvent>(&self, host: &Arc<Host>) {
        if !self.held_kinds.iter().any(|kind| kind == E::KIND) {
            return;
        }
        tracing::debug!("holding a {} event until a reload", E::KIND);
        let _ = tokio::time::timeout(Duration::from_secs(60), self.replaced(host)).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), host.exited()).await;
    }

    /// Starts a host for `spec` and swaps it in when ready.
    pub fn reload(&self, spec: HostSpec) {
        let _ = self.reloads.send(spec);
    }

    /// Whether `shutdown` was called.
    pub fn is_stopped(&self) -> bool {
        matches!(*self.slot.borrow(), Slot::Stopped)
    }

    /// Gives a host that is writing memory snapshots up to `limit` to
    /// finish, so that a short run still leaves a snapshot for the next.
    pub async fn finish_snapshots(&self, limit: Duration) {
        if *self.making.borrow() {
            logging::info("finishing the memory snapshot");
            let _ = tokio::time::timeout(limit, self.snapshots_made()).await;
        }
    }

    /// Resolves when no snapshot maker runs.
    async fn snapshots_made(&self) {
        let mut rx = self.making.subscribe();
        let _ = rx.wait_for(|making| !*making).await;
    }

    /// Stops the host and the supervisor.
    pub fn shutdown(&self) {
        self.stop.notify_one();
        let previous = self.slot.send_replace(Slot::Stopped);
        if let Slot::Ready(host) = previous {
            host.stop(ExitReason::Stopped);
        }
    }
}

/// The event kinds `PYFLARE_TEST_HOLD_EVENTS` names (debug builds only).
fn held_kinds_for_test() -> Vec<String> {
    if !cfg!(debug_assertions) {
        return Vec::new();
    }
    std::env::var("PYFLARE_TEST_HOLD_EVENTS")
        .unwrap_or_default()
        .split(',')
        .filter(|kind| !kind.is_empty())
        .map(str::to_owned)
        .collect()
}

/// What ended a wait.
enum Wake {
    Stop,
    Reload(Box<HostSpec>),
    Exited(ExitReason),
    Timer,
}

/// A prepared standby host and the spec it was prepared for.
type StandbySlot = Arc<tokio::sync::Mutex<Option<(String, Standby)>>>;

/// Two specs with the same key differ at most in the worker's own code, so
/// a standby prepared for one serves the other.
fn standby_key(spec: &HostSpec) -> String {
    let mut init = spec.init.clone();
    init.snapshot_path = None;
    serde_json::to_string(&init).unwrap_or_default()
}

/// Prepares a standby host for the next reload, in the background, after
/// `delay` (so it does not compete with the first requests).
fn prepare_standby(
    slot: &StandbySlot,
    spec: &HostSpec,
    delay: Duration,
    mut making: watch::Receiver<bool>,
) {
    let (slot, spec) = (slot.clone(), spec.clone());
    tokio::spawn(async move {
        // Not while the snapshot maker still competes for the CPU.
        let _ = making.wait_for(|busy| !*busy).await;
        tokio::time::sleep(delay).await;
        let key = standby_key(&spec);
        // Held while the host prepares: a reload meanwhile waits for it
        // (see `start_host`) rather than loading a second host beside it.
        let mut slot = slot.lock().await;
        if slot.as_ref().is_some_and(|(k, _)| *k == key) {
            return;
        }
        let prepared = Host::start_standby(
            &spec.runtime,
            spec.init.clone(),
            &spec.socket_dir,
            spec.cpu_limit,
            spec.bindings.clone(),
        )
        .await;
        match prepared {
            Ok(standby) => *slot = Some((key, standby)),
            Err(StartError::Load(e)) => tracing::debug!("no standby host: {e}"),
            Err(StartError::Host(e)) => tracing::debug!("no standby host: {e:#}"),
        }
    });
}

/// Whether the snapshot at `path` was refused for good (a `.nosnap` note).
fn refused(path: &str) -> bool {
    std::path::Path::new(&format!("{path}.nosnap")).exists()
}

/// Whether the snapshot at `path` is neither on disk nor refused (a maker
/// ran and left neither).
fn untaken(path: &str) -> bool {
    !std::path::Path::new(path).exists() && !refused(path)
}

/// Runs a host that only makes the snapshots `init` names (it serves
/// nothing), keeps those still valid, and returns what the worker imported
/// from `python_modules/`.
async fn run_maker(spec: &HostSpec, mut init: WorkerInit) -> Imported {
    init.take_snapshots = true;
    let started = Host::start(
        &spec.runtime,
        init.clone(),
        &spec.socket_dir,
        spec.cpu_limit,
        spec.bindings.clone(),
    )
    .await;
    match started {
        Ok(maker) => {
            let imported = tokio::time::timeout(Duration::from_secs(120), maker.snapshot_done())
                .await
                .unwrap_or_default();
            maker.stop(ExitReason::Stopped);
            let _ = tokio::task::spawn_blocking(move || crate::snapshot::keep_made(&init)).await;
            imported
        }
        Err(StartError::Load(e)) => {
            tracing::debug!("no snapshot: {e}");
            Imported::default()
        }
        Err(StartError::Host(e)) => {
            tracing::debug!("no snapshot: {e:#}");
            Imported::default()
        }
    }
}

/// Writes the snapshots a start could not restore, from a separate host
/// that serves nothing: Pyodide runs slower while it can take snapshots,
/// so the serving host never does. The next start restores them.
///
/// Two passes at most: the first makes the dedicated snapshot (and the
/// baseline, if missing) and learns which packages the worker imports; the
/// second makes the packages snapshot with them, when it is missing or
/// holds other modules. A reload restores that one, so only the worker's
/// own modules are imported again. A worker whose imports load native
/// extension modules gets its dedicated snapshot from the second pass too:
/// that maker loads them before Python starts, where a restore loads them
/// again at the same addresses.
fn make_snapshots(supervisor: &Supervisor, spec: &HostSpec) {
    let Some(path) = &spec.init.snapshot_path else {
        return;
    };
    let packages_path = spec
        .init
        .packages_snapshot_path
        .clone()
        .filter(|p| !refused(p));
    let dedicated_wanted = !refused(path);
    let packages_missing = packages_path
        .as_ref()
        .is_some_and(|p| !std::path::Path::new(p).exists());
    if !dedicated_wanted && !packages_missing {
        return;
    }
    let path = path.clone();
    let spec = spec.clone();
    supervisor.making.send_replace(true);
    let making = supervisor.making.clone();
    let mut slot = supervisor.slot.subscribe();
    let handle = tokio::spawn(async move {
        // Cleared when this task ends, also when it is aborted.
        struct Done(watch::Sender<bool>);
        impl Drop for Done {
            fn drop(&mut self) {
                self.0.send_replace(false);
            }
        }
        let _done = Done(making);
        // A sound snapshot needs no maker; a damaged one is remade. Its
        // checksum is read once the start that restores it is over, not
        // beside it (30 MB or more hashed on the CPU that start needs).
        if dedicated_wanted && std::path::Path::new(&path).exists() {
            let started = slot.wait_for(|slot| !matches!(slot, Slot::Starting));
            let _ = tokio::time::timeout(Duration::from_secs(30), started).await;
        }
        let sound = dedicated_wanted
            && tokio::task::spawn_blocking({
                let path = path.clone();
                move || crate::snapshot::is_sound(std::path::Path::new(&path))
            })
            .await
            .unwrap_or(false);
        if sound && !packages_missing {
            return;
        }
        let mut first = spec.init.clone();
        if sound || !dedicated_wanted {
            // Only to learn the packages the worker imports.
            first.snapshot_path = None;
        }
        let imported = run_maker(&spec, first).await;
        // The first pass could not take a dedicated snapshot holding
        // native extension modules it loaded after Python started.
        let dedicated_missing = dedicated_wanted && !imported.dylibs.is_empty() && untaken(&path);
        let packages_stale = packages_path.as_ref().is_some_and(|p| {
            !imported.packages.is_empty()
                && crate::snapshot::packages_made(std::path::Path::new(p)).as_ref()
                    != Some(&imported.packages)
        });
        if !dedicated_missing && !packages_stale {
            return;
        }
        let mut second = spec.init.clone();
        second.snapshot_path = dedicated_missing.then(|| path.clone());
        if packages_stale && let Some(packages_path) = &packages_path {
            // Remade with the modules the worker imports now.
            let _ = std::fs::remove_file(packages_path);
            second.packages = imported.packages;
        }
        second.dylibs = imported.dylibs;
        run_maker(&spec, second.clone()).await;
        let failed = dedicated_missing
            && untaken(&path)
            && tokio::task::spawn_blocking(move || crate::snapshot::still_keyed(&second))
                .await
                .unwrap_or(false);
        if failed {
            // Not retried on every start of this code: its log said why.
            let _ = std::fs::write(
                format!("{path}.nosnap"),
                "the snapshot maker that loads native extension modules first did not take it\n",
            );
        }
    });
    let previous = supervisor
        .maker
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .replace(handle);
    if let Some(previous) = previous {
        previous.abort();
    }
}

/// Starts a host for `spec`, from the standby when it fits, waiting a
/// little for one still being prepared.
async fn start_host(spec: &HostSpec, standby: &StandbySlot) -> Result<Arc<Host>, StartError> {
    let prepared = match tokio::time::timeout(STANDBY_WAIT, standby.lock()).await {
        Ok(mut slot) => slot.take(),
        Err(_) => None,
    };
    if let Some((key, prepared)) = prepared
        && key == standby_key(spec)
    {
        match prepared
            .activate(spec.init.snapshot_path.clone(), spec.bindings.clone())
            .await
        {
            Err(StartError::Host(e)) => {
                tracing::debug!("standby host failed ({e:#}); starting afresh")
            }
            done => return done,
        }
    }
    Host::start(
        &spec.runtime,
        spec.init.clone(),
        &spec.socket_dir,
        spec.cpu_limit,
        spec.bindings.clone(),
    )
    .await
}

async fn run(
    supervisor: Arc<Supervisor>,
    mut spec: HostSpec,
    mut reloads: mpsc::UnboundedReceiver<HostSpec>,
) {
    let mut failures = 0u32;
    // The host serving while a new one starts.
    let mut serving: Option<Arc<Host>> = None;
    let standby: StandbySlot = Arc::default();
    // With live reload on, a standby host waits for the next change.
    let editing = spec.standby;
    // A refresh swaps in a host restored from the snapshot; never a standby.

    loop {
        if supervisor.is_stopped() {
            return;
        }
        if serving.is_none() {
            publish(&supervisor, Slot::Starting);
            // Missing snapshots are made beside this start, in parallel.
            make_snapshots(&supervisor, &spec);
        }
        let started_at = Instant::now();
        let started = tokio::select! {
            started = start_host(&spec, &standby) => started,
            _ = supervisor.stop.notified() => return,
            Some(newer) = reloads.recv() => {
                // Newer code arrived while starting: start that instead.
                spec = latest(newer, &mut reloads);
                continue;
            }
        };
        let wake = match started {
            Ok(host) => {
                failures = 0;
                let is_swap = serving.is_some();
                if !publish(&supervisor, Slot::Ready(host.clone())) {
                    host.stop(ExitReason::Stopped);
                    return;
                }
                if let Some(old) = serving.take() {
                    tokio::spawn(drain(old));
                }
                if is_swap && host.origin != "restored" {
                    logging::info(&format!(
                        "reloaded the worker in {} ms",
                        started_at.elapsed().as_millis()
                    ));
                }
                if editing {
                    let delay = if is_swap {
                        Duration::ZERO
                    } else {
                        STANDBY_DELAY
                    };
                    prepare_standby(&standby, &spec, delay, supervisor.making.subscribe());
                }
                let wake = wait(&supervisor, &mut reloads, Some(&host), None).await;
                match &wake {
                    Wake::Reload(_) => serving = Some(host),
                    // A host past its memory limit or broken by a fatal
                    // error goes at once, its memory with it.
                    Wake::Exited(reason) => host.stop(reason.clone()),
                    Wake::Stop | Wake::Timer => {}
                }
                wake
            }
            Err(StartError::Load(traceback)) => {
                logging::error(&format!("the worker failed to load:\n{traceback}"));
                if let Some(old) = serving.take() {
                    old.stop(ExitReason::Stopped);
                }
                if !publish(&supervisor, Slot::Failed(traceback.into())) {
                    return;
                }
                if editing {
                    prepare_standby(
                        &standby,
                        &spec,
                        Duration::ZERO,
                        supervisor.making.subscribe(),
                    );
                }
                // Nothing changes until the code does.
                wait(&supervisor, &mut reloads, None, None).await
            }
            Err(StartError::Host(error)) => {
                failures += 1;
                let message = format!("{error:#}");
                logging::error(&format!("cannot start the worker host: {message}"));
                if serving.is_none() && !publish(&supervisor, Slot::Failed(message.into())) {
                    return;
                }
                let backoff = Duration::from_millis(500 * u64::from(failures.min(10)));
                wait(&supervisor, &mut reloads, None, Some(backoff)).await
            }
        };
        match wake {
            Wake::Stop => return,
            Wake::Reload(newer) => spec = latest(*newer, &mut reloads),
            Wake::Exited(ExitReason::Stopped) => return,
            Wake::Exited(ExitReason::CpuLimit) => {
                logging::warn("restarting the worker after it exceeded its CPU time limit")
            }
            Wake::Exited(ExitReason::MemoryLimit(_)) => {
                logging::warn("restarting the worker after it exceeded its memory limit")
            }
            Wake::Exited(ExitReason::Fatal(_)) => {
                logging::warn("restarting the worker after a fatal error in Pyodide")
            }
            Wake::Exited(ExitReason::Crashed(why)) => {
                logging::warn(&format!("the worker host stopped ({why}); restarting it"))
            }
            Wake::Timer => {}
        }
    }
}

async fn wait(
    supervisor: &Supervisor,
    reloads: &mut mpsc::UnboundedReceiver<HostSpec>,
    host: Option<&Arc<Host>>,
    timer: Option<Duration>,
) -> Wake {
    let exited = async {
        match host {
            Some(host) => host.exited().await,
            None => std::future::pending().await,
        }
    };

    let timer = async {
        match timer {
            Some(after) => tokio::time::sleep(after).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = supervisor.stop.notified() => Wake::Stop,
        Some(spec) = reloads.recv() => Wake::Reload(Box::new(spec)),
        reason = exited => Wake::Exited(reason),
        _ = timer => Wake::Timer,
    }
}

/// The newest of several queued reloads (a save often touches files twice).
fn latest(mut spec: HostSpec, reloads: &mut mpsc::UnboundedReceiver<HostSpec>) -> HostSpec {
    while let Ok(newer) = reloads.try_recv() {
        spec = newer;
    }
    spec
}

/// Stops a swapped-out host once its in-flight work is done.
async fn drain(host: Arc<Host>) {
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    while Instant::now() < deadline && host.is_alive() {
        if host.stop_if_idle() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    host.stop(ExitReason::Stopped);
}

/// Publishes `slot` unless the supervisor was stopped meanwhile.
fn publish(supervisor: &Supervisor, slot: Slot) -> bool {
    supervisor.slot.send_if_modified(|current| {
        if matches!(current, Slot::Stopped) {
            false
        } else {
            *current = slot;
            true
        }
    });
    !matches!(*supervisor.slot.borrow(), Slot::Stopped)
}
