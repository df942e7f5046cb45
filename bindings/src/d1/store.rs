//! D1 storage behind [`D1Store`]: [`SqliteD1Store`], one plain SQLite file
//! per database through sqlx (WAL mode, so the `sqlite3` command can open
//! it while pyflare runs). sqlx types never leave this file.

use async_trait::async_trait;
use futures::TryStreamExt;
use pyflare_sqlite::take_counts_and_size;
use serde_json::{Value, json};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteRow};
use sqlx::{
    Column, Connection, Either, Executor, Row, SqliteConnection, Statement as _, TypeInfo, ValueRef,
};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::D1Error;
use super::statements::Statement;
use crate::storage::OneConnection;

/// A value bound to a statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    /// NULL.
    Null,
    /// INTEGER.
    Integer(i64),
    /// REAL.
    Real(f64),
    /// TEXT.
    Text(String),
    /// BLOB.
    Blob(Vec<u8>),
}

/// What one query produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// Column names of the last statement.
    pub columns: Vec<String>,
    /// Rows of the last statement; BLOBs as arrays of byte numbers, as D1 returns them.
    pub rows: Vec<Vec<Value>>,
    /// Rows changed.
    pub changes: u64,
    /// The connection's last inserted rowid.
    pub last_row_id: i64,
    /// Rows read, as D1 counts them (see `pyflare_sqlite`).
    pub rows_read: u64,
    /// Rows and index entries written, as D1 counts them.
    pub rows_written: u64,
    /// Whether the database changed.
    pub changed_db: bool,
    /// Bytes of the database after the query.
    pub size_after: u64,
}

/// The operations D1 needs of a storage engine.
#[async_trait]
pub trait D1Store: Send + Sync + std::fmt::Debug {
    /// Runs `statements` in order (each committed on its own); the last one
    /// gets `params`. Returns what the last produced.
    async fn run(&self, statements: &[Statement], params: &[Param]) -> Result<Outcome, D1Error>;
    /// Runs each query in one transaction: all or nothing.
    async fn batch(
        &self,
        queries: &[(Vec<Statement>, Vec<Param>)],
    ) -> Result<Vec<Outcome>, D1Error>;
    /// Runs `statements` and, in the same transaction, `record` (a migration
    /// and its row in the migrations table).
    async fn run_in_transaction(
        &self,
        statements: &[Statement],
        record: &[(Statement, Vec<Param>)],
    ) -> Result<(), D1Error>;
    /// The database file's bytes.
    async fn dump(&self) -> Result<Vec<u8>, D1Error>;
    /// Moves everything in the write-ahead log into the database file, so
    /// the file alone holds every table (on a clean stop, after the CLI).
    async fn checkpoint(&self) -> Result<(), D1Error>;
}

/// A D1 database in a SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteD1Store {
    db: OneConnection,
    path: PathBuf,
}

impl SqliteD1Store {
    /// Opens (or creates) the database file at `path`.
    pub async fn open(path: &Path) -> Result<Self, D1Error> {
        let dir = path.parent().unwrap_or(Path::new("."));
        if let Err(e) = std::fs::create_dir_all(dir) {
            return Err(unopenable(dir, &e.to_string()));
        }
        check_wal(path)?;
        // A path, never a URL: a database name is a file name, and nothing
        // in it is decoded (`%2e%2e%2f` stays those nine characters).
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // D1 enforces foreign keys.
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        // One connection: D1 runs a database's queries one at a time.
        let db =
            OneConnection::open(&options).await.map_err(|e| {
                match crate::storage::read_only(dir) {
                    true => unopenable(dir, &e.to_string()),
                    false => damaged(path, &e.to_string()),
                }
            })?;
        let mut conn = db
            .acquire()
            .await
            .map_err(|e| damaged(path, &e.to_string()))?;
        check_integrity(&mut conn, path).await?;
        drop(conn);
        Ok(Self {
            db,
            path: path.to_path_buf(),
        })
    }
}

impl SqliteD1Store {
    /// The store at `path`, shared by every user in this process (bindings
    /// of a reloaded worker, the CLI), so one connection serializes its
    /// queries.
    pub async fn open_shared(path: &Path) -> Result<Self, D1Error> {
        static OPEN: std::sync::Mutex<std::collections::BTreeMap<PathBuf, SqliteD1Store>> =
            std::sync::Mutex::new(std::collections::BTreeMap::new());
        let key = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        if let Some(store) = OPEN.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Ok(store.clone());
        }
        let store = Self::open(path).await?;
        OPEN.lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_insert_with(|| store.clone());
        Ok(store)
    }
}

#[async_trait]
impl D1Store for SqliteD1Store {
    async fn run(&self, statements: &[Statement], params: &[Param]) -> Result<Outcome, D1Error> {
        let mut conn = self.db.acquire().await.map_err(sqlite_error)?;
        run_statements(&mut conn, statements, params).await
    }

    async fn batch(
        &self,
        queries: &[(Vec<Statement>, Vec<Param>)],
    ) -> Result<Vec<Outcome>, D1Error> {
        let mut conn = self.db.acquire().await.map_err(sqlite_error)?;
        let mut tx = conn.begin().await.map_err(sqlite_error)?;
        let mut out = Vec::with_capacity(queries.len());
        for (statements, params) in queries {
            // Dropping `tx` on error rolls the whole batch back.
            out.push(run_statements(&mut tx, statements, params).await?);
        }
        // The last query's size is the size the batch leaves.
        let size_after = out.last().map_or(0, |outcome| outcome.size_after);
        tx.commit().await.map_err(sqlite_error)?;
        for outcome in &mut out {
            outcome.size_after = size_after;
        }
        Ok(out)
    }

    async fn run_in_transaction(
        &self,
        statements: &[Statement],
        record: &[(Statement, Vec<Param>)],
    ) -> Result<(), D1Error> {
        let mut conn = self.db.acquire().await.map_err(sqlite_error)?;
        let mut tx = conn.begin().await.map_err(sqlite_error)?;
        for statement in statements {
            run_one(&mut tx, statement, &[]).await?;
        }
        for (statement, params) in record {
            run_one(&mut tx, statement, params).await?;
        }
        tx.commit().await.map_err(sqlite_error)?;
        Ok(())
    }

    async fn dump(&self) -> Result<Vec<u8>, D1Error> {
        let mut conn = self.db.acquire().await.map_err(sqlite_error)?;
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            .await
            .map_err(|e| D1Error::Dump(e.to_string()))?;
        drop(conn);
        std::fs::read(&self.path).map_err(|e| D1Error::Dump(e.to_string()))
    }

    async fn checkpoint(&self) -> Result<(), D1Error> {
        let mut conn = self.db.acquire().await.map_err(sqlite_error)?;
        let row = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(&mut *conn)
            .await
            .map_err(sqlite_error)?;
        // (busy, log frames, checkpointed frames): busy means a reader
        // (a `sqlite3` shell, say) kept the log from being emptied.
        if row.try_get::<i64, _>(0).unwrap_or(0) != 0 {
            return Err(D1Error::Sqlite(format!(
                "{}: the write-ahead log could not be emptied: another program is reading the database",
                self.path.display()
            )));
        }
        Ok(())
    }
}

/// Runs SQLite's `quick_check` (every page readable, every record well
/// formed, indexes in order) so a damaged file is reported when it is
/// opened, not seen as empty tables later. About 1 ms per MB.
async fn check_integrity(conn: &mut SqliteConnection, path: &Path) -> Result<(), D1Error> {
    let rows = sqlx::query("PRAGMA quick_check(5)")
        .fetch_all(conn)
        .await
        .map_err(|e| damaged(path, &e.to_string()))?;
    let problems: Vec<String> = rows
        .iter()
        .filter_map(|row| row.try_get::<String, _>(0).ok())
        .filter(|line| line != "ok")
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(damaged(path, &problems.join("; ")))
    }
}

/// Checks the write-ahead log's checksums before SQLite reads it. SQLite
/// stops reading a log at the first frame whose checksum fails and carries
/// on without the commits after it, silently; pyflare reports that instead.
/// Frames with another salt are left over from before the log was last
/// restarted and end it normally; a frame cut short at the end of the file
/// was never committed.
fn check_wal(path: &Path) -> Result<(), D1Error> {
    let mut wal_path = path.as_os_str().to_owned();
    wal_path.push("-wal");
    let wal_path = PathBuf::from(wal_path);
    let bytes = match std::fs::read(&wal_path) {
        Ok(bytes) if bytes.is_empty() => return Ok(()),
        Ok(bytes) => bytes,
        Err(_) => return Ok(()),
    };
    let damaged = |why: &str| damaged(&wal_path, why);
    let word =
        |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    if bytes.len() < 32 {
        return Err(damaged("its header is cut short"));
    }
    let big_endian = match word(0) {
        0x377f_0682 => false,
        0x377f_0683 => true,
        _ => return Err(damaged("it does not start like a SQLite write-ahead log")),
    };
    let mut sum = (0u32, 0u32);
    wal_checksum(&mut sum, &bytes[..24], big_endian);
    if sum != (word(24), word(28)) {
        return Err(damaged("its header's checksum does not match"));
    }
    let page_size = word(8) as usize;
    if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
        return Err(damaged("its header names an impossible page size"));
    }
    let salts = (word(16), word(20));
    let mut at = 32;
    let mut frame = 1;
    while at + 24 + page_size <= bytes.len() {
        if (word(at + 8), word(at + 12)) != salts {
            break;
        }
        wal_checksum(&mut sum, &bytes[at..at + 8], big_endian);
        wal_checksum(&mut sum, &bytes[at + 24..at + 24 + page_size], big_endian);
        if sum != (word(at + 16), word(at + 20)) {
            return Err(damaged(&format!("frame {frame}'s checksum does not match")));
        }
        at += 24 + page_size;
        frame += 1;
    }
    Ok(())
}

/// SQLite's log checksum: over 32-bit words taken in pairs.
fn wal_checksum(sum: &mut (u32, u32), data: &[u8], big_endian: bool) {
    let read = |chunk: &[u8]| {
        let bytes = [chunk[0], chunk[1], chunk[2], chunk[3]];
        if big_endian {
            u32::from_be_bytes(bytes)
        } else {
            u32::from_le_bytes(bytes)
        }
    };
    for pair in data.chunks_exact(8) {
        sum.0 = sum.0.wrapping_add(read(&pair[..4]).wrapping_add(sum.1));
        sum.1 = sum.1.wrapping_add(read(&pair[4..]).wrapping_add(sum.0));
    }
}

/// A folder pyflare cannot write to (read-only) or create.
fn unopenable(dir: &Path, detail: &str) -> D1Error {
    let detail = if crate::storage::read_only(dir) {
        "the folder is read-only".to_owned()
    } else {
        detail.to_owned()
    };
    D1Error::Unwritable {
        path: dir.display().to_string(),
        detail,
    }
}

/// A database file SQLite cannot trust.
fn damaged(path: &Path, detail: &str) -> D1Error {
    D1Error::Damaged {
        path: path.display().to_string(),
        detail: detail.to_owned(),
    }
}

pub(crate) async fn database_size(conn: &mut SqliteConnection) -> Result<u64, D1Error> {
    let row =
        sqlx::query("SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()")
            .fetch_one(&mut *conn)
            .await
            .map_err(sqlite_error)?;
    Ok(row.try_get::<i64, _>(0).unwrap_or(0).max(0) as u64)
}

pub(crate) async fn run_statements(
    conn: &mut SqliteConnection,
    statements: &[Statement],
    params: &[Param],
) -> Result<Outcome, D1Error> {
    if statements.is_empty() {
        return Ok(Outcome {
            size_after: database_size(conn).await?,
            ..Outcome::default()
        });
    }
    let mut last = Outcome::default();
    for (i, statement) in statements.iter().enumerate() {
        let is_last = i + 1 == statements.len();
        let bound: &[Param] = if is_last { params } else { &[] };
        last = run_one(conn, statement, bound).await?;
    }
    // D1 and a Durable Object's cursor report the counts of the last
    // statement alone: each statement starts them from zero.
    let (counts, size) = take_counts_and_size(conn).await.map_err(sqlite_error)?;
    last.rows_read = counts.read;
    last.rows_written = counts.written;
    last.size_after = match size {
        Some(size) => size,
        None => database_size(conn).await?,
    };
    Ok(last)
}

/// Runs one statement, reading every value with its own storage class.
async fn run_one(
    conn: &mut SqliteConnection,
    statement: &Statement,
    params: &[Param],
) -> Result<Outcome, D1Error> {
    if super::statements::reaches_other_files(&statement.sql) {
        return Err(D1Error::NotAuthorized);
    }
    let mut query = sqlx::query(&statement.sql);
    for param in params {
        query = match param {
            Param::Null => query.bind(None::<i64>),
            Param::Integer(n) => query.bind(*n),
            Param::Real(f) => query.bind(*f),
            Param::Text(s) => query.bind(s.clone()),
            Param::Blob(b) => query.bind(b.clone()),
        };
    }
    let mut out = Outcome::default();
    {
        let mut results = conn.fetch_many(query);
        while let Some(item) = results
            .try_next()
            .await
            .map_err(|e| sql_error(e, &statement.sql))?
        {
            match item {
                Either::Left(done) => {
                    out.changes += done.rows_affected();
                    out.last_row_id = done.last_insert_rowid();
                }
                Either::Right(row) => {
                    if out.columns.is_empty() {
                        out.columns = row.columns().iter().map(|c| c.name().to_owned()).collect();
                    }
                    out.rows.push(row_values(&row));
                }
            }
        }
    }
    if out.rows.is_empty() {
        // Column names of a query that returned nothing.
        if let Ok(prepared) = conn.prepare(statement.sql.as_str()).await {
            out.columns = prepared
                .columns()
                .iter()
                .map(|c| c.name().to_owned())
                .collect();
        }
    }
    if !super::statements::changes_rows(&statement.sql) {
        out.changes = 0;
    }
    let keyword = statement
        .sql
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_ascii_uppercase();
    out.changed_db = out.changes > 0 || matches!(keyword.as_str(), "CREATE" | "DROP" | "ALTER");
    Ok(out)
}

fn row_values(row: &SqliteRow) -> Vec<Value> {
    (0..row.len())
        .map(|i| {
            let Ok(raw) = row.try_get_raw(i) else {
                return Value::Null;
            };
            if raw.is_null() {
                return Value::Null;
            }
            match raw.type_info().name() {
                "INTEGER" => row
                    .try_get::<i64, _>(i)
                    .map(|n| json!(n))
                    .unwrap_or(Value::Null),
                "REAL" => row
                    .try_get::<f64, _>(i)
                    .map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number))
                    .unwrap_or(Value::Null),
                "BLOB" => row
                    .try_get::<Vec<u8>, _>(i)
                    .map(|b| json!(b))
                    .unwrap_or(Value::Null),
                _ => row
                    .try_get::<String, _>(i)
                    .map(Value::String)
                    .or_else(|_| row.try_get::<Vec<u8>, _>(i).map(|b| json!(b)))
                    .unwrap_or(Value::Null),
            }
        })
        .collect()
}

/// SQLite's error as D1 words it (see `sqlite_text`).
fn sql_error(error: sqlx::Error, sql: &str) -> D1Error {
    match &error {
        sqlx::Error::Database(db) => {
            // sqlx reports SQLite's extended result code.
            let code = db.code().and_then(|c| c.parse::<i64>().ok()).unwrap_or(1);
            D1Error::Sqlite(super::sqlite_text::error_text(db.message(), code, sql))
        }
        _ => D1Error::Sqlite(error.to_string()),
    }
}

fn sqlite_error(error: sqlx::Error) -> D1Error {
    match error {
        sqlx::Error::Database(_) => sql_error(error, ""),
        other => D1Error::Sqlite(other.to_string()),
    }
}
