//! Errors in a worker's configuration, each naming the file and, where
//! there is one, the line and the key.

use std::path::PathBuf;

/// Why a worker's configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("no wrangler.jsonc, wrangler.json or wrangler.toml in {}", dir.display())]
    NotFound { dir: PathBuf },
    #[error("cannot read {}: {source}", file.display())]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: {message}", file.display())]
    Syntax {
        file: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{}:{line}:{column}: `{key}`: {message}", file.display())]
    Key {
        file: PathBuf,
        line: usize,
        column: usize,
        key: String,
        message: String,
    },
    #[error("{}: {message}", file.display())]
    Invalid { file: PathBuf, message: String },
    #[error("{}:{line}: {message}", file.display())]
    DotEnv {
        file: PathBuf,
        line: usize,
        message: String,
    },
    #[error("environment `{name}` is not defined in {}", file.display())]
    UnknownEnv { file: PathBuf, name: String },
    #[error("invalid --var `{0}`")]
    CliVar(String),
    #[error("{}: {source}", file.display())]
    Binding {
        file: PathBuf,
        #[source]
        source: pyflare_bindings::BindingConfigError,
    },
}

impl ConfigError {
    /// A suggestion for the user, when the fix is obvious.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::NotFound { .. } => Some(
                "run pyflare dev in a Python Worker project, or pass its folder: pyflare dev path/to/worker".into(),
            ),
            Self::Invalid { message, .. } if message.contains("python_workers") => Some(
                "add \"python_workers\" to compatibility_flags in the wrangler config".into(),
            ),
            Self::UnknownEnv { .. } => Some("add an [env.NAME] section, or drop --env".into()),
            Self::CliVar(_) => Some("write --var KEY:VALUE".into()),
            Self::Binding { source, .. } => source.hint().map(str::to_owned),
            _ => None,
        }
    }
}
