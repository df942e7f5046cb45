//! D1 (<https://developers.cloudflare.com/d1/worker-api/>) on SQLite.
//!
//! Each `d1_databases` entry becomes `env.<binding>`, a `D1Database` whose
//! prepared statements, sessions and result shaping live in `shim.mjs`;
//! queries reach this module. Each database is one plain SQLite file at
//! `<state>/d1/<database_name>.sqlite3` (WAL mode), which the `sqlite3`
//! command can open while pyflare runs. Migrations (`migrations_dir`,
//! `migrations_table`) are in [`migrations`]. `meta.rows_read` and
//! `meta.rows_written` are counted as D1 counts them, by the SQLite pyflare
//! links (`pyflare_sqlite`).
//!
//! Differences from Cloudflare:
//! - Not emulated: read replicas; sessions always read the primary and
//!   bookmarks are local counters.
//! - `exec` reports the failing line's own number and text (the reference
//!   emulator reports the previous line's text).
//! - Not emulated: query time, queries per invocation and database size limits.

pub mod call;
mod cli;
pub mod config;
pub mod error;
pub mod limits;
pub mod migrations;
mod sqlite_text;
pub mod statements;
pub mod store;

#[cfg(test)]
mod tests;

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{Map, Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::OnceCell;

use crate::binding::{Binding, BindingConfigError, BindingKind, BodyStream, OpenContext, Reply};
use crate::cli::BindingCli;
use crate::clock::Stopwatch;
use crate::config::parse_entries;
use crate::error::{CfError, WireError};
use call::{D1Call, Query};
use config::D1DatabaseConfig;
use error::D1Error;
use limits::*;
use statements::{Split, Statement};
use store::{D1Store, Outcome, Param, SqliteD1Store};

/// The `d1_databases` binding kind.
#[derive(Debug)]
pub struct D1Databases;

impl BindingKind for D1Databases {
    fn config_key(&self) -> &'static str {
        "d1_databases"
    }

    fn wire_name(&self) -> &'static str {
        "d1"
    }

    fn methods(&self) -> &'static [&'static str] {
        &["query", "batch", "exec", "dump"]
    }

    fn shim(&self) -> &'static str {
        include_str!("shim.mjs")
    }

    fn open(
        &self,
        config: &Value,
        cx: &OpenContext,
    ) -> Result<Vec<Arc<dyn Binding>>, BindingConfigError> {
        let mut out: Vec<Arc<dyn Binding>> = Vec::new();
        for entry in parse_entries::<D1DatabaseConfig>(self.config_key(), config)? {
            let database = D1Database::new(entry, &cx.persist_root);
            database.open_now()?;
            out.push(Arc::new(database));
        }
        Ok(out)
    }

    fn cli(&self) -> Option<&'static dyn BindingCli> {
        Some(&cli::D1Cli)
    }
}

/// The local file of a database.
pub fn database_path(persist_root: &std::path::Path, config: &D1DatabaseConfig) -> PathBuf {
    persist_root
        .join("d1")
        .join(format!("{}.sqlite3", config.name()))
}

/// A live D1 binding.
#[derive(Debug)]
pub struct D1Database {
    config: D1DatabaseConfig,
    path: PathBuf,
    store: OnceCell<Arc<dyn D1Store>>,
}

impl D1Database {
    /// A binding for `config` with its file under `persist_root`.
    pub fn new(config: D1DatabaseConfig, persist_root: &std::path::Path) -> Self {
        let path = database_path(persist_root, &config);
        Self {
            config,
            path,
            store: OnceCell::new(),
        }
    }

    /// Its configuration.
    pub fn config(&self) -> &D1DatabaseConfig {
        &self.config
    }

    /// Its SQLite file.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The open store (opened on first use).
    pub async fn store(&self) -> Result<&Arc<dyn D1Store>, D1Error> {
        self.store
            .get_or_try_init(|| async {
                let store = SqliteD1Store::open_shared(&self.path).await?;
                Ok::<Arc<dyn D1Store>, D1Error>(Arc::new(store))
            })
            .await
    }

    /// Opens (and checks) the database file now, when pyflare runs on a
    /// multi-threaded runtime, so a damaged or unwritable file stops
    /// `pyflare dev` at start with its path instead of failing queries later.
    /// Elsewhere (unit tests) the file opens on first use.
    pub fn open_now(&self) -> Result<(), BindingConfigError> {
        let Some(opened) = crate::storage::open_at_start(self.store()) else {
            return Ok(());
        };
        opened
            .map(|_| ())
            .map_err(|error| BindingConfigError::Storage {
                what: format!("the D1 database {}", self.config.name()),
                path: self.path.clone(),
                hint: error.hint().map(str::to_owned),
                message: match &error {
                    D1Error::Damaged { detail, .. } => format!("the file is damaged: {detail}"),
                    other => other.detail(),
                },
            })
    }

    /// Runs one typed call.
    pub async fn run(&self, call: D1Call) -> Result<Reply, D1Error> {
        match call {
            D1Call::Query {
                query,
                mode,
                column,
            } => {
                let (statements, params) = prepare(&query)?;
                let started = Stopwatch::start();
                let store = self.store().await?;
                let outcome = store.run(&statements, &params).await?;
                let meta = meta(&outcome, started);
                Ok(Reply::json(shape(
                    &outcome,
                    &mode,
                    column.as_deref(),
                    meta,
                )?))
            }
            D1Call::Batch { queries } => {
                let prepared = queries.iter().map(prepare).collect::<Result<Vec<_>, _>>()?;
                let started = Stopwatch::start();
                let store = self.store().await?;
                let outcomes = store.batch(&prepared).await?;
                let results: Vec<Value> = outcomes
                    .iter()
                    .map(|o| shape(o, "all", None, meta(o, started)))
                    .collect::<Result<_, _>>()?;
                Ok(Reply::json(Value::Array(results)))
            }
            D1Call::Exec { sql } => {
                let started = Stopwatch::start();
                let store = self.store().await?;
                let mut count = 0;
                for (index, line) in sql.lines().enumerate() {
                    let line = line.trim();
                    if line.is_empty() {
                        continue;
                    }
                    let failed = |error: D1Error| D1Error::Exec {
                        line: index + 1,
                        text: line.to_owned(),
                        error: error.detail(),
                    };
                    let statements = match statements::split(line) {
                        Split::Statements(list) => list,
                        Split::Empty | Split::OnlyComments => continue,
                    };
                    check_sql(line).map_err(failed)?;
                    store.run(&statements, &[]).await.map_err(failed)?;
                    count += 1;
                }
                Ok(Reply::json(
                    json!({ "count": count, "duration": elapsed_ms(started) }),
                ))
            }
            D1Call::Dump {} => {
                let bytes = self.store().await?.dump().await?;
                Ok(Reply {
                    value: Value::Null,
                    body: Some(Bytes::from(bytes).into()),
                })
            }
        }
    }
}

#[async_trait]
impl Binding for D1Database {
    fn name(&self) -> &str {
        &self.config.binding
    }

    fn kind(&self) -> &'static str {
        "d1"
    }

    fn describe(&self) -> String {
        format!(
            "D1 Database       {}  ({}, {})",
            self.config.binding,
            self.config.name(),
            self.path.display()
        )
    }

    async fn close(&self) -> Result<(), String> {
        match self.store.get() {
            Some(store) => store
                .checkpoint()
                .await
                .map_err(|e| format!("D1 {}: {}", self.config.binding, e.detail())),
            None => Ok(()),
        }
    }

    async fn call(
        &self,
        method: &str,
        args: Value,
        _body: Option<BodyStream>,
    ) -> Result<Reply, WireError> {
        let call: D1Call = serde_json::from_value(json!({ "method": method, "args": args }))
            .map_err(|e| D1Error::BadRequest(e.to_string()).to_wire())?;
        self.run(call).await.map_err(|e| e.to_wire())
    }
}

fn check_sql(sql: &str) -> Result<(), D1Error> {
    if sql.len() > MAX_SQL_BYTES {
        return Err(D1Error::StatementTooLong);
    }
    Ok(())
}

/// Splits a query's SQL and converts its parameters, enforcing D1's rules.
pub fn prepare(query: &Query) -> Result<(Vec<Statement>, Vec<Param>), D1Error> {
    check_sql(&query.sql)?;
    let statements = match statements::split(&query.sql) {
        Split::Empty => return Err(D1Error::NoStatements),
        Split::OnlyComments => return Err(D1Error::OnlyComments),
        Split::Statements(list) => list,
    };
    let (last, earlier) = statements
        .split_last()
        .expect("split returns at least one statement");
    if earlier.iter().any(|s| s.parameters > 0) {
        return Err(D1Error::ParamsBeforeLast);
    }
    if query.params.len() > MAX_BOUND_PARAMETERS || last.parameters > MAX_BOUND_PARAMETERS {
        return Err(D1Error::TooManyParameters);
    }
    if query.params.len() != last.parameters {
        return Err(D1Error::WrongParameterCount);
    }
    let params = query
        .params
        .iter()
        .map(param)
        .collect::<Result<Vec<_>, _>>()?;
    Ok((statements, params))
}

fn param(value: &Value) -> Result<Param, D1Error> {
    let type_error = |kind: &str| D1Error::Type {
        kind: kind.to_owned(),
        value: value.to_string(),
    };
    Ok(match value {
        Value::Null => Param::Null,
        Value::Bool(b) => Param::Integer(i64::from(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Param::Integer(i),
            None => Param::Real(n.as_f64().ok_or_else(|| type_error("number"))?),
        },
        Value::String(s) => {
            if s.len() > MAX_VALUE_BYTES {
                return Err(D1Error::ValueTooBig);
            }
            Param::Text(s.clone())
        }
        Value::Array(items) => {
            let bytes = items
                .iter()
                .map(|v| v.as_u64().filter(|b| *b <= 255).map(|b| b as u8))
                .collect::<Option<Vec<u8>>>()
                .ok_or_else(|| type_error("object"))?;
            if bytes.len() > MAX_VALUE_BYTES {
                return Err(D1Error::ValueTooBig);
            }
            Param::Blob(bytes)
        }
        Value::Object(_) => return Err(type_error("object")),
    })
}

fn elapsed_ms(started: Stopwatch) -> f64 {
    started.elapsed_ms()
}

/// `meta` of a D1 result.
pub fn meta(outcome: &Outcome, started: Stopwatch) -> Value {
    let duration = elapsed_ms(started);
    json!({
        "served_by": "pyflare.db",
        "served_by_region": "LOCAL",
        "served_by_primary": true,
        "timings": { "sql_duration_ms": duration },
        "duration": duration,
        "changes": outcome.changes,
        "last_row_id": outcome.last_row_id,
        "changed_db": outcome.changed_db,
        "size_after": outcome.size_after,
        "rows_read": outcome.rows_read,
        "rows_written": outcome.rows_written,
        "total_attempts": 1,
    })
}

/// The reply for one statement in `mode` (`all`, `raw` or `first`).
pub fn shape(
    outcome: &Outcome,
    mode: &str,
    column: Option<&str>,
    meta: Value,
) -> Result<Value, D1Error> {
    let objects = || -> Vec<Value> {
        outcome
            .rows
            .iter()
            .map(|row| {
                let mut object = Map::new();
                for (name, value) in outcome.columns.iter().zip(row) {
                    object.insert(name.clone(), value.clone());
                }
                Value::Object(object)
            })
            .collect()
    };
    Ok(match mode {
        "raw" => json!({ "columns": outcome.columns, "rows": outcome.rows }),
        "first" => {
            let Some(row) = outcome.rows.first() else {
                return Ok(Value::Null);
            };
            match column {
                None => objects().swap_remove(0),
                Some(name) => {
                    let index = outcome
                        .columns
                        .iter()
                        .position(|c| c == name)
                        .ok_or_else(|| D1Error::ColumnNotFound(name.to_owned()))?;
                    row[index].clone()
                }
            }
        }
        _ => json!({ "success": true, "meta": meta, "results": objects() }),
    })
}
