//! A request to the assets, as the front router and `env.ASSETS.fetch()`
//! make it, and the answer Cloudflare's asset server gives.

use super::config::{NotFoundHandling, RunWorkerFirst};
use super::intent::{Intent, Resolver, decode_path, encode_path};
use super::{Assets, redirects, store};
use crate::binding::BodyStream;

/// `Cache-Control` of an asset a shared cache may keep.
const CACHE_CONTROL: &str = "public, max-age=0, must-revalidate";

/// The parts of a request the asset server reads.
#[derive(Debug, Clone, Default)]
pub struct AssetRequest {
    /// `GET`, `HEAD`, ...
    pub method: String,
    /// The URL's hostname (no port), which `_redirects` and `_headers`
    /// rules may name.
    pub host: String,
    /// The URL's path, percent-encoded as the URL has it (normalized: no
    /// `.` or `..` segments).
    pub path: String,
    /// The URL's query, with its `?`, or empty.
    pub search: String,
    /// Its headers (names in any case).
    pub headers: Vec<(String, String)>,
}

impl AssetRequest {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What `_redirects` makes of a request.
enum Redirected {
    /// A redirect, answered as it is.
    Answer(AssetResponse),
    /// The path to look up; `proxied` when a 200 rule chose it.
    Path { path: String, proxied: bool },
}

/// An answer: status, headers, and the file to send, if any.
#[derive(Debug)]
pub struct AssetResponse {
    /// HTTP status.
    pub status: u16,
    /// The reason phrase Cloudflare's asset server sets.
    pub status_text: &'static str,
    /// Headers, in order.
    pub headers: Vec<(String, String)>,
    /// The file whose bytes are the body (none for HEAD, 304, redirects).
    pub body: Option<std::path::PathBuf>,
}

impl AssetResponse {
    fn bare(status: u16, status_text: &'static str) -> Self {
        Self {
            status,
            status_text,
            headers: Vec::new(),
            body: None,
        }
    }

    /// The body's bytes, read as they are taken.
    pub async fn body_stream(&self) -> std::io::Result<Option<BodyStream>> {
        match &self.body {
            Some(file) => store::read(file).await.map(Some),
            None => Ok(None),
        }
    }
}

impl Assets {
    fn resolver<'a>(
        &'a self,
        find: &'a dyn Fn(&str) -> Option<store::Asset>,
        not_found: NotFoundHandling,
    ) -> Resolver<'a> {
        Resolver {
            find,
            html: self.config.html_handling,
            not_found,
        }
    }

    /// Whether the asset server has an answer for `request` other than
    /// "nothing here": the router's question before it runs the worker.
    /// `not_found_handling` counts only with `run_worker_first` rules, or
    /// for a browser's navigation when the compatibility flag lets it.
    pub fn has_answer(&self, request: &AssetRequest) -> bool {
        let (path, proxied) = match self.redirected(request) {
            Redirected::Answer(_) => return true,
            Redirected::Path { path, proxied } => (path, proxied),
        };
        let navigation = self.config.navigation_prefers_assets
            && request.header("sec-fetch-mode") == Some("navigate");
        let rules = matches!(self.config.run_worker_first, RunWorkerFirst::Rules { .. });
        let not_found = if navigation || rules {
            self.config.not_found_handling
        } else {
            NotFoundHandling::None
        };
        let find = |p: &str| self.dir.find(p);
        // A path a 200 rule serves from elsewhere is the assets' even when
        // nothing is there: they answer 404.
        proxied
            || self
                .resolver(&find, not_found)
                .intent(&decode_path(&path))
                .is_some()
    }

    /// The asset server's answer to `request`, with the `_headers` rules
    /// that match it applied.
    pub fn answer(&self, request: &AssetRequest) -> AssetResponse {
        let mut answer = self.bare_answer(request);
        self.header_rules()
            .apply(&request.host, &request.path, &mut answer.headers);
        answer
    }

    /// What `_redirects` makes of `request`: a redirect, or the path to
    /// look up (another one for a 200 rule).
    fn redirected(&self, request: &AssetRequest) -> Redirected {
        let Some(rule) = self.redirect_rules().find(&request.host, &request.path) else {
            return Redirected::Path {
                path: request.path.clone(),
                proxied: false,
            };
        };
        let Ok(url) = url::Url::parse(&format!(
            "http://{}{}{}",
            request.host, request.path, request.search
        )) else {
            return Redirected::Path {
                path: request.path.clone(),
                proxied: false,
            };
        };
        if rule.status == 200 {
            let path = url
                .join(&rule.to)
                .map_or_else(|_| request.path.clone(), |u| u.path().to_owned());
            return Redirected::Path {
                path,
                proxied: true,
            };
        }
        let Some(location) = redirects::location(&url, &rule.to) else {
            return Redirected::Path {
                path: request.path.clone(),
                proxied: false,
            };
        };
        let status_text = match rule.status {
            301 => "Moved Permanently",
            303 => "See Other",
            307 => "Temporary Redirect",
            308 => "Permanent Redirect",
            _ => "Found",
        };
        Redirected::Answer(AssetResponse {
            status: rule.status,
            status_text,
            headers: vec![("Location".to_owned(), location)],
            body: None,
        })
    }

    fn bare_answer(&self, request: &AssetRequest) -> AssetResponse {
        let path = match self.redirected(request) {
            Redirected::Answer(answer) => return answer,
            Redirected::Path { path, .. } => path,
        };
        let find = |p: &str| self.dir.find(p);
        let decoded = decode_path(&path);
        let Some(intent) = self
            .resolver(&find, self.config.not_found_handling)
            .intent(&decoded)
        else {
            return AssetResponse::bare(404, "Not Found");
        };
        let method = request.method.to_ascii_uppercase();
        if method != "GET" && method != "HEAD" {
            return AssetResponse::bare(405, "Method Not Allowed");
        }
        let (asset, status) = match intent {
            Intent::Redirect(to) => return redirect(&encode_path(&to), &request.search),
            Intent::Serve(asset, status) => (asset, status),
        };
        let canonical = encode_path(&decoded);
        if canonical != path {
            return redirect(&canonical, &request.search);
        }
        let mut headers = vec![("ETag".to_owned(), format!("\"{}\"", asset.etag))];
        if let Some(content_type) = &asset.content_type {
            headers.push(("Content-Type".to_owned(), content_type.clone()));
        }
        if request.header("authorization").is_none() && request.header("range").is_none() {
            headers.push(("Cache-Control".to_owned(), CACHE_CONTROL.to_owned()));
        }
        // As Miniflare answers: the asset came from its cache.
        headers.push(("CF-Cache-Status".to_owned(), "HIT".to_owned()));
        let strong = format!("\"{}\"", asset.etag);
        let if_none_match = request.header("if-none-match").unwrap_or("");
        if if_none_match == strong || if_none_match == format!("W/{strong}") {
            return AssetResponse {
                status: 304,
                status_text: "Not Modified",
                headers,
                body: None,
            };
        }
        AssetResponse {
            status,
            status_text: if status == 404 { "Not Found" } else { "OK" },
            headers,
            body: (method == "GET").then_some(asset.file),
        }
    }
}

fn redirect(location: &str, search: &str) -> AssetResponse {
    AssetResponse {
        status: 307,
        status_text: "Temporary Redirect",
        headers: vec![("Location".to_owned(), format!("{location}{search}"))],
        body: None,
    }
}
