//! The SQLite that pyflare links, with the row counters of Cloudflare's D1.
//!
//! D1 reports for each statement `meta.rows_read` and `meta.rows_written`
//! as its patched SQLite counts them: a row is read where a cursor lands on
//! it (each seek, each row a scan visits, each row `count(*)` counts) and
//! written for each table row and index entry an insert writes and each row
//! a delete removes. `build.rs` compiles SQLite with those counters, per
//! connection; [`take_counts`] reads and clears them.
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

/// Reads and clears the connection's counts.
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

#[allow(unsafe_code)]
mod ffi {
    use libsqlite3_sys::sqlite3;

    unsafe extern "C" {
        /// Defined by `build.rs` in the SQLite it compiles.
        pub(super) fn pyflare_rows_take(db: *mut sqlite3, read: *mut u64, written: *mut u64);
    }
}

#[cfg(test)]
mod tests;
