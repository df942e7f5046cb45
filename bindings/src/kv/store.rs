//! KV storage behind [`KvStore`]: [`SledKvStore`] on disk (one sled tree per
//! namespace), [`MemoryKvStore`] for tests. sled types never leave this file.
//!
//! A stored record is `[version u8][expiration secs u64, 0 = none]
//! [metadata length u32][metadata JSON][value bytes]`, all big-endian.

use bytes::Bytes;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

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
#[error("{0}")]
pub struct StoreError(pub String);

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
    let bad = || StoreError("corrupt KV record".into());
    if raw.len() < 13 || raw[0] != RECORD_VERSION {
        return Err(bad());
    }
    let expiration = u64::from_be_bytes(raw[1..9].try_into().map_err(|_| bad())?);
    let meta_len = u32::from_be_bytes(raw[9..13].try_into().map_err(|_| bad())?) as usize;
    let meta_end = 13usize.checked_add(meta_len).filter(|end| *end <= raw.len()).ok_or_else(bad)?;
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
        if start_after.is_some_and(|after| key.name.as_bytes() <= after.as_bytes()) || !is_live(key.expiration, now_secs) {
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
#[derive(Debug)]
pub struct SledKvStore {
    db: sled::Db,
}

impl SledKvStore {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(path)
            .mode(sled::Mode::LowSpace)
            .open()
            .map_err(|e| StoreError(e.to_string()))?;
        Ok(Self { db })
    }

    /// The store at `path`, shared by every binding of this process that
    /// opens it (a reload reopens bindings while the old ones still run, and
    /// sled allows one open database per folder).
    pub fn open_shared(path: &Path) -> Result<Self, StoreError> {
        static OPEN: Mutex<BTreeMap<std::path::PathBuf, sled::Db>> = Mutex::new(BTreeMap::new());
        let mut open = OPEN.lock().unwrap_or_else(|p| p.into_inner());
        let key = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        if let Some(db) = open.get(&key) {
            return Ok(Self { db: db.clone() });
        }
        let store = Self::open(path)?;
        open.insert(key, store.db.clone());
        Ok(store)
    }

    /// A store in a fresh temporary folder, for tests.
    pub fn open_temp() -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .temporary(true)
            .open()
            .map_err(|e| StoreError(e.to_string()))?;
        Ok(Self { db })
    }

    fn tree(&self, namespace: &str) -> Result<sled::Tree, StoreError> {
        self.db.open_tree(namespace).map_err(|e| StoreError(e.to_string()))
    }

    fn flush(&self) -> Result<(), StoreError> {
        // Written through to the file before the worker sees success, so the
        // write survives kill -9 of pyflare.
        self.db.flush().map(|_| ()).map_err(|e| StoreError(e.to_string()))
    }
}

impl KvStore for SledKvStore {
    fn get(&self, namespace: &str, key: &str, now_secs: u64) -> Result<Option<Entry>, StoreError> {
        let Some(raw) = self.tree(namespace)?.get(key).map_err(|e| StoreError(e.to_string()))? else {
            return Ok(None);
        };
        let entry = decode(&raw)?;
        Ok(is_live(entry.expiration, now_secs).then_some(entry))
    }

    fn put(&self, namespace: &str, key: &str, entry: &Entry) -> Result<(), StoreError> {
        self.tree(namespace)?
            .insert(key, encode(entry))
            .map_err(|e| StoreError(e.to_string()))?;
        self.flush()
    }

    fn delete(&self, namespace: &str, key: &str) -> Result<(), StoreError> {
        self.tree(namespace)?.remove(key).map_err(|e| StoreError(e.to_string()))?;
        self.flush()
    }

    fn list(
        &self,
        namespace: &str,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        now_secs: u64,
    ) -> Result<(Vec<Listed>, bool), StoreError> {
        let keys = self.tree(namespace)?.scan_prefix(prefix).map(|item| {
            let (key, raw) = item.map_err(|e| StoreError(e.to_string()))?;
            let entry = decode(&raw)?;
            Ok(Listed {
                name: String::from_utf8_lossy(&key).into_owned(),
                expiration: entry.expiration,
                metadata: entry.metadata,
            })
        });
        page(keys, start_after, limit, now_secs)
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
    fn get(&self, namespace: &str, key: &str, now_secs: u64) -> Result<Option<Entry>, StoreError> {
        let data = self.data();
        Ok(data
            .get(&(namespace.to_owned(), key.to_owned()))
            .filter(|e| is_live(e.expiration, now_secs))
            .cloned())
    }

    fn put(&self, namespace: &str, key: &str, entry: &Entry) -> Result<(), StoreError> {
        self.data().insert((namespace.to_owned(), key.to_owned()), entry.clone());
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
