//! R2 through `pyflare dev`: the `r2` fixture calls every bucket method
//! through Cloudflare's SDK and answers JSON; errors come back as
//! `{"error", "message"}` exactly as Python sees them.

use crate::util::TestWorker;
use serde_json::{Value, json};

pub(crate) fn client() -> reqwest::Client {
    TestWorker::client()
}

pub(crate) fn enc(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

async fn post(w: &TestWorker, path: &str, body: impl Into<reqwest::Body>) -> Value {
    let res = client().post(w.url(path)).body(body).send().await.unwrap();
    res.json().await.unwrap()
}

pub(crate) async fn get(w: &TestWorker, path: &str) -> Value {
    w.get(path).await.json().await.unwrap()
}

pub(crate) async fn put(w: &TestWorker, key: &str, value: &str, opts: Option<Value>) -> Value {
    let mut path = format!("/put?key={}", enc(key));
    if let Some(opts) = opts {
        path.push_str(&format!("&opts={}", enc(&opts.to_string())));
    }
    post(w, &path, value.to_owned()).await
}

pub(crate) async fn get_with(w: &TestWorker, key: &str, opts: Value, read: &str) -> Value {
    get(
        w,
        &format!(
            "/get?key={}&opts={}&read={read}",
            enc(key),
            enc(&opts.to_string())
        ),
    )
    .await
}

fn md5_hex(bytes: &[u8]) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest(bytes))
}

fn error(message: &str) -> Value {
    json!({"error": "JsException", "message": message})
}

pub(crate) async fn put_get_head_delete_with_object_shapes(w: &TestWorker) {
    let opts = json!({
        "httpMetadata": {"contentType": "text/plain", "cacheControl": "max-age=60", "cacheExpiry": 1_900_000_000_000u64},
        "customMetadata": {"owner": "ada"},
    });
    let stored = put(w, "dir/héllo.txt", "hello world", Some(opts)).await;
    let object = &stored["object"];
    assert_eq!(object["class"], "HeadResult", "{stored}");
    assert_eq!(object["key"], "dir/héllo.txt");
    assert_eq!(object["size"], 11);
    let etag = md5_hex(b"hello world");
    assert_eq!(object["etag"], etag);
    assert_eq!(object["httpEtag"], format!("\"{etag}\""));
    assert_eq!(object["version"].as_str().unwrap().len(), 32);
    assert_eq!(object["checksums"], json!({"md5": etag}));
    assert_eq!(object["storageClass"], "Standard");
    assert_eq!(object["range"], Value::Null);
    assert_eq!(
        object["httpMetadata"],
        json!({"contentType": "text/plain", "cacheControl": "max-age=60", "cacheExpiry": 1_900_000_000_000u64})
    );
    assert_eq!(object["customMetadata"], json!({"owner": "ada"}));

    let head = get(w, &format!("/head?key={}", enc("dir/héllo.txt"))).await;
    assert_eq!(head["object"]["class"], "HeadResult");
    assert_eq!(head["object"]["version"], object["version"]);
    assert_eq!(head["object"]["uploaded"], object["uploaded"]);
    assert_eq!(head["object"]["range"], json!({"offset": 0, "length": 11}));

    for (read, value) in [
        ("text", json!("hello world")),
        ("arrayBuffer", json!(hex::encode("hello world"))),
        (
            "blob",
            json!({"size": 11, "type": "text/plain", "text": "hello world"}),
        ),
    ] {
        let got = get_with(w, "dir/héllo.txt", json!({}), read).await;
        assert_eq!(got["object"]["class"], "GetResult", "{got}");
        assert_eq!(got["value"], value, "{read}");
    }
    // Same bucket through another binding; another bucket is separate.
    let same = get(w, &format!("/get?b=SAME&key={}", enc("dir/héllo.txt"))).await;
    assert_eq!(same["value"], "hello world");
    let other = get(w, &format!("/get?b=OTHER&key={}", enc("dir/héllo.txt"))).await;
    assert_eq!(other, json!({"object": null}));

    // The body as a stream a Response takes, with writeHttpMetadata.
    let res = w
        .get(&format!("/get?key={}&read=body", enc("dir/héllo.txt")))
        .await;
    assert_eq!(res.headers()["content-type"], "text/plain");
    assert_eq!(res.headers()["cache-control"], "max-age=60");
    assert_eq!(res.headers()["expires"], "Sun, 17 Mar 2030 17:46:40 GMT");
    assert_eq!(res.headers()["etag"], format!("\"{etag}\""));
    assert_eq!(res.text().await.unwrap(), "hello world");

    put(w, "j", "{\"a\": [1, 2]}", None).await;
    assert_eq!(
        get_with(w, "j", json!({}), "json").await["value"],
        json!({"a": [1, 2]})
    );
    // Keyword options, as Python users may write them.
    let kw = get(w, "/put-kwargs?key=kw").await;
    assert_eq!(kw["object"]["customMetadata"], json!({"style": "kwargs"}));

    assert_eq!(
        get(w, &format!("/delete?keys={}", enc("\"dir/héllo.txt\""))).await,
        json!({"ok": true})
    );
    assert_eq!(
        get(w, &format!("/get?key={}", enc("dir/héllo.txt"))).await,
        json!({"object": null})
    );
    assert_eq!(get(w, "/head?key=missing").await, json!({"object": null}));
    // Deleting missing keys is not an error; a list deletes them all.
    assert_eq!(
        get(
            w,
            &format!("/delete?keys={}", enc("[\"j\", \"kw\", \"nope\"]"))
        )
        .await,
        json!({"ok": true})
    );
    assert_eq!(get(w, "/list").await["keys"], json!([]));
}

pub(crate) async fn values_of_every_type_and_checksums(w: &TestWorker) {
    for kind in ["bytes", "str", "stream", "blob", "arraybuffer"] {
        let out = post(w, &format!("/put?key={kind}&kind={kind}"), "value-of-it").await;
        assert_eq!(out["object"]["size"], 11, "{kind}: {out}");
        let got = get(w, &format!("/get?key={kind}")).await;
        assert_eq!(got["value"], "value-of-it", "{kind}");
    }
    // None stores an empty object.
    let out = post(w, "/put?key=none&kind=none", "").await;
    assert_eq!(out["object"]["size"], 0);
    assert_eq!(get(w, "/get?key=none").await["value"], "");
    let bad = post(w, "/put?key=x&kind=int", "").await;
    assert_eq!(bad["error"], "JsException", "{bad}");
    assert!(
        bad["message"].as_str().unwrap().starts_with("TypeError: "),
        "{bad}"
    );

    // Checksums: the right one is kept, a wrong one fails with R2's text.
    use sha2::Digest;
    let sha256 = hex::encode(sha2::Sha256::digest(b"abc"));
    let ok = put(w, "c", "abc", Some(json!({"sha256": sha256}))).await;
    assert_eq!(
        ok["object"]["checksums"],
        json!({"md5": md5_hex(b"abc"), "sha256": sha256})
    );
    let wrong = "0".repeat(32);
    let bad = put(w, "c2", "abc", Some(json!({"md5": wrong}))).await;
    assert_eq!(
        bad,
        error(&format!(
            "Error: put: The MD5 checksum you specified did not match what we received.\nYou provided a MD5 checksum with value: {wrong}\nActual MD5 was: {} (10037)",
            md5_hex(b"abc")
        ))
    );
    assert_eq!(get(w, "/head?key=c2").await, json!({"object": null}));
}

pub(crate) async fn list(w: &TestWorker, opts: Value) -> Value {
    get(w, &format!("/list?opts={}", enc(&opts.to_string()))).await
}

pub(crate) async fn list_pages_prefixes_and_limits(w: &TestWorker) {
    for key in ["a/1", "a/2", "a/b/3", "b", "c/x", "é", "z"] {
        put(w, key, key, Some(json!({"customMetadata": {"k": key}}))).await;
    }
    // Key byte order (é is 0xC3 0xA9, after z).
    assert_eq!(
        list(w, json!({})).await["keys"],
        json!(["a/1", "a/2", "a/b/3", "b", "c/x", "z", "é"])
    );
    let page = list(w, json!({"limit": 2})).await;
    assert_eq!(page["keys"], json!(["a/1", "a/2"]));
    assert_eq!(page["truncated"], true);
    let next = list(w, json!({"limit": 2, "cursor": page["cursor"]})).await;
    assert_eq!(next["keys"], json!(["a/b/3", "b"]));
    let rest = list(w, json!({"limit": 10, "cursor": next["cursor"]})).await;
    assert_eq!(rest["keys"], json!(["c/x", "z", "é"]));
    assert_eq!(rest["truncated"], false);
    assert_eq!(rest["cursor"], Value::Null);
    // Delimiter: S3-style prefixes up to and including the delimiter.
    let top = list(w, json!({"delimiter": "/"})).await;
    assert_eq!(top["keys"], json!(["b", "z", "é"]));
    assert_eq!(top["delimitedPrefixes"], json!(["a/", "c/"]));
    let under_a = list(w, json!({"delimiter": "/", "prefix": "a/"})).await;
    assert_eq!(under_a["keys"], json!(["a/1", "a/2"]));
    assert_eq!(under_a["delimitedPrefixes"], json!(["a/b/"]));
    // A page that ends on a group skips the whole group.
    let grouped = list(w, json!({"delimiter": "/", "limit": 1})).await;
    assert_eq!(grouped["delimitedPrefixes"], json!(["a/"]));
    let after = list(
        w,
        json!({"delimiter": "/", "limit": 1, "cursor": grouped["cursor"]}),
    )
    .await;
    assert_eq!(after["keys"], json!(["b"]));
    assert_eq!(
        list(w, json!({"startAfter": "b"})).await["keys"],
        json!(["c/x", "z", "é"])
    );
    // Metadata only when included.
    let plain = list(w, json!({"prefix": "b"})).await;
    assert_eq!(plain["objects"][0]["customMetadata"], json!({}));
    let with = list(w, json!({"prefix": "b", "include": ["customMetadata"]})).await;
    assert_eq!(with["objects"][0]["customMetadata"], json!({"k": "b"}));
    assert_eq!(with["objects"][0]["httpMetadata"], json!({}));
    for limit in [0, 1001] {
        assert_eq!(
            list(w, json!({ "limit": limit })).await,
            error("Error: list: MaxKeys params must be positive integer <= 1000. (10022)")
        );
    }
}

pub(crate) async fn errors_as_cloudflare_words_them(w: &TestWorker) {
    let long = "k".repeat(1025);
    assert_eq!(
        put(w, &long, "x", None).await,
        error("Error: put: The specified object name is not valid. (10020)")
    );
    assert_eq!(
        get(w, &format!("/get?key={long}")).await,
        error("Error: get: The specified object name is not valid. (10020)")
    );
    // 1,024 bytes is a valid key.
    let longest = "é".repeat(512);
    assert_eq!(put(w, &longest, "x", None).await["object"]["size"], 1);
    let big = json!({"customMetadata": {"k": "v".repeat(2048)}});
    assert_eq!(
        put(w, "m", "x", Some(big)).await,
        error(
            "Error: put: Your metadata headers exceed the maximum allowed metadata size. (10012)"
        )
    );
    assert_eq!(
        put(w, "c", "abc", Some(json!({"md5": "00"}))).await,
        error("TypeError: MD5 is 32 hex characters, not 2")
    );
    let two = json!({"md5": md5_hex(b"abc"), "sha1": "a9993e364706816aba3e25717850c26c9cd0d89d"});
    assert_eq!(
        put(w, "c", "abc", Some(two)).await,
        error("TypeError: You cannot specify multiple hashing algorithms.")
    );
    assert_eq!(
        post(w, "/put?key=c&kind=int", "").await,
        error(
            "TypeError: Failed to execute 'put' on 'R2Bucket': parameter 2 is not of type 'ReadableStream or ArrayBuffer or ArrayBufferView or string or Blob'."
        )
    );
    assert_eq!(
        get_with(w, "c", json!({"range": {"offset": -1}}), "text").await,
        error(
            "RangeError: Invalid range. Starting offset (-1) must be greater than or equal to 0."
        )
    );
    let id = create_upload(w, "mp", None).await;
    assert_eq!(
        upload_part(w, "mp", &id, 0, "a", 1).await,
        error(
            "TypeError: Part number must be between 1 and 10000 (inclusive). Actual value was: 0"
        )
    );
    let keys: Vec<String> = (0..1001).map(|i| i.to_string()).collect();
    let res = client()
        .post(w.url("/delete"))
        .query(&[("keys", serde_json::to_string(&keys).unwrap())])
        .send()
        .await
        .unwrap();
    let res: Value = res.json().await.unwrap();
    assert!(res["message"].as_str().unwrap().contains("1000"), "{res}");
}

pub(crate) async fn conditionals_and_ranges(w: &TestWorker) {
    let first = put(w, "k", "0123456789", None).await["object"].clone();
    let etag = first["etag"].as_str().unwrap().to_owned();
    let uploaded = first["uploaded"].as_u64().unwrap();
    let cond = |c: Value| json!({ "onlyIf": c });
    let has_body = |v: &Value| v["hasBody"] == true;

    // get: a failing condition answers the object without a body.
    for (c, holds) in [
        (json!({"etagMatches": etag}), true),
        (json!({"etagMatches": format!("\"{etag}\"")}), true),
        (json!({"etagMatches": "*"}), true),
        (json!({"etagMatches": "nope"}), false),
        (json!({"etagMatches": format!("W/\"{etag}\"")}), false),
        (json!({"etagDoesNotMatch": etag}), false),
        (json!({"etagDoesNotMatch": format!("W/\"{etag}\"")}), false),
        (json!({"etagDoesNotMatch": "nope"}), true),
        (json!({"etagDoesNotMatch": "*"}), false),
        (json!({"uploadedBefore": uploaded + 1000}), true),
        (json!({"uploadedBefore": uploaded}), false),
        (json!({"uploadedAfter": uploaded - 1000}), true),
        (json!({"uploadedAfter": uploaded}), false),
        // A passing etagMatches waives uploadedBefore; a passing
        // etagDoesNotMatch waives uploadedAfter.
        (
            json!({"etagMatches": etag, "uploadedBefore": uploaded - 1000}),
            true,
        ),
        (
            json!({"etagDoesNotMatch": "nope", "uploadedAfter": uploaded + 1000}),
            true,
        ),
        (
            json!({"etagMatches": "nope", "uploadedBefore": uploaded + 1000}),
            false,
        ),
    ] {
        let got = get_with(w, "k", cond(c.clone()), "text").await;
        assert_eq!(got["object"]["etag"], etag, "{c}: {got}");
        assert_eq!(has_body(&got), holds, "{c}: {got}");
        assert_eq!(
            got["object"]["class"],
            if holds { "GetResult" } else { "HeadResult" }
        );
    }
    // The same through conditional headers.
    for (headers, holds) in [
        (json!({"if-match": format!("\"{etag}\"")}), true),
        (json!({"if-none-match": format!("\"{etag}\"")}), false),
        (json!({"if-none-match": "\"other\", *"}), false),
        (
            json!({"if-unmodified-since": "Thu, 01 Jan 1970 00:00:00 GMT"}),
            false,
        ),
        (
            json!({"if-modified-since": "Thu, 01 Jan 1970 00:00:00 GMT"}),
            true,
        ),
    ] {
        let got = get_with(w, "k", cond(json!({ "$headers": headers })), "text").await;
        assert_eq!(has_body(&got), holds, "{headers}: {got}");
    }

    // put: a failing condition answers None and changes nothing.
    let refused = put(w, "k", "new", Some(cond(json!({"etagMatches": "nope"})))).await;
    assert_eq!(refused, json!({"object": null}));
    assert_eq!(get(w, "/get?key=k").await["value"], "0123456789");
    let on_missing = put(w, "fresh", "x", Some(cond(json!({"etagMatches": "*"})))).await;
    assert_eq!(on_missing, json!({"object": null}));
    let create_only = cond(json!({"etagDoesNotMatch": "*"}));
    assert_eq!(
        put(w, "fresh", "x", Some(create_only.clone())).await["object"]["size"],
        1
    );
    assert_eq!(
        put(w, "fresh", "y", Some(create_only)).await,
        json!({"object": null})
    );
    let replaced = put(
        w,
        "k",
        "abcdefghij",
        Some(cond(json!({"etagMatches": etag}))),
    )
    .await;
    assert_ne!(replaced["object"]["etag"], etag);

    // Ranges.
    let range = |r: Value| json!({ "range": r });
    for (r, text, offset, length) in [
        (json!({"offset": 2, "length": 3}), "cde", 2, 3),
        (json!({"offset": 7}), "hij", 7, 3),
        (json!({"length": 2}), "ab", 0, 2),
        (json!({"suffix": 4}), "ghij", 6, 4),
        (json!({"suffix": 40}), "abcdefghij", 0, 10),
        (json!({"offset": 8, "length": 100}), "ij", 8, 2),
        (json!({"$headers": {"range": "bytes=1-3"}}), "bcd", 1, 3),
        (json!({"$headers": {"range": "bytes=-2"}}), "ij", 8, 2),
        (json!({"$headers": {"range": "bytes=5-"}}), "fghij", 5, 5),
        // Several ranges: the whole object.
        (
            json!({"$headers": {"range": "bytes=0-1,3-4"}}),
            "abcdefghij",
            0,
            10,
        ),
    ] {
        let got = get_with(w, "k", range(r.clone()), "text").await;
        assert_eq!(got["value"], text, "{r}: {got}");
        assert_eq!(
            got["object"]["range"],
            json!({"offset": offset, "length": length}),
            "{r}"
        );
        assert_eq!(got["object"]["size"], 10);
    }
    for r in [
        json!({"offset": 11}),
        json!({"offset": 2, "length": 0}),
        json!({"suffix": 0}),
    ] {
        assert_eq!(
            get_with(w, "k", range(r), "text").await,
            error("Error: get: The requested range is not satisfiable (10039)")
        );
    }
    // A range read as a stream through a Response.
    let res = w
        .get(&format!(
            "/get?key=k&read=body&opts={}",
            enc(&range(json!({"offset": 4, "length": 2})).to_string())
        ))
        .await;
    assert_eq!(res.text().await.unwrap(), "ef");
}

pub(crate) const MIB: usize = 1024 * 1024;

pub(crate) async fn create_upload(w: &TestWorker, key: &str, opts: Option<Value>) -> String {
    let mut path = format!("/mpu/create?key={key}");
    if let Some(opts) = opts {
        path.push_str(&format!("&opts={}", enc(&opts.to_string())));
    }
    let created = get(w, &path).await;
    assert_eq!(created["key"], key, "{created}");
    created["uploadId"].as_str().unwrap().to_owned()
}

pub(crate) async fn upload_part(
    w: &TestWorker,
    key: &str,
    id: &str,
    part: u32,
    fill: &str,
    size: usize,
) -> Value {
    get(
        w,
        &format!("/mpu/part?key={key}&uploadId={id}&part={part}&fill={fill}&size={size}"),
    )
    .await
}

pub(crate) async fn complete(w: &TestWorker, key: &str, id: &str, parts: &[&Value]) -> Value {
    let parts: Vec<Value> = parts
        .iter()
        .map(|p| json!({"partNumber": p["partNumber"], "etag": p["etag"]}))
        .collect();
    let parts = enc(&Value::Array(parts).to_string());
    get(
        w,
        &format!("/mpu/complete?key={key}&uploadId={id}&parts={parts}"),
    )
    .await
}

pub(crate) async fn multipart_uploads_complete_abort_and_rules(w: &TestWorker) {
    let opts = json!({"httpMetadata": {"contentType": "video/mp4"}, "customMetadata": {"m": "1"}});
    let id = create_upload(w, "big", Some(opts)).await;
    let p1 = upload_part(w, "big", &id, 1, "a", 5 * MIB).await;
    let p2 = upload_part(w, "big", &id, 2, "b", 5 * MIB).await;
    let p3 = upload_part(w, "big", &id, 3, "c", 10).await;
    assert_eq!(p1["partNumber"], 1, "{p1}");
    // A part named with another part's etag is not found.
    let mut wrong = p2.clone();
    wrong["etag"] = p1["etag"].clone();
    assert_eq!(
        complete(w, "big", &id, &[&p1, &wrong, &p3]).await,
        error(
            "Error: completeMultipartUpload: One or more of the specified parts could not be found. (10025)"
        )
    );
    let done = complete(w, "big", &id, &[&p1, &p2, &p3]).await["object"].clone();
    let mut parts_md5 = Vec::new();
    for (fill, size) in [(b'a', 5 * MIB), (b'b', 5 * MIB), (b'c', 10)] {
        use md5::Digest;
        parts_md5.extend_from_slice(&md5::Md5::digest(vec![fill; size]));
    }
    assert_eq!(done["etag"], format!("{}-3", md5_hex(&parts_md5)), "{done}");
    assert_eq!(done["size"], 10 * MIB + 10);
    assert_eq!(done["checksums"], json!({}));
    assert_eq!(done["httpMetadata"], json!({"contentType": "video/mp4"}));
    assert_eq!(done["customMetadata"], json!({"m": "1"}));
    // A range across the parts' boundary.
    let across = json!({"range": {"offset": 5 * MIB - 2, "length": 4}});
    assert_eq!(get_with(w, "big", across, "text").await["value"], "aabb");
    let tail = json!({"range": {"suffix": 3}});
    assert_eq!(get_with(w, "big", tail, "text").await["value"], "ccc");
    // A finished upload takes no more parts.
    assert_eq!(
        upload_part(w, "big", &id, 4, "d", 1).await,
        error("Error: uploadPart: The specified multipart upload does not exist. (10024)")
    );

    // A part before the last smaller than 5 MiB.
    let id = create_upload(w, "small", None).await;
    let s1 = upload_part(w, "small", &id, 1, "a", 100).await;
    let s2 = upload_part(w, "small", &id, 2, "b", 100).await;
    assert_eq!(
        complete(w, "small", &id, &[&s1, &s2]).await,
        error(
            "Error: completeMultipartUpload: Your proposed upload is smaller than the minimum allowed object size. (10011)"
        )
    );
    // Parts of unequal sizes, or a last part larger than the others.
    let id = create_upload(w, "uneven", None).await;
    let u1 = upload_part(w, "uneven", &id, 1, "a", 5 * MIB).await;
    let u2 = upload_part(w, "uneven", &id, 2, "b", 5 * MIB + 1).await;
    assert_eq!(
        complete(w, "uneven", &id, &[&u1, &u2]).await,
        error(
            "Error: completeMultipartUpload: There was a problem with the multipart upload. (10048)"
        )
    );
    // Abort: the upload is gone.
    assert_eq!(
        get(w, &format!("/mpu/abort?key=uneven&uploadId={id}")).await,
        json!({"ok": true})
    );
    assert_eq!(
        complete(w, "uneven", &id, &[&u1]).await,
        error(
            "Error: completeMultipartUpload: The specified multipart upload does not exist. (10024)"
        )
    );
    assert_eq!(get(w, "/head?key=uneven").await, json!({"object": null}));
    // One part alone may be of any size.
    let id = create_upload(w, "one", None).await;
    let only = upload_part(w, "one", &id, 1, "z", 3).await;
    assert_eq!(complete(w, "one", &id, &[&only]).await["object"]["size"], 3);
    assert_eq!(get(w, "/get?key=one").await["value"], "zzz");
}

#[tokio::test]
async fn r2_uploads_and_objects_survive_kill_9() {
    let w = TestWorker::start("r2").await;
    let id = create_upload(&w, "later", None).await;
    let part = upload_part(&w, "later", &id, 1, "p", 7).await;
    // A put answered is on disk, whatever happens next.
    assert_eq!(put(&w, "kept", "durable", None).await["object"]["size"], 7);
    let state = w.kill_keep_state().await;
    let w = TestWorker::start_in("r2", state, &[]).await;
    assert_eq!(get(&w, "/get?key=kept").await["value"], "durable");
    let done = complete(&w, "later", &id, &[&part]).await;
    assert_eq!(done["object"]["size"], 7, "{done}");
    assert_eq!(get(&w, "/get?key=later").await["value"], "ppppppp");
}

/// Every file under `root`, relative, sorted.
fn files_under(root: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(root).unwrap();
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

/// Whether `file` is one a bucket of the fixture may hold: its metadata
/// or a blob named by a random id.
fn bucket_file(file: &str) -> bool {
    let Some(rest) = ["photos", "other-bucket"]
        .iter()
        .find_map(|bucket| file.strip_prefix(&format!("r2/{bucket}/")))
    else {
        return false;
    };
    rest.starts_with("metadata.sqlite3")
        || rest == "lock"
        || rest
            .strip_prefix("blobs/")
            .is_some_and(|name| name.len() == 32 && name.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[tokio::test]
async fn r2_no_key_reaches_outside_the_bucket_folder() {
    let project = crate::util::copy_fixture("r2");
    let before = files_under(project.path());
    let state = tempfile::tempdir().unwrap();
    let root = state.path().to_path_buf();
    let w = TestWorker::spawn(project.path(), state, &[], &[]).await;
    let long = format!("../{}", "x".repeat(1021));
    let keys = [
        "../../x",
        "../../../../../../tmp/pyflare-r2-escape",
        "/etc/passwd",
        "..\\..\\windows",
        "a\u{0}b",
        ".",
        "..",
        "%2e%2e%2f",
        "blobs/../metadata.sqlite3",
        "日本/語",
        long.as_str(),
    ];
    for key in keys {
        let stored = put(&w, key, key, None).await;
        assert_eq!(stored["object"]["key"], key, "{stored}");
    }
    for key in keys {
        let got = get(&w, &format!("/get?key={}", enc(key))).await;
        assert_eq!(got["value"], key);
    }
    let listed = list(&w, json!({})).await;
    let mut sorted: Vec<&str> = keys.to_vec();
    sorted.sort();
    assert_eq!(listed["keys"], json!(sorted));
    for file in files_under(&root) {
        assert!(bucket_file(&file), "unexpected file {file}");
    }
    assert_eq!(files_under(project.path()), before);
    assert!(!std::path::Path::new("/tmp/pyflare-r2-escape").exists());
    let all = serde_json::to_string(&keys).unwrap();
    assert_eq!(
        get(&w, &format!("/delete?keys={}", enc(&all))).await,
        json!({"ok": true})
    );
    let blobs: Vec<String> = files_under(&root)
        .into_iter()
        .filter(|f| f.contains("/blobs/"))
        .collect();
    assert!(blobs.is_empty(), "{blobs:?}");
}

#[tokio::test]
async fn r2_a_half_written_object_is_never_visible() {
    let state = tempfile::tempdir().unwrap();
    let root = state.path().to_path_buf();
    let w = TestWorker::start_in("r2", state, &[]).await;
    let blobs = root.join("r2/photos/blobs");
    let staged = || std::fs::read_dir(&blobs).map(|d| d.count()).unwrap_or(0);

    // A body that stops half way: the put fails and leaves no file.
    let (tx, rx) = futures::channel::mpsc::unbounded::<Result<Vec<u8>, std::io::Error>>();
    let request = client()
        .post(w.url("/put?key=half&kind=stream"))
        .body(reqwest::Body::wrap_stream(rx))
        .send();
    let sending = tokio::spawn(request);
    // More than one 8 MiB part, so the blob is being written.
    for _ in 0..12 {
        tx.unbounded_send(Ok(vec![b'h'; MIB])).unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while staged() == 0 {
        assert!(std::time::Instant::now() < deadline, "nothing was staged");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Killed mid-put: the staged bytes are there, the object is not.
    let state = w.kill_keep_state().await;
    drop(tx);
    let _ = sending.await;
    assert!(staged() > 0);
    let w = TestWorker::start_in("r2", state, &[]).await;
    assert_eq!(get(&w, "/head?key=half").await, json!({"object": null}));
    assert_eq!(list(&w, json!({})).await["keys"], json!([]));
    // Orphans are swept at open.
    assert_eq!(staged(), 0, "{:?}", files_under(&root));

    // The client goes away mid-body: the put fails, nothing stays.
    let (tx, rx) = futures::channel::mpsc::unbounded::<Result<Vec<u8>, std::io::Error>>();
    tx.unbounded_send(Ok(vec![b'h'; 1024 * 1024])).unwrap();
    tx.unbounded_send(Err(std::io::Error::other("client gone")))
        .unwrap();
    let _ = client()
        .post(w.url("/put?key=half&kind=stream"))
        .body(reqwest::Body::wrap_stream(rx))
        .send()
        .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while staged() != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            files_under(&root)
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(get(&w, "/head?key=half").await, json!({"object": null}));
}

#[tokio::test]
async fn r2_object_commands_share_the_buckets_pyflare_dev_uses() {
    use crate::util::{fixture, pyflare};
    let state = tempfile::tempdir().unwrap();
    let root = state.path().to_str().unwrap().to_owned();
    let w = TestWorker::start_in("r2", state, &[]).await;
    let project = fixture("r2");
    let project = project.to_str().unwrap();
    let at = ["--dir", project, "--persist-to", root.as_str()];
    let files = tempfile::tempdir().unwrap();
    let input = files.path().join("in.bin");
    let bytes: Vec<u8> = (0..3 * MIB).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&input, &bytes).unwrap();

    let (code, _, stderr) = pyflare(
        &[
            &["r2", "object", "put", "photos/dir/a.bin", "--file"],
            &[input.to_str().unwrap(), "-c", "application/x-test"][..],
            &at[..],
        ]
        .concat(),
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stderr,
        "Creating object \"dir/a.bin\" in bucket \"photos\".\nUpload complete.\n"
    );
    // pyflare dev sees it at once.
    let head = get(&w, "/head?key=dir/a.bin").await;
    assert_eq!(head["object"]["size"], 3 * MIB, "{head}");
    assert_eq!(head["object"]["etag"], md5_hex(&bytes));
    assert_eq!(
        head["object"]["httpMetadata"],
        json!({"contentType": "application/x-test"})
    );

    let output = files.path().join("out.bin");
    let (code, _, stderr) = pyflare(
        &[
            &["r2", "object", "get", "photos/dir/a.bin", "--file"],
            &[output.to_str().unwrap()][..],
            &at[..],
        ]
        .concat(),
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(std::fs::read(&output).unwrap(), bytes);

    // Stdin in, stdout out; the binding name finds the bucket too.
    let mut child = std::process::Command::new(crate::util::pyflare_bin())
        .args([&["r2", "object", "put", "BUCKET/piped", "--pipe"], &at[..]].concat())
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"from stdin").unwrap();
    }
    assert!(child.wait().unwrap().success());
    assert_eq!(get(&w, "/get?key=piped").await["value"], "from stdin");
    put(&w, "from-worker", "written by the worker", None).await;
    let (code, stdout, stderr) = pyflare(
        &[
            &["r2", "object", "get", "photos/from-worker", "--pipe"],
            &at[..],
        ]
        .concat(),
    );
    assert_eq!(
        (code, stdout.as_str(), stderr.as_str()),
        (0, "written by the worker", "")
    );

    let (code, stdout, _) = pyflare(
        &[
            &["r2", "object", "list", "photos", "--prefix", "dir/"],
            &at[..],
        ]
        .concat(),
    );
    assert_eq!(code, 0);
    let listed: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["key"], "dir/a.bin");
    assert_eq!(
        listed[0]["httpMetadata"]["contentType"],
        "application/x-test"
    );

    let (code, _, stderr) =
        pyflare(&[&["r2", "object", "delete", "photos/dir/a.bin"], &at[..]].concat());
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        get(&w, "/head?key=dir/a.bin").await,
        json!({"object": null})
    );

    let (code, _, stderr) = pyflare(
        &[
            &["r2", "object", "get", "photos/dir/a.bin", "--pipe"],
            &at[..],
        ]
        .concat(),
    );
    assert_eq!(code, 1);
    assert!(
        stderr.contains("The specified key does not exist: \"dir/a.bin\" in bucket \"photos\"."),
        "{stderr}"
    );
    let (code, _, stderr) =
        pyflare(&[&["r2", "object", "get", "photos", "--pipe"], &at[..]].concat());
    assert_eq!(code, 1);
    assert!(stderr.contains("\"photos\" is not BUCKET/KEY"), "{stderr}");
    let (code, _, stderr) =
        pyflare(&[&["r2", "object", "get", "nope/k", "--pipe"], &at[..]].concat());
    assert_eq!(code, 1);
    assert!(stderr.contains("nope"), "{stderr}");
}

// The scenarios above on the local disk, as `pyflare dev` stores buckets by
// default.

#[tokio::test]
async fn r2_put_get_head_delete_with_object_shapes() {
    put_get_head_delete_with_object_shapes(&TestWorker::start("r2").await).await;
}

#[tokio::test]
async fn r2_values_of_every_type_and_checksums() {
    values_of_every_type_and_checksums(&TestWorker::start("r2").await).await;
}

#[tokio::test]
async fn r2_list_pages_prefixes_and_limits() {
    list_pages_prefixes_and_limits(&TestWorker::start("r2").await).await;
}

#[tokio::test]
async fn r2_errors_as_cloudflare_words_them() {
    errors_as_cloudflare_words_them(&TestWorker::start("r2").await).await;
}

#[tokio::test]
async fn r2_conditionals_and_ranges() {
    conditionals_and_ranges(&TestWorker::start("r2").await).await;
}

#[tokio::test]
async fn r2_multipart_uploads_complete_abort_and_rules() {
    multipart_uploads_complete_abort_and_rules(&TestWorker::start("r2").await).await;
}
