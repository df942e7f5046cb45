//! What bindings share about the state folder on disk: telling a read-only
//! folder apart from a damaged store, so errors say which it is.

use std::path::Path;

/// Whether pyflare cannot create a file in `dir` (a read-only file system,
/// a folder without write permission, an immutable folder). Probes by
/// creating and removing a file; a folder that does not exist is judged by
/// its nearest existing parent.
pub fn read_only(dir: &Path) -> bool {
    let mut dir = dir;
    while !dir.exists() {
        match dir.parent() {
            Some(parent) => dir = parent,
            None => return false,
        }
    }
    let probe = dir.join(format!(".pyflare-write-probe-{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            false
        }
        Err(e) => matches!(
            e.kind(),
            std::io::ErrorKind::ReadOnlyFilesystem | std::io::ErrorKind::PermissionDenied
        ),
    }
}
