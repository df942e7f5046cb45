//! The traits every binding implements.

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::clock::Clock;
use crate::error::WireError;

/// A kind of binding, e.g. KV namespaces; one static value per kind.
pub trait BindingKind: Sync {
    /// Key in wrangler.toml / wrangler.jsonc, e.g. `"kv_namespaces"`.
    fn config_key(&self) -> &'static str;
    /// Name on the wire and in logs, e.g. `"kv"`.
    fn wire_name(&self) -> &'static str;
    /// Method names the shim may call.
    fn methods(&self) -> &'static [&'static str];
    /// JavaScript module whose `create(name, call)` builds `env.<NAME>`
    /// with Cloudflare's API shape.
    fn shim(&self) -> &'static str;
    /// Parses this kind's config value and opens the storage of every
    /// binding it declares.
    fn open(
        &self,
        config: &serde_json::Value,
        cx: &OpenContext,
    ) -> Result<Vec<Arc<dyn Binding>>, BindingConfigError>;
    /// Its command line (`pyflare kv ...`), if it has one.
    fn cli(&self) -> Option<&'static dyn crate::cli::BindingCli> {
        None
    }
    /// The segment of its loopback-only routes, `/cdn-cgi/pyflare/<route>/...`
    /// (answered by [`Binding::inspect`]); the wire name unless it says
    /// otherwise.
    fn route(&self) -> &'static str {
        self.wire_name()
    }
}

/// One live binding, e.g. `env.MY_KV`.
#[async_trait::async_trait]
pub trait Binding: Send + Sync + std::fmt::Debug {
    /// The name the worker sees, e.g. `MY_KV`.
    fn name(&self) -> &str;
    /// Wire name of its kind, e.g. `kv`.
    fn kind(&self) -> &'static str;
    /// One line for the `pyflare dev` banner.
    fn describe(&self) -> String;
    /// Runs one method call from the worker. A `body` streams in while the
    /// call runs; a binding that needs it whole uses [`BodyStream::collect`].
    async fn call(
        &self,
        method: &str,
        args: serde_json::Value,
        body: Option<BodyStream>,
    ) -> Result<Reply, WireError>;
    /// Leaves the binding's storage complete on disk before pyflare exits
    /// cleanly (Ctrl-C, SIGTERM, the end of a CLI command). Errors are for
    /// the terminal.
    async fn close(&self) -> Result<(), String> {
        Ok(())
    }
    /// What its shim's `create(name, call, options)` gets besides the name
    /// (a Durable Object namespace's class and id key); null by default.
    fn shim_options(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
    /// The binding's background tasks (see [`crate::tasks`]), started once it
    /// is open; none by default.
    fn tasks(&self, cx: &crate::tasks::TaskContext) -> Vec<crate::tasks::Task> {
        let _ = cx;
        Vec::new()
    }
    /// Answers a loopback-only request to `/cdn-cgi/pyflare/<route>/...`
    /// (see [`Inspect`]): what the binding holds (a queue's counts, an
    /// object's storage) and what tools may ask of it (deliver a queue's
    /// batches now). `None`: not this binding's to answer.
    async fn inspect(&self, request: &Inspect) -> Option<Result<serde_json::Value, InspectError>> {
        let _ = request;
        None
    }
}

/// A loopback-only request to the routes of one kind of binding,
/// `/cdn-cgi/pyflare/<route>/<path...>`. pyflare asks every live binding of
/// the kind, in the order of their names, and merges the JSON objects they
/// answer into one (so `GET /cdn-cgi/pyflare/queues` lists every queue).
#[derive(Debug, Clone, Default)]
pub struct Inspect {
    /// `GET` to read, `POST` to act.
    pub method: String,
    /// The path's segments after the route, percent-decoded.
    pub path: Vec<String>,
    /// The query string's pairs, decoded.
    pub query: Vec<(String, String)>,
    /// The request body (JSON, by convention).
    pub body: Bytes,
}

impl Inspect {
    /// The value of query parameter `name`, if present.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Why a binding refused an [`Inspect`] request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InspectError {
    /// Nothing by that name (404).
    #[error("{0}")]
    NotFound(String),
    /// The request is malformed (400).
    #[error("{0}")]
    BadRequest(String),
    /// The binding's store failed (500).
    #[error("{0}")]
    Failed(String),
}

/// The result of a binding call: JSON, plus bytes for bulk data.
#[derive(Debug, Default)]
pub struct Reply {
    /// The JSON part.
    pub value: serde_json::Value,
    /// Bulk bytes, sent as binary frames after the JSON; a stream is sent
    /// as it is produced, under the host's credit window.
    pub body: Option<BodyStream>,
}

impl Reply {
    /// A reply with only a JSON value.
    pub fn json(value: serde_json::Value) -> Self {
        Self { value, body: None }
    }

    /// A reply with a JSON value and a body.
    pub fn with_body(value: serde_json::Value, body: impl Into<BodyStream>) -> Self {
        Self {
            value,
            body: Some(body.into()),
        }
    }
}

/// The body of a binding call, either way: bytes at hand, or a stream of
/// chunks. A stream between pyflare and the worker moves under the same
/// credit window as request and response bodies, so a binding that reads
/// (or writes) it chunk by chunk never holds it whole.
pub struct BodyStream(Inner);

enum Inner {
    Whole(Option<Bytes>),
    Chunks(Pin<Box<dyn Stream<Item = Result<Bytes, BodyError>> + Send>>),
}

/// A call body that broke off before its end (the worker's stream raised,
/// or the host stopped).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BodyError(pub String);

/// Why [`BodyStream::collect`] returned no bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CollectError {
    /// The body was longer than the limit; `len` is its whole length (the
    /// bytes past the limit were read and dropped, to count them).
    #[error("the body is {len} bytes, more than the limit of {limit}")]
    TooLarge {
        /// The body's length.
        len: u64,
        /// The limit it passed.
        limit: usize,
    },
    /// The body broke off.
    #[error(transparent)]
    Broken(#[from] BodyError),
}

impl BodyStream {
    /// A body whose bytes are all at hand.
    pub fn whole(bytes: impl Into<Bytes>) -> Self {
        Self(Inner::Whole(Some(bytes.into())))
    }

    /// A body produced chunk by chunk.
    pub fn from_stream(
        stream: impl Stream<Item = Result<Bytes, BodyError>> + Send + 'static,
    ) -> Self {
        Self(Inner::Chunks(Box::pin(stream)))
    }

    /// The bytes, when the body is whole at hand (not yet read).
    pub fn as_whole(&self) -> Option<&Bytes> {
        match &self.0 {
            Inner::Whole(bytes) => bytes.as_ref(),
            Inner::Chunks(_) => None,
        }
    }

    /// Reads the whole body into memory, for bindings that store values
    /// whole. Past `limit` bytes the rest is read and counted, not kept, so
    /// memory stays bounded and [`CollectError::TooLarge`] can say the
    /// body's real length, as a service reading the whole request would.
    pub async fn collect(mut self, limit: usize) -> Result<Bytes, CollectError> {
        let mut first: Option<Bytes> = None;
        let mut joined = BytesMut::new();
        let mut len: u64 = 0;
        while let Some(chunk) = self.next().await {
            let chunk = chunk?;
            len += chunk.len() as u64;
            if len > limit as u64 {
                first = None;
                joined = BytesMut::new();
                continue;
            }
            // One chunk (the usual small body) is kept as is, uncopied.
            match first.take() {
                None if joined.is_empty() => first = Some(chunk),
                Some(previous) => {
                    joined.extend_from_slice(&previous);
                    joined.extend_from_slice(&chunk);
                }
                None => joined.extend_from_slice(&chunk),
            }
        }
        if len > limit as u64 {
            return Err(CollectError::TooLarge { len, limit });
        }
        Ok(first.unwrap_or_else(|| joined.freeze()))
    }
}

impl From<Bytes> for BodyStream {
    fn from(bytes: Bytes) -> Self {
        Self::whole(bytes)
    }
}

impl From<Vec<u8>> for BodyStream {
    fn from(bytes: Vec<u8>) -> Self {
        Self::whole(bytes)
    }
}

impl Stream for BodyStream {
    type Item = Result<Bytes, BodyError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match &mut self.0 {
            Inner::Whole(bytes) => Poll::Ready(bytes.take().filter(|b| !b.is_empty()).map(Ok)),
            Inner::Chunks(stream) => stream.as_mut().poll_next(cx),
        }
    }
}

impl std::fmt::Debug for BodyStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Inner::Whole(bytes) => f
                .debug_struct("BodyStream")
                .field("len", &bytes.as_ref().map_or(0, Bytes::len))
                .finish(),
            Inner::Chunks(_) => f.debug_struct("BodyStream").finish_non_exhaustive(),
        }
    }
}

/// What a binding may use when it opens.
#[derive(Clone)]
pub struct OpenContext {
    /// Root of local state (`--persist-to`, default `.pyflare/state`).
    pub persist_root: PathBuf,
    /// The one clock of this pyflare.
    pub clock: Arc<dyn Clock>,
    /// The wrangler config's other top-level keys (after `--env`), for a
    /// kind that reads one besides its own (Durable Objects' `migrations`).
    pub config: Arc<serde_json::Map<String, serde_json::Value>>,
    /// pyflare's settings for bindings: every `PYFLARE_*` and `AWS_*`
    /// variable of pyflare's environment, overridden by those of the
    /// worker's `.dev.vars` / `vars` (an R2 bucket on S3 reads its URL and
    /// credentials here). Bindings never read the environment themselves.
    pub settings: std::collections::BTreeMap<String, String>,
    /// The project folder (where the wrangler config is): paths in the
    /// config are relative to it.
    pub project_root: PathBuf,
    /// The worker's `compatibility_date`.
    pub compatibility_date: String,
    /// The worker's `compatibility_flags`.
    pub compatibility_flags: Vec<String>,
}

impl std::fmt::Debug for OpenContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenContext")
            .field("persist_root", &self.persist_root)
            .finish()
    }
}

/// A binding's config entry or storage cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BindingConfigError {
    /// The config value has the wrong shape; `path` is like `kv_namespaces[0].binding`.
    #[error("`{path}`: {message}")]
    Invalid {
        /// Where in the config.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// Local storage could not be opened.
    #[error("cannot open {what} at {}: {message}", path.display())]
    Storage {
        /// Which store.
        what: String,
        /// Where it lives.
        path: PathBuf,
        /// Why it failed.
        message: String,
        /// What the user can do.
        hint: Option<String>,
    },
}

impl BindingConfigError {
    /// A suggested fix, when there is an obvious one.
    pub fn hint(&self) -> Option<&str> {
        match self {
            Self::Storage { hint, .. } => hint.as_deref(),
            Self::Invalid { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: &[&'static [u8]]) -> BodyStream {
        let items: Vec<Result<Bytes, BodyError>> =
            parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
        BodyStream::from_stream(futures::stream::iter(items))
    }

    #[tokio::test]
    async fn collect_joins_chunks_and_keeps_a_single_one_uncopied() {
        assert_eq!(
            chunks(&[b"ab", b"", b"cd"]).collect(4).await.unwrap(),
            Bytes::from_static(b"abcd")
        );
        let one = Bytes::from_static(b"xyz");
        let collected = BodyStream::whole(one.clone()).collect(3).await.unwrap();
        assert_eq!(collected.as_ptr(), one.as_ptr());
        assert!(chunks(&[]).collect(0).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn collect_counts_the_whole_length_past_the_limit() {
        assert_eq!(
            chunks(&[b"abc", b"de", b"f"]).collect(4).await,
            Err(CollectError::TooLarge { len: 6, limit: 4 })
        );
        let broken = BodyStream::from_stream(futures::stream::iter(vec![
            Ok(Bytes::from_static(b"a")),
            Err(BodyError("the stream raised".into())),
        ]));
        assert_eq!(
            broken.collect(10).await,
            Err(CollectError::Broken(BodyError("the stream raised".into())))
        );
    }
}
