//! `QueueCall`: the wire methods of the producer shim. The shim serializes
//! each body as its content type says (text, JSON, bytes, or V8's
//! structured clone) and sends what Rust needs to check it as workerd and
//! the queue service would: the body's JavaScript type, its content type
//! as given, and its size. The bodies follow as one call body, one after
//! another.

use serde::Deserialize;

/// One message as the shim describes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageArgs {
    /// `contentType` as the worker gave it (none: json).
    #[serde(default)]
    pub content_type: Option<String>,
    /// `typeof body`.
    #[serde(rename = "type")]
    pub js_type: String,
    /// Whether the body is an ArrayBufferView.
    #[serde(default)]
    pub view: bool,
    /// Bytes of the serialized body in the call body.
    #[serde(default)]
    pub size: usize,
    /// `delaySeconds` of this message (`sendBatch`).
    #[serde(default)]
    pub delay_seconds: Option<i64>,
}

/// A call from the producer shim.
#[derive(Debug, Deserialize)]
#[serde(tag = "method", content = "args", rename_all = "camelCase")]
pub enum QueueCall {
    /// `send(body, {contentType, delaySeconds})`.
    Send {
        /// The message.
        message: MessageArgs,
    },
    /// `sendBatch(messages, {delaySeconds})`.
    SendBatch {
        /// The messages; none when the argument was not iterable.
        #[serde(default)]
        messages: Option<Vec<MessageArgs>>,
        /// `delaySeconds` of the whole batch.
        #[serde(default, rename = "delaySeconds")]
        delay_seconds: Option<i64>,
    },
}
