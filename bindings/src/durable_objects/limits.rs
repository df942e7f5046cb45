//! Durable Object limits
//! (<https://developers.cloudflare.com/durable-objects/platform/limits/>).

/// Keys one `get`, `put` or `delete` of many may name.
pub const MAX_KEYS_PER_CALL: usize = 128;

/// A key's length in UTF-8 bytes (key-value-backed classes).
pub const MAX_KEY_BYTES: usize = 2048;

/// A value's serialized length (key-value-backed classes).
pub const MAX_VALUE_BYTES: usize = 128 * 1024;

/// A key and its value together (SQLite-backed classes).
pub const MAX_SQLITE_ENTRY_BYTES: usize = 2 * 1024 * 1024;

/// Length of an object id in hex digits.
pub const ID_HEX_DIGITS: usize = 64;
