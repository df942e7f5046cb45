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

use super::pattern::{Pattern, is_url, replace, rule_lines};

/// Rules a file may hold; past them the rest is skipped.
const MAX_RULES: usize = 100;

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
        for (number, line) in rule_lines(text, &mut skipped) {
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
