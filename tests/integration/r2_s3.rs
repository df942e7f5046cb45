//! The R2 scenarios of `r2.rs` on S3-compatible storage: a moto server
//! (PyPI's `moto[server]`, installed into a virtualenv under `target/` on
//! first use; the test skips with a message where it cannot be installed)
//! and `pyflare dev` with `PYFLARE_R2_<BINDING>_URL=s3://...`.

use crate::r2::*;
use crate::util::TestWorker;

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
        let child = std::process::Command::new(&server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
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
        let main = format!("s3://r2test/{prefix}");
        let other = format!("s3://r2test/{prefix}-other");
        let envs = [
            ("PYFLARE_R2_BUCKET_URL", main.as_str()),
            ("PYFLARE_R2_SAME_URL", main.as_str()),
            ("PYFLARE_R2_OTHER_URL", other.as_str()),
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ALLOW_HTTP", "true"),
        ];
        let fixture = crate::util::fixture("r2");
        TestWorker::spawn(&fixture, state, &[], &envs).await
    }

    /// The S3 objects under `prefix`.
    async fn objects(&self, prefix: &str) -> usize {
        let list = client()
            .get(format!("{}/r2test?prefix={prefix}/", self.endpoint))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        list.matches("<Key>").count()
    }
}

#[tokio::test]
async fn r2_the_same_answers_on_s3() {
    let moto = match Moto::start().await {
        Ok(moto) => moto,
        Err(why) => {
            eprintln!(
                "SKIPPED r2_the_same_answers_on_s3: no S3-compatible server (pip install moto[server] failed: {why})"
            );
            return;
        }
    };
    let state = tempfile::tempdir().unwrap();
    let root = state.path().to_str().unwrap().to_owned();
    let w = moto.worker_in("shapes", state).await;
    assert!(w.output().contains("(photos, s3://r2test/shapes)"));
    put_get_head_delete_with_object_shapes(&w).await;
    // Deleted objects leave nothing in S3.
    assert_eq!(moto.objects("shapes").await, 0);
    // The commands read local buckets only, and say so of one on S3.
    let fixture = crate::util::fixture("r2");
    let (code, _, stderr) = crate::util::pyflare(&[
        "r2",
        "object",
        "list",
        "photos",
        "--dir",
        fixture.to_str().unwrap(),
        "--persist-to",
        &root,
    ]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("this bucket's objects are in s3://r2test/shapes, not local"),
        "{stderr}"
    );
    drop(w);
    values_of_every_type_and_checksums(&moto.worker("values").await).await;
    // Small values live in their metadata rows.
    assert_eq!(moto.objects("values").await, 0);
    list_pages_prefixes_and_limits(&moto.worker("list").await).await;
    errors_as_cloudflare_words_them(&moto.worker("errors").await).await;
    conditionals_and_ranges(&moto.worker("conditionals").await).await;
    multipart_uploads_complete_abort_and_rules(&moto.worker("multipart").await).await;
    // The multipart objects "big" and "one", and the parts of the upload
    // of "small", never completed nor aborted.
    assert_eq!(moto.objects("multipart").await, 4);
}
