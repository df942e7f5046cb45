//! A consumer's delivery task: waits until its queue has a batch (its
//! `max_batch_size` messages due, or the oldest due one has waited
//! `max_batch_timeout` on pyflare's clock, or a deliver-now request),
//! leases it, runs the worker's `queue` handler with it, and applies the
//! handler's report with [`settle`], as Cloudflare does
//! (<https://developers.cloudflare.com/queues/configuration/batching-retries/>).

use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;

use super::StoreCell;
use super::config::ConsumerConfig;
use super::limits::MAX_DELAY_SECS;
use super::store::{Leased, QueueStore, Settle};
use crate::clock::Stopwatch;
use crate::tasks::{Delivered, Delivery, TaskContext};

/// How often (real milliseconds) an idle consumer reads the clock, which
/// can jump (tests move it), to see whether a delay or a batch timeout has
/// ended.
const POLL_MS: u64 = 50;

/// How long (real milliseconds) a consumer waits after a batch no worker
/// took (the worker failed to load) before it tries again.
const UNDELIVERED_PAUSE_MS: u64 = 500;

/// Every how many polls an idle consumer looks at the database whatever
/// the clock says (~500 ms).
const LOOK_EVERY: u32 = 10;

/// What a look at the queue found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Look {
    /// A batch is ready.
    Deliver,
    /// Nothing is due; the next message becomes due then, if any.
    Later(Option<i64>),
    /// Messages are due, but the batch waits to fill until then.
    Wait(i64),
}

/// One consumer's delivery task.
#[derive(Debug)]
pub struct Consumer {
    /// Its config entry.
    pub config: ConsumerConfig,
    /// The queue database.
    pub store: StoreCell,
    /// The binding its events go through.
    pub binding: String,
}

/// What the shim's `finish()` reports of a batch: workerd's
/// `QueueEventResult` (explicit acks, retries with their delays, `ackAll`,
/// `retryAll`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Report {
    /// Ids `ack()`ed.
    pub acks: Vec<String>,
    /// Ids `retry()`ed, with `delaySeconds` if given.
    pub retries: Vec<(String, Option<f64>)>,
    /// `ackAll()` was called.
    pub ack_all: bool,
    /// `retryAll()` was called.
    pub retry_all: bool,
    /// `retryAll({delaySeconds})`.
    pub retry_all_delay: Option<f64>,
    /// Calls that had no effect: the call, the message's id (none for
    /// `ackAll`/`retryAll`), and the earlier call that won.
    pub ignored: Vec<(String, Option<String>, String)>,
}

impl Report {
    /// workerd's warning for each call that had no effect
    /// (src/workerd/api/queue.c++, `QueueMessage::ack`, `retry`,
    /// `QueueEvent::ackAll`, `retryAll`).
    pub fn warnings(&self) -> Vec<String> {
        self.ignored
            .iter()
            .map(|(call, id, earlier)| match id {
                Some(id) => format!(
                    "Received a call to {call}() on message {id} after {earlier}() was already called. Calling {call}() on a message after calling {earlier}() has no effect."
                ),
                None => format!(
                    "Received a call to {call}() after {earlier}() was already called. Calling {call}() after calling {earlier}() has no effect."
                ),
            })
            .collect()
    }
}

/// What became of one message, and the line to log for it, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The message's row.
    pub seq: i64,
    /// What to do.
    pub settle: Settle,
    /// Miniflare's warning for a message moved or dropped.
    pub log: Option<String>,
}

/// Decides each message's fate after a delivery that `failed` (the handler
/// raised) or not, as Cloudflare does: an explicit `ack()` wins; then an
/// explicit `retry()` (its delay, else `retryAll`'s, else the consumer's
/// `retry_delay`); then `retryAll()` or a failure retries; else the
/// message is acknowledged. A retry past `max_retries` moves the message
/// to the dead letter queue, or drops it.
pub fn settle(
    config: &ConsumerConfig,
    batch: &[Leased],
    report: &Report,
    failed: bool,
    now_ms: i64,
) -> Vec<Decision> {
    let retries: HashMap<&str, Option<f64>> = report
        .retries
        .iter()
        .map(|(id, delay)| (id.as_str(), *delay))
        .collect();
    let max_attempts = config.retries() + 1;
    let plural = if max_attempts == 1 { "" } else { "s" };
    let batch_delay = report.retry_all_delay;
    batch
        .iter()
        .map(|message| {
            let id = message.id.as_str();
            let retry_delay = if report.acks.iter().any(|a| a == id) {
                None
            } else if let Some(delay) = retries.get(id) {
                Some(delay.or(batch_delay))
            } else if report.retry_all || failed {
                Some(batch_delay)
            } else {
                None
            };
            let Some(delay) = retry_delay else {
                return Decision {
                    seq: message.seq,
                    settle: Settle::Ack,
                    log: None,
                };
            };
            if message.attempts < max_attempts {
                let secs = delay
                    .map(|d| (d.max(0.0) as i64).min(MAX_DELAY_SECS))
                    .unwrap_or(i64::from(config.retry_delay_secs()));
                return Decision {
                    seq: message.seq,
                    settle: Settle::Retry {
                        visible_at_ms: now_ms + secs * 1000,
                    },
                    log: None,
                };
            }
            // Miniflare's words (broker.worker.ts).
            match &config.dead_letter_queue {
                Some(dlq) => Decision {
                    seq: message.seq,
                    settle: Settle::DeadLetter {
                        queue: dlq.clone(),
                        visible_at_ms: now_ms,
                    },
                    log: Some(format!(
                        "Moving message \"{id}\" on queue \"{}\" to dead letter queue \"{dlq}\" after {max_attempts} failed attempt{plural}...",
                        config.queue
                    )),
                },
                None => Decision {
                    seq: message.seq,
                    settle: Settle::Drop,
                    log: Some(format!(
                        "Dropped message \"{id}\" on queue \"{}\" after {max_attempts} failed attempt{plural}!",
                        config.queue
                    )),
                },
            }
        })
        .collect()
}

/// A message as the shim's `event()` gets it: text and JSON bodies as
/// text, bytes and V8 bodies in base64 (an event's payload is JSON only;
/// a body is at most 128 KB).
fn payload_message(message: &Leased) -> Value {
    let body = match message.content_type.as_str() {
        "text" | "json" => Value::String(String::from_utf8_lossy(&message.body).into_owned()),
        _ => Value::String(base64::engine::general_purpose::STANDARD.encode(&message.body)),
    };
    json!({
        "id": message.id,
        "timestamp": message.timestamp_ms,
        "contentType": message.content_type,
        "body": body,
        "attempts": message.attempts,
    })
}

impl Consumer {
    /// Delivers batches until told to stop.
    pub async fn run(self, mut cx: TaskContext) {
        let store = match self.store.get().await {
            Ok(store) => store.clone(),
            Err(error) => {
                eprintln!(
                    "[pyflare] error: queue {}: cannot open the queue database: {error}",
                    self.config.queue
                );
                return;
            }
        };
        match store.recover_once().await {
            Ok(0) => {}
            Ok(n) => println!(
                "[pyflare] queues: {n} message(s) in flight when pyflare last stopped will be delivered again"
            ),
            Err(error) => eprintln!("[pyflare] error: queues: {error}"),
        }
        let queue = self.config.queue.clone();
        let mut flushing = false;
        // When the clock next makes something due here (a delay ends, a
        // batch times out); None: look now.
        let mut next_look: Option<i64> = None;
        let mut idle_polls: u32 = 0;
        loop {
            if *cx.stop.borrow() {
                return;
            }
            let wake = store.wake.notified();
            tokio::pin!(wake);
            wake.as_mut().enable();
            flushing |= store.take_flush(&queue);
            let now = cx.clock.now_ms();
            idle_polls += 1;
            // Other processes (`pyflare queues send`, `... deliver`) wake no
            // one here: the database is looked at every LOOK_EVERY polls too.
            if flushing || idle_polls >= LOOK_EVERY || next_look.is_none_or(|at| now >= at) {
                idle_polls = 0;
                flushing |= store.take_flush_request(&queue).await.unwrap_or(false);
                match self.look(&store, now, flushing).await {
                    Ok(Look::Deliver) => {
                        if !self.deliver(&store, &cx, now).await
                            && cx.pause(UNDELIVERED_PAUSE_MS).await
                        {
                            return;
                        }
                        next_look = None;
                        continue;
                    }
                    Ok(Look::Later(at)) => {
                        flushing = false;
                        next_look = at;
                    }
                    Ok(Look::Wait(at)) => next_look = Some(at),
                    Err(error) => {
                        eprintln!("[pyflare] error: queue {queue}: {error}");
                        if cx.pause(1000).await {
                            return;
                        }
                        continue;
                    }
                }
            }
            tokio::select! {
                _ = &mut wake => next_look = None,
                stop = cx.pause(POLL_MS) => if stop { return },
            }
        }
    }

    /// Whether a batch is ready at `now`, else when to look again.
    async fn look(
        &self,
        store: &super::store::SqliteQueueStore,
        now: i64,
        flushing: bool,
    ) -> Result<Look, String> {
        let queue = &self.config.queue;
        let size = self.config.batch_size();
        let due = store.due(queue, now, size).await?;
        if due.count == 0 {
            return Ok(Look::Later(store.next_due(queue, now).await?));
        }
        let oldest = due.oldest_ms.unwrap_or(now);
        let timeout = self.config.batch_timeout_ms();
        if flushing || due.count >= size || now - oldest >= timeout {
            return Ok(Look::Deliver);
        }
        Ok(Look::Wait(oldest + timeout))
    }

    /// Leases one batch, runs the handler with it, and applies the result;
    /// false when no worker took it (the worker failed to load, pyflare is
    /// stopping): the batch is released, the attempt not counted.
    async fn deliver(
        &self,
        store: &super::store::SqliteQueueStore,
        cx: &TaskContext,
        now: i64,
    ) -> bool {
        let queue = &self.config.queue;
        let batch = match store.lease(queue, now, self.config.batch_size()).await {
            Ok(batch) if batch.is_empty() => return true,
            Ok(batch) => batch,
            Err(error) => {
                eprintln!("[pyflare] error: queue {queue}: {error}");
                return false;
            }
        };
        let payload = json!({
            "queue": queue,
            "messages": batch.iter().map(payload_message).collect::<Vec<_>>(),
        });
        let watch = Stopwatch::start();
        let delivered = cx
            .events
            .deliver(Delivery::Binding {
                binding: self.binding.clone(),
                handler: "queue".to_owned(),
                payload,
            })
            .await;
        let ms = watch.elapsed_ms().round();
        let (report, failure) = match delivered {
            Delivered::Ok { result } => (result, None),
            Delivered::Failed {
                outcome,
                message,
                result,
            } => (result, Some((outcome, message))),
            Delivered::Undelivered(_) => {
                let released: Vec<(i64, Settle)> =
                    batch.iter().map(|m| (m.seq, Settle::Release)).collect();
                if let Err(error) = store.settle(queue, &released).await {
                    eprintln!("[pyflare] error: queue {queue}: {error}");
                }
                return false;
            }
        };
        let report: Report = serde_json::from_value(report).unwrap_or_default();
        let decisions = settle(
            &self.config,
            &batch,
            &report,
            failure.is_some(),
            cx.clock.now_ms(),
        );
        let outcomes: Vec<(i64, Settle)> = decisions
            .iter()
            .map(|d| (d.seq, d.settle.clone()))
            .collect();
        if let Err(error) = store.settle(queue, &outcomes).await {
            eprintln!("[pyflare] error: queue {queue}: {error}");
            return false;
        }
        let acked = decisions.iter().filter(|d| d.settle == Settle::Ack).count();
        let outcome = match &failure {
            None => "ok",
            Some((outcome, _)) => outcome.as_str(),
        };
        if let Some((_, message)) = &failure {
            eprintln!("[pyflare] error: queue {queue}: the queue handler failed:\n{message}");
        }
        for warning in report.warnings() {
            eprintln!("[pyflare] warning: {warning}");
        }
        for line in decisions.iter().filter_map(|d| d.log.as_deref()) {
            eprintln!("[pyflare] warning: {line}");
        }
        // One line per batch, Miniflare's `QUEUE <queue> <acked>/<size>`
        // with the handler's outcome.
        println!(
            "[pyflare] QUEUE {queue} {acked}/{} {outcome} ({ms}ms)",
            batch.len()
        );
        true
    }
}
