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

async fn received(w: &TestWorker) -> Vec<Value> {
    w.get("/received").await.json().await.unwrap()
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
async fn queues_deliver_every_content_type_through_the_sdk() {
    let w = TestWorker::start("queues").await;
    let (status, sent) = post(&w, "/send", json!({"binding": "JOBS", "body": {"n": 1}})).await;
    assert_eq!(status, 200, "{sent}");
    assert_eq!(sent["backlogCount"], 1);
    assert_eq!(sent["backlogBytes"], 7);
    assert_eq!(sent["oldest"], "datetime");
    let text = json!({"binding": "JOBS", "body": "hi", "options": {"contentType": "text"}});
    assert_eq!(post(&w, "/send", text).await.0, 200);
    assert_eq!(
        post(
            &w,
            "/send_bytes",
            json!({"binding": "JOBS", "body": [0, 1, 255]})
        )
        .await
        .0,
        200
    );
    assert_eq!(post(&w, "/send_date", json!({})).await.0, 200);
    let rows = wait_received(&w, "jobs", |r| r.len() == 4).await;
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
    assert!(
        w.wait_for_output("[pyflare] QUEUE jobs 1/1 ok (", Duration::from_secs(5))
            .await,
        "{}",
        w.output()
    );
}

#[tokio::test]
async fn queues_producer_errors_are_cloudflares() {
    let w = TestWorker::start("queues").await;
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
        let (status, answer) = post(&w, path, request).await;
        assert_eq!(status, 400, "{path}: {answer}");
        assert_eq!(answer["message"], message, "{path}");
    }
    // Nothing refused was stored.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(received(&w).await.is_empty());
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
    assert!(
        w.output()
            .contains("ValueError: a batch of 3 from flaky failed")
    );

    // jobs has no dead letter queue: a message retried each time is
    // dropped after max_retries (3) + 1 deliveries.
    let retry = json!({"binding": "JOBS", "body": {"retry": true}});
    assert_eq!(post(&w, "/send", retry).await.0, 200);
    let jobs = wait_received(&w, "jobs", |r| r.len() == 4).await;
    let attempts: Vec<i64> = jobs
        .iter()
        .map(|r| r["attempts"].as_i64().unwrap())
        .collect();
    assert_eq!(attempts, [1, 2, 3, 4]);
    let id = jobs[0]["id"].as_str().unwrap();
    assert!(
        w.wait_for_output(
            &format!("Dropped message \"{id}\" on queue \"jobs\" after 4 failed attempts!"),
            Duration::from_secs(5)
        )
        .await
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(wait_received(&w, "jobs", |r| r.len() == 4).await.len(), 4);
}
