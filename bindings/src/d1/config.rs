//! One `d1_databases` entry of the wrangler config.

use serde::Deserialize;

use crate::config::{FieldError, NamedBinding};

/// `{"binding": "DB", "database_name": "...", "database_id": "...", ...}`.
#[derive(Debug, Clone, Deserialize)]
pub struct D1DatabaseConfig {
    /// Name on `env`.
    pub binding: String,
    /// Database name; names the local file. Defaults to the binding name.
    #[serde(default)]
    pub database_name: Option<String>,
    /// Database id (unused locally beyond display).
    #[serde(default)]
    pub database_id: Option<String>,
    /// Used by wrangler's `--preview`; accepted.
    #[serde(default)]
    pub preview_database_id: Option<String>,
    /// Folder of the user's migrations, relative to the config file.
    #[serde(default)]
    pub migrations_dir: Option<String>,
    /// Table recording applied migrations.
    #[serde(default)]
    pub migrations_table: Option<String>,
}

impl D1DatabaseConfig {
    /// The database's name: `database_name`, else the binding.
    pub fn name(&self) -> &str {
        self.database_name
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or(&self.binding)
    }

    /// `migrations_dir`, default `migrations`.
    pub fn migrations_dir(&self) -> &str {
        self.migrations_dir.as_deref().unwrap_or("migrations")
    }

    /// `migrations_table`, default `d1_migrations`.
    pub fn migrations_table(&self) -> &str {
        self.migrations_table.as_deref().unwrap_or("d1_migrations")
    }
}

impl NamedBinding for D1DatabaseConfig {
    const WHAT: &'static str = "D1 database";

    fn binding(&self) -> &str {
        &self.binding
    }

    /// `pyflare d1` commands take the database name too.
    fn other_name(&self) -> Option<&str> {
        Some(self.name())
    }

    /// The name is only ever a file name in `d1/`: never a path, never
    /// hidden.
    fn check(&self) -> Result<(), FieldError> {
        let name = self.name();
        if name.contains(['/', '\\', '\0']) || name.starts_with('.') {
            return Err(FieldError {
                field: "database_name",
                message: format!("\"{name}\" cannot name a local database file"),
            });
        }
        Ok(())
    }
}
