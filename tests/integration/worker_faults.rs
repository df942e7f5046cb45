//! Faults a worker's own code cannot catch: a fatal Pyodide error, a
//! request that can never be answered, a response body that breaks after
//! its headers, memory without bound. Each gets Cloudflare's answer, and
//! the next request is served.

use crate::util::{TestWorker, alive, children};
use std::time::{Duration, Instant};

/// workerd's message for a hung request (src/workerd/io/io-context.c++).
const HUNG: &str = "Error: The Workers runtime canceled this request because it detected that your Worker's code had hung and would never generate a response. Refer to: https://developers.cloudflare.com/workers/observability/errors/";

/// The one host process, once a first start's swap to a host restored from
/// the new snapshot has settled (up to 30 s: on a first run every fixture's
/// snapshot is being made at once).
async fn single_host(w: &TestWorker) -> u32 {
    for _ in 0..600 {
        let hosts = children(w.pid());
        if hosts.len() == 1 {
            return hosts[0];
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("expected one host process, got {:?}", children(w.pid()));
}

async fn gone(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    !alive(pid)
}

#[tokio::test]
async fn worker_faults_os_exit_answers_1101_and_a_fresh_host_serves_the_next_request() {
    let w = TestWorker::start_with("faults", &["--no-reload"]).await;
    assert_eq!(w.get("/").await.text().await.unwrap(), "alive");
    let host = single_host(&w).await;

    let res = w.get("/exit").await;
    assert_eq!(res.status(), 500);
    assert_eq!(res.headers()["cf-error-code"], "1101");
    let text = res.text().await.unwrap();
    assert!(
        text.starts_with("Error 1101: Worker threw exception"),
        "{text}"
    );
    assert!(
        text.contains("Python worker fatal error: Exit: Program terminated with exit(1)"),
        "{text}"
    );

    // Not "Cannot enter a promising task ...": a new host answers.
    let res = w.get("/").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "alive");
    assert!(gone(host).await, "the broken host {host} still runs");
    assert!(
        w.output()
            .contains("restarting the worker after a fatal error in Pyodide"),
        "{}",
        w.output()
    );
}

#[tokio::test]
async fn worker_faults_sys_exit_is_an_exception_in_the_same_host() {
    let w = TestWorker::start_with("faults", &["--no-reload"]).await;
    let host = single_host(&w).await;
    let res = w.get("/sys-exit").await;
    assert_eq!(res.status(), 500);
    assert_eq!(res.headers()["cf-error-code"], "1101");
    let text = res.text().await.unwrap();
    assert!(text.contains("SystemExit: 3"), "{text}");
    assert!(text.contains("in fetch\n    sys.exit(3)"), "{text}");
    assert_eq!(w.get("/").await.text().await.unwrap(), "alive");
    assert_eq!(children(w.pid()), vec![host]);
}

#[tokio::test]
async fn worker_faults_hung_request_gets_workerds_message_and_the_worker_serves_on() {
    let w = TestWorker::start("faults").await;
    let started = Instant::now();
    let res = w.get("/hang").await;
    let elapsed = started.elapsed();
    assert_eq!(res.status(), 500);
    assert_eq!(res.headers()["cf-error-code"], "1101");
    let text = res.text().await.unwrap();
    assert!(
        text.starts_with("Error 1101: Worker threw exception"),
        "{text}"
    );
    assert!(text.contains(HUNG), "{text}");
    assert!(
        elapsed < Duration::from_secs(5),
        "answered after {elapsed:?}"
    );
    assert!(
        w.wait_for_output(HUNG, Duration::from_secs(5)).await,
        "{}",
        w.output()
    );
    assert_eq!(w.get("/").await.text().await.unwrap(), "alive");
}

#[tokio::test]
async fn worker_faults_hung_scheduled_event_fails_with_workerds_message() {
    let w = TestWorker::start("faults").await;
    let res = w.get("/cdn-cgi/handler/scheduled?cron=hang").await;
    assert_eq!(res.status(), 500);
    assert_eq!(res.text().await.unwrap(), "exception");
    assert!(
        w.wait_for_output("cron \"hang\" exception", Duration::from_secs(5))
            .await,
        "{}",
        w.output()
    );
    assert!(w.output().contains(HUNG), "{}", w.output());
    let res = w.get("/cdn-cgi/handler/scheduled?cron=ok").await;
    assert_eq!(res.text().await.unwrap(), "ok");
}

#[tokio::test]
async fn worker_faults_waiting_on_a_timer_a_fetch_or_a_body_is_not_a_hang() {
    let w = TestWorker::start("faults").await;

    // A slow upstream: answers one second after the request.
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_url = format!("http://{}/", upstream.local_addr().unwrap());
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut socket, _)) = upstream.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\nconnection: close\r\n\r\nupstream")
                    .await;
            });
        }
    });

    // A request body that arrives in three parts, 600 ms apart.
    let parts = futures::stream::unfold(0, |n| async move {
        if n == 3 {
            return None;
        }
        if n > 0 {
            tokio::time::sleep(Duration::from_millis(600)).await;
        }
        Some((Ok::<_, std::io::Error>(format!("part{n};")), n + 1))
    });
    let slow_body = TestWorker::client()
        .post(w.url("/echo"))
        .body(reqwest::Body::wrap_stream(parts))
        .send();

    // A hung request meanwhile is answered once the others are done.
    let outbound_path = format!("/outbound?url={upstream_url}");
    let (sleep, outbound, echo, hang) = tokio::join!(
        w.get("/sleep"),
        w.get(&outbound_path),
        slow_body,
        w.get("/hang"),
    );
    assert_eq!(sleep.status(), 200);
    assert_eq!(sleep.text().await.unwrap(), "slept");
    assert_eq!(outbound.status(), 200);
    assert_eq!(outbound.text().await.unwrap(), "upstream");
    let echo = echo.unwrap();
    assert_eq!(echo.status(), 200);
    assert_eq!(echo.text().await.unwrap(), "part0;part1;part2;");
    assert_eq!(hang.status(), 500);
    assert!(hang.text().await.unwrap().contains(HUNG));
}

#[tokio::test]
async fn worker_faults_waiting_on_webcrypto_is_not_a_hang() {
    let w = TestWorker::start("faults").await;
    // Ten million PBKDF2 rounds: well past the 200 ms of idleness after
    // which an isolate with nothing under way has hung.
    let res = w.get("/derive?rounds=10000000").await;
    let status = res.status();
    let text = res.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    let took: u64 = text.parse().unwrap();
    assert!(
        took > 400,
        "the derivation took {took} ms: too short to tell a hang"
    );
}

#[tokio::test]
async fn worker_faults_stream_source_error_resets_the_connection_and_logs_the_traceback() {
    let w = TestWorker::start("faults").await;
    let res = w.get("/stream-raise").await;
    assert_eq!(res.status(), 200);
    let started = Instant::now();
    let body = tokio::time::timeout(Duration::from_secs(10), res.bytes())
        .await
        .expect("the body ends promptly");
    assert!(body.is_err(), "the body read must fail: {body:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        w.wait_for_output("RuntimeError: the producer broke", Duration::from_secs(5))
            .await,
        "{}",
        w.output()
    );
    let output = w.output();
    assert!(
        output.contains("the response body failed after its headers were sent"),
        "{output}"
    );
    assert!(
        output.contains("in pull\n    raise RuntimeError"),
        "{output}"
    );
    assert_eq!(w.get("/").await.text().await.unwrap(), "alive");
}

#[tokio::test]
async fn worker_faults_stream_whose_producer_died_is_reset_as_hung() {
    let w = TestWorker::start("faults").await;
    let res = w.get("/producer-raise").await;
    assert_eq!(res.status(), 200);
    let body = tokio::time::timeout(Duration::from_secs(10), res.bytes())
        .await
        .expect("the body ends promptly");
    assert!(body.is_err(), "the body read must fail: {body:?}");
    assert!(
        w.wait_for_output(HUNG, Duration::from_secs(5)).await,
        "{}",
        w.output()
    );
    assert!(
        w.output()
            .contains("Uncaught (in waitUntil) Traceback (most recent call last):"),
        "{}",
        w.output()
    );
    assert_eq!(w.get("/").await.text().await.unwrap(), "alive");
}

async fn assert_memory_limit(path: &str) {
    let w = TestWorker::start_with("faults", &["--no-reload"]).await;
    let host = single_host(&w).await;
    let res = w.get(path).await;
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["cf-error-code"], "1102");
    let text = res.text().await.unwrap();
    assert!(
        text.starts_with(
            "Error 1102: Worker exceeded resource limits\n\nWorker exceeded memory limit."
        ),
        "{text}"
    );
    assert!(text.contains("against the limit of 128 MB"), "{text}");
    // Stopped near the limit, not after growing without bound.
    let counted: u64 = text
        .split("pyflare counted ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|mb| mb.parse().ok())
        .unwrap_or_else(|| panic!("no measurement in {text}"));
    assert!((128..512).contains(&counted), "stopped at {counted} MB");
    assert!(
        gone(host).await,
        "the host {host} past its limit still runs"
    );
    assert_eq!(w.get("/").await.text().await.unwrap(), "alive");
    assert!(
        w.output()
            .contains("restarting the worker after it exceeded its memory limit"),
        "{}",
        w.output()
    );
}

#[tokio::test]
async fn worker_faults_python_memory_past_128_mb_answers_1102_and_recycles_the_host() {
    assert_memory_limit("/alloc").await;
}

#[tokio::test]
async fn worker_faults_javascript_memory_past_128_mb_answers_1102_and_recycles_the_host() {
    assert_memory_limit("/js-alloc").await;
}

#[tokio::test]
async fn worker_faults_memory_limit_is_configurable() {
    let w = TestWorker::start_with("faults", &["--memory-limit", "512"]).await;
    let res = w.get("/hold?mb=200").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), (200 * 1024 * 1024).to_string());

    let w = TestWorker::start("faults").await;
    let res = w.get("/hold?mb=200").await;
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["cf-error-code"], "1102");
}
