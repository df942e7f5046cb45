//! Where `pyflare sync` finds a package that PyPI has no Pyodide wheel of,
//! as pywrangler does: Pyodide's own package index (the wheels its
//! distribution's lock file names), then the package's pure-Python form
//! built from its sdist when its C code is an optional speed-up.
//!
//! What either source gives is kept in `<cache>/wheels/`, which every sync
//! passes to pip (`--find-links`), so a later sync needs neither again.

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Output;

use super::PYODIDE_PLATFORM;
use crate::runtime::{PYODIDE_VERSION, cache_dir, pinned_pip};

/// Environment variable naming Pyodide's package index (a folder URL with
/// the wheels its lock file names; `file://` works too).
pub(super) const INDEX_URL_VAR: &str = "PYFLARE_PYODIDE_INDEX_URL";

/// The folder of wheels fetched or built for Pyodide.
pub(super) fn wheels_dir() -> Result<PathBuf> {
    let dir = cache_dir()?.join("wheels");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// Pyodide's package index: `$PYFLARE_PYODIDE_INDEX_URL`, else the
/// distribution's own on the jsDelivr CDN.
fn index_url() -> String {
    let url = std::env::var(INDEX_URL_VAR)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| format!("https://cdn.jsdelivr.net/pyodide/v{PYODIDE_VERSION}/full/"));
    if url.ends_with('/') {
        url
    } else {
        format!("{url}/")
    }
}

/// Puts the wheel of `name` from Pyodide's package index into `wheels`;
/// the error says why there is none.
pub(super) fn pyodide_wheel(name: &str, wheels: &Path) -> Result<PathBuf, String> {
    let lock_path = cache_dir()
        .map_err(|e| e.to_string())?
        .join(format!("pyodide-{PYODIDE_VERSION}"))
        .join("node_modules/pyodide/pyodide-lock.json");
    let lock = std::fs::read_to_string(&lock_path)
        .map_err(|_| "Pyodide's lock file is not installed (run `pyflare setup`)".to_owned())?;
    let lock: serde_json::Value = serde_json::from_str(&lock)
        .map_err(|e| format!("Pyodide's lock file is unreadable: {e}"))?;
    let entry = &lock["packages"][name];
    let (Some(file_name), Some(sha256)) = (entry["file_name"].as_str(), entry["sha256"].as_str())
    else {
        return Err(format!(
            "Pyodide {PYODIDE_VERSION}'s package index has no `{name}`"
        ));
    };
    if file_name.contains('/') || !file_name.ends_with(".whl") {
        return Err(format!(
            "Pyodide's lock file names an odd file for `{name}`: {file_name}"
        ));
    }
    let kept = wheels.join(file_name);
    if digest_of(&kept).as_deref() == Some(sha256) {
        return Ok(kept);
    }
    let url = format!("{}{file_name}", index_url());
    let fetched = tempfile::tempdir_in(wheels).map_err(|e| e.to_string())?;
    let output = pinned_pip("download", "pyflare sync uses its pip to fetch wheels")
        .map_err(|e| e.to_string())?
        .args([
            "--no-deps",
            "--retries",
            "1",
            "--timeout",
            "10",
            "--only-binary=:all:",
            "--platform",
            PYODIDE_PLATFORM,
            "--python-version",
            "3.14",
            "--implementation",
            "cp",
            "--abi",
            "cp314",
            "--dest",
        ])
        .arg(fetched.path())
        .arg(&url)
        .output()
        .map_err(|e| format!("cannot run pip: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "Pyodide's package index at {} did not answer ({})",
            index_url(),
            last_line(&output)
        ));
    }
    let path = fetched.path().join(file_name);
    match digest_of(&path) {
        Some(digest) if digest == sha256 => {}
        Some(digest) => {
            return Err(format!(
                "{url} does not match Pyodide's lock file (sha256 {digest}, expected {sha256})"
            ));
        }
        None => return Err(format!("pip fetched no {file_name} from {url}")),
    }
    std::fs::rename(&path, &kept).map_err(|e| e.to_string())?;
    Ok(kept)
}

/// Builds the pure-Python wheel of `requirement` from its sdist into
/// `wheels`, with no C compiler and the switches that packages with
/// optional speed-ups read to skip them; the error says why there is none.
pub(super) fn pure_wheel(requirement: &str, wheels: &Path) -> Result<PathBuf, String> {
    let built = tempfile::tempdir_in(wheels).map_err(|e| e.to_string())?;
    let mut command = pinned_pip("wheel", "pyflare sync uses its pip to build wheels")
        .map_err(|e| e.to_string())?;
    command
        .args(["--no-deps", "--no-binary", ":all:", "--wheel-dir"])
        .arg(built.path())
        .arg(requirement);
    for (name, value) in [
        ("CC", "false"),
        ("CXX", "false"),
        ("LDSHARED", "false"),
        ("MULTIDICT_NO_EXTENSIONS", "1"),
        ("YARL_NO_EXTENSIONS", "1"),
        ("FROZENLIST_NO_EXTENSIONS", "1"),
        ("PROPCACHE_NO_EXTENSIONS", "1"),
        ("AIOHTTP_NO_EXTENSIONS", "1"),
        ("MSGPACK_PUREPYTHON", "1"),
        ("WRAPT_INSTALL_EXTENSIONS", "false"),
        ("DISABLE_SQLALCHEMY_CEXT", "1"),
    ] {
        command.env(name, value);
    }
    let output = command
        .output()
        .map_err(|e| format!("cannot run pip: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let extension = stderr.lines().find_map(|line| {
            line.trim()
                .strip_prefix("building '")?
                .split_once("' extension")
                .map(|(name, _)| name.to_owned())
        });
        return Err(match extension {
            Some(name) => format!(
                "its C extension `{name}` is not optional (its sdist does not build without it)"
            ),
            None => format!(
                "its sdist does not build as pure Python ({})",
                last_line(&output)
            ),
        });
    }
    let wheel = std::fs::read_dir(built.path())
        .map_err(|e| e.to_string())?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .find(|path| path.extension().is_some_and(|ext| ext == "whl"))
        .ok_or_else(|| "pip built no wheel from its sdist".to_owned())?;
    let file_name = wheel
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    if !file_name.ends_with("-none-any.whl") {
        return Err(format!(
            "its C code is not optional: the sdist builds a native wheel ({file_name})"
        ));
    }
    let kept = wheels.join(&file_name);
    std::fs::rename(&wheel, &kept).map_err(|e| e.to_string())?;
    Ok(kept)
}

fn digest_of(path: &Path) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    Some(hex::encode(Sha256::digest(&bytes)))
}

fn last_line(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no output")
        .trim()
        .to_owned()
}
