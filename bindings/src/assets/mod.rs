//! Static assets (<https://developers.cloudflare.com/workers/static-assets/>):
//! the files of the folder `assets.directory` names, served before the
//! worker runs, and `env.<assets.binding>.fetch(request)` for the worker.
//!
//! pyflare's front asks [`Assets::answer_first`] for each request, as
//! Cloudflare's router does: `run_worker_first` rules, then whether an
//! asset answers the path (under `html_handling`), else the worker. The
//! binding is a `Fetcher`, so Cloudflare's Python SDK wraps it as it does
//! on Cloudflare: its `fetch` gets the asset server's answer, with
//! `not_found_handling` applied.
//!
//! The folder is read at each request: a saved file is served at once, with
//! a new ETag (its path, size and modification time).
//!
//! Differences from Cloudflare:
//! - `_redirects` and `_headers` apply as on Cloudflare (read again when
//!   they change); pyflare warns of the lines it skips.
//! - Not emulated: the patterns of `.assetsignore` (only the file itself
//!   is not served).
//! - Not emulated: the limits of an upload (25 MiB per file, 20,000 files);
//!   any file of the folder is served.
//! - Not emulated: an assets-only Worker, without `main`.

pub mod call;
pub mod config;
pub mod headers;
pub mod intent;
pub mod pattern;
pub mod redirects;
pub mod rules_file;
pub mod store;

#[cfg(test)]
mod tests;

use async_trait::async_trait;
use serde_json::{Value, json};
use std::sync::Arc;

use crate::binding::{Binding, BindingConfigError, BindingKind, BodyStream, OpenContext, Reply};
use crate::error::WireError;
pub use call::{AssetRequest, AssetResponse};
use config::AssetsConfig;
use store::AssetDir;

/// The `assets` binding kind.
#[derive(Debug)]
pub struct StaticAssets;

impl BindingKind for StaticAssets {
    fn config_key(&self) -> &'static str {
        "assets"
    }

    fn wire_name(&self) -> &'static str {
        "assets"
    }

    fn methods(&self) -> &'static [&'static str] {
        &["fetch"]
    }

    fn shim(&self) -> &'static str {
        include_str!("shim.mjs")
    }

    fn open(
        &self,
        config: &Value,
        cx: &OpenContext,
    ) -> Result<Vec<Arc<dyn Binding>>, BindingConfigError> {
        let assets = Arc::new(Assets::open(config, cx)?);
        Ok(match assets.config.binding.clone() {
            Some(name) => vec![Arc::new(AssetsBinding { name, assets })],
            None => Vec::new(),
        })
    }
}

/// The assets of one worker.
#[derive(Debug)]
pub struct Assets {
    config: AssetsConfig,
    dir: AssetDir,
    /// The folder as the banner shows it: from the project folder.
    shown: String,
    /// Its `_headers` and `_redirects` rules, read again when the files change.
    headers_file: rules_file::RulesFile<headers::HeaderRules>,
    redirects_file: rules_file::RulesFile<redirects::RedirectRules>,
}

impl Assets {
    /// Reads the `assets` object of the config.
    pub fn open(config: &Value, cx: &OpenContext) -> Result<Self, BindingConfigError> {
        let config = AssetsConfig::parse(
            config,
            &cx.project_root,
            &cx.compatibility_date,
            &cx.compatibility_flags,
        )?;
        let shown = match config.directory.strip_prefix(&cx.project_root) {
            Ok(relative) => format!("./{}", relative.display()),
            Err(_) => config.directory.display().to_string(),
        };
        Ok(Self {
            dir: AssetDir::new(config.directory.clone()),
            config,
            shown,
            headers_file: Default::default(),
            redirects_file: Default::default(),
        })
    }

    /// The banner's line for assets without a binding.
    pub fn describe(&self) -> String {
        format!("Assets            ({})", self.shown)
    }

    /// The name of their binding, if the worker has one.
    pub fn binding(&self) -> Option<&str> {
        self.config.binding.as_deref()
    }

    /// The assets folder.
    pub fn directory(&self) -> &std::path::Path {
        self.dir.root()
    }

    /// What pyflare warns about at start: the lines of `_headers` and
    /// `_redirects` it skips, and why.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        let headers = self.dir.root().join("_headers");
        if let Ok(text) = std::fs::read_to_string(&headers) {
            for why in headers::HeaderRules::parse(&text).1 {
                out.push(format!("{}: skipped {why}", headers.display()));
            }
        }
        let redirects = self.dir.root().join("_redirects");
        if let Ok(text) = std::fs::read_to_string(&redirects) {
            for why in redirects::RedirectRules::parse(&text, self.html_handling_on()).1 {
                out.push(format!("{}: skipped {why}", redirects.display()));
            }
        }
        out
    }

    fn html_handling_on(&self) -> bool {
        self.config.html_handling != config::HtmlHandling::None
    }

    /// The `_redirects` rules as the file is now.
    fn redirect_rules(&self) -> Arc<redirects::RedirectRules> {
        let html = self.html_handling_on();
        self.redirects_file
            .rules(&self.dir.root().join("_redirects"), |text| {
                redirects::RedirectRules::parse(text, html).0
            })
    }

    /// The `_headers` rules as the file is now.
    fn header_rules(&self) -> Arc<headers::HeaderRules> {
        self.headers_file
            .rules(&self.dir.root().join("_headers"), |text| {
                headers::HeaderRules::parse(text).0
            })
    }
}

/// `env.<assets.binding>`.
#[derive(Debug)]
struct AssetsBinding {
    name: String,
    assets: Arc<Assets>,
}

#[async_trait]
impl Binding for AssetsBinding {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "assets"
    }

    fn describe(&self) -> String {
        format!("Assets            {}  ({})", self.name, self.assets.shown)
    }

    async fn call(
        &self,
        method: &str,
        args: Value,
        _body: Option<BodyStream>,
    ) -> Result<Reply, WireError> {
        if method != "fetch" {
            return Err(WireError::error(format!("assets: no method {method}")));
        }
        let url = args["url"].as_str().unwrap_or_default();
        let url = url::Url::parse(url)
            .map_err(|e| WireError::error(format!("assets: invalid URL {url}: {e}")))?;
        let headers = args["headers"]
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|pair| {
                        Some((pair[0].as_str()?.to_owned(), pair[1].as_str()?.to_owned()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let request = AssetRequest {
            method: args["method"].as_str().unwrap_or("GET").to_owned(),
            url,
            headers,
        };
        let answer = self.assets.answer(&request);
        let value = json!({
            "status": answer.status,
            "statusText": answer.status_text,
            "headers": answer.headers.iter().map(|(n, v)| [n, v]).collect::<Vec<_>>(),
        });
        match answer.body_stream().await {
            Ok(Some(body)) => Ok(Reply::with_body(value, body)),
            Ok(None) => Ok(Reply::json(value)),
            Err(e) => Err(WireError::error(format!("cannot read the asset: {e}"))),
        }
    }
}
