//! The traits every binding implements.

use bytes::Bytes;
use std::path::PathBuf;
use std::sync::Arc;

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
    /// Runs one method call from the worker.
    async fn call(
        &self,
        method: &str,
        args: serde_json::Value,
        body: Option<Bytes>,
    ) -> Result<Reply, WireError>;
    /// Leaves the binding's storage complete on disk before pyflare exits
    /// cleanly (Ctrl-C, SIGTERM, the end of a CLI command). Errors are for
    /// the terminal.
    async fn close(&self) -> Result<(), String> {
        Ok(())
    }
}

/// The result of a binding call: JSON, plus bytes for bulk data.
#[derive(Debug, Default)]
pub struct Reply {
    /// The JSON part.
    pub value: serde_json::Value,
    /// Bulk bytes, sent as binary frames after the JSON.
    pub body: Option<Bytes>,
}

impl Reply {
    /// A reply with only a JSON value.
    pub fn json(value: serde_json::Value) -> Self {
        Self { value, body: None }
    }
}

/// What a binding may use when it opens.
#[derive(Clone)]
pub struct OpenContext {
    /// Root of local state (`--persist-to`, default `.pyflare/state`).
    pub persist_root: PathBuf,
    /// The one clock of this pyflare.
    pub clock: Arc<dyn Clock>,
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
