//! One SQLite file per object, `<state>/do/<ClassName>/<id>.sqlite3`,
//! through sqlx (WAL mode and `synchronous=FULL`, so a write the worker saw
//! succeed survives `kill -9`, and the `sqlite3` command can open the file
//! while pyflare runs). The key-value API keeps its entries in workerd's
//! table `_cf_KV` (key, V8-serialized value). sqlx types never leave this
//! file.

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Connection, Row, SqliteConnection};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::call::{ListOptions, TransactionOp};
use crate::d1::statements::Statement;
use crate::d1::store::{Outcome, Param, database_size, run_statements};

/// A storage failure, for the terminal; the worker sees a generic message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

fn sqlite(e: sqlx::Error) -> StoreError {
    StoreError(e.to_string())
}

/// The objects of one class: a folder of SQLite files.
#[derive(Debug)]
pub struct ClassStore {
    dir: PathBuf,
    open: tokio::sync::Mutex<HashMap<String, Arc<ObjectStore>>>,
    alarms: Arc<super::alarms::Alarms>,
}

impl ClassStore {
    /// The store of the class whose files are in `dir`, shared by every
    /// binding in this process that names it.
    pub fn shared(dir: &Path) -> Arc<ClassStore> {
        static OPEN: Mutex<Vec<Arc<ClassStore>>> = Mutex::new(Vec::new());
        let mut open = OPEN.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(store) = open.iter().find(|s| s.dir == dir) {
            return store.clone();
        }
        let store = Arc::new(ClassStore {
            dir: dir.to_path_buf(),
            open: tokio::sync::Mutex::new(HashMap::new()),
            alarms: Arc::default(),
        });
        open.push(store.clone());
        store
    }

    /// The alarms of the class's objects.
    pub fn alarms(&self) -> Arc<super::alarms::Alarms> {
        self.alarms.clone()
    }

    /// The folder of the class's files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of object `id` (a checked 64-digit hex id).
    pub fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.sqlite3"))
    }

    /// Object `id`'s storage, opened on first use.
    pub async fn object(&self, id: &str) -> Arc<ObjectStore> {
        let mut open = self.open.lock().await;
        open.entry(id.to_owned())
            .or_insert_with(|| {
                Arc::new(ObjectStore {
                    path: self.path(id),
                    conn: tokio::sync::Mutex::new(None),
                })
            })
            .clone()
    }

    /// The ids of the objects that have storage, sorted.
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_suffix(".sqlite3").map(str::to_owned)
            })
            .collect();
        ids.sort();
        ids
    }

    /// Closes every open file, after a checkpoint, so each `.sqlite3` file
    /// alone holds its object's data.
    pub async fn close(&self) -> Result<(), StoreError> {
        let open: Vec<Arc<ObjectStore>> = self.open.lock().await.drain().map(|(_, s)| s).collect();
        for store in open {
            store.close().await?;
        }
        Ok(())
    }
}

/// One object's SQLite file; its connection is opened at the first call
/// that needs it (a read of an object that never wrote opens nothing).
#[derive(Debug)]
pub struct ObjectStore {
    path: PathBuf,
    conn: tokio::sync::Mutex<Option<SqliteConnection>>,
}

const SCHEMA: [&str; 2] = [
    "CREATE TABLE IF NOT EXISTS _cf_KV (key TEXT PRIMARY KEY, value BLOB) WITHOUT ROWID",
    // workerd keeps an object's alarm here (key 1: its time in Unix ms).
    "CREATE TABLE IF NOT EXISTS _cf_METADATA (key INTEGER PRIMARY KEY, value BLOB)",
];

impl ObjectStore {
    async fn connect(&self, create: bool) -> Result<Option<SqliteConnection>, StoreError> {
        if !create && !self.path.exists() {
            return Ok(None);
        }
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError(format!("cannot create {}: {e}", dir.display())))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(&self.path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5));
        let mut conn = SqliteConnection::connect_with(&options)
            .await
            .map_err(sqlite)?;
        for statement in SCHEMA {
            sqlx::query(statement)
                .execute(&mut conn)
                .await
                .map_err(sqlite)?;
        }
        Ok(Some(conn))
    }

    /// Runs `work` on the connection, opening it first (creating the file
    /// when `create`); `None` when the object has no file and `create` is false.
    async fn with<T>(
        &self,
        create: bool,
        work: impl AsyncFnOnce(&mut SqliteConnection) -> Result<T, sqlx::Error>,
    ) -> Result<Option<T>, StoreError> {
        let mut guard = self.conn.lock().await;
        if guard.is_none() {
            *guard = self.connect(create).await?;
        }
        match guard.as_mut() {
            None => Ok(None),
            Some(conn) => work(conn).await.map(Some).map_err(sqlite),
        }
    }

    /// The values of `keys`, in order (`None`: no such key).
    pub async fn get(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let found = self
            .with(false, async |conn| {
                let mut out = Vec::with_capacity(keys.len());
                for key in keys {
                    let row = sqlx::query("SELECT value FROM _cf_KV WHERE key = ?")
                        .bind(key)
                        .fetch_optional(&mut *conn)
                        .await?;
                    out.push(row.map(|r| r.get::<Vec<u8>, _>(0)));
                }
                Ok(out)
            })
            .await?;
        Ok(found.unwrap_or_else(|| vec![None; keys.len()]))
    }

    /// Writes every entry, all or none.
    pub async fn put(&self, entries: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
        self.with(true, async |conn| {
            atomically(conn, async |conn| {
                for (key, value) in entries {
                    sqlx::query("INSERT OR REPLACE INTO _cf_KV (key, value) VALUES (?, ?)")
                        .bind(key)
                        .bind(value)
                        .execute(&mut *conn)
                        .await?;
                }
                Ok(())
            })
            .await
        })
        .await?;
        Ok(())
    }

    /// Deletes `keys`; how many existed.
    pub async fn delete(&self, keys: &[String]) -> Result<u64, StoreError> {
        let deleted = self
            .with(false, async |conn| {
                atomically(conn, async |conn| {
                    let mut count = 0;
                    for key in keys {
                        count += sqlx::query("DELETE FROM _cf_KV WHERE key = ?")
                            .bind(key)
                            .execute(&mut *conn)
                            .await?
                            .rows_affected();
                    }
                    Ok(count)
                })
                .await
            })
            .await?;
        Ok(deleted.unwrap_or(0))
    }

    /// Entries in key order (UTF-8 bytes), as `storage.list()` selects them.
    pub async fn list(
        &self,
        options: &ListOptions,
        limit: Option<usize>,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut sql = String::from("SELECT key, value FROM _cf_KV WHERE 1");
        let mut binds: Vec<String> = Vec::new();
        if let Some(start) = &options.start {
            sql.push_str(" AND key >= ?");
            binds.push(start.clone());
        }
        if let Some(after) = &options.start_after {
            sql.push_str(" AND key > ?");
            binds.push(after.clone());
        }
        if let Some(end) = &options.end {
            sql.push_str(" AND key < ?");
            binds.push(end.clone());
        }
        if let Some(prefix) = options.prefix.as_ref().filter(|p| !p.is_empty()) {
            sql.push_str(" AND substr(key, 1, length(?)) = ?");
            binds.push(prefix.clone());
            binds.push(prefix.clone());
        }
        sql.push_str(if options.reverse == Some(true) {
            " ORDER BY key DESC"
        } else {
            " ORDER BY key"
        });
        if let Some(limit) = limit {
            sql.push_str(&format!(" LIMIT {limit}"));
        }
        let rows = self
            .with(false, async |conn| {
                let mut query = sqlx::query(&sql);
                for bind in &binds {
                    query = query.bind(bind);
                }
                let rows = query.fetch_all(&mut *conn).await?;
                Ok(rows
                    .into_iter()
                    .map(|r| (r.get::<String, _>(0), r.get::<Vec<u8>, _>(1)))
                    .collect())
            })
            .await?;
        Ok(rows.unwrap_or_default())
    }

    /// Deletes every entry and every table of the object's own.
    pub async fn delete_all(&self) -> Result<(), StoreError> {
        self.with(false, async |conn| {
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name != '_cf_KV'",
            )
            .fetch_all(&mut *conn)
            .await?;
            atomically(conn, async |conn| {
                for table in &tables {
                    let quoted = table.replace('"', "\"\"");
                    sqlx::query(&format!("DROP TABLE IF EXISTS \"{quoted}\""))
                        .execute(&mut *conn)
                        .await?;
                }
                sqlx::query("DELETE FROM _cf_KV").execute(&mut *conn).await?;
                Ok(())
            })
            .await
        })
        .await?;
        Ok(())
    }

    /// The object's own SQL tables (not workerd's `_cf_` ones) and their row counts.
    pub async fn tables(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let found = self
            .with(false, async |conn| {
                let names: Vec<String> = sqlx::query_scalar(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%' ORDER BY name",
                )
                .fetch_all(&mut *conn)
                .await?;
                let mut out = Vec::with_capacity(names.len());
                for name in names {
                    let quoted = name.replace('"', "\"\"");
                    let count: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM \"{quoted}\""))
                        .fetch_one(&mut *conn)
                        .await?;
                    out.push((name, count));
                }
                Ok(out)
            })
            .await?;
        Ok(found.unwrap_or_default())
    }

    /// The object's alarm (Unix ms), if set.
    pub async fn alarm(&self) -> Result<Option<i64>, StoreError> {
        let found = self
            .with(false, async |conn| {
                sqlx::query_scalar::<_, i64>("SELECT value FROM _cf_METADATA WHERE key = 1")
                    .fetch_optional(&mut *conn)
                    .await
            })
            .await?;
        Ok(found.flatten())
    }

    /// Sets (or, with `None`, deletes) the object's alarm.
    pub async fn set_alarm(&self, at: Option<i64>) -> Result<(), StoreError> {
        self.with(at.is_some(), async |conn| match at {
            Some(at) => {
                sqlx::query("INSERT OR REPLACE INTO _cf_METADATA (key, value) VALUES (1, ?)")
                    .bind(at)
                    .execute(&mut *conn)
                    .await
                    .map(|_| ())
            }
            None => sqlx::query("DELETE FROM _cf_METADATA WHERE key = 1")
                .execute(&mut *conn)
                .await
                .map(|_| ()),
        })
        .await?;
        Ok(())
    }

    /// Runs SQL statements (split by the caller); `params` go to the last.
    pub async fn sql(
        &self,
        statements: &[Statement],
        params: &[Param],
    ) -> Result<Outcome, crate::d1::error::D1Error> {
        let mut guard = self.conn.lock().await;
        if guard.is_none() {
            *guard = self
                .connect(true)
                .await
                .map_err(|e| crate::d1::error::D1Error::Sqlite(e.0))?;
        }
        let conn = guard.as_mut().expect("opened above");
        run_statements(conn, statements, params).await
    }

    /// The file's size in bytes.
    pub async fn database_size(&self) -> Result<u64, StoreError> {
        let mut guard = self.conn.lock().await;
        if guard.is_none() {
            *guard = self.connect(true).await?;
        }
        let conn = guard.as_mut().expect("opened above");
        database_size(conn)
            .await
            .map_err(|e| StoreError(e.to_string()))
    }

    /// Begins, commits or rolls back the object's transaction.
    pub async fn transaction(&self, op: TransactionOp) -> Result<(), StoreError> {
        let sql = match op {
            TransactionOp::Begin => "BEGIN IMMEDIATE",
            TransactionOp::Commit => "COMMIT",
            TransactionOp::Rollback => "ROLLBACK",
        };
        self.with(true, async |conn| {
            sqlx::query(sql).execute(&mut *conn).await.map(|_| ())
        })
        .await?;
        Ok(())
    }

    /// Checkpoints the write-ahead log into the file and closes it.
    pub async fn close(&self) -> Result<(), StoreError> {
        if let Some(mut conn) = self.conn.lock().await.take() {
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&mut conn)
                .await
                .map_err(sqlite)?;
            conn.close().await.map_err(sqlite)?;
        }
        Ok(())
    }
}

/// Runs `work` all or nothing, inside the object's open transaction or not
/// (a savepoint nests in either).
async fn atomically<T>(
    conn: &mut SqliteConnection,
    work: impl AsyncFnOnce(&mut SqliteConnection) -> Result<T, sqlx::Error>,
) -> Result<T, sqlx::Error> {
    sqlx::query("SAVEPOINT pyflare_op")
        .execute(&mut *conn)
        .await?;
    match work(conn).await {
        Ok(value) => {
            sqlx::query("RELEASE pyflare_op")
                .execute(&mut *conn)
                .await?;
            Ok(value)
        }
        Err(error) => {
            let _ = sqlx::query("ROLLBACK TO pyflare_op")
                .execute(&mut *conn)
                .await;
            let _ = sqlx::query("RELEASE pyflare_op").execute(&mut *conn).await;
            Err(error)
        }
    }
}
