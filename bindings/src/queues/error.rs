//! Errors of `send` and `sendBatch` as the worker sees them. Messages from
//! workerd's client (cloudflare/workerd src/workerd/api/queue.c++ at
//! 407e074c: `validateContentType`, `serialize`, `WorkerQueue::send`,
//! `WorkerQueue::sendBatch`) and from the queue service as Miniflare
//! answers for it (workers-sdk packages/miniflare/src/workers/queues/
//! broker.worker.ts, miniflare 4.20260426.0), which workerd prefixes with
//! `Queue send failed: ` or `Queue sendBatch failed: `; checked against
//! Miniflare with a JavaScript worker.

use super::limits::*;
use crate::error::{CfError, JsClass};

/// Which producer method failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `send`.
    Send,
    /// `sendBatch`.
    SendBatch,
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Send => "send",
            Self::SendBatch => "sendBatch",
        })
    }
}

/// A producer call that Cloudflare refuses.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// `send(undefined)`.
    #[error("Message body cannot be undefined")]
    UndefinedBody,
    /// A `contentType` that is not text, bytes, json or v8.
    #[error("Unsupported queue message content type: {0}")]
    ContentType(String),
    /// `contentType: "text"` with something else than a string.
    #[error("Content Type \"text\" requires a value of type string, but received: {0}")]
    NotText(String),
    /// `contentType: "bytes"` with something else than an ArrayBufferView.
    #[error("Content Type \"bytes\" requires a value of type ArrayBufferView, but received: {0}")]
    NotBytes(String),
    /// `sendBatch` of something that cannot be iterated.
    #[error(
        "Failed to execute 'sendBatch' on 'WorkerQueue': parameter 1 is not of type 'Sequence'."
    )]
    NotSequence,
    /// `sendBatch([])`.
    #[error("sendBatch() requires at least one message")]
    EmptyBatch,
    /// One message over 128 KB.
    #[error("Queue send failed: message length of {0} bytes exceeds limit of {MAX_MESSAGE_BYTES}")]
    MessageTooLarge(usize),
    /// More than 100 messages in a batch.
    #[error(
        "Queue sendBatch failed: batch message count of {0} exceeds limit of {MAX_BATCH_MESSAGES}"
    )]
    TooManyMessages(usize),
    /// A message of a batch over 128 KB.
    #[error(
        "Queue sendBatch failed: message in batch has length {0} bytes which exceeds single message size limit of {MAX_MESSAGE_BYTES}"
    )]
    BatchMessageTooLarge(usize),
    /// A batch over 256 KB.
    #[error("Queue sendBatch failed: batch size of {0} bytes exceeds limit of {MAX_BATCH_BYTES}")]
    BatchTooLarge(usize),
    /// A delay outside 0 to 86,400 seconds. Miniflare means to answer this
    /// (its status text carries a newline, so workerd shows `Internal
    /// Server Error` instead); pyflare gives the reason.
    #[error("Queue {op} failed: message delay {delay} is invalid: {reason}")]
    BadDelay {
        /// The method.
        op: Op,
        /// The delay given.
        delay: i64,
        /// zod's words for the range.
        reason: &'static str,
    },
    /// The call's arguments are not what the shim sends.
    #[error("Queue {0} failed: Bad Request")]
    BadRequest(Op, String),
    /// The store failed; the cause is for the terminal.
    #[error("Queue {0} failed: Internal Server Error")]
    Store(Op, String),
}

impl CfError for QueueError {
    fn js_class(&self) -> JsClass {
        match self {
            Self::UndefinedBody
            | Self::ContentType(_)
            | Self::NotText(_)
            | Self::NotBytes(_)
            | Self::NotSequence
            | Self::EmptyBatch => JsClass::TypeError,
            _ => JsClass::Error,
        }
    }
}

/// Checks a delay in seconds (`delaySeconds`, `delivery_delay`).
pub fn check_delay(op: Op, delay: i64) -> Result<u32, QueueError> {
    if delay < 0 {
        return Err(QueueError::BadDelay {
            op,
            delay,
            reason: "Number must be greater than or equal to 0",
        });
    }
    if delay > MAX_DELAY_SECS {
        return Err(QueueError::BadDelay {
            op,
            delay,
            reason: "Number must be less than or equal to 86400",
        });
    }
    Ok(delay as u32)
}
