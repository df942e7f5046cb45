//! KV limits, from <https://developers.cloudflare.com/kv/platform/limits/>
//! and miniflare's `KVLimits` (workers-sdk packages/miniflare/src/workers/kv/constants.ts).

/// Longest key, in UTF-8 bytes.
pub const MAX_KEY_BYTES: usize = 512;
/// Largest value: 25 MiB.
pub const MAX_VALUE_BYTES: usize = 25 * 1024 * 1024;
/// Largest serialized metadata, in bytes.
pub const MAX_METADATA_BYTES: usize = 1024;
/// Shortest `expirationTtl`, and how far ahead an `expiration` must be.
pub const MIN_EXPIRATION_TTL_SECS: i64 = 60;
/// Smallest `cacheTtl` the runtime accepts (the reference emulator's 30; the docs say 60).
pub const MIN_CACHE_TTL_SECS: i64 = 30;
/// Most keys one `list` returns, and its default.
pub const MAX_LIST_KEYS: usize = 1000;
/// Most keys in one bulk `get`.
pub const MAX_BULK_KEYS: usize = 100;
