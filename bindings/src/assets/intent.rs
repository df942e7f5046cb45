//! Which asset a path means, under `html_handling` and
//! `not_found_handling`, as Cloudflare's asset server decides it
//! (<https://developers.cloudflare.com/workers/static-assets/routing/>):
//! a file to serve, a redirect to the path the page is canonical at, or
//! nothing.

use super::config::{HtmlHandling, NotFoundHandling};
use super::store::Asset;

/// What a path means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intent {
    /// Serve this asset with this status (200, or 404 for a `404.html`).
    Serve(Asset, u16),
    /// The page is canonical at this (decoded) path: redirect there.
    Redirect(String),
}

/// Looks paths up: `find` answers whether an asset is at a decoded path.
pub struct Resolver<'a> {
    /// The asset at a path, if any.
    pub find: &'a dyn Fn(&str) -> Option<Asset>,
    /// `html_handling`.
    pub html: HtmlHandling,
    /// `not_found_handling` (none when the router only asks whether an
    /// asset answers).
    pub not_found: NotFoundHandling,
}

fn serve(asset: Asset) -> Option<Intent> {
    Some(Intent::Serve(asset, 200))
}

/// `path` without `suffix` at its end (the caller checked it is there).
fn cut<'p>(path: &'p str, suffix: &str) -> &'p str {
    &path[..path.len() - suffix.len()]
}

impl Resolver<'_> {
    /// What `path` (decoded, from `/`) means, if anything.
    pub fn intent(&self, path: &str) -> Option<Intent> {
        self.resolve(path, false)
    }

    fn resolve(&self, path: &str, no_redirects: bool) -> Option<Intent> {
        match self.html {
            HtmlHandling::AutoTrailingSlash => self.auto(path, no_redirects),
            HtmlHandling::ForceTrailingSlash => self.force(path, no_redirects),
            HtmlHandling::DropTrailingSlash => self.drop(path, no_redirects),
            HtmlHandling::None => (self.find)(path)
                .and_then(serve)
                .or_else(|| self.not_found(path)),
        }
    }

    /// A redirect to `to` for the page in `file`, if `to` is not a file
    /// itself and would serve that same page.
    fn redirect(&self, file: &str, to: &str, no_redirects: bool) -> Option<Intent> {
        if no_redirects || (self.find)(to).is_some() {
            return None;
        }
        let Some(Intent::Serve(there, _)) = self.resolve(to, true) else {
            return None;
        };
        let page = (self.find)(file)?;
        (there.etag == page.etag).then(|| Intent::Redirect(to.to_owned()))
    }

    /// `/about` serves `about.html`, `/blog/` serves `blog/index.html`.
    fn auto(&self, p: &str, nr: bool) -> Option<Intent> {
        let exact = (self.find)(p);
        if p.ends_with("/index") {
            if let Some(asset) = exact {
                return serve(asset);
            }
            let hit = self
                .redirect(&format!("{p}.html"), cut(p, "index"), nr)
                .or_else(|| {
                    self.redirect(&format!("{}.html", cut(p, "/index")), cut(p, "/index"), nr)
                });
            if hit.is_some() {
                return hit;
            }
        } else if p.ends_with("/index.html") {
            let hit = self.redirect(p, cut(p, "index.html"), nr).or_else(|| {
                let base = cut(p, "/index.html");
                self.redirect(&format!("{base}.html"), base, nr)
            });
            if hit.is_some() {
                return hit;
            }
        } else if p.ends_with('/') {
            if let Some(asset) = (self.find)(&format!("{p}index.html")) {
                return serve(asset);
            }
            let base = cut(p, "/");
            if let Some(hit) = self.redirect(&format!("{base}.html"), base, nr) {
                return Some(hit);
            }
        } else if p.ends_with(".html") {
            let base = cut(p, ".html");
            let hit = self
                .redirect(p, base, nr)
                .or_else(|| self.redirect(&format!("{base}/index.html"), &format!("{base}/"), nr));
            if hit.is_some() {
                return hit;
            }
        }
        if let Some(asset) = exact {
            return serve(asset);
        }
        if let Some(asset) = (self.find)(&format!("{p}.html")) {
            return serve(asset);
        }
        if let Some(hit) = self.redirect(&format!("{p}/index.html"), &format!("{p}/"), nr) {
            return Some(hit);
        }
        self.not_found(p)
    }

    /// Every page is served at a path ending in `/`.
    fn force(&self, p: &str, nr: bool) -> Option<Intent> {
        let exact = (self.find)(p);
        if p.ends_with("/index") {
            if let Some(asset) = exact {
                return serve(asset);
            }
            let hit = self
                .redirect(&format!("{p}.html"), cut(p, "index"), nr)
                .or_else(|| {
                    self.redirect(&format!("{}.html", cut(p, "/index")), cut(p, "index"), nr)
                });
            if hit.is_some() {
                return hit;
            }
        } else if p.ends_with("/index.html") {
            let hit = self.redirect(p, cut(p, "index.html"), nr).or_else(|| {
                self.redirect(
                    &format!("{}.html", cut(p, "/index.html")),
                    cut(p, "index.html"),
                    nr,
                )
            });
            if hit.is_some() {
                return hit;
            }
        } else if p.ends_with('/') {
            if let Some(asset) = (self.find)(&format!("{p}index.html")) {
                return serve(asset);
            }
            if let Some(asset) = (self.find)(&format!("{}.html", cut(p, "/"))) {
                return serve(asset);
            }
        } else if p.ends_with(".html") {
            let base = cut(p, ".html");
            if let Some(hit) = self.redirect(p, &format!("{base}/"), nr) {
                return Some(hit);
            }
            if let Some(asset) = exact {
                // Both /foo.html and /foo/index.html: /foo.html stays at its own path.
                return serve(asset);
            }
            if let Some(hit) = self.redirect(&format!("{base}/index.html"), &format!("{base}/"), nr)
            {
                return Some(hit);
            }
        }
        if let Some(asset) = exact {
            return serve(asset);
        }
        self.redirect(&format!("{p}.html"), &format!("{p}/"), nr)
            .or_else(|| self.redirect(&format!("{p}/index.html"), &format!("{p}/"), nr))
            .or_else(|| self.not_found(p))
    }

    /// No page is served at a path ending in `/`, but the root.
    fn drop(&self, p: &str, nr: bool) -> Option<Intent> {
        let exact = (self.find)(p);
        if p.ends_with("/index") {
            if let Some(asset) = exact {
                return serve(asset);
            }
            let base = cut(p, "/index");
            let hit = if p == "/index" {
                self.redirect("/index.html", "/", nr)
            } else {
                self.redirect(&format!("{base}.html"), base, nr)
                    .or_else(|| self.redirect(&format!("{p}.html"), base, nr))
            };
            if hit.is_some() {
                return hit;
            }
        } else if p.ends_with("/index.html") {
            let base = cut(p, "/index.html");
            let hit = if p == "/index.html" {
                self.redirect("/index.html", "/", nr)
            } else if let Some(hit) = self.redirect(p, base, nr) {
                Some(hit)
            } else if let Some(asset) = exact.clone() {
                // Both /foo.html and /foo/index.html: this one stays at its own path.
                return serve(asset);
            } else {
                self.redirect(&format!("{base}.html"), base, nr)
            };
            if hit.is_some() {
                return hit;
            }
        } else if p.ends_with('/') {
            if p == "/" {
                if let Some(asset) = (self.find)("/index.html") {
                    return serve(asset);
                }
            } else {
                let base = cut(p, "/");
                let hit = self
                    .redirect(&format!("{base}.html"), base, nr)
                    .or_else(|| self.redirect(&format!("{base}/index.html"), base, nr));
                if hit.is_some() {
                    return hit;
                }
            }
        } else if p.ends_with(".html") {
            let base = cut(p, ".html");
            let hit = self
                .redirect(p, base, nr)
                .or_else(|| self.redirect(&format!("{base}/index.html"), base, nr));
            if hit.is_some() {
                return hit;
            }
        }
        if let Some(asset) = exact {
            return serve(asset);
        }
        (self.find)(&format!("{p}.html"))
            .or_else(|| (self.find)(&format!("{p}/index.html")))
            .and_then(serve)
            .or_else(|| self.not_found(p))
    }

    fn not_found(&self, p: &str) -> Option<Intent> {
        match self.not_found {
            NotFoundHandling::None => None,
            NotFoundHandling::SinglePageApplication => (self.find)("/index.html").and_then(serve),
            NotFoundHandling::NotFoundPage => {
                let mut folder = p;
                while !folder.is_empty() {
                    folder = &folder[..folder.rfind('/').unwrap_or(0)];
                    if let Some(asset) = (self.find)(&format!("{folder}/404.html")) {
                        return Some(Intent::Serve(asset, 404));
                    }
                }
                None
            }
        }
    }
}

/// A URL path decoded segment by segment as `decodeURIComponent` does (a
/// segment that does not decode stays as it is), with runs of `/` made one.
pub fn decode_path(path: &str) -> String {
    let decoded = path
        .split('/')
        .map(|segment| decode_component(segment).unwrap_or_else(|| segment.to_owned()))
        .collect::<Vec<_>>()
        .join("/");
    let mut out = String::with_capacity(decoded.len());
    for c in decoded.chars() {
        if !(c == '/' && out.ends_with('/')) {
            out.push(c);
        }
    }
    out
}

/// `decodeURIComponent`: None for a malformed escape or bytes that are not UTF-8.
fn decode_component(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A decoded path encoded segment by segment as `encodeURIComponent` does:
/// the canonical form an asset is served at.
pub fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for byte in path.bytes() {
        let keep = byte.is_ascii_alphanumeric() || b"/-_.!~*'()".contains(&byte);
        if keep {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
