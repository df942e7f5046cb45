//! A request to the assets, as the front router and `env.ASSETS.fetch()`
//! make it, and the answer Cloudflare's asset server gives.

use super::config::{NotFoundHandling, RunWorkerFirst, glob_matches};
use super::intent::{Intent, Resolver, decode_path, encode_path};
use super::{Assets, redirects, store};
use crate::binding::BodyStream;

/// `Cache-Control` of an asset a shared cache may keep.
const CACHE_CONTROL: &str = "public, max-age=0, must-revalidate";

/// The parts of a request the asset server reads.
#[derive(Debug, Clone)]
pub struct AssetRequest {
    /// `GET`, `HEAD`, ...
    pub method: String,
    /// The request's URL, as a URL parser leaves it (no `.` or `..`
    /// segments): what the asset server sees as `new URL(request.url)`.
    pub url: url::Url,
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

    /// The URL's hostname (no port), which `_redirects` and `_headers`
    /// rules may name.
    fn host(&self) -> &str {
        self.url.host_str().unwrap_or("")
    }

    /// The URL's path, percent-encoded as the URL has it.
    fn path(&self) -> &str {
        self.url.path()
    }

    /// The URL's query with its `?`, or empty (also for a bare `?`).
    fn search(&self) -> String {
        self.url
            .query()
            .filter(|q| !q.is_empty())
            .map(|q| format!("?{q}"))
            .unwrap_or_default()
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

    /// The asset server's answer to `request`, if Cloudflare's router
    /// sends it to the assets rather than to the worker (None): the
    /// `run_worker_first` rules, then whether an asset (or a `_redirects`
    /// rule) answers its path. `not_found_handling` counts only with
    /// `run_worker_first` rules, or for a browser's navigation when the
    /// compatibility flag lets it.
    pub fn answer_first(&self, request: &AssetRequest) -> Option<AssetResponse> {
        let rules = match &self.config.run_worker_first {
            RunWorkerFirst::All => return None,
            RunWorkerFirst::Rules { worker, assets } => {
                if assets.iter().any(|rule| glob_matches(rule, request.path())) {
                    return Some(self.answer(request));
                }
                if worker.iter().any(|rule| glob_matches(rule, request.path())) {
                    return None;
                }
                true
            }
            RunWorkerFirst::None => false,
        };
        let navigation = self.config.navigation_prefers_assets
            && request.header("sec-fetch-mode") == Some("navigate");
        let routing = if navigation || rules {
            self.config.not_found_handling
        } else {
            NotFoundHandling::None
        };
        let (path, proxied) = match self.redirected(request) {
            Redirected::Answer(answer) => return Some(self.with_headers(request, answer)),
            Redirected::Path { path, proxied } => (path, proxied),
        };
        let decoded = decode_path(&path);
        let find = |p: &str| self.dir.find(p);
        let mut intent = self.resolver(&find, routing).intent(&decoded);
        // A path a 200 rule serves from elsewhere is the assets' even when
        // nothing is there: they answer 404.
        if intent.is_none() && !proxied {
            return None;
        }
        if routing != self.config.not_found_handling {
            intent = self
                .resolver(&find, self.config.not_found_handling)
                .intent(&decoded);
        }
        let answer = self.answer_for(request, &path, &decoded, intent);
        Some(self.with_headers(request, answer))
    }

    /// The asset server's answer to `request`, as `env.ASSETS.fetch()`
    /// gets it.
    pub fn answer(&self, request: &AssetRequest) -> AssetResponse {
        let answer = match self.redirected(request) {
            Redirected::Answer(answer) => answer,
            Redirected::Path { path, .. } => {
                let decoded = decode_path(&path);
                let find = |p: &str| self.dir.find(p);
                let intent = self
                    .resolver(&find, self.config.not_found_handling)
                    .intent(&decoded);
                self.answer_for(request, &path, &decoded, intent)
            }
        };
        self.with_headers(request, answer)
    }

    /// `answer` with the `_headers` rules that match its request applied.
    fn with_headers(&self, request: &AssetRequest, mut answer: AssetResponse) -> AssetResponse {
        self.header_rules()
            .apply(request.host(), request.path(), &mut answer.headers);
        answer
    }

    /// What `_redirects` makes of `request`: a redirect, or the path to
    /// look up (another one for a 200 rule).
    fn redirected(&self, request: &AssetRequest) -> Redirected {
        let unchanged = || Redirected::Path {
            path: request.path().to_owned(),
            proxied: false,
        };
        let Some(rule) = self.redirect_rules().find(request.host(), request.path()) else {
            return unchanged();
        };
        let url = &request.url;
        if rule.status == 200 {
            let path = url
                .join(&rule.to)
                .map_or_else(|_| request.path().to_owned(), |u| u.path().to_owned());
            return Redirected::Path {
                path,
                proxied: true,
            };
        }
        let Some(location) = redirects::location(url, &rule.to) else {
            return unchanged();
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

    /// The answer for `path` (the request's, or a 200 rule's) whose
    /// decoded form means `intent`.
    fn answer_for(
        &self,
        request: &AssetRequest,
        path: &str,
        decoded: &str,
        intent: Option<Intent>,
    ) -> AssetResponse {
        let Some(intent) = intent else {
            return AssetResponse::bare(404, "Not Found");
        };
        let method = request.method.to_ascii_uppercase();
        if method != "GET" && method != "HEAD" {
            return AssetResponse::bare(405, "Method Not Allowed");
        }
        let (asset, status) = match intent {
            Intent::Redirect(to) => return redirect(&encode_path(&to), &request.search()),
            Intent::Serve(asset, status) => (asset, status),
        };
        let canonical = encode_path(decoded);
        if canonical != path {
            return redirect(&canonical, &request.search());
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
