//! HTTP fidelity through `pyflare dev`: what the worker sees of a request
//! and what the client sees of the worker's response.

use crate::util::{TestWorker, peak_rss_kib, reset_peak_rss, rss_kib};
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn http_hello_world_matches_cloudflare_example() {
    let w = TestWorker::start("hello").await;
    let res = w.get("/").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/plain;charset=UTF-8");
    // A body known in full carries its length, as workerd sends it.
    assert_eq!(res.headers()["content-length"], "25");
    assert!(res.headers().get("transfer-encoding").is_none());
    assert_eq!(res.text().await.unwrap(), "Hello from Python Worker!");
    assert!(
        w.output().contains("[pyflare] GET / 200 OK ("),
        "{}",
        w.output()
    );
}

#[tokio::test]
async fn http_request_method_url_headers_and_body_reach_python() {
    let w = TestWorker::start("http").await;
    let res = TestWorker::client()
        .patch(w.url("/inspect?a=1&b=two%20words&a=3"))
        .header("x-repeated", "one")
        .header("x-repeated", "two")
        .header("x-custom", "Value With Case")
        .body("payload text")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/json");
    let seen: serde_json::Value = res.json().await.unwrap();
    assert_eq!(seen["method"], "PATCH");
    assert_eq!(seen["url"], w.url("/inspect?a=1&b=two%20words&a=3"));
    assert_eq!(seen["body"], "payload text");
    let headers = seen["headers"].as_array().unwrap();
    let get = |name: &str| {
        headers
            .iter()
            .find(|pair| pair[0] == name)
            .map(|pair| pair[1].as_str().unwrap().to_owned())
    };
    assert_eq!(get("x-repeated").as_deref(), Some("one, two"));
    assert_eq!(get("x-custom").as_deref(), Some("Value With Case"));
    assert_eq!(get("content-length").as_deref(), Some("12"));
}

#[tokio::test]
async fn http_binary_bodies_round_trip_exactly() {
    let w = TestWorker::start("http").await;
    let res = w.get("/bytes").await;
    assert_eq!(res.headers()["content-type"], "application/octet-stream");
    let expected: Vec<u8> = (0..=255u8).collect();
    assert_eq!(res.bytes().await.unwrap().to_vec(), expected);

    let res = w.get("/big").await;
    assert_eq!(res.headers()["content-length"], "3000000");
    let body = res.bytes().await.unwrap();
    assert_eq!(body.len(), 3_000_000);
    assert!(body.chunks(250).all(|c| c.iter().copied().eq(0..250u8)));

    // Every byte value, several chunks long, echoed back by Python.
    let payload: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let res = TestWorker::client()
        .post(w.url("/echo"))
        .header("content-type", "application/x-test")
        .body(payload.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/x-test");
    let body = res.bytes().await.unwrap();
    assert_eq!(body.len(), payload.len());
    assert!(body.as_ref() == payload.as_slice());
}

#[tokio::test]
async fn http_hundred_megabyte_upload_streams_with_bounded_memory() {
    let w = TestWorker::start("http").await;
    const MIB: usize = 1024 * 1024;
    const CHUNKS: usize = 100;
    // Counted from here: what pyflare's start and its standby host took is
    // not the upload's.
    reset_peak_rss(w.pid());
    let before = rss_kib(w.pid());
    let chunk: Vec<u8> = (0..MIB).map(|i| (i % 251) as u8).collect();
    let mut expected = Sha256::new();
    for _ in 0..CHUNKS {
        expected.update(&chunk);
    }
    let stream = futures::stream::iter(
        (0..CHUNKS).map(move |_| Ok::<_, std::io::Error>(bytes::Bytes::from(chunk.clone()))),
    );
    let res = TestWorker::client()
        .post(w.url("/echo"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut got = Sha256::new();
    let mut len = 0;
    let mut body = res.bytes_stream();
    use futures::StreamExt;
    while let Some(piece) = body.next().await {
        let piece = piece.unwrap();
        len += piece.len();
        got.update(&piece);
    }
    assert_eq!(len, CHUNKS * MIB);
    assert_eq!(got.finalize(), expected.finalize());
    // pyflare itself never held the body: its memory grew by far less than
    // the 100 MB that went through it. (Alone, it grows by under 10 MB; under
    // a full test run's load its allocator's arenas have kept up to 29 MB
    // of what the chunks used.)
    let peak = peak_rss_kib(w.pid());
    assert!(
        peak.saturating_sub(before) < 40 * 1024,
        "pyflare's RSS grew from {before} KiB to a peak of {peak} KiB"
    );
}

#[tokio::test]
async fn http_repeated_set_cookie_headers_stay_separate() {
    let w = TestWorker::start("http").await;
    let res = w.get("/cookies").await;
    let cookies: Vec<_> = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(cookies, vec!["a=1; Path=/", "b=2; Path=/"]);
    assert_eq!(res.headers()["x-one"], "1");
}

#[tokio::test]
async fn http_status_text_reaches_the_client() {
    let w = TestWorker::start("http").await;
    let authority = w.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&authority).await.unwrap();
    stream
        .write_all(
            format!("GET /status HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    assert!(raw.starts_with("HTTP/1.1 418 Local Teapot\r\n"), "{raw}");
    assert!(raw.contains("\r\ncontent-length: 15\r\n"), "{raw}");
    assert!(raw.ends_with("\r\n\r\nshort and stout"), "{raw}");
}

#[tokio::test]
async fn http_json_redirect_and_empty_responses() {
    let w = TestWorker::start("http").await;
    let res = w.get("/json").await;
    assert_eq!(res.headers()["content-type"], "application/json");
    assert_eq!(
        res.json::<serde_json::Value>().await.unwrap(),
        serde_json::json!({"ok": true, "items": [1, 2, 3]})
    );

    let res = w.get("/redirect").await;
    assert_eq!(res.status(), 301);
    assert_eq!(res.headers()["location"], "https://example.com/elsewhere");

    let res = w.get("/empty").await;
    assert_eq!(res.status(), 204);
    assert!(res.bytes().await.unwrap().is_empty());

    let res = TestWorker::client().head(w.url("/")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn http_streamed_response_arrives_in_pieces() {
    let w = TestWorker::start("http").await;
    let started = Instant::now();
    let mut res = w.get("/stream").await;
    // The head arrives before the producer (5 chunks, 50 ms apart) is done.
    let head_after = started.elapsed();
    assert_eq!(res.headers()["transfer-encoding"], "chunked");
    assert!(res.headers().get("content-length").is_none());
    let mut pieces = vec![];
    while let Some(piece) = res.chunk().await.unwrap() {
        pieces.push((started.elapsed(), piece));
    }
    let body: Vec<u8> = pieces.iter().flat_map(|(_, p)| p.to_vec()).collect();
    assert_eq!(
        String::from_utf8(body).unwrap(),
        "chunk 0\nchunk 1\nchunk 2\nchunk 3\nchunk 4\n"
    );
    let last = pieces.last().unwrap().0;
    assert!(pieces.len() > 1, "one piece only: not streamed");
    assert!(
        last >= head_after + Duration::from_millis(100),
        "head {head_after:?}, last {last:?}"
    );
}

#[tokio::test]
async fn http_client_that_goes_away_stops_an_endless_stream() {
    let w = TestWorker::start("http").await;
    let mut res = w.get("/forever").await;
    assert_eq!(res.chunk().await.unwrap().unwrap().as_ref(), b"tick\n");
    drop(res);
    let mut state = serde_json::Value::Null;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        state = w.get("/forever-state").await.json().await.unwrap();
        if state["stopped"] == true {
            break;
        }
    }
    assert_eq!(state["stopped"], true, "the stream kept producing: {state}");
    // The worker still serves.
    assert_eq!(
        w.get("/").await.text().await.unwrap(),
        "Hello from Python Worker!"
    );
}
