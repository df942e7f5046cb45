//! The `queues` value of the wrangler config: an object with `producers`
//! (bindings the worker sends through) and `consumers` (queues whose
//! batches the worker's `queue` handler receives), checked with field
//! paths (`queues.consumers[0].max_batch_size`) as `parse_entries` checks
//! binding arrays.

use serde::Deserialize;
use serde_json::Value;

use super::limits::*;
use crate::binding::BindingConfigError;
use crate::config::{FieldError, NamedBinding, parse_entries, parse_value};

/// The whole `queues` value.
#[derive(Debug, Clone, Default)]
pub struct QueuesConfig {
    /// `queues.producers`.
    pub producers: Vec<ProducerConfig>,
    /// `queues.consumers`.
    pub consumers: Vec<ConsumerConfig>,
}

/// `{"binding": "JOBS", "queue": "jobs", "delivery_delay": 0}`.
#[derive(Debug, Clone, Deserialize)]
pub struct ProducerConfig {
    /// Name on `env`.
    pub binding: String,
    /// The queue it sends to.
    pub queue: String,
    /// Seconds every message waits before delivery, unless a send says
    /// otherwise.
    #[serde(default)]
    pub delivery_delay: Option<u32>,
}

impl NamedBinding for ProducerConfig {
    const WHAT: &'static str = "queue producer";

    fn binding(&self) -> &str {
        &self.binding
    }

    fn other_name(&self) -> Option<&str> {
        Some(&self.queue)
    }

    fn check(&self) -> Result<(), FieldError> {
        check_queue_name(&self.queue).map_err(|message| FieldError {
            field: "queue",
            message,
        })?;
        at_most(self.delivery_delay.map(f64::from), MAX_DELAY_SECS as f64).map_err(|message| {
            FieldError {
                field: "delivery_delay",
                message,
            }
        })
    }
}

/// One `queues.consumers` entry, with production's defaults
/// (<https://developers.cloudflare.com/queues/configuration/configure-queues/#consumer>).
#[derive(Debug, Clone, Deserialize)]
pub struct ConsumerConfig {
    /// The queue consumed.
    pub queue: String,
    /// Most messages in one batch (default 10).
    #[serde(default)]
    pub max_batch_size: Option<u32>,
    /// Most seconds a batch waits to fill up (default 5).
    #[serde(default)]
    pub max_batch_timeout: Option<f64>,
    /// Deliveries after the first before a message is dead-lettered or
    /// dropped (default 3).
    #[serde(default)]
    pub max_retries: Option<u32>,
    /// Where messages go after their last retry.
    #[serde(default)]
    pub dead_letter_queue: Option<String>,
    /// Seconds before a retried message is delivered again (default 0).
    #[serde(default)]
    pub retry_delay: Option<u32>,
    /// Accepted. Not emulated: batches of one queue are delivered one at a
    /// time, as in Cloudflare's local development.
    #[serde(default)]
    pub max_concurrency: Option<u32>,
}

impl ConsumerConfig {
    /// `max_batch_size`, default 10.
    pub fn batch_size(&self) -> u32 {
        self.max_batch_size.unwrap_or(DEFAULT_BATCH_SIZE)
    }

    /// `max_batch_timeout` in milliseconds, default 5 s.
    pub fn batch_timeout_ms(&self) -> i64 {
        (self.max_batch_timeout.unwrap_or(DEFAULT_BATCH_TIMEOUT_SECS) * 1000.0) as i64
    }

    /// `max_retries`, default 3.
    pub fn retries(&self) -> u32 {
        self.max_retries.unwrap_or(DEFAULT_MAX_RETRIES)
    }

    /// `retry_delay`, default 0.
    pub fn retry_delay_secs(&self) -> u32 {
        self.retry_delay.unwrap_or(0)
    }

    fn check(&self) -> Result<(), FieldError> {
        let field = |field: &'static str| move |message| FieldError { field, message };
        check_queue_name(&self.queue).map_err(field("queue"))?;
        if let Some(size) = self.max_batch_size {
            if size < 1 {
                return Err(field("max_batch_size")(
                    "Number must be greater than or equal to 1".to_owned(),
                ));
            }
        }
        at_most(
            self.max_batch_size.map(f64::from),
            f64::from(MAX_BATCH_MESSAGES),
        )
        .map_err(field("max_batch_size"))?;
        if self.max_batch_timeout.is_some_and(|t| t < 0.0) {
            return Err(field("max_batch_timeout")(
                "Number must be greater than or equal to 0".to_owned(),
            ));
        }
        at_most(self.max_batch_timeout, MAX_BATCH_TIMEOUT_SECS)
            .map_err(field("max_batch_timeout"))?;
        at_most(self.max_retries.map(f64::from), f64::from(MAX_RETRIES))
            .map_err(field("max_retries"))?;
        at_most(self.retry_delay.map(f64::from), MAX_DELAY_SECS as f64)
            .map_err(field("retry_delay"))?;
        if let Some(dlq) = &self.dead_letter_queue {
            check_queue_name(dlq).map_err(field("dead_letter_queue"))?;
            if *dlq == self.queue {
                // Miniflare's ERR_DEAD_LETTER_QUEUE_CYCLE.
                return Err(field("dead_letter_queue")(format!(
                    "Dead letter queue for queue \"{}\" cannot be itself",
                    self.queue
                )));
            }
        }
        Ok(())
    }
}

/// zod's words, as Miniflare reports an option past its range.
fn at_most(value: Option<f64>, max: f64) -> Result<(), String> {
    match value {
        Some(v) if v > max => Err(format!("Number must be less than or equal to {max}")),
        _ => Ok(()),
    }
}

/// A queue's name is only a key in pyflare's database, but it must name
/// something.
fn check_queue_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a queue name cannot be empty".to_owned());
    }
    Ok(())
}

/// Parses the `queues` value found under `config_key`.
pub fn parse(config_key: &str, value: &Value) -> Result<QueuesConfig, BindingConfigError> {
    let Some(object) = value.as_object() else {
        return Err(BindingConfigError::Invalid {
            path: config_key.to_owned(),
            message: "expected an object with `producers` and `consumers`".to_owned(),
        });
    };
    let mut config = QueuesConfig::default();
    if let Some(producers) = object.get("producers") {
        config.producers = parse_entries(&format!("{config_key}.producers"), producers)?;
    }
    if let Some(consumers) = object.get("consumers") {
        let at = format!("{config_key}.consumers");
        let list = consumers
            .as_array()
            .ok_or_else(|| BindingConfigError::Invalid {
                path: at.clone(),
                message: "expected an array".to_owned(),
            })?;
        for (i, item) in list.iter().enumerate() {
            let at = format!("{at}[{i}]");
            let consumer: ConsumerConfig = parse_value(&at, item)?;
            consumer.check().map_err(|e| BindingConfigError::Invalid {
                path: format!("{at}.{}", e.field),
                message: e.message,
            })?;
            if config.consumers.iter().any(|c| c.queue == consumer.queue) {
                return Err(BindingConfigError::Invalid {
                    path: format!("{at}.queue"),
                    message: format!("the queue {} has two consumers", consumer.queue),
                });
            }
            config.consumers.push(consumer);
        }
    }
    Ok(config)
}
