//! R2 storage: object bytes in an [`ObjectStore`], metadata in SQLite.
//!
//! On the local disk: blobs through object_store's `LocalFileSystem` under
//! `<state>/r2/<bucket>/blobs/`, metadata in a SQLite file beside them
//! (`<state>/r2/<bucket>/metadata.sqlite3`). On S3: blobs under the
//! bucket's prefix, metadata in one SQLite object beside them, shared by
//! every process that opens the prefix (see [`super::shared`]).
//!
//! A blob is named by a random id (one per put or part),
//! never by its key, so no key can reach a path outside the bucket's
//! folder. A put streams into a new blob, which `LocalFileSystem` (with
//! fsync) writes under a staging name, syncs and renames; only then does
//! the metadata row commit (SQLite in WAL mode with `synchronous=FULL`;
//! on S3, the metadata object's upload), so a put the worker saw succeed
//! survives a crash and a half-written blob is never an object. Blobs
//! without a row are deleted at open (on the local disk by the process
//! holding the folder's `lock` file; on S3 only those older than a grace
//! period, as another process may be about to commit one).

use crate::storage::{Held, OneConnection};
use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path as BlobPath;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteRow, SqliteSynchronous};
use sqlx::{Acquire, Executor, Row, SqliteConnection};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::shared::{self, Shared};
use crate::binding::{BodyError, BodyStream};

/// A storage failure (the worker sees R2's internal error; this is logged).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("metadata: {0}")]
    Sql(#[from] sqlx::Error),
    /// The blob store failed.
    #[error("blob: {0}")]
    Blob(#[from] object_store::Error),
    /// The folder could not be prepared.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The bucket's S3 settings are unusable.
    #[error("{0}")]
    Config(String),
    /// Other processes kept writing the shared metadata first.
    #[error("gave up after {0} tries: other pyflare processes kept writing this bucket first")]
    Contended(u32),
}

/// One object's row.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectRow {
    /// The key.
    pub key: String,
    /// Random, new with each upload.
    pub version: String,
    /// Bytes.
    pub size: u64,
    /// Hex MD5, or for a multipart object the MD5 of its parts' MD5s and `-N`.
    pub etag: String,
    /// Milliseconds since the epoch.
    pub uploaded: i64,
    /// JSON of [`super::call::HttpMetadata`].
    pub http_metadata: String,
    /// JSON object of strings.
    pub custom_metadata: String,
    /// JSON object of hex checksums.
    pub checksums: String,
    /// `Standard` or `InfrequentAccess`.
    pub storage_class: String,
    /// The blob holding its bytes; empty when they are `inline`.
    pub blob: String,
    /// The bytes of a small object, kept in its row (see [`INLINE_MAX`]);
    /// only set when storing (rows read back leave it out).
    pub inline: Option<Bytes>,
}

/// The columns of an object's row but its inline bytes.
const OBJECT_COLUMNS: &str = "key, version, size, etag, uploaded, http_metadata, \
    custom_metadata, checksums, storage_class, blob";

/// A multipart upload in progress.
#[derive(Debug, Clone)]
pub struct UploadRow {
    /// The key it will become.
    pub key: String,
    /// JSON HTTP metadata.
    pub http_metadata: String,
    /// JSON custom metadata.
    pub custom_metadata: String,
    /// Storage class.
    pub storage_class: String,
    /// 0 in progress, 1 completed, 2 aborted.
    pub state: i64,
}

/// One uploaded part.
#[derive(Debug, Clone)]
pub struct PartRow {
    /// Its number.
    pub part_number: i64,
    /// Bytes.
    pub size: u64,
    /// Hex MD5.
    pub md5: String,
    /// The etag given to the worker.
    pub etag: String,
    /// Its blob.
    pub blob: String,
}

/// A value just written.
#[derive(Debug)]
pub struct Written {
    /// Its blob's name; empty when the value is `inline`.
    pub blob: String,
    /// Its length.
    pub size: u64,
    /// A value short enough to keep in its row instead of a blob.
    pub inline: Option<Bytes>,
}

/// Values up to this long are kept in their metadata row, so a small put
/// costs one SQLite commit instead of a blob file's write, sync and rename
/// as well (measured by bench/r2.sh).
pub const INLINE_MAX: usize = 32 * 1024;

/// Why a blob could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Longer than the limit.
    #[error("too large")]
    TooLarge,
    /// The worker's body broke off.
    #[error(transparent)]
    Broken(#[from] BodyError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS objects (
    key BLOB PRIMARY KEY,
    version TEXT NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    uploaded INTEGER NOT NULL,
    http_metadata TEXT NOT NULL,
    custom_metadata TEXT NOT NULL,
    checksums TEXT NOT NULL,
    storage_class TEXT NOT NULL,
    blob TEXT NOT NULL,
    inline BLOB
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS uploads (
    upload_id TEXT PRIMARY KEY,
    key BLOB NOT NULL,
    http_metadata TEXT NOT NULL,
    custom_metadata TEXT NOT NULL,
    storage_class TEXT NOT NULL,
    created INTEGER NOT NULL,
    state INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS bucket (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS parts (
    upload_id TEXT NOT NULL,
    part_number INTEGER NOT NULL,
    size INTEGER NOT NULL,
    md5 TEXT NOT NULL,
    etag TEXT NOT NULL,
    blob TEXT NOT NULL,
    PRIMARY KEY (upload_id, part_number)
);
";

/// Writes into a blob are gathered to this size before each write (one
/// multipart part; S3 wants at least 5 MiB but the last).
const WRITE_CHUNK: usize = 8 * 1024 * 1024;
/// Reads from the local disk come in pieces of this size (object_store's
/// own are 8 KiB, one blocking task each).
const READ_CHUNK: usize = 256 * 1024;

/// Where a bucket's metadata lives.
#[derive(Debug, Clone)]
enum Meta {
    /// A SQLite file on this machine.
    Local(OneConnection),
    /// An in-memory copy of the SQLite object on S3 (see [`super::shared`]).
    Shared(Arc<Shared>),
}

/// The metadata, held for one call.
enum Conn<'a> {
    Local(Held<'a>),
    Shared(shared::Guard<'a>),
}

impl Conn<'_> {
    fn get(&mut self) -> &mut SqliteConnection {
        match self {
            Conn::Local(conn) => conn,
            Conn::Shared(guard) => guard.conn(),
        }
    }

    /// Makes a committed transaction visible to every process: `false`
    /// when another process wrote first and the transaction must be applied
    /// again (on shared metadata only).
    async fn publish(&mut self) -> Result<bool, StoreError> {
        match self {
            Conn::Local(_) => Ok(true),
            Conn::Shared(guard) => guard.publish().await,
        }
    }
}

/// One bucket's metadata and blobs.
#[derive(Debug, Clone)]
pub struct R2Store {
    meta: Meta,
    blobs: Arc<dyn ObjectStore>,
    /// Values up to this long stay in their row (0: none do).
    inline_max: usize,
    /// The bucket folder's lock, when this process holds it (see
    /// [`R2Store::open_local`]).
    _lock: Option<Arc<std::fs::File>>,
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the system's random source");
    hex::encode(buf)
}

/// A new object version: 32 random hex characters, as R2's.
pub fn new_version() -> String {
    random_hex(16)
}

/// A new multipart upload id.
pub fn new_upload_id() -> String {
    random_hex(32)
}

fn object_from(row: &SqliteRow) -> ObjectRow {
    let key: Vec<u8> = row.get("key");
    ObjectRow {
        key: String::from_utf8_lossy(&key).into_owned(),
        version: row.get("version"),
        size: row.get::<i64, _>("size") as u64,
        etag: row.get("etag"),
        uploaded: row.get("uploaded"),
        http_metadata: row.get("http_metadata"),
        custom_metadata: row.get("custom_metadata"),
        checksums: row.get("checksums"),
        storage_class: row.get("storage_class"),
        blob: row.get("blob"),
        inline: None,
    }
}

impl R2Store {
    /// Opens (or creates) the bucket in folder `dir` on the local disk.
    ///
    /// Several processes may open one bucket (`pyflare dev` and a `pyflare
    /// r2` command): SQLite serializes their writes. Only the first, which
    /// holds the folder's lock file, sweeps orphan blobs, so no process
    /// deletes a blob another is about to commit.
    pub async fn open_local(dir: &Path) -> Result<Self, StoreError> {
        use fs2::FileExt;
        let blobs_dir = dir.join("blobs");
        std::fs::create_dir_all(&blobs_dir)?;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("lock"))?;
        let lock = lock.try_lock_exclusive().is_ok().then(|| Arc::new(lock));
        let blobs = object_store::chunked::ChunkedStore::new(
            Arc::new(LocalFileSystem::new_with_prefix(&blobs_dir)?.with_fsync(true)),
            READ_CHUNK,
        );
        if lock.is_some() {
            // Staging files (`<blob>#<n>`) of writes a crash cut off:
            // object_store does not list them.
            for entry in std::fs::read_dir(&blobs_dir)? {
                let entry = entry?;
                if entry.file_name().to_string_lossy().contains('#') {
                    std::fs::remove_file(entry.path())?;
                }
            }
        }
        let sweep = lock.is_some();
        let mut store = Self::open_with(dir, Arc::new(blobs), "local", sweep).await?;
        store._lock = lock;
        Ok(store)
    }

    /// Opens the bucket whose metadata lives in folder `dir` and whose
    /// bytes live in `blobs`, sweeping blobs no row names.
    pub async fn open(dir: &Path, blobs: Arc<dyn ObjectStore>) -> Result<Self, StoreError> {
        Self::open_with(dir, blobs, "memory", true).await
    }

    /// Opens the metadata; `where_` names where the bytes are (`local` or
    /// `memory`), recorded at the first open and checked at every later
    /// one, so metadata never points into the wrong blob store.
    async fn open_with(
        dir: &Path,
        blobs: Arc<dyn ObjectStore>,
        where_: &str,
        sweep: bool,
    ) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)?;
        let options = SqliteConnectOptions::new()
            .filename(dir.join("metadata.sqlite3"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // A put the worker saw succeed is on disk, as D1's commits are.
            // NORMAL (the log synced at checkpoints only) measured 3.2x the
            // small put+get rate (bench/r2.sh: 1,671 against 520 req/s) and
            // still survives kill -9, but not a power cut.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5));
        // One connection: one writer, and every read sees the last commit.
        let db = OneConnection::open(&options).await?;
        record_blobs_place(&mut *db.acquire().await?, where_).await?;
        let store = Self {
            meta: Meta::Local(db),
            blobs,
            inline_max: INLINE_MAX,
            _lock: None,
        };
        if sweep {
            store.remove_orphans(None).await?;
        }
        Ok(store)
    }

    /// Opens the bucket in S3-compatible storage at `url` (`s3://bucket`
    /// or `s3://bucket/prefix`), configured by the `AWS_*` entries of
    /// `settings` (endpoint, credentials, region, `AWS_ALLOW_HTTP`): its
    /// blobs and its metadata object are there, shared with every pyflare
    /// that names the same place. Blobs no row names and last written
    /// before `sweep_before` (ms since the epoch) are deleted.
    pub async fn open_s3(
        url: &str,
        settings: &std::collections::BTreeMap<String, String>,
        sweep_before: i64,
    ) -> Result<Self, StoreError> {
        use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| StoreError::Config(format!("{url} is not an s3:// URL")))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let mut builder = AmazonS3Builder::new().with_bucket_name(bucket);
        for (name, value) in settings {
            if let Some(key) = name
                .strip_prefix("AWS_")
                .and_then(|_| name.to_ascii_lowercase().parse::<AmazonS3ConfigKey>().ok())
            {
                builder = builder.with_config(key, value);
            }
        }
        let s3: Arc<dyn ObjectStore> = Arc::new(builder.build()?);
        let blobs: Arc<dyn ObjectStore> = match prefix.trim_matches('/') {
            "" => s3,
            prefix => Arc::new(object_store::prefix::PrefixStore::new(s3, prefix)),
        };
        Self::open_shared_in(blobs, sweep_before).await
    }

    /// Opens the bucket whose blobs and shared metadata object are in
    /// `blobs`, sweeping blobs no row names last written before
    /// `sweep_before` (ms since the epoch): later ones may be another
    /// process's put about to commit.
    pub async fn open_shared_in(
        blobs: Arc<dyn ObjectStore>,
        sweep_before: i64,
    ) -> Result<Self, StoreError> {
        let shared = Shared::open(blobs.clone(), SCHEMA).await?;
        let store = Self {
            meta: Meta::Shared(Arc::new(shared)),
            blobs,
            // Every value in a blob keeps the shared object small.
            inline_max: 0,
            _lock: None,
        };
        store.remove_orphans(Some(sweep_before)).await?;
        Ok(store)
    }

    /// The store of folder `dir` (on the local disk) or of an S3 URL (with
    /// its settings and the time before which orphan blobs are swept),
    /// shared by every user in this process (bindings of a reloaded worker,
    /// the CLI), so one connection or one lock serializes its writes.
    pub async fn open_shared(
        dir: &Path,
        s3: Option<(&str, &std::collections::BTreeMap<String, String>, i64)>,
    ) -> Result<Self, StoreError> {
        /// Where a bucket is.
        #[derive(PartialEq, Eq, PartialOrd, Ord)]
        enum Place {
            Local(PathBuf),
            S3(String),
        }
        static OPEN: std::sync::Mutex<std::collections::BTreeMap<Place, R2Store>> =
            std::sync::Mutex::new(std::collections::BTreeMap::new());
        let key = match s3 {
            None => Place::Local(std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())),
            Some((url, _, _)) => Place::S3(url.trim_end_matches('/').to_owned()),
        };
        if let Some(store) = OPEN.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Ok(store.clone());
        }
        let store = match s3 {
            None => Self::open_local(dir).await?,
            Some((url, settings, sweep_before)) => {
                Self::open_s3(url, settings, sweep_before).await?
            }
        };
        Ok(OPEN
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_insert(store)
            .clone())
    }

    /// Values up to this long are kept in their row (0: none are).
    pub fn inline_max(&self) -> usize {
        self.inline_max
    }

    /// The metadata for one call (on S3: locked and fresh).
    async fn conn(&self) -> Result<Conn<'_>, StoreError> {
        Ok(match &self.meta {
            Meta::Local(db) => Conn::Local(db.acquire().await?),
            Meta::Shared(shared) => Conn::Shared(shared.lock().await?),
        })
    }

    /// Deletes blobs no row names: those of a put or part that a crash cut
    /// off (staging files included); with `before` (ms since the epoch),
    /// only those last written earlier.
    async fn remove_orphans(&self, before: Option<i64>) -> Result<(), StoreError> {
        let mut known: HashSet<String> = HashSet::new();
        {
            let mut conn = self.conn().await?;
            for row in sqlx::query("SELECT blob FROM objects UNION ALL SELECT blob FROM parts")
                .fetch_all(conn.get())
                .await?
            {
                known.insert(row.get("blob"));
            }
        }
        let listed: Vec<_> = self.blobs.list(None).try_collect().await?;
        for meta in listed {
            let name = meta.location.as_ref();
            let young =
                before.is_some_and(|before| meta.last_modified.timestamp_millis() >= before);
            if !known.contains(name) && !name.starts_with(".pyflare/") && !young {
                self.delete_blob(name).await;
            }
        }
        Ok(())
    }

    /// Streams `body` into a new blob, at most `limit` bytes, feeding
    /// every chunk to `digest`; a body of at most `inline_max` bytes (when
    /// not 0) is handed back instead, for its row. The blob exists only once
    /// complete: a body shorter than [`WRITE_CHUNK`] is one put, a longer
    /// one a multipart upload of [`WRITE_CHUNK`] parts (S3's parts are at
    /// least 5 MiB).
    pub async fn write_blob(
        &self,
        body: Option<BodyStream>,
        limit: u64,
        inline_max: usize,
        mut digest: impl FnMut(&[u8]),
    ) -> Result<Written, WriteError> {
        let blob = random_hex(16);
        let path = BlobPath::from(blob.as_str());
        let mut body = body.unwrap_or_else(|| BodyStream::whole(Bytes::new()));
        let mut size: u64 = 0;
        let mut pending = BytesMut::new();
        let mut upload: Option<Box<dyn object_store::MultipartUpload>> = None;
        let result: Result<Option<Bytes>, WriteError> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                size += chunk.len() as u64;
                if size > limit {
                    return Err(WriteError::TooLarge);
                }
                digest(&chunk);
                pending.extend_from_slice(&chunk);
                while pending.len() >= WRITE_CHUNK {
                    if upload.is_none() {
                        upload = Some(
                            self.blobs
                                .put_multipart(&path)
                                .await
                                .map_err(StoreError::from)?,
                        );
                    }
                    let part = PutPayload::from(pending.split_to(WRITE_CHUNK).freeze());
                    if let Some(upload) = upload.as_mut() {
                        upload.put_part(part).await.map_err(StoreError::from)?;
                    }
                }
            }
            if upload.is_none() && inline_max > 0 && pending.len() <= inline_max {
                return Ok(Some(pending.split().freeze()));
            }
            let rest = PutPayload::from(pending.split().freeze());
            match upload.as_mut() {
                None => {
                    self.blobs
                        .put(&path, rest)
                        .await
                        .map_err(StoreError::from)?;
                }
                Some(upload) => {
                    if rest.content_length() > 0 {
                        upload.put_part(rest).await.map_err(StoreError::from)?;
                    }
                    upload.complete().await.map_err(StoreError::from)?;
                }
            }
            Ok(None)
        }
        .await;
        match result {
            Ok(None) => Ok(Written {
                blob,
                size,
                inline: None,
            }),
            Ok(Some(bytes)) => Ok(Written {
                blob: String::new(),
                size,
                inline: Some(bytes),
            }),
            Err(e) => {
                if let Some(mut upload) = upload {
                    let _ = upload.abort().await;
                }
                Err(e)
            }
        }
    }

    /// The bytes `offset..offset + length` of `blob`, as a stream.
    pub async fn read_blob(
        &self,
        blob: &str,
        offset: u64,
        length: u64,
    ) -> Result<BodyStream, StoreError> {
        if length == 0 {
            return Ok(BodyStream::whole(Bytes::new()));
        }
        let options = GetOptions {
            range: Some(GetRange::Bounded(offset..offset + length)),
            ..Default::default()
        };
        let result = self.blobs.get_opts(&BlobPath::from(blob), options).await?;
        // The host cuts chunks to its frame size.
        let stream = result
            .into_stream()
            .map(|chunk| chunk.map_err(|e| BodyError(e.to_string())));
        Ok(BodyStream::from_stream(stream))
    }

    /// Deletes `blob`; a missing one is not an error, a failure is left
    /// for the next open's orphan sweep.
    pub async fn delete_blob(&self, blob: &str) {
        if blob.is_empty() {
            return;
        }
        if let Err(e) = self.blobs.delete(&BlobPath::from(blob)).await
            && !matches!(e, object_store::Error::NotFound { .. })
        {
            eprintln!("[pyflare] warning: R2: could not delete blob {blob}: {e}");
        }
    }

    /// The row of `key`.
    pub async fn head(&self, key: &str) -> Result<Option<ObjectRow>, StoreError> {
        let mut conn = self.conn().await?;
        Ok(sqlx::query(&format!(
            "SELECT {OBJECT_COLUMNS} FROM objects WHERE key = ?"
        ))
        .bind(key.as_bytes())
        .fetch_optional(conn.get())
        .await?
        .as_ref()
        .map(object_from))
    }

    /// Stores `row` if `allowed` says yes of the current row (checked in
    /// the same transaction). Returns `Ok(None)` when refused, else the
    /// replaced blob, if any.
    pub async fn commit_put(
        &self,
        row: &ObjectRow,
        allowed: impl Fn(Option<&ObjectRow>) -> bool,
    ) -> Result<Option<Option<String>>, StoreError> {
        let mut conn = self.conn().await?;
        loop {
            let mut tx = conn.get().begin().await?;
            let old = sqlx::query(&format!(
                "SELECT {OBJECT_COLUMNS} FROM objects WHERE key = ?"
            ))
            .bind(row.key.as_bytes())
            .fetch_optional(&mut *tx)
            .await?
            .as_ref()
            .map(object_from);
            if !allowed(old.as_ref()) {
                return Ok(None);
            }
            insert_object(&mut tx, row).await?;
            tx.commit().await?;
            if conn.publish().await? {
                return Ok(Some(old.map(|o| o.blob)));
            }
        }
    }

    /// The inline bytes of `key` at `version` (`None` once replaced).
    pub async fn inline(&self, key: &str, version: &str) -> Result<Option<Bytes>, StoreError> {
        let mut conn = self.conn().await?;
        let bytes: Option<Option<Vec<u8>>> =
            sqlx::query_scalar("SELECT inline FROM objects WHERE key = ? AND version = ?")
                .bind(key.as_bytes())
                .bind(version)
                .fetch_optional(conn.get())
                .await?;
        Ok(bytes.map(|b| Bytes::from(b.unwrap_or_default())))
    }

    /// Deletes the rows of `keys`; returns their blobs.
    pub async fn delete(&self, keys: &[String]) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn().await?;
        loop {
            let mut tx = conn.get().begin().await?;
            let mut blobs = Vec::new();
            for key in keys {
                if let Some(row) = sqlx::query("DELETE FROM objects WHERE key = ? RETURNING blob")
                    .bind(key.as_bytes())
                    .fetch_optional(&mut *tx)
                    .await?
                {
                    blobs.push(row.get("blob"));
                }
            }
            tx.commit().await?;
            if conn.publish().await? {
                return Ok(blobs);
            }
        }
    }

    /// Rows with keys starting with `prefix`, after `start_after`, in key
    /// byte order, at most `page` of them.
    pub async fn scan(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        page: usize,
    ) -> Result<Vec<ObjectRow>, StoreError> {
        let mut conn = self.conn().await?;
        // Keys are BLOBs: SQLite compares them bytewise, R2's order.
        let rows = sqlx::query(&format!(
            "SELECT {OBJECT_COLUMNS} FROM objects WHERE substr(key, 1, ?) = ? \
             AND (? IS NULL OR key > ?) ORDER BY key LIMIT ?"
        ))
        .bind(prefix.len() as i64)
        .bind(prefix.as_bytes())
        .bind(start_after.map(str::as_bytes))
        .bind(start_after.map(str::as_bytes))
        .bind(page as i64)
        .fetch_all(conn.get())
        .await?;
        Ok(rows.iter().map(object_from).collect())
    }

    /// Records a new multipart upload.
    pub async fn create_upload(
        &self,
        upload_id: &str,
        upload: &UploadRow,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        loop {
            sqlx::query(
                "INSERT INTO uploads (upload_id, key, http_metadata, custom_metadata, \
                 storage_class, created) VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(upload_id)
            .bind(upload.key.as_bytes())
            .bind(&upload.http_metadata)
            .bind(&upload.custom_metadata)
            .bind(&upload.storage_class)
            .bind(now_ms)
            .execute(conn.get())
            .await?;
            if conn.publish().await? {
                return Ok(());
            }
        }
    }

    /// The upload `upload_id` of `key`.
    pub async fn upload(
        &self,
        key: &str,
        upload_id: &str,
    ) -> Result<Option<UploadRow>, StoreError> {
        let mut conn = self.conn().await?;
        let row = sqlx::query("SELECT * FROM uploads WHERE upload_id = ? AND key = ?")
            .bind(upload_id)
            .bind(key.as_bytes())
            .fetch_optional(conn.get())
            .await?;
        Ok(row.map(|row| {
            let key: Vec<u8> = row.get("key");
            UploadRow {
                key: String::from_utf8_lossy(&key).into_owned(),
                http_metadata: row.get("http_metadata"),
                custom_metadata: row.get("custom_metadata"),
                storage_class: row.get("storage_class"),
                state: row.get("state"),
            }
        }))
    }

    /// Records `part` of an upload in progress; returns the blob of the
    /// part it replaces. `Ok(None)` when the upload is not in progress.
    pub async fn put_part(
        &self,
        key: &str,
        upload_id: &str,
        part: &PartRow,
    ) -> Result<Option<Option<String>>, StoreError> {
        let mut conn = self.conn().await?;
        loop {
            let mut tx = conn.get().begin().await?;
            let state: Option<i64> =
                sqlx::query_scalar("SELECT state FROM uploads WHERE upload_id = ? AND key = ?")
                    .bind(upload_id)
                    .bind(key.as_bytes())
                    .fetch_optional(&mut *tx)
                    .await?;
            if state != Some(0) {
                return Ok(None);
            }
            let old: Option<String> = sqlx::query_scalar(
                "SELECT blob FROM parts WHERE upload_id = ? AND part_number = ?",
            )
            .bind(upload_id)
            .bind(part.part_number)
            .fetch_optional(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT OR REPLACE INTO parts (upload_id, part_number, size, md5, etag, blob) \
                 VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(upload_id)
            .bind(part.part_number)
            .bind(part.size as i64)
            .bind(&part.md5)
            .bind(&part.etag)
            .bind(&part.blob)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            if conn.publish().await? {
                return Ok(Some(old));
            }
        }
    }

    /// The parts of an upload, by number.
    pub async fn parts(&self, upload_id: &str) -> Result<Vec<PartRow>, StoreError> {
        let mut conn = self.conn().await?;
        let rows = sqlx::query("SELECT * FROM parts WHERE upload_id = ? ORDER BY part_number")
            .bind(upload_id)
            .fetch_all(conn.get())
            .await?;
        Ok(rows
            .iter()
            .map(|row| PartRow {
                part_number: row.get("part_number"),
                size: row.get::<i64, _>("size") as u64,
                md5: row.get("md5"),
                etag: row.get("etag"),
                blob: row.get("blob"),
            })
            .collect())
    }

    /// Ends an upload (1 completed, 2 aborted), dropping its parts' rows;
    /// returns their blobs. With `object`, stores it in the same
    /// transaction and also returns the blob it replaces. `None` when the
    /// upload had already ended (another process finished it first).
    pub async fn finish_upload(
        &self,
        upload_id: &str,
        state: i64,
        object: Option<&ObjectRow>,
    ) -> Result<Option<Vec<String>>, StoreError> {
        let mut conn = self.conn().await?;
        loop {
            let mut tx = conn.get().begin().await?;
            let ended =
                sqlx::query("UPDATE uploads SET state = ? WHERE upload_id = ? AND state = 0")
                    .bind(state)
                    .bind(upload_id)
                    .execute(&mut *tx)
                    .await?;
            if ended.rows_affected() == 0 {
                return Ok(None);
            }
            let mut blobs: Vec<String> =
                sqlx::query_scalar("DELETE FROM parts WHERE upload_id = ? RETURNING blob")
                    .bind(upload_id)
                    .fetch_all(&mut *tx)
                    .await?;
            if let Some(row) = object {
                if let Some(old) =
                    sqlx::query_scalar::<_, String>("SELECT blob FROM objects WHERE key = ?")
                        .bind(row.key.as_bytes())
                        .fetch_optional(&mut *tx)
                        .await?
                {
                    blobs.push(old);
                }
                insert_object(&mut tx, row).await?;
            }
            tx.commit().await?;
            if conn.publish().await? {
                return Ok(Some(blobs));
            }
        }
    }

    /// Writes the write-ahead log into the database file (clean stop).
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        if let Meta::Local(db) = &self.meta {
            db.acquire()
                .await?
                .execute("PRAGMA wal_checkpoint(TRUNCATE)")
                .await?;
        }
        Ok(())
    }
}

/// Creates the tables of a new metadata file and records where its blobs
/// are (`where_`), or checks that an old file's are there.
async fn record_blobs_place(conn: &mut SqliteConnection, where_: &str) -> Result<(), StoreError> {
    // Every statement of the script; not `sqlx::raw_sql` (see `OneConnection`).
    conn.execute(SCHEMA).await?;
    sqlx::query("INSERT OR IGNORE INTO bucket (name, value) VALUES ('blobs', ?)")
        .bind(where_)
        .execute(&mut *conn)
        .await?;
    let recorded: String = sqlx::query_scalar("SELECT value FROM bucket WHERE name = 'blobs'")
        .fetch_one(&mut *conn)
        .await?;
    if recorded != where_ {
        return Err(StoreError::Config(format!(
            "this bucket's objects are in {recorded}, not {where_}"
        )));
    }
    Ok(())
}

/// Stores `row` (replacing the key's row) within `tx`.
async fn insert_object(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    row: &ObjectRow,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT OR REPLACE INTO objects (key, version, size, etag, uploaded, http_metadata, \
         custom_metadata, checksums, storage_class, blob, inline) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(row.key.as_bytes())
    .bind(&row.version)
    .bind(row.size as i64)
    .bind(&row.etag)
    .bind(row.uploaded)
    .bind(&row.http_metadata)
    .bind(&row.custom_metadata)
    .bind(&row.checksums)
    .bind(&row.storage_class)
    .bind(&row.blob)
    .bind(row.inline.as_deref())
    .execute(&mut **tx)
    .await?;
    Ok(())
}
