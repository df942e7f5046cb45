//! The Python runtime surface: env and vars, imports, the `js` global
//! scope, print(), outbound fetch, waitUntil and concurrency.

use crate::util::{TestWorker, copy_fixture};
use std::time::{Duration, Instant};

#[tokio::test]
async fn runtime_env_has_vars_json_vars_secrets_and_cli_vars() {
    let w = TestWorker::start_with("http", &["--var", "EXTRA:from the command line"]).await;
    let env: serde_json::Value = w.get("/env").await.json().await.unwrap();
    assert_eq!(
        env,
        serde_json::json!({
            "GREETING": "hello from vars",
            "CONFIG": {"retries": 3, "regions": ["eu", "us"]},
            "API_TOKEN": "s3cret value",
            "EXTRA": "from the command line",
        })
    );
}

#[tokio::test]
async fn runtime_env_section_selected_with_env_flag() {
    let w = TestWorker::start_with("http", &["--env", "staging"]).await;
    let env: serde_json::Value = w.get("/env").await.json().await.unwrap();
    assert_eq!(env["GREETING"], "hello from staging");
    // vars are not inherited by an environment.
    assert_eq!(env["CONFIG"], serde_json::Value::Null);
}

#[tokio::test]
async fn runtime_sibling_modules_and_python_modules_import() {
    let w = TestWorker::start("http").await;
    assert_eq!(
        w.get("/modules").await.text().await.unwrap(),
        "hello, sibling / VENDORED!"
    );
}

#[tokio::test]
async fn runtime_js_is_a_worker_global_scope_not_node() {
    let w = TestWorker::start("http").await;
    let globals: serde_json::Value = w.get("/globals").await.json().await.unwrap();
    for hidden in ["process", "require", "Buffer"] {
        assert_eq!(globals[hidden], false, "{hidden} is visible: {globals}");
    }
    for present in [
        "fetch",
        "Response",
        "Request",
        "Headers",
        "URL",
        "ReadableStream",
        "crypto",
        "setTimeout",
        "console",
        "TextEncoder",
    ] {
        assert_eq!(globals[present], true, "{present} is missing: {globals}");
    }
    assert_eq!(globals["userAgent"], "Cloudflare-Workers");
}

#[tokio::test]
async fn runtime_print_output_reaches_the_terminal() {
    let w = TestWorker::start("http").await;
    assert_eq!(w.get("/print").await.text().await.unwrap(), "printed");
    assert!(
        w.wait_for_output("hello from print()", Duration::from_secs(5))
            .await,
        "{}",
        w.output()
    );
}

#[tokio::test]
async fn runtime_outbound_fetch_from_python() {
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_url = format!("http://{}/data", upstream.local_addr().unwrap());
    tokio::spawn(async move {
        let app =
            axum::Router::new().route("/data", axum::routing::get(|| async { "from upstream" }));
        axum::serve(upstream, app).await.unwrap();
    });
    let w = TestWorker::start("http").await;
    let res = TestWorker::client()
        .get(w.url("/outbound"))
        .query(&[("url", upstream_url.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.text().await.unwrap(), "200:from upstream");
}

#[tokio::test]
async fn runtime_wait_until_work_finishes_after_the_response() {
    let w = TestWorker::start("http").await;
    let started = Instant::now();
    assert_eq!(
        w.get("/wait-until?label=after").await.text().await.unwrap(),
        "scheduled"
    );
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "response waited for waitUntil work"
    );
    assert_eq!(w.get("/background").await.text().await.unwrap(), "[]");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        w.get("/background").await.text().await.unwrap(),
        r#"["after"]"#
    );
}

#[tokio::test]
async fn runtime_requests_interleave_at_await_points() {
    let w = TestWorker::start("http").await;
    let client = TestWorker::client();
    // Warm up so the measurement is about interleaving only.
    assert_eq!(w.get("/").await.status(), 200);
    let started = Instant::now();
    let requests = (0..100).map(|_| {
        let client = client.clone();
        let url = w.url("/sleep");
        async move { client.get(url).send().await.unwrap().text().await.unwrap() }
    });
    let bodies = futures::future::join_all(requests).await;
    let elapsed = started.elapsed();
    assert!(bodies.iter().all(|b| b == "slept"));
    // Serially this would take 50 s; interleaved it takes about 0.5 s.
    assert!(
        elapsed < Duration::from_secs(5),
        "100 sleeping requests took {elapsed:?}"
    );
}

#[tokio::test]
async fn runtime_legacy_on_fetch_handler_before_no_global_handlers_date() {
    let w = TestWorker::start("legacy").await;
    assert_eq!(
        w.get("/").await.text().await.unwrap(),
        "legacy handler: GET"
    );
}

/// `fetch` is called as Cloudflare calls it: arguments the method does not
/// declare are dropped, and `*args` receives the rest (env and ctx, which a
/// class-based handler gets as None). A decorator that keeps the method's
/// signature (`functools.wraps`) passes what that signature takes. The
/// second request checks the answer kept per class.
#[tokio::test]
async fn runtime_fetch_takes_only_the_arguments_it_declares() {
    for (decorator, signature, body, want) in [
        ("", "self", "\"no arguments\"", "no arguments"),
        (
            "",
            "self, request, *rest",
            "f\"{request.method} {rest}\"",
            "GET (None, None)",
        ),
        (
            "",
            "self, request, env=\"unset\"",
            "f\"{request.method} {env}\"",
            "GET None",
        ),
        (
            "@logged",
            "self, request",
            "f\"{request.method} {sorted(set(seen))}\"",
            "GET [1]",
        ),
    ] {
        let project = copy_fixture("hello");
        std::fs::write(
            project.path().join("src/entry.py"),
            format!(
                "import functools\n\
                 from workers import Response, WorkerEntrypoint\n\n\
                 seen = []\n\n\
                 def logged(method):\n    \
                 @functools.wraps(method)\n    \
                 async def wrapper(*args):\n        \
                 seen.append(len(args) - 1)\n        \
                 return await method(*args)\n    \
                 return wrapper\n\n\
                 class Default(WorkerEntrypoint):\n    \
                 {decorator}\n    \
                 async def fetch({signature}):\n        \
                 return Response({body})\n"
            ),
        )
        .unwrap();
        let w = TestWorker::spawn(project.path(), tempfile::tempdir().unwrap(), &[], &[]).await;
        for _ in 0..2 {
            let res = w.get("/").await;
            assert_eq!(res.status(), 200, "{}", w.output());
            assert_eq!(res.text().await.unwrap(), want);
        }
    }
}
