//! One `r2_buckets` entry of the wrangler config.

use serde::Deserialize;

use crate::config::{FieldError, NamedBinding};

/// `{"binding": "BUCKET", "bucket_name": "...", "jurisdiction": "eu"}`.
#[derive(Debug, Clone, Deserialize)]
pub struct R2BucketConfig {
    /// Name on `env`.
    pub binding: String,
    /// The bucket; names its local folder. Defaults to the binding name.
    #[serde(default)]
    pub bucket_name: Option<String>,
    /// Used locally instead of `bucket_name` when set, as `wrangler dev` does.
    #[serde(default)]
    pub preview_bucket_name: Option<String>,
    /// Accepted and shown; a local bucket has no jurisdiction.
    #[serde(default)]
    pub jurisdiction: Option<String>,
}

impl R2BucketConfig {
    /// The bucket this binding reads: `preview_bucket_name`, else
    /// `bucket_name`, else the binding name.
    pub fn bucket(&self) -> &str {
        self.preview_bucket_name
            .as_deref()
            .or(self.bucket_name.as_deref())
            .filter(|s| !s.is_empty())
            .unwrap_or(&self.binding)
    }
}

impl NamedBinding for R2BucketConfig {
    const WHAT: &'static str = "R2 bucket";

    fn binding(&self) -> &str {
        &self.binding
    }

    /// `pyflare r2 object` commands name the bucket.
    fn other_name(&self) -> Option<&str> {
        Some(self.bucket())
    }

    /// The bucket name is only ever one folder name under `r2/`.
    fn check(&self) -> Result<(), FieldError> {
        let name = self.bucket();
        let field = if self.preview_bucket_name.is_some() {
            "preview_bucket_name"
        } else {
            "bucket_name"
        };
        let safe = name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
        if !safe || name.starts_with('.') {
            return Err(FieldError {
                field,
                message: format!(
                    "\"{name}\" is not a bucket name (letters, digits, `-`, `_` and `.`, not first)"
                ),
            });
        }
        Ok(())
    }
}
