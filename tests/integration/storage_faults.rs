//! Storage faults through `pyflare dev` on the `storage` fixture (KV and
//! D1): a full disk (a 2 MiB tmpfs), damaged files made by the test, a
//! read-only state folder (a read-only tmpfs), and D1's write-ahead log on
//! a clean stop. Mounting needs root (as in CI); without it the tests that
//! mount print why and return.

use crate::util::{TestWorker, fixture, pyflare_bin};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A small tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str, test: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            println!("skipping {test}: mounting a tmpfs needs root (the tests run as root in CI)");
            return None;
        }
        Some(Self { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Remounts read-only (or back to read-write).
    fn remount(&self, option: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,{option}")])
            .arg(self.path())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Fills the file system with one file; returns its path.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let filler = self.path().join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 4096];
        while file.write_all(&chunk).is_ok() {}
        let _ = file.sync_all();
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// A state folder inside `root` that `TestWorker` removes when done.
fn state_in(root: &Path) -> tempfile::TempDir {
    tempfile::tempdir_in(root).unwrap()
}

async fn get(w: &TestWorker, path: &str) -> (u16, Value, Duration) {
    let started = Instant::now();
    let res = w.get(path).await;
    let status = res.status().as_u16();
    (status, res.json().await.unwrap(), started.elapsed())
}

async fn sql(w: &TestWorker, sql: &str) -> (u16, Value) {
    let res = TestWorker::client()
        .post(w.url("/d1"))
        .body(sql.to_owned())
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

/// Runs `pyflare dev` on the fixture with `--persist-to state` and expects
/// it to stop at start: its exit code and stderr.
fn dev_fails(state: &Path) -> (i32, String) {
    let mut child = Command::new(pyflare_bin())
        .arg("dev")
        .arg(fixture("storage"))
        .args(["--port", "0", "--no-reload", "--persist-to"])
        .arg(state)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("pyflare dev started on a store it should refuse");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn kv_on_a_full_disk_fails_promptly_and_works_again_once_there_is_room() {
    let Some(fs) = Tmpfs::mount("2m", "kv_on_a_full_disk") else {
        return;
    };
    let w = TestWorker::spawn(
        &fixture("storage"),
        state_in(fs.path()),
        &["--no-reload"],
        &[],
    )
    .await;
    assert_eq!(get(&w, "/kv/put?key=before&size=10").await.0, 200);
    let filler = fs.fill();
    for i in 0..3 {
        let (status, body, took) = get(&w, &format!("/kv/put?key=full{i}&size=100000")).await;
        assert_eq!(status, 500, "{body}");
        assert_eq!(
            body["message"],
            "Error: KV PUT failed: 500 Internal Server Error"
        );
        assert!(took < Duration::from_secs(3), "took {took:?}");
    }
    // A small put on a full disk fails as promptly.
    let (status, _, took) = get(&w, "/kv/put?key=small&size=1").await;
    assert_eq!(status, 500);
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert!(
        w.wait_for_output("no space left on the disk of", Duration::from_secs(5))
            .await,
        "{}",
        w.output()
    );
    // Reads still work while the disk is full.
    assert_eq!(get(&w, "/kv/get?key=before").await.1["length"], 10);

    std::fs::remove_file(filler).unwrap();
    for i in 0..3 {
        let (status, body, took) = get(&w, &format!("/kv/put?key=after{i}&size=1000")).await;
        assert_eq!(status, 200, "{body}");
        assert!(took < Duration::from_secs(3), "took {took:?}");
    }
    assert_eq!(get(&w, "/kv/get?key=after2").await.1["length"], 1000);
    assert_eq!(get(&w, "/kv/count").await.1["count"], 4);
}

#[tokio::test]
async fn d1_on_a_full_disk_fails_promptly_with_sqlite_full() {
    let Some(fs) = Tmpfs::mount("2m", "d1_on_a_full_disk") else {
        return;
    };
    let w = TestWorker::spawn(
        &fixture("storage"),
        state_in(fs.path()),
        &["--no-reload"],
        &[],
    )
    .await;
    assert_eq!(sql(&w, "CREATE TABLE t (x TEXT)").await.0, 200);
    let filler = fs.fill();
    let started = Instant::now();
    let (status, body) = sql(&w, "INSERT INTO t SELECT hex(randomblob(200000))").await;
    assert_eq!(status, 500, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("database or disk is full: SQLITE_FULL"),
        "{message}"
    );
    std::fs::remove_file(filler).unwrap();
    let (status, body) = sql(&w, "INSERT INTO t VALUES ('fits')").await;
    assert_eq!(status, 200, "{body}");
}

/// Writes 50 keys through `pyflare dev`, stops it cleanly, and hands back
/// the state folder.
async fn state_with_50_keys() -> tempfile::TempDir {
    let mut w = TestWorker::start_with("storage", &["--no-reload"]).await;
    for i in 0..50 {
        assert_eq!(
            get(&w, &format!("/kv/put?key=key{i:02}&size={}", 100 + i))
                .await
                .0,
            200
        );
    }
    assert!(w.terminate().await.success());
    w.kill_keep_state().await
}

#[tokio::test]
async fn kv_truncated_store_stops_pyflare_and_is_left_unchanged() {
    let state = state_with_50_keys().await;
    let db = state.path().join("kv/db");
    let bytes = std::fs::read(&db).unwrap();
    std::fs::write(&db, &bytes[..bytes.len() / 2]).unwrap();
    let damaged = std::fs::read(&db).unwrap();
    let (code, stderr) = dev_fails(state.path());
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("pyflare: error:"), "{stderr}");
    assert!(stderr.contains("cannot open the KV store at"), "{stderr}");
    assert!(stderr.contains("damaged"), "{stderr}");
    assert!(stderr.contains("hint: pyflare changed nothing"), "{stderr}");
    assert_eq!(
        std::fs::read(&db).unwrap(),
        damaged,
        "the damaged file was changed"
    );
}

#[tokio::test]
async fn kv_store_with_a_flipped_byte_stops_pyflare_and_is_left_unchanged() {
    let state = state_with_50_keys().await;
    let db = state.path().join("kv/db");
    let mut bytes = std::fs::read(&db).unwrap();
    let at = bytes.len() / 3;
    bytes[at] ^= 0x01;
    std::fs::write(&db, &bytes).unwrap();
    let (code, stderr) = dev_fails(state.path());
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("damaged"), "{stderr}");
    assert!(stderr.contains("hint: "), "{stderr}");
    assert_eq!(
        std::fs::read(&db).unwrap(),
        bytes,
        "the damaged file was changed"
    );
}

#[tokio::test]
async fn kv_store_survives_a_clean_restart_with_every_key() {
    let state = state_with_50_keys().await;
    let w = TestWorker::start_in("storage", state, &["--no-reload"]).await;
    assert_eq!(get(&w, "/kv/count").await.1["count"], 50);
    assert_eq!(get(&w, "/kv/get?key=key49").await.1["length"], 149);
}

#[tokio::test]
async fn d1_damaged_file_stops_pyflare_with_its_path() {
    let mut w = TestWorker::start_with("storage", &["--no-reload"]).await;
    assert_eq!(sql(&w, "CREATE TABLE t (x TEXT)").await.0, 200);
    for _ in 0..20 {
        assert_eq!(
            sql(&w, "INSERT INTO t SELECT hex(randomblob(2000))")
                .await
                .0,
            200
        );
    }
    assert!(w.terminate().await.success());
    let state = w.kill_keep_state().await;
    let file = state.path().join("d1/faults.sqlite3");
    let mut bytes = std::fs::read(&file).unwrap();
    assert!(
        bytes.len() > 3 * 4096,
        "the WAL was not checkpointed: {} bytes",
        bytes.len()
    );
    for b in &mut bytes[4096 + 8..4096 + 64] {
        *b = 0xee;
    }
    std::fs::write(&file, &bytes).unwrap();
    let (code, stderr) = dev_fails(state.path());
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("faults.sqlite3"), "{stderr}");
    assert!(stderr.contains("the file is damaged"), "{stderr}");
    assert!(stderr.contains("hint: move the file"), "{stderr}");
}

#[tokio::test]
async fn d1_sigterm_leaves_every_table_in_the_sqlite3_file_alone() {
    let mut w = TestWorker::start_with("storage", &["--no-reload"]).await;
    assert_eq!(sql(&w, "CREATE TABLE kept (x INTEGER)").await.0, 200);
    assert_eq!(sql(&w, "INSERT INTO kept VALUES (7)").await.0, 200);
    assert!(w.terminate().await.success());
    let state = w.kill_keep_state().await;
    let alone = tempfile::tempdir().unwrap();
    let copy = alone.path().join("copy.sqlite3");
    std::fs::copy(state.path().join("d1/faults.sqlite3"), &copy).unwrap();
    let out = Command::new("sqlite3")
        .arg(&copy)
        .arg("SELECT x FROM kept")
        .output();
    match out {
        Ok(out) => assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "7", "{out:?}"),
        Err(_) => {
            // No sqlite3 command: the table's name is in the file's schema page.
            let bytes = std::fs::read(&copy).unwrap();
            assert!(
                bytes.windows(4).any(|w| w == b"kept"),
                "no table in the file alone"
            );
        }
    }
}

#[tokio::test]
async fn d1_attach_and_vacuum_into_are_refused_and_names_stay_in_the_state_folder() {
    let w = TestWorker::start_with("storage", &["--no-reload"]).await;
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("escape.db");
    for statement in [
        format!("ATTACH DATABASE '{}' AS escape", target.display()),
        format!("VACUUM INTO '{}'", target.display()),
    ] {
        let (status, body) = sql(&w, &statement).await;
        assert_eq!(status, 500, "{body}");
        assert_eq!(
            body["message"],
            "Error: D1_ERROR: not authorized: SQLITE_AUTH"
        );
    }
    assert!(!target.exists());
}

#[test]
fn d1_execute_refuses_attach_and_checkpoints() {
    let state = tempfile::tempdir().unwrap();
    let dir = fixture("storage");
    let target = state.path().join("elsewhere.db");
    let args = |sql: String| -> Vec<String> {
        vec![
            "d1".into(),
            "execute".into(),
            "faults".into(),
            "--dir".into(),
            dir.display().to_string(),
            "--persist-to".into(),
            state.path().display().to_string(),
            "--command".into(),
            sql,
        ]
    };
    let run = |sql: String| {
        let out = Command::new(pyflare_bin())
            .args(args(sql))
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = run(format!("ATTACH '{}' AS other", target.display()));
    assert_ne!(code, Some(0));
    assert!(stderr.contains("not authorized: SQLITE_AUTH"), "{stderr}");
    assert!(!target.exists());
    let (code, stderr) = run("CREATE TABLE t (x); INSERT INTO t VALUES (1)".into());
    assert_eq!(code, Some(0), "{stderr}");
    // Checkpointed: the log is empty, the file alone holds the table.
    let wal = state.path().join("d1/faults.sqlite3-wal");
    assert!(std::fs::metadata(&wal).map_or(0, |m| m.len()) == 0);
}

#[tokio::test]
async fn read_only_state_folder_is_named_as_read_only() {
    let Some(fs) = Tmpfs::mount("2m", "read_only_state_folder") else {
        return;
    };
    let state = fs.path().join("state");
    std::fs::create_dir(&state).unwrap();
    fs.remount("ro");
    let (code, stderr) = dev_fails(&state);
    fs.remount("rw");
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("read-only"), "{stderr}");
    assert!(stderr.contains("--persist-to"), "{stderr}");
    assert!(!stderr.contains("damaged"), "{stderr}");
}

#[test]
fn d1_execute_on_a_read_only_state_folder_says_read_only() {
    let Some(fs) = Tmpfs::mount("2m", "d1_execute_on_a_read_only_state_folder") else {
        return;
    };
    let state = fs.path().join("state");
    std::fs::create_dir(&state).unwrap();
    fs.remount("ro");
    let out = Command::new(pyflare_bin())
        .args(["d1", "execute", "faults", "--dir"])
        .arg(fixture("storage"))
        .arg("--persist-to")
        .arg(&state)
        .args(["--command", "SELECT 1"])
        .output()
        .unwrap();
    fs.remount("rw");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("the folder is read-only"), "{stderr}");
    assert!(
        stderr.contains("hint: make the folder writable, or pass --persist-to"),
        "{stderr}"
    );
    assert!(!stderr.contains("damaged"), "{stderr}");
}
