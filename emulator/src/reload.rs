//! Live reload: watches the project for saved files and tells `pyflare dev`
//! to swap in a new host.
//!
//! Watched: everything under the project folder (sources, `python_modules/`,
//! the wrangler config, `.dev.vars` and `.env*`), except pyflare's state,
//! caches and version control. Bursts of events (an editor writes a temp file
//! and renames it) are coalesced into one reload.

use notify::{EventKind, RecursiveMode, Watcher};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;

/// Quiet time after the last event before reloading.
const DEBOUNCE: Duration = Duration::from_millis(40);

/// Folders that hold state, caches, tools or version control, never the
/// worker's code: no reload for changes in them, no part of a snapshot key.
pub fn is_not_code(folder: &str) -> bool {
    matches!(
        folder,
        ".pyflare"
            | ".wrangler"
            | ".git"
            | "node_modules"
            | "__pycache__"
            | ".venv"
            | ".venv-workers"
            | "target"
    )
}

/// Folders and files whose changes never reload the worker.
fn ignored(path: &Path) -> bool {
    let skip_dir = path.components().any(|c| match c {
        Component::Normal(name) => {
            let name = name.to_string_lossy();
            is_not_code(&name) || name == ".python_modules.syncing"
        }
        _ => false,
    });
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    skip_dir
        || name.ends_with(".pyc")
        || name.ends_with('~')
        || name.ends_with(".swp")
        || name.starts_with(".#")
        || name == "4913"
}

/// A running watcher; dropping it stops watching.
pub struct ProjectWatcher {
    _watcher: notify::RecommendedWatcher,
}

impl std::fmt::Debug for ProjectWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProjectWatcher")
    }
}

/// Watches `root`; each burst of relevant changes sends the changed paths.
pub fn watch(
    root: &Path,
) -> notify::Result<(ProjectWatcher, mpsc::UnboundedReceiver<Vec<PathBuf>>)> {
    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel::<PathBuf>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if matches!(event.kind, EventKind::Access(_) | EventKind::Other) {
            return;
        }
        for path in event.paths {
            if !ignored(&path) {
                let _ = raw_tx.send(path);
            }
        }
    })?;
    watcher.watch(root, RecursiveMode::Recursive)?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(first) = raw_rx.recv().await {
            let mut paths = vec![first];
            while let Ok(Some(path)) = tokio::time::timeout(DEBOUNCE, raw_rx.recv()).await {
                paths.push(path);
            }
            paths.sort();
            paths.dedup();
            if tx.send(paths).is_err() {
                return;
            }
        }
    });
    Ok((ProjectWatcher { _watcher: watcher }, rx))
}

#[cfg(test)]
#[test]
fn state_caches_and_editor_files_are_ignored() {
    assert!(ignored(Path::new("/p/.pyflare/state/kv/db")));
    assert!(ignored(Path::new(
        "/p/src/__pycache__/entry.cpython-314.pyc"
    )));
    assert!(ignored(Path::new("/p/src/.entry.py.swp")));
    assert!(!ignored(Path::new("/p/src/entry.py")));
    assert!(!ignored(Path::new("/p/python_modules/pkg/__init__.py")));
    assert!(!ignored(Path::new("/p/.dev.vars")));
}
