//! The SQLite that pyflare links, with the row counters of Cloudflare's D1.
//!
//! D1 reports for each statement `meta.rows_read` and `meta.rows_written`
//! as its patched SQLite counts them: a row is read where a cursor lands on
//! it (each seek, each row a scan visits, each row `count(*)` counts) and
//! written for each table row and index entry an insert writes and each row
//! a delete removes. `build.rs` compiles SQLite with those counters, per
//! connection, started from zero by each statement the caller runs;
//! [`take_counts`] reads and clears them, [`take_counts_and_size`] also
//! gives the database's size, in the same visit to sqlx's worker thread.
//!
//! Not emulated: the counts follow the query plans of this SQLite (the
//! version `libsqlite3-sys` bundles); production's newer SQLite may plan a
//! query differently and count other rows.

use sqlx::SqliteConnection;

/// Rows a connection read and wrote since the counts were last taken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RowCounts {
    pub read: u64,
    pub written: u64,
}

/// Reads and clears the connection's counts: those of the last statement
/// it ran.
pub async fn take_counts(conn: &mut SqliteConnection) -> Result<RowCounts, sqlx::Error> {
    let mut handle = conn.lock_handle().await?;
    let db = handle.as_raw_handle();
    let mut counts = RowCounts::default();
    // SAFETY: `db` is the open connection, and `handle` keeps sqlx's worker
    // thread (the only other user of it) out until it is dropped; the
    // function only reads and clears two integers of it.
    #[allow(unsafe_code)]
    unsafe {
        ffi::pyflare_rows_take(db.as_ptr(), &mut counts.read, &mut counts.written);
    }
    Ok(counts)
}

/// [`take_counts`], and the size of the main database in bytes (`None` if
/// SQLite could not read its page count), in one visit: each visit to
/// sqlx's worker thread costs a few thread wake-ups, more than the query.
pub async fn take_counts_and_size(
    conn: &mut SqliteConnection,
) -> Result<(RowCounts, Option<u64>), sqlx::Error> {
    let mut handle = conn.lock_handle().await?;
    let db = handle.as_raw_handle();
    let mut counts = RowCounts::default();
    // SAFETY: as in `take_counts`; the size is read with SQLite's own API
    // (a PRAGMA statement prepared, stepped and finalized) on the
    // connection `handle` holds.
    #[allow(unsafe_code)]
    let size = unsafe {
        ffi::pyflare_rows_take(db.as_ptr(), &mut counts.read, &mut counts.written);
        ffi::pyflare_database_size(db.as_ptr())
    };
    Ok((counts, u64::try_from(size).ok()))
}

#[allow(unsafe_code)]
mod ffi {
    use libsqlite3_sys::sqlite3;

    unsafe extern "C" {
        /// Defined by `build.rs` in the SQLite it compiles.
        pub(super) fn pyflare_rows_take(db: *mut sqlite3, read: *mut u64, written: *mut u64);
        /// Defined by `build.rs`: `page_count * page_size` of `main`, or -1.
        pub(super) fn pyflare_database_size(db: *mut sqlite3) -> i64;
    }
}

#[cfg(test)]
mod tests;
