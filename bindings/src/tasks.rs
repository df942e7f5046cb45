//! Work a binding does on its own, outside any call from the worker (a
//! queue's delivery loop, a Durable Object's alarm timer), and the events
//! such work delivers to the worker.
//!
//! A binding returns its tasks from [`Binding::tasks`](crate::Binding::tasks).
//! `pyflare dev` starts them with a [`TaskContext`] once the binding is open
//! and stops them (the `stop` signal turns true; a task then returns) when
//! the binding is replaced by a reload and at shutdown. Tasks read time only
//! from the context's clock, so tests move it instead of sleeping, and
//! deliver events through its [`EventSink`], which always reaches the
//! worker's current isolate: an event a reload swaps out from under it is
//! retried on the new one.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::clock::Clock;

/// An event for the worker's handlers. Room for a queue batch, a Durable
/// Object alarm and the like: each gets a variant here and its kind in the
/// host protocol.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// The `scheduled` handler, as a cron trigger fires it.
    Scheduled {
        /// The cron expression (`controller.cron`).
        cron: String,
        /// Unix milliseconds (`controller.scheduledTime`).
        scheduled_time_ms: i64,
    },
    /// An event the binding itself defines (a queue batch, an alarm): the
    /// worker's `handler` runs with the arguments the binding's `shim.mjs`
    /// builds from `payload` in its `event(handler, payload, binding)`
    /// export, which returns `{args, finish}`; `finish()` reports, as JSON,
    /// what came of them (which messages were acked, say). A new kind of
    /// event needs nothing outside the binding's folder.
    Binding {
        /// The binding's name in `env`.
        binding: String,
        /// The handler of the worker's default export (`queue`, `alarm`).
        handler: String,
        /// What the shim builds the handler's arguments from.
        payload: serde_json::Value,
    },
}

/// How a delivered event ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivered {
    /// The handler finished; `result` is what the event reported (for a
    /// binding event, its shim's `finish()`).
    Ok {
        /// The event's report.
        result: serde_json::Value,
    },
    /// The handler failed (raised, hung, ran past a limit, lost its
    /// isolate).
    Failed {
        /// workerd's outcome (`exception`, `exceededCpu`, ...).
        outcome: String,
        /// The traceback or reason.
        message: String,
        /// The event's report all the same (a scheduled event's
        /// `{"no_retry": ...}`, a binding event's `finish()`).
        result: serde_json::Value,
    },
    /// No worker took it (pyflare is stopping).
    Undelivered(String),
}

/// Delivers events to the worker's current isolate.
#[async_trait::async_trait]
pub trait EventSink: Send + Sync + std::fmt::Debug {
    /// Runs `event` in the worker and waits for its end.
    async fn deliver(&self, event: Delivery) -> Delivered;
}

/// What a background task gets.
#[derive(Clone)]
pub struct TaskContext {
    /// pyflare's one clock.
    pub clock: Arc<dyn Clock>,
    /// Where the task's events go.
    pub events: Arc<dyn EventSink>,
    /// Turns true when the task must return.
    pub stop: tokio::sync::watch::Receiver<bool>,
}

impl std::fmt::Debug for TaskContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskContext")
            .field("events", &self.events)
            .finish()
    }
}

impl TaskContext {
    /// Waits `ms` milliseconds of real time, or until the task must stop;
    /// true when it must stop.
    pub async fn pause(&mut self, ms: u64) -> bool {
        if *self.stop.borrow() {
            return true;
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_millis(ms)) => *self.stop.borrow(),
            _ = self.stop.changed() => true,
        }
    }
}

/// One background task: a future that returns once `stop` turns true.
pub type Task = Pin<Box<dyn Future<Output = ()> + Send>>;
