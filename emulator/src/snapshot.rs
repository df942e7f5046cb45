//! Where a worker's memory snapshot lives: `<snapshot dir>/<key>.snap`,
//! keyed by everything that went into it (Pyodide, the host's own code, the
//! SDK, `python_modules/`, the worker's files, its compatibility date and
//! flags). A changed input gives a new key, so a stale snapshot is never
//! restored; the host checks each file's checksum before using it.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

use crate::host::protocol::WorkerInit;
use crate::runtime::{PYODIDE_VERSION, SDK_VERSION};

/// Whether `path` holds a snapshot whose SHA-256 trailer matches (the
/// format the host writes: Pyodide's bytes, then their digest).
pub fn is_sound(path: &Path) -> bool {
    use std::io::Read;
    let Ok(mut file) = std::fs::File::open(path) else {
        return false;
    };
    let Ok(len) = file.metadata().map(|m| m.len()) else {
        return false;
    };
    if len < 1024 * 1024 {
        return false;
    }
    // Streamed: pyflare itself never holds a snapshot in memory.
    let mut hasher = Sha256::new();
    let mut left = len - 32;
    let mut buf = vec![0u8; 256 * 1024];
    while left > 0 {
        let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
        if file.read_exact(&mut buf[..want]).is_err() {
            return false;
        }
        hasher.update(&buf[..want]);
        left -= want as u64;
    }
    let mut digest = [0u8; 32];
    file.read_exact(&mut digest).is_ok() && hasher.finalize().as_slice() == digest
}

/// Snapshots kept in the cache (each is about 30 MB); older ones are removed.
pub const KEEP_SNAPSHOTS: usize = 8;

/// Removes all but the [`KEEP_SNAPSHOTS`] most recently written snapshots
/// of each kind (dedicated and baseline), and stale temporary files.
pub fn prune(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut dedicated = Vec::new();
    let mut baseline = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let modified = entry.metadata().and_then(|m| m.modified()).ok();
        if name.ends_with(".tmp") {
            // A write that never finished (the host was killed mid-write).
            if modified.is_some_and(|t| t.elapsed().is_ok_and(|age| age.as_secs() > 600)) {
                let _ = std::fs::remove_file(&path);
            }
        } else if name.ends_with(".base.snap") {
            baseline.push((modified, path));
        } else if name.ends_with(".snap") {
            dedicated.push((modified, path));
        }
    }
    for mut list in [dedicated, baseline] {
        list.sort_by_key(|entry| std::cmp::Reverse(entry.0));
        for (_, path) in list.into_iter().skip(KEEP_SNAPSHOTS) {
            let _ = std::fs::remove_file(&path);
            let _ = std::fs::remove_file(path.with_extension("snap.nosnap"));
        }
    }
}

/// Most files looked at per folder tree; beyond it the key stops changing.
const MAX_FILES: usize = 50_000;

/// The dedicated snapshot for `init`: after the worker's own imports.
pub fn path_for(dir: &Path, init: &WorkerInit) -> PathBuf {
    let mut hasher = baseline_hasher(init);
    hasher.update(init.main_module.as_bytes());
    hash_tree(&mut hasher, Path::new(&init.module_root));
    finish(dir, hasher, "snap")
}

/// The baseline snapshot for `init`: Pyodide, the SDK, pyflare's glue and
/// `python_modules/` imported, none of the worker's own code.
pub fn baseline_path_for(dir: &Path, init: &WorkerInit) -> PathBuf {
    finish(dir, baseline_hasher(init), "base.snap")
}

fn finish(dir: &Path, hasher: Sha256, extension: &str) -> PathBuf {
    let digest = hasher.finalize();
    let key: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    dir.join(format!("{key}.{extension}"))
}

fn baseline_hasher(init: &WorkerInit) -> Sha256 {
    let mut hasher = Sha256::new();
    for part in [
        "pyflare-snapshot-v1",
        PYODIDE_VERSION,
        SDK_VERSION,
        &init.pyodide_dir,
        &init.sdk_dir,
        &init.host_python_dir,
        &init.module_root,
        &init.compatibility_date,
    ] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    for flag in &init.compatibility_flags {
        hasher.update(flag.as_bytes());
        hasher.update([0]);
    }
    hash_tree(&mut hasher, Path::new(&init.host_python_dir));
    if let Some(dir) = &init.python_modules_dir {
        hasher.update(dir.as_bytes());
        hash_tree(&mut hasher, Path::new(dir));
    }
    hasher
}

/// Adds every file's relative path, size and modification time.
fn hash_tree(hasher: &mut Sha256, root: &Path) {
    let mut stack = vec![root.to_path_buf()];
    let mut files = Vec::new();
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if crate::reload::is_not_code(&name) {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if files.len() < MAX_FILES {
                let modified = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos());
                let relative = entry
                    .path()
                    .strip_prefix(root)
                    .map(Path::to_path_buf)
                    .unwrap_or_default();
                files.push((relative, meta.len(), modified));
            }
        }
    }
    files.sort();
    for (path, len, modified) in files {
        hasher.update(path.to_string_lossy().as_bytes());
        hasher.update(len.to_le_bytes());
        hasher.update(modified.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn init(root: &Path) -> WorkerInit {
        WorkerInit {
            name: "w".into(),
            pyodide_dir: "/p".into(),
            sdk_dir: "/s".into(),
            host_python_dir: "/h".into(),
            module_root: root.to_string_lossy().into_owned(),
            main_module: "entry".into(),
            python_modules_dir: None,
            compatibility_date: "2026-06-01".into(),
            compatibility_flags: vec!["python_workers".into()],
            vars: Default::default(),
            bindings: vec![],
            snapshot_path: None,
            baseline_snapshot_path: None,
            take_snapshots: false,
            memory_limit_bytes: 0,
        }
    }

    #[test]
    fn snapshot_key_changes_with_the_code_and_flags_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("entry.py"), "x = 1\n").unwrap();
        let cache = Path::new("/cache");
        let first = path_for(cache, &init(dir.path()));
        assert_eq!(first, path_for(cache, &init(dir.path())));
        // State and caches do not count.
        std::fs::create_dir_all(dir.path().join(".pyflare/state")).unwrap();
        std::fs::write(dir.path().join(".pyflare/state/data"), "kv").unwrap();
        assert_eq!(first, path_for(cache, &init(dir.path())));
        let mut flagged = init(dir.path());
        flagged
            .compatibility_flags
            .push("python_dedicated_snapshot".into());
        assert_ne!(first, path_for(cache, &flagged));
        let base = baseline_path_for(cache, &init(dir.path()));
        std::fs::write(dir.path().join("entry.py"), "x = 22\n").unwrap();
        assert_ne!(first, path_for(cache, &init(dir.path())));
        // The baseline does not depend on the worker's own files.
        assert_eq!(base, baseline_path_for(cache, &init(dir.path())));
    }
}
