//! Durable Object errors as the worker sees them. The wording is workerd's,
//! as a JavaScript Durable Object under Miniflare 4 (4.20260426.0) answers,
//! and Cloudflare's limits page
//! (<https://developers.cloudflare.com/durable-objects/platform/limits/>)
//! for the limits Miniflare does not enforce.

use crate::error::{CfError, JsClass};

use super::limits::{MAX_KEY_BYTES, MAX_VALUE_BYTES};

/// Everything a Durable Object call can fail with.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs, reason = "each variant's message is its documentation")]
pub enum DurableObjectError {
    #[error("Invalid Durable Object ID: must be 64 hex digits")]
    IdNotHex,
    #[error("put() called with undefined value.")]
    UndefinedValue,
    #[error("List limit must be positive.")]
    ListLimit,
    #[error("list() cannot be called with both start and startAfter values.")]
    StartAndStartAfter,
    #[error("Maximum number of keys is 128.")]
    TooManyKeys,
    #[error("Maximum number of pairs is 128.")]
    TooManyPairs,
    #[error("Keys cannot be larger than {MAX_KEY_BYTES} bytes.")]
    KeyTooLarge,
    #[error("Values cannot be larger than {MAX_VALUE_BYTES} bytes.")]
    ValueTooLarge,
    #[error("string or blob too big: SQLITE_TOOBIG")]
    EntryTooLarge,
    #[error(
        "SQL is not enabled for this Durable Object class. To enable it, change `new_classes` to `new_sqlite_classes` within the 'migrations' field in your wrangler.jsonc or wrangler.toml file. If using workerd directly,set `enableSql = true` in your workerd config for the class. Note that this change cannot be made after the class is already deployed to production."
    )]
    SqlNotEnabled,
    #[error(
        "To execute a transaction, please use the state.storage.transaction() or state.storage.transactionSync() APIs instead of the SQL BEGIN TRANSACTION or SAVEPOINT statements. The JavaScript API is safer because it will automatically roll back on exceptions, and because it interacts correctly with Durable Objects' automatic atomic write coalescing."
    )]
    TransactionStatement,
    #[error("The value cannot be converted because it is not a valid Date.")]
    BadAlarmTime,
    #[error("Wrong number of parameter bindings for SQL query.")]
    WrongParameterCount,
    /// SQLite's error, `<message>[ at offset N]: <CODE>`.
    #[error("{0}")]
    Sql(String),
    /// The object's storage failed (the detail is logged too).
    #[error("Durable Object storage operation failed: {0}")]
    Storage(String),
    /// A call pyflare's own shim should never make.
    #[error("pyflare: bad Durable Object call: {0}")]
    BadRequest(String),
    /// The object could not be reached (pyflare is stopping, say).
    #[error("{0}")]
    Unreachable(String),
}

impl CfError for DurableObjectError {
    fn js_class(&self) -> JsClass {
        match self {
            Self::IdNotHex
            | Self::UndefinedValue
            | Self::ListLimit
            | Self::StartAndStartAfter
            | Self::BadAlarmTime
            | Self::BadRequest(_) => JsClass::TypeError,
            Self::KeyTooLarge | Self::ValueTooLarge | Self::TooManyKeys | Self::TooManyPairs => {
                JsClass::RangeError
            }
            Self::EntryTooLarge
            | Self::Storage(_)
            | Self::Unreachable(_)
            | Self::SqlNotEnabled
            | Self::TransactionStatement
            | Self::WrongParameterCount
            | Self::Sql(_) => JsClass::Error,
        }
    }
}
