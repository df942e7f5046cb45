//! R2's limits (<https://developers.cloudflare.com/r2/platform/limits/>),
//! with the values Miniflare checks locally
//! (workers-sdk packages/miniflare/src/workers/r2/constants.ts).

/// A key's UTF-8 length.
pub const MAX_KEY_BYTES: usize = 1024;
/// One upload (a put or a part): 5 GiB - 5 MiB.
pub const MAX_VALUE_BYTES: u64 = 5 * 1024 * 1024 * 1024 - 5 * 1024 * 1024;
/// Custom metadata, keys plus values, counted as Miniflare counts them.
pub const MAX_METADATA_BYTES: usize = 2048;
/// Objects per `list` page.
pub const MAX_LIST_KEYS: usize = 1000;
/// Objects per `list` page when metadata is included.
pub const MAX_LIST_KEYS_WITH_METADATA: usize = 100;
/// Keys per `delete` call.
pub const MAX_DELETE_KEYS: usize = 1000;
/// Every part of a multipart upload but the last is at least this long.
pub const MIN_PART_BYTES: u64 = 5 * 1024 * 1024;
/// Parts of one upload.
pub const MAX_PARTS: u32 = 10_000;
