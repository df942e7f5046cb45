//! The `_headers` file of the assets folder
//! (<https://developers.cloudflare.com/workers/static-assets/headers/>):
//! headers set on, or removed from, the asset server's answers by the
//! request's path.
//!
//! ```text
//! /static/*
//!   Cache-Control: public, max-age=31536000
//!   ! ETag
//! https://:sub.example.com/blog/:post
//!   X-Post: :post
//! ```
//!
//! A rule's path may hold one `*` (any characters, `:splat` in values)
//! and `:name` placeholders (one path segment; in a host, one label),
//! whose matches replace `:name` in the rule's values. Every rule that
//! matches applies, in order: the first to set a header replaces it, the
//! next ones append to it.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Rules a file may hold; past them the rest is skipped.
const MAX_RULES: usize = 100;
/// Longest line read; a longer one is skipped.
const MAX_LINE: usize = 2_000;

/// One part of a rule's path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    /// `*`: any characters.
    Splat,
    /// `:name`: characters but `/` (and `.` in a host).
    Placeholder {
        name: String,
        in_host: bool,
    },
}

/// A rule's path, to match against the request's path (or, for a rule
/// that starts with `https://`, against `https://<hostname><path>`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    parts: Vec<Part>,
    with_host: bool,
}

impl Pattern {
    /// None for a path Cloudflare's matcher refuses: a name used twice (two
    /// `*` count as twice `:splat`).
    fn parse(rule: &str) -> Option<Self> {
        let with_host = rule.starts_with("https://");
        let host_end = if with_host {
            rule["https://".len()..]
                .find('/')
                .map_or(rule.len(), |at| at + "https://".len())
        } else {
            0
        };
        let mut parts = Vec::new();
        let mut names: Vec<String> = Vec::new();
        let mut text = String::new();
        let mut chars = rule.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            let placeholder_start = c == ':'
                && chars
                    .peek()
                    .is_some_and(|(_, next)| next.is_ascii_alphabetic());
            if c == '*' || placeholder_start {
                if !text.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut text)));
                }
                let name = if c == '*' {
                    parts.push(Part::Splat);
                    "splat".to_owned()
                } else {
                    let mut name = String::new();
                    while let Some((_, next)) =
                        chars.next_if(|(_, n)| n.is_ascii_alphanumeric() || *n == '_')
                    {
                        name.push(next);
                    }
                    parts.push(Part::Placeholder {
                        name: name.clone(),
                        in_host: at < host_end,
                    });
                    name
                };
                if names.contains(&name) {
                    return None;
                }
                names.push(name);
            } else {
                text.push(c);
            }
        }
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Some(Self { parts, with_host })
    }

    /// The placeholders' matches, if `target` matches the whole pattern.
    fn matches(&self, target: &str) -> Option<Vec<(String, String)>> {
        let mut captures = Vec::new();
        match_from(&self.parts, target, &mut captures).then_some(captures)
    }
}

/// Whether `parts` match all of `rest`; greedy, trying shorter matches
/// after longer ones, as a regular expression's `.*` and `[^/]+` do.
fn match_from(parts: &[Part], rest: &str, captures: &mut Vec<(String, String)>) -> bool {
    let Some((first, others)) = parts.split_first() else {
        return rest.is_empty();
    };
    match first {
        Part::Text(text) => rest
            .strip_prefix(text.as_str())
            .is_some_and(|after| match_from(others, after, captures)),
        Part::Splat | Part::Placeholder { .. } => {
            let longest = match first {
                Part::Placeholder { in_host, .. } => rest
                    .find(|c: char| c == '/' || (*in_host && c == '.'))
                    .unwrap_or(rest.len()),
                _ => rest.len(),
            };
            let shortest = usize::from(matches!(first, Part::Placeholder { .. }));
            let name = match first {
                Part::Placeholder { name, .. } => name.as_str(),
                _ => "splat",
            };
            for end in (shortest..=longest).rev() {
                if !rest.is_char_boundary(end) {
                    continue;
                }
                captures.push((name.to_owned(), rest[..end].to_owned()));
                if match_from(others, &rest[end..], captures) {
                    return true;
                }
                captures.pop();
            }
            false
        }
    }
}

/// `value` with each `:name` a placeholder matched replaced by its match.
fn replace(value: &str, captures: &[(String, String)]) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ':' && chars.peek().is_some_and(|n| n.is_ascii_alphabetic()) {
            let mut name = String::new();
            while let Some(next) = chars.next_if(|n| n.is_ascii_alphanumeric() || *n == '_') {
                name.push(next);
            }
            match captures.iter().find(|(n, _)| *n == name) {
                Some((_, matched)) => out.push_str(matched),
                None => {
                    out.push(':');
                    out.push_str(&name);
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[derive(Debug, Clone)]
struct Rule {
    pattern: Pattern,
    /// Lower-case names; several lines of one name joined with ", ".
    set: Vec<(String, String)>,
    unset: Vec<String>,
}

/// The rules of one `_headers` file.
#[derive(Debug, Clone, Default)]
pub struct HeaderRules {
    rules: Vec<Rule>,
}

impl HeaderRules {
    /// Reads a `_headers` file's text; also says which lines were skipped
    /// and why, as wrangler warns.
    pub fn parse(text: &str) -> (Self, Vec<String>) {
        let mut rules = Vec::new();
        let mut skipped = Vec::new();
        let mut current: Option<Rule> = None;
        // Under a path line that was skipped: its headers go with it.
        let mut skipping = false;
        let finish = |rule: Option<Rule>, rules: &mut Vec<Rule>, skipped: &mut Vec<String>| {
            if let Some(rule) = rule {
                if rule.set.is_empty() && rule.unset.is_empty() {
                    skipped.push("a path with no headers under it".to_owned());
                } else {
                    rules.push(rule);
                }
            }
        };
        let lines: Vec<&str> = text.split('\n').collect();
        for (i, raw) in lines.iter().enumerate() {
            let line = raw.trim();
            let number = i + 1;
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line.len() > MAX_LINE {
                skipped.push(format!("line {number}: longer than {MAX_LINE} characters"));
                continue;
            }
            if line.starts_with('/') || is_url(line) {
                finish(current.take(), &mut rules, &mut skipped);
                skipping = true;
                if rules.len() >= MAX_RULES {
                    skipped.push(format!(
                        "line {number}: more than {MAX_RULES} rules; the rest of the file is skipped"
                    ));
                    break;
                }
                if is_url(line) && !line.starts_with("https://") {
                    skipped.push(format!(
                        "line {number}: a URL rule must start with https://"
                    ));
                    continue;
                }
                match Pattern::parse(line) {
                    Some(pattern) => {
                        skipping = false;
                        current = Some(Rule {
                            pattern,
                            set: Vec::new(),
                            unset: Vec::new(),
                        })
                    }
                    None => skipped.push(format!(
                        "line {number}: a placeholder or `*` is used twice in {line}"
                    )),
                }
                continue;
            }
            let Some(rule) = current.as_mut() else {
                if !skipping {
                    skipped.push(format!("line {number}: a header before any path"));
                }
                continue;
            };
            let Some((name, value)) = line.split_once(':') else {
                match line.strip_prefix("! ") {
                    Some(name) => rule.unset.push(name.trim().to_owned()),
                    None => {
                        skipped.push(format!("line {number}: expected `name: value` or `! name`"))
                    }
                }
                continue;
            };
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
            if name.is_empty() || name.contains(' ') || value.is_empty() {
                skipped.push(format!("line {number}: not a header: {line}"));
                continue;
            }
            match rule.set.iter_mut().find(|(n, _)| *n == name) {
                Some((_, existing)) => {
                    existing.push_str(", ");
                    existing.push_str(value);
                }
                None => rule.set.push((name, value.to_owned())),
            }
        }
        finish(current, &mut rules, &mut skipped);
        (Self { rules }, skipped)
    }

    /// Applies the rules that match a request to `hostname` and `path`
    /// (as the URL has it) to `headers`.
    pub fn apply(&self, hostname: &str, path: &str, headers: &mut Vec<(String, String)>) {
        let with_host = format!("https://{hostname}{path}");
        let mut set_here: Vec<String> = Vec::new();
        for rule in &self.rules {
            let target = if rule.pattern.with_host {
                with_host.as_str()
            } else {
                path
            };
            let Some(captures) = rule.pattern.matches(target) else {
                continue;
            };
            for name in &rule.unset {
                headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
            }
            for (name, value) in &rule.set {
                let value = replace(value, &captures);
                if !set_here.contains(name) {
                    headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
                    set_here.push(name.clone());
                } else if let Some((_, existing)) = headers
                    .iter_mut()
                    .find(|(n, _)| n.eq_ignore_ascii_case(name))
                {
                    existing.push_str(", ");
                    existing.push_str(&value);
                    continue;
                }
                headers.push((name.clone(), value));
            }
        }
    }
}

fn is_url(line: &str) -> bool {
    line.split_once("://")
        .is_some_and(|(scheme, _)| !scheme.is_empty() && !scheme.contains(char::is_whitespace))
}

/// The folder's `_headers`, read again when the file changes.
#[derive(Debug, Default)]
pub struct HeadersFile {
    cached: Mutex<Option<Cached>>,
}

/// Rules read, and the modification time and length of the file they came from.
#[derive(Debug)]
struct Cached {
    stamp: (Option<SystemTime>, u64),
    rules: Arc<HeaderRules>,
}

impl HeadersFile {
    /// The rules of `file` as it is now (none when there is no file).
    pub fn rules(&self, file: &Path) -> Arc<HeaderRules> {
        let Ok(meta) = std::fs::metadata(file) else {
            return Arc::default();
        };
        let stamp = (meta.modified().ok(), meta.len());
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(hit) = cached.as_ref()
            && hit.stamp == stamp
        {
            return hit.rules.clone();
        }
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let rules = Arc::new(HeaderRules::parse(&text).0);
        *cached = Some(Cached {
            stamp,
            rules: rules.clone(),
        });
        rules
    }
}
