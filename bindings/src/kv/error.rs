//! KV errors with Cloudflare's exact messages and classes.
//!
//! The first three come from workerd's client
//! (cloudflare/workerd src/workerd/api/kv.c++ `validateKeyName`); the
//! others are the KV service's HTTP errors, which the runtime prefixes with
//! `KV <OP> failed: <status> ` (reference: workers-sdk
//! packages/miniflare/src/workers/kv/validator.worker.ts and
//! packages/miniflare/test/plugins/kv/index.spec.ts).

use super::limits::{MAX_BULK_KEYS, MAX_KEY_BYTES, MAX_METADATA_BYTES, MAX_VALUE_BYTES};
use crate::error::{CfError, JsClass};

/// The operation named in `KV <OP> failed:` messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// get, getWithMetadata and list.
    Get,
    /// Bulk get.
    GetBulk,
    /// put.
    Put,
    /// delete.
    Delete,
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Get => "GET",
            Self::GetBulk => "GET_BULK",
            Self::Put => "PUT",
            Self::Delete => "DELETE",
        })
    }
}

/// Everything a KV call can fail with.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs, reason = "each variant's message is its documentation")]
pub enum KvError {
    #[error("Key name cannot be empty.")]
    EmptyKey,
    #[error("\"{0}\" is not allowed as a key name.")]
    DotKey(&'static str),
    #[error(
        "KV {op} failed: 414 UTF-8 encoded length of {len} exceeds key length limit of {MAX_KEY_BYTES}."
    )]
    KeyTooLong { op: Op, len: usize },
    #[error("KV PUT failed: 413 Value length of {0} exceeds limit of {MAX_VALUE_BYTES}.")]
    ValueTooLarge(usize),
    #[error("KV PUT failed: 413 Metadata length of {0} exceeds limit of {MAX_METADATA_BYTES}.")]
    MetadataTooLarge(usize),
    #[error(
        "KV PUT failed: 400 Invalid expiration_ttl of {0}. Please specify integer greater than 0."
    )]
    TtlNotPositive(String),
    #[error(
        "KV PUT failed: 400 Invalid expiration_ttl of {0}. Expiration TTL must be at least 60."
    )]
    TtlTooShort(String),
    #[error(
        "KV PUT failed: 400 Invalid expiration of {0}. Please specify integer greater than the current number of seconds since the UNIX epoch."
    )]
    ExpirationInPast(String),
    #[error(
        "KV PUT failed: 400 Invalid expiration of {0}. Expiration times must be at least 60 seconds in the future."
    )]
    ExpirationTooSoon(String),
    #[error("KV {op} failed: 400 Invalid cache_ttl of {value}. Cache TTL must be at least 30.")]
    CacheTtl { op: Op, value: String },
    #[error(
        "KV GET failed: 400 Invalid key_count_limit of {0}. Please specify an integer greater than 0."
    )]
    ListLimitTooSmall(String),
    #[error(
        "KV GET failed: 400 Invalid key_count_limit of {0}. Please specify an integer less than 1000."
    )]
    ListLimitTooLarge(String),
    #[error(
        "Unknown response type. Possible types are \"text\", \"arrayBuffer\", \"json\", and \"stream\"."
    )]
    UnknownType,
    #[error("KV GET_BULK failed: 400 You can request a maximum of {MAX_BULK_KEYS} keys")]
    TooManyKeys,
    #[error("KV GET_BULK failed: 400 You must request a minimum of 1 key")]
    NoKeys,
    #[error("KV GET_BULK failed: 400 \"{0}\" is not a valid type. Use \"json\" or \"text\"")]
    BulkType(String),
    #[error(
        "KV GET_BULK failed: 400 At least one of the requested keys corresponds to a non-{0} value"
    )]
    BulkNotJson(String),
    #[error(
        "KV put() accepts only strings, ArrayBuffers, ArrayBufferViews, and ReadableStreams as values."
    )]
    BadValueType,
    #[error("KV {0} failed: 400 Invalid cursor")]
    BadCursor(Op),
    #[error("KV {0} failed: 500 Internal Server Error")]
    Store(Op, #[source] super::store::StoreError),
    #[error("KV {0} failed: 400 Bad Request")]
    BadRequest(Op, String),
}

impl CfError for KvError {
    fn js_class(&self) -> JsClass {
        match self {
            Self::EmptyKey | Self::DotKey(_) | Self::UnknownType | Self::BadValueType => {
                JsClass::TypeError
            }
            _ => JsClass::Error,
        }
    }
}

#[cfg(test)]
#[test]
fn kv_error_messages_match_cloudflare() {
    let table: &[(KvError, &str, JsClass)] = &[
        (
            KvError::EmptyKey,
            "Key name cannot be empty.",
            JsClass::TypeError,
        ),
        (
            KvError::DotKey(".."),
            "\"..\" is not allowed as a key name.",
            JsClass::TypeError,
        ),
        (
            KvError::KeyTooLong {
                op: Op::Get,
                len: 513,
            },
            "KV GET failed: 414 UTF-8 encoded length of 513 exceeds key length limit of 512.",
            JsClass::Error,
        ),
        (
            KvError::TtlNotPositive("0".into()),
            "KV PUT failed: 400 Invalid expiration_ttl of 0. Please specify integer greater than 0.",
            JsClass::Error,
        ),
        (
            KvError::TtlTooShort("30".into()),
            "KV PUT failed: 400 Invalid expiration_ttl of 30. Expiration TTL must be at least 60.",
            JsClass::Error,
        ),
        (
            KvError::MetadataTooLarge(1025),
            "KV PUT failed: 413 Metadata length of 1025 exceeds limit of 1024.",
            JsClass::Error,
        ),
        (
            KvError::ValueTooLarge(26214401),
            "KV PUT failed: 413 Value length of 26214401 exceeds limit of 26214400.",
            JsClass::Error,
        ),
        (
            KvError::CacheTtl {
                op: Op::Get,
                value: "10".into(),
            },
            "KV GET failed: 400 Invalid cache_ttl of 10. Cache TTL must be at least 30.",
            JsClass::Error,
        ),
        (
            KvError::ListLimitTooLarge("1001".into()),
            "KV GET failed: 400 Invalid key_count_limit of 1001. Please specify an integer less than 1000.",
            JsClass::Error,
        ),
        (
            KvError::TooManyKeys,
            "KV GET_BULK failed: 400 You can request a maximum of 100 keys",
            JsClass::Error,
        ),
    ];
    for (error, message, class) in table {
        assert_eq!(&error.to_string(), message);
        assert_eq!(error.js_class(), *class, "{message}");
    }
}
