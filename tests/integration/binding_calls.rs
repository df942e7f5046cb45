//! Binding calls beyond a plain request and reply: synchronous calls from
//! Python (`_pyflare.sync`, for Durable Object storage's synchronous API)
//! and call bodies that stream both ways (KV values as streams).

use crate::util::TestWorker;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

async fn get_json(w: &TestWorker, path: &str) -> Value {
    w.get(path).await.json().await.unwrap()
}

/// The message `_pyflare.sync` raises where it cannot block.
const NOT_IN_A_HANDLER: &str = "pyflare: a synchronous binding call works only once the worker serves (in a handler, or in a callback JavaScript makes), not at import time";

#[tokio::test]
async fn sync_call_returns_the_value_an_earlier_sync_call_wrote() {
    let w = TestWorker::start("binding_calls").await;
    assert_eq!(
        get_json(&w, "/sync/put-get?key=greeting&value=hello%20sync").await,
        json!({"value": {}, "body": "hello sync", "async": "hello sync"})
    );
    // A second write through the same path replaces the first.
    assert_eq!(
        get_json(&w, "/sync/put-get?key=greeting&value=again").await["body"],
        "again"
    );
}

#[tokio::test]
async fn sync_call_raises_the_bindings_error_and_refuses_at_import_time() {
    let w = TestWorker::start("binding_calls").await;
    assert_eq!(
        get_json(&w, "/sync/error").await,
        json!({"error": "JsException", "message": "TypeError: Key name cannot be empty."})
    );
    assert_eq!(
        get_json(&w, "/sync/import-time").await,
        json!({ "error": NOT_IN_A_HANDLER })
    );
}

#[tokio::test]
async fn sync_call_from_a_javascript_callback_blocks_the_isolate_until_answered() {
    // No stack JSPI can suspend: the calls block on pyflare's second
    // connection, and the async API sees what they wrote.
    let w = TestWorker::start("binding_calls").await;
    assert_eq!(
        get_json(&w, "/sync/in-callback").await,
        json!({"body": "written in a callback", "async": "written in a callback"})
    );
    // The isolate serves on, through both connections.
    assert_eq!(
        get_json(&w, "/sync/put-get?key=after&value=still%20here").await["body"],
        "still here"
    );
}

#[tokio::test]
async fn sync_call_cost_per_call_next_to_the_async_call() {
    let w = TestWorker::start("binding_calls").await;
    let modes = ["sync", "raw", "async", "suspend"];
    for mode in modes {
        get_json(&w, &format!("/cost?mode={mode}&n=50")).await;
    }
    // Rounds interleave the modes; the best of each counts, so a busy
    // moment on the machine does not land on one mode only.
    let n = 500;
    let mut best = [f64::MAX; 4];
    for _ in 0..3 {
        for (i, mode) in modes.iter().enumerate() {
            let res = get_json(&w, &format!("/cost?mode={mode}&n={n}")).await;
            assert_eq!(res["n"], json!(n), "{res}");
            best[i] = best[i].min(res["us_per_call"].as_f64().unwrap());
        }
    }
    eprintln!(
        "microseconds per call: sync KV get {:.0}, the same call awaited {:.0}, SDK's await KV.get {:.0}, a stack switch alone {:.1}",
        best[0], best[1], best[2], best[3]
    );
    // A suspended stack costs little next to the call itself; a sync path
    // that queued behind something (a timer, a poll) would cost far more.
    assert!(
        best[0] < 3.0 * best[1] + 200.0,
        "sync {:.0} us per call, the same call awaited {:.0} us",
        best[0],
        best[1]
    );
}

/// A body of `len` bytes sent to pyflare in 64 KiB chunks, as a stream.
fn chunked_body(len: usize) -> (reqwest::Body, [u8; 32]) {
    let chunk: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
    let mut hash = Sha256::new();
    let mut chunks = Vec::new();
    let mut left = len;
    while left > 0 {
        let piece = chunk[..left.min(chunk.len())].to_vec();
        left -= piece.len();
        hash.update(&piece);
        chunks.push(Ok::<_, std::io::Error>(piece));
    }
    (
        reqwest::Body::wrap_stream(futures::stream::iter(chunks)),
        hash.finalize().into(),
    )
}

#[tokio::test]
async fn kv_put_of_a_stream_and_get_as_a_stream_carry_25_mib() {
    let w = TestWorker::start("kv_basic").await;
    let len = 25 * 1024 * 1024;
    let (body, sent) = chunked_body(len);
    let res = TestWorker::client()
        .post(w.url("/put-stream?key=big"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());

    let res = w.get("/get?key=big&type=stream").await;
    assert_eq!(res.status(), 200);
    let got = res.bytes().await.unwrap();
    assert_eq!(got.len(), len);
    assert_eq!(<[u8; 32]>::from(Sha256::digest(&got)), sent);

    // One byte more: the stream is counted to its end, and nothing is stored.
    let (body, _) = chunked_body(len + 1);
    let res: Value = TestWorker::client()
        .post(w.url("/put-stream?key=bigger"))
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        res,
        json!({"error": "JsException", "message": "Error: KV PUT failed: 413 Value length of 26214401 exceeds limit of 26214400."})
    );
    assert_eq!(get_json(&w, "/get?key=bigger").await["value"], Value::Null);
}
