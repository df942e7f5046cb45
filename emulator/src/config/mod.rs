//! A worker's configuration: `wrangler.jsonc`, `wrangler.json` or
//! `wrangler.toml`, with `[env.NAME]` sections, `.dev.vars` / `.env` and
//! `--var` overlaid as wrangler does
//! (<https://developers.cloudflare.com/workers/wrangler/configuration/>).

mod dotenv;
pub mod error;
mod fields;
mod jsonc;

pub use error::ConfigError;

use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Config file names, in the order wrangler looks for them.
pub const CONFIG_FILES: [&str; 3] = ["wrangler.jsonc", "wrangler.json", "wrangler.toml"];

/// CPU time a single event may use when `limits.cpu_ms` is not set:
/// Cloudflare's default for paid plans
/// (<https://developers.cloudflare.com/workers/platform/limits/#cpu-time>).
pub const DEFAULT_CPU_MS: u64 = 30_000;

/// Used when the config has no `compatibility_date`.
pub const FALLBACK_COMPATIBILITY_DATE: &str = "2026-06-01";

/// Keys that an `[env.NAME]` section does not inherit from the top level.
const NOT_INHERITED: [&str; 12] = [
    "vars",
    "kv_namespaces",
    "d1_databases",
    "r2_buckets",
    "queues",
    "durable_objects",
    "services",
    "workflows",
    "analytics_engine_datasets",
    "ai",
    "vectorize",
    "hyperdrive",
];

#[derive(Debug, Default, Deserialize)]
struct RawConfig {
    name: Option<String>,
    main: Option<String>,
    compatibility_date: Option<String>,
    compatibility_flags: Option<Vec<String>>,
    vars: Option<Map<String, Value>>,
    limits: Option<Limits>,
    #[serde(default)]
    env: BTreeMap<String, RawEnv>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

#[derive(Debug, Default, Deserialize)]
struct RawEnv {
    name: Option<String>,
    main: Option<String>,
    compatibility_date: Option<String>,
    compatibility_flags: Option<Vec<String>>,
    vars: Option<Map<String, Value>>,
    limits: Option<Limits>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct Limits {
    cpu_ms: Option<u64>,
}

/// A worker's effective configuration for one `pyflare dev` run.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The config file read.
    pub file: PathBuf,
    /// The project folder (where the config file is).
    pub root: PathBuf,
    pub name: String,
    /// Absolute path of the main module.
    pub main: PathBuf,
    pub compatibility_date: String,
    pub compatibility_flags: Vec<String>,
    /// `vars`, then secrets from `.dev.vars` / `.env`, then `--var`.
    pub vars: Map<String, Value>,
    pub cpu_ms: u64,
    /// Every other top-level key (bindings and the rest), after the env overlay.
    pub rest: Map<String, Value>,
    /// Warnings to show the user (for example a missing compatibility_date).
    pub warnings: Vec<String>,
    /// wrangler's warning about fields it does not know, as wrangler prints it.
    pub unexpected_fields: Option<String>,
}

/// What `pyflare dev` was told on the command line.
#[derive(Debug, Clone, Default)]
pub struct ConfigOverrides {
    /// `--env NAME`.
    pub env: Option<String>,
    /// `--var KEY:VALUE`, in order.
    pub vars: Vec<String>,
    /// Whether `.env` files may be read (CLOUDFLARE_LOAD_DEV_VARS_FROM_DOT_ENV).
    pub dot_env: bool,
}

impl WorkerConfig {
    /// Finds and reads the config in `dir`.
    pub fn load(dir: &Path, overrides: &ConfigOverrides) -> Result<Self, ConfigError> {
        let file = CONFIG_FILES
            .iter()
            .map(|name| dir.join(name))
            .find(|path| path.is_file())
            .ok_or_else(|| ConfigError::NotFound {
                dir: dir.to_path_buf(),
            })?;
        let text = std::fs::read_to_string(&file).map_err(|source| ConfigError::Read {
            file: file.clone(),
            source,
        })?;
        let raw = parse(&file, &text)?;
        let root = file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Self::resolve(file, root, raw, overrides)
    }

    fn resolve(
        file: PathBuf,
        root: PathBuf,
        mut raw: RawConfig,
        overrides: &ConfigOverrides,
    ) -> Result<Self, ConfigError> {
        let mut warnings = Vec::new();
        let mut name = raw.name.clone();
        let mut main = raw.main.clone();
        let mut date = raw.compatibility_date.clone();
        let mut flags = raw.compatibility_flags.clone().unwrap_or_default();
        let mut limits = raw.limits.clone().unwrap_or_default();
        let mut vars = raw.vars.clone().unwrap_or_default();
        let mut rest = std::mem::take(&mut raw.rest);
        let unexpected_fields;

        if let Some(env_name) = &overrides.env {
            let env = raw
                .env
                .remove(env_name)
                .ok_or_else(|| ConfigError::UnknownEnv {
                    file: file.clone(),
                    name: env_name.clone(),
                })?;
            unexpected_fields =
                fields::unexpected_fields_warning(&file, &rest, Some((env_name, &env.rest)));
            name = Some(match env.name {
                Some(own) => own,
                None => format!("{}-{env_name}", name.as_deref().unwrap_or("worker")),
            });
            main = env.main.or(main);
            date = env.compatibility_date.or(date);
            if let Some(own) = env.compatibility_flags {
                flags = own;
            }
            if let Some(own) = env.limits {
                limits = own;
            }
            vars = env.vars.unwrap_or_default();
            for key in NOT_INHERITED {
                rest.remove(key);
            }
            rest.extend(env.rest);
        } else {
            unexpected_fields = fields::unexpected_fields_warning(&file, &rest, None);
        }

        let main = main.ok_or_else(|| ConfigError::Invalid {
            file: file.clone(),
            message: "no `main` entry: pyflare needs the worker's Python entry point, e.g. \"main\": \"src/entry.py\"".into(),
        })?;
        let main_path = root.join(&main);
        if main_path.extension().and_then(|e| e.to_str()) != Some("py") {
            return Err(ConfigError::Invalid {
                file,
                message: format!(
                    "`main` is {main}: pyflare runs Python Workers, whose main module is a .py file"
                ),
            });
        }
        // Message from workers-sdk packages/workers-utils/src/config/validation.ts.
        if !flags.iter().any(|f| f == "python_workers") {
            return Err(ConfigError::Invalid {
                file,
                message: "The `python_workers` compatibility flag is required to use Python."
                    .into(),
            });
        }
        if !main_path.is_file() {
            return Err(ConfigError::Invalid {
                file,
                message: format!(
                    "`main` is {main}, but {} does not exist",
                    main_path.display()
                ),
            });
        }
        let compatibility_date = match date {
            Some(date) if is_date(&date) => date,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    file,
                    message: format!(
                        "compatibility_date `{other}` is not a date of the form YYYY-MM-DD"
                    ),
                });
            }
            None => {
                warnings.push(format!(
                    "no compatibility_date in {}; using {FALLBACK_COMPATIBILITY_DATE}",
                    file.display()
                ));
                FALLBACK_COMPATIBILITY_DATE.to_owned()
            }
        };

        for (key, value) in secrets(&root, overrides)? {
            if vars.contains_key(&key) {
                warnings.push(format!(
                    "the secret `{key}` overrides the var of the same name"
                ));
            }
            vars.insert(key, Value::String(value));
        }
        for entry in &overrides.vars {
            let (key, value) = entry
                .split_once(':')
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| ConfigError::CliVar(entry.clone()))?;
            vars.insert(key.to_owned(), Value::String(value.to_owned()));
        }

        Ok(Self {
            file,
            root,
            name: name.unwrap_or_else(|| "worker".into()),
            main: main_path,
            compatibility_date,
            compatibility_flags: flags,
            vars,
            cpu_ms: limits.cpu_ms.unwrap_or(DEFAULT_CPU_MS),
            rest,
            warnings,
            unexpected_fields,
        })
    }

    /// Reads the config for a command that works on local state (`pyflare
    /// kv`, `pyflare d1`): no secrets are needed.
    pub fn load_for_state(dir: &Path, env: Option<&str>) -> Result<Self, ConfigError> {
        Self::load(
            dir,
            &ConfigOverrides {
                env: env.map(str::to_owned),
                vars: vec![],
                dot_env: false,
            },
        )
    }

    /// Root of local state: `persist_to`, else `.pyflare/state` in the project.
    pub fn persist_root(&self, persist_to: Option<&Path>) -> PathBuf {
        persist_to
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.root.join(".pyflare").join("state"))
    }

    /// Folder of the main module: the import root of the worker's Python.
    pub fn module_root(&self) -> &Path {
        self.main.parent().unwrap_or(&self.root)
    }

    /// Python module name of `main` (`entry` for `src/entry.py`).
    pub fn main_module(&self) -> String {
        self.main
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "entry".into())
    }
}

fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

/// Local secrets as wrangler reads them: `.dev.vars[.ENV]` if present,
/// otherwise the `.env` family, most specific last.
fn secrets(root: &Path, overrides: &ConfigOverrides) -> Result<Vec<(String, String)>, ConfigError> {
    let env = overrides.env.as_deref();
    let mut dev_vars = vec![];
    if let Some(env) = env {
        dev_vars.push(root.join(format!(".dev.vars.{env}")));
    }
    dev_vars.push(root.join(".dev.vars"));
    if let Some(file) = dev_vars.into_iter().find(|p| p.is_file()) {
        return read_dotenv(&file);
    }
    if !overrides.dot_env {
        return Ok(vec![]);
    }
    let mut files = vec![root.join(".env")];
    if let Some(env) = env {
        files.push(root.join(format!(".env.{env}")));
    }
    files.push(root.join(".env.local"));
    if let Some(env) = env {
        files.push(root.join(format!(".env.{env}.local")));
    }
    let mut out = vec![];
    for file in files.into_iter().filter(|p| p.is_file()) {
        out.extend(read_dotenv(&file)?);
    }
    Ok(out)
}

fn read_dotenv(file: &Path) -> Result<Vec<(String, String)>, ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
        file: file.to_path_buf(),
        source,
    })?;
    dotenv::parse(file, &text)
}

fn parse(file: &Path, text: &str) -> Result<RawConfig, ConfigError> {
    let is_toml = file.extension().and_then(|e| e.to_str()) == Some("toml");
    if is_toml {
        parse_toml(file, text)
    } else {
        parse_json(file, &jsonc::strip(text))
    }
}

fn parse_json(file: &Path, text: &str) -> Result<RawConfig, ConfigError> {
    // Syntax first, so a broken file is reported as such and not as a key.
    if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(text) {
        return Err(ConfigError::Syntax {
            file: file.to_path_buf(),
            line: e.line(),
            column: e.column(),
            message: strip_position(&e.to_string()),
        });
    }
    let mut de = serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        ConfigError::Key {
            file: file.to_path_buf(),
            line: inner.line(),
            column: inner.column(),
            key,
            message: strip_position(&inner.to_string()),
        }
    })
}

fn parse_toml(file: &Path, text: &str) -> Result<RawConfig, ConfigError> {
    let position = |span: Option<std::ops::Range<usize>>| {
        let at = span.map(|s| s.start).unwrap_or(0).min(text.len());
        let before = &text[..at];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
        (line, column)
    };
    let de = match toml::Deserializer::parse(text) {
        Ok(de) => de,
        Err(e) => {
            let (line, column) = position(e.span());
            return Err(ConfigError::Syntax {
                file: file.to_path_buf(),
                line,
                column,
                message: e.message().to_owned(),
            });
        }
    };
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        let (line, column) = position(inner.span());
        ConfigError::Key {
            file: file.to_path_buf(),
            line,
            column,
            key,
            message: inner.message().to_owned(),
        }
    })
}

/// serde_json appends " at line L column C"; the error shows those already.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests;
