//! Live reload and memory snapshots: a saved file is served at once, no
//! request fails during the swap, broken code shows its error until fixed,
//! and a second start restores a snapshot (a damaged one is rebuilt).

use crate::util::{TestWorker, copy_fixture};
use std::path::Path;
use std::time::{Duration, Instant};

/// Polls `/` until the body is `want`; every answer meanwhile must be 200.
async fn wait_for_body(w: &TestWorker, want: &str) {
    wait_for_body_where(w, want, |body| body == want).await;
}

/// Polls `/` until `accept` takes the body, and returns it; every answer
/// meanwhile must be 200. `what` names the awaited body in a failure.
async fn wait_for_body_where(w: &TestWorker, what: &str, accept: impl Fn(&str) -> bool) -> String {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        let res = w.get("/").await;
        assert_eq!(res.status(), 200, "a request failed during the reload");
        let body = res.text().await.unwrap();
        if accept(&body) {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never served {what:?}:\n{}", w.output());
}

/// A project in a temporary folder: a `wrangler.toml` for `name` with
/// `src/entry.py` as its main module, a `src/` folder, and `files`
/// (relative path, text).
fn project_of(name: &str, files: &[(&str, &str)]) -> tempfile::TempDir {
    let project = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(project.path().join("src")).unwrap();
    let config = format!(
        "name = \"{name}\"\nmain = \"src/entry.py\"\ncompatibility_date = \"2025-11-01\"\ncompatibility_flags = [\"python_workers\"]\n"
    );
    for (path, text) in [("wrangler.toml", config.as_str())].iter().chain(files) {
        let path = project.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    project
}

fn save(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[tokio::test]
async fn reload_serves_saved_code_without_failing_requests() {
    let project = copy_fixture("reload");
    let w = TestWorker::spawn(project.path(), tempfile::tempdir().unwrap(), &[], &[]).await;
    assert_eq!(w.get("/").await.text().await.unwrap(), "v1 one");

    // An in-flight request finishes on the old code.
    let slow = tokio::spawn({
        let url = w.url("/slow");
        async move {
            TestWorker::client()
                .get(url)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    save(&project.path().join("src/version.py"), "VERSION = \"v2\"\n");
    wait_for_body(&w, "v2 one").await;
    assert_eq!(slow.await.unwrap(), "v1 one");

    // Config changes reload too.
    let config = project.path().join("wrangler.jsonc");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("\"one\"", "\"two\"");
    save(&config, &text);
    wait_for_body(&w, "v2 two").await;
    // Later edits reload from a prepared standby host.
    for n in 3..=4 {
        save(
            &project.path().join("src/version.py"),
            &format!("VERSION = \"v{n}\"\n"),
        );
        wait_for_body(&w, &format!("v{n} two")).await;
    }
    assert!(
        w.output().contains("reloaded the worker in"),
        "{}",
        w.output()
    );
}

#[tokio::test]
async fn reload_shows_a_syntax_error_until_it_is_fixed() {
    let project = copy_fixture("reload");
    let w = TestWorker::spawn(project.path(), tempfile::tempdir().unwrap(), &[], &[]).await;
    assert_eq!(w.get("/").await.text().await.unwrap(), "v1 one");
    save(&project.path().join("src/version.py"), "VERSION = (\n");
    let started = Instant::now();
    let text = loop {
        let res = w.get("/").await;
        if res.status() == 500 {
            break res.text().await.unwrap();
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{}",
            w.output()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(text.starts_with("Worker failed to load"), "{text}");
    assert!(text.contains("version.py\", line 1"), "{text}");
    assert!(text.contains("SyntaxError: '(' was never closed"), "{text}");
    assert!(w.output().contains("SyntaxError: '(' was never closed"));
    // The health route says so (container health checks read it).
    let health = w.get("/cdn-cgi/pyflare/health").await;
    assert_eq!(health.status(), 503);
    let health: serde_json::Value = health.json().await.unwrap();
    assert_eq!(health["status"], "failed");
    assert!(
        health["error"].as_str().unwrap().contains("SyntaxError"),
        "{health}"
    );

    // Fixing it recovers without restarting pyflare (the error page shows
    // until pyflare has seen the save).
    save(
        &project.path().join("src/version.py"),
        "VERSION = \"fixed\"\n",
    );
    let started = Instant::now();
    while w.get("/").await.text().await.unwrap() != "fixed one" {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{}",
            w.output()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let health = w.get("/cdn-cgi/pyflare/health").await;
    assert_eq!(health.status(), 200);
    assert_eq!(
        health.json::<serde_json::Value>().await.unwrap(),
        serde_json::json!({"status": "ready"})
    );
}

#[tokio::test]
async fn reload_off_with_no_reload() {
    let project = copy_fixture("reload");
    let w = TestWorker::spawn(
        project.path(),
        tempfile::tempdir().unwrap(),
        &["--no-reload"],
        &[],
    )
    .await;
    save(&project.path().join("src/version.py"), "VERSION = \"v2\"\n");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(w.get("/").await.text().await.unwrap(), "v1 one");
}

#[tokio::test]
async fn snapshot_second_start_restores_and_a_damaged_one_is_rebuilt() {
    let project = copy_fixture("reload");
    let snapshots = tempfile::tempdir().unwrap();
    let envs = [("PYFLARE_SNAPSHOT_DIR", snapshots.path().to_str().unwrap())];
    let start = || {
        TestWorker::spawn(
            project.path(),
            tempfile::tempdir().unwrap(),
            &["--no-reload"],
            &envs,
        )
    };

    let w = start().await;
    assert!(w.output().contains("without a snapshot"), "{}", w.output());
    assert_eq!(w.get("/").await.text().await.unwrap(), "v1 one");
    // Snapshots are written in the background once the worker serves.
    let dedicated = wait_for_file(&w, snapshots.path(), ".snap", ".base.snap").await;
    wait_for_file(&w, snapshots.path(), ".base.snap", "\u{0}").await;
    drop(w);

    let w = start().await;
    assert!(w.output().contains(", from a snapshot"), "{}", w.output());
    assert_eq!(w.get("/").await.text().await.unwrap(), "v1 one");
    let drawn = w.get("/random").await.text().await.unwrap();
    drop(w);
    // Each restore reseeds the random generator.
    let w = start().await;
    assert!(w.output().contains(", from a snapshot"), "{}", w.output());
    assert_ne!(w.get("/random").await.text().await.unwrap(), drawn);
    drop(w);
    // A copy of the project elsewhere, its files written just now (a fresh
    // clone): the snapshot made from identical files serves it.
    let clone = copy_fixture("reload");
    let w = TestWorker::spawn(
        clone.path(),
        tempfile::tempdir().unwrap(),
        &["--no-reload"],
        &envs,
    )
    .await;
    assert!(w.output().contains(", from a snapshot"), "{}", w.output());
    drop(w);

    // Damage the snapshot: the start notices, serves, and rebuilds it.
    let mut bytes = std::fs::read(&dedicated).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&dedicated, &bytes).unwrap();
    let w = start().await;
    assert!(
        w.output()
            .contains("ignoring a damaged snapshot (checksum mismatch)"),
        "{}",
        w.output()
    );
    assert!(
        w.output().contains("from the baseline snapshot"),
        "{}",
        w.output()
    );
    assert_eq!(w.get("/").await.text().await.unwrap(), "v1 one");
    let rebuilt = wait_for_file(&w, snapshots.path(), ".snap", ".base.snap").await;
    drop(w);
    assert_ne!(std::fs::read(rebuilt).unwrap(), bytes);

    // A changed file gives a new snapshot key: the old one is not used.
    save(&project.path().join("src/version.py"), "VERSION = \"v9\"\n");
    let w = start().await;
    assert!(
        w.output().contains("from the baseline snapshot"),
        "{}",
        w.output()
    );
    assert_eq!(w.get("/").await.text().await.unwrap(), "v9 one");
}

/// Waits until a file ending in `suffix` (but not `not_suffix`) exists.
async fn wait_for_file(
    w: &TestWorker,
    dir: &Path,
    suffix: &str,
    not_suffix: &str,
) -> std::path::PathBuf {
    wait_for_file_where(w, dir, suffix, |name| {
        name.ends_with(suffix) && !name.ends_with(not_suffix)
    })
    .await
}

/// Asserts `w` started `origin` (as its log says) and answers a body
/// starting with `want`; returns the body.
async fn started_from(w: &TestWorker, origin: &str, want: &str) -> String {
    assert!(w.output().contains(origin), "{}", w.output());
    let body = w.get("/").await.text().await.unwrap();
    assert!(body.starts_with(want), "{body}");
    body
}

/// Whether `name` is a dedicated snapshot's (neither baseline nor packages).
fn is_dedicated(name: &str) -> bool {
    name.ends_with(".snap") && !name.ends_with(".pkgs.snap") && !name.ends_with(".base.snap")
}

/// Waits for a dedicated snapshot in `dir`.
async fn wait_for_dedicated(w: &TestWorker, dir: &Path) -> std::path::PathBuf {
    wait_for_file_where(w, dir, "dedicated snapshot", is_dedicated).await
}

/// Asserts no snapshot in `dir` was refused (a `.nosnap` note).
fn assert_nothing_refused(w: &TestWorker, dir: &Path) {
    let refused: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|path| path.to_string_lossy().ends_with(".nosnap"))
        .map(|path| std::fs::read_to_string(&path).unwrap_or_default())
        .collect();
    assert!(refused.is_empty(), "{refused:?}\n{}", w.output());
}

/// Waits for a file in `dir` whose name `accept`s, for 30 s at most.
async fn wait_for_file_where(
    w: &TestWorker,
    dir: &Path,
    what: &str,
    accept: impl Fn(&str) -> bool,
) -> std::path::PathBuf {
    for _ in 0..600 {
        let found = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .is_some_and(|name| accept(&name.to_string_lossy()))
            });
        if let Some(path) = found {
            return path;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no {what} file in {}:\n{}", dir.display(), w.output());
}

#[tokio::test]
async fn sync_runs_before_dev_when_pyproject_is_newer() {
    let project = copy_fixture("packages");
    let w = TestWorker::spawn(
        project.path(),
        tempfile::tempdir().unwrap(),
        &["--no-reload"],
        &[],
    )
    .await;
    assert!(
        w.output()
            .contains("syncing python_modules/ for Pyodide: six"),
        "{}",
        w.output()
    );
    let body = w.get("/").await.text().await.unwrap();
    assert!(body.starts_with("six 1."), "{body}");
    assert!(
        body.ends_with("from /session/python_modules/six.py"),
        "{body}"
    );
    drop(w);
    // Already in sync: the next start does not sync again.
    let w = TestWorker::spawn(
        project.path(),
        tempfile::tempdir().unwrap(),
        &["--no-reload"],
        &[],
    )
    .await;
    assert!(!w.output().contains("syncing"), "{}", w.output());
}

#[tokio::test]
async fn snapshot_of_a_worker_whose_imports_grew_memory_restores() {
    // Imports that leave Pyodide's memory larger than a fresh instance's
    // (a package-heavy worker's, as Django's) make a larger snapshot, which
    // must still fit when it is restored.
    let project = project_of(
        "big",
        &[(
            "src/entry.py",
            "import hashlib\nfrom workers import Response, WorkerEntrypoint\n\nDATA = bytes(range(256)) * (128 * 1024)\n\nclass Default(WorkerEntrypoint):\n    async def fetch(self, request):\n        return Response(f\"{len(DATA)} {hashlib.sha256(DATA).hexdigest()[:12]}\")\n",
        )],
    );
    let snapshots = tempfile::tempdir().unwrap();
    let envs = [("PYFLARE_SNAPSHOT_DIR", snapshots.path().to_str().unwrap())];
    let start = || {
        TestWorker::spawn(
            project.path(),
            tempfile::tempdir().unwrap(),
            &["--no-reload"],
            &envs,
        )
    };
    let w = start().await;
    let want = w.get("/").await.text().await.unwrap();
    assert!(want.starts_with("33554432 "), "{want}");
    wait_for_file(&w, snapshots.path(), ".snap", ".base.snap").await;
    drop(w);
    let w = start().await;
    assert!(w.output().contains(", from a snapshot"), "{}", w.output());
    assert_eq!(w.get("/").await.text().await.unwrap(), want);
    assert_nothing_refused(&w, snapshots.path());
}

#[tokio::test]
async fn reload_restores_the_packages_the_worker_imports_from_their_snapshot() {
    // A package that stamps the time it was imported: a host restored from
    // the packages snapshot has the stamp of the snapshot, not its own.
    let project = project_of(
        "stamped",
        &[(
            "python_modules/stamp/__init__.py",
            "import time\n\nSTAMP = time.time_ns()\n",
        )],
    );
    let entry = |version: u32| {
        format!(
            "import stamp\nfrom workers import Response, WorkerEntrypoint\n\nclass Default(WorkerEntrypoint):\n    async def fetch(self, request):\n        return Response(f\"v{version} {{stamp.STAMP}}\")\n"
        )
    };
    save(&project.path().join("src/entry.py"), &entry(1));
    let snapshots = tempfile::tempdir().unwrap();
    let envs = [("PYFLARE_SNAPSHOT_DIR", snapshots.path().to_str().unwrap())];
    let w = TestWorker::spawn(project.path(), tempfile::tempdir().unwrap(), &[], &envs).await;
    let stamp_of = |body: String| body.split_once(' ').unwrap().1.to_owned();
    let fresh = stamp_of(w.get("/").await.text().await.unwrap());

    // The snapshot maker learns the worker's packages and snapshots them.
    let packages = wait_for_file(&w, snapshots.path(), ".pkgs.snap", "\u{0}").await;
    let list = std::fs::read_to_string(packages.with_extension("snap.imports")).unwrap();
    assert!(list.lines().any(|line| line == "stamp"), "{list}");

    let mut stamps = Vec::new();
    for version in 2..=3 {
        save(&project.path().join("src/entry.py"), &entry(version));
        let want = format!("v{version} ");
        let body = wait_for_body_where(&w, &want, |body| body.starts_with(&want)).await;
        stamps.push(stamp_of(body));
    }
    // Both reloads imported only the worker's own module.
    assert_eq!(stamps[0], stamps[1], "{}", w.output());
    assert_ne!(stamps[0], fresh, "{}", w.output());
}

#[tokio::test]
async fn native_extension_modules_are_restored_from_snapshots() {
    // pydantic-core and jiter are Rust extension modules (`.so` files):
    // their code and their functions' table slots live outside the memory
    // a snapshot copies.
    let project = project_of(
        "native",
        &[(
            "pyproject.toml",
            "[project]\nname = \"native\"\nversion = \"0.1.0\"\ndependencies = [\"pydantic-core\", \"jiter\"]\n",
        )],
    );
    let entry = |version: u32, jiter: bool| {
        let (import, extra) = if jiter {
            ("import jiter\n", "{jiter.from_json(b'[7]')[0]}")
        } else {
            ("", "-")
        };
        format!(
            "import time\n{import}import pydantic_core\nfrom pydantic_core import core_schema\nfrom workers import Response, WorkerEntrypoint\n\nSTAMP = time.time_ns()\nNUMBER = pydantic_core.SchemaValidator(core_schema.int_schema(gt=0))\n\nclass Default(WorkerEntrypoint):\n    async def fetch(self, request):\n        try:\n            NUMBER.validate_python('-1')\n            refused = 'no'\n        except pydantic_core.ValidationError as e:\n            refused = e.errors()[0]['type']\n        return Response(f\"v{version} {{NUMBER.validate_python('41') + 1}} {{refused}} {extra} {{STAMP}}\")\n"
        )
    };
    save(&project.path().join("src/entry.py"), &entry(1, false));
    let snapshots = tempfile::tempdir().unwrap();
    let envs = [("PYFLARE_SNAPSHOT_DIR", snapshots.path().to_str().unwrap())];
    let start = || TestWorker::spawn(project.path(), tempfile::tempdir().unwrap(), &[], &envs);
    let stamp_of = |body: &str| body.rsplit_once(' ').unwrap().1.to_owned();

    // The first start imports pydantic-core afresh; two makers then take
    // the dedicated and the packages snapshot with it loaded before start.
    let w = start().await;
    let fresh = w.get("/").await.text().await.unwrap();
    assert!(fresh.starts_with("v1 42 greater_than - "), "{fresh}");
    wait_for_file(&w, snapshots.path(), ".pkgs.snap", "\u{0}").await;
    let first = wait_for_dedicated(&w, snapshots.path()).await;
    drop(w);

    // A restart restores the dedicated snapshot: the module-level stamp is
    // the maker's, the same for every start, and the native code runs.
    let mut stamps = Vec::new();
    for _ in 0..2 {
        let w = start().await;
        let body = started_from(&w, "from a snapshot", "v1 42 greater_than - ").await;
        stamps.push(stamp_of(&body));
    }
    assert_eq!(stamps[0], stamps[1]);
    assert_ne!(stamps[0], stamp_of(&fresh));

    // Without it, a start restores the packages snapshot (pydantic-core
    // loaded) and imports only the worker; so does a reload.
    std::fs::remove_file(&first).unwrap();
    let w = start().await;
    started_from(&w, "from the packages snapshot", "v1 42 greater_than - ").await;
    save(&project.path().join("src/entry.py"), &entry(2, false));
    let body = wait_for_body_where(&w, "v2", |body| body.starts_with("v2 ")).await;
    assert!(body.starts_with("v2 42 greater_than - "), "{body}");

    // Code that loads one more native module than the packages snapshot
    // holds gets a dedicated snapshot with both, from the next start on.
    // (Any the session above made for its first code is removed, so that
    // the only one is the new code's.)
    drop(w);
    for entry in std::fs::read_dir(snapshots.path()).unwrap().flatten() {
        if is_dedicated(&entry.file_name().to_string_lossy()) {
            std::fs::remove_file(entry.path()).unwrap();
        }
    }
    save(&project.path().join("src/entry.py"), &entry(3, true));
    let w = start().await;
    started_from(&w, "from the packages snapshot", "v3 42 greater_than 7 ").await;
    wait_for_dedicated(&w, snapshots.path()).await;
    drop(w);
    let w = start().await;
    started_from(&w, "from a snapshot", "v3 42 greater_than 7 ").await;
    assert_nothing_refused(&w, snapshots.path());
}
