//! The calls the shim makes: one variant per operation, camelCase on the
//! wire. `id` is always the object's 64-digit hex id.

use serde::Deserialize;
use serde_json::Value;

/// One call from `shim.mjs`.
#[derive(Debug, Deserialize)]
#[serde(tag = "method", content = "args", rename_all = "camelCase")]
pub enum DurableObjectCall {
    /// `stub.method(*args)`: `args` is the V8 serialization of the argument
    /// list, base64, passed to the object untouched.
    Rpc {
        /// The object.
        id: String,
        /// The name the id came from, if any (`ctx.id.name`).
        #[serde(default)]
        name: Option<String>,
        /// The method called.
        call: String,
        /// The arguments.
        args: String,
    },
    /// `stub.fetch(request)`: the request's method, url, headers and body
    /// (base64), passed to the object untouched.
    Fetch {
        /// The object.
        id: String,
        /// The name the id came from, if any.
        #[serde(default)]
        name: Option<String>,
        /// The request.
        request: Value,
    },
    /// `storage.get(key | keys)`.
    Get {
        /// The object.
        id: String,
        /// The keys.
        keys: Vec<String>,
    },
    /// `storage.put(key, value | entries)`: the values, V8-serialized, are
    /// the call's body, one after the other, `lengths` bytes each.
    #[serde(rename_all = "camelCase")]
    Put {
        /// The object.
        id: String,
        /// The keys.
        keys: Vec<String>,
        /// Each value's length in the body; null for an undefined value.
        lengths: Vec<Option<usize>>,
    },
    /// `storage.delete(key | keys)`.
    Delete {
        /// The object.
        id: String,
        /// The keys.
        keys: Vec<String>,
    },
    /// `storage.list(options)`.
    List {
        /// The object.
        id: String,
        /// Its options.
        #[serde(default)]
        options: ListOptions,
    },
    /// `storage.sql.exec(query, ...bindings)` (SQLite-backed classes).
    Sql {
        /// The object.
        id: String,
        /// One or more statements; the bindings go to the last.
        query: String,
        /// Values for its parameters: JSON values, BLOBs as `{"$blob": [bytes]}`.
        #[serde(default)]
        bindings: Vec<Value>,
    },
    /// `storage.sql.databaseSize`.
    #[serde(rename_all = "camelCase")]
    DatabaseSize {
        /// The object.
        id: String,
    },
    /// Begins, commits or rolls back the object's transaction
    /// (`storage.transaction`, `transactionSync`).
    Transaction {
        /// The object.
        id: String,
        /// `begin`, `commit` or `rollback`.
        op: TransactionOp,
    },
    /// `storage.getAlarm()`.
    #[serde(rename_all = "camelCase")]
    GetAlarm {
        /// The object.
        id: String,
    },
    /// `storage.setAlarm(time)`: Unix milliseconds.
    #[serde(rename_all = "camelCase")]
    SetAlarm {
        /// The object.
        id: String,
        /// When; null when the worker's value is no finite number.
        #[serde(default)]
        time: Option<f64>,
    },
    /// `storage.deleteAlarm()`.
    #[serde(rename_all = "camelCase")]
    DeleteAlarm {
        /// The object.
        id: String,
    },
    /// `storage.deleteAll()`.
    #[serde(rename_all = "camelCase")]
    DeleteAll {
        /// The object.
        id: String,
    },
}

/// `storage.list()`'s options.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ListOptions {
    /// First key, included.
    #[serde(default)]
    pub start: Option<String>,
    /// Keys after this one.
    #[serde(default)]
    pub start_after: Option<String>,
    /// Keys before this one.
    #[serde(default)]
    pub end: Option<String>,
    /// Keys that start with this.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Descending order.
    #[serde(default)]
    pub reverse: Option<bool>,
    /// At most this many.
    #[serde(default)]
    pub limit: Option<f64>,
}

/// A step of a storage transaction.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum TransactionOp {
    /// `BEGIN`.
    Begin,
    /// `COMMIT`.
    Commit,
    /// `ROLLBACK`.
    Rollback,
}
