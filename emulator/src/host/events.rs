//! Events into the worker: what pyflare can ask the isolate to run, and what
//! each kind of event answers, typed per kind.
//!
//! Every event travels in one protocol message, `event` with its `kind`
//! (see [`protocol::Event`]), and is answered by a `response` head (fetch)
//! or an `event_result`. [`Supervisor::dispatch`](super::supervisor::Supervisor::dispatch)
//! (or a [`Dispatcher`](super::supervisor::Dispatcher) held by whoever
//! delivers events, such as a binding's consumer loop) sends an event to the
//! current host and retries it on the new host when a reload swapped the
//! old one out before it took the event.
//!
//! Adding an event kind (a queue batch, a Durable Object request, RPC call
//! or alarm, a WebSocket message): a variant of [`protocol::Event`], a case
//! in `events.mjs`, and here a request type implementing [`WorkerEvent`]
//! with an outcome enum of its own.

use std::sync::Arc;

use super::protocol::{self, EventStatus};
use super::{ExitReason, HostResponse};

/// What a host hands back for an event, before it is typed for its kind.
#[derive(Debug)]
pub enum Reply {
    /// The head of a fetch response; its body streams on.
    Response(HostResponse),
    /// The host's `event_result`.
    Finished {
        status: EventStatus,
        message: Option<String>,
        result: Option<serde_json::Value>,
    },
    /// The host went away after taking the event.
    HostGone(ExitReason),
}

/// Why an event never reached a worker.
#[derive(Debug, Clone, PartialEq)]
pub enum Undelivered {
    /// The worker's code failed to load; its traceback.
    LoadFailed(Arc<str>),
    /// pyflare is shutting down.
    ShuttingDown,
    /// Every host tried was swapped out before it took the event.
    Replaced,
}

/// An event the worker can run, with the outcome typed for its kind.
pub trait WorkerEvent: Send + Sized {
    /// Short name for logs and test hooks (`fetch`, `scheduled`).
    const KIND: &'static str;
    /// How this kind of event can end.
    type Outcome: Send;

    /// The message for the host, and the request body to stream after it.
    fn into_wire(self) -> (protocol::Event, Option<axum::body::Body>);

    /// Types the host's answer.
    fn outcome(reply: Reply) -> Self::Outcome;

    /// The outcome of an event no worker took.
    fn undelivered(why: Undelivered) -> Self::Outcome;
}

/// An HTTP request for the worker's `fetch` handler.
#[derive(Debug)]
pub struct FetchRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<axum::body::Body>,
}

/// How a fetch event ended.
#[derive(Debug)]
pub enum FetchOutcome {
    /// The worker's response; its body may still be streaming.
    Response(HostResponse),
    /// The handler raised (or hung) before answering; the traceback.
    Exception(String),
    /// The host stopped after taking the request.
    HostGone(ExitReason),
    /// No worker took the request.
    Undelivered(Undelivered),
}

impl WorkerEvent for FetchRequest {
    const KIND: &'static str = "fetch";
    type Outcome = FetchOutcome;

    fn into_wire(self) -> (protocol::Event, Option<axum::body::Body>) {
        let event = protocol::Event::Fetch {
            method: self.method,
            url: self.url,
            headers: self.headers,
            has_body: self.body.is_some(),
        };
        (event, self.body)
    }

    fn outcome(reply: Reply) -> FetchOutcome {
        match reply {
            Reply::Response(head) => FetchOutcome::Response(head),
            Reply::Finished { message, .. } => FetchOutcome::Exception(
                message.unwrap_or_else(|| "the worker ended the request without a response".into()),
            ),
            Reply::HostGone(reason) => FetchOutcome::HostGone(reason),
        }
    }

    fn undelivered(why: Undelivered) -> FetchOutcome {
        FetchOutcome::Undelivered(why)
    }
}

/// A cron trigger for the worker's `scheduled` handler.
#[derive(Debug, Clone)]
pub struct ScheduledEvent {
    /// The expression as configured (`controller.cron`).
    pub cron: String,
    /// Unix milliseconds (`controller.scheduledTime`).
    pub scheduled_time: i64,
}

/// How a scheduled event ended: workerd's `EventOutcome`s that pyflare can
/// produce.
#[derive(Debug, Clone, PartialEq)]
pub enum ScheduledOutcome {
    Ok {
        /// The handler called `controller.noRetry()` (and then succeeded).
        no_retry: bool,
    },
    /// The handler raised, hung, or a `waitUntil` promise rejected.
    Exception {
        message: String,
        /// The handler called `controller.noRetry()`.
        no_retry: bool,
    },
    /// The event ran past `limits.cpu_ms`.
    ExceededCpu,
    /// The isolate passed its memory limit; the host's measurement.
    ExceededMemory(String),
    /// The host stopped (crashed, fatal Pyodide error) after taking it.
    HostGone(ExitReason),
    /// No worker took it.
    Undelivered(Undelivered),
}

impl ScheduledOutcome {
    /// Types the host's answer to an event without a response (`kind` names
    /// it in the error for an unexpected response head), with the JSON the
    /// event reported: `no_retry` is read from it.
    fn from_reply(reply: Reply, kind: &str) -> (Self, serde_json::Value) {
        match reply {
            Reply::Finished {
                status,
                message,
                result,
            } => {
                let result = result.unwrap_or_default();
                let no_retry = result
                    .get("no_retry")
                    .and_then(serde_json::Value::as_bool)
                    .unwrap_or(false);
                let outcome = match status {
                    EventStatus::Ok => Self::Ok { no_retry },
                    EventStatus::Exception => Self::Exception {
                        message: message.unwrap_or_default(),
                        no_retry,
                    },
                };
                (outcome, result)
            }
            Reply::Response(_) => (
                Self::Exception {
                    message: format!("the host answered a {kind} event with a response"),
                    no_retry: false,
                },
                serde_json::Value::Null,
            ),
            Reply::HostGone(ExitReason::CpuLimit) => (Self::ExceededCpu, serde_json::Value::Null),
            Reply::HostGone(ExitReason::MemoryLimit(message)) => {
                (Self::ExceededMemory(message), serde_json::Value::Null)
            }
            Reply::HostGone(reason) => (Self::HostGone(reason), serde_json::Value::Null),
        }
    }

    /// The outcome as workerd names it (the `/cdn-cgi/handler/scheduled`
    /// answer). A worker that could not run reports `exception`, as a
    /// failed load or a fatal error does on Cloudflare.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Ok { .. } => "ok",
            Self::ExceededCpu => "exceededCpu",
            Self::ExceededMemory(_) => "exceededMemory",
            Self::Exception { .. } | Self::HostGone(_) | Self::Undelivered(_) => "exception",
        }
    }

    /// Whether the event ran to its end without an error.
    pub fn is_ok(&self) -> bool {
        matches!(self, Self::Ok { .. })
    }

    /// Whether the handler called `controller.noRetry()`, as workerd and
    /// Miniflare report it (`noRetry` of `/cdn-cgi/handler/scheduled?
    /// format=json`), whether it then succeeded or failed.
    pub fn no_retry(&self) -> bool {
        match self {
            Self::Ok { no_retry } | Self::Exception { no_retry, .. } => *no_retry,
            _ => false,
        }
    }

    /// What went wrong, for the log.
    pub fn detail(&self) -> String {
        match self {
            Self::Ok { .. } => String::new(),
            Self::Exception { message, .. } => message.clone(),
            Self::ExceededCpu => "Worker exceeded CPU time limit.".into(),
            Self::ExceededMemory(message) => message.clone(),
            Self::HostGone(ExitReason::Fatal(message)) => message.clone(),
            Self::HostGone(reason) => format!("the worker host stopped: {reason:?}"),
            Self::Undelivered(Undelivered::LoadFailed(traceback)) => traceback.to_string(),
            Self::Undelivered(Undelivered::ShuttingDown) => "pyflare is shutting down".into(),
            Self::Undelivered(Undelivered::Replaced) => {
                "the worker host was replaced before it took the event".into()
            }
        }
    }
}

impl WorkerEvent for ScheduledEvent {
    const KIND: &'static str = "scheduled";
    type Outcome = ScheduledOutcome;

    fn into_wire(self) -> (protocol::Event, Option<axum::body::Body>) {
        let event = protocol::Event::Scheduled {
            cron: self.cron,
            scheduled_time: self.scheduled_time,
        };
        (event, None)
    }

    fn outcome(reply: Reply) -> ScheduledOutcome {
        ScheduledOutcome::from_reply(reply, Self::KIND).0
    }

    fn undelivered(why: Undelivered) -> ScheduledOutcome {
        ScheduledOutcome::Undelivered(why)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(status: EventStatus, result: Option<serde_json::Value>) -> Reply {
        Reply::Finished {
            status,
            message: Some("Traceback".into()),
            result,
        }
    }

    #[test]
    fn scheduled_outcomes_keep_workerds_names() {
        let ok = ScheduledEvent::outcome(finished(EventStatus::Ok, None));
        assert_eq!((ok.as_str(), ok.no_retry()), ("ok", false));
        let ok = ScheduledEvent::outcome(finished(
            EventStatus::Ok,
            Some(serde_json::json!({"no_retry": true})),
        ));
        assert_eq!((ok.as_str(), ok.no_retry()), ("ok", true));
        let failed = ScheduledEvent::outcome(finished(
            EventStatus::Exception,
            Some(serde_json::json!({"no_retry": true})),
        ));
        assert_eq!(
            failed,
            ScheduledOutcome::Exception {
                message: "Traceback".into(),
                no_retry: true
            }
        );
        assert_eq!(failed.as_str(), "exception");
        let cpu = ScheduledEvent::outcome(Reply::HostGone(ExitReason::CpuLimit));
        assert_eq!((cpu.as_str(), cpu.no_retry()), ("exceededCpu", false));
        let memory = ScheduledEvent::outcome(Reply::HostGone(ExitReason::MemoryLimit("m".into())));
        assert_eq!(memory.as_str(), "exceededMemory");
        let gone = ScheduledEvent::undelivered(Undelivered::ShuttingDown);
        assert_eq!(gone.as_str(), "exception");
    }

    #[test]
    fn a_fetch_the_host_failed_is_an_exception() {
        let outcome = FetchRequest::outcome(finished(EventStatus::Exception, None));
        assert!(matches!(outcome, FetchOutcome::Exception(t) if t == "Traceback"));
    }
}

/// An event a binding defines and delivers (a queue batch, an alarm): the
/// worker's `handler` runs with what the binding's shim builds from
/// `payload`. New kinds of binding events need no change outside the
/// binding: its shim's `event(handler, payload, binding)` makes the
/// handler's arguments and its `finish()` reports what came of them.
#[derive(Debug, Clone)]
pub struct BindingEvent {
    /// The binding's name in `env`.
    pub binding: String,
    /// The handler of the worker's default export (`queue`, `alarm`, ...).
    pub handler: String,
    /// What the shim builds the arguments from.
    pub payload: serde_json::Value,
}

/// How a binding event ended: workerd's outcome, as for a scheduled event
/// (a `no_retry` in the shim's report counts as `noRetry()`), and what the
/// shim reported (`finish()`), after success or failure alike.
#[derive(Debug, Clone, PartialEq)]
pub struct BindingOutcome {
    pub outcome: ScheduledOutcome,
    pub result: serde_json::Value,
}

impl WorkerEvent for BindingEvent {
    const KIND: &'static str = "binding";
    type Outcome = BindingOutcome;

    fn into_wire(self) -> (protocol::Event, Option<axum::body::Body>) {
        let event = protocol::Event::Binding {
            binding: self.binding,
            handler: self.handler,
            payload: self.payload,
        };
        (event, None)
    }

    fn outcome(reply: Reply) -> BindingOutcome {
        let (outcome, result) = ScheduledOutcome::from_reply(reply, Self::KIND);
        BindingOutcome { outcome, result }
    }

    fn undelivered(why: Undelivered) -> BindingOutcome {
        BindingOutcome {
            outcome: ScheduledOutcome::Undelivered(why),
            result: serde_json::Value::Null,
        }
    }
}
