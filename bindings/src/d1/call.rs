//! `D1Call`: the wire methods the D1 shim sends. D1's statement objects
//! live in JavaScript; the backend sees `query`, `batch`, `exec` and
//! `dump`, as workerd's client reaches D1 (cloudflare/workerd
//! src/cloudflare/internal/d1-api.ts sends `/query` and `/execute`).

use serde::Deserialize;
use serde_json::Value;

/// One query of `prepare(sql).bind(...)`.
#[derive(Debug, Clone, Deserialize)]
pub struct Query {
    /// The SQL text.
    pub sql: String,
    /// Bound values as the shim encodes them (BLOBs as arrays of bytes).
    #[serde(default)]
    pub params: Vec<Value>,
}

/// A call from the D1 shim.
#[derive(Debug, Deserialize)]
#[serde(tag = "method", content = "args", rename_all = "camelCase")]
pub enum D1Call {
    /// `all()`, `run()`, `raw()` or `first()` of one statement.
    Query {
        /// The statement.
        #[serde(flatten)]
        query: Query,
        /// `all` (and `run`), `raw` or `first`.
        mode: String,
        /// `first(column)`.
        #[serde(default)]
        column: Option<String>,
    },
    /// `batch([...])`: all in one transaction.
    Batch {
        /// The statements.
        queries: Vec<Query>,
    },
    /// `exec(sql)`: one query per line, no parameters.
    Exec {
        /// The SQL text.
        sql: String,
    },
    /// `dump()`: the database file.
    Dump {},
}
