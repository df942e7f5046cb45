//! `pyflare sync`: installs the `[project].dependencies` of `pyproject.toml`
//! into `python_modules/` for Pyodide, as `pywrangler sync` does: pure
//! Python wheels and `pyemscripten_2026_0_wasm32` wheels (Pyodide 314,
//! Python 3.14) from PyPI, plus Cloudflare's `workers-runtime-sdk`.
//! pip runs as pyflare's pinned version (`runtime::PIP_VERSION`), so
//! packages resolve for Python 3.14 whatever Python and pip the machine has.
//! `pyflare dev` runs it first when `pyproject.toml` is newer than the last
//! sync.

use anyhow::{Context, Result, bail};
use clap::Args;
use std::path::{Path, PathBuf};

use crate::error::Hinted;
use crate::logging;
use crate::runtime::SDK_VERSION;

mod sources;

/// The wheel platform of Pyodide 314 (PEP 783).
pub const PYODIDE_PLATFORM: &str = "pyemscripten_2026_0_wasm32";
/// Marker written into `python_modules/` after a successful sync.
pub const SYNCED_MARKER: &str = ".pyflare-synced";

/// Options of `pyflare sync`.
#[derive(Debug, Clone, Args)]
pub struct SyncArgs {
    /// Project folder holding pyproject.toml.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
}

/// Runs `pyflare sync`.
pub fn run(args: &SyncArgs) -> Result<()> {
    let pyproject = args.dir.join("pyproject.toml");
    if !pyproject.is_file() {
        bail!(Hinted::new(
            format!("no pyproject.toml in {}", args.dir.display()),
            "list the worker's packages under [project] dependencies in pyproject.toml"
        ));
    }
    sync(&args.dir)
}

/// Whether `python_modules/` is older than `pyproject.toml`.
pub fn needed(dir: &Path) -> bool {
    let Ok(project) = std::fs::metadata(dir.join("pyproject.toml")).and_then(|m| m.modified())
    else {
        return false;
    };
    let marker = dir.join("python_modules").join(SYNCED_MARKER);
    match std::fs::metadata(marker).and_then(|m| m.modified()) {
        Ok(synced) => project > synced,
        Err(_) => true,
    }
}

/// The dependencies listed in `pyproject.toml`.
pub fn dependencies(pyproject: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(pyproject)
        .with_context(|| format!("cannot read {}", pyproject.display()))?;
    let value: toml::Value = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: {}", pyproject.display(), e.message()))?;
    let Some(list) = value.get("project").and_then(|p| p.get("dependencies")) else {
        return Ok(vec![]);
    };
    let list = list.as_array().ok_or_else(|| {
        anyhow::anyhow!(
            "{}: `project.dependencies` must be a list of strings",
            pyproject.display()
        )
    })?;
    list.iter()
        .map(|item| {
            item.as_str().map(str::to_owned).ok_or_else(|| {
                anyhow::anyhow!(
                    "{}: `project.dependencies` must be a list of strings",
                    pyproject.display()
                )
            })
        })
        .collect()
}

/// Installs the dependencies into a fresh folder, then swaps it in. A
/// package PyPI has no Pyodide wheel of is looked for in Pyodide's package
/// index, then built pure from its sdist (see `sources`), and pip runs
/// again with what was found.
pub fn sync(dir: &Path) -> Result<()> {
    let mut deps = dependencies(&dir.join("pyproject.toml"))?;
    if !deps
        .iter()
        .any(|d| requirement_name(d) == "workers-runtime-sdk")
    {
        deps.push(format!("workers-runtime-sdk=={SDK_VERSION}"));
    }
    logging::info(&format!(
        "syncing python_modules/ for Pyodide: {}",
        deps.join(", ")
    ));
    let staging = dir.join(".python_modules.syncing");
    let wheels = sources::wheels_dir()?;
    let mut looked_for = Vec::new();
    loop {
        let _ = std::fs::remove_dir_all(&staging);
        let output = install(&staging, &deps, &wheels)?;
        if output.status.success() {
            break;
        }
        let _ = std::fs::remove_dir_all(&staging);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let Some(requirement) = missing_distribution(&stderr) else {
            bail!(
                "pip could not install the dependencies:\n{}",
                stderr.trim_end()
            );
        };
        let name = requirement_name(&requirement);
        if looked_for.contains(&name) {
            bail!(
                "pip could not install `{name}` from the wheel pyflare found for it:\n{}",
                stderr.trim_end()
            );
        }
        looked_for.push(name.clone());
        let found = match sources::pyodide_wheel(&name, &wheels) {
            Ok(wheel) => Ok((wheel, "from Pyodide's package index".to_owned())),
            Err(from_index) => sources::pure_wheel(&requirement, &wheels)
                .map(|wheel| (wheel, format!("built pure from its sdist; {from_index}")))
                .map_err(|from_sdist| format!("{from_index}; {from_sdist}")),
        };
        match found {
            Ok((wheel, how)) => logging::info(&format!(
                "`{name}` has no Pyodide wheel on PyPI: using {} ({how})",
                wheel.file_name().unwrap_or_default().to_string_lossy()
            )),
            Err(reasons) => bail!(Hinted::new(
                format!(
                    "`{name}` has no wheel that runs in Pyodide (pure Python or {PYODIDE_PLATFORM}) on PyPI: {reasons}"
                ),
                "choose a pure-Python alternative, or a version that publishes Pyodide wheels"
            )),
        }
    }
    std::fs::write(staging.join(SYNCED_MARKER), deps.join("\n") + "\n")?;
    let target = dir.join("python_modules");
    let _ = std::fs::remove_dir_all(&target);
    std::fs::rename(&staging, &target)
        .with_context(|| format!("cannot move the packages into {}", target.display()))?;
    logging::info(&format!(
        "python_modules/ is in sync ({} requirements)",
        deps.len()
    ));
    Ok(())
}

/// One `pip install` of `deps` into `staging` for Pyodide's platform.
fn install(staging: &Path, deps: &[String], wheels: &Path) -> Result<std::process::Output> {
    crate::runtime::pinned_pip("install", "pyflare sync uses its pip to fetch wheels")?
        .args([
            "--no-compile",
            "--only-binary=:all:",
            "--platform",
            PYODIDE_PLATFORM,
            "--python-version",
            "3.14",
            "--implementation",
            "cp",
            "--abi",
            "cp314",
            "--find-links",
        ])
        .arg(wheels)
        .arg("--target")
        .arg(staging)
        .args(deps)
        .output()
        .context("cannot run pip")
}

/// The project name of a requirement string (`pkg[extra]>=1; marker`).
fn requirement_name(requirement: &str) -> String {
    requirement
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'))
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
        .replace('_', "-")
}

/// The requirement pip could not find a distribution for, from its error
/// output.
fn missing_distribution(stderr: &str) -> Option<String> {
    let line = stderr
        .lines()
        .find(|l| l.contains("No matching distribution found for"))?;
    let rest = line
        .split("No matching distribution found for")
        .nth(1)?
        .trim();
    Some(rest.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirement_names_and_pip_errors() {
        assert_eq!(
            requirement_name("FastAPI[standard]>=0.110; python_version>'3'"),
            "fastapi"
        );
        assert_eq!(
            requirement_name("workers_runtime_sdk==1.9.5"),
            "workers-runtime-sdk"
        );
        assert_eq!(
            missing_distribution(
                "ERROR: Could not find a version\nERROR: No matching distribution found for psycopg2>=2\n"
            ),
            Some("psycopg2>=2".into())
        );
    }
}
