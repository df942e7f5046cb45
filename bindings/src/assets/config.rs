//! The `assets` object of the wrangler config
//! (<https://developers.cloudflare.com/workers/static-assets/binding/>).

use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};

use crate::binding::BindingConfigError;
use crate::config::{is_binding_name, parse_value};

/// How a path finds its HTML file, and which form of it is canonical.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HtmlHandling {
    /// `/about` serves `about.html`; `/blog/` serves `blog/index.html`.
    #[default]
    AutoTrailingSlash,
    /// Every HTML page is served at a path ending in `/`.
    ForceTrailingSlash,
    /// No HTML page is served at a path ending in `/` (but the root).
    DropTrailingSlash,
    /// Only exact file paths.
    None,
}

/// What a path with no asset gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NotFoundHandling {
    /// Nothing: the worker runs, or a bare 404.
    #[default]
    None,
    /// `/index.html`, with status 200.
    SinglePageApplication,
    /// The nearest `404.html` up the path, with status 404.
    NotFoundPage,
}

/// Which requests run the worker before any asset is looked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunWorkerFirst {
    /// `true`: every request; assets only through the binding.
    All,
    /// `false` (the default): only requests no asset answers.
    None,
    /// Rules: paths matching `worker` run the worker first; paths matching
    /// `assets` (rules written `!/...`) never run it.
    Rules {
        /// Globs of paths that run the worker first.
        worker: Vec<String>,
        /// Globs of paths only assets answer.
        assets: Vec<String>,
    },
}

/// The `assets` object, checked and with its folder resolved.
#[derive(Debug, Clone)]
pub struct AssetsConfig {
    /// The folder of the assets (absolute).
    pub directory: PathBuf,
    /// The name of `env.<binding>`, if the worker reaches assets itself.
    pub binding: Option<String>,
    /// `html_handling`.
    pub html_handling: HtmlHandling,
    /// `not_found_handling`.
    pub not_found_handling: NotFoundHandling,
    /// `run_worker_first`.
    pub run_worker_first: RunWorkerFirst,
    /// Whether a browser's navigation (`Sec-Fetch-Mode: navigate`) to a
    /// path with no asset gets the `not_found_handling` answer instead of
    /// the worker: the `assets_navigation_prefers_asset_serving` flag, on
    /// from compatibility date 2025-04-01.
    pub navigation_prefers_assets: bool,
}

#[derive(Deserialize)]
struct Raw {
    directory: Option<String>,
    binding: Option<String>,
    html_handling: Option<String>,
    not_found_handling: Option<String>,
    run_worker_first: Option<Value>,
}

const HTML_HANDLING: [&str; 4] = [
    "auto-trailing-slash",
    "force-trailing-slash",
    "drop-trailing-slash",
    "none",
];
const NOT_FOUND_HANDLING: [&str; 3] = ["single-page-application", "404-page", "none"];

fn invalid(path: &str, message: impl Into<String>) -> BindingConfigError {
    BindingConfigError::Invalid {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// wrangler's words for a field that is not one of `allowed`.
fn one_of(field: &str, allowed: &[&str], got: &str) -> BindingConfigError {
    let list = allowed
        .iter()
        .map(|a| format!("\"{a}\""))
        .collect::<Vec<_>>()
        .join(",");
    invalid(
        field,
        format!("Expected \"{field}\" field to be one of [{list}], but got \"{got}\"."),
    )
}

impl AssetsConfig {
    /// Reads the `assets` object; `root` is the project folder its
    /// `directory` is relative to.
    pub fn parse(
        value: &Value,
        root: &Path,
        compatibility_date: &str,
        compatibility_flags: &[String],
    ) -> Result<Self, BindingConfigError> {
        if !value.is_object() {
            return Err(invalid("assets", "expected an object"));
        }
        let raw: Raw = parse_value("assets", value)?;
        let Some(directory) = raw.directory.filter(|d| !d.is_empty()) else {
            return Err(invalid(
                "assets.directory",
                "The \"assets\" field in your configuration is missing the required \"directory\" property.",
            ));
        };
        // Without `.` segments, for messages and the banner.
        let directory: PathBuf = root.join(directory).components().collect();
        if !directory.is_dir() {
            return Err(BindingConfigError::Storage {
                what: "the assets folder".into(),
                path: directory,
                message: "The directory specified by the \"assets.directory\" field in your configuration file does not exist".into(),
                hint: Some("create the folder, or point `assets.directory` at the folder of your static files".into()),
            });
        }
        if let Some(name) = &raw.binding
            && !is_binding_name(name)
        {
            return Err(invalid(
                "assets.binding",
                format!(
                    "The binding name \"{name}\" is invalid. It can only have alphanumeric and _ characters, and cannot begin with a number."
                ),
            ));
        }
        let html_handling = match raw.html_handling.as_deref() {
            None | Some("auto-trailing-slash") => HtmlHandling::AutoTrailingSlash,
            Some("force-trailing-slash") => HtmlHandling::ForceTrailingSlash,
            Some("drop-trailing-slash") => HtmlHandling::DropTrailingSlash,
            Some("none") => HtmlHandling::None,
            Some(other) => return Err(one_of("assets.html_handling", &HTML_HANDLING, other)),
        };
        let not_found_handling = match raw.not_found_handling.as_deref() {
            None | Some("none") => NotFoundHandling::None,
            Some("single-page-application") => NotFoundHandling::SinglePageApplication,
            Some("404-page") => NotFoundHandling::NotFoundPage,
            Some(other) => {
                return Err(one_of(
                    "assets.not_found_handling",
                    &NOT_FOUND_HANDLING,
                    other,
                ));
            }
        };
        let run_worker_first = match raw.run_worker_first {
            None | Some(Value::Bool(false)) => RunWorkerFirst::None,
            Some(Value::Bool(true)) => RunWorkerFirst::All,
            Some(Value::Array(items)) => rules(&items)?,
            Some(_) => {
                return Err(invalid(
                    "assets.run_worker_first",
                    "Expected \"assets.run_worker_first\" to be a boolean or an array of strings.",
                ));
            }
        };
        let navigation_prefers_assets = if compatibility_flags
            .iter()
            .any(|f| f == "assets_navigation_has_no_effect")
        {
            false
        } else {
            compatibility_flags
                .iter()
                .any(|f| f == "assets_navigation_prefers_asset_serving")
                || compatibility_date >= "2025-04-01"
        };
        Ok(Self {
            directory,
            binding: raw.binding,
            html_handling,
            not_found_handling,
            run_worker_first,
            navigation_prefers_assets,
        })
    }
}

/// `run_worker_first` as an array of rules: each starts with `/`, or with
/// `!/` for a path only assets answer.
fn rules(items: &[Value]) -> Result<RunWorkerFirst, BindingConfigError> {
    let mut worker = Vec::new();
    let mut assets = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = format!("assets.run_worker_first[{i}]");
        let Some(rule) = item.as_str() else {
            return Err(invalid(&at, "expected a string"));
        };
        if let Some(negated) = rule.strip_prefix('!') {
            if !negated.starts_with('/') {
                return Err(invalid(
                    &at,
                    format!("'{rule}': negative rules must start with '!/'"),
                ));
            }
            assets.push(negated.to_owned());
        } else if rule.starts_with('/') {
            worker.push(rule.to_owned());
        } else {
            return Err(invalid(
                &at,
                format!("'{rule}': rules must start with '/' or '!/'"),
            ));
        }
    }
    Ok(RunWorkerFirst::Rules { worker, assets })
}

/// Whether `path` matches the glob `rule`, where `*` stands for any
/// characters (slashes too) and everything else for itself.
pub fn glob_matches(rule: &str, path: &str) -> bool {
    let mut parts = rule.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = path.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        // No `*`: the whole path.
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}
