//! Queues through `pyflare dev` and Cloudflare's SDK: producers' content
//! types and errors (the strings checked against Miniflare), batches
//! delivered to the `queue` handler with ack, retry and the dead letter
//! queue, delays and batch timeouts on pyflare's clock (moved by the test,
//! never waited for), and messages that survive `kill -9`.

use crate::util::TestWorker;
use serde_json::{Value, json};
use std::time::Duration;

async fn post(w: &TestWorker, path: &str, body: Value) -> (u16, Value) {
    let res = TestWorker::client()
        .post(w.url(path))
        .json(&body)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

/// What the consumer recorded (none while the worker serves a load error).
async fn received(w: &TestWorker) -> Vec<Value> {
    w.get("/received").await.json().await.unwrap_or_default()
}

/// The rows recorded for `queue`, once `pred` holds for them (or after
/// 20 s, for the assertion to show).
async fn wait_received(w: &TestWorker, queue: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let of_queue = |rows: Vec<Value>| -> Vec<Value> {
        rows.into_iter().filter(|r| r["queue"] == queue).collect()
    };
    for _ in 0..400 {
        let rows = of_queue(received(w).await);
        if pred(&rows) {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    of_queue(received(w).await)
}

fn body(row: &Value) -> Value {
    serde_json::from_str(row["body"].as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn queues_producers_refuse_as_cloudflare_and_deliver_every_content_type() {
    let w = TestWorker::start("queues").await;
    producer_errors_are_cloudflares(&w).await;
    every_content_type_reaches_the_sdk(&w).await;
}

async fn every_content_type_reaches_the_sdk(w: &TestWorker) {
    let (status, sent) = post(w, "/send", json!({"binding": "JOBS", "body": {"n": 1}})).await;
    assert_eq!(status, 200, "{sent}");
    assert_eq!(sent["backlogCount"], 1);
    assert_eq!(sent["backlogBytes"], 7);
    assert_eq!(sent["oldest"], "datetime");
    let text = json!({"binding": "JOBS", "body": "hi", "options": {"contentType": "text"}});
    assert_eq!(post(w, "/send", text).await.0, 200);
    assert_eq!(
        post(
            w,
            "/send_bytes",
            json!({"binding": "JOBS", "body": [0, 1, 255]})
        )
        .await
        .0,
        200
    );
    assert_eq!(post(w, "/send_date", json!({})).await.0, 200);
    let rows = wait_received(w, "jobs", |r| r.len() == 4).await;
    assert_eq!(rows.len(), 4, "{rows:?}");
    let got: Vec<(Value, &str)> = rows
        .iter()
        .map(|r| (body(r), r["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            (json!({"n": 1}), "JsDict"),
            (json!("hi"), "str"),
            (json!([0, 1, 255]), "bytes"),
            // A Date through V8's structured clone comes back a datetime.
            (json!({"when": "2026-01-02 03:04:05"}), "JsDict"),
        ]
    );
    for row in &rows {
        assert_eq!(row["attempts"], 1);
        let id = row["id"].as_str().unwrap();
        assert!(
            id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{id}"
        );
    }
    // One line per batch, `<acked>/<size> ok (<ms>)`; the four sends may
    // arrive in one batch or several.
    let delivered = || {
        w.output()
            .lines()
            .filter_map(|line| line.strip_prefix("[pyflare] QUEUE jobs "))
            .map(|rest| {
                let (counts, outcome) = rest.split_once(' ').unwrap();
                assert!(outcome.starts_with("ok ("), "{rest}");
                let (acked, size) = counts.split_once('/').unwrap();
                assert_eq!(acked, size, "{rest}");
                size.parse::<usize>().unwrap()
            })
            .sum::<usize>()
    };
    let started = std::time::Instant::now();
    while delivered() < 4 && started.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(delivered(), 4, "{}", w.output());
}

async fn producer_errors_are_cloudflares(w: &TestWorker) {
    let big = |n: usize| "x".repeat(n);
    let cases = [
        (
            "/send",
            json!({"binding": "JOBS", "body": "x", "options": {"contentType": "yaml"}}),
            "TypeError: Unsupported queue message content type: yaml",
        ),
        (
            "/send_text_number",
            json!({}),
            "TypeError: Content Type \"text\" requires a value of type string, but received: number",
        ),
        (
            "/send",
            json!({"binding": "JOBS", "body": "abc", "options": {"contentType": "bytes"}}),
            "TypeError: Content Type \"bytes\" requires a value of type ArrayBufferView, but received: string",
        ),
        (
            "/send",
            json!({"binding": "JOBS", "body": big(128_001), "options": {"contentType": "text"}}),
            "Error: Queue send failed: message length of 128001 bytes exceeds limit of 128000",
        ),
        (
            // JSON counts its quotes.
            "/send",
            json!({"binding": "JOBS", "body": big(127_999)}),
            "Error: Queue send failed: message length of 128001 bytes exceeds limit of 128000",
        ),
        (
            "/send",
            json!({"binding": "JOBS", "body": 1, "options": {"delaySeconds": 86_401}}),
            "Error: Queue send failed: message delay 86401 is invalid: Number must be less than or equal to 86400",
        ),
        (
            "/send_batch",
            json!({"binding": "JOBS", "messages": []}),
            "TypeError: sendBatch() requires at least one message",
        ),
        (
            "/send_batch_not_a_list",
            json!({}),
            "TypeError: Failed to execute 'sendBatch' on 'WorkerQueue': parameter 1 is not of type 'Sequence'.",
        ),
        (
            "/send_batch",
            json!({"binding": "JOBS", "messages": (0..101).map(|n| json!({"body": n})).collect::<Vec<_>>()}),
            "Error: Queue sendBatch failed: batch message count of 101 exceeds limit of 100",
        ),
        (
            "/send_batch",
            json!({"binding": "JOBS", "messages": [{"body": big(128_001), "contentType": "text"}]}),
            "Error: Queue sendBatch failed: message in batch has length 128001 bytes which exceeds single message size limit of 128000",
        ),
        (
            "/send_batch",
            json!({"binding": "JOBS", "messages": (0..3).map(|_| json!({"body": big(100_000), "contentType": "text"})).collect::<Vec<_>>()}),
            "Error: Queue sendBatch failed: batch size of 300000 bytes exceeds limit of 256000",
        ),
        (
            "/send_batch",
            json!({"binding": "JOBS", "messages": [{"body": 1, "delaySeconds": -1}]}),
            "Error: Queue sendBatch failed: message delay -1 is invalid: Number must be greater than or equal to 0",
        ),
    ];
    for (path, request, message) in cases {
        let (status, answer) = post(w, path, request).await;
        assert_eq!(status, 400, "{path}: {answer}");
        assert_eq!(answer["message"], message, "{path}");
    }
    // Nothing refused was stored.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(received(w).await.is_empty());
}

#[tokio::test]
async fn queues_retry_what_was_not_acked_then_dead_letter_or_drop() {
    let w = TestWorker::start("queues").await;
    // flaky: max_retries 2, dead letters to flaky-dlq. The batch raises
    // after acking n=1 explicitly: n=2 and n=3 are retried.
    let batch = json!({"binding": "FLAKY", "messages": [
        {"body": {"n": 1, "ack": true}},
        {"body": {"n": 2}},
        {"body": {"n": 3, "raise": true}},
    ]});
    assert_eq!(post(&w, "/send_batch", batch).await.0, 200);
    let dead = wait_received(&w, "flaky-dlq", |r| r.len() == 2).await;
    let flaky = wait_received(&w, "flaky", |r| r.len() == 7).await;
    let tries = |n: i64| -> Vec<i64> {
        flaky
            .iter()
            .filter(|r| body(r)["n"] == n)
            .map(|r| r["attempts"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(tries(1), [1], "{flaky:?}");
    assert_eq!(tries(2), [1, 2, 3]);
    assert_eq!(tries(3), [1, 2, 3]);
    // The dead letter queue gets them with their ids, as new messages.
    for row in &dead {
        let n = body(row)["n"].as_i64().unwrap();
        let original = flaky.iter().find(|r| body(r)["n"] == n).unwrap();
        assert_eq!(row["id"], original["id"]);
        assert_eq!(row["ts"], original["ts"]);
        assert_eq!(row["attempts"], 1);
        assert!(
            w.output().contains(&format!(
                "Moving message \"{}\" on queue \"flaky\" to dead letter queue \"flaky-dlq\" after 3 failed attempts...",
                row["id"].as_str().unwrap()
            )),
            "{}",
            w.output()
        );
    }
    assert!(w.output().contains("[pyflare] QUEUE flaky 1/3 exception ("));

    // retry() after ack() has no effect, with workerd's warning.
    let both = json!({"binding": "JOBS", "body": {"ack": true, "then_retry": true}});
    assert_eq!(post(&w, "/send", both).await.0, 200);
    let jobs = wait_received(&w, "jobs", |r| r.len() == 1).await;
    let id = jobs[0]["id"].as_str().unwrap().to_owned();
    assert!(
        w.wait_for_output(
            &format!("[pyflare] warning: Received a call to retry() on message {id} after ack() was already called. Calling retry() on a message after calling ack() has no effect."),
            Duration::from_secs(5)
        )
        .await,
        "{}",
        w.output()
    );
    assert!(
        w.output()
            .contains("ValueError: a batch of 3 from flaky failed")
    );

    // jobs has no dead letter queue: a message retried each time is
    // dropped after max_retries (3) + 1 deliveries.
    let retry = json!({"binding": "JOBS", "body": {"retry": true}});
    assert_eq!(post(&w, "/send", retry).await.0, 200);
    let jobs = wait_received(&w, "jobs", |r| r.len() == 5).await;
    let attempts: Vec<i64> = jobs[1..]
        .iter()
        .map(|r| r["attempts"].as_i64().unwrap())
        .collect();
    assert_eq!(attempts, [1, 2, 3, 4]);
    let id = jobs[1]["id"].as_str().unwrap();
    assert!(
        w.wait_for_output(
            &format!("Dropped message \"{id}\" on queue \"jobs\" after 4 failed attempts!"),
            Duration::from_secs(5)
        )
        .await
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let jobs = received(&w)
        .await
        .into_iter()
        .filter(|r| r["queue"] == "jobs");
    assert_eq!(jobs.count(), 5);
}

async fn counts(w: &TestWorker) -> Value {
    let res = w.get("/cdn-cgi/pyflare/queues").await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

async fn deliver_now(w: &TestWorker, queue: &str) -> Value {
    let res = TestWorker::client()
        .post(w.url(&format!("/cdn-cgi/pyflare/queues/{queue}/deliver")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// The counts once `pred` holds for them (or after 10 s, for the
/// assertion to show).
async fn wait_counts(w: &TestWorker, pred: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..200 {
        let c = counts(w).await;
        if pred(&c) {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    counts(w).await
}

#[tokio::test]
async fn queues_delays_and_batch_timeouts_run_on_pyflares_clock() {
    let w = TestWorker::start("queues").await;
    // later: delivery_delay 30 s, batches of 3, max_batch_timeout 10 s.
    assert_eq!(
        post(&w, "/send", json!({"binding": "LATER", "body": {"n": 1}}))
            .await
            .0,
        200
    );
    assert_eq!(counts(&w).await["later"]["delayed"], 1);
    w.advance_clock(30).await;
    // Due, but the batch waits up to 10 s to fill.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let later = &counts(&w).await["later"];
    assert_eq!(
        (later["pending"].as_i64(), later["delayed"].as_i64()),
        (Some(1), Some(0))
    );
    assert!(received(&w).await.is_empty());
    w.advance_clock(10).await;
    let rows = wait_received(&w, "later", |r| r.len() == 1).await;
    assert_eq!(body(&rows[0]), json!({"n": 1}));

    // A full batch goes at once; delaySeconds 0 overrides delivery_delay.
    let three = json!({"binding": "LATER", "options": {"delaySeconds": 0},
        "messages": [{"body": {"n": 2}}, {"body": {"n": 3}}, {"body": {"n": 4}}]});
    assert_eq!(post(&w, "/send_batch", three).await.0, 200);
    assert_eq!(wait_received(&w, "later", |r| r.len() == 4).await.len(), 4);

    // retry(delaySeconds=40) beats the consumer's retry_delay of 20; a
    // deliver-now request skips the batch timeout.
    let retried =
        json!({"binding": "LATER", "body": {"n": 5, "retry": 40}, "options": {"delaySeconds": 0}});
    assert_eq!(post(&w, "/send", retried).await.0, 200);
    // It answers the counts it starts from (the consumer may be quicker).
    let later = &deliver_now(&w, "later").await["later"];
    let sum = ["pending", "in_flight", "delayed"].map(|k| later[k].as_i64().unwrap());
    assert_eq!(sum.iter().sum::<i64>(), 1, "{later}");
    wait_received(&w, "later", |r| r.len() == 5).await;
    wait_counts(&w, |c| c["later"]["delayed"] == 1).await;
    w.advance_clock(30).await;
    assert_eq!(counts(&w).await["later"]["delayed"], 1);
    w.advance_clock(10).await;
    assert_eq!(counts(&w).await["later"]["pending"], 1);
    deliver_now(&w, "later").await;
    let rows = wait_received(&w, "later", |r| r.len() == 6).await;
    assert_eq!(body(&rows[5]), json!({"n": 5, "retry": 40}));
    assert_eq!(rows[5]["attempts"], 2);
    let c = wait_counts(&w, |c| c["later"]["retried"] == 2).await;
    assert_eq!(c["later"]["acked"], 4, "{c}");
    assert_eq!(c["later"]["retried"], 2, "{c}");
    // One line per batch: queue, acked/size, outcome, duration.
    assert!(w.output().contains("[pyflare] QUEUE later 3/3 ok ("));
    assert!(
        w.wait_for_output("[pyflare] QUEUE later 0/1 ok (", Duration::from_secs(5))
            .await
    );

    // Only loopback clients, and only the worker's consumers.
    let res = TestWorker::client()
        .post(w.url("/cdn-cgi/pyflare/queues/nope/deliver"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}

#[tokio::test]
async fn queues_cli_lists_sends_and_delivers_beside_pyflare_dev() {
    let state = tempfile::tempdir().unwrap();
    let state_path = state.path().to_owned();
    let w = TestWorker::start_in("queues", state, &[]).await;
    let fixture = crate::util::fixture("queues");
    let dir = fixture.to_str().unwrap();
    let persist = state_path.to_str().unwrap();
    // `pyflare queues <args> --dir <fixture> --persist-to <state>`.
    let queues = |args: &[&str]| {
        let mut all = vec!["queues"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--dir", dir, "--persist-to", persist]);
        crate::util::pyflare(&all)
    };
    let (code, out, err) = queues(&["send", "jobs", r#"{"n": 42}"#]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "sent 1 message to jobs\n");
    let rows = wait_received(&w, "jobs", |r| r.len() == 1).await;
    assert_eq!(body(&rows[0]), json!({"n": 42}));

    // later waits for its batch timeout; `queues deliver` cuts it short.
    assert_eq!(
        post(
            &w,
            "/send",
            json!({"binding": "LATER", "body": 7, "options": {"delaySeconds": 0}})
        )
        .await
        .0,
        200
    );
    let (code, out, err) = queues(&["deliver", "later"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "asked pyflare dev to deliver later now\n");
    assert_eq!(wait_received(&w, "later", |r| r.len() == 1).await.len(), 1);

    wait_counts(&w, |c| c["jobs"]["acked"] == 1).await;
    let (code, out, err) = queues(&["list"]);
    assert_eq!(code, 0, "{err}");
    let jobs = out.lines().find(|l| l.starts_with("jobs ")).unwrap();
    assert_eq!(
        jobs.split_whitespace().collect::<Vec<_>>(),
        ["jobs", "0", "0", "0", "1", "0", "0"]
    );
    assert!(out.starts_with("queue "), "{out}");

    let (code, _, err) = queues(&["send", "nope", "1"]);
    assert_eq!(code, 1);
    assert!(err.contains("has no queue named nope"), "{err}");
    assert!(
        err.contains("hint: the queues are: jobs, flaky, later, stress, flaky-dlq, stress-dlq\n"),
        "{err}"
    );
}

#[tokio::test]
async fn queues_kill_9_mid_run_loses_nothing_and_settles_each_message_once() {
    const COUNT: i64 = 1000;
    let w = TestWorker::start("queues").await;
    // stress: batches of 100; a message fails or succeeds by its number
    // alone (multiples of 7 always fail: dead-lettered after 3 attempts;
    // multiples of 3 fail once), so where each ends is known whatever
    // happens in between.
    let (status, answer) = post(&w, "/stress", json!({"start": 1, "count": COUNT})).await;
    assert_eq!(status, 200, "{answer}");
    // Kill pyflare while batches are being delivered.
    let seen = wait_received(&w, "stress", |r| r.len() >= 150).await;
    assert!(seen.len() >= 150);
    eprintln!("killed after {} deliveries", seen.len());
    let state = w.kill_keep_state().await;

    let w = TestWorker::start_in("queues", state, &[]).await;
    let outcome_of = |rows: &[Value], outcome: &str| -> Vec<i64> {
        rows.iter()
            .filter(|r| r["outcome"] == outcome)
            .map(|r| body(r)["n"].as_i64().unwrap())
            .collect()
    };
    let dead_expected = (1..=COUNT).filter(|n| n % 7 == 0).count();
    let acked_expected = COUNT as usize - dead_expected;
    let distinct = |mut v: Vec<i64>| {
        v.sort_unstable();
        v.dedup();
        v
    };
    let stress = wait_received(&w, "stress", |r| {
        distinct(outcome_of(r, "ack")).len() == acked_expected
    })
    .await;
    let dead = wait_received(&w, "stress-dlq", |r| {
        distinct(r.iter().map(|r| body(r)["n"].as_i64().unwrap()).collect()).len() == dead_expected
    })
    .await;
    let acked = outcome_of(&stress, "ack");
    let dead_n: Vec<i64> = dead
        .iter()
        .map(|r| body(r)["n"].as_i64().unwrap())
        .collect();
    let (acked_set, dead_set) = (distinct(acked.clone()), distinct(dead_n.clone()));
    // None lost: every message ended acknowledged or dead-lettered ...
    let all: Vec<i64> = distinct([acked_set.clone(), dead_set.clone()].concat());
    assert_eq!(all, (1..=COUNT).collect::<Vec<_>>());
    // ... never both, and each where its number sends it.
    assert!(acked_set.iter().all(|n| n % 7 != 0));
    assert!(dead_set.iter().all(|n| n % 7 == 0));
    // At least once: only the batch in flight at the kill (at most 100
    // messages) may have been handled twice.
    let twice = (acked.len() - acked_set.len()) + (dead_n.len() - dead_set.len());
    assert!(twice <= 100, "{twice} messages handled twice");
    // Nothing left over once it settles.
    let c = wait_counts(&w, |c| {
        c["stress"]["pending"] == 0 && c["stress"]["in_flight"] == 0 && c["stress"]["delayed"] == 0
    })
    .await;
    assert_eq!(c["stress"]["pending"], 0, "{c}");
    assert_eq!(c["stress"]["in_flight"], 0, "{c}");
    assert_eq!(c["stress"]["delayed"], 0, "{c}");
    eprintln!("handled twice after kill -9: {twice}");
}

#[tokio::test]
async fn queues_survive_reloads_and_wait_while_the_worker_fails_to_load() {
    let project = crate::util::copy_fixture("queues");
    let state = tempfile::tempdir().unwrap();
    let persist = state.path().to_str().unwrap().to_owned();
    let w = TestWorker::spawn(project.path(), state, &[], &[]).await;
    a_reload_never_loses_a_batch_in_flight(&w, project.path()).await;
    batches_wait_while_the_worker_fails_to_load(&w, project.path(), &persist).await;
}

async fn a_reload_never_loses_a_batch_in_flight(w: &TestWorker, project: &std::path::Path) {
    let slow = json!({"binding": "JOBS", "body": {"n": 1, "sleep": 1.5, "ack": true}});
    assert_eq!(post(w, "/send", slow).await.0, 200);
    wait_received(w, "jobs", |r| r.iter().any(|r| r["outcome"] == "started")).await;
    // Save a file while the handler runs.
    let entry = project.join("src/entry.py");
    let text = std::fs::read_to_string(&entry).unwrap();
    std::fs::write(&entry, format!("{text}\n# saved during a batch\n")).unwrap();
    let rows = wait_received(w, "jobs", |r| r.iter().any(|r| r["outcome"] == "ack")).await;
    assert!(rows.iter().any(|r| r["outcome"] == "ack"), "{rows:?}");
    // The batch finished (on the old isolate or, retried, on the new one)
    // and was acknowledged once; nothing is left in the queue.
    let c = wait_counts(w, |c| c["jobs"]["acked"] == 1).await;
    let jobs = &c["jobs"];
    assert_eq!(jobs["acked"], 1, "{jobs}");
    assert_eq!(jobs["pending"], 0, "{jobs}");
    assert_eq!(jobs["in_flight"], 0, "{jobs}");
    assert!(w.output().contains("reload"), "{}", w.output());
}

#[tokio::test]
async fn queues_reach_a_legacy_on_queue_handler() {
    let w = TestWorker::start("queues_legacy").await;
    assert_eq!(w.get("/").await.text().await.unwrap(), "sent");
    let mut seen = String::new();
    for _ in 0..200 {
        seen = w.get("/seen").await.text().await.unwrap();
        if seen != "[]" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(seen, r#"["q:hello:1"]"#);
}

async fn batches_wait_while_the_worker_fails_to_load(
    w: &TestWorker,
    project: &std::path::Path,
    persist: &str,
) {
    let entry = project.join("src/entry.py");
    let good = std::fs::read_to_string(&entry).unwrap();
    std::fs::write(&entry, format!("{good}\ndef broken(:\n")).unwrap();
    assert!(
        w.wait_for_output("SyntaxError", Duration::from_secs(30))
            .await,
        "{}",
        w.output()
    );
    let dir = project.to_str().unwrap();
    let (code, _, err) = crate::util::pyflare(&[
        "queues",
        "send",
        "jobs",
        r#"{"n": 2}"#,
        "--dir",
        dir,
        "--persist-to",
        persist,
    ]);
    assert_eq!(code, 0, "{err}");
    // The consumer finds no worker to take the batch: nothing is counted.
    tokio::time::sleep(Duration::from_millis(600)).await;
    std::fs::write(&entry, &good).unwrap();
    let rows = wait_received(w, "jobs", |r| r.iter().any(|r| body(r)["n"] == 2)).await;
    let second: Vec<&Value> = rows.iter().filter(|r| body(r)["n"] == 2).collect();
    assert_eq!(second.len(), 1, "{rows:?}");
    assert_eq!(second[0]["attempts"], 1);
}
