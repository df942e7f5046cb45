//! The isolate host's outer wall: the Node flags and environment a host
//! starts with.
//!
//! The worker's JavaScript view (`pyodide-runtime/src/globals.mjs`) is the
//! first layer: no Node globals, no code generation from strings, no
//! writable host folder. This is the second, for a hole in the first: Node's
//! permission model lets the process read only what a host needs (the
//! runtime, the worker's files, snapshots), write only its worker's own
//! snapshot files, and start
//! no child process, worker thread or native addon; eval and `Function` are
//! off for the whole isolate, as workerd disallows them; and the process
//! sees none of the user's environment variables.

use std::ffi::OsString;
use std::path::Path;

use super::protocol::WorkerInit;
use crate::runtime::Runtime;

/// Environment variables a host keeps from pyflare's own environment: the
/// documented way to tune the host's V8 (`NODE_OPTIONS`) and the time zone.
/// Everything else (tokens, credentials, `HOME`) stays out of reach of the
/// worker's code.
const INHERITED_ENV: &[&str] = &["NODE_OPTIONS", "TZ"];

/// The flags that confine a host, before the script path.
pub fn node_flags(runtime: &Runtime, init: &WorkerInit) -> Vec<OsString> {
    let mut flags: Vec<OsString> = vec![
        "--disallow-code-generation-from-strings".into(),
        "--permission".into(),
        // The connection to pyflare is a Unix socket, and the worker's
        // outbound `fetch` reaches the network as on Cloudflare.
        "--allow-net".into(),
    ];
    let host_dir = runtime
        .host_main
        .parent()
        .and_then(Path::parent)
        .unwrap_or(&runtime.host_main);
    let mut read = vec![
        host_dir.as_os_str(),
        runtime.pyodide_dir.as_os_str(),
        runtime.sdk_dir.as_os_str(),
        runtime.host_python_dir.as_os_str(),
        runtime.snapshot_dir.as_os_str(),
        init.module_root.as_ref(),
    ];
    if let Some(dir) = &init.python_modules_dir {
        read.push(dir.as_ref());
    }
    for path in read {
        flags.push(flag("--allow-fs-read=", path));
    }
    // Writable: this worker's own snapshot files (and their temporary and
    // `.nosnap` companions), not the folder they share with every project.
    for path in snapshot_files(init) {
        flags.push(flag("--allow-fs-write=", path.as_os_str()));
    }
    flags
}

/// The files a host may write: its worker's snapshots, the temporary file
/// each is written to, the `.made` file it is renamed to (pyflare keeps it
/// as the snapshot only if the worker's files did not change meanwhile),
/// and the `.nosnap` note that says why one is not taken (from a snapshot
/// maker, `.nosnap.made`, kept as the snapshot is).
pub fn snapshot_files(init: &WorkerInit) -> Vec<std::path::PathBuf> {
    [
        &init.snapshot_path,
        &init.baseline_snapshot_path,
        &init.packages_snapshot_path,
    ]
    .into_iter()
    .flatten()
    .flat_map(|path| {
        ["", ".tmp", ".made", ".nosnap", ".nosnap.made"]
            .map(|suffix| std::path::PathBuf::from(format!("{path}{suffix}")))
    })
    .collect()
}

/// The environment a host starts with (after `env_clear`).
pub fn inherited_env() -> impl Iterator<Item = (&'static str, OsString)> {
    INHERITED_ENV
        .iter()
        .filter_map(|name| std::env::var_os(name).map(|value| (*name, value)))
}

fn flag(name: &str, path: &std::ffi::OsStr) -> OsString {
    let mut flag = OsString::from(name);
    flag.push(path);
    flag
}
