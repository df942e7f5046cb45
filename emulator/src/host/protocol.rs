//! Protocol messages between pyflare and the isolate host, mirror of
//! `pyodide-runtime/src/protocol.mjs`. Body bytes are not messages: they
//! travel as chunk frames (see `transport`).

use serde::{Deserialize, Serialize};

/// Bump when a message is added, removed or changes shape;
/// `pyodide-runtime/src/protocol.mjs` declares the same number.
pub const PROTOCOL_VERSION: u32 = 6;

/// Bytes a body sender may have in flight before the receiver grants credit.
pub const BODY_WINDOW_BYTES: usize = 1024 * 1024;

/// What the host needs to load a worker.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerInit {
    pub name: String,
    pub pyodide_dir: String,
    pub sdk_dir: String,
    pub host_python_dir: String,
    /// Folder of the main module; mounted as the import root.
    pub module_root: String,
    /// Main module name, `entry` for `src/entry.py`.
    pub main_module: String,
    pub python_modules_dir: Option<String>,
    pub compatibility_date: String,
    pub compatibility_flags: Vec<String>,
    pub vars: serde_json::Map<String, serde_json::Value>,
    pub bindings: Vec<BindingInit>,
    /// Memory snapshot file to restore from, or to write; none disables snapshots.
    pub snapshot_path: Option<String>,
    /// Snapshot taken before the worker's own imports.
    pub baseline_snapshot_path: Option<String>,
    /// Snapshot of the baseline with the worker's packages (the modules
    /// from `python_modules/` it imported) imported too: what a reload
    /// restores, so that only the worker's own modules are imported again.
    /// Set only when the worker has `python_modules/`.
    pub packages_snapshot_path: Option<String>,
    /// For a snapshot-making host: the modules to import into the packages
    /// snapshot (see `packages_snapshot_path`); empty, it makes none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<String>,
    /// For a snapshot-making host: native extension modules (`.so` files
    /// under `/session/`, as Python names them) to load before Python
    /// starts, so that the snapshots it takes hold them at addresses a
    /// restore reproduces (see `FromHost::SnapshotDone`). When set, the host
    /// starts afresh and takes no baseline snapshot.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dylibs: Vec<String>,
    /// This host only makes the snapshots (serving hosts never take them).
    pub take_snapshots: bool,
    /// The isolate's memory limit in bytes (Pyodide's memory and the
    /// JavaScript heap); 0 for none.
    pub memory_limit_bytes: u64,
}

/// What a snapshot-making host's worker imported from outside Pyodide,
/// for the snapshots a second maker takes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Imported {
    /// The modules from `python_modules/` (what its packages snapshot
    /// should hold), in import order.
    #[serde(default)]
    pub packages: Vec<String>,
    /// The native extension modules (`.so` files under `/session/`) it
    /// had loaded, in load order: a snapshot holds one only if the host
    /// that takes it loaded it before Python started, so a second maker
    /// loads them all then (`WorkerInit::dylibs`).
    #[serde(default)]
    pub dylibs: Vec<String>,
}

/// One binding the host builds on `env`, with the shim that builds it.
#[derive(Debug, Clone, Serialize)]
pub struct BindingInit {
    pub name: String,
    pub kind: String,
    pub shim: String,
    /// What the shim's `create(name, call, options)` gets besides the name
    /// (`Binding::shim_options`); left out when null.
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    pub options: serde_json::Value,
}

/// Messages pyflare sends to the host.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToHost {
    Hello {
        version: u32,
        worker: Box<WorkerInit>,
        /// Prepare everything but the worker's code, then wait for `Load`.
        standby: bool,
    },
    Load {
        snapshot_path: Option<String>,
    },
    /// An event for the worker; the host answers `response` (fetch) or
    /// `event_result`.
    Event {
        id: u32,
        #[serde(flatten)]
        event: Event,
    },
    BodyEnd {
        stream: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    Credit {
        stream: u32,
        bytes: usize,
    },
    Cancel {
        stream: u32,
    },
    Ping {
        seq: u64,
    },
    CallReply {
        id: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        ok: Option<serde_json::Value>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<pyflare_bindings::WireError>,
        has_body: bool,
    },
    /// A message from the client of WebSocket `stream` (the id of the fetch
    /// the worker answered with a WebSocket): text, or binary as base64.
    WsMessage {
        stream: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        text: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        binary: Option<String>,
    },
    /// The client of WebSocket `stream` closed it (`was_clean`: with a
    /// close frame) or its connection broke off.
    WsClose {
        stream: u32,
        code: u16,
        reason: String,
        was_clean: bool,
    },
    Shutdown,
}

/// Messages the host sends to pyflare.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FromHost {
    Ready {
        version: u32,
        startup_ms: u64,
        /// `restored` from a snapshot, or `fresh`.
        #[serde(default)]
        origin: Option<String>,
    },
    StandbyReady {
        startup_ms: u64,
    },
    SnapshotDone {
        #[serde(flatten)]
        imported: Imported,
    },
    LoadError {
        message: String,
    },
    Response {
        id: u32,
        status: u16,
        status_text: String,
        headers: Vec<(String, String)>,
        has_body: bool,
        /// The whole body's length, when the host had all of it at once.
        #[serde(default)]
        body_length: Option<u64>,
        /// A 101 answer carrying the client end of a WebSocket: its messages
        /// travel as `ws_send` / `ws_message`, keyed by this fetch's id.
        #[serde(default)]
        websocket: bool,
    },
    /// The worker sent a message on WebSocket `stream`: text, or binary as
    /// base64.
    WsSend {
        stream: u32,
        #[serde(default)]
        text: Option<String>,
        #[serde(default)]
        binary: Option<String>,
    },
    /// The worker closed WebSocket `stream`.
    WsClose {
        stream: u32,
        #[serde(default)]
        code: Option<u16>,
        #[serde(default)]
        reason: String,
    },
    BodyEnd {
        stream: u32,
        #[serde(default)]
        error: Option<String>,
    },
    Credit {
        stream: u32,
        bytes: usize,
    },
    /// How an event ended, unless a `response` answered it.
    EventResult {
        id: u32,
        outcome: EventStatus,
        /// The traceback, or why the event failed.
        #[serde(default)]
        message: Option<String>,
        /// What the event kind returns beside its status (scheduled:
        /// `{"no_retry": bool}`).
        #[serde(default)]
        result: Option<serde_json::Value>,
    },
    Pong {
        seq: u64,
    },
    Log {
        level: LogLevel,
        message: String,
    },
    Call {
        id: u32,
        binding: String,
        method: String,
        #[serde(default)]
        args: serde_json::Value,
        has_body: bool,
    },
    /// The worker stopped reading the reply body of binding call `stream`.
    Cancel {
        stream: u32,
    },
    /// The isolate cannot go on; pyflare fails its events and replaces it.
    Abort {
        reason: AbortReason,
        message: String,
    },
}

/// One event for the worker, by `kind`, in the `event` message.
///
/// A new event kind is a new variant here and in `events.mjs`, not a new
/// message: queue batches (`queue`), Durable Object requests, RPC calls and
/// alarms (`alarm`) and WebSocket messages are next. Its answer is a
/// `response` head (fetch only, so that the body can stream) or an
/// `event_result`.
#[derive(Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// An HTTP request; a body follows as chunks of stream `id`.
    Fetch {
        method: String,
        url: String,
        headers: Vec<(String, String)>,
        has_body: bool,
    },
    /// A cron trigger (or `/cdn-cgi/handler/scheduled`).
    Scheduled { cron: String, scheduled_time: i64 },
    /// An event a binding defines (a queue batch, an alarm): the worker's
    /// `handler` runs with the arguments the binding's shim builds from
    /// `payload` (its `event` export), and the shim reports the result.
    Binding {
        binding: String,
        handler: String,
        payload: serde_json::Value,
    },
}

/// How an event ended in the isolate, as the host reports it. The other
/// outcomes workerd knows (`exceededCpu`, `exceededMemory`, ...) are
/// pyflare's to tell, from why the host stopped.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EventStatus {
    Ok,
    /// The handler raised (or hung); `message` has the traceback.
    Exception,
}

/// Why a host gave up its isolate.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum AbortReason {
    /// Pyodide suffered a fatal error (`os._exit()`, a crash inside it).
    Fatal,
    /// The isolate's memory passed its limit.
    MemoryLimit,
}

/// Level of a host log line.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_version_matches_the_host() {
        let js = include_str!("../../../pyodide-runtime/src/protocol.mjs");
        let line = format!("export const PROTOCOL_VERSION = {PROTOCOL_VERSION};");
        assert!(js.contains(&line), "protocol.mjs must declare `{line}`");
        let window = format!("export const BODY_WINDOW_BYTES = {};", "1024 * 1024");
        assert!(js.contains(&window));
        assert_eq!(BODY_WINDOW_BYTES, 1024 * 1024);
    }

    #[test]
    fn golden_transcript_lines_decode() {
        // Every host -> pyflare line of the recorded handshake decodes.
        let transcript = include_str!("../../../tests/protocol/fetch.jsonl");
        for line in transcript.lines().filter(|l| l.starts_with("<")) {
            let json = line.trim_start_matches('<').trim();
            serde_json::from_str::<FromHost>(json).unwrap_or_else(|e| panic!("{json}: {e}"));
        }
        for line in transcript.lines().filter(|l| l.starts_with(">")) {
            let json = line.trim_start_matches('>').trim();
            let value: serde_json::Value = serde_json::from_str(json).unwrap();
            assert!(value["type"].is_string(), "{json}");
        }
    }

    #[test]
    fn events_serialize_flat_with_their_kind() {
        let json = serde_json::to_string(&ToHost::Event {
            id: 1,
            event: Event::Fetch {
                method: "GET".into(),
                url: "http://127.0.0.1:8787/".into(),
                headers: vec![("a".into(), "b".into())],
                has_body: false,
            },
        })
        .unwrap();
        assert_eq!(
            json,
            r#"{"type":"event","id":1,"kind":"fetch","method":"GET","url":"http://127.0.0.1:8787/","headers":[["a","b"]],"has_body":false}"#
        );
        let json = serde_json::to_string(&ToHost::Event {
            id: 2,
            event: Event::Scheduled {
                cron: "* * * * *".into(),
                scheduled_time: 60_000,
            },
        })
        .unwrap();
        assert_eq!(
            json,
            r#"{"type":"event","id":2,"kind":"scheduled","cron":"* * * * *","scheduled_time":60000}"#
        );
    }

    #[test]
    fn event_results_decode() {
        let result: FromHost = serde_json::from_str(
            r#"{"type":"event_result","id":3,"outcome":"exception","message":"boom","result":{"no_retry":true}}"#,
        )
        .unwrap();
        assert_eq!(
            result,
            FromHost::EventResult {
                id: 3,
                outcome: EventStatus::Exception,
                message: Some("boom".into()),
                result: Some(serde_json::json!({"no_retry": true})),
            }
        );
    }
}
