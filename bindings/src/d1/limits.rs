//! D1 limits, from <https://developers.cloudflare.com/d1/platform/limits/>.

/// Bound parameters per query.
pub const MAX_BOUND_PARAMETERS: usize = 100;
/// Longest SQL statement, in bytes.
pub const MAX_SQL_BYTES: usize = 100_000;
/// Largest string or BLOB value, in bytes.
pub const MAX_VALUE_BYTES: usize = 2_000_000;
/// Integers beyond this lose precision in JavaScript numbers (Number.MAX_SAFE_INTEGER).
pub const MAX_SAFE_INTEGER: i64 = 9_007_199_254_740_991;
