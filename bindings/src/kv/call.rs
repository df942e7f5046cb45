//! `KvCall`: one variant per wire method the shim sends.

use serde::Deserialize;

/// A call from the KV shim; variant names are the wire method names.
#[derive(Debug, Deserialize)]
#[serde(tag = "method", content = "args", rename_all = "camelCase")]
pub enum KvCall {
    /// `get(key, type | {type, cacheTtl})`, also `getWithMetadata`.
    Get {
        /// The key.
        key: String,
        /// Response type; `text` when missing.
        #[serde(rename = "type", default)]
        kind: Option<String>,
        /// Validated and ignored: edge caching does not exist locally.
        #[serde(rename = "cacheTtl", default)]
        cache_ttl: Option<serde_json::Value>,
        /// Whether the metadata is wanted too.
        #[serde(rename = "withMetadata", default)]
        with_metadata: bool,
    },
    /// Bulk `get([keys])` and `getWithMetadata([keys])`.
    GetBulk {
        /// The keys.
        keys: Vec<String>,
        /// `text` or `json`.
        #[serde(rename = "type", default)]
        kind: Option<String>,
        /// Validated and ignored.
        #[serde(rename = "cacheTtl", default)]
        cache_ttl: Option<serde_json::Value>,
        /// Whether the metadata is wanted too.
        #[serde(rename = "withMetadata", default)]
        with_metadata: bool,
    },
    /// `put(key, value, {expiration, expirationTtl, metadata})`; the value is the call body.
    Put {
        /// The key.
        key: String,
        /// Absolute expiry, seconds since the epoch.
        #[serde(default)]
        expiration: Option<serde_json::Value>,
        /// Expiry relative to now, seconds.
        #[serde(rename = "expirationTtl", default)]
        expiration_ttl: Option<serde_json::Value>,
        /// `JSON.stringify(metadata)`, when given.
        #[serde(default)]
        metadata: Option<String>,
        /// Set by the shim when the value was not a string or buffer.
        #[serde(rename = "badValue", default)]
        bad_value: bool,
    },
    /// `delete(key)`.
    Delete {
        /// The key.
        key: String,
    },
    /// `list({prefix, limit, cursor})`.
    List {
        /// Only keys starting with this.
        #[serde(default)]
        prefix: Option<String>,
        /// Page size, 1000 at most.
        #[serde(default)]
        limit: Option<serde_json::Value>,
        /// Where the previous page ended.
        #[serde(default)]
        cursor: Option<String>,
    },
}
