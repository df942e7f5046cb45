//! Cloudflare Queues (<https://developers.cloudflare.com/queues/>) on SQLite.
//!
//! `queues.producers` entries become `env.<binding>`, a `WorkerQueue`
//! whose `send` and `sendBatch` store messages durably (see [`store`]):
//! one database for every queue, `<state>/queues/queues.sqlite3`.
//! `queues.consumers` entries get a delivery task each (see [`consumer`]):
//! it batches the queue's due messages (`max_batch_size`,
//! `max_batch_timeout` on pyflare's clock), runs the worker's `queue`
//! handler with them through Cloudflare's SDK, and applies what the
//! handler did: acknowledged messages are deleted, retried ones are due
//! again after their delay, and after `max_retries` retries a message
//! moves to the `dead_letter_queue`, or is dropped, logged as Miniflare
//! logs it. A handler that raises retries every message it did not
//! acknowledge. Delivery is at least once: a batch in flight when pyflare
//! is killed is delivered again after a restart.
//!
//! The consumers are one hidden binding (no `env` entry) named
//! [`CONSUMERS`], through which their batches reach the worker. Loopback
//! clients read every queue's counts at `GET /cdn-cgi/pyflare/queues` and
//! deliver pending batches now with `POST /cdn-cgi/pyflare/queues/deliver`
//! (or `.../queues/<queue>/deliver`); `pyflare queues list|send|deliver`
//! work on the same database from the shell.
//!
//! Differences from Cloudflare:
//! - Messages persist across restarts, and a queue with no consumer keeps
//!   its messages (Miniflare drops them) until one is configured.
//! - A message acknowledged with `ack()` before the handler raised is not
//!   retried, as Cloudflare's documentation says (Miniflare retries it).
//! - `sendBatch` allows 256,000 bytes of bodies, as the limits page says
//!   (Miniflare allows 288,000, and reports 256,000 in its message).
//! - A `delaySeconds` out of 0 to 86,400 is refused with its reason
//!   (Miniflare means to, but its message breaks its status line and the
//!   worker sees `Queue send failed: Internal Server Error`).
//! - A delivery that never finished (pyflare was killed, or no worker took
//!   the batch because the worker failed to load) does not count as an
//!   attempt.
//! - Not emulated: `max_concurrency` (one batch at a time per queue, as in
//!   Cloudflare's local development), the 100 bytes of metadata Cloudflare
//!   counts toward a message's size, retention periods, throughput limits,
//!   pull consumers, and `contentType` `v8` being the default for
//!   compatibility dates before 2024-03-18 (json always is).

pub mod call;
mod cli;
pub mod config;
pub mod consumer;
pub mod error;
pub mod limits;
pub mod store;

#[cfg(test)]
mod tests;

use async_trait::async_trait;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::OnceCell;

use crate::binding::{
    Binding, BindingConfigError, BindingKind, BodyStream, Inspect, InspectError, OpenContext, Reply,
};
use crate::cli::BindingCli;
use crate::clock::Clock;
use crate::error::{CfError, WireError};
use call::{MessageArgs, QueueCall};
use config::{ConsumerConfig, ProducerConfig};
use error::{Op, QueueError, check_delay};
use limits::*;
use store::{NewMessage, QueueStore, SqliteQueueStore};

/// The name of the hidden binding that delivers every consumer's
/// batches; not an identifier, so no binding of the worker can have it.
pub const CONSUMERS: &str = "(queue consumers)";

/// The `queues` binding kind.
#[derive(Debug)]
pub struct Queues;

impl BindingKind for Queues {
    fn config_key(&self) -> &'static str {
        "queues"
    }

    fn wire_name(&self) -> &'static str {
        "queue"
    }

    fn methods(&self) -> &'static [&'static str] {
        &["send", "sendBatch"]
    }

    fn shim(&self) -> &'static str {
        include_str!("shim.mjs")
    }

    fn open(
        &self,
        value: &Value,
        cx: &OpenContext,
    ) -> Result<Vec<Arc<dyn Binding>>, BindingConfigError> {
        let config = config::parse(self.config_key(), value)?;
        let store = StoreCell::new(SqliteQueueStore::path_in(&cx.persist_root));
        if !config.producers.is_empty() || !config.consumers.is_empty() {
            store.open_now()?;
        }
        let mut out: Vec<Arc<dyn Binding>> = Vec::new();
        for producer in config.producers {
            out.push(Arc::new(Queue {
                config: producer,
                store: store.clone(),
                clock: cx.clock.clone(),
            }));
        }
        if !config.consumers.is_empty() {
            out.push(Arc::new(QueueConsumers {
                consumers: config.consumers,
                store,
                clock: cx.clock.clone(),
            }));
        }
        Ok(out)
    }

    fn cli(&self) -> Option<&'static dyn BindingCli> {
        Some(&cli::QueuesCli)
    }

    /// `/cdn-cgi/pyflare/queues`: every queue's counts (`GET`), and
    /// `POST .../queues/deliver` or `.../queues/<queue>/deliver` to deliver
    /// pending batches now.
    fn route(&self) -> &'static str {
        "queues"
    }
}

/// The queue database of a state folder, opened on first use and shared.
#[derive(Debug, Clone)]
pub struct StoreCell {
    path: PathBuf,
    store: Arc<OnceCell<Arc<SqliteQueueStore>>>,
}

impl StoreCell {
    /// The database at `path`, not yet open.
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            store: Arc::new(OnceCell::new()),
        }
    }

    /// The open store.
    pub async fn get(&self) -> Result<&Arc<SqliteQueueStore>, String> {
        self.store
            .get_or_try_init(|| SqliteQueueStore::open_shared(&self.path))
            .await
    }

    /// Opens it now when pyflare runs on a multi-threaded runtime, so a
    /// damaged or unwritable file stops `pyflare dev` at start with its
    /// path (as D1 does).
    fn open_now(&self) -> Result<(), BindingConfigError> {
        let Some(opened) = crate::storage::open_at_start(self.get()) else {
            return Ok(());
        };
        opened
            .map(|_| ())
            .map_err(|message| BindingConfigError::Storage {
                what: "the queue database".to_owned(),
                path: self.path.clone(),
                message,
                hint: None,
            })
    }
}

/// A producer binding, `env.<binding>`.
#[derive(Debug)]
pub struct Queue {
    config: ProducerConfig,
    store: StoreCell,
    clock: Arc<dyn Clock>,
}

impl Queue {
    /// Runs one typed call with its bodies.
    pub async fn run(
        &self,
        call: QueueCall,
        body: Option<BodyStream>,
    ) -> Result<Reply, QueueError> {
        let (op, messages, batch_delay) = match call {
            QueueCall::Send { message } => {
                let delay = message.delay_seconds;
                (Op::Send, vec![message], delay)
            }
            QueueCall::SendBatch {
                messages,
                delay_seconds,
            } => {
                let messages = messages.ok_or(QueueError::NotSequence)?;
                if messages.is_empty() {
                    return Err(QueueError::EmptyBatch);
                }
                (Op::SendBatch, messages, delay_seconds)
            }
        };
        let types = messages
            .iter()
            .map(content_type)
            .collect::<Result<Vec<_>, _>>()?;
        check_sizes(op, &messages)?;
        let default_delay = match batch_delay {
            Some(delay) => check_delay(op, delay)?,
            None => self.config.delivery_delay.unwrap_or(0),
        };
        let delays = messages
            .iter()
            .map(|m| match (op, m.delay_seconds) {
                (Op::SendBatch, Some(delay)) => check_delay(op, delay),
                _ => Ok(default_delay),
            })
            .collect::<Result<Vec<u32>, _>>()?;
        let total: usize = messages.iter().map(|m| m.size).sum();
        let bytes = match body {
            Some(body) => body
                .collect(total)
                .await
                .map_err(|e| QueueError::BadRequest(op, e.to_string()))?,
            None => Default::default(),
        };
        if bytes.len() != total {
            return Err(QueueError::BadRequest(
                op,
                format!("{} body bytes for messages of {total}", bytes.len()),
            ));
        }
        let now = self.clock.now_ms();
        let mut at = 0;
        let mut new = Vec::with_capacity(messages.len());
        for ((message, content_type), delay) in messages.iter().zip(types).zip(delays) {
            new.push(NewMessage {
                content_type: content_type.to_owned(),
                body: bytes[at..at + message.size].to_vec(),
                visible_at_ms: now + i64::from(delay) * 1000,
            });
            at += message.size;
        }
        let store = self
            .store
            .get()
            .await
            .map_err(|e| QueueError::Store(op, e))?;
        let backlog = store
            .send(&self.config.queue, now, new)
            .await
            .map_err(|e| QueueError::Store(op, e))?;
        let mut metrics = json!({ "backlogCount": backlog.count, "backlogBytes": backlog.bytes });
        if let Some(oldest) = backlog.oldest_ms {
            metrics["oldestMessageTimestamp"] = json!(oldest);
        }
        Ok(Reply::json(json!({ "metadata": { "metrics": metrics } })))
    }
}

/// The content type a message is stored with, checked as workerd checks
/// it before serializing.
fn content_type(message: &MessageArgs) -> Result<&'static str, QueueError> {
    if message.js_type == "undefined" {
        return Err(QueueError::UndefinedBody);
    }
    let given = message.content_type.as_deref().unwrap_or("json");
    let kind = match given.to_ascii_lowercase().as_str() {
        "text" => "text",
        "json" => "json",
        "bytes" => "bytes",
        "v8" => "v8",
        _ => return Err(QueueError::ContentType(given.to_owned())),
    };
    if kind == "text" && message.js_type != "string" {
        return Err(QueueError::NotText(message.js_type.clone()));
    }
    if kind == "bytes" && !message.view {
        return Err(QueueError::NotBytes(message.js_type.clone()));
    }
    Ok(kind)
}

/// The queue service's size checks, in its order.
fn check_sizes(op: Op, messages: &[MessageArgs]) -> Result<(), QueueError> {
    match op {
        Op::Send => {
            let size = messages[0].size;
            if size > MAX_MESSAGE_BYTES {
                return Err(QueueError::MessageTooLarge(size));
            }
        }
        Op::SendBatch => {
            if messages.len() > MAX_BATCH_MESSAGES as usize {
                return Err(QueueError::TooManyMessages(messages.len()));
            }
            let largest = messages.iter().map(|m| m.size).max().unwrap_or(0);
            if largest > MAX_MESSAGE_BYTES {
                return Err(QueueError::BatchMessageTooLarge(largest));
            }
            let total: usize = messages.iter().map(|m| m.size).sum();
            if total > MAX_BATCH_BYTES {
                return Err(QueueError::BatchTooLarge(total));
            }
        }
    }
    Ok(())
}

#[async_trait]
impl Binding for Queue {
    fn name(&self) -> &str {
        &self.config.binding
    }

    fn kind(&self) -> &'static str {
        "queue"
    }

    fn describe(&self) -> String {
        format!(
            "Queue producer    {}  ({})",
            self.config.binding, self.config.queue
        )
    }

    async fn call(
        &self,
        method: &str,
        args: Value,
        body: Option<BodyStream>,
    ) -> Result<Reply, WireError> {
        let op = if method == "sendBatch" {
            Op::SendBatch
        } else {
            Op::Send
        };
        let call: QueueCall = serde_json::from_value(json!({ "method": method, "args": args }))
            .map_err(|e| QueueError::BadRequest(op, e.to_string()).to_wire())?;
        self.run(call, body).await.map_err(|e| {
            if let QueueError::Store(_, cause) | QueueError::BadRequest(_, cause) = &e {
                eprintln!("[pyflare] error: queue {}: {cause}", self.config.binding);
            }
            e.to_wire()
        })
    }

    async fn close(&self) -> Result<(), String> {
        match self.store.store.get() {
            Some(store) => store.checkpoint().await,
            None => Ok(()),
        }
    }

    async fn inspect(&self, request: &Inspect) -> Option<Result<Value, InspectError>> {
        if request.method != "GET" || !request.path.is_empty() {
            return None;
        }
        Some(
            counts(
                &self.store,
                self.clock.now_ms(),
                &[self.config.queue.as_str()],
            )
            .await,
        )
    }
}

/// `{"<queue>": {pending, delayed, in_flight, acked, retried,
/// dead_lettered, dropped}}` for `queues`.
async fn counts(store: &StoreCell, now_ms: i64, queues: &[&str]) -> Result<Value, InspectError> {
    let store = store.get().await.map_err(InspectError::Failed)?;
    let all = store.counts(now_ms).await.map_err(InspectError::Failed)?;
    let mut out = serde_json::Map::new();
    for queue in queues {
        let mut counts = all
            .iter()
            .find(|c| c.queue == *queue)
            .cloned()
            .unwrap_or_default();
        counts.queue = (*queue).to_owned();
        let mut value =
            serde_json::to_value(&counts).map_err(|e| InspectError::Failed(e.to_string()))?;
        if let Value::Object(fields) = &mut value {
            fields.remove("queue");
        }
        out.insert((*queue).to_owned(), value);
    }
    Ok(Value::Object(out))
}

impl QueueConsumers {
    /// Asks the consumers of `queues` to deliver what is due now, whatever
    /// their batch size and timeout say; answers the counts they start from.
    async fn deliver_now(&self, queues: &[&str]) -> Result<Value, InspectError> {
        let store = self.store.get().await.map_err(InspectError::Failed)?;
        for queue in queues {
            store.request_flush(queue);
        }
        counts(&self.store, self.clock.now_ms(), queues).await
    }
}

/// The worker's consumers: a hidden binding whose tasks deliver batches.
#[derive(Debug)]
pub struct QueueConsumers {
    consumers: Vec<ConsumerConfig>,
    store: StoreCell,
    clock: Arc<dyn Clock>,
}

#[async_trait]
impl Binding for QueueConsumers {
    fn name(&self) -> &str {
        CONSUMERS
    }

    fn kind(&self) -> &'static str {
        "queue"
    }

    fn describe(&self) -> String {
        let list: Vec<String> = self
            .consumers
            .iter()
            .map(|c| {
                let mut line = format!(
                    "{} (batch {}, {} s, {} retries",
                    c.queue,
                    c.batch_size(),
                    c.batch_timeout_ms() as f64 / 1000.0,
                    c.retries()
                );
                if let Some(dlq) = &c.dead_letter_queue {
                    line.push_str(&format!(", dead letters to {dlq}"));
                }
                line.push(')');
                line
            })
            .collect();
        format!("Queue consumers   {}", list.join(", "))
    }

    async fn call(
        &self,
        method: &str,
        _args: Value,
        _body: Option<BodyStream>,
    ) -> Result<Reply, WireError> {
        Err(WireError::error(format!(
            "queue consumers have no method {method}"
        )))
    }

    async fn close(&self) -> Result<(), String> {
        match self.store.store.get() {
            Some(store) => store.checkpoint().await,
            None => Ok(()),
        }
    }

    async fn inspect(&self, request: &Inspect) -> Option<Result<Value, InspectError>> {
        let mine: Vec<&str> = self
            .consumers
            .iter()
            .map(|c| c.queue.as_str())
            .chain(
                self.consumers
                    .iter()
                    .filter_map(|c| c.dead_letter_queue.as_deref()),
            )
            .collect();
        let path: Vec<&str> = request.path.iter().map(String::as_str).collect();
        match (request.method.as_str(), path.as_slice()) {
            ("GET", []) => Some(counts(&self.store, self.clock.now_ms(), &mine).await),
            ("POST", ["deliver"]) => {
                let consumed: Vec<&str> = self.consumers.iter().map(|c| c.queue.as_str()).collect();
                Some(self.deliver_now(&consumed).await)
            }
            ("POST", [queue, "deliver"]) => {
                if !self.consumers.iter().any(|c| c.queue == *queue) {
                    return Some(Err(InspectError::NotFound(format!(
                        "the worker has no consumer for the queue {queue}"
                    ))));
                }
                Some(self.deliver_now(&[queue]).await)
            }
            _ => None,
        }
    }

    fn tasks(&self, cx: &crate::tasks::TaskContext) -> Vec<crate::tasks::Task> {
        self.consumers
            .iter()
            .map(|consumer| {
                let task = consumer::Consumer {
                    config: consumer.clone(),
                    store: self.store.clone(),
                    binding: CONSUMERS.to_owned(),
                };
                Box::pin(task.run(cx.clone())) as crate::tasks::Task
            })
            .collect()
    }
}
