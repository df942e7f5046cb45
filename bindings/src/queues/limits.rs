//! Cloudflare Queues' limits
//! (<https://developers.cloudflare.com/queues/platform/limits/>) and
//! consumer defaults
//! (<https://developers.cloudflare.com/queues/configuration/configure-queues/#consumer>).
//! 1 KB is 1,000 bytes, as Miniflare counts them
//! (workers-sdk packages/miniflare/src/workers/queues/broker.worker.ts).

/// Largest message body, in bytes ("128 KB").
pub const MAX_MESSAGE_BYTES: usize = 128_000;
/// Most messages in one `sendBatch` and in one delivered batch.
pub const MAX_BATCH_MESSAGES: u32 = 100;
/// Largest `sendBatch`, in bytes of message bodies ("256 KB").
pub const MAX_BATCH_BYTES: usize = 256_000;
/// Longest delivery or retry delay, in seconds (24 hours).
pub const MAX_DELAY_SECS: i64 = 86_400;
/// Longest `max_batch_timeout`, in seconds.
pub const MAX_BATCH_TIMEOUT_SECS: f64 = 60.0;
/// Largest `max_retries`.
pub const MAX_RETRIES: u32 = 100;

/// Production's default `max_batch_size` (Miniflare uses 5).
pub const DEFAULT_BATCH_SIZE: u32 = 10;
/// Production's default `max_batch_timeout`, in seconds (Miniflare uses 1).
pub const DEFAULT_BATCH_TIMEOUT_SECS: f64 = 5.0;
/// Production's default `max_retries` (Miniflare uses 2).
pub const DEFAULT_MAX_RETRIES: u32 = 3;
