//! What bindings share about the state folder on disk: telling a read-only
//! folder apart from a damaged store, so errors say which it is; opening a
//! store at start; a SQLite store's one connection.

use sqlx::ConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::{Mutex, MutexGuard};

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

/// A store's one SQLite connection (D1, queues, R2's local metadata), opened
/// now and never closed, which its statements take in turn: they run one at
/// a time and the store never waits on itself. Not a sqlx pool of one: a
/// pool pings a connection each time it is given back (sqlx 0.8), one more
/// round trip to sqlx's worker thread after every statement, and the next
/// statement waits behind it. For a D1 select, pyflare's threads blocked
/// ~7.6 times per request with the pool and ~5.9 without. A transaction
/// dropped before its commit is rolled back by sqlx before the connection's
/// next statement, as in a pool.
///
/// A store's async methods run their SQL on the held connection with
/// `sqlx::query` or sqlx's `Executor`, not `sqlx::raw_sql(..).execute`:
/// that one makes rustc reject their futures as not `Send`
/// ("implementation of `Executor` is not general enough"), where
/// `Executor::execute` of the same script does not.
#[derive(Debug, Clone)]
pub struct OneConnection(Arc<Mutex<SqliteConnection>>);

/// How long a statement waits for the connection: sqlx's pool default.
pub const ACQUIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The connection, held until dropped.
pub type Held<'a> = MutexGuard<'a, SqliteConnection>;

impl OneConnection {
    /// Opens the connection.
    pub async fn open(options: &SqliteConnectOptions) -> Result<Self, sqlx::Error> {
        Ok(Self(Arc::new(Mutex::new(options.connect().await?))))
    }

    /// The connection, once no other statement holds it; a statement that
    /// holds it longer than [`ACQUIRE_TIMEOUT`] fails the others as sqlx's
    /// pool did ("pool timed out while waiting for an open connection").
    pub async fn acquire(&self) -> Result<Held<'_>, sqlx::Error> {
        tokio::time::timeout(ACQUIRE_TIMEOUT, self.0.lock())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)
    }
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
