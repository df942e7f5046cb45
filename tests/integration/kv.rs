//! Workers KV through `pyflare dev`: the `kv_basic` fixture calls every
//! method through Cloudflare's SDK and answers JSON; errors come back as
//! `{"error", "message"}` exactly as Python sees them.

use crate::util::TestWorker;
use serde_json::{Value, json};

async fn get_json(w: &TestWorker, path: &str) -> Value {
    w.get(path).await.json().await.unwrap()
}

fn error(message: &str) -> Value {
    json!({"error": "JsException", "message": message})
}

#[tokio::test]
async fn kv_put_get_delete_round_trip_and_namespaces() {
    let w = TestWorker::start("kv_basic").await;
    assert_eq!(
        get_json(&w, "/put?key=greeting&value=h%C3%A9llo").await,
        json!({"ok": true})
    );
    assert_eq!(
        get_json(&w, "/get?key=greeting").await,
        json!({"value": "héllo", "python_type": "str"})
    );
    // SAME_KV uses MY_KV's namespace (preview_id); OTHER_KV is separate.
    assert_eq!(
        get_json(&w, "/get?key=greeting&ns=SAME_KV").await["value"],
        "héllo"
    );
    assert_eq!(
        get_json(&w, "/get?key=greeting&ns=OTHER_KV").await["value"],
        Value::Null
    );
    assert_eq!(
        get_json(&w, "/delete?key=greeting").await,
        json!({"ok": true})
    );
    assert_eq!(
        get_json(&w, "/get?key=greeting").await["value"],
        Value::Null
    );
    // Deleting a missing key succeeds.
    assert_eq!(
        get_json(&w, "/delete?key=greeting").await,
        json!({"ok": true})
    );
    // An empty value is a value (its body is one empty last chunk).
    assert_eq!(
        get_json(&w, "/put?key=blank&value=").await,
        json!({"ok": true})
    );
    assert_eq!(
        get_json(&w, "/get?key=blank").await,
        json!({"value": "", "python_type": "str"})
    );
}

#[tokio::test]
async fn kv_get_types_text_json_array_buffer_stream() {
    let w = TestWorker::start("kv_basic").await;
    get_json(&w, "/put?key=doc&value=%7B%22a%22%3A%5B1%2C2%5D%7D").await;
    assert_eq!(
        get_json(&w, "/get?key=doc&type=json").await["value"],
        json!({"a": [1, 2]})
    );
    assert_eq!(
        get_json(&w, "/get-json-kwarg?key=doc").await["value"],
        json!({"a": [1, 2]})
    );

    let payload: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let res = TestWorker::client()
        .post(w.url("/put-bytes?key=bin"))
        .body(payload.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        w.get("/get?key=bin&type=arrayBuffer")
            .await
            .bytes()
            .await
            .unwrap()
            .to_vec(),
        payload
    );
    assert_eq!(
        w.get("/get?key=bin&type=stream")
            .await
            .bytes()
            .await
            .unwrap()
            .to_vec(),
        payload
    );

    // A ReadableStream value (the request body) is stored whole.
    let res = TestWorker::client()
        .post(w.url("/put-stream?key=streamed"))
        .body("streamed value")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        get_json(&w, "/get?key=streamed").await["value"],
        "streamed value"
    );

    assert_eq!(
        get_json(&w, "/get?key=doc&type=xml").await,
        error(
            "TypeError: Unknown response type. Possible types are \"text\", \"arrayBuffer\", \"json\", and \"stream\"."
        )
    );
    assert_eq!(
        get_json(&w, "/get?key=doc&cacheTtl=10").await,
        error("Error: KV GET failed: 400 Invalid cache_ttl of 10. Cache TTL must be at least 30.")
    );
    assert_eq!(
        get_json(&w, "/get?key=doc&cacheTtl=60").await["value"],
        "{\"a\":[1,2]}"
    );
}

#[tokio::test]
async fn kv_metadata_and_bulk_gets() {
    let w = TestWorker::start("kv_basic").await;
    get_json(&w, "/put?key=a&value=1&metadata=%7B%22tag%22%3A%22x%22%7D").await;
    get_json(&w, "/put?key=b&value=%5B2%5D").await;
    assert_eq!(
        get_json(&w, "/get-with-metadata?key=a").await,
        json!({"value": "1", "metadata": {"tag": "x"}})
    );
    assert_eq!(
        get_json(&w, "/get-with-metadata?key=b").await,
        json!({"value": "[2]", "metadata": null})
    );
    assert_eq!(
        get_json(&w, "/get-with-metadata?key=missing").await,
        json!({"value": null, "metadata": null})
    );
    assert_eq!(
        get_json(&w, "/bulk?keys=a,b,missing").await["entries"],
        json!({"a": "1", "b": "[2]", "missing": null})
    );
    assert_eq!(
        get_json(&w, "/bulk?keys=a,b&type=json").await["entries"],
        json!({"a": 1, "b": [2]})
    );
    assert_eq!(
        get_json(&w, "/bulk?keys=a,missing&meta=1").await["entries"],
        json!({"a": {"value": "1", "metadata": {"tag": "x"}}, "missing": {"value": null, "metadata": null}})
    );
    let many: Vec<String> = (0..101).map(|i| format!("k{i}")).collect();
    assert_eq!(
        get_json(&w, &format!("/bulk?keys={}", many.join(","))).await,
        error("Error: KV GET_BULK failed: 400 You can request a maximum of 100 keys")
    );
    assert_eq!(
        get_json(&w, "/bulk?keys=a&type=arrayBuffer").await,
        error(
            "Error: KV GET_BULK failed: 400 \"arrayBuffer\" is not a valid type. Use \"json\" or \"text\""
        )
    );
    get_json(&w, "/put?key=text&value=not%20json").await;
    assert_eq!(
        get_json(&w, "/bulk?keys=a,text&type=json").await,
        error(
            "Error: KV GET_BULK failed: 400 At least one of the requested keys corresponds to a non-json value"
        )
    );
    let big_metadata = format!("%7B%22x%22%3A%22{}%22%7D", "y".repeat(1017));
    assert_eq!(
        get_json(&w, &format!("/put?key=m&value=v&metadata={big_metadata}")).await,
        error("Error: KV PUT failed: 413 Metadata length of 1025 exceeds limit of 1024.")
    );
}

#[tokio::test]
async fn kv_key_and_value_limits() {
    let w = TestWorker::start("kv_basic").await;
    assert_eq!(
        get_json(&w, "/get?key=").await,
        error("TypeError: Key name cannot be empty.")
    );
    assert_eq!(
        get_json(&w, "/put?key=.&value=x").await,
        error("TypeError: \".\" is not allowed as a key name.")
    );
    assert_eq!(
        get_json(&w, "/delete?key=..").await,
        error("TypeError: \"..\" is not allowed as a key name.")
    );
    let long = "k".repeat(513);
    assert_eq!(
        get_json(&w, &format!("/get?key={long}")).await,
        error(
            "Error: KV GET failed: 414 UTF-8 encoded length of 513 exceeds key length limit of 512."
        )
    );
    assert_eq!(
        get_json(&w, &format!("/put?key={long}&value=x")).await,
        error(
            "Error: KV PUT failed: 414 UTF-8 encoded length of 513 exceeds key length limit of 512."
        )
    );
    assert_eq!(
        get_json(&w, &format!("/put?key={}&value=x", "k".repeat(512))).await,
        json!({"ok": true})
    );
    assert_eq!(
        get_json(&w, "/put-invalid?key=n").await,
        error(
            "TypeError: KV put() accepts only strings, ArrayBuffers, ArrayBufferViews, and ReadableStreams as values."
        )
    );
    let too_big = vec![b'x'; 25 * 1024 * 1024 + 1];
    let res: Value = TestWorker::client()
        .post(w.url("/put-bytes?key=big"))
        .body(too_big)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        res,
        error("Error: KV PUT failed: 413 Value length of 26214401 exceeds limit of 26214400.")
    );
    // Exactly 25 MiB is allowed, and the worker keeps serving.
    let res = TestWorker::client()
        .post(w.url("/put-bytes?key=big"))
        .body(vec![b'x'; 25 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        w.get("/get?key=big&type=arrayBuffer")
            .await
            .bytes()
            .await
            .unwrap()
            .len(),
        25 * 1024 * 1024
    );
}

#[tokio::test]
async fn kv_expiration_follows_the_clock() {
    let w = TestWorker::start("kv_basic").await;
    assert_eq!(
        get_json(&w, "/put?key=t&value=v&ttl=30").await,
        error(
            "Error: KV PUT failed: 400 Invalid expiration_ttl of 30. Expiration TTL must be at least 60."
        )
    );
    assert_eq!(
        get_json(&w, "/put?key=t&value=v&ttl=0").await,
        error(
            "Error: KV PUT failed: 400 Invalid expiration_ttl of 0. Please specify integer greater than 0."
        )
    );
    assert_eq!(
        get_json(&w, "/put?key=t&value=v&expiration=1000").await,
        error(
            "Error: KV PUT failed: 400 Invalid expiration of 1000. Please specify integer greater than the current number of seconds since the UNIX epoch."
        )
    );
    assert_eq!(
        get_json(&w, "/put?key=short&value=v&ttl=60").await,
        json!({"ok": true})
    );
    assert_eq!(
        get_json(&w, "/put-options-dict?key=long&value=v").await,
        json!({"ok": true})
    );
    let listed = get_json(&w, "/list").await;
    let keys = listed["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0]["name"], "long");
    assert_eq!(keys[0]["metadata"], json!({"style": "dict"}));
    assert!(keys[0]["expiration"].as_u64().unwrap() > keys[1]["expiration"].as_u64().unwrap());

    w.advance_clock(61).await;
    assert_eq!(get_json(&w, "/get?key=short").await["value"], Value::Null);
    assert_eq!(get_json(&w, "/get?key=long").await["value"], "v");
    let listed = get_json(&w, "/list").await;
    assert_eq!(listed["keys"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn kv_list_prefix_pages_and_byte_order() {
    let w = TestWorker::start("kv_basic").await;
    for key in ["b", "a", "user:2", "user:1", "user:10", "Z", "é"] {
        get_json(&w, &format!("/put?key={key}&value=v")).await;
    }
    let all = get_json(&w, "/list").await;
    let names: Vec<&str> = all["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Z", "a", "b", "user:1", "user:10", "user:2", "é"]);
    assert_eq!(all["list_complete"], true);
    assert_eq!(all["cursor"], Value::Null);

    let first = get_json(&w, "/list?prefix=user:&limit=2").await;
    assert_eq!(
        first["keys"],
        json!([{"name": "user:1"}, {"name": "user:10"}])
    );
    assert_eq!(first["list_complete"], false);
    let cursor = first["cursor"].as_str().unwrap().to_owned();
    let second = get_json(&w, &format!("/list?prefix=user:&limit=2&cursor={cursor}")).await;
    assert_eq!(second["keys"], json!([{"name": "user:2"}]));
    assert_eq!(second["list_complete"], true);

    assert_eq!(
        get_json(&w, "/list?limit=1001").await,
        error(
            "Error: KV GET failed: 400 Invalid key_count_limit of 1001. Please specify an integer less than 1000."
        )
    );
    assert_eq!(
        get_json(&w, "/list?limit=0").await,
        error(
            "Error: KV GET failed: 400 Invalid key_count_limit of 0. Please specify an integer greater than 0."
        )
    );
}

#[tokio::test]
async fn kv_write_survives_kill_9_of_pyflare() {
    let w = TestWorker::start("kv_basic").await;
    assert_eq!(
        get_json(&w, "/put?key=durable&value=kept").await,
        json!({"ok": true})
    );
    let state = w.kill_keep_state().await;
    let w = TestWorker::start_in("kv_basic", state, &[]).await;
    assert_eq!(get_json(&w, "/get?key=durable").await["value"], "kept");
}
