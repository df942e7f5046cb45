//! Where a worker's memory snapshot lives: `<snapshot dir>/<key>.snap`,
//! keyed by everything that went into it (Pyodide, the host's own code, the
//! SDK, the contents of `python_modules/` and of the worker's files, its
//! compatibility date and flags). File contents are read once and their
//! digests remembered by path, size and modification time
//! (`file-digests.tsv` beside the snapshots). A changed input gives a new key, so a stale snapshot is never
//! restored; the host checks each file's checksum before using it.

use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::host::protocol::WorkerInit;
use crate::runtime::{PYODIDE_VERSION, SDK_VERSION};

/// Whether `path` holds a snapshot whose SHA-256 trailer matches (the
/// format the host writes: Pyodide's bytes and a record of the native
/// modules to load first, then their digest).
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

/// Default bound of the snapshot cache, in MiB (`PYFLARE_SNAPSHOT_CACHE_MB`):
/// a hello-world worker's snapshots are about 30 MB each, a Django worker's
/// 30 MB (baseline) and 45 MB (dedicated).
pub const DEFAULT_CACHE_MB: u64 = 1024;

/// The snapshot cache's bound in bytes: `PYFLARE_SNAPSHOT_CACHE_MB`, else
/// [`DEFAULT_CACHE_MB`].
pub fn cache_bound() -> u64 {
    std::env::var("PYFLARE_SNAPSHOT_CACHE_MB")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(DEFAULT_CACHE_MB)
        .saturating_mul(1024 * 1024)
}

/// Keeps the snapshot cache within `bound` bytes: the snapshots used or
/// written least recently go first (a start marks the ones it uses), but the
/// newest of each kind (dedicated and baseline) always stays. Also removes
/// stale temporary files.
pub fn prune(dir: &Path, bound: u64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut snapshots = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(meta) = entry.metadata() else { continue };
        let modified = meta.modified().ok();
        if name.ends_with(".tmp") || name.ends_with(".made") {
            // A write that never finished (the host was killed mid-write),
            // or a snapshot whose maker was stopped before pyflare kept it.
            if modified.is_some_and(|t| t.elapsed().is_ok_and(|age| age.as_secs() > 600)) {
                let _ = std::fs::remove_file(&path);
            }
        } else if name.ends_with(".snap") {
            let kind = if name.ends_with(".base.snap") {
                1
            } else if name.ends_with(".pkgs.snap") {
                2
            } else {
                0
            };
            snapshots.push((modified, meta.len(), kind, path));
        }
    }
    snapshots.sort_by_key(|entry| std::cmp::Reverse(entry.0));
    let mut total = 0u64;
    // Dedicated, baseline, packages.
    let mut kept = [false; 3];
    for (_, len, kind, path) in snapshots {
        let newest_of_its_kind = !std::mem::replace(&mut kept[kind], true);
        total = total.saturating_add(len);
        if total > bound && !newest_of_its_kind {
            let _ = std::fs::remove_file(&path);
            let _ = std::fs::remove_file(path.with_extension("snap.nosnap"));
            let _ = std::fs::remove_file(packages_list_path(&path));
        }
    }
}

/// Keeps the snapshots a maker host wrote (`<path>.made`) as the snapshots
/// of `init`'s key only if the worker's files still have that key: a file
/// saved while the maker imported them may be in the snapshot, which must
/// then not answer for the files it was keyed by. So with the notes of the
/// snapshots it refused (`<path>.nosnap.made`): the refusal may be the
/// newer code's. A packages snapshot kept gets the list of its modules
/// (`init.packages`) beside it.
pub fn keep_made(init: &WorkerInit) {
    let Some(baseline) = &init.baseline_snapshot_path else {
        return;
    };
    let dir = Path::new(baseline).parent().unwrap_or(Path::new("."));
    let now = paths_for(dir, init);
    let made = [
        (&init.snapshot_path, Some(now.dedicated)),
        (&init.baseline_snapshot_path, Some(now.baseline)),
        (&init.packages_snapshot_path, now.packages),
    ];
    for (path, now) in made {
        let Some(path) = path else { continue };
        let unchanged = now.as_deref() == Some(Path::new(path));
        let refusal = format!("{path}.nosnap.made");
        if Path::new(&refusal).exists() {
            if unchanged {
                let _ = std::fs::rename(&refusal, format!("{path}.nosnap"));
            } else {
                let _ = std::fs::remove_file(&refusal);
            }
        }
        let made = format!("{path}.made");
        if !Path::new(&made).exists() {
            continue;
        }
        if unchanged {
            if init.packages_snapshot_path.as_ref() == Some(path) {
                let list = packages_list_path(Path::new(path));
                let _ = std::fs::write(list, init.packages.join("\n"));
            }
            let _ = std::fs::rename(&made, path);
        } else {
            tracing::debug!("files changed while {path} was made; not keeping it");
            let _ = std::fs::remove_file(&made);
        }
    }
}

/// Whether the worker's files still have the key of `init`'s dedicated
/// snapshot (none changed since it was computed).
pub fn still_keyed(init: &WorkerInit) -> bool {
    let (Some(dedicated), Some(baseline)) = (&init.snapshot_path, &init.baseline_snapshot_path)
    else {
        return false;
    };
    let dir = Path::new(baseline).parent().unwrap_or(Path::new("."));
    paths_for(dir, init).dedicated == Path::new(dedicated)
}

/// Marks an existing snapshot as just used, so that pruning keeps it.
fn mark_used(path: &Path) {
    if let Ok(file) = std::fs::File::options().write(true).open(path) {
        let _ = file.set_modified(std::time::SystemTime::now());
    }
}

/// Most files looked at per folder tree; beyond it the key stops changing.
const MAX_FILES: usize = 50_000;

/// The two snapshots of a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotPaths {
    /// The dedicated snapshot: after the worker's own imports.
    pub dedicated: PathBuf,
    /// The baseline snapshot: Pyodide, the SDK, pyflare's glue and
    /// `python_modules/` imported, none of the worker's own code.
    pub baseline: PathBuf,
    /// The packages snapshot: the baseline with the modules of
    /// `python_modules/` the worker imports imported too (keyed as the
    /// baseline is); only for a worker with `python_modules/`.
    pub packages: Option<PathBuf>,
}

/// The snapshots for `init`, from one walk of its folders, and marks those
/// that exist as just used.
pub fn paths_for(dir: &Path, init: &WorkerInit) -> SnapshotPaths {
    let mut digests = FileDigests::load(dir);
    let base = baseline_hasher(init, &mut digests);
    let mut hasher = base.clone();
    hasher.update(init.main_module.as_bytes());
    hash_tree(&mut hasher, Path::new(&init.module_root), &mut digests);
    digests.save();
    let baseline = finish(dir, base, "base.snap");
    let packages = init.python_modules_dir.is_some().then(|| {
        baseline
            .with_extension("")
            .with_extension(PACKAGES_EXTENSION)
    });
    let paths = SnapshotPaths {
        dedicated: finish(dir, hasher, "snap"),
        baseline,
        packages,
    };
    for path in [
        Some(&paths.dedicated),
        Some(&paths.baseline),
        paths.packages.as_ref(),
    ]
    .into_iter()
    .flatten()
    {
        mark_used(path);
    }
    paths
}

/// The extension of a packages snapshot (`<baseline key>.pkgs.snap`).
const PACKAGES_EXTENSION: &str = "pkgs.snap";

/// The file beside a packages snapshot listing the modules it holds, one
/// per line (written once the snapshot is kept).
pub fn packages_list_path(snapshot: &Path) -> PathBuf {
    snapshot.with_extension("snap.imports")
}

/// The modules the packages snapshot at `snapshot` holds, if it exists.
pub fn packages_made(snapshot: &Path) -> Option<Vec<String>> {
    if !snapshot.exists() {
        return None;
    }
    let text = std::fs::read_to_string(packages_list_path(snapshot)).ok()?;
    Some(text.lines().map(str::to_owned).collect())
}

fn finish(dir: &Path, hasher: Sha256, extension: &str) -> PathBuf {
    let digest = hasher.finalize();
    let key = hex::encode(&digest[..16]);
    dir.join(format!("{key}.{extension}"))
}

/// What the memory of a worker's interpreter depends on. The project's own
/// folders count by their files' relative paths and contents, not by where
/// they are or when they were written (the isolate sees them at fixed
/// paths), so a fresh clone or a copy of a project finds the snapshot made
/// from identical files.
fn baseline_hasher(init: &WorkerInit, digests: &mut FileDigests) -> Sha256 {
    let mut hasher = Sha256::new();
    for part in [
        "pyflare-snapshot-v3",
        PYODIDE_VERSION,
        SDK_VERSION,
        &init.pyodide_dir,
        &init.sdk_dir,
        // Named by the digest of every host file (JavaScript and Python):
        // a new pyflare makes new snapshots, and retries any it refused.
        &init.host_python_dir,
        &init.compatibility_date,
    ] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    for flag in &init.compatibility_flags {
        hasher.update(flag.as_bytes());
        hasher.update([0]);
    }
    hash_tree(&mut hasher, Path::new(&init.host_python_dir), digests);
    if let Some(dir) = &init.python_modules_dir {
        hasher.update(b"python_modules\0");
        hash_tree(&mut hasher, Path::new(dir), digests);
    }
    hasher
}

/// Adds every file's relative path and the digest of its content.
fn hash_tree(hasher: &mut Sha256, root: &Path, digests: &mut FileDigests) {
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
                files.push((entry.path(), meta));
            }
        }
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    for (path, meta) in files {
        let relative = path.strip_prefix(root).unwrap_or(&path);
        hasher.update(relative.to_string_lossy().as_bytes());
        hasher.update([0]);
        hasher.update(digests.of(&path, &meta));
    }
}

/// File name of the remembered file digests, in the snapshot folder.
const DIGESTS_FILE: &str = "file-digests.tsv";
/// Most digests remembered; past it, those not looked at by this start go.
const MAX_DIGESTS: usize = 200_000;

/// Digests of file contents, remembered by path, size and modification
/// time so that a start reads only the files that changed since the last.
struct FileDigests {
    path: PathBuf,
    known: HashMap<PathBuf, (u64, u128, String)>,
    used: HashSet<PathBuf>,
    changed: bool,
}

impl FileDigests {
    fn load(dir: &Path) -> Self {
        let path = dir.join(DIGESTS_FILE);
        let known = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let mut fields = line.splitn(4, '\t');
                let digest = fields.next()?.to_owned();
                let len = fields.next()?.parse().ok()?;
                let modified = fields.next()?.parse().ok()?;
                Some((PathBuf::from(fields.next()?), (len, modified, digest)))
            })
            .collect();
        Self {
            path,
            known,
            used: HashSet::new(),
            changed: false,
        }
    }

    fn of(&mut self, path: &Path, meta: &std::fs::Metadata) -> [u8; 32] {
        let modified_at = meta.modified().ok();
        let modified = modified_at
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        self.used.insert(path.to_path_buf());
        if let Some((len, when, digest)) = self.known.get(path)
            && *len == meta.len()
            && *when == modified
            && let Ok(bytes) = <[u8; 32]>::try_from(hex::decode(digest).unwrap_or_default())
        {
            return bytes;
        }
        // An unreadable file counts by its size alone.
        let bytes: [u8; 32] = match std::fs::read(path) {
            Ok(content) => Sha256::digest(&content).into(),
            Err(_) => Sha256::digest(meta.len().to_le_bytes()).into(),
        };
        // A file written in the last seconds may change again within its
        // timestamp's granularity, its size kept: its digest is not
        // remembered until it has settled.
        let settled = modified_at
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age.as_secs() >= 2);
        if settled {
            self.known.insert(
                path.to_path_buf(),
                (meta.len(), modified, hex::encode(bytes)),
            );
            self.changed = true;
        }
        bytes
    }

    /// Writes the digests back (whole, through a temporary file); a failure
    /// only costs the next start a re-read.
    fn save(mut self) {
        if !self.changed || self.path.parent().is_none_or(|dir| !dir.is_dir()) {
            return;
        }
        if self.known.len() > MAX_DIGESTS {
            let used = std::mem::take(&mut self.used);
            self.known.retain(|path, _| used.contains(path));
        }
        let mut text = String::new();
        for (path, (len, modified, digest)) in &self.known {
            let Some(path) = path.to_str().filter(|p| !p.contains(['\t', '\n'])) else {
                continue;
            };
            text.push_str(&format!("{digest}\t{len}\t{modified}\t{path}\n"));
        }
        crate::runtime::replace_file(&self.path, &text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path_for(dir: &Path, init: &WorkerInit) -> PathBuf {
        paths_for(dir, init).dedicated
    }

    fn baseline_path_for(dir: &Path, init: &WorkerInit) -> PathBuf {
        paths_for(dir, init).baseline
    }

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
            packages_snapshot_path: None,
            packages: Vec::new(),
            dylibs: Vec::new(),
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

    #[test]
    fn prune_keeps_the_recently_used_within_the_bound_and_the_newest_of_each_kind() {
        let dir = tempfile::tempdir().unwrap();
        let now = std::time::SystemTime::now();
        let write = |name: &str, age_s: u64| {
            let path = dir.path().join(name);
            std::fs::write(&path, vec![0u8; 1000]).unwrap();
            let file = std::fs::File::options().write(true).open(&path).unwrap();
            file.set_modified(now - std::time::Duration::from_secs(age_s))
                .unwrap();
            path
        };
        let old_base = write("a.base.snap", 500);
        let new_base = write("b.base.snap", 400);
        let used = write("c.snap", 300);
        let older = write("d.snap", 200);
        let newest = write("e.snap", 100);
        std::fs::write(dir.path().join("d.snap.nosnap"), "x").unwrap();
        // `c` was just used by a start.
        mark_used(&used);
        prune(dir.path(), 2500);
        let left: Vec<_> = [&old_base, &new_base, &used, &older, &newest]
            .iter()
            .map(|p| p.exists())
            .collect();
        // Newest first: c (used), e, d pass the bound; b stays as the
        // newest baseline.
        assert_eq!(left, [false, true, true, false, true]);
        assert!(!dir.path().join("d.snap.nosnap").exists());
        // A tiny bound still keeps the newest of each kind.
        prune(dir.path(), 0);
        assert!(new_base.exists() && used.exists() && !newest.exists());
    }

    #[test]
    fn a_snapshot_made_while_the_files_changed_is_not_kept() {
        let snapshots = tempfile::tempdir().unwrap();
        let project = tempfile::tempdir().unwrap();
        std::fs::write(project.path().join("entry.py"), "v = 1\n").unwrap();
        let keyed = |root: &Path| {
            let mut init = init(root);
            let path = |p: PathBuf| Some(p.to_string_lossy().into_owned());
            init.snapshot_path = path(path_for(snapshots.path(), &init));
            init.baseline_snapshot_path = path(baseline_path_for(snapshots.path(), &init));
            init
        };
        let made = |init: &WorkerInit| {
            for path in [&init.snapshot_path, &init.baseline_snapshot_path] {
                std::fs::write(format!("{}.made", path.as_ref().unwrap()), "snapshot").unwrap();
            }
        };
        let exists = |path: &Option<String>| Path::new(path.as_ref().unwrap()).exists();
        let note = |init: &WorkerInit, suffix: &str| {
            format!("{}.nosnap{suffix}", init.snapshot_path.as_ref().unwrap())
        };
        // Unchanged files: both are kept, as is a maker's refusal note.
        let init_one = keyed(project.path());
        made(&init_one);
        std::fs::write(note(&init_one, ".made"), "refused\n").unwrap();
        keep_made(&init_one);
        assert!(exists(&init_one.snapshot_path) && exists(&init_one.baseline_snapshot_path));
        assert!(Path::new(&note(&init_one, "")).exists());
        // A save while the maker imported the files: the dedicated snapshot
        // is dropped, the baseline (no worker files in it) kept.
        std::fs::write(project.path().join("entry.py"), "v = 2\n").unwrap();
        let init_two = keyed(project.path());
        std::fs::remove_file(init_two.baseline_snapshot_path.as_ref().unwrap()).unwrap();
        std::fs::write(project.path().join("entry.py"), "v = 1\n").unwrap();
        std::fs::write(project.path().join("entry.py"), "v = 3\n").unwrap();
        made(&init_two);
        std::fs::write(note(&init_two, ".made"), "refused\n").unwrap();
        keep_made(&init_two);
        assert!(!exists(&init_two.snapshot_path));
        // Nor its refusal note: the refusal may be the newer code's.
        assert!(!Path::new(&note(&init_two, "")).exists());
        assert!(!Path::new(&note(&init_two, ".made")).exists());
        assert!(
            !Path::new(&format!(
                "{}.made",
                init_two.snapshot_path.as_ref().unwrap()
            ))
            .exists()
        );
        assert!(exists(&init_two.baseline_snapshot_path));
    }

    #[test]
    fn snapshot_key_is_the_files_contents_not_where_or_when() {
        let snapshots = tempfile::tempdir().unwrap();
        let one = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(one.path().join("pkg")).unwrap();
        std::fs::write(one.path().join("entry.py"), "import pkg\n").unwrap();
        std::fs::write(one.path().join("pkg/__init__.py"), "x = 1\n").unwrap();
        let key = path_for(snapshots.path(), &init(one.path()));
        // A copy elsewhere, written later (a fresh clone): the same key.
        let two = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(two.path().join("pkg")).unwrap();
        std::fs::write(two.path().join("pkg/__init__.py"), "x = 1\n").unwrap();
        std::fs::write(two.path().join("entry.py"), "import pkg\n").unwrap();
        assert_eq!(key, path_for(snapshots.path(), &init(two.path())));
        // Same size, other content: another key, though the digest of the
        // old content is remembered.
        std::fs::write(two.path().join("pkg/__init__.py"), "x = 2\n").unwrap();
        assert_ne!(key, path_for(snapshots.path(), &init(two.path())));
        // A file's name counts as well as its content.
        std::fs::rename(two.path().join("pkg"), two.path().join("lib")).unwrap();
        std::fs::write(two.path().join("lib/__init__.py"), "x = 1\n").unwrap();
        assert_ne!(key, path_for(snapshots.path(), &init(two.path())));
    }
}
