//! Static assets through `pyflare dev`: the `assets` fixture has a folder
//! of files answered before the worker, and `env.ASSETS` for the worker,
//! whose `/bind/<path>` answers what the binding gave it, as JSON.

use crate::util::{TestWorker, copy_fixture};
use serde_json::Value;
use std::time::{Duration, Instant};

fn header<'a>(res: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    res.headers().get(name).map(|v| v.to_str().unwrap())
}

async fn start() -> (TestWorker, tempfile::TempDir) {
    let project = copy_fixture("assets");
    let w = TestWorker::spawn(project.path(), tempfile::tempdir().unwrap(), &[], &[]).await;
    (w, project)
}

async fn bind(w: &TestWorker, path: &str) -> Value {
    w.get(&format!("/bind{path}")).await.json().await.unwrap()
}

#[tokio::test]
async fn assets_answer_before_the_worker_with_cloudflares_headers() {
    let (w, _project) = start().await;

    let res = w.get("/").await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        header(&res, "content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(
        header(&res, "cache-control"),
        Some("public, max-age=0, must-revalidate")
    );
    assert_eq!(header(&res, "cf-cache-status"), Some("HIT"));
    let etag = header(&res, "etag").unwrap().to_owned();
    assert!(
        etag.len() == 34 && etag.starts_with('"') && etag.ends_with('"'),
        "{etag}"
    );
    assert_eq!(res.text().await.unwrap(), "<h1>home</h1>\n");

    for (path, content_type) in [
        ("/style.css", "text/css; charset=utf-8"),
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/api/hidden.txt", "text/plain; charset=utf-8"),
    ] {
        let res = w.get(path).await;
        assert_eq!(res.status(), 200, "{path}");
        assert_eq!(header(&res, "content-type"), Some(content_type), "{path}");
    }

    // html_handling auto-trailing-slash: pages without `.html`, folders with `/`.
    assert_eq!(w.get("/about").await.text().await.unwrap(), "about\n");
    for (path, location) in [
        ("/about.html", "/about"),
        ("/blog", "/blog/"),
        ("/blog/index.html", "/blog/"),
        ("/about.html?x=1", "/about?x=1"),
        ("//style.css", "/style.css"),
    ] {
        let res = w.get(path).await;
        assert_eq!(res.status(), 307, "{path}");
        assert_eq!(header(&res, "location"), Some(location), "{path}");
    }
    assert_eq!(w.get("/blog/").await.text().await.unwrap(), "blog\n");

    // No asset: the worker runs (a 404 page only for a browser's navigation).
    assert_eq!(
        w.get("/nope").await.text().await.unwrap(),
        "worker: GET /nope"
    );
    let res = TestWorker::client()
        .get(w.url("/nope"))
        .header("sec-fetch-mode", "navigate")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(res.text().await.unwrap(), "not found\n");
    // The upload's metafiles are never served.
    for file in ["/_headers", "/_redirects"] {
        assert_eq!(
            w.get(file).await.text().await.unwrap(),
            format!("worker: GET {file}")
        );
    }

    // `_redirects`, before any file or the worker.
    for (path, status, location) in [
        ("/old?q=1", 301, "/new?q=1"),
        ("/news/hello", 302, "/posts/hello"),
    ] {
        let res = w.get(path).await;
        assert_eq!(res.status(), status, "{path}");
        assert_eq!(header(&res, "location"), Some(location), "{path}");
    }
    // A 200 rule serves another path's file here.
    let res = w.get("/app/deep/link").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "about\n");

    // `_headers`: every rule that matches applies, in order.
    let res = w.get("/blog/").await;
    assert_eq!(header(&res, "x-frame-options"), Some("DENY"));
    assert_eq!(header(&res, "cache-control"), Some("no-store"));
    assert_eq!(header(&res, "x-section"), Some("blog"));
    let res = w.get("/about").await;
    assert_eq!(header(&res, "etag"), None);
    assert_eq!(header(&res, "x-page"), Some("about"));
    let res = w.get("/style.css").await;
    assert_eq!(header(&res, "x-frame-options"), Some("DENY"));
    assert_eq!(
        header(&res, "cache-control"),
        Some("public, max-age=0, must-revalidate")
    );
    // Not on the worker's answers.
    assert_eq!(header(&w.get("/nope").await, "x-frame-options"), None);

    let client = TestWorker::client();
    let res = client.head(w.url("/style.css")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        header(&res, "content-type"),
        Some("text/css; charset=utf-8")
    );
    assert_eq!(res.bytes().await.unwrap().len(), 0);
    let res = client.post(w.url("/style.css")).send().await.unwrap();
    assert_eq!(res.status(), 405);
    // A path no asset answers takes every method to the worker.
    let res = client.post(w.url("/form")).send().await.unwrap();
    assert_eq!(res.text().await.unwrap(), "worker: POST /form");

    let etag = header(&w.get("/style.css").await, "etag")
        .unwrap()
        .to_owned();
    for tag in [etag.clone(), format!("W/{etag}")] {
        let res = client
            .get(w.url("/style.css"))
            .header("if-none-match", &tag)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 304, "{tag}");
        assert_eq!(header(&res, "etag"), Some(etag.as_str()));
    }
    // Not for a shared cache: a request with credentials or a range.
    let res = client
        .get(w.url("/style.css"))
        .header("authorization", "Bearer x")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&res, "cache-control"), None);
}

#[tokio::test]
async fn the_binding_answers_the_worker_as_the_asset_server_does() {
    let (w, _project) = start().await;

    let css = bind(&w, "/style.css").await;
    assert_eq!(css["class"], "Response", "{css}");
    assert_eq!(css["status"], 200);
    assert_eq!(css["body"], "body { color: red; }\n");
    assert_eq!(css["headers"]["content-type"], "text/css; charset=utf-8");
    assert_eq!(css["headers"]["cf-cache-status"], "HIT");
    assert_eq!(css["headers"]["x-frame-options"], "DENY");
    let front = w.get("/style.css").await;
    assert_eq!(
        css["headers"]["etag"].as_str(),
        header(&front, "etag"),
        "the same asset, the same ETag"
    );

    // not_found_handling 404-page: the nearest 404.html, status 404.
    let missing = bind(&w, "/missing/page").await;
    assert_eq!(missing["status"], 404, "{missing}");
    assert_eq!(missing["body"], "not found\n");

    // A redirect is followed, as a Fetcher's fetch does by default.
    let about = bind(&w, "/about.html").await;
    assert_eq!(about["status"], 200, "{about}");
    assert_eq!(about["body"], "about\n");
}

#[tokio::test]
async fn run_worker_first_rules_choose_the_worker_or_the_assets_by_path() {
    let project = copy_fixture("assets");
    let config = project.path().join("wrangler.jsonc");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "\"not_found_handling\": \"404-page\"",
        "\"not_found_handling\": \"404-page\", \"run_worker_first\": [\"/api/*\", \"!/api/static/*\"]",
    );
    std::fs::write(&config, text).unwrap();
    let w = TestWorker::spawn(project.path(), tempfile::tempdir().unwrap(), &[], &[]).await;

    // A file under a rule's path: the worker runs first.
    assert_eq!(
        w.get("/api/hidden.txt").await.text().await.unwrap(),
        "worker: GET /api/hidden.txt"
    );
    // A `!` rule: assets only, so the 404 page rather than the worker.
    let res = w.get("/api/static/x").await;
    assert_eq!(res.status(), 404);
    assert_eq!(res.text().await.unwrap(), "not found\n");
    // With rules, a path outside them that no file answers gets
    // not_found_handling, not the worker.
    let res = w.get("/elsewhere").await;
    assert_eq!(res.status(), 404);
    assert_eq!(res.text().await.unwrap(), "not found\n");
    assert_eq!(w.get("/about").await.text().await.unwrap(), "about\n");
}

/// Polls `path` until its body is `want`.
async fn wait_for(w: &TestWorker, path: &str, want: &str) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        if w.get(path).await.text().await.unwrap() == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{path} never answered {want:?}:\n{}", w.output());
}

#[tokio::test]
async fn saved_assets_are_served_at_once_and_a_changed_config_reaches_the_binding() {
    let (w, project) = start().await;
    let before = w.get("/style.css").await;
    let old_etag = header(&before, "etag").unwrap().to_owned();

    // A saved file is served as it is now, with a new ETag, and the worker
    // is not reloaded for it.
    std::fs::write(
        project.path().join("public/style.css"),
        "body { color: blue; }\n",
    )
    .unwrap();
    wait_for(&w, "/style.css", "body { color: blue; }\n").await;
    let after = w.get("/style.css").await;
    assert_ne!(header(&after, "etag").unwrap(), old_etag);
    std::fs::write(project.path().join("public/new.txt"), "new\n").unwrap();
    wait_for(&w, "/new.txt", "new\n").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!w.output().contains("reloading"), "{}", w.output());

    // Time for the standby host a reload uses to be prepared, with the
    // bindings of the config it started with.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let config = project.path().join("wrangler.jsonc");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("\"404-page\"", "\"single-page-application\"");
    std::fs::write(&config, text).unwrap();
    assert!(
        w.wait_for_output("reloaded the worker", Duration::from_secs(60))
            .await,
        "{}",
        w.output()
    );
    // The reloaded worker's binding answers under the new config: the
    // single-page application's index, status 200.
    let started = Instant::now();
    loop {
        let answer = bind(&w, "/missing/page").await;
        if answer["status"] == 200 {
            assert_eq!(answer["body"], "<h1>home</h1>\n", "{answer}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the binding kept the old config: {answer}\n{}",
            w.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn a_missing_assets_folder_or_a_bad_field_is_a_config_error() {
    let (code, output) = crate::util::dev_in(
        &[
            (
                "wrangler.jsonc",
                r#"{"name": "a", "main": "src/entry.py", "compatibility_date": "2026-06-01",
                    "compatibility_flags": ["python_workers"], "assets": {"directory": "./nowhere"}}"#,
            ),
            (
                "src/entry.py",
                "async def on_fetch(request, env):\n    pass\n",
            ),
        ],
        &[],
    );
    assert_ne!(code, 0);
    assert!(output.contains("pyflare: error:"), "{output}");
    assert!(
        output.contains("The directory specified by the \"assets.directory\" field in your configuration file does not exist"),
        "{output}"
    );

    let (code, output) = crate::util::dev_in(
        &[
            (
                "wrangler.jsonc",
                r#"{"name": "a", "main": "src/entry.py", "compatibility_date": "2026-06-01",
                    "compatibility_flags": ["python_workers"],
                    "assets": {"directory": "./public", "html_handling": "sometimes"}}"#,
            ),
            ("public/index.html", "hi"),
            (
                "src/entry.py",
                "async def on_fetch(request, env):\n    pass\n",
            ),
        ],
        &[],
    );
    assert_ne!(code, 0);
    assert!(
        output.contains(r#"Expected "assets.html_handling" field to be one of ["auto-trailing-slash","force-trailing-slash","drop-trailing-slash","none"], but got "sometimes"."#),
        "{output}"
    );
}
