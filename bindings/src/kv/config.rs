//! One `kv_namespaces` entry of the wrangler config.

use serde::Deserialize;

use crate::config::NamedBinding;

/// `{"binding": "MY_KV", "id": "...", "preview_id": "..."}`.
#[derive(Debug, Clone, Deserialize)]
pub struct KvNamespaceConfig {
    /// Name on `env`.
    pub binding: String,
    /// Namespace id; may be missing locally (auto-provisioned).
    #[serde(default)]
    pub id: Option<String>,
    /// Used locally instead of `id` when set, as wrangler does.
    #[serde(default)]
    pub preview_id: Option<String>,
}

impl KvNamespaceConfig {
    /// The namespace whose data this binding reads: `preview_id`, else
    /// `id`, else the binding name.
    pub fn namespace(&self) -> &str {
        self.preview_id
            .as_deref()
            .or(self.id.as_deref())
            .filter(|s| !s.is_empty())
            .unwrap_or(&self.binding)
    }
}

impl NamedBinding for KvNamespaceConfig {
    const WHAT: &'static str = "KV binding";

    fn binding(&self) -> &str {
        &self.binding
    }
}
