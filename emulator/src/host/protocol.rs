//! Protocol messages between pyflare and the isolate host, mirror of
//! `pyodide-runtime/src/protocol.mjs`. Body bytes are not messages: they
//! travel as chunk frames (see `transport`).

use serde::{Deserialize, Serialize};

/// Bump when a message is added, removed or changes shape;
/// `pyodide-runtime/src/protocol.mjs` declares the same number.
pub const PROTOCOL_VERSION: u32 = 3;

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
    /// This host only makes the snapshots (serving hosts never take them).
    pub take_snapshots: bool,
    /// The isolate's memory limit in bytes (Pyodide's memory and the
    /// JavaScript heap); 0 for none.
    pub memory_limit_bytes: u64,
}

/// One binding the host builds on `env`, with the shim that builds it.
#[derive(Debug, Clone, Serialize)]
pub struct BindingInit {
    pub name: String,
    pub kind: String,
    pub shim: String,
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
    Fetch {
        id: u32,
        method: String,
        url: String,
        headers: Vec<(String, String)>,
        has_body: bool,
    },
    Scheduled {
        id: u32,
        cron: String,
        scheduled_time: i64,
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
    SnapshotDone,
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
    Exception {
        id: u32,
        message: String,
    },
    EventResult {
        id: u32,
        outcome: String,
        #[serde(default)]
        message: Option<String>,
        no_retry: bool,
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
    /// The isolate cannot go on; pyflare fails its events and replaces it.
    Abort {
        reason: AbortReason,
        message: String,
    },
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
    fn fetch_serializes_with_snake_case_tag() {
        let json = serde_json::to_string(&ToHost::Fetch {
            id: 1,
            method: "GET".into(),
            url: "http://127.0.0.1:8787/".into(),
            headers: vec![("a".into(), "b".into())],
            has_body: false,
        })
        .unwrap();
        assert_eq!(
            json,
            r#"{"type":"fetch","id":1,"method":"GET","url":"http://127.0.0.1:8787/","headers":[["a","b"]],"has_body":false}"#
        );
    }
}
