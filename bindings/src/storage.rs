//! What bindings share about the state folder on disk: telling a read-only
//! folder apart from a damaged store, so errors say which it is; opening a
//! store at start; a SQLite store's one connection.

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use std::future::Future;
use std::path::Path;

/// Runs `open` to its end now when pyflare runs on a multi-threaded runtime
/// (`pyflare dev`), so a store that cannot be opened stops pyflare at start
/// with its path instead of failing calls later. `None` elsewhere (unit
/// tests), where stores open on first use.
pub fn open_at_start<F: Future>(open: F) -> Option<F::Output> {
    let runtime = tokio::runtime::Handle::try_current().ok()?;
    if runtime.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
        return None;
    }
    Some(tokio::task::block_in_place(|| runtime.block_on(open)))
}

/// A pool of one SQLite connection, opened now and never closed: the
/// store's statements run one at a time and it never waits on itself. It is
/// not pinged before each use (a file on this machine does not drop a
/// connection): each ping is a round trip to sqlx's worker thread.
pub async fn one_connection(options: SqliteConnectOptions) -> Result<SqlitePool, sqlx::Error> {
    SqlitePoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .test_before_acquire(false)
        .connect_with(options)
        .await
}

/// Whether pyflare cannot create a file in `dir` (a read-only file system,
/// a folder without write permission, an immutable folder). Probes by
/// creating and removing a file; a folder that does not exist is judged by
/// its nearest existing parent.
pub fn read_only(dir: &Path) -> bool {
    let mut dir = dir;
    while !dir.exists() {
        match dir.parent() {
            Some(parent) => dir = parent,
            None => return false,
        }
    }
    let probe = dir.join(format!(".pyflare-write-probe-{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            false
        }
        Err(e) => matches!(
            e.kind(),
            std::io::ErrorKind::ReadOnlyFilesystem | std::io::ErrorKind::PermissionDenied
        ),
    }
}
