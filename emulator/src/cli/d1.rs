//! `pyflare d1 migrations create|list|apply DATABASE` and
//! `pyflare d1 execute DATABASE --command SQL | --file F [--json]`, on the
//! same local databases `pyflare dev` uses, as wrangler's `d1` commands do
//! with `--local`. DATABASE is the database name or the binding name.

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde_json::Value;
use std::path::PathBuf;

use crate::config::{ConfigError, WorkerConfig};
use crate::error::Hinted;
use pyflare_bindings::Clock;
use pyflare_bindings::clock::Stopwatch;
use pyflare_bindings::d1::migrations::{self, MigrationError};
use pyflare_bindings::d1::statements::{self, Split};
use pyflare_bindings::d1::{self, D1Database};

/// `pyflare d1 ...`.
#[derive(Debug, Args)]
pub struct D1Args {
    #[command(subcommand)]
    pub command: D1Command,
}

/// The D1 commands.
#[derive(Debug, Subcommand)]
pub enum D1Command {
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
pub enum MigrationsCommand {
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
pub struct Target {
    /// Project folder holding the wrangler config.
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// Folder of local state (as given to pyflare dev).
    #[arg(long, value_name = "DIR")]
    pub persist_to: Option<PathBuf>,
    /// Environment section of the config.
    #[arg(long, short = 'e')]
    pub env: Option<String>,
    /// Accepted for wrangler compatibility: pyflare's databases are local.
    #[arg(long, hide = true)]
    pub local: bool,
}

struct Opened {
    db: D1Database,
    migrations_dir: PathBuf,
}

fn open(database: &str, target: &Target) -> Result<Opened> {
    let config = WorkerConfig::load_for_state(&target.dir, target.env.as_deref())?;
    let entries = match config.rest.get("d1_databases") {
        Some(value) => d1::parse_config(value).map_err(|source| ConfigError::Binding {
            file: config.file.clone(),
            source,
        })?,
        None => vec![],
    };
    let Some(entry) = entries
        .iter()
        .find(|e| e.name() == database || e.binding == database)
        .cloned()
    else {
        let known: Vec<String> = entries
            .iter()
            .map(|e| format!("{} ({})", e.name(), e.binding))
            .collect();
        bail!(Hinted::new(
            format!(
                "{} has no D1 database named {database}",
                config.file.display()
            ),
            if known.is_empty() {
                "add it to d1_databases in the wrangler config".to_owned()
            } else {
                format!("the D1 databases are: {}", known.join(", "))
            }
        ));
    };
    let persist_root = config.persist_root(target.persist_to.as_deref());
    let migrations_dir = config.root.join(entry.migrations_dir());
    let db = D1Database::new(entry, &persist_root);
    // A damaged or unwritable file stops here, with its path and a hint.
    db.open_now().map_err(|source| ConfigError::Binding {
        file: config.file.clone(),
        source,
    })?;
    Ok(Opened { db, migrations_dir })
}

/// Runs a `pyflare d1` command.
#[allow(clippy::print_stdout, reason = "the command's output")]
pub async fn run(args: D1Args) -> Result<()> {
    match args.command {
        D1Command::Migrations(MigrationsCommand::Create {
            database,
            name,
            target,
        }) => {
            let opened = open(&database, &target)?;
            let timestamp = iso_now();
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
            let opened = open(&database, &target)?;
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
            let opened = open(&database, &target)?;
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
                match migrations::apply(store.as_ref(), &opened.migrations_dir, &table, name).await
                {
                    Ok(()) => println!("✅ {name}"),
                    Err(MigrationError::Failed { name, error }) => {
                        println!("❌ {name}");
                        checkpoint(&opened.db).await;
                        bail!(Hinted::new(
                            format!("migration {name} failed and was rolled back: {error}"),
                            "fix the file and run pyflare d1 migrations apply again; earlier migrations stay applied"
                        ));
                    }
                    Err(other) => return Err(other.into()),
                }
            }
            checkpoint(&opened.db).await;
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
                (None, Some(path)) => std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?,
                _ => bail!(Hinted::new(
                    "give the SQL with --command or --file",
                    "pyflare d1 execute DATABASE --command \"SELECT 1\""
                )),
            };
            let opened = open(&database, &target)?;
            let statements = match statements::split(&sql) {
                Split::Statements(list) => list,
                Split::Empty => bail!("No SQL statements detected."),
                Split::OnlyComments => bail!("SQL code did not contain a statement."),
            };
            let store = opened.db.store().await?;
            let mut results = Vec::new();
            for statement in &statements {
                let started = Stopwatch::start();
                let outcome = store.run(std::slice::from_ref(statement), &[]).await?;
                let meta = d1::meta(&outcome, started);
                let shaped = d1::shape(&outcome, "all", None, meta)?;
                results.push((outcome, shaped));
            }
            checkpoint(&opened.db).await;
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

/// Leaves the `.sqlite3` file complete (the write-ahead log emptied into
/// it), so it can be copied alone once the command returns.
async fn checkpoint(db: &D1Database) {
    if let Err(e) = pyflare_bindings::Binding::close(db).await {
        crate::logging::warn(&e);
    }
}

#[allow(clippy::print_stdout, reason = "the command's output")]
fn print_table(outcome: &pyflare_bindings::d1::store::Outcome) {
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

/// Now as an ISO 8601 UTC timestamp (for new migration files).
fn iso_now() -> String {
    let ms = pyflare_bindings::SystemClock.now_ms();
    let at = crate::cron::from_unix_minutes(ms.div_euclid(60_000));
    let seconds = ms.div_euclid(1000).rem_euclid(60);
    let millis = ms.rem_euclid(1000);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{seconds:02}.{millis:03}Z",
        at.year, at.month, at.day, at.hour, at.minute
    )
}
