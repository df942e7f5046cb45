//! The paths of `_headers` and `_redirects` rules: text, one `*` (any
//! characters, matched as `:splat`) and `:name` placeholders (one path
//! segment; in the host of an `https://` rule, one label), matched as
//! Cloudflare's rules engine matches them.

/// One part of a rule's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Part {
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
pub struct Pattern {
    parts: Vec<Part>,
    /// Whether the rule starts with `https://` and names the host.
    pub with_host: bool,
}

impl Pattern {
    /// None for a path Cloudflare's matcher refuses: a name used twice (two
    /// `*` count as twice `:splat`).
    pub fn parse(rule: &str) -> Option<Self> {
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
    pub fn matches(&self, target: &str) -> Option<Vec<(String, String)>> {
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
pub fn replace(value: &str, captures: &[(String, String)]) -> String {
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

/// Whether `line` starts with a URL's scheme (`https://`).
pub fn is_url(line: &str) -> bool {
    line.split_once("://")
        .is_some_and(|(scheme, _)| !scheme.is_empty() && !scheme.contains(char::is_whitespace))
}

/// Longest line of a rules file read; a longer one is skipped.
const MAX_LINE: usize = 2_000;

/// The lines of a rules file that hold something, trimmed, with their
/// numbers; blank lines and `#` comments left out, and over-long lines
/// skipped with a word in `skipped`.
pub fn rule_lines<'t>(text: &'t str, skipped: &mut Vec<String>) -> Vec<(usize, &'t str)> {
    let mut too_long = Vec::new();
    let lines: Vec<(usize, &str)> = text
        .split('\n')
        .enumerate()
        .map(|(i, raw)| (i + 1, raw.trim()))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
        .filter(|(number, line)| {
            let fits = line.len() <= MAX_LINE;
            if !fits {
                too_long.push(format!("line {number}: longer than {MAX_LINE} characters"));
            }
            fits
        })
        .collect();
    skipped.extend(too_long);
    lines
}
