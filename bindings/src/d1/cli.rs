//! `pyflare d1 migrations create|list|apply DATABASE` and
//! `pyflare d1 execute DATABASE --command SQL | --file F [--json]`, on the
//! same local databases `pyflare dev` uses, as wrangler's `d1` commands do
//! with `--local`. DATABASE is the database name or the binding name.

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use serde_json::Value;
use std::path::PathBuf;

use super::config::D1DatabaseConfig;
use super::error::D1Error;
use super::migrations::{self, MigrationError};
use super::statements::{self, Split};
use super::store::Outcome;
use super::{D1Database, D1Databases};
use crate::binding::{Binding, BindingKind};
use crate::cli::{BindingCli, CliContext, CliError, StateArgs};
use crate::clock::{Stopwatch, iso8601};

/// The `pyflare d1` command.
#[derive(Debug)]
pub(super) struct D1Cli;

/// Local D1 databases: migrations and SQL (as `wrangler d1 ... --local`).
#[derive(Debug, Parser)]
#[command(name = "d1")]
struct D1Args {
    #[command(subcommand)]
    command: D1Command,
}

/// The D1 commands.
#[derive(Debug, Subcommand)]
enum D1Command {
    /// Create, list and apply migrations.
    #[command(subcommand)]
    Migrations(MigrationsCommand),
    /// Run SQL against the local database.
    Execute {
        database: String,
        #[command(flatten)]
        target: Target,
        /// SQL to run.
        #[arg(long, conflicts_with = "file")]
        command: Option<String>,
        /// File of SQL to run.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Print the results as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `pyflare d1 migrations ...`.
#[derive(Debug, Subcommand)]
enum MigrationsCommand {
    /// Create `<NNNN>_<name>.sql` in the database's migrations_dir.
    Create {
        database: String,
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// List migrations not applied yet.
    List {
        database: String,
        #[command(flatten)]
        target: Target,
    },
    /// Apply the migrations not applied yet, in order.
    Apply {
        database: String,
        #[command(flatten)]
        target: Target,
    },
}

/// Where the worker and its local state are.
#[derive(Debug, Clone, Args)]
struct Target {
    #[command(flatten)]
    state: StateArgs,
    /// Accepted for wrangler compatibility: pyflare's databases are local.
    #[arg(long, hide = true)]
    local: bool,
}

impl From<D1Error> for CliError {
    fn from(error: D1Error) -> Self {
        Self::other(error)
    }
}

impl From<MigrationError> for CliError {
    fn from(error: MigrationError) -> Self {
        Self::other(error)
    }
}

struct Opened {
    db: D1Database,
    migrations_dir: PathBuf,
}

/// The database `database` names (its name or its binding), opened and
/// checked.
fn open(database: &str, target: &Target, cx: &dyn CliContext) -> Result<Opened, CliError> {
    let project = cx.project(&target.state)?;
    let entry: D1DatabaseConfig = project.find(D1Databases.config_key(), database)?;
    let migrations_dir = project.path(entry.migrations_dir());
    let db = D1Database::new(entry, &project.persist_root);
    // A damaged or unwritable file stops here, with its path and a hint.
    db.open_now()
        .map_err(|source| project.binding_error(source))?;
    Ok(Opened { db, migrations_dir })
}

#[async_trait::async_trait]
impl BindingCli for D1Cli {
    fn command(&self) -> clap::Command {
        D1Args::command()
    }

    #[allow(clippy::print_stdout, reason = "the command's output")]
    async fn run(&self, matches: &clap::ArgMatches, cx: &dyn CliContext) -> Result<(), CliError> {
        let args = D1Args::from_arg_matches(matches).map_err(CliError::other)?;
        match args.command {
            D1Command::Migrations(MigrationsCommand::Create {
                database,
                name,
                target,
            }) => {
                let opened = open(&database, &target, cx)?;
                let timestamp = iso8601(cx.clock().now_ms());
                let path = migrations::create(&opened.migrations_dir, &name, &timestamp)?;
                let file = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                println!("✅ Successfully created Migration '{file}'!\n");
                println!("The migration is available for editing here");
                println!("{}", path.display());
            }
            D1Command::Migrations(MigrationsCommand::List { database, target }) => {
                let opened = open(&database, &target, cx)?;
                let store = opened.db.store().await?;
                let pending = migrations::unapplied(
                    store.as_ref(),
                    &opened.migrations_dir,
                    opened.db.config().migrations_table(),
                )
                .await?;
                if pending.is_empty() {
                    println!("✅ No migrations to apply!");
                } else {
                    println!("Migrations to be applied:");
                    for name in pending {
                        println!("  {name}");
                    }
                }
            }
            D1Command::Migrations(MigrationsCommand::Apply { database, target }) => {
                let opened = open(&database, &target, cx)?;
                let store = opened.db.store().await?;
                let table = opened.db.config().migrations_table().to_owned();
                let pending =
                    migrations::unapplied(store.as_ref(), &opened.migrations_dir, &table).await?;
                if pending.is_empty() {
                    println!("✅ No migrations to apply!");
                    return Ok(());
                }
                println!("Migrations to be applied:");
                for name in &pending {
                    println!("  {name}");
                }
                for name in &pending {
                    match migrations::apply(store.as_ref(), &opened.migrations_dir, &table, name)
                        .await
                    {
                        Ok(()) => println!("✅ {name}"),
                        Err(MigrationError::Failed { name, error }) => {
                            println!("❌ {name}");
                            checkpoint(&opened.db, cx).await;
                            return Err(CliError::hinted(
                                format!("migration {name} failed and was rolled back: {error}"),
                                "fix the file and run pyflare d1 migrations apply again; earlier migrations stay applied",
                            ));
                        }
                        Err(other) => return Err(other.into()),
                    }
                }
                checkpoint(&opened.db, cx).await;
                println!(
                    "✅ Applied {} migration{}.",
                    pending.len(),
                    if pending.len() == 1 { "" } else { "s" }
                );
            }
            D1Command::Execute {
                database,
                target,
                command,
                file,
                json,
            } => {
                let sql = match (command, file) {
                    (Some(sql), None) => sql,
                    (None, Some(path)) => std::fs::read_to_string(&path).map_err(|e| {
                        CliError::context(format!("cannot read {}", path.display()), e)
                    })?,
                    _ => {
                        return Err(CliError::hinted(
                            "give the SQL with --command or --file",
                            "pyflare d1 execute DATABASE --command \"SELECT 1\"",
                        ));
                    }
                };
                let opened = open(&database, &target, cx)?;
                let statements = match statements::split(&sql) {
                    Split::Statements(list) => list,
                    Split::Empty => return Err(CliError::msg("No SQL statements detected.")),
                    Split::OnlyComments => {
                        return Err(CliError::msg("SQL code did not contain a statement."));
                    }
                };
                let store = opened.db.store().await?;
                let mut results = Vec::new();
                for statement in &statements {
                    let started = Stopwatch::start();
                    let outcome = store.run(std::slice::from_ref(statement), &[]).await?;
                    let meta = super::meta(&outcome, started);
                    let shaped = super::shape(&outcome, "all", None, meta)?;
                    results.push((outcome, shaped));
                }
                checkpoint(&opened.db, cx).await;
                if json {
                    let values: Vec<&Value> = results.iter().map(|(_, shaped)| shaped).collect();
                    println!("{}", serde_json::to_string_pretty(&values)?);
                } else {
                    println!(
                        "🌀 Executed {} command{} on {} ({})",
                        statements.len(),
                        if statements.len() == 1 { "" } else { "s" },
                        opened.db.config().name(),
                        opened.db.path().display()
                    );
                    for (outcome, _) in &results {
                        if !outcome.columns.is_empty() {
                            print_table(outcome);
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// Leaves the `.sqlite3` file complete (the write-ahead log emptied into
/// it), so it can be copied alone once the command returns.
async fn checkpoint(db: &D1Database, cx: &dyn CliContext) {
    if let Err(e) = db.close().await {
        cx.warn(&e);
    }
}

/// Rows as a box-drawn table, as wrangler prints them.
#[allow(clippy::print_stdout, reason = "the command's output")]
fn print_table(outcome: &Outcome) {
    let cell = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "null".to_owned(),
        other => other.to_string(),
    };
    let mut widths: Vec<usize> = outcome.columns.iter().map(|c| c.chars().count()).collect();
    for row in &outcome.rows {
        for (i, value) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell(value).chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}", w = *w))
            .collect();
        format!("│ {} │", padded.join(" │ "))
    };
    let rule = |left: &str, mid: &str, right: &str| {
        let parts: Vec<String> = widths.iter().map(|w| "─".repeat(w + 2)).collect();
        format!("{left}{}{right}", parts.join(mid))
    };
    println!("{}", rule("┌", "┬", "┐"));
    println!("{}", line(outcome.columns.clone()));
    println!("{}", rule("├", "┼", "┤"));
    for row in &outcome.rows {
        println!("{}", line(row.iter().map(cell).collect()));
    }
    println!("{}", rule("└", "┴", "┘"));
}
