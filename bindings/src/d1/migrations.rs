//! D1 migrations as wrangler keeps them: `<NNNN>_<name>.sql` files in the
//! database's `migrations_dir`, applied in order, each with its row in the
//! `migrations_table` (default `d1_migrations`) in one transaction
//! (workers-sdk packages/wrangler/src/d1/migrations/{create,apply,helpers}.ts).

use std::path::{Path, PathBuf};

use super::error::D1Error;
use super::statements::{self, Split, Statement};
use super::store::{D1Store, Param};

/// Why a migration command failed.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs, reason = "each variant's message is its documentation")]
pub enum MigrationError {
    #[error("No migrations present at {}.", .0.display())]
    NoFolder(PathBuf),
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{name}: {error}")]
    Failed { name: String, error: D1Error },
    #[error("{0}")]
    Database(#[from] D1Error),
}

/// The `.sql` files in `dir`, in the order wrangler applies them.
pub fn files(dir: &Path) -> Result<Vec<String>, MigrationError> {
    if !dir.is_dir() {
        return Err(MigrationError::NoFolder(dir.to_path_buf()));
    }
    let entries = std::fs::read_dir(dir).map_err(|source| MigrationError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sql"))
        .collect();
    names.sort_by_key(|name| {
        let number: u64 = name
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap_or(u64::MAX);
        (number, name.clone())
    });
    Ok(names)
}

/// Creates `<NNNN>_<message>.sql`, numbered by the count of files present
/// (as wrangler does); returns its path.
pub fn create(dir: &Path, message: &str, timestamp: &str) -> Result<PathBuf, MigrationError> {
    std::fs::create_dir_all(dir).map_err(|source| MigrationError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let number = files(dir)?.len();
    let name = format!("{number:04}_{}.sql", message.trim().replace(' ', "_"));
    let path = dir.join(&name);
    std::fs::write(
        &path,
        format!("-- Migration number: {number:04} \t {timestamp}\n"),
    )
    .map_err(|source| MigrationError::Io {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

fn only(sql: &str) -> Vec<Statement> {
    match statements::split(sql) {
        Split::Statements(list) => list,
        Split::Empty | Split::OnlyComments => vec![],
    }
}

fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Names already applied, in order.
pub async fn applied(store: &dyn D1Store, table: &str) -> Result<Vec<String>, MigrationError> {
    let table = quote_identifier(table);
    store
        .run(
            &only(&format!(
                "CREATE TABLE IF NOT EXISTS {table}(\n  id INTEGER PRIMARY KEY AUTOINCREMENT,\n  name TEXT UNIQUE,\n  applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL\n)"
            )),
            &[],
        )
        .await?;
    let outcome = store
        .run(&only(&format!("SELECT name FROM {table} ORDER BY id")), &[])
        .await?;
    Ok(outcome
        .rows
        .iter()
        .filter_map(|row| row.first().and_then(|v| v.as_str()).map(str::to_owned))
        .collect())
}

/// Files not applied yet.
pub async fn unapplied(
    store: &dyn D1Store,
    dir: &Path,
    table: &str,
) -> Result<Vec<String>, MigrationError> {
    let done = applied(store, table).await?;
    Ok(files(dir)?
        .into_iter()
        .filter(|name| !done.contains(name))
        .collect())
}

/// Applies one file and records it, in one transaction.
pub async fn apply(
    store: &dyn D1Store,
    dir: &Path,
    table: &str,
    name: &str,
) -> Result<(), MigrationError> {
    let path = dir.join(name);
    let sql =
        std::fs::read_to_string(&path).map_err(|source| MigrationError::Io { path, source })?;
    let record = Statement {
        sql: format!("INSERT INTO {} (name) VALUES (?)", quote_identifier(table)),
        parameters: 1,
        line: 1,
    };
    // The record is bound separately so any file name is safe.
    store
        .run_in_transaction(&only(&sql), &[(record, vec![Param::Text(name.to_owned())])])
        .await
        .map_err(|error| MigrationError::Failed {
            name: name.to_owned(),
            error,
        })
}
