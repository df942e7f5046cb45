//! `TestWorker`: runs the built `pyflare` binary on a fixture and waits for
//! its `Ready on http://...` line, as tools driving `wrangler dev` do.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The `pyflare` binary next to this test binary (`target/<profile>/pyflare`).
pub(crate) fn pyflare_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("PYFLARE_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>");
    let bin = profile_dir.join("pyflare");
    assert!(
        bin.is_file(),
        "{} is missing: build it first with `cargo build -p pyflare` (or set PYFLARE_BIN)",
        bin.display()
    );
    bin
}

pub(crate) fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// A copy of a fixture in a temporary folder, for tests that edit it.
pub(crate) fn copy_fixture(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&fixture(name), dir.path());
    dir
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A running `pyflare dev`.
pub(crate) struct TestWorker {
    child: Child,
    pub(crate) base: String,
    output: Arc<Mutex<String>>,
    _state: tempfile::TempDir,
}

impl TestWorker {
    pub(crate) async fn start(fixture_name: &str) -> Self {
        Self::start_with(fixture_name, &[]).await
    }

    pub(crate) async fn start_with(fixture_name: &str, args: &[&str]) -> Self {
        Self::start_in(fixture_name, tempfile::tempdir().unwrap(), args).await
    }

    /// Starts pyflare with its state in `state` (reuse it to test persistence).
    pub(crate) async fn start_in(
        fixture_name: &str,
        state: tempfile::TempDir,
        args: &[&str],
    ) -> Self {
        Self::spawn(&fixture(fixture_name), state, args, &[]).await
    }

    /// Starts pyflare on any project folder, with extra environment.
    pub(crate) async fn spawn(
        project: &Path,
        state: tempfile::TempDir,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> Self {
        let mut child = Command::new(pyflare_bin())
            .arg("dev")
            .arg(project)
            .envs(envs.iter().copied())
            .args(["--port", "0", "--persist-to"])
            .arg(state.path())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start pyflare");
        let output = Arc::new(Mutex::new(String::new()));
        let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel();
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let output = output.clone();
            let ready_tx = ready_tx.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(pipe).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(url) = line.strip_prefix("Ready on ") {
                        let _ = ready_tx.send(url.trim().to_owned());
                    }
                    let mut out = output.lock().unwrap();
                    out.push_str(&line);
                    out.push('\n');
                }
            });
        }
        // Only the readers send: a pyflare that exits before it is ready
        // fails the test at once rather than after the timeout.
        drop(ready_tx);
        let base = tokio::time::timeout(Duration::from_secs(120), ready_rx.recv())
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("pyflare never became ready:\n{}", output.lock().unwrap()));
        Self {
            child,
            base,
            output,
            _state: state,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub(crate) fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap()
    }

    pub(crate) async fn get(&self, path: &str) -> reqwest::Response {
        Self::client().get(self.url(path)).send().await.unwrap()
    }

    /// Everything pyflare printed so far (stdout and stderr).
    pub(crate) fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Waits until the output contains `needle`.
    pub(crate) async fn wait_for_output(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.output().contains(needle) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// Stops pyflare with SIGKILL and hands back its state folder.
    pub(crate) async fn kill_keep_state(mut self) -> tempfile::TempDir {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        // Let the host notice the closed socket and exit.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let state = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self._state, state)
    }

    /// POSTs to one of pyflare's internal routes.
    pub(crate) async fn advance_clock(&self, seconds: u64) {
        let res = Self::client()
            .post(self.url(&format!("/cdn-cgi/pyflare/clock/advance?seconds={seconds}")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id().expect("pyflare is running")
    }

    /// Sends SIGTERM and waits for pyflare to exit.
    pub(crate) async fn terminate(&mut self) -> std::process::ExitStatus {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("pyflare exits after SIGTERM")
            .unwrap()
    }
}

/// Runs the `pyflare` binary to completion: exit code, stdout, stderr.
pub(crate) fn pyflare(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(pyflare_bin())
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `pyflare dev` on a project made of `files` until it exits (for
/// start-up errors): exit code, and stderr with the folder shown as `DIR`.
pub(crate) fn dev_in(files: &[(&str, &str)], args: &[&str]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let out = std::process::Command::new(pyflare_bin())
        .arg("dev")
        .arg(dir.path())
        .args(["--port", "0"])
        .args(args)
        .output()
        .unwrap();
    let stderr =
        String::from_utf8_lossy(&out.stderr).replace(&dir.path().display().to_string(), "DIR");
    (out.status.code().unwrap_or(-1), stderr)
}

/// Direct children of `pid` (Linux /proc).
pub(crate) fn children(pid: u32) -> Vec<u32> {
    let mut out = vec![];
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            out.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    out
}

/// Whether a process exists and is not a zombie.
pub(crate) fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Peak resident memory of a process, in KiB.
pub(crate) fn peak_rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmHWM:")
}

/// Makes process `pid`'s peak resident memory (`VmHWM`) its present one, so
/// that a later `peak_rss_kib` sees only what came after.
pub(crate) fn reset_peak_rss(pid: u32) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset VmHWM");
}

/// Resident memory of process `pid` now, in KiB (0 when unknown).
pub(crate) fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
