//! R2 (<https://developers.cloudflare.com/r2/api/workers/workers-api-reference/>)
//! on object_store and SQLite.
//!
//! `r2_buckets` entries become `env.<binding>` objects whose class is
//! `R2Bucket`, so Cloudflare's Python SDK wraps them as it does on
//! Cloudflare. Each bucket (`preview_bucket_name`, else `bucket_name`, else
//! the binding name) is a folder `<state>/r2/<bucket>/`: metadata in
//! `metadata.sqlite3`, values up to 32 KiB in their row, larger ones in
//! `blobs/` through object_store's `LocalFileSystem`, one file per upload
//! named by a random id (never by the key) (see [`store`]). Bindings of one
//! bucket share its data. Bodies stream both ways under the host's credit
//! window: neither pyflare nor the host holds a large object whole.
//!
//! On S3: with `PYFLARE_R2_<BINDING>_URL=s3://bucket[/prefix]` in the
//! environment or `.dev.vars`, a bucket lives in S3-compatible storage
//! through object_store's `AmazonS3Builder`, configured by the `AWS_*`
//! variables it knows (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ALLOW_HTTP`, ...): every
//! value in a blob under the prefix, and the metadata as one SQLite object
//! beside them (`<prefix>/.pyflare/metadata.sqlite3`), read and written by
//! compare-and-swap (see [`shared`]). So every pyflare naming that URL
//! (`pyflare dev` on two machines, the `pyflare r2 object` commands) sees
//! one bucket, multipart uploads in progress included; nothing of it is in
//! the local state folder. Every binding of one bucket must name the same
//! URL. Blobs no row names (a crash's) are deleted at open once older than
//! `PYFLARE_R2_ORPHAN_GRACE_SECONDS` (default an hour), so another
//! process's put in flight is never swept.
//!
//! Differences from Cloudflare:
//! - Not emulated: `ssecKey` (customer keys) and storage classes beyond
//!   recording the name given (as Miniflare, any name); `jurisdiction` is
//!   accepted and only shown.
//! - Not emulated: the 7-day expiry of unfinished multipart uploads.
//! - Not emulated: a multipart object's bytes are joined into one blob by
//!   `complete` (R2 keeps the parts), so `complete` takes time in
//!   proportion to the object's size.
//! - `delete` of more than 1,000 keys is a `TypeError` (Cloudflare documents
//!   the limit; Miniflare has none); completing or aborting an upload that
//!   never existed is R2's "multipart upload does not exist" (10024), where
//!   Miniflare answers an internal error (10001).
//! - On S3, each write rewrites the whole metadata object (its size grows
//!   with the number of objects and uploads in progress), and each read
//!   first asks S3 whether it changed: slower than a local bucket, and
//!   writes of several processes to one bucket take turns (a write that
//!   loses the race is applied again; last writer wins per key, as R2).
//!   A store that ignores conditional writes (`If-Match`) is refused.

pub mod call;
mod cli;
pub mod config;
pub mod error;
pub mod limits;
mod shared;
pub mod store;

#[cfg(test)]
mod tests;

use async_trait::async_trait;
use md5::Digest as _;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::OnceCell;

use crate::binding::{
    Binding, BindingConfigError, BindingKind, BodyError, BodyStream, OpenContext, Reply,
};
use crate::cli::BindingCli;
use crate::clock::Clock;
use crate::config::parse_entries;
use crate::error::{CfError, WireError};
use call::{HttpMetadata, ListOptions, PutOptions, R2Call, UploadedPart};
use config::R2BucketConfig;
use error::{Failure, Op, R2Error};
use futures::StreamExt;
use limits::*;
use store::{ObjectRow, PartRow, R2Store, StoreError, UploadRow, WriteError};

/// The `r2_buckets` binding kind.
#[derive(Debug)]
pub struct R2Buckets;

impl BindingKind for R2Buckets {
    fn config_key(&self) -> &'static str {
        "r2_buckets"
    }

    fn wire_name(&self) -> &'static str {
        "r2"
    }

    fn methods(&self) -> &'static [&'static str] {
        &[
            "head",
            "get",
            "put",
            "delete",
            "list",
            "createMultipartUpload",
            "uploadPart",
            "completeMultipartUpload",
            "abortMultipartUpload",
        ]
    }

    fn shim(&self) -> &'static str {
        include_str!("shim.mjs")
    }

    fn open(
        &self,
        config: &Value,
        cx: &OpenContext,
    ) -> Result<Vec<Arc<dyn Binding>>, BindingConfigError> {
        let mut out: Vec<Arc<dyn Binding>> = Vec::new();
        // Bindings of one bucket must agree on where its bytes are.
        let mut homes: BTreeMap<String, (String, Option<String>)> = BTreeMap::new();
        for entry in parse_entries::<R2BucketConfig>(self.config_key(), config)? {
            let bucket = R2Bucket::new(entry, &cx.persist_root, cx.clock.clone(), &cx.settings);
            let home = bucket.s3.as_ref().map(|(url, _)| url.clone());
            let name = bucket.config.bucket().to_owned();
            match homes.get(&name) {
                Some((other, other_home)) if *other_home != home => {
                    return Err(BindingConfigError::Invalid {
                        path: self.config_key().to_owned(),
                        message: format!(
                            "bindings {other} and {} share the bucket {name} but not its place: set {} and {} to the same URL",
                            bucket.config.binding,
                            s3_setting(other),
                            s3_setting(&bucket.config.binding)
                        ),
                    });
                }
                _ => {
                    homes.insert(name, (bucket.config.binding.clone(), home));
                }
            }
            bucket.open_now()?;
            out.push(Arc::new(bucket));
        }
        Ok(out)
    }

    fn cli(&self) -> Option<&'static dyn BindingCli> {
        Some(&cli::R2Cli)
    }
}

/// The local folder of a bucket.
pub fn bucket_dir(persist_root: &std::path::Path, config: &R2BucketConfig) -> PathBuf {
    persist_root.join("r2").join(config.bucket())
}

/// A live R2 binding.
#[derive(Debug)]
pub struct R2Bucket {
    config: R2BucketConfig,
    dir: PathBuf,
    clock: Arc<dyn Clock>,
    /// `PYFLARE_R2_<BINDING>_URL` and the `AWS_*` settings, for a bucket
    /// whose bytes live in S3-compatible storage.
    s3: Option<(String, BTreeMap<String, String>)>,
    /// How old a blob no row names must be before an open on S3 deletes
    /// it ([`ORPHAN_GRACE_SETTING`], default an hour).
    orphan_grace: std::time::Duration,
    store: OnceCell<R2Store>,
}

/// The setting giving, in seconds, how old a blob on S3 that no row names
/// must be before it is swept: younger ones may belong to another
/// process's put that has not committed yet.
pub const ORPHAN_GRACE_SETTING: &str = "PYFLARE_R2_ORPHAN_GRACE_SECONDS";

/// The setting naming the S3 URL of a binding's bucket.
pub fn s3_setting(binding: &str) -> String {
    format!("PYFLARE_R2_{binding}_URL")
}

/// Tries of a get whose row is replaced while its bytes are read.
const GET_TRIES: u32 = 3;

/// The checksum algorithms, in R2's order: (option name, name in errors).
const ALGORITHMS: [(&str, &str); 5] = [
    ("md5", "MD5"),
    ("sha1", "SHA-1"),
    ("sha256", "SHA-256"),
    ("sha384", "SHA-384"),
    ("sha512", "SHA-512"),
];

/// Hex length of each algorithm's digest, in [`ALGORITHMS`]' order.
const HEX_LENGTHS: [usize; 5] = [32, 40, 64, 96, 128];

/// The digests computed while a body streams in: MD5 always, and the one
/// other algorithm the put asked to check.
struct Digests {
    md5: md5::Md5,
    other: Option<(usize, Box<dyn sha2::digest::DynDigest + Send>)>,
}

impl Digests {
    fn new(other: Option<usize>) -> Self {
        let other = other.filter(|&i| i > 0).map(|i| {
            let hasher: Box<dyn sha2::digest::DynDigest + Send> = match i {
                1 => Box::new(sha1::Sha1::default()),
                2 => Box::new(sha2::Sha256::default()),
                3 => Box::new(sha2::Sha384::default()),
                _ => Box::new(sha2::Sha512::default()),
            };
            (i, hasher)
        });
        Self {
            md5: md5::Md5::new(),
            other,
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        self.md5.update(bytes);
        if let Some((_, hasher)) = &mut self.other {
            hasher.update(bytes);
        }
    }

    /// Hex digests by algorithm index.
    fn finish(self) -> Vec<(usize, String)> {
        let mut out = vec![(0, hex::encode(self.md5.finalize()))];
        if let Some((i, hasher)) = self.other {
            out.push((i, hex::encode(hasher.finalize())));
        }
        out
    }
}

fn internal(op: Op) -> impl Fn(StoreError) -> R2Error {
    move |e| {
        eprintln!("[pyflare] error: R2 {op}: {e}");
        R2Error::service(op, Failure::Internal(e.to_string()))
    }
}

fn validate_key(key: &str, op: Op) -> Result<(), R2Error> {
    if key.len() > MAX_KEY_BYTES {
        return Err(R2Error::service(op, Failure::InvalidObjectName));
    }
    Ok(())
}

/// Custom metadata counted as Miniflare counts it: each string's length,
/// doubled when it has a character past U+00FF.
fn validate_custom_metadata(
    metadata: &std::collections::BTreeMap<String, String>,
    op: Op,
) -> Result<(), R2Error> {
    let length = |s: &str| {
        let units = s.encode_utf16().count();
        if s.chars().any(|c| c as u32 >= 256) {
            units * 2
        } else {
            units
        }
    };
    let total: usize = metadata.iter().map(|(k, v)| length(k) + length(v)).sum();
    if total > MAX_METADATA_BYTES {
        return Err(R2Error::service(op, Failure::MetadataTooLarge));
    }
    Ok(())
}

/// The object as the shim builds `R2Object` from it.
fn object_json(row: &ObjectRow, range: Option<(u64, u64)>, include: (bool, bool)) -> Value {
    let parse = |text: &str| serde_json::from_str::<Value>(text).unwrap_or_else(|_| json!({}));
    let mut object = json!({
        "key": row.key,
        "version": row.version,
        "size": row.size,
        "etag": row.etag,
        "uploaded": row.uploaded,
        "httpMetadata": if include.0 { parse(&row.http_metadata) } else { json!({}) },
        "customMetadata": if include.1 { parse(&row.custom_metadata) } else { json!({}) },
        "checksums": parse(&row.checksums),
        "storageClass": row.storage_class,
    });
    if let Some((offset, length)) = range {
        object["range"] = json!({ "offset": offset, "length": length });
    }
    object
}

/// The storage class recorded: the one given, else the bucket default.
/// Not emulated: storage classes themselves; any name is recorded, as
/// Miniflare does.
fn storage_class(given: Option<String>) -> String {
    given
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "Standard".into())
}

impl R2Bucket {
    /// A binding for `config` with its folder under `persist_root`; its
    /// bytes go to S3 when `settings` has its `PYFLARE_R2_<BINDING>_URL`.
    pub fn new(
        config: R2BucketConfig,
        persist_root: &std::path::Path,
        clock: Arc<dyn Clock>,
        settings: &BTreeMap<String, String>,
    ) -> Self {
        let dir = bucket_dir(persist_root, &config);
        let s3 = settings
            .get(&s3_setting(&config.binding))
            .filter(|url| !url.is_empty())
            .map(|url| {
                let aws = settings
                    .iter()
                    .filter(|(k, _)| k.starts_with("AWS_"))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                (url.clone(), aws)
            });
        Self {
            config,
            dir,
            clock,
            s3,
            orphan_grace: std::time::Duration::from_secs(
                settings
                    .get(ORPHAN_GRACE_SETTING)
                    .and_then(|s| s.trim().parse().ok())
                    .unwrap_or(3600),
            ),
            store: OnceCell::new(),
        }
    }

    /// The open store (opened on first use).
    pub async fn store(&self) -> Result<&R2Store, StoreError> {
        self.store
            .get_or_try_init(|| {
                R2Store::open_shared(
                    &self.dir,
                    self.s3.as_ref().map(|(url, aws)| {
                        let grace = self.orphan_grace.as_millis() as i64;
                        (url.as_str(), aws, self.clock.now_ms() - grace)
                    }),
                )
            })
            .await
    }

    /// Opens the bucket now on a multi-threaded runtime, so an unusable
    /// folder stops `pyflare dev` at start with its path.
    pub fn open_now(&self) -> Result<(), BindingConfigError> {
        let Some(opened) = crate::storage::open_at_start(self.store()) else {
            return Ok(());
        };
        opened
            .map(|_| ())
            .map_err(|error| BindingConfigError::Storage {
                what: format!("the R2 bucket {}", self.config.bucket()),
                // A bucket on S3 has nothing in the local folder.
                path: match &self.s3 {
                    Some((url, _)) => PathBuf::from(url),
                    None => self.dir.clone(),
                },
                message: error.to_string(),
                hint: Some(if self.s3.is_some() {
                    format!(
                        "check {} and the AWS_* settings (endpoint, credentials, region) in the environment or .dev.vars; the store must honour conditional writes (If-Match)",
                        s3_setting(&self.config.binding)
                    )
                } else if let StoreError::Config(_) = error {
                    format!(
                        "set {} (and AWS_* credentials) in the environment or .dev.vars as when the bucket was first used, or move the folder aside",
                        s3_setting(&self.config.binding)
                    )
                } else if crate::storage::read_only(&self.dir) {
                    "make the folder writable, or pass --persist-to a writable folder".into()
                } else {
                    "move the folder aside to start with an empty bucket".into()
                }),
            })
    }

    fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Runs one typed call.
    pub async fn run(&self, call: R2Call, body: Option<BodyStream>) -> Result<Reply, R2Error> {
        match call {
            R2Call::Head { key } => self.head(key).await,
            R2Call::Get {
                key,
                only_if,
                range,
            } => self.get(key, only_if, range).await,
            R2Call::Put { key, options } => self.put(key, *options, body).await,
            R2Call::Delete { keys } => self.delete(keys).await,
            R2Call::List(options) => self.list(options).await,
            R2Call::CreateMultipartUpload {
                key,
                http_metadata,
                custom_metadata,
                storage_class,
            } => {
                self.create_upload(key, http_metadata, custom_metadata, storage_class)
                    .await
            }
            R2Call::UploadPart {
                key,
                upload_id,
                part_number,
            } => self.upload_part(key, upload_id, part_number, body).await,
            R2Call::CompleteMultipartUpload {
                key,
                upload_id,
                parts,
            } => self.complete_upload(key, upload_id, parts).await,
            R2Call::AbortMultipartUpload { key, upload_id } => {
                self.abort_upload(key, upload_id).await
            }
        }
    }

    async fn head(&self, key: String) -> Result<Reply, R2Error> {
        validate_key(&key, Op::Head)?;
        let store = self.store().await.map_err(internal(Op::Head))?;
        let row = store.head(&key).await.map_err(internal(Op::Head))?;
        Ok(Reply::json(match row {
            None => Value::Null,
            Some(row) => object_json(&row, Some((0, row.size)), (true, true)),
        }))
    }

    async fn get(
        &self,
        key: String,
        only_if: Option<call::Conditional>,
        range: Option<call::RangeRequest>,
    ) -> Result<Reply, R2Error> {
        validate_key(&key, Op::Get)?;
        let store = self.store().await.map_err(internal(Op::Get))?;
        // A row whose bytes are gone when read was replaced or deleted
        // meanwhile (by a call on another binding, or another process on
        // S3): the get starts again from the new row.
        let mut tries = 0;
        loop {
            tries += 1;
            let Some(row) = store.head(&key).await.map_err(internal(Op::Get))? else {
                return Ok(Reply::json(Value::Null));
            };
            if let Some(condition) = &only_if
                && !condition.holds(Some((&row.etag, row.uploaded)))
            {
                let object = object_json(&row, Some((0, row.size)), (true, true));
                return Ok(Reply::json(json!({ "object": object, "bodyless": true })));
            }
            let (offset, length) = match &range {
                None => (0, row.size),
                Some(range) => range
                    .resolve(row.size)
                    .map_err(|_| R2Error::service(Op::Get, Failure::InvalidRange))?
                    .unwrap_or((0, row.size)),
            };
            let body = if row.blob.is_empty() {
                let bytes = store
                    .inline(&row.key, &row.version)
                    .await
                    .map_err(internal(Op::Get))?;
                let Some(bytes) = bytes else {
                    if tries < GET_TRIES {
                        continue;
                    }
                    let gone = StoreError::Config("replaced while read".into());
                    return Err(internal(Op::Get)(gone));
                };
                let (start, end) = (offset as usize, (offset + length) as usize);
                BodyStream::whole(bytes.slice(start.min(bytes.len())..end.min(bytes.len())))
            } else {
                match store.read_blob(&row.blob, offset, length).await {
                    Ok(body) => body,
                    Err(StoreError::Blob(object_store::Error::NotFound { .. }))
                        if tries < GET_TRIES =>
                    {
                        continue;
                    }
                    Err(e) => return Err(internal(Op::Get)(e)),
                }
            };
            let object = object_json(&row, Some((offset, length)), (true, true));
            return Ok(Reply::with_body(json!({ "object": object }), body));
        }
    }

    async fn put(
        &self,
        key: String,
        options: PutOptions,
        body: Option<BodyStream>,
    ) -> Result<Reply, R2Error> {
        validate_key(&key, Op::Put)?;
        validate_custom_metadata(&options.custom_metadata, Op::Put)?;
        let storage_class = storage_class(options.storage_class.clone());
        let expected: Vec<(usize, String)> = [
            &options.md5,
            &options.sha1,
            &options.sha256,
            &options.sha384,
            &options.sha512,
        ]
        .into_iter()
        .enumerate()
        .filter_map(|(i, v)| v.clone().map(|v| (i, v.to_ascii_lowercase())))
        .collect();
        if expected.len() > 1 {
            return Err(R2Error::Type(
                "You cannot specify multiple hashing algorithms.".into(),
            ));
        }
        for (i, hex) in &expected {
            let wanted = HEX_LENGTHS[*i];
            if hex.len() != wanted || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(R2Error::Type(format!(
                    "{} is {wanted} hex characters, not {}",
                    ALGORITHMS[*i].1,
                    hex.len()
                )));
            }
        }
        let store = self.store().await.map_err(internal(Op::Put))?;
        // A condition that already fails need not read the body.
        if let Some(condition) = &options.only_if {
            let current = store.head(&key).await.map_err(internal(Op::Put))?;
            if !condition.holds(current.as_ref().map(|r| (r.etag.as_str(), r.uploaded))) {
                return Ok(Reply::json(Value::Null));
            }
        }
        let mut digests = Digests::new(expected.first().map(|(i, _)| *i));
        let written = store
            .write_blob(body, MAX_VALUE_BYTES, store.inline_max(), |bytes| {
                digests.update(bytes)
            })
            .await
            .map_err(|e| write_error(e, Op::Put))?;
        let computed = digests.finish();
        if let Some((i, provided)) = expected.first()
            && let Some((_, actual)) = computed.iter().find(|(j, _)| j == i)
            && provided != actual
        {
            store.delete_blob(&written.blob).await;
            return Err(R2Error::service(
                Op::Put,
                Failure::BadDigest {
                    algorithm: ALGORITHMS[*i].1,
                    provided: provided.clone(),
                    actual: actual.clone(),
                },
            ));
        }
        let checksums: Map<String, Value> = computed
            .iter()
            .map(|(i, hex)| (ALGORITHMS[*i].0.to_owned(), json!(hex)))
            .collect();
        let row = ObjectRow {
            key,
            version: store::new_version(),
            size: written.size,
            etag: computed[0].1.clone(),
            uploaded: self.now_ms(),
            http_metadata: serde_json::to_string(&options.http_metadata).unwrap_or_default(),
            custom_metadata: serde_json::to_string(&options.custom_metadata).unwrap_or_default(),
            checksums: Value::Object(checksums).to_string(),
            storage_class,
            blob: written.blob,
            inline: written.inline,
        };
        let only_if = options.only_if;
        let committed = store
            .commit_put(&row, |current| {
                only_if.as_ref().is_none_or(|condition| {
                    condition.holds(current.map(|r| (r.etag.as_str(), r.uploaded)))
                })
            })
            .await
            .map_err(internal(Op::Put))?;
        match committed {
            None => {
                store.delete_blob(&row.blob).await;
                Ok(Reply::json(Value::Null))
            }
            Some(old) => {
                if let Some(old) = old {
                    store.delete_blob(&old).await;
                }
                Ok(Reply::json(object_json(&row, None, (true, true))))
            }
        }
    }

    async fn delete(&self, keys: Vec<String>) -> Result<Reply, R2Error> {
        if keys.len() > MAX_DELETE_KEYS {
            return Err(R2Error::Type(format!(
                "delete: You can delete at most {MAX_DELETE_KEYS} keys in one call."
            )));
        }
        for key in &keys {
            validate_key(key, Op::Delete)?;
        }
        let store = self.store().await.map_err(internal(Op::Delete))?;
        for blob in store.delete(&keys).await.map_err(internal(Op::Delete))? {
            store.delete_blob(&blob).await;
        }
        Ok(Reply::json(Value::Null))
    }

    async fn list(&self, options: ListOptions) -> Result<Reply, R2Error> {
        let mut limit = match options.limit {
            None => MAX_LIST_KEYS,
            Some(l) if (1.0..=MAX_LIST_KEYS as f64).contains(&l) => l as usize,
            Some(_) => return Err(R2Error::service(Op::List, Failure::InvalidMaxKeys)),
        };
        let include = (
            options.include.iter().any(|i| i == "httpMetadata"),
            options.include.iter().any(|i| i == "customMetadata"),
        );
        if include.0 || include.1 {
            limit = limit.min(MAX_LIST_KEYS_WITH_METADATA);
        }
        let prefix = options.prefix.unwrap_or_default();
        let mut start_after = options.start_after.filter(|s| !s.is_empty());
        // A cursor that does not decode is ignored, as Miniflare does.
        if let Some(from_cursor) = options.cursor.as_deref().and_then(decode_cursor)
            && start_after.as_ref().is_none_or(|s| from_cursor > *s)
        {
            start_after = Some(from_cursor);
        }
        let delimiter = options.delimiter.filter(|d| !d.is_empty());
        let store = self.store().await.map_err(internal(Op::List))?;
        let mut objects = Vec::new();
        let mut prefixes: Vec<String> = Vec::new();
        // The last key of the last entry taken: the next page starts after it.
        let mut last: Option<String> = None;
        let mut truncated = false;
        let mut after = start_after;
        'pages: loop {
            let rows = store
                .scan(&prefix, after.as_deref(), limit + 1)
                .await
                .map_err(internal(Op::List))?;
            let exhausted = rows.len() < limit + 1;
            for row in &rows {
                after = Some(row.key.clone());
                let group = delimiter.as_ref().and_then(|d| {
                    let rest = &row.key[prefix.len()..];
                    rest.find(d.as_str())
                        .map(|at| row.key[..prefix.len() + at + d.len()].to_owned())
                });
                if let Some(group) = &group
                    && prefixes.last() == Some(group)
                {
                    // Same group: the cursor moves past its keys.
                    last = Some(row.key.clone());
                    continue;
                }
                if objects.len() + prefixes.len() == limit {
                    truncated = true;
                    break 'pages;
                }
                last = Some(row.key.clone());
                match group {
                    Some(group) => prefixes.push(group),
                    None => objects.push(object_json(row, None, include)),
                }
            }
            if exhausted {
                break;
            }
        }
        let mut value = json!({
            "objects": objects,
            "truncated": truncated,
            "delimitedPrefixes": prefixes,
        });
        if truncated && let Some(last) = last {
            value["cursor"] = json!(encode_cursor(&last));
        }
        Ok(Reply::json(value))
    }

    async fn create_upload(
        &self,
        key: String,
        http_metadata: HttpMetadata,
        custom_metadata: std::collections::BTreeMap<String, String>,
        storage_class: Option<String>,
    ) -> Result<Reply, R2Error> {
        let op = Op::CreateMultipartUpload;
        validate_key(&key, op)?;
        validate_custom_metadata(&custom_metadata, op)?;
        let storage_class = self::storage_class(storage_class);
        let store = self.store().await.map_err(internal(op))?;
        let upload_id = store::new_upload_id();
        let upload = UploadRow {
            key: key.clone(),
            http_metadata: serde_json::to_string(&http_metadata).unwrap_or_default(),
            custom_metadata: serde_json::to_string(&custom_metadata).unwrap_or_default(),
            storage_class,
            state: 0,
        };
        store
            .create_upload(&upload_id, &upload, self.now_ms())
            .await
            .map_err(internal(op))?;
        Ok(Reply::json(json!({ "key": key, "uploadId": upload_id })))
    }

    async fn upload_part(
        &self,
        key: String,
        upload_id: String,
        part_number: i64,
        body: Option<BodyStream>,
    ) -> Result<Reply, R2Error> {
        let op = Op::UploadPart;
        validate_key(&key, op)?;
        if !(1..=i64::from(MAX_PARTS)).contains(&part_number) {
            return Err(R2Error::Type(format!(
                "Part number must be between 1 and 10000 (inclusive). Actual value was: {part_number}"
            )));
        }
        let store = self.store().await.map_err(internal(op))?;
        match store.upload(&key, &upload_id).await.map_err(internal(op))? {
            Some(upload) if upload.state == 0 => {}
            _ => return Err(R2Error::service(op, Failure::NoSuchUpload)),
        }
        let mut md5 = md5::Md5::new();
        let written = store
            .write_blob(body, MAX_VALUE_BYTES, 0, |bytes| md5.update(bytes))
            .await
            .map_err(|e| write_error(e, op))?;
        let part = PartRow {
            part_number,
            size: written.size,
            md5: hex::encode(md5.finalize()),
            etag: store::new_version(),
            blob: written.blob,
        };
        match store
            .put_part(&key, &upload_id, &part)
            .await
            .map_err(internal(op))?
        {
            None => {
                store.delete_blob(&part.blob).await;
                Err(R2Error::service(op, Failure::NoSuchUpload))
            }
            Some(old) => {
                if let Some(old) = old {
                    store.delete_blob(&old).await;
                }
                Ok(Reply::json(
                    json!({ "partNumber": part_number, "etag": part.etag }),
                ))
            }
        }
    }

    async fn complete_upload(
        &self,
        key: String,
        upload_id: String,
        selected: Vec<UploadedPart>,
    ) -> Result<Reply, R2Error> {
        let op = Op::CompleteMultipartUpload;
        validate_key(&key, op)?;
        let store = self.store().await.map_err(internal(op))?;
        let Some(upload) = store.upload(&key, &upload_id).await.map_err(internal(op))? else {
            return Err(R2Error::service(op, Failure::NoSuchUpload));
        };
        if upload.state != 0 {
            return Err(R2Error::service(op, Failure::NoSuchUpload));
        }
        let mut seen = std::collections::HashSet::new();
        if !selected.iter().all(|p| seen.insert(p.part_number)) {
            return Err(R2Error::service(
                op,
                Failure::Internal("a part is named twice".into()),
            ));
        }
        let uploaded = store.parts(&upload_id).await.map_err(internal(op))?;
        let mut parts: Vec<&PartRow> = Vec::with_capacity(selected.len());
        for wanted in &selected {
            match uploaded
                .iter()
                .find(|p| p.part_number == wanted.part_number)
            {
                Some(part) if part.etag == wanted.etag => parts.push(part),
                _ => return Err(R2Error::service(op, Failure::InvalidPart)),
            }
        }
        if let Some((_, all_but_last)) = parts.split_last()
            && all_but_last.iter().any(|p| p.size < MIN_PART_BYTES)
        {
            return Err(R2Error::service(op, Failure::EntityTooSmall));
        }
        parts.sort_by_key(|p| p.part_number);
        if let Some((last, rest)) = parts.split_last()
            && let Some(first) = rest.first()
            && (rest.iter().any(|p| p.size != first.size) || last.size > first.size)
        {
            return Err(R2Error::service(op, Failure::BadUpload));
        }
        // One blob of the parts in order, each opened when reached.
        let pieces: Vec<(String, u64)> = parts.iter().map(|p| (p.blob.clone(), p.size)).collect();
        let reader = store.clone();
        let joined = futures::stream::iter(pieces)
            .then(move |(blob, size)| {
                let reader = reader.clone();
                async move { reader.read_blob(&blob, 0, size).await }
            })
            .flat_map(|opened| match opened {
                Ok(body) => body.left_stream(),
                Err(e) => futures::stream::once(async move { Err(BodyError(e.to_string())) })
                    .right_stream(),
            });
        let body = BodyStream::from_stream(joined);
        let written = store
            .write_blob(Some(body), u64::MAX, 0, |_| {})
            .await
            .map_err(|e| write_error(e, op))?;
        let mut etag = md5::Md5::new();
        for part in &parts {
            etag.update(hex::decode(&part.md5).unwrap_or_default());
        }
        let row = ObjectRow {
            key,
            version: store::new_version(),
            size: written.size,
            etag: format!("{}-{}", hex::encode(etag.finalize()), parts.len()),
            uploaded: self.now_ms(),
            http_metadata: upload.http_metadata,
            custom_metadata: upload.custom_metadata,
            checksums: "{}".into(),
            storage_class: upload.storage_class,
            blob: written.blob,
            inline: None,
        };
        let Some(old) = store
            .finish_upload(&upload_id, 1, Some(&row))
            .await
            .map_err(internal(op))?
        else {
            // Completed or aborted meanwhile (by another process on S3).
            store.delete_blob(&row.blob).await;
            return Err(R2Error::service(op, Failure::NoSuchUpload));
        };
        for blob in old {
            store.delete_blob(&blob).await;
        }
        Ok(Reply::json(object_json(&row, None, (true, true))))
    }

    async fn abort_upload(&self, key: String, upload_id: String) -> Result<Reply, R2Error> {
        let op = Op::AbortMultipartUpload;
        validate_key(&key, op)?;
        let store = self.store().await.map_err(internal(op))?;
        let Some(upload) = store.upload(&key, &upload_id).await.map_err(internal(op))? else {
            return Err(R2Error::service(op, Failure::NoSuchUpload));
        };
        if upload.state == 0 {
            for blob in store
                .finish_upload(&upload_id, 2, None)
                .await
                .map_err(internal(op))?
                .unwrap_or_default()
            {
                store.delete_blob(&blob).await;
            }
        }
        Ok(Reply::json(Value::Null))
    }
}

fn write_error(error: WriteError, op: Op) -> R2Error {
    match error {
        WriteError::TooLarge => R2Error::service(op, Failure::EntityTooLarge),
        WriteError::Broken(e) => R2Error::Type(e.to_string()),
        WriteError::Store(e) => internal(op)(e),
    }
}

/// A list cursor: the last key taken, in base64 (Miniflare's cursors).
fn encode_cursor(key: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(key)
}

fn decode_cursor(cursor: &str) -> Option<String> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(cursor)
        .ok()?;
    String::from_utf8(bytes).ok()
}

#[async_trait]
impl Binding for R2Bucket {
    fn name(&self) -> &str {
        &self.config.binding
    }

    fn kind(&self) -> &'static str {
        "r2"
    }

    fn describe(&self) -> String {
        let place = match &self.s3 {
            Some((url, _)) => url.as_str(),
            None => "local",
        };
        format!(
            "R2 Bucket         {}  ({}, {place})",
            self.config.binding,
            self.config.bucket()
        )
    }

    async fn close(&self) -> Result<(), String> {
        match self.store.get() {
            Some(store) => store
                .checkpoint()
                .await
                .map_err(|e| format!("R2 {}: {e}", self.config.binding)),
            None => Ok(()),
        }
    }

    async fn call(
        &self,
        method: &str,
        args: Value,
        body: Option<BodyStream>,
    ) -> Result<Reply, WireError> {
        let call: R2Call = serde_json::from_value(json!({ "method": method, "args": args }))
            .map_err(|e| R2Error::Type(format!("{method}: {e}")).to_wire())?;
        self.run(call, body).await.map_err(|e| e.to_wire())
    }
}
