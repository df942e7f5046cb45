//! A worker that raises, runs away or crashes gets a clear answer, and the
//! next request works; pyflare stops cleanly.

use crate::util::{TestWorker, alive, children};
use std::time::{Duration, Instant};

#[tokio::test]
async fn failures_uncaught_exception_answers_500_with_traceback() {
    let w = TestWorker::start("errors").await;
    let res = w.get("/boom").await;
    assert_eq!(res.status(), 500);
    assert_eq!(res.headers()["cf-error-code"], "1101");
    let text = res.text().await.unwrap();
    assert!(
        text.starts_with("Error 1101: Worker threw exception"),
        "{text}"
    );
    assert!(
        text.contains("Traceback (most recent call last):"),
        "{text}"
    );
    assert!(
        text.contains("/session/metadata/entry.py\", line 11, in fetch"),
        "{text}"
    );
    assert!(text.contains("ValueError: boom from Python"), "{text}");
    // pyflare's own glue is not part of the user's traceback.
    assert!(!text.contains("_pyflare"), "{text}");

    // Browsers get the HTML developer page with the same traceback.
    let res = TestWorker::client()
        .get(w.url("/boom"))
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["content-type"], "text/html; charset=UTF-8");
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("ValueError: boom from Python")
    );

    // The traceback is logged, and the worker keeps serving.
    assert!(
        w.wait_for_output("ValueError: boom from Python", Duration::from_secs(5))
            .await
    );
    assert_eq!(w.get("/").await.text().await.unwrap(), "alive");
}

#[tokio::test]
async fn failures_non_response_return_value_is_reported_as_workerd_does() {
    let w = TestWorker::start("errors").await;
    let res = w.get("/not-a-response").await;
    assert_eq!(res.status(), 500);
    let text = res.text().await.unwrap();
    assert!(
        text.contains(
            "TypeError: Incorrect type for Promise: the Promise did not resolve to 'Response'."
        ),
        "{text}"
    );
}

#[tokio::test]
async fn failures_runaway_worker_is_stopped_at_cpu_limit_and_restarted() {
    // The fixture sets limits.cpu_ms = 1000.
    let w = TestWorker::start_with("errors", &["--no-reload"]).await;
    let host_before = single_host(&w).await;
    let started = Instant::now();
    let res = w.get("/spin").await;
    let elapsed = started.elapsed();
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["cf-error-code"], "1102");
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("Worker exceeded CPU time limit.")
    );
    assert!(
        elapsed >= Duration::from_millis(900),
        "stopped too early: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(10),
        "stopped too late: {elapsed:?}"
    );
    assert!(w.output().contains("Worker exceeded CPU time limit."));

    // The next request is served by a fresh host.
    assert_eq!(w.get("/").await.text().await.unwrap(), "alive");
    for pid in host_before {
        assert!(!alive(pid), "the runaway host {pid} is still running");
    }
}

/// The one host process, once a first start's swap to a host restored from
/// the new snapshot has settled.
async fn single_host(w: &TestWorker) -> Vec<u32> {
    for _ in 0..100 {
        let hosts = children(w.pid());
        if hosts.len() == 1 {
            return hosts;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("expected one host process, got {:?}", children(w.pid()));
}

#[tokio::test]
async fn failures_crashed_host_is_restarted() {
    let w = TestWorker::start_with("errors", &["--no-reload"]).await;
    assert_eq!(w.get("/").await.text().await.unwrap(), "alive");
    let hosts = single_host(&w).await;
    let status = std::process::Command::new("kill")
        .args(["-KILL", &hosts[0].to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(
        w.wait_for_output("restarting it", Duration::from_secs(10))
            .await,
        "{}",
        w.output()
    );
    assert_eq!(w.get("/").await.text().await.unwrap(), "alive");
}

#[tokio::test]
async fn failures_load_error_is_served_with_its_traceback() {
    let w = TestWorker::start("load_error").await;
    let res = w.get("/").await;
    assert_eq!(res.status(), 500);
    let text = res.text().await.unwrap();
    assert!(text.starts_with("Worker failed to load"), "{text}");
    assert!(
        text.contains("ModuleNotFoundError: No module named 'module_that_does_not_exist'"),
        "{text}"
    );
    assert!(text.contains("entry.py\", line 3"), "{text}");
    assert!(!text.contains("importlib"), "{text}");
    assert!(w.output().contains("ModuleNotFoundError"));
}

#[tokio::test]
async fn failures_sigterm_stops_pyflare_and_its_host() {
    let mut w = TestWorker::start("hello").await;
    assert_eq!(w.get("/").await.status(), 200);
    let hosts = children(w.pid());
    assert!(!hosts.is_empty());
    let status = w.terminate().await;
    assert!(status.success(), "{status:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while hosts.iter().any(|pid| alive(*pid)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for pid in hosts {
        assert!(!alive(pid), "host {pid} outlived pyflare");
    }
}

#[tokio::test]
async fn failures_sigkill_of_pyflare_leaves_no_host_behind() {
    let w = TestWorker::start("hello").await;
    let hosts = children(w.pid());
    assert!(!hosts.is_empty());
    let status = std::process::Command::new("kill")
        .args(["-KILL", &w.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(5);
    while hosts.iter().any(|pid| alive(*pid)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for pid in hosts {
        assert!(!alive(pid), "host {pid} outlived a killed pyflare");
    }
}
