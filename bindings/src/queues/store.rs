//! Queue messages behind [`QueueStore`]: [`SqliteQueueStore`], one SQLite
//! database for every queue of a state folder, `<state>/queues/
//! queues.sqlite3`, written through sqlx with a write-ahead log and
//! `synchronous = FULL`, so a message whose `send` returned is on disk
//! (it survives `kill -9`). sqlx types never leave this file.
//!
//! A message is a row: its queue, id, send time, content type and body,
//! how many deliveries it has had (`attempts`), when it may next be
//! delivered (`visible_at_ms`) and whether a delivery holds it now
//! (`leased`). Taking a batch leases its rows and counts the attempt in one
//! statement; what the handler did with them is applied in one
//! transaction (deleted, due again later, moved to the dead letter queue,
//! or dropped). Leases left by a pyflare that was killed are released when
//! the next one starts delivering.

use crate::storage::OneConnection;
use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Connection, Executor, Row, SqliteConnection};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A message to store.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// `text`, `json`, `bytes` or `v8`.
    pub content_type: String,
    /// The serialized body.
    pub body: Vec<u8>,
    /// Milliseconds on the clock before it may be delivered.
    pub visible_at_ms: i64,
}

/// A stored message taken for delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Leased {
    /// Row number.
    pub seq: i64,
    /// The message's id (32 hex digits).
    pub id: String,
    /// When it was sent, Unix milliseconds.
    pub timestamp_ms: i64,
    /// Its content type.
    pub content_type: String,
    /// Its body.
    pub body: Vec<u8>,
    /// Deliveries so far, this one included.
    pub attempts: u32,
}

/// What becomes of a delivered message.
#[derive(Debug, Clone, PartialEq)]
pub enum Settle {
    /// Acknowledged: deleted.
    Ack,
    /// Delivered again once the clock reaches `visible_at_ms`.
    Retry {
        /// When.
        visible_at_ms: i64,
    },
    /// Moved to another queue with the same id and send time, as a new
    /// message there.
    DeadLetter {
        /// The dead letter queue.
        queue: String,
        /// When it is due there (now).
        visible_at_ms: i64,
    },
    /// Deleted after its last retry.
    Drop,
    /// Its delivery never happened (pyflare stopped): due again at once, the
    /// attempt not counted.
    Release,
}

/// Messages of a queue that could be delivered now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Due {
    /// How many, at most the batch size asked.
    pub count: u32,
    /// The earliest time one of them became due.
    pub oldest_ms: Option<i64>,
}

/// A queue's backlog, as `send` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backlog {
    /// Messages not yet acknowledged.
    pub count: u64,
    /// Their bytes.
    pub bytes: u64,
    /// The oldest one's send time.
    pub oldest_ms: Option<i64>,
}

/// One queue's counts, for `/cdn-cgi/pyflare/queues` and `pyflare queues list`.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct QueueCounts {
    /// The queue.
    pub queue: String,
    /// Due now, waiting for a delivery.
    pub pending: u64,
    /// Due later (a delivery delay or a retry delay).
    pub delayed: u64,
    /// Held by a delivery now.
    pub in_flight: u64,
    /// Acknowledged since the state folder was made.
    pub acked: u64,
    /// Retried (a failed or `retry()`ed delivery).
    pub retried: u64,
    /// Moved to the dead letter queue.
    pub dead_lettered: u64,
    /// Dropped after the last retry (no dead letter queue).
    pub dropped: u64,
}

/// The operations queues need of a storage engine.
#[async_trait]
pub trait QueueStore: Send + Sync + std::fmt::Debug {
    /// Stores `messages` on `queue`, all or none, durably; then the
    /// queue's backlog.
    async fn send(
        &self,
        queue: &str,
        timestamp_ms: i64,
        messages: Vec<NewMessage>,
    ) -> Result<Backlog, String>;
    /// How many messages of `queue` (at most `limit`) are due at `now_ms`.
    async fn due(&self, queue: &str, now_ms: i64, limit: u32) -> Result<Due, String>;
    /// When the next message of `queue` not yet due at `now_ms` becomes due.
    async fn next_due(&self, queue: &str, now_ms: i64) -> Result<Option<i64>, String>;
    /// Takes up to `limit` due messages for a delivery, oldest first,
    /// counting the attempt.
    async fn lease(&self, queue: &str, now_ms: i64, limit: u32) -> Result<Vec<Leased>, String>;
    /// Applies what became of delivered messages, in one transaction.
    async fn settle(&self, queue: &str, outcomes: &[(i64, Settle)]) -> Result<(), String>;
    /// Releases every lease (left by a pyflare that did not stop cleanly).
    async fn recover(&self) -> Result<u64, String>;
    /// Every queue's counts at `now_ms`.
    async fn counts(&self, now_ms: i64) -> Result<Vec<QueueCounts>, String>;
    /// Moves the write-ahead log into the database file.
    async fn checkpoint(&self) -> Result<(), String>;
}

/// The counts of `queue` in `by_queue`, made if missing.
fn counts_of(by_queue: &mut BTreeMap<String, QueueCounts>, queue: String) -> &mut QueueCounts {
    let entry = by_queue.entry(queue.clone()).or_default();
    entry.queue = queue;
    entry
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS messages (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  queue TEXT NOT NULL,
  id TEXT NOT NULL DEFAULT (lower(hex(randomblob(16)))),
  timestamp_ms INTEGER NOT NULL,
  content_type TEXT NOT NULL,
  body BLOB NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  visible_at_ms INTEGER NOT NULL,
  leased INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS messages_due ON messages (queue, leased, visible_at_ms, seq);
CREATE TABLE IF NOT EXISTS deliver_now (queue TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS counters (
  queue TEXT PRIMARY KEY,
  acked INTEGER NOT NULL DEFAULT 0,
  retried INTEGER NOT NULL DEFAULT 0,
  dead_lettered INTEGER NOT NULL DEFAULT 0,
  dropped INTEGER NOT NULL DEFAULT 0
);
";

/// Every queue of a state folder in one SQLite file.
#[derive(Debug)]
pub struct SqliteQueueStore {
    db: OneConnection,
    path: PathBuf,
    /// Woken by every send and deliver-now in this process, so consumers
    /// do not wait for their next poll.
    pub wake: tokio::sync::Notify,
    /// Queues asked to deliver what is pending now, whatever the batch
    /// timeout says.
    flush: Mutex<HashSet<String>>,
    recovered: AtomicBool,
}

fn sqlite_error(error: sqlx::Error) -> String {
    error.to_string()
}

impl SqliteQueueStore {
    /// The database file under a state folder.
    pub fn path_in(persist_root: &Path) -> PathBuf {
        persist_root.join("queues").join("queues.sqlite3")
    }

    /// Opens (or creates) the database at `path`.
    pub async fn open(path: &Path) -> Result<Self, String> {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // A send that returned is on disk: every commit is synced.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5));
        // One connection: writes are serialized anyway.
        let db = OneConnection::open(&options).await.map_err(sqlite_error)?;
        prepare(&mut *db.acquire().await.map_err(sqlite_error)?).await?;
        Ok(Self {
            db,
            path: path.to_path_buf(),
            wake: tokio::sync::Notify::new(),
            flush: Mutex::new(HashSet::new()),
            recovered: AtomicBool::new(false),
        })
    }

    /// The store at `path`, shared by every user in this process (the
    /// bindings of a reloaded worker, the CLI).
    pub async fn open_shared(path: &Path) -> Result<Arc<Self>, String> {
        static OPEN: Mutex<BTreeMap<PathBuf, Arc<SqliteQueueStore>>> = Mutex::new(BTreeMap::new());
        let key = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        if let Some(store) = OPEN.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Ok(store.clone());
        }
        let store = Arc::new(Self::open(path).await?);
        Ok(OPEN
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_insert(store)
            .clone())
    }

    /// Its file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Asks `queue`'s consumer to deliver its pending messages now.
    pub fn request_flush(&self, queue: &str) {
        self.flush
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(queue.to_owned());
        self.wake.notify_waiters();
    }

    /// Whether a flush of `queue` was asked (and clears the request).
    pub fn take_flush(&self, queue: &str) -> bool {
        self.flush
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(queue)
    }

    /// Asks the consumer of `queue` in whatever `pyflare dev` uses this
    /// database to deliver its pending messages now (`pyflare queues
    /// deliver`): a row its consumer finds when it next looks.
    pub async fn request_flush_durably(&self, queue: &str) -> Result<(), String> {
        let mut conn = self.db.acquire().await.map_err(sqlite_error)?;
        sqlx::query("INSERT OR IGNORE INTO deliver_now (queue) VALUES (?)")
            .bind(queue)
            .execute(&mut *conn)
            .await
            .map_err(sqlite_error)?;
        Ok(())
    }

    /// Whether a `pyflare queues deliver` asked for `queue` (and clears it).
    pub async fn take_flush_request(&self, queue: &str) -> Result<bool, String> {
        let mut conn = self.db.acquire().await.map_err(sqlite_error)?;
        let asked: Option<i64> = sqlx::query_scalar("SELECT 1 FROM deliver_now WHERE queue = ?")
            .bind(queue)
            .fetch_optional(&mut *conn)
            .await
            .map_err(sqlite_error)?;
        if asked.is_none() {
            return Ok(false);
        }
        sqlx::query("DELETE FROM deliver_now WHERE queue = ?")
            .bind(queue)
            .execute(&mut *conn)
            .await
            .map_err(sqlite_error)?;
        Ok(true)
    }

    /// Releases the leases a killed pyflare left, once per process (the
    /// first consumer to start does it; a reload does not, as the old
    /// worker's deliveries may still be running).
    pub async fn recover_once(&self) -> Result<u64, String> {
        if self.recovered.swap(true, Ordering::SeqCst) {
            return Ok(0);
        }
        self.recover().await
    }
}

/// Creates the tables of a new file and checks an old one.
async fn prepare(conn: &mut SqliteConnection) -> Result<(), String> {
    // Every statement of the script; not `sqlx::raw_sql` (see `OneConnection`).
    conn.execute(SCHEMA).await.map_err(sqlite_error)?;
    let check: String = sqlx::query_scalar("PRAGMA quick_check")
        .fetch_one(&mut *conn)
        .await
        .map_err(sqlite_error)?;
    if check != "ok" {
        return Err(format!("the file is damaged: {check}"));
    }
    Ok(())
}

#[async_trait]
impl QueueStore for SqliteQueueStore {
    async fn send(
        &self,
        queue: &str,
        timestamp_ms: i64,
        messages: Vec<NewMessage>,
    ) -> Result<Backlog, String> {
        let mut conn = self.db.acquire().await.map_err(sqlite_error)?;
        let mut tx = conn.begin().await.map_err(sqlite_error)?;
        for message in messages {
            sqlx::query(
                "INSERT INTO messages (queue, timestamp_ms, content_type, body, visible_at_ms) VALUES (?, ?, ?, ?, ?)",
            )
            .bind(queue)
            .bind(timestamp_ms)
            .bind(message.content_type)
            .bind(message.body)
            .bind(message.visible_at_ms)
            .execute(&mut *tx)
            .await
            .map_err(sqlite_error)?;
        }
        let row = sqlx::query(
            "SELECT COUNT(*), COALESCE(SUM(length(body)), 0), MIN(timestamp_ms) FROM messages WHERE queue = ?",
        )
        .bind(queue)
        .fetch_one(&mut *tx)
        .await
        .map_err(sqlite_error)?;
        tx.commit().await.map_err(sqlite_error)?;
        self.wake.notify_waiters();
        Ok(Backlog {
            count: row.get::<i64, _>(0) as u64,
            bytes: row.get::<i64, _>(1) as u64,
            oldest_ms: row.get::<Option<i64>, _>(2),
        })
    }

    async fn due(&self, queue: &str, now_ms: i64, limit: u32) -> Result<Due, String> {
        let mut conn = self.db.acquire().await.map_err(sqlite_error)?;
        let row = sqlx::query(
            "SELECT COUNT(*), MIN(visible_at_ms) FROM (SELECT visible_at_ms FROM messages
             WHERE queue = ? AND leased = 0 AND visible_at_ms <= ? ORDER BY visible_at_ms, seq LIMIT ?)",
        )
        .bind(queue)
        .bind(now_ms)
        .bind(i64::from(limit))
        .fetch_one(&mut *conn)
        .await
        .map_err(sqlite_error)?;
        Ok(Due {
            count: row.get::<i64, _>(0) as u32,
            oldest_ms: row.get::<Option<i64>, _>(1),
        })
    }

    async fn next_due(&self, queue: &str, now_ms: i64) -> Result<Option<i64>, String> {
        let mut conn = self.db.acquire().await.map_err(sqlite_error)?;
        sqlx::query_scalar(
            "SELECT MIN(visible_at_ms) FROM messages WHERE queue = ? AND leased = 0 AND visible_at_ms > ?",
        )
        .bind(queue)
        .bind(now_ms)
        .fetch_one(&mut *conn)
        .await
        .map_err(sqlite_error)
    }

    async fn lease(&self, queue: &str, now_ms: i64, limit: u32) -> Result<Vec<Leased>, String> {
        let mut conn = self.db.acquire().await.map_err(sqlite_error)?;
        let rows = sqlx::query(
            "UPDATE messages SET leased = 1, attempts = attempts + 1 WHERE seq IN (
               SELECT seq FROM messages WHERE queue = ? AND leased = 0 AND visible_at_ms <= ?
               ORDER BY visible_at_ms, seq LIMIT ?)
             RETURNING seq, id, timestamp_ms, content_type, body, attempts, visible_at_ms",
        )
        .bind(queue)
        .bind(now_ms)
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await
        .map_err(sqlite_error)?;
        let mut leased: Vec<(i64, Leased)> = rows
            .iter()
            .map(|row| {
                (
                    row.get::<i64, _>(6),
                    Leased {
                        seq: row.get(0),
                        id: row.get(1),
                        timestamp_ms: row.get(2),
                        content_type: row.get(3),
                        body: row.get(4),
                        attempts: row.get::<i64, _>(5) as u32,
                    },
                )
            })
            .collect();
        leased.sort_by_key(|(visible, m)| (*visible, m.seq));
        Ok(leased.into_iter().map(|(_, m)| m).collect())
    }

    async fn settle(&self, queue: &str, outcomes: &[(i64, Settle)]) -> Result<(), String> {
        let mut conn = self.db.acquire().await.map_err(sqlite_error)?;
        let mut tx = conn.begin().await.map_err(sqlite_error)?;
        let (mut acked, mut retried, mut dead, mut dropped) = (0i64, 0i64, 0i64, 0i64);
        for (seq, settle) in outcomes {
            let query = match settle {
                Settle::Ack => {
                    acked += 1;
                    sqlx::query("DELETE FROM messages WHERE seq = ?").bind(seq)
                }
                Settle::Drop => {
                    dropped += 1;
                    sqlx::query("DELETE FROM messages WHERE seq = ?").bind(seq)
                }
                Settle::Retry { visible_at_ms } => {
                    retried += 1;
                    sqlx::query("UPDATE messages SET leased = 0, visible_at_ms = ? WHERE seq = ?")
                        .bind(visible_at_ms)
                        .bind(seq)
                }
                Settle::Release => sqlx::query(
                    "UPDATE messages SET leased = 0, attempts = MAX(attempts - 1, 0) WHERE seq = ?",
                )
                .bind(seq),
                Settle::DeadLetter {
                    queue: dlq,
                    visible_at_ms,
                } => {
                    dead += 1;
                    sqlx::query(
                        "INSERT INTO messages (queue, id, timestamp_ms, content_type, body, visible_at_ms)
                         SELECT ?, id, timestamp_ms, content_type, body, ? FROM messages WHERE seq = ?",
                    )
                    .bind(dlq)
                    .bind(visible_at_ms)
                    .bind(seq)
                    .execute(&mut *tx)
                    .await
                    .map_err(sqlite_error)?;
                    sqlx::query("DELETE FROM messages WHERE seq = ?").bind(seq)
                }
            };
            query.execute(&mut *tx).await.map_err(sqlite_error)?;
        }
        sqlx::query(
            "INSERT INTO counters (queue, acked, retried, dead_lettered, dropped) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (queue) DO UPDATE SET acked = acked + excluded.acked,
               retried = retried + excluded.retried, dead_lettered = dead_lettered + excluded.dead_lettered,
               dropped = dropped + excluded.dropped",
        )
        .bind(queue)
        .bind(acked)
        .bind(retried)
        .bind(dead)
        .bind(dropped)
        .execute(&mut *tx)
        .await
        .map_err(sqlite_error)?;
        tx.commit().await.map_err(sqlite_error)?;
        if dead > 0 {
            self.wake.notify_waiters();
        }
        Ok(())
    }

    async fn recover(&self) -> Result<u64, String> {
        let mut conn = self.db.acquire().await.map_err(sqlite_error)?;
        let done = sqlx::query(
            "UPDATE messages SET leased = 0, attempts = MAX(attempts - 1, 0) WHERE leased = 1",
        )
        .execute(&mut *conn)
        .await
        .map_err(sqlite_error)?;
        Ok(done.rows_affected())
    }

    async fn counts(&self, now_ms: i64) -> Result<Vec<QueueCounts>, String> {
        let mut conn = self.db.acquire().await.map_err(sqlite_error)?;
        let mut by_queue: BTreeMap<String, QueueCounts> = BTreeMap::new();
        let rows = sqlx::query(
            "SELECT queue, SUM(leased = 0 AND visible_at_ms <= ?1), SUM(leased = 0 AND visible_at_ms > ?1),
                    SUM(leased = 1) FROM messages GROUP BY queue",
        )
        .bind(now_ms)
        .fetch_all(&mut *conn)
        .await
        .map_err(sqlite_error)?;
        for row in rows {
            let entry = counts_of(&mut by_queue, row.get(0));
            entry.pending = row.get::<i64, _>(1) as u64;
            entry.delayed = row.get::<i64, _>(2) as u64;
            entry.in_flight = row.get::<i64, _>(3) as u64;
        }
        let rows =
            sqlx::query("SELECT queue, acked, retried, dead_lettered, dropped FROM counters")
                .fetch_all(&mut *conn)
                .await
                .map_err(sqlite_error)?;
        for row in rows {
            let entry = counts_of(&mut by_queue, row.get(0));
            entry.acked = row.get::<i64, _>(1) as u64;
            entry.retried = row.get::<i64, _>(2) as u64;
            entry.dead_lettered = row.get::<i64, _>(3) as u64;
            entry.dropped = row.get::<i64, _>(4) as u64;
        }
        Ok(by_queue.into_values().collect())
    }

    async fn checkpoint(&self) -> Result<(), String> {
        let mut conn = self.db.acquire().await.map_err(sqlite_error)?;
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut *conn)
            .await
            .map_err(sqlite_error)?;
        Ok(())
    }
}
