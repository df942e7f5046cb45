//! Workers KV (<https://developers.cloudflare.com/kv/api/>) on sled.
//!
//! `kv_namespaces` entries become `env.<binding>` objects whose class is
//! `KvNamespace`, so Cloudflare's Python SDK wraps them as it does on
//! Cloudflare. Data lives in one sled database at `<state>/kv/`, one tree
//! per namespace id (`preview_id`, else `id`, else the binding name), so
//! several bindings of one namespace share data as on Cloudflare.
//!
//! Differences from Cloudflare:
//! - Not emulated: eventual consistency and edge caching; a write is visible
//!   at once and `cacheTtl` is validated, then ignored.
//! - Not emulated: the 1 write per second per key limit and the 1,000
//!   operations per invocation limit.
//! - Not emulated: streaming into the store; a stream value arrives chunk
//!   by chunk under the host's credit window and is collected whole (at
//!   most 25 MiB; a longer one is read to its end to report its length)
//!   before it is written, as sled stores whole values.

pub mod call;
mod cli;
pub mod config;
pub mod error;
pub mod limits;
pub mod store;

#[cfg(test)]
mod tests;

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{Value, json};
use std::sync::Arc;

use crate::binding::{
    Binding, BindingConfigError, BindingKind, BodyStream, CollectError, OpenContext, Reply,
};
use crate::cli::BindingCli;
use crate::clock::Clock;
use crate::config::parse_entries;
use crate::error::{CfError, WireError};
use call::KvCall;
use config::KvNamespaceConfig;
use error::{KvError, Op};
use limits::*;
use store::{Entry, KvStore, SledKvStore};

/// The `kv_namespaces` binding kind.
#[derive(Debug)]
pub struct KvNamespaces;

impl BindingKind for KvNamespaces {
    fn config_key(&self) -> &'static str {
        "kv_namespaces"
    }

    fn wire_name(&self) -> &'static str {
        "kv"
    }

    fn methods(&self) -> &'static [&'static str] {
        &["get", "getBulk", "put", "delete", "list"]
    }

    fn shim(&self) -> &'static str {
        include_str!("shim.mjs")
    }

    fn open(
        &self,
        config: &Value,
        cx: &OpenContext,
    ) -> Result<Vec<Arc<dyn Binding>>, BindingConfigError> {
        let entries = parse_entries::<KvNamespaceConfig>(self.config_key(), config)?;
        if entries.is_empty() {
            return Ok(vec![]);
        }
        let path = cx.persist_root.join("kv");
        let store: Arc<dyn KvStore> = Arc::new(open_store_shared(&path)?);
        Ok(entries
            .into_iter()
            .map(|entry| {
                Arc::new(KvNamespace::new(&entry, store.clone(), cx.clock.clone()))
                    as Arc<dyn Binding>
            })
            .collect())
    }

    fn cli(&self) -> Option<&'static dyn BindingCli> {
        Some(&cli::KvCli)
    }
}

/// Opens the sled store, with an error that says what to do.
pub fn open_store(path: &std::path::Path) -> Result<SledKvStore, BindingConfigError> {
    SledKvStore::open(path).map_err(|e| store_error(path, e))
}

/// Like [`open_store`], sharing one open database per folder in this process.
pub fn open_store_shared(path: &std::path::Path) -> Result<SledKvStore, BindingConfigError> {
    SledKvStore::open_shared(path).map_err(|e| store_error(path, e))
}

fn store_error(path: &std::path::Path, e: store::StoreError) -> BindingConfigError {
    use store::StoreError;
    let message = e.to_string();
    let hint = match &e {
        _ if crate::storage::read_only(path) => format!(
            "{} is read-only; make it writable, or pass --persist-to a writable folder",
            path.parent().unwrap_or(path).display()
        ),
        StoreError::ReadOnly(_) => {
            "pyflare cannot write there; make the folder writable, or pass --persist-to a writable folder".into()
        }
        StoreError::Full(_) => "free some space on that disk, or pass --persist-to a folder on another disk".into(),
        _ if message.contains("lock") => {
            "another pyflare (a running pyflare dev, say) holds this store, and sled allows one process at a time; stop it, or pass --persist-to another folder".into()
        }
        _ => format!(
            "pyflare changed nothing; restore the folder from a copy, or move the folder aside to start with an empty store (the {} file records what pyflare last wrote)",
            store::CHECK_FILE
        ),
    };
    BindingConfigError::Storage {
        what: "the KV store".into(),
        path: path.to_path_buf(),
        message,
        hint: Some(hint),
    }
}

/// How long a store call may take before the worker gets an error.
const STORE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A live KV binding (`KVNamespace` in Cloudflare's runtime).
#[derive(Debug)]
pub struct KvNamespace {
    name: String,
    namespace: String,
    store: Arc<dyn KvStore>,
    clock: Arc<dyn Clock>,
}

impl KvNamespace {
    /// A binding reading `config`'s namespace from `store`.
    pub fn new(config: &KvNamespaceConfig, store: Arc<dyn KvStore>, clock: Arc<dyn Clock>) -> Self {
        Self {
            name: config.binding.clone(),
            namespace: config.namespace().to_owned(),
            store,
            clock,
        }
    }

    fn now_secs(&self) -> u64 {
        u64::try_from(self.clock.now_secs()).unwrap_or(0)
    }

    /// Runs one typed call; writes (and reads of a store not open) happen
    /// on tokio's blocking pool.
    pub async fn run(&self, call: KvCall, body: Option<BodyStream>) -> Result<Reply, KvError> {
        match call {
            KvCall::Get {
                key,
                kind,
                cache_ttl,
                with_metadata,
            } => {
                validate_key(&key, Op::Get)?;
                validate_type(kind.as_deref())?;
                validate_cache_ttl(cache_ttl.as_ref(), Op::Get)?;
                let entry = self
                    .read(Op::Get, {
                        let (store, ns, now) =
                            (self.store.clone(), self.namespace.clone(), self.now_secs());
                        move || store.get(&ns, &key, now)
                    })
                    .await?;
                Ok(match entry {
                    None => Reply::json(Value::Null),
                    Some(entry) => {
                        let mut value = json!({});
                        if with_metadata {
                            value["metadata"] = parse_metadata(entry.metadata.as_deref());
                        }
                        Reply::with_body(value, entry.value)
                    }
                })
            }
            KvCall::GetBulk {
                keys,
                kind,
                cache_ttl,
                with_metadata,
            } => {
                let kind = kind.unwrap_or_else(|| "text".into());
                if kind != "text" && kind != "json" {
                    return Err(KvError::BulkType(kind));
                }
                if keys.is_empty() {
                    return Err(KvError::NoKeys);
                }
                if keys.len() > MAX_BULK_KEYS {
                    return Err(KvError::TooManyKeys);
                }
                for key in &keys {
                    validate_key(key, Op::GetBulk)?;
                }
                validate_cache_ttl(cache_ttl.as_ref(), Op::GetBulk)?;
                let entries = self
                    .read(Op::GetBulk, {
                        let (store, ns, now) =
                            (self.store.clone(), self.namespace.clone(), self.now_secs());
                        let keys = keys.clone();
                        move || {
                            keys.iter()
                                .map(|k| store.get(&ns, k, now))
                                .collect::<Result<Vec<_>, _>>()
                        }
                    })
                    .await?;
                let mut out = Vec::with_capacity(keys.len());
                for (key, entry) in keys.into_iter().zip(entries) {
                    let (value, metadata) = match entry {
                        None => (Value::Null, Value::Null),
                        Some(entry) => {
                            let text = String::from_utf8_lossy(&entry.value).into_owned();
                            let value = if kind == "json" {
                                serde_json::from_str(&text)
                                    .map_err(|_| KvError::BulkNotJson(kind.clone()))?
                            } else {
                                Value::String(text)
                            };
                            (value, parse_metadata(entry.metadata.as_deref()))
                        }
                    };
                    out.push(if with_metadata {
                        json!([key, {"value": value, "metadata": metadata}])
                    } else {
                        json!([key, value])
                    });
                }
                Ok(Reply::json(json!({ "entries": out })))
            }
            KvCall::Put {
                key,
                expiration,
                expiration_ttl,
                metadata,
                bad_value,
            } => {
                validate_key(&key, Op::Put)?;
                if bad_value {
                    return Err(KvError::BadValueType);
                }
                let value = match body {
                    None => Bytes::new(),
                    Some(body) => body.collect(MAX_VALUE_BYTES).await.map_err(|e| match e {
                        CollectError::TooLarge { len, .. } => {
                            KvError::ValueTooLarge(usize::try_from(len).unwrap_or(usize::MAX))
                        }
                        CollectError::Broken(e) => KvError::BadRequest(Op::Put, e.to_string()),
                    })?,
                };
                if let Some(metadata) = &metadata
                    && metadata.len() > MAX_METADATA_BYTES
                {
                    return Err(KvError::MetadataTooLarge(metadata.len()));
                }
                let now = self.clock.now_secs();
                let expiration =
                    resolve_expiration(expiration.as_ref(), expiration_ttl.as_ref(), now)?;
                let entry = Entry {
                    value,
                    expiration,
                    metadata,
                };
                self.blocking(Op::Put, {
                    let (store, ns) = (self.store.clone(), self.namespace.clone());
                    move || store.put(&ns, &key, &entry)
                })
                .await?;
                Ok(Reply::json(Value::Null))
            }
            KvCall::Delete { key } => {
                validate_key(&key, Op::Delete)?;
                self.blocking(Op::Delete, {
                    let (store, ns) = (self.store.clone(), self.namespace.clone());
                    move || store.delete(&ns, &key)
                })
                .await?;
                Ok(Reply::json(Value::Null))
            }
            KvCall::List {
                prefix,
                limit,
                cursor,
            } => {
                let prefix = prefix.unwrap_or_default();
                if prefix.len() > MAX_KEY_BYTES {
                    return Err(KvError::KeyTooLong {
                        op: Op::Get,
                        len: prefix.len(),
                    });
                }
                let limit = validate_list_limit(limit.as_ref())?;
                let start_after = match cursor.filter(|c| !c.is_empty()) {
                    None => None,
                    Some(cursor) => {
                        Some(decode_cursor(&cursor).ok_or(KvError::BadCursor(Op::Get))?)
                    }
                };
                let (keys, more) = self
                    .read(Op::Get, {
                        let (store, ns, now) =
                            (self.store.clone(), self.namespace.clone(), self.now_secs());
                        move || store.list(&ns, &prefix, start_after.as_deref(), limit, now)
                    })
                    .await?;
                let cursor = more.then(|| {
                    keys.last()
                        .map(|k| encode_cursor(&k.name))
                        .unwrap_or_default()
                });
                let keys: Vec<Value> = keys
                    .into_iter()
                    .map(|k| {
                        let mut item = json!({ "name": k.name });
                        if let Some(at) = k.expiration {
                            item["expiration"] = json!(at);
                        }
                        if k.metadata.is_some() {
                            item["metadata"] = parse_metadata(k.metadata.as_deref());
                        }
                        item
                    })
                    .collect();
                let mut value =
                    json!({ "keys": keys, "list_complete": !more, "cacheStatus": null });
                if let Some(cursor) = cursor {
                    value["cursor"] = json!(cursor);
                }
                Ok(Reply::json(value))
            }
        }
    }

    /// Runs a read: at once when the store answers reads at once (see
    /// [`KvStore::reads_at_once`]), else as [`Self::blocking`] does.
    async fn read<T: Send + 'static>(
        &self,
        op: Op,
        work: impl FnOnce() -> Result<T, store::StoreError> + Send + 'static,
    ) -> Result<T, KvError> {
        if self.store.reads_at_once() {
            return work().map_err(|e| KvError::Store(op, e));
        }
        self.blocking(op, work).await
    }

    async fn blocking<T: Send + 'static>(
        &self,
        op: Op,
        work: impl FnOnce() -> Result<T, store::StoreError> + Send + 'static,
    ) -> Result<T, KvError> {
        // A store that stops answering must not hang the worker forever.
        match tokio::time::timeout(STORE_TIMEOUT, tokio::task::spawn_blocking(work)).await {
            Ok(Ok(result)) => result.map_err(|e| KvError::Store(op, e)),
            Ok(Err(join)) => Err(KvError::Store(
                op,
                store::StoreError::Other(join.to_string()),
            )),
            Err(_) => Err(KvError::Store(op, {
                self.store.mark_stalled();
                store::StoreError::Other(format!(
                    "the store did not answer within {} s; restart pyflare",
                    STORE_TIMEOUT.as_secs()
                ))
            })),
        }
    }
}

#[async_trait]
impl Binding for KvNamespace {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "kv"
    }

    fn describe(&self) -> String {
        format!(
            "KV Namespace      {}  ({}, local)",
            self.name, self.namespace
        )
    }

    async fn close(&self) -> Result<(), String> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.close())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("KV {}: {e}", self.name))
    }

    async fn call(
        &self,
        method: &str,
        args: Value,
        body: Option<BodyStream>,
    ) -> Result<Reply, WireError> {
        let call: KvCall = serde_json::from_value(json!({ "method": method, "args": args }))
            .map_err(|e| KvError::BadRequest(Op::Get, e.to_string()).to_wire())?;
        self.run(call, body).await.map_err(|e| {
            if let KvError::Store(_, source) = &e {
                // The worker sees Cloudflare's opaque 500; the cause is for the terminal.
                eprintln!("[pyflare] error: KV {}: {source}", self.name);
            }
            e.to_wire()
        })
    }
}

/// Checks a key as workerd's `validateKeyName` and the KV service do.
pub fn validate_key(key: &str, op: Op) -> Result<(), KvError> {
    match key {
        "" => Err(KvError::EmptyKey),
        "." => Err(KvError::DotKey(".")),
        ".." => Err(KvError::DotKey("..")),
        _ if key.len() > MAX_KEY_BYTES => Err(KvError::KeyTooLong { op, len: key.len() }),
        _ => Ok(()),
    }
}

fn validate_type(kind: Option<&str>) -> Result<(), KvError> {
    match kind {
        None | Some("text" | "json" | "arrayBuffer" | "stream") => Ok(()),
        Some(_) => Err(KvError::UnknownType),
    }
}

/// A number as JavaScript would print it in the message.
fn js_number(value: &Value) -> String {
    match value {
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 1e21 => format!("{}", f as i64),
            _ => n.to_string(),
        },
        Value::Null => "NaN".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn validate_cache_ttl(value: Option<&Value>, op: Op) -> Result<(), KvError> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(());
    };
    match value.as_f64() {
        Some(ttl) if ttl >= MIN_CACHE_TTL_SECS as f64 => Ok(()),
        _ => Err(KvError::CacheTtl {
            op,
            value: js_number(value),
        }),
    }
}

fn validate_list_limit(value: Option<&Value>) -> Result<usize, KvError> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(MAX_LIST_KEYS);
    };
    match value.as_f64() {
        Some(n) if n <= 0.0 || n.is_nan() => Err(KvError::ListLimitTooSmall(js_number(value))),
        Some(n) if n > MAX_LIST_KEYS as f64 => Err(KvError::ListLimitTooLarge(js_number(value))),
        Some(n) => Ok(n as usize),
        None => Err(KvError::ListLimitTooSmall(js_number(value))),
    }
}

fn resolve_expiration(
    expiration: Option<&Value>,
    ttl: Option<&Value>,
    now: i64,
) -> Result<Option<u64>, KvError> {
    if let Some(ttl) = ttl.filter(|v| !v.is_null()) {
        let seconds = ttl.as_f64().filter(|n| n.is_finite() && *n > 0.0);
        let Some(seconds) = seconds else {
            return Err(KvError::TtlNotPositive(js_number(ttl)));
        };
        if seconds < MIN_EXPIRATION_TTL_SECS as f64 {
            return Err(KvError::TtlTooShort(js_number(ttl)));
        }
        return Ok(Some((now + seconds as i64) as u64));
    }
    if let Some(at) = expiration.filter(|v| !v.is_null()) {
        let seconds = at.as_f64().filter(|n| n.is_finite());
        let Some(seconds) = seconds.filter(|s| *s > now as f64) else {
            return Err(KvError::ExpirationInPast(js_number(at)));
        };
        if seconds < (now + MIN_EXPIRATION_TTL_SECS) as f64 {
            return Err(KvError::ExpirationTooSoon(js_number(at)));
        }
        return Ok(Some(seconds as u64));
    }
    Ok(None)
}

fn parse_metadata(raw: Option<&str>) -> Value {
    raw.and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or(Value::Null)
}

fn encode_cursor(last_key: &str) -> String {
    hex::encode(last_key)
}

fn decode_cursor(cursor: &str) -> Option<String> {
    if cursor.len() % 2 != 0 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..cursor.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(cursor.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}
