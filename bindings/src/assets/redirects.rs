//! The `_redirects` file of the assets folder
//! (<https://developers.cloudflare.com/workers/static-assets/redirects/>):
//! `from to [status]` per line, looked at before any asset.
//!
//! ```text
//! /home          /                301
//! /blog/:post    /posts/:post     308
//! /docs/*        /manual/:splat
//! /app/*         /app/index.html  200
//! ```
//!
//! Rules with neither `*` nor a placeholder, before the first that has
//! one, match their path exactly (and win over the others); the rest match
//! as patterns, the first that matches winning. Status 302 by default; 200
//! serves the other path's asset at this one.

use super::pattern::{Pattern, is_url, replace, rule_lines};

/// Exact rules a file may hold, and pattern rules.
const MAX_STATIC: usize = 2_000;
const MAX_DYNAMIC: usize = 100;
const STATUSES: [u16; 6] = [200, 301, 302, 303, 307, 308];

#[derive(Debug, Clone)]
struct Rule {
    from: String,
    /// None for an exact rule.
    pattern: Option<Pattern>,
    to: String,
    status: u16,
}

/// Where a rule sends a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// 200 (serve that path's asset here) or a redirect status.
    pub status: u16,
    /// The target, placeholders filled in.
    pub to: String,
}

/// The rules of one `_redirects` file.
#[derive(Debug, Clone, Default)]
pub struct RedirectRules {
    rules: Vec<Rule>,
}

impl RedirectRules {
    /// Reads a `_redirects` file's text; also says which lines were skipped
    /// and why, as wrangler warns. `html_handling_on`: whether pages drop
    /// `/index` (a rule sending `/` to `/index` would then loop).
    pub fn parse(text: &str, html_handling_on: bool) -> (Self, Vec<String>) {
        let mut rules: Vec<Rule> = Vec::new();
        let mut skipped = Vec::new();
        let (mut exact, mut patterns) = (0, 0);
        let mut exact_allowed = true;
        for (number, line) in rule_lines(text, &mut skipped) {
            let mut tokens: Vec<&str> = line.split_whitespace().collect();
            // `/a /b # note`: a comment from the third token on.
            if let Some(at) = tokens
                .iter()
                .enumerate()
                .position(|(i, t)| i >= 2 && t.starts_with('#'))
            {
                tokens.truncate(at);
            }
            if !(2..=3).contains(&tokens.len()) {
                skipped.push(format!(
                    "line {number}: expected 2 or 3 whitespace-separated tokens, got {}",
                    tokens.len()
                ));
                continue;
            }
            let (from, to) = (tokens[0], tokens[1]);
            if !(from.starts_with('/') || from.starts_with("https://")) {
                skipped.push(format!(
                    "line {number}: {from} must start with / or https://"
                ));
                continue;
            }
            let dynamic = from.contains('*') || has_placeholder(from);
            if exact_allowed && !dynamic {
                exact += 1;
                if exact > MAX_STATIC {
                    skipped.push(format!("line {number}: more than {MAX_STATIC} exact rules"));
                    continue;
                }
            } else {
                patterns += 1;
                exact_allowed = false;
                if patterns > MAX_DYNAMIC {
                    skipped.push(format!(
                        "line {number}: more than {MAX_DYNAMIC} pattern rules; the rest of the file is skipped"
                    ));
                    break;
                }
            }
            if !(to.starts_with('/') || is_url(to)) {
                skipped.push(format!("line {number}: {to} must start with / or be a URL"));
                continue;
            }
            let status = match tokens.get(2).map_or(Ok(302), |s| s.parse::<u16>()) {
                Ok(status) if STATUSES.contains(&status) => status,
                _ => {
                    skipped.push(format!(
                        "line {number}: valid status codes are 200, 301, 302 (default), 303, 307, or 308"
                    ));
                    continue;
                }
            };
            let relative = !is_url(to);
            let to_index = to.ends_with("/index") || to.ends_with("/index.html");
            if relative
                && to_index
                && (from.ends_with("/*") || (from.ends_with('/') && html_handling_on))
            {
                skipped.push(format!(
                    "line {number}: this rule would loop (the page it sends to is served without /index)"
                ));
                continue;
            }
            if rules.iter().any(|r| r.from == from) {
                skipped.push(format!("line {number}: a second rule for {from}"));
                continue;
            }
            if status == 200 && !relative {
                skipped.push(format!(
                    "line {number}: a 200 rule can only serve a path of this site, not {to}"
                ));
                continue;
            }
            let pattern = if exact_allowed && !dynamic {
                None
            } else {
                match Pattern::parse(from) {
                    Some(pattern) => Some(pattern),
                    None => {
                        skipped.push(format!(
                            "line {number}: a placeholder or `*` is used twice in {from}"
                        ));
                        continue;
                    }
                }
            };
            rules.push(Rule {
                from: from.to_owned(),
                pattern,
                to: to.to_owned(),
                status,
            });
        }
        (Self { rules }, skipped)
    }

    /// The rule for a request to `hostname` and `path` (as the URL has
    /// it): an exact rule first (one naming the host before one that does
    /// not, by line), else the first pattern that matches.
    pub fn find(&self, hostname: &str, path: &str) -> Option<Redirect> {
        let with_host = format!("https://{hostname}{path}");
        let exact = self
            .rules
            .iter()
            .filter(|r| r.pattern.is_none())
            .find(|r| r.from == with_host || r.from == path);
        if let Some(rule) = exact {
            return Some(Redirect {
                status: rule.status,
                to: rule.to.clone(),
            });
        }
        self.rules.iter().find_map(|rule| {
            let pattern = rule.pattern.as_ref()?;
            let target = if pattern.with_host { &with_host } else { path };
            let captures = pattern.matches(target)?;
            let to = replace(&rule.to, &captures);
            let to = to.trim();
            let to = if is_url(to) {
                to.to_owned()
            } else {
                collapse_slashes(to)
            };
            Some(Redirect {
                status: rule.status,
                to,
            })
        })
    }
}

fn has_placeholder(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes
        .windows(2)
        .any(|pair| pair[0] == b':' && pair[1].is_ascii_alphabetic())
}

fn collapse_slashes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if !(c == '/' && out.ends_with('/')) {
            out.push(c);
        }
    }
    out
}

/// The `Location` a redirect to `to` answers a request for `url` with:
/// on the same origin, the path, with the request's query when `to` has
/// none; elsewhere the whole URL.
pub fn location(url: &url::Url, to: &str) -> Option<String> {
    let destination = url.join(to).ok()?;
    let query = match destination.query() {
        Some(q) if !q.is_empty() => format!("?{q}"),
        _ => url
            .query()
            .filter(|q| !q.is_empty())
            .map(|q| format!("?{q}"))
            .unwrap_or_default(),
    };
    let fragment = destination
        .fragment()
        .filter(|f| !f.is_empty())
        .map(|f| format!("#{f}"))
        .unwrap_or_default();
    if destination.origin() == url.origin() {
        Some(format!("{}{query}{fragment}", destination.path()))
    } else {
        let mut bare = destination.clone();
        bare.set_query(None);
        bare.set_fragment(None);
        Some(format!("{bare}{query}{fragment}"))
    }
}
