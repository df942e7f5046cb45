//! D1 errors as the worker sees them: `Error` with `<CODE>: <detail>`.
//!
//! Codes and wording from Cloudflare's D1 docs
//! (<https://developers.cloudflare.com/d1/observability/debug-d1/>) and the
//! reference implementation's answers (workers-sdk miniflare
//! src/workers/d1/database.worker.ts, run against a JavaScript worker):
//! SQLite's message is followed by `: SQLITE_ERROR`-style result codes.

use crate::error::{CfError, JsClass};

/// Everything a D1 call can fail with.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs, reason = "each variant's message is its documentation")]
pub enum D1Error {
    #[error("D1_ERROR: {0}")]
    Sqlite(String),
    #[error("D1_ERROR: No SQL statements detected.")]
    NoStatements,
    #[error("D1_ERROR: SQL code did not contain a statement.")]
    OnlyComments,
    #[error(
        "D1_ERROR: When executing multiple SQL statements in a single call, only the last statement can have parameters."
    )]
    ParamsBeforeLast,
    #[error("D1_ERROR: Wrong number of parameter bindings for SQL query.")]
    WrongParameterCount,
    #[error("D1_ERROR: too many SQL variables: SQLITE_ERROR")]
    TooManyParameters,
    #[error("D1_ERROR: statement too long: SQLITE_TOOBIG")]
    StatementTooLong,
    #[error("D1_ERROR: string or blob too big: SQLITE_TOOBIG")]
    ValueTooBig,
    #[error("D1_TYPE_ERROR: Type '{kind}' not supported for value '{value}'")]
    Type { kind: String, value: String },
    #[error("D1_COLUMN_NOTFOUND: Column not found ({0})")]
    ColumnNotFound(String),
    #[error("D1_EXEC_ERROR: Error in line {line}: {text}: {error}")]
    Exec {
        line: usize,
        text: String,
        error: String,
    },
    #[error("D1_DUMP_ERROR: {0}")]
    Dump(String),
    #[error("D1_SESSION_ERROR: invalid bookmark or constraint")]
    Session,
    #[error("D1_ERROR: {0}")]
    BadRequest(String),
    /// SQLite's answer when its authorizer refuses a statement, as D1 words it.
    #[error("D1_ERROR: not authorized: SQLITE_AUTH")]
    NotAuthorized,
    /// The database file (or its write-ahead log) cannot be trusted.
    #[error("D1_ERROR: the database file {path} is damaged: {detail}")]
    Damaged { path: String, detail: String },
    /// The state folder cannot be written.
    #[error("D1_ERROR: cannot write to {path}: {detail}")]
    Unwritable { path: String, detail: String },
}

impl D1Error {
    /// What the user can do about a storage failure, if anything is obvious.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            Self::Damaged { .. } => Some(
                "move the file (and its -wal and -shm files) aside to start with an empty database, or restore it from a copy; pyflare changed nothing",
            ),
            Self::Unwritable { .. } => {
                Some("make the folder writable, or pass --persist-to a writable folder")
            }
            _ => None,
        }
    }
}

impl D1Error {
    /// The detail after `D1_ERROR: ` (used inside exec errors).
    pub fn detail(&self) -> String {
        let text = self.to_string();
        match text.split_once(": ") {
            Some((_, rest)) => rest.to_owned(),
            None => text,
        }
    }
}

impl CfError for D1Error {
    fn js_class(&self) -> JsClass {
        JsClass::Error
    }
}

#[cfg(test)]
#[test]
fn d1_error_messages_match_the_reference() {
    assert_eq!(
        D1Error::Sqlite("near \"SELEC\": syntax error at offset 0: SQLITE_ERROR".into())
            .to_string(),
        "D1_ERROR: near \"SELEC\": syntax error at offset 0: SQLITE_ERROR"
    );
    assert_eq!(
        D1Error::ParamsBeforeLast.to_string(),
        "D1_ERROR: When executing multiple SQL statements in a single call, only the last statement can have parameters."
    );
    assert_eq!(
        D1Error::ColumnNotFound("nope".into()).to_string(),
        "D1_COLUMN_NOTFOUND: Column not found (nope)"
    );
    assert_eq!(
        D1Error::Type {
            kind: "undefined".into(),
            value: "undefined".into()
        }
        .to_string(),
        "D1_TYPE_ERROR: Type 'undefined' not supported for value 'undefined'"
    );
}
