//! What a binding needs to declare its own `pyflare <binding> ...` command
//! (`pyflare kv`, `pyflare d1`): the [`BindingCli`] trait it implements in
//! its folder, the [`CliContext`] pyflare hands it (the project's config,
//! the clock, the terminal), the shared `--dir`/`--persist-to`/`--env`
//! arguments, and the one lookup of a configured binding by name.

use clap::Args;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::binding::BindingConfigError;
use crate::clock::Clock;
use crate::config::{NamedBinding, parse_entries};

/// A binding's command line, e.g. `pyflare kv ...`, returned by
/// [`BindingKind::cli`](crate::BindingKind::cli). pyflare adds
/// [`command`](Self::command) as a subcommand of `pyflare` and calls
/// [`run`](Self::run) with its matches.
#[async_trait::async_trait]
pub trait BindingCli: Sync {
    /// The subcommand, named as the user types it (`kv`, `d1`), with its
    /// own subcommands, arguments and help.
    fn command(&self) -> clap::Command;

    /// Runs the command the user gave; `matches` are those of
    /// [`command`](Self::command).
    async fn run(&self, matches: &clap::ArgMatches, cx: &dyn CliContext) -> Result<(), CliError>;
}

/// What pyflare gives a binding's command.
pub trait CliContext: Send + Sync {
    /// Reads the worker's config, as `pyflare dev` would read it but without
    /// secrets, for a command on local state.
    fn project(&self, state: &StateArgs) -> Result<Project, CliError>;

    /// The clock (the system's; a command has no test clock to move).
    fn clock(&self) -> Arc<dyn Clock>;

    /// Prints a warning for the user (`[pyflare] warning: ...` on stderr).
    fn warn(&self, message: &str);
}

/// Where the worker and its local state are: the arguments every command
/// on local state takes.
#[derive(Debug, Clone, Args)]
pub struct StateArgs {
    /// Project folder holding the wrangler config.
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// Folder of local state (as given to pyflare dev).
    #[arg(long, value_name = "DIR")]
    pub persist_to: Option<PathBuf>,
    /// Environment section of the config.
    #[arg(long, short = 'e')]
    pub env: Option<String>,
}

/// A worker's config, read for a command on local state.
#[derive(Debug, Clone)]
pub struct Project {
    /// The config file read.
    pub file: PathBuf,
    /// The project folder (where the config file is).
    pub root: PathBuf,
    /// Where local state lives: `--persist-to`, else `.pyflare/state` in
    /// the project.
    pub persist_root: PathBuf,
    /// The config's other top-level fields (of the `--env` section, if
    /// any), binding arrays among them.
    pub fields: Map<String, Value>,
    /// pyflare's settings for bindings, as `pyflare dev` reads them
    /// (see [`crate::binding::OpenContext::settings`]).
    pub settings: std::collections::BTreeMap<String, String>,
}

impl Project {
    /// Every entry of the array under `config_key` (none when it is absent).
    pub fn entries<T: DeserializeOwned + NamedBinding>(
        &self,
        config_key: &str,
    ) -> Result<Vec<T>, CliError> {
        match self.fields.get(config_key) {
            Some(value) => parse_entries(config_key, value).map_err(|e| self.binding_error(e)),
            None => Ok(vec![]),
        }
    }

    /// The entry of the array under `config_key` whose binding name, or
    /// other name (D1's `database_name`), is `name`; else an error that
    /// lists the configured ones.
    pub fn find<T: DeserializeOwned + NamedBinding>(
        &self,
        config_key: &str,
        name: &str,
    ) -> Result<T, CliError> {
        let mut entries = self.entries::<T>(config_key)?;
        if let Some(at) = entries
            .iter()
            .position(|e| e.binding() == name || e.other_name() == Some(name))
        {
            return Ok(entries.swap_remove(at));
        }
        let known: Vec<String> = entries
            .iter()
            .map(|e| match e.other_name() {
                Some(other) => format!("{other} ({})", e.binding()),
                None => e.binding().to_owned(),
            })
            .collect();
        Err(CliError::Hinted {
            message: format!("{} has no {} named {name}", self.file.display(), T::WHAT),
            hint: if known.is_empty() {
                format!("add it to {config_key} in the wrangler config")
            } else {
                format!("the {}s are: {}", T::WHAT, known.join(", "))
            },
        })
    }

    /// A binding's config or storage error, with this config's file.
    pub fn binding_error(&self, source: BindingConfigError) -> CliError {
        CliError::Binding {
            file: self.file.clone(),
            source,
        }
    }

    /// `relative` (a folder named in the config) from the project folder.
    pub fn path(&self, relative: impl AsRef<Path>) -> PathBuf {
        self.root.join(relative)
    }
}

/// Why a binding's command failed; pyflare prints it as
/// `pyflare: error: ...`, with `caused by:` lines for its sources and a
/// `hint:` line where there is one.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A binding's config entry or storage cannot be used.
    #[error("{}: {source}", file.display())]
    Binding {
        /// The config file.
        file: PathBuf,
        /// What is wrong.
        #[source]
        source: BindingConfigError,
    },
    /// A mistake the user can fix, and how.
    #[error("{message}")]
    Hinted {
        /// What went wrong.
        message: String,
        /// What to do.
        hint: String,
    },
    /// What was being done, or what failed, and the cause if any.
    #[error("{message}")]
    Failed {
        /// What was being done, or what failed.
        message: String,
        /// The cause, if any.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// Another error, shown as itself with its own sources (pyflare's
    /// config errors come back this way).
    #[error(transparent)]
    Other(Box<dyn std::error::Error + Send + Sync>),
}

impl CliError {
    /// A failure with no cause to show.
    pub fn msg(message: impl Into<String>) -> Self {
        Self::Failed {
            message: message.into(),
            source: None,
        }
    }

    /// A mistake the user can fix, with how.
    pub fn hinted(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self::Hinted {
            message: message.into(),
            hint: hint.into(),
        }
    }

    /// `message`, caused by `source`.
    pub fn context(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Failed {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }

    /// Any error, shown as itself.
    pub fn other(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Other(Box::new(error))
    }
}

impl From<std::io::Error> for CliError {
    fn from(error: std::io::Error) -> Self {
        Self::other(error)
    }
}

impl From<serde_json::Error> for CliError {
    fn from(error: serde_json::Error) -> Self {
        Self::other(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::d1::config::D1DatabaseConfig;
    use crate::kv::config::KvNamespaceConfig;
    use serde_json::json;

    fn project(fields: Value) -> Project {
        Project {
            file: PathBuf::from("w/wrangler.jsonc"),
            root: PathBuf::from("w"),
            persist_root: PathBuf::from("w/.pyflare/state"),
            fields: fields.as_object().unwrap().clone(),
            settings: Default::default(),
        }
    }

    fn hinted(error: CliError) -> (String, String) {
        match error {
            CliError::Hinted { message, hint } => (message, hint),
            other => panic!("not a hinted error: {other}"),
        }
    }

    #[test]
    fn find_takes_the_binding_name_or_the_other_name() {
        let p = project(json!({
            "kv_namespaces": [{"binding": "A", "id": "1"}, {"binding": "B"}],
            "d1_databases": [{"binding": "DB", "database_name": "quotes"}, {"binding": "LOGS"}],
        }));
        let kv: KvNamespaceConfig = p.find("kv_namespaces", "B").unwrap();
        assert_eq!(kv.binding, "B");
        let by_name: D1DatabaseConfig = p.find("d1_databases", "quotes").unwrap();
        let by_binding: D1DatabaseConfig = p.find("d1_databases", "DB").unwrap();
        assert_eq!(by_name.binding, by_binding.binding);
        let defaulted: D1DatabaseConfig = p.find("d1_databases", "LOGS").unwrap();
        assert_eq!(defaulted.name(), "LOGS");
    }

    #[test]
    fn a_missing_name_lists_the_configured_ones() {
        let p = project(json!({
            "kv_namespaces": [{"binding": "A"}, {"binding": "B"}],
            "d1_databases": [{"binding": "DB", "database_name": "quotes"}],
        }));
        assert_eq!(
            hinted(
                p.find::<KvNamespaceConfig>("kv_namespaces", "C")
                    .unwrap_err()
            ),
            (
                "w/wrangler.jsonc has no KV binding named C".to_owned(),
                "the KV bindings are: A, B".to_owned()
            )
        );
        assert_eq!(
            hinted(
                p.find::<D1DatabaseConfig>("d1_databases", "nope")
                    .unwrap_err()
            ),
            (
                "w/wrangler.jsonc has no D1 database named nope".to_owned(),
                "the D1 databases are: quotes (DB)".to_owned()
            )
        );
        assert_eq!(
            hinted(
                project(json!({}))
                    .find::<D1DatabaseConfig>("d1_databases", "x")
                    .unwrap_err()
            )
            .1,
            "add it to d1_databases in the wrangler config"
        );
    }

    #[test]
    fn a_bad_entry_is_a_config_error_with_the_file() {
        let p = project(json!({"d1_databases": [{"binding": "a-b"}]}));
        let error = p
            .find::<D1DatabaseConfig>("d1_databases", "a-b")
            .unwrap_err();
        assert!(matches!(error, CliError::Binding { .. }), "{error:?}");
        assert!(
            error.to_string().starts_with(
                "w/wrangler.jsonc: `d1_databases[0].binding`: The binding name \"a-b\" is invalid."
            ),
            "{error}"
        );
    }
}
