//! The R2 scenarios of `r2.rs` on S3-compatible storage: a moto server
//! (PyPI's `moto[server]`, installed into a virtualenv under `target/` on
//! first use; the test skips with a message where it cannot be installed)
//! and `pyflare dev` with `PYFLARE_R2_<BINDING>_URL=s3://...`.

use crate::r2::*;
use crate::util::TestWorker;
use serde_json::json;

/// moto's server with one request at a time.
const SERIALIZED_MOTO: &str = "
import sys, threading
from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication, MotoRequestHandler, create_backend_app)
app = DomainDispatcherApplication(create_backend_app)
lock = threading.Lock()
def serialized(environ, start_response):
    with lock:
        return list(app(environ, start_response))
run_simple(sys.argv[1], int(sys.argv[2]), serialized, threaded=True,
           request_handler=MotoRequestHandler)
";

/// A local S3-compatible server (PyPI's `moto[server]`, installed once into
/// a virtualenv under `target/`), stopped when dropped.
struct Moto {
    child: std::process::Child,
    endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    /// Starts one, or says why it cannot (and the test skips).
    async fn start() -> Result<Self, String> {
        let target = crate::util::pyflare_bin()
            .parent()
            .and_then(|p| p.parent())
            .map(|p| p.join("moto-venv"))
            .ok_or("no target folder")?;
        let server = target.join("bin/moto_server");
        let python = target.join("bin/python");
        if !server.is_file() {
            let run = |cmd: &mut std::process::Command| -> Result<(), String> {
                let out = cmd.output().map_err(|e| e.to_string())?;
                if out.status.success() {
                    Ok(())
                } else {
                    Err(String::from_utf8_lossy(&out.stderr).into_owned())
                }
            };
            run(std::process::Command::new("python3")
                .args(["-m", "venv"])
                .arg(&target))?;
            run(std::process::Command::new(target.join("bin/pip")).args([
                "install",
                "--quiet",
                "moto[server]",
            ]))?;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        // moto checks a conditional put's precondition and stores the
        // object in two steps, on a thread per request: one lock around
        // each request makes the pair atomic, as on S3 and R2.
        let child = std::process::Command::new(&python)
            .args(["-c", SERIALIZED_MOTO, "127.0.0.1", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        let moto = Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while client().get(&moto.endpoint).send().await.is_err() {
            if std::time::Instant::now() > deadline {
                return Err("moto_server did not answer within 30 s".into());
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let created = client()
            .put(format!("{}/r2test", moto.endpoint))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !created.status().is_success() {
            return Err(format!("creating the bucket: {}", created.status()));
        }
        Ok(moto)
    }

    /// `pyflare dev` on the fixture, its buckets under `prefix` in S3.
    async fn worker(&self, prefix: &str) -> TestWorker {
        self.worker_in(prefix, tempfile::tempdir().unwrap()).await
    }

    /// The same, with its local state in `state`.
    async fn worker_in(&self, prefix: &str, state: tempfile::TempDir) -> TestWorker {
        self.worker_with(prefix, state, &[]).await
    }

    /// The same, with more settings.
    async fn worker_with(
        &self,
        prefix: &str,
        state: tempfile::TempDir,
        more: &[(&str, &str)],
    ) -> TestWorker {
        let settings = self.settings(prefix);
        let mut envs: Vec<(&str, &str)> = settings
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        envs.extend_from_slice(more);
        let fixture = crate::util::fixture("r2");
        TestWorker::spawn(&fixture, state, &[], &envs).await
    }

    /// The settings putting the fixture's buckets under `prefix`.
    fn settings(&self, prefix: &str) -> Vec<(String, String)> {
        let main = format!("s3://r2test/{prefix}");
        let other = format!("s3://r2test/{prefix}-other");
        [
            ("PYFLARE_R2_BUCKET_URL", main.as_str()),
            ("PYFLARE_R2_SAME_URL", main.as_str()),
            ("PYFLARE_R2_OTHER_URL", other.as_str()),
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ALLOW_HTTP", "true"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .to_vec()
    }

    /// The names of the S3 objects under `prefix`.
    async fn names(&self, prefix: &str) -> Vec<String> {
        let list = client()
            .get(format!("{}/r2test?prefix={prefix}/", self.endpoint))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        list.split("<Key>")
            .skip(1)
            .filter_map(|rest| rest.split_once("</Key>"))
            .map(|(name, _)| name.to_owned())
            .collect()
    }

    /// How many S3 objects are under `prefix`.
    async fn objects(&self, prefix: &str) -> usize {
        self.names(prefix).await.len()
    }
}

#[tokio::test]
async fn r2_the_same_answers_on_s3() {
    let Some(moto) = moto_or_skip("r2_the_same_answers_on_s3").await else {
        return;
    };
    let w = moto.worker("shapes").await;
    assert!(w.output().contains("(photos, s3://r2test/shapes)"));
    put_get_head_delete_with_object_shapes(&w).await;
    // Deleted objects leave nothing in S3 but the metadata object.
    assert_eq!(
        moto.names("shapes").await,
        ["shapes/.pyflare/metadata.sqlite3"]
    );
    drop(w);
    let w = moto.worker("values").await;
    values_of_every_type_and_checksums(&w).await;
    // On S3 even small values are blobs: the metadata object stays small.
    let keys = list(&w, json!({})).await["keys"].as_array().unwrap().len();
    assert!(keys > 0);
    assert_eq!(moto.objects("values").await, keys + 1);
    drop(w);
    list_pages_prefixes_and_limits(&moto.worker("list").await).await;
    errors_as_cloudflare_words_them(&moto.worker("errors").await).await;
    conditionals_and_ranges(&moto.worker("conditionals").await).await;
    multipart_uploads_complete_abort_and_rules(&moto.worker("multipart").await).await;
    // The multipart objects "big" and "one", the parts of the upload of
    // "small", never completed nor aborted, and the metadata object.
    assert_eq!(moto.objects("multipart").await, 5);
}

/// Starts moto, or says why the test skips.
async fn moto_or_skip(test: &str) -> Option<Moto> {
    match Moto::start().await {
        Ok(moto) => Some(moto),
        Err(why) => {
            eprintln!(
                "SKIPPED {test}: no S3-compatible server (pip install moto[server] failed: {why})"
            );
            None
        }
    }
}

/// Two `pyflare dev` processes, each with its own state folder, on one S3
/// prefix: one bucket, as two machines of a team would see it.
#[tokio::test]
async fn r2_two_pyflare_processes_share_one_s3_bucket() {
    let Some(moto) = moto_or_skip("r2_two_pyflare_processes_share_one_s3_bucket").await else {
        return;
    };
    let a = moto.worker("team").await;
    let b = moto.worker("team").await;

    // A put through A is what B gets, heads and lists.
    let put_a = put(&a, "notes/one", "from A", None).await;
    let etag = put_a["object"]["etag"].as_str().unwrap().to_owned();
    let got = get(&b, "/get?key=notes/one").await;
    assert_eq!(got["value"], "from A", "{got}");
    assert_eq!(got["object"]["version"], put_a["object"]["version"]);
    assert_eq!(get(&b, "/head?key=notes/one").await["object"]["etag"], etag);
    assert_eq!(
        list(&b, json!({"prefix": "notes/"})).await["keys"],
        json!(["notes/one"])
    );

    // Conditions are evaluated against the shared state.
    let refused = put(
        &b,
        "notes/one",
        "from B",
        Some(json!({"onlyIf": {"etagMatches": "not-the-etag"}})),
    )
    .await;
    assert_eq!(refused["object"], json!(null), "{refused}");
    let bodyless = get_with(
        &b,
        "notes/one",
        json!({"onlyIf": {"etagDoesNotMatch": etag}}),
        "text",
    )
    .await;
    assert_eq!(bodyless["hasBody"], false, "{bodyless}");
    let replaced = put(
        &b,
        "notes/one",
        "from B",
        Some(json!({"onlyIf": {"etagMatches": etag}})),
    )
    .await;
    assert_eq!(replaced["object"]["key"], "notes/one", "{replaced}");
    assert_eq!(get(&a, "/get?key=notes/one").await["value"], "from B");

    // A delete through A is gone in B.
    get(&a, &format!("/delete?keys={}", enc(r#"["notes/one"]"#))).await;
    assert_eq!(get(&b, "/get?key=notes/one").await["object"], json!(null));

    // Puts of different keys through both at once: none is lost.
    let writes =
        (0..50).flat_map(|i| [(&a, format!("many/a{i:02}")), (&b, format!("many/b{i:02}"))]);
    futures::future::join_all(
        writes
            .map(|(w, key)| async move { put(w, &key, &key, None).await["object"]["key"].clone() }),
    )
    .await
    .into_iter()
    .for_each(|key| assert!(key.is_string(), "a put failed: {key}"));
    for w in [&a, &b] {
        let keys = list(w, json!({"prefix": "many/"})).await["keys"].clone();
        assert_eq!(keys.as_array().map(Vec::len), Some(100), "{keys}");
    }

    // A multipart upload begun on A takes a part from B and completes on A.
    let id = create_upload(&a, "mpu", None).await;
    let part = upload_part(&b, "mpu", &id, 1, "x", 1000).await;
    let done = complete(&a, "mpu", &id, &[&part]).await;
    assert_eq!(done["object"]["size"], 1000, "{done}");
    assert_eq!(
        get(&b, "/head?key=mpu").await["object"]["etag"],
        done["object"]["etag"]
    );

    // The CLI reads the bucket with the settings of the project's .dev.vars.
    put(&a, "cli/read-me", "written by a worker", None).await;
    let project = tempfile::tempdir().unwrap();
    let fixture = crate::util::fixture("r2");
    std::fs::copy(
        fixture.join("wrangler.jsonc"),
        project.path().join("wrangler.jsonc"),
    )
    .unwrap();
    std::fs::create_dir(project.path().join("src")).unwrap();
    std::fs::copy(
        fixture.join("src/entry.py"),
        project.path().join("src/entry.py"),
    )
    .unwrap();
    let dev_vars: String = moto
        .settings("team")
        .iter()
        .map(|(k, v)| format!("{k}={v}\n"))
        .collect();
    std::fs::write(project.path().join(".dev.vars"), dev_vars).unwrap();
    let state = tempfile::tempdir().unwrap();
    let cli = |command: &[&str]| {
        let at = [
            "--dir",
            project.path().to_str().unwrap(),
            "--persist-to",
            state.path().to_str().unwrap(),
        ];
        crate::util::pyflare(&[&["r2", "object"], command, &at[..]].concat())
    };
    let (code, stdout, stderr) = cli(&["get", "photos/cli/read-me", "--pipe"]);
    assert_eq!(
        (code, stdout.as_str()),
        (0, "written by a worker"),
        "{stderr}"
    );
    let (code, _, stderr) = cli(&["delete", "photos/cli/read-me"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        get(&b, "/head?key=cli/read-me").await["object"],
        json!(null)
    );
    drop((a, b));

    // A blob no row names (a put a crash cut off) is swept by the next
    // pyflare to open the bucket once older than the grace period (an
    // hour by default: it may be another process's put in flight).
    let orphan = "team/00000000000000000000000000000000";
    let stored = client()
        .put(format!("{}/r2test/{orphan}", moto.endpoint))
        .body("orphan")
        .send()
        .await
        .unwrap();
    assert!(stored.status().is_success());
    let c = moto.worker("team").await;
    assert!(moto.names("team").await.iter().any(|n| n == orphan));
    drop(c);
    let state = tempfile::tempdir().unwrap();
    let c = moto
        .worker_with("team", state, &[("PYFLARE_R2_ORPHAN_GRACE_SECONDS", "0")])
        .await;
    let names = moto.names("team").await;
    assert!(!names.iter().any(|n| n == orphan), "{names:?}");
    // Only the orphan: 101 objects' blobs and the metadata object stay.
    assert_eq!(names.len(), 102, "{names:?}");
    assert_eq!(get(&c, "/get?key=many/b07").await["value"], "many/b07");
}

/// A store that does not honour conditional writes would lose one of two
/// processes' writes: pyflare refuses it at start (object_store's
/// `AWS_CONDITIONAL_PUT=disabled` stands in for such a store).
#[tokio::test]
async fn r2_a_store_without_conditional_writes_is_refused() {
    let Some(moto) = moto_or_skip("r2_a_store_without_conditional_writes_is_refused").await else {
        return;
    };
    let state = tempfile::tempdir().unwrap();
    let run = tokio::process::Command::new(crate::util::pyflare_bin())
        .arg("dev")
        .arg(crate::util::fixture("r2"))
        .args(["--port", "0", "--persist-to"])
        .arg(state.path())
        .envs(moto.settings("refused"))
        .env("AWS_CONDITIONAL_PUT", "disabled")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), run)
        .await
        .expect("pyflare dev stops at start")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "cannot open the R2 bucket photos at s3://r2test/refused: this S3-compatible store does not honour conditional writes (If-Match)"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: check PYFLARE_R2_BUCKET_URL"),
        "{stderr}"
    );
}
