//! Keeps one host serving the worker: starts it, and starts a new one when
//! it crashes or is killed for exceeding its CPU limit. Requests wait while
//! a host starts.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};

use super::protocol::WorkerInit;
use super::{BindingMap, ExitReason, Host, StartError};
use crate::logging;
use crate::runtime::Runtime;

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
}

/// How the supervisor starts hosts.
#[derive(Debug, Clone)]
pub struct HostSpec {
    pub runtime: Runtime,
    pub init: WorkerInit,
    pub socket_dir: PathBuf,
    pub cpu_limit: Duration,
    pub bindings: Arc<BindingMap>,
}

impl Supervisor {
    /// Starts the first host in the background.
    pub fn spawn(spec: HostSpec) -> Arc<Self> {
        let (slot, _) = watch::channel(Slot::Starting);
        let supervisor = Arc::new(Self {
            slot,
            stop: Notify::new(),
        });
        tokio::spawn(run(supervisor.clone(), spec));
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

    /// Whether `shutdown` was called.
    pub fn is_stopped(&self) -> bool {
        matches!(*self.slot.borrow(), Slot::Stopped)
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

async fn run(supervisor: Arc<Supervisor>, spec: HostSpec) {
    let mut failures = 0u32;
    loop {
        if matches!(*supervisor.slot.borrow(), Slot::Stopped) {
            return;
        }
        supervisor.slot.send_replace(Slot::Starting);
        let started = tokio::select! {
            started = Host::start(&spec.runtime, spec.init.clone(), &spec.socket_dir, spec.cpu_limit, spec.bindings.clone()) => started,
            _ = supervisor.stop.notified() => return,
        };
        match started {
            Ok(host) => {
                failures = 0;
                tracing::debug!("worker host ready in {} ms", host.startup_ms);
                if !publish(&supervisor, Slot::Ready(host.clone())) {
                    host.stop(ExitReason::Stopped);
                    return;
                }
                let reason = tokio::select! {
                    reason = host.exited() => reason,
                    _ = supervisor.stop.notified() => return,
                };
                match reason {
                    ExitReason::Stopped => return,
                    ExitReason::CpuLimit => {
                        logging::warn("restarting the worker after it exceeded its CPU time limit")
                    }
                    ExitReason::Crashed(why) => {
                        logging::warn(&format!("the worker host stopped ({why}); restarting it"))
                    }
                }
            }
            Err(StartError::Load(traceback)) => {
                logging::error(&format!("the worker failed to load:\n{traceback}"));
                if !publish(&supervisor, Slot::Failed(traceback.into())) {
                    return;
                }
                // Nothing changes until the code does; wait to be stopped.
                supervisor.stop.notified().await;
                return;
            }
            Err(StartError::Host(error)) => {
                failures += 1;
                let message = format!("{error:#}");
                logging::error(&format!("cannot start the worker host: {message}"));
                if !publish(&supervisor, Slot::Failed(message.into())) {
                    return;
                }
                let backoff = Duration::from_millis(500 * u64::from(failures.min(10)));
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = supervisor.stop.notified() => return,
                }
            }
        }
    }
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
