//! Metadata shared through S3: a bucket on S3-compatible storage keeps its
//! SQLite metadata as one object beside its blobs ([`META_PATH`] under the
//! bucket's prefix), so every pyflare pointing at that prefix sees the
//! same objects.
//!
//! Each process holds a copy in an in-memory SQLite database. Before a
//! read it asks S3 for the object only if it changed (`If-None-Match` with
//! the ETag it holds: usually a 304). A write refreshes the copy the same
//! way, applies its transaction, and uploads the whole database with
//! `If-Match` (`If-None-Match: *` for the first); when another process got
//! there first (412), it downloads the new copy and applies the
//! transaction again (its conditions evaluated anew), up to
//! [`MAX_ATTEMPTS`] times with random backoff. Within a process one mutex
//! serializes the copy's users, so only processes race each other.
//!
//! This needs a store that honours conditional writes (AWS S3, R2, MinIO,
//! moto): opening checks it with one probe and refuses a store that
//! ignores `If-Match`.

use bytes::Bytes;
use object_store::path::Path as BlobPath;
use object_store::{GetOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, UpdateVersion};
use sqlx::sqlite::{SqliteConnectOptions, SqliteOwnedBuf};
use sqlx::{ConnectOptions, Executor, SqliteConnection};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{Mutex, MutexGuard};

use super::store::StoreError;

/// The metadata object, under the bucket's prefix (blob names are hex, so
/// never collide with it).
pub(super) const META_PATH: &str = ".pyflare/metadata.sqlite3";

/// Where the conditional-write probe writes (it must fail).
const PROBE_PATH: &str = ".pyflare/conditional-write-probe";

/// Tries of one write against other processes' writes.
pub(super) const MAX_ATTEMPTS: u32 = 30;

/// One bucket's shared metadata.
#[derive(Debug)]
pub(super) struct Shared {
    s3: Arc<dyn ObjectStore>,
    copy: Mutex<Copy>,
    /// Orders the calls and the S3 requests of this process (see
    /// [`Shared::lock`]).
    ticks: AtomicU64,
}

/// This process's copy.
#[derive(Debug)]
struct Copy {
    conn: SqliteConnection,
    /// The ETag of the S3 object the copy is, or `None` when the copy may
    /// differ from it (not yet fetched, or a write that failed half-way).
    etag: Option<String>,
    /// The tick at which the request that last found the copy to be the S3
    /// object (fetched, unchanged, or published) was sent.
    checked: Option<u64>,
    /// `total_changes()` at that moment.
    changes: i64,
}

/// The copy, locked and fresh, for one read or one write.
pub(super) struct Guard<'a> {
    s3: &'a Arc<dyn ObjectStore>,
    copy: MutexGuard<'a, Copy>,
    ticks: &'a AtomicU64,
    attempts: u32,
}

impl std::fmt::Debug for Guard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("etag", &self.copy.etag)
            .finish()
    }
}

fn meta_path() -> BlobPath {
    BlobPath::from(META_PATH)
}

impl Shared {
    /// The shared metadata in `s3` (a bucket's prefix), created from
    /// `schema` if absent; refuses a store that ignores conditional writes.
    pub(super) async fn open(s3: Arc<dyn ObjectStore>, schema: &str) -> Result<Self, StoreError> {
        check_conditional_writes(&s3).await?;
        let mut conn = SqliteConnectOptions::new()
            .in_memory(true)
            .connect()
            .await?;
        // (Through `Executor`: `RawSql::execute` makes callers' futures
        // not provably `Send`.)
        conn.execute(sqlx::raw_sql(schema)).await?;
        let shared = Self {
            s3,
            copy: Mutex::new(Copy {
                conn,
                etag: None,
                checked: None,
                changes: 0,
            }),
            ticks: AtomicU64::new(0),
        };
        // The first process to get here publishes the empty schema; the
        // others fetch what it published.
        let mut guard = shared.lock().await?;
        if guard.copy.etag.is_none() {
            guard.copy.changes = -1;
            guard.publish().await?;
        }
        drop(guard);
        Ok(shared)
    }

    /// The copy, as fresh as the S3 object was at some moment after the
    /// call: refreshed, unless another call of this process refreshed or
    /// published it while this one waited for the lock (under load most
    /// calls then cost no request of their own; a write's `If-Match`
    /// still guards against other processes).
    pub(super) async fn lock(&self) -> Result<Guard<'_>, StoreError> {
        let arrived = self.ticks.fetch_add(1, Ordering::SeqCst);
        let mut guard = Guard {
            s3: &self.s3,
            copy: self.copy.lock().await,
            ticks: &self.ticks,
            attempts: 0,
        };
        let fresh = guard.copy.etag.is_some() && guard.copy.checked.is_some_and(|t| t > arrived);
        if !fresh {
            guard.refresh().await?;
        }
        Ok(guard)
    }
}

/// Refuses a store that would lose concurrent writes: a put `If-Match` a
/// made-up ETag must fail.
async fn check_conditional_writes(s3: &Arc<dyn ObjectStore>) -> Result<(), StoreError> {
    let probe = BlobPath::from(PROBE_PATH);
    let mode = PutMode::Update(UpdateVersion {
        e_tag: Some("\"pyflare-probe\"".into()),
        version: None,
    });
    let refused = || {
        StoreError::Config(
            "this S3-compatible store does not honour conditional writes (If-Match), which \
             pyflare needs to share a bucket's metadata between processes"
                .into(),
        )
    };
    match s3.put_opts(&probe, Bytes::new().into(), mode.into()).await {
        Err(object_store::Error::Precondition { .. } | object_store::Error::NotFound { .. }) => {
            Ok(())
        }
        Err(object_store::Error::NotImplemented { .. }) => Err(refused()),
        Err(e) => Err(e.into()),
        Ok(_) => {
            let _ = s3.delete(&probe).await;
            Err(refused())
        }
    }
}

impl Guard<'_> {
    /// The copy's connection.
    pub(super) fn conn(&mut self) -> &mut SqliteConnection {
        &mut self.copy.conn
    }

    /// Fetches the S3 object if it changed since the copy was taken.
    async fn refresh(&mut self) -> Result<(), StoreError> {
        let options = GetOptions {
            if_none_match: self.copy.etag.clone(),
            ..Default::default()
        };
        // Stamped when asked: what S3 answers is at least that recent.
        let asked = self.ticks.fetch_add(1, Ordering::SeqCst);
        match self.s3.get_opts(&meta_path(), options).await {
            Err(object_store::Error::NotModified { .. }) => {}
            // Not published yet (or removed): the next write creates it.
            Err(object_store::Error::NotFound { .. }) => self.copy.etag = None,
            Err(e) => return Err(e.into()),
            Ok(got) => {
                let etag = got.meta.e_tag.clone();
                let bytes = got.bytes().await?;
                let buffer = SqliteOwnedBuf::try_from(&bytes[..])?;
                self.copy.conn.deserialize(None, buffer, false).await?;
                self.copy.etag = etag;
            }
        }
        self.copy.changes = self.total_changes().await?;
        self.copy.checked = Some(asked);
        Ok(())
    }

    async fn total_changes(&mut self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT total_changes()")
            .fetch_one(&mut self.copy.conn)
            .await?)
    }

    /// Uploads the copy if a transaction changed it. `Ok(true)` when done
    /// (or nothing changed); `Ok(false)` when another process wrote first:
    /// the copy is now theirs, and the caller applies its transaction again.
    pub(super) async fn publish(&mut self) -> Result<bool, StoreError> {
        loop {
            let changes = self.total_changes().await?;
            if changes == self.copy.changes {
                return Ok(true);
            }
            let bytes = Bytes::from(self.copy.conn.serialize(None).await?.to_vec());
            let mode = match self.copy.etag.clone() {
                Some(etag) => PutMode::Update(UpdateVersion {
                    e_tag: Some(etag),
                    version: None,
                }),
                None => PutMode::Create,
            };
            let options = PutOptions {
                mode,
                ..Default::default()
            };
            let asked = self.ticks.fetch_add(1, Ordering::SeqCst);
            match self.s3.put_opts(&meta_path(), bytes.into(), options).await {
                Ok(put) => {
                    // Without an ETag the next use fetches the object whole.
                    self.copy.etag = put.e_tag;
                    self.copy.changes = changes;
                    self.copy.checked = Some(asked);
                    return Ok(true);
                }
                Err(
                    object_store::Error::Precondition { .. }
                    | object_store::Error::AlreadyExists { .. },
                ) => {
                    self.attempts += 1;
                    if self.attempts >= MAX_ATTEMPTS {
                        self.copy.etag = None;
                        return Err(StoreError::Contended(self.attempts));
                    }
                    // Random backoff, growing with the attempts, so two
                    // processes stop meeting.
                    let ceiling = 2u64 << self.attempts.min(6);
                    let mut byte = [0u8; 2];
                    getrandom::fill(&mut byte).expect("the system's random source");
                    let wait = u64::from(u16::from_le_bytes(byte)) % ceiling;
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                    self.copy.etag = None;
                    self.refresh().await?;
                    if self.copy.etag.is_some() {
                        return Ok(false);
                    }
                    // The object was removed meanwhile: the copy, this
                    // transaction included, becomes it.
                    self.copy.changes = -1;
                }
                Err(e) => {
                    // The copy holds a write S3 does not: fetch it whole next.
                    self.copy.etag = None;
                    return Err(e.into());
                }
            }
        }
    }
}
