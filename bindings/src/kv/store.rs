//! KV storage behind [`KvStore`]: [`SledKvStore`] on disk (one sled tree per
//! namespace), [`MemoryKvStore`] for tests. sled types never leave this file.
//!
//! A stored record is `[version u8][expiration secs u64, 0 = none]
//! [metadata length u32][metadata JSON][value bytes]`, all big-endian.

use bytes::Bytes;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// One stored value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The bytes as put.
    pub value: Bytes,
    /// Absolute expiry, seconds since the epoch.
    pub expiration: Option<u64>,
    /// Serialized JSON metadata.
    pub metadata: Option<String>,
}

/// One key as `list` returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The key.
    pub name: String,
    /// Absolute expiry, seconds since the epoch.
    pub expiration: Option<u64>,
    /// Serialized JSON metadata.
    pub metadata: Option<String>,
}

/// A storage engine failure (never shown to the worker as is).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file system has no room for the write; nothing was written.
    #[error("{0}")]
    Full(String),
    /// The folder cannot be written (read-only file system or permissions).
    #[error("{0}")]
    ReadOnly(String),
    /// The stored data is not what pyflare wrote.
    #[error("the store is damaged: {0}")]
    Damaged(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
    /// An error from sled itself (kept apart so the store reopens after it).
    #[error("{0}")]
    Sled(Box<StoreError>),
}

impl StoreError {
    fn from_io(error: &std::io::Error) -> Self {
        match error.kind() {
            std::io::ErrorKind::StorageFull => Self::Full(error.to_string()),
            std::io::ErrorKind::ReadOnlyFilesystem | std::io::ErrorKind::PermissionDenied => {
                Self::ReadOnly(error.to_string())
            }
            _ => Self::Other(error.to_string()),
        }
    }

    fn from_sled(error: sled::Error) -> Self {
        Self::Sled(Box::new(match error {
            sled::Error::Io(io) => Self::from_io(&io),
            sled::Error::Corruption { .. } => Self::Damaged(error.to_string()),
            other => Self::Other(other.to_string()),
        }))
    }

    /// The error as callers see it (sled's own errors unwrapped).
    fn surface(self) -> Self {
        match self {
            Self::Sled(inner) => *inner,
            other => other,
        }
    }
}

const RECORD_VERSION: u8 = 1;

/// The operations KV needs of a storage engine. `now_secs` decides expiry:
/// an entry whose expiration is at or before it does not exist.
pub trait KvStore: Send + Sync + std::fmt::Debug {
    /// The live entry under `key`.
    fn get(&self, namespace: &str, key: &str, now_secs: u64) -> Result<Option<Entry>, StoreError>;
    /// Stores `entry` under `key`; durable when this returns.
    fn put(&self, namespace: &str, key: &str, entry: &Entry) -> Result<(), StoreError>;
    /// Removes `key`; durable when this returns.
    fn delete(&self, namespace: &str, key: &str) -> Result<(), StoreError>;
    /// Up to `limit` live keys starting with `prefix`, after `start_after`,
    /// in byte order, and whether more follow.
    fn list(
        &self,
        namespace: &str,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        now_secs: u64,
    ) -> Result<(Vec<Listed>, bool), StoreError>;
    /// Whether a read answers at once, with nothing to open or wait for:
    /// then pyflare reads on the calling thread rather than on tokio's
    /// blocking pool, whose hop there and back costs more than the read.
    fn reads_at_once(&self) -> bool {
        false
    }
    /// A call did not return in time: later calls should fail at once
    /// rather than pile up behind it.
    fn mark_stalled(&self) {}
    /// Leaves the store complete and checkable on disk (a clean stop).
    fn close(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

fn encode(entry: &Entry) -> Vec<u8> {
    let metadata = entry.metadata.as_deref().unwrap_or("").as_bytes();
    let mut out = Vec::with_capacity(13 + metadata.len() + entry.value.len());
    out.push(RECORD_VERSION);
    out.extend_from_slice(&entry.expiration.unwrap_or(0).to_be_bytes());
    out.extend_from_slice(&(metadata.len() as u32).to_be_bytes());
    out.extend_from_slice(metadata);
    out.extend_from_slice(&entry.value);
    out
}

fn decode(raw: &[u8]) -> Result<Entry, StoreError> {
    let bad = || StoreError::Damaged("a KV record is not in pyflare's format".into());
    if raw.len() < 13 || raw[0] != RECORD_VERSION {
        return Err(bad());
    }
    let expiration = u64::from_be_bytes(raw[1..9].try_into().map_err(|_| bad())?);
    let meta_len = u32::from_be_bytes(raw[9..13].try_into().map_err(|_| bad())?) as usize;
    let meta_end = 13usize
        .checked_add(meta_len)
        .filter(|end| *end <= raw.len())
        .ok_or_else(bad)?;
    let metadata = if meta_len == 0 {
        None
    } else {
        Some(String::from_utf8(raw[13..meta_end].to_vec()).map_err(|_| bad())?)
    };
    Ok(Entry {
        value: Bytes::copy_from_slice(&raw[meta_end..]),
        expiration: (expiration != 0).then_some(expiration),
        metadata,
    })
}

fn is_live(expiration: Option<u64>, now_secs: u64) -> bool {
    expiration.is_none_or(|at| at > now_secs)
}

/// One `list` page from keys in byte order: live keys after `start_after`,
/// at most `limit`, and whether more follow. Every adapter pages this way.
fn page(
    keys: impl Iterator<Item = Result<Listed, StoreError>>,
    start_after: Option<&str>,
    limit: usize,
    now_secs: u64,
) -> Result<(Vec<Listed>, bool), StoreError> {
    let mut out = Vec::new();
    for key in keys {
        let key = key?;
        if start_after.is_some_and(|after| key.name.as_bytes() <= after.as_bytes())
            || !is_live(key.expiration, now_secs)
        {
            continue;
        }
        if out.len() == limit {
            return Ok((out, true));
        }
        out.push(key);
    }
    Ok((out, false))
}

/// KV on sled: one database under the state root, one tree per namespace.
///
/// sled 0.34 has two failure modes pyflare guards against:
/// - **A full disk wedges it.** When writing a large record's blob file
///   fails, `Log::reserve` returns the error while still holding its place
///   in the log buffer, so that buffer is never written and every later
///   `flush` waits for it forever. pyflare therefore checks the free space
///   before each write ([`FREE_SPACE_MARGIN`] beyond the record) and refuses
///   the write itself with a clear error, so sled never meets a full disk.
/// - **It cannot tell damage from a torn write.** At open, sled cuts its log
///   at the first record whose checksum fails and carries on with what came
///   before (0 or 28 of 50 keys), then overwrites the rest. pyflare keeps
///   its own check beside the store ([`CHECK_FILE`]: the number of records,
///   a digest of all of them and a fingerprint of sled's log file, length
///   and modification time), written on a clean close and removed at open.
///   At open, a log that is not the one pyflare last wrote is first opened
///   from a copy and checked there, so a damaged store is reported, never
///   opened (nor cut) in place. The check is of a store closed cleanly; a
///   check file written around every write held each write until the one
///   before it was flushed: 272 KV put+get requests/s in bench/run.sh,
///   against 2,780 with writes sharing sled's flushes.
///
/// After any error from sled itself (its "global error" makes every later
/// call fail the same way), the database is closed and reopened, checked
/// as at start, on the next call, so KV works again once the disk has room.
/// A call that does not return within the binding's timeout marks the store
/// stalled: later calls fail at once, asking for a restart.
#[derive(Debug, Clone)]
pub struct SledKvStore {
    slot: Arc<Slot>,
}

/// The one open database of a folder, shared by every binding using it.
#[derive(Debug)]
struct Slot {
    /// None for a temporary store, which is never reopened.
    path: Option<std::path::PathBuf>,
    open: std::sync::RwLock<Option<Opened>>,
    stalled: std::sync::atomic::AtomicBool,
    margin: std::sync::atomic::AtomicU64,
}

#[derive(Debug, Clone)]
struct Opened {
    db: sled::Db,
    check: Option<Arc<Check>>,
}

/// How many times (20 ms apart) a reopen after an error waits for the
/// file lock the dropped database still holds.
const REOPEN_TRIES: u32 = 50;

/// pyflare's check file, in the store folder.
pub const CHECK_FILE: &str = "pyflare-check";

/// Free space kept beyond a record's own size before writing: sled may
/// start a new 512 KiB log segment and rewrite a node for one insert.
pub const FREE_SPACE_MARGIN: u64 = 2 * 512 * 1024;

impl SledKvStore {
    /// Opens (or creates) the database at `path`, checking it first.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let opened = open_checked(path).map_err(StoreError::surface)?;
        Ok(Self::from_slot(Some(path.to_path_buf()), opened))
    }

    fn from_slot(path: Option<std::path::PathBuf>, opened: Opened) -> Self {
        Self {
            slot: Arc::new(Slot {
                path,
                open: std::sync::RwLock::new(Some(opened)),
                stalled: std::sync::atomic::AtomicBool::new(false),
                margin: std::sync::atomic::AtomicU64::new(FREE_SPACE_MARGIN),
            }),
        }
    }

    /// The store at `path`, shared by every binding of this process that
    /// opens it (a reload reopens bindings while the old ones still run, and
    /// sled allows one open database per folder).
    pub fn open_shared(path: &Path) -> Result<Self, StoreError> {
        static OPEN: Mutex<BTreeMap<std::path::PathBuf, SledKvStore>> = Mutex::new(BTreeMap::new());
        let mut open = OPEN.lock().unwrap_or_else(|p| p.into_inner());
        let key = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        if let Some(store) = open.get(&key) {
            return Ok(store.clone());
        }
        let store = Self::open(path)?;
        open.insert(key, store.clone());
        Ok(store)
    }

    /// A store in a fresh temporary folder, for tests.
    pub fn open_temp() -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .temporary(true)
            .open()
            .map_err(StoreError::from_sled)?;
        Ok(Self::from_slot(None, Opened { db, check: None }))
    }

    /// Sets the free space kept beyond each record; None turns the check
    /// off (tests use it to let sled itself meet a full disk).
    pub fn set_free_space_margin(&self, bytes: Option<u64>) {
        self.slot.margin.store(
            bytes.unwrap_or(u64::MAX),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Marks the store as stalled: a call did not return in time.
    pub fn mark_stalled(&self) {
        self.slot
            .stalled
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// The open database, reopening it after an error.
    fn opened(&self) -> Result<Opened, StoreError> {
        if self.slot.stalled.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(StoreError::Other(
                "the store stopped answering after a write error and cannot be used again in this run; restart pyflare".into(),
            ));
        }
        if let Some(opened) = &*self.slot.open.read().unwrap_or_else(|p| p.into_inner()) {
            return Ok(opened.clone());
        }
        let mut open = self.slot.open.write().unwrap_or_else(|p| p.into_inner());
        if let Some(opened) = &*open {
            return Ok(opened.clone());
        }
        let path = self
            .slot
            .path
            .as_deref()
            .ok_or_else(|| StoreError::Other("the store is closed".into()))?;
        // The database dropped after the error may hold its file lock a
        // little longer, while sled's own threads let go of it.
        let mut tries = 0;
        let opened = loop {
            match open_checked(path).map_err(StoreError::surface) {
                Err(e)
                    if tries < REOPEN_TRIES && e.to_string().contains("could not acquire lock") =>
                {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                result => break result?,
            }
        };
        *open = Some(opened.clone());
        Ok(opened)
    }

    /// Runs `op` on the open database; an error from sled closes it, so the
    /// next call reopens it.
    fn with<T>(&self, op: impl FnOnce(&Opened) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let opened = self.opened()?;
        let result = op(&opened);
        if let Err(StoreError::Sled(_)) = &result
            && self.slot.path.is_some()
        {
            let mut open = self.slot.open.write().unwrap_or_else(|p| p.into_inner());
            if open.as_ref().is_some_and(|current| same(current, &opened)) {
                *open = None;
            }
        }
        result.map_err(StoreError::surface)
    }
}

fn same(a: &Opened, b: &Opened) -> bool {
    match (&a.check, &b.check) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        _ => false,
    }
}

/// Opens the database at `path` and checks it against pyflare's check file.
fn open_checked(path: &Path) -> Result<Opened, StoreError> {
    let check_path = path.join(CHECK_FILE);
    let recorded = match std::fs::read_to_string(&check_path) {
        Ok(text) => Some(Recorded::parse(&text).ok_or_else(|| {
            StoreError::Damaged(format!("{} cannot be read", check_path.display()))
        })?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(StoreError::from_io(&e)),
    };
    if let Some(recorded) = &recorded
        && recorded.fingerprint != fingerprint(path)
    {
        // Not the log pyflare last wrote (damage, or a kill between a
        // write and its fingerprint): check a copy before sled may cut it.
        verify_copy(path, recorded)?;
    }
    let db = open_sled(path).map_err(StoreError::surface)?;
    let state = scan(&db)?;
    if let Some(recorded) = &recorded
        && !recorded.accepts(state)
    {
        return Err(StoreError::Damaged(recorded.mismatch(state)));
    }
    let check = Arc::new(Check {
        dir: path.to_path_buf(),
        state: Mutex::new(state),
        closed: std::sync::atomic::AtomicBool::new(false),
    });
    // While the store is open the check file makes no claim: it is written
    // again on a clean close. After a kill, the next open finds none and
    // trusts sled's own recovery (every write a worker saw succeed was
    // flushed). Not checked: damage to a store that was not closed cleanly.
    match std::fs::remove_file(path.join(CHECK_FILE)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(StoreError::from_io(&e));
        }
        _ => {}
    }
    Ok(Opened {
        db,
        check: Some(check),
    })
}

impl Opened {
    fn tree(&self, namespace: &str) -> Result<sled::Tree, StoreError> {
        self.db.open_tree(namespace).map_err(StoreError::from_sled)
    }

    fn flush(&self) -> Result<(), StoreError> {
        // Written through to the file before the worker sees success, so the
        // write survives kill -9 of pyflare.
        self.db.flush().map(|_| ()).map_err(StoreError::from_sled)
    }

    /// Replaces `key`'s record with `new` (None deletes), keeping the check
    /// file in step.
    fn write(
        &self,
        namespace: &str,
        key: &str,
        new: Option<Vec<u8>>,
        margin: u64,
    ) -> Result<(), StoreError> {
        let tree = self.tree(namespace)?;
        let Some(check) = &self.check else {
            match new {
                Some(raw) => tree.insert(key, raw).map_err(StoreError::from_sled)?,
                None => tree.remove(key).map_err(StoreError::from_sled)?,
            };
            return self.flush();
        };
        if let Some(raw) = &new
            && margin != u64::MAX
        {
            let needed = raw.len() as u64 + key.len() as u64 + margin;
            let free = fs2::available_space(&check.dir).map_err(|e| StoreError::from_io(&e))?;
            if free < needed {
                return Err(StoreError::Full(format!(
                    "no space left on the disk of {} ({} KiB free; this write needs {} KiB)",
                    check.dir.display(),
                    free / 1024,
                    needed.div_ceil(1024)
                )));
            }
        }
        {
            // The digest follows the records in memory; the lock covers no
            // I/O, so concurrent writes still share one flush below.
            let mut state = check.state.lock().unwrap_or_else(|p| p.into_inner());
            if check.closed.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(StoreError::Other(
                    "the store is closed: pyflare is stopping".into(),
                ));
            }
            let old = tree.get(key).map_err(StoreError::from_sled)?;
            let mut next = *state;
            if let Some(old) = &old {
                next.remove(namespace, key, old);
            }
            if let Some(raw) = &new {
                next.add(namespace, key, raw);
            }
            match new {
                Some(raw) => tree.insert(key, raw).map(|_| ()),
                None => tree.remove(key).map(|_| ()),
            }
            .map_err(StoreError::from_sled)?;
            *state = next;
        }
        self.flush()
    }

    /// Flushes and records the store's state in the check file, for the
    /// next open to check.
    fn close(&self) -> Result<(), StoreError> {
        let Some(check) = &self.check else {
            return self.flush();
        };
        let state = check.state.lock().unwrap_or_else(|p| p.into_inner());
        check
            .closed
            .store(true, std::sync::atomic::Ordering::SeqCst);
        // Writes that got in before this lock are in the log: flushed, then
        // recorded with no write able to follow.
        self.flush()?;
        check.record(*state, *state)
    }
}

fn open_sled(path: &Path) -> Result<sled::Db, StoreError> {
    sled::Config::new()
        .path(path)
        .mode(sled::Mode::LowSpace)
        // pyflare flushes after every write; no background writes, so the
        // log changes only while pyflare writes (see the fingerprint).
        .flush_every_ms(None)
        .open()
        .map_err(StoreError::from_sled)
}

/// Opens a copy of the store in a temporary folder and checks it against
/// what pyflare recorded.
fn verify_copy(path: &Path, recorded: &Recorded) -> Result<(), StoreError> {
    let copy = std::env::temp_dir().join(format!("pyflare-kv-check-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&copy);
    let result = (|| {
        copy_dir(path, &copy).map_err(|e| StoreError::from_io(&e))?;
        let db = open_sled(&copy).map_err(|e| StoreError::Damaged(e.to_string()))?;
        let state = scan(&db)?;
        drop(db);
        if recorded.accepts(state) {
            Ok(())
        } else {
            Err(StoreError::Damaged(recorded.mismatch(state)))
        }
    })();
    let _ = std::fs::remove_dir_all(&copy);
    result
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// Reads every record of every tree: their number and digest. This is the
/// cost of checking at open: 2,000 records open and check in about 40 ms
/// in a debug build (`sled_store_check_at_open_costs_little`).
fn scan(db: &sled::Db) -> Result<State, StoreError> {
    let mut state = State::default();
    for name in db.tree_names() {
        let tree = db.open_tree(&name).map_err(StoreError::from_sled)?;
        let namespace = String::from_utf8_lossy(&name).into_owned();
        for item in tree.iter() {
            let (key, raw) = item.map_err(|e| StoreError::Damaged(e.to_string()))?;
            state.add(&namespace, &String::from_utf8_lossy(&key), &raw);
        }
    }
    Ok(state)
}

/// The number of records and a digest of all of them: the XOR of one
/// 128-bit hash per (namespace, key, record), so a write updates it
/// without reading the others.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct State {
    records: u64,
    digest: u128,
}

impl State {
    fn add(&mut self, namespace: &str, key: &str, raw: &[u8]) {
        self.records += 1;
        self.digest ^= record_hash(namespace, key, raw);
    }

    fn remove(&mut self, namespace: &str, key: &str, raw: &[u8]) {
        self.records -= 1;
        self.digest ^= record_hash(namespace, key, raw);
    }
}

/// Two FNV-1a 64-bit hashes with different seeds over length-prefixed
/// parts: stable across Rust versions, unlike `DefaultHasher`.
fn record_hash(namespace: &str, key: &str, raw: &[u8]) -> u128 {
    let mut high: u64 = 0xcbf2_9ce4_8422_2325;
    let mut low: u64 = 0x6c62_272e_07bb_0142;
    for part in [namespace.as_bytes(), key.as_bytes(), raw] {
        for byte in (part.len() as u64).to_be_bytes().iter().chain(part) {
            high = (high ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3);
            low = (low ^ u64::from(*byte))
                .wrapping_mul(0x0000_0100_0000_01b3)
                .rotate_left(5);
        }
    }
    (u128::from(high) << 64) | u128::from(low)
}

/// What the check file says: the state before and after the write in
/// progress (equal when none is), and the log's fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Recorded {
    before: State,
    after: State,
    fingerprint: Fingerprint,
}

impl Recorded {
    fn parse(text: &str) -> Option<Self> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        let [
            magic,
            b_records,
            b_digest,
            a_records,
            a_digest,
            length,
            modified,
        ] = fields[..]
        else {
            return None;
        };
        let state = |records: &str, digest: &str| {
            Some(State {
                records: records.parse().ok()?,
                digest: u128::from_str_radix(digest, 16).ok()?,
            })
        };
        (magic == "pyflare-kv-check-1").then_some(())?;
        Some(Self {
            before: state(b_records, b_digest)?,
            after: state(a_records, a_digest)?,
            fingerprint: Fingerprint {
                length: length.parse().ok()?,
                modified: modified.parse().ok()?,
            },
        })
    }

    fn accepts(&self, state: State) -> bool {
        state == self.before || state == self.after
    }

    fn mismatch(&self, state: State) -> String {
        format!(
            "it holds {} records where pyflare last wrote {}{}",
            state.records,
            self.after.records,
            if state.records == self.after.records {
                " with other contents"
            } else {
                ""
            }
        )
    }
}

/// Length and modification time (ns) of sled's log file, `db`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    length: u64,
    modified: u128,
}

fn fingerprint(dir: &Path) -> Fingerprint {
    let Ok(meta) = std::fs::metadata(dir.join("db")) else {
        return Fingerprint::default();
    };
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    Fingerprint {
        length: meta.len(),
        modified,
    }
}

/// The check file of one open store and the state it last recorded.
#[derive(Debug)]
struct Check {
    dir: std::path::PathBuf,
    state: Mutex<State>,
    /// Set (under the `state` lock) once the check file is written on
    /// close: a later write would make it stale, so it is refused.
    closed: std::sync::atomic::AtomicBool,
}

impl Check {
    fn record(&self, before: State, after: State) -> Result<(), StoreError> {
        let fp = fingerprint(&self.dir);
        let text = format!(
            "pyflare-kv-check-1 {} {:032x} {} {:032x} {} {}\n",
            before.records, before.digest, after.records, after.digest, fp.length, fp.modified
        );
        std::fs::write(self.dir.join(CHECK_FILE), text).map_err(|e| StoreError::from_io(&e))
    }
}

impl KvStore for SledKvStore {
    fn get(&self, namespace: &str, key: &str, now_secs: u64) -> Result<Option<Entry>, StoreError> {
        self.with(|opened| {
            let Some(raw) = opened
                .tree(namespace)?
                .get(key)
                .map_err(StoreError::from_sled)?
            else {
                return Ok(None);
            };
            let entry = decode(&raw)?;
            Ok(is_live(entry.expiration, now_secs).then_some(entry))
        })
    }

    fn put(&self, namespace: &str, key: &str, entry: &Entry) -> Result<(), StoreError> {
        let margin = self.slot.margin.load(std::sync::atomic::Ordering::Relaxed);
        self.with(|opened| opened.write(namespace, key, Some(encode(entry)), margin))
    }

    fn delete(&self, namespace: &str, key: &str) -> Result<(), StoreError> {
        self.with(|opened| opened.write(namespace, key, None, 0))
    }

    fn reads_at_once(&self) -> bool {
        // Open and answering: sled reads from its page cache, and waits on
        // no flush. A store to reopen (after an error) takes the blocking
        // pool, and its timeout.
        !self.slot.stalled.load(std::sync::atomic::Ordering::Relaxed)
            && self.slot.open.try_read().is_ok_and(|open| open.is_some())
    }

    fn mark_stalled(&self) {
        SledKvStore::mark_stalled(self);
    }

    fn close(&self) -> Result<(), StoreError> {
        self.with(Opened::close)
    }

    fn list(
        &self,
        namespace: &str,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        now_secs: u64,
    ) -> Result<(Vec<Listed>, bool), StoreError> {
        self.with(|opened| {
            let keys = opened.tree(namespace)?.scan_prefix(prefix).map(|item| {
                let (key, raw) = item.map_err(StoreError::from_sled)?;
                let entry = decode(&raw)?;
                Ok(Listed {
                    name: String::from_utf8_lossy(&key).into_owned(),
                    expiration: entry.expiration,
                    metadata: entry.metadata,
                })
            });
            page(keys, start_after, limit, now_secs)
        })
    }
}

/// KV in memory, for tests of code above the store.
#[derive(Debug, Default)]
pub struct MemoryKvStore {
    data: Mutex<BTreeMap<(String, String), Entry>>,
}

impl MemoryKvStore {
    fn data(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, String), Entry>> {
        self.data.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl KvStore for MemoryKvStore {
    fn reads_at_once(&self) -> bool {
        true
    }

    fn get(&self, namespace: &str, key: &str, now_secs: u64) -> Result<Option<Entry>, StoreError> {
        let data = self.data();
        Ok(data
            .get(&(namespace.to_owned(), key.to_owned()))
            .filter(|e| is_live(e.expiration, now_secs))
            .cloned())
    }

    fn put(&self, namespace: &str, key: &str, entry: &Entry) -> Result<(), StoreError> {
        self.data()
            .insert((namespace.to_owned(), key.to_owned()), entry.clone());
        Ok(())
    }

    fn delete(&self, namespace: &str, key: &str) -> Result<(), StoreError> {
        self.data().remove(&(namespace.to_owned(), key.to_owned()));
        Ok(())
    }

    fn list(
        &self,
        namespace: &str,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        now_secs: u64,
    ) -> Result<(Vec<Listed>, bool), StoreError> {
        let data = self.data();
        let keys = data
            .range((namespace.to_owned(), prefix.to_owned())..)
            .take_while(|((ns, key), _)| ns == namespace && key.starts_with(prefix))
            .map(|((_, key), entry)| {
                Ok(Listed {
                    name: key.clone(),
                    expiration: entry.expiration,
                    metadata: entry.metadata.clone(),
                })
            });
        page(keys, start_after, limit, now_secs)
    }
}
