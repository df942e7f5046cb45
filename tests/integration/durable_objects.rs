//! Durable Objects through `pyflare dev`: the `durable_objects` fixture has
//! a counter (key-value storage) and a chat room's message log
//! (SQLite-backed), reached by RPC and `fetch` through Cloudflare's SDK.
//! Expected strings are workerd's, as a JavaScript Durable Object under
//! Miniflare 4 answers them.

use crate::util::TestWorker;
use serde_json::{Value, json};

async fn get_json(w: &TestWorker, path: &str) -> Value {
    let res = w.get(path).await;
    let status = res.status();
    let text = res.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: {status} {text}"))
}

async fn get_text(w: &TestWorker, path: &str) -> (u16, String) {
    let res = w.get(path).await;
    (res.status().as_u16(), res.text().await.unwrap())
}

fn is_id(value: &Value) -> bool {
    value.as_str().is_some_and(|s| {
        s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    })
}

#[tokio::test]
async fn do_ids_stubs_rpc_fetch_and_storage() {
    let w = TestWorker::start("durable_objects").await;

    let ids = get_json(&w, "/ids").await;
    for key in ["a", "a_other_ns", "unique", "upper"] {
        assert!(is_id(&ids[key]), "{key}: {ids}");
    }
    // idFromName is deterministic per namespace; two bindings of one class
    // are one namespace.
    assert_eq!(ids["a"], ids["a_again"]);
    assert_eq!(ids["a"], ids["a_same_class"]);
    assert_ne!(ids["a"], ids["a_other_ns"]);
    assert_eq!(ids["upper"], ids["a"]);
    assert_eq!(ids["name"], "a");
    assert_eq!(ids["unique_name"], Value::Null);
    assert_eq!(ids["equals"], true);
    assert_eq!(ids["from_string_name"], Value::Null);
    assert_eq!(ids["stub_name"], "a");
    assert_eq!(ids["long_name"], Value::Null);
    assert_eq!(ids["identity"], json!({"id": ids["a"], "name": "a"}));
    assert_eq!(ids["identity_by_string"]["name"], Value::Null);
    assert_eq!(
        ids["bad"],
        "TypeError: Invalid Durable Object ID: must be 64 hex digits"
    );
    assert_eq!(
        ids["foreign"],
        "TypeError: Durable Object ID is not valid for this namespace."
    );

    // RPC arguments and results as Cloudflare's SDK converts them.
    assert_eq!(
        get_json(&w, "/echo").await,
        json!([1, 2.5, "s", null, true, [1, {"k": "v"}], {"d": null}])
    );
    // A Request or Response crosses RPC as the SDK converts it.
    assert_eq!(
        get_json(&w, "/rpc_http").await,
        json!({
            "status": 202,
            "header": "here",
            "text": "made",
            "type": "Response",
            "taken": {"method": "PUT", "url": "https://x.test/p?q=1", "body": "payload"},
        })
    );
    let (status, text) = get_text(&w, "/fail").await;
    assert_eq!(status, 500);
    assert!(text.starts_with("Error: Traceback"), "{text}");
    assert!(text.ends_with("ValueError: no luck"), "{text}");
    assert!(!text.contains("_pyflare"), "{text}");
    assert_eq!(
        get_text(&w, "/missing").await,
        (
            500,
            "TypeError: The RPC receiver does not implement the method \"not_there\".".into()
        )
    );

    // A method that never finishes is found hung, as the isolate goes
    // idle, instead of holding its caller forever.
    let (status, text) = get_text(&w, "/hang").await;
    assert_eq!(status, 500);
    assert!(
        text.contains("had hung and would never generate a response"),
        "{text}"
    );

    // ctx.abort() resets the object: the call fails with the SDK's
    // DurableObjectAbort, the next call gets a new instance, storage stays.
    assert_eq!(
        get_json(&w, "/abort").await,
        json!({"before": 1, "outcome": "workers.entrypoints.DurableObjectAbort: reset please", "after": 0, "count": 1})
    );

    // Values keep their Python types through storage.
    assert_eq!(
        get_json(&w, "/types").await,
        json!({
            "big": ["int", 1_099_511_627_776_i64],
            "float": ["float", 0.5],
            "none": ["NoneType", null],
            "raw": ["memoryview", "00ff"],
            "text": ["str", "héllo"],
            "when": ["datetime", 1_767_323_045],
        })
    );

    // stub.fetch reaches the object's fetch handler.
    assert_eq!(get_text(&w, "/increment?name=f").await.1, "1");
    assert_eq!(
        get_json(&w, "/fetch?name=f").await,
        json!({"status": 201, "header": "counter", "body": {"method": "POST", "path": "/some/path", "body": "hello", "count": 1}})
    );

    // The storage API, and its errors.
    assert_eq!(
        get_json(&w, "/storage").await,
        json!({
            "get_one": 1,
            "get_missing": null,
            "get_many": {"a": 1, "c": {"nested": [1, null, "x"]}},
            "list": {"a": 1, "b": 2, "c": {"nested": [1, null, "x"]}},
            "list_prefix": {"b": 2},
            "list_reverse_limit": {"c": {"nested": [1, null, "x"]}, "b": 2},
            "list_range": {"a": 1, "b": 2},
            "delete_one": true,
            "delete_missing": false,
            "delete_many": 2,
            "after": {},
            "after_delete_all": {},
        })
    );
    assert_eq!(
        get_json(&w, "/errors").await,
        json!({
            "list_limit": "TypeError: List limit must be positive.",
            "start_and_after": "TypeError: list() cannot be called with both start and startAfter values.",
            "too_many": "RangeError: Maximum number of keys is 128.",
            "big_key": "RangeError: Keys cannot be larger than 2048 bytes.",
            "big_value": "RangeError: Values cannot be larger than 131072 bytes.",
            "no_key": "TypeError: Failed to execute 'get' on 'DurableObjectStorage': parameter 1 is not of type 'string or Array'.",
            "alarm_nan": "TypeError: The value cannot be converted because it is not a valid Date.",
            "alarm_text": "TypeError: Failed to execute 'setAlarm' on 'DurableObjectStorage': parameter 1 is not of type 'date'.",
            "alarm_without_handler": "TypeError: Your Durable Object class must have an alarm() handler in order to call setAlarm()",
            "sql": "Error: SQL is not enabled for this Durable Object class. To enable it, change `new_classes` to `new_sqlite_classes` within the 'migrations' field in your wrangler.jsonc or wrangler.toml file. If using workerd directly,set `enableSql = true` in your workerd config for the class. Note that this change cannot be made after the class is already deployed to production.",
            "kv": "Error: The storage.kv (synchronous KV) API is only available for SQLite-backed Durable Objects, but this object's namespace is not declared to use SQLite. You can use the older, asyncronous interface via methods of `storage` itself (e.g. `storage.get()`). Alternatively, to enable SQLite, change `new_classes` to `new_sqlite_classes` within the 'migrations' field in your wrangler.jsonc or wrangler.toml file. If using workerd directly, set `enableSql = true` in your workerd config for the class. Note that this change cannot be made after the class is already deployed to production.",
        })
    );

    // A chat room's log in a SQLite-backed object; an object calls another.
    assert_eq!(get_text(&w, "/post?room=r1&author=al&text=hi").await.1, "1");
    assert_eq!(get_text(&w, "/post?room=r1&author=bo&text=yo").await.1, "2");
    assert_eq!(
        get_text(&w, "/post?room=r2&author=cy&text=hey").await.1,
        "1"
    );
    assert_eq!(
        get_json(&w, "/history?room=r1").await,
        json!([{"author": "al", "text": "hi"}, {"author": "bo", "text": "yo"}])
    );
    assert_eq!(get_text(&w, "/chain?name=f").await.1, "2");
}

#[tokio::test]
async fn do_sql_sync_kv_and_transactions_of_sqlite_backed_objects() {
    let w = TestWorker::start("durable_objects").await;
    // The constructor created the table with sql.exec, synchronously.
    assert_eq!(get_text(&w, "/ledger?who=a&amount=2").await.1, "1");
    let out = get_json(&w, "/ledger").await;
    assert_eq!(
        out,
        json!({
            "columns": ["who", "amount"],
            "rows": [{"who": "a", "amount": 2}, {"who": "x", "amount": 1.5}],
            "read": [2, 0],
            "iterated": [{"who": "a"}, {"who": "x"}],
            "raw": [["a", 2], ["x", 1.5]],
            "one": {"n": 2},
            "blob": "0001",
            "multi": [{"b": 2}],
            "size_positive": true,
            "none": "Error: Expected exactly one result from SQL query, but got no results.",
            "many": "Error: Expected exactly one result from SQL query, but got multiple results.",
            "begin": "Error: To execute a transaction, please use the state.storage.transaction() or state.storage.transactionSync() APIs instead of the SQL BEGIN TRANSACTION or SAVEPOINT statements. The JavaScript API is safer because it will automatically roll back on exceptions, and because it interacts correctly with Durable Objects' automatic atomic write coalescing.",
            "syntax": "Error: near \"SELEC\": syntax error at offset 0: SQLITE_ERROR",
            "table": "Error: no such table: nope: SQLITE_ERROR",
            "pragma": "Error: not authorized: SQLITE_AUTH",
            "binds": "Error: Wrong number of parameter bindings for SQL query.",
            "kv_get": {"nested": [1, 2]},
            "kv_missing": null,
            "kv_async_sees_it": {"nested": [1, 2]},
            "kv_list": [["k", {"nested": [1, 2]}]],
            "kv_delete": [true, false],
            "tx_error": "undo",
            "tx_rolled_back": null,
            "tx_result": "done",
            "tx_kept": 2,
            "tx_sync": 0,
        })
    );
}

#[tokio::test]
async fn do_200_concurrent_increments_on_one_object_end_at_exactly_200() {
    let w = TestWorker::start("durable_objects").await;
    let out = get_json(&w, "/many?n=200&name=busy").await;
    // One instance served every call, each read saw the previous write.
    assert_eq!(out["final"], 200, "{out}");
    assert_eq!(out["max"], 200, "{out}");
    assert_eq!(out["distinct"], 200, "{out}");
    assert_eq!(out["calls"], 200, "{out}");
    assert_eq!(out["built"], 1, "{out}");
    // Reads awaited together (asyncio.gather) still hold the gate until
    // the write that follows them.
    assert_eq!(
        get_json(&w, "/pairs?n=100").await,
        json!({"x": 100, "y": 100})
    );
    // Events interleave at awaits that are not storage calls.
    assert_eq!(
        get_json(&w, "/interleave").await,
        json!(["a start", "b start", "a end", "b end"])
    );
    // Two requests at once, on the same object.
    let (a, b) = tokio::join!(
        get_json(&w, "/many?n=50&name=busy"),
        get_json(&w, "/many?n=50&name=busy")
    );
    assert_eq!(get_json(&w, "/read?name=busy").await, 300, "{a} {b}");
}

#[tokio::test]
async fn do_storage_survives_kill_9_and_a_restart() {
    let w = TestWorker::start_with("durable_objects", &["--no-reload"]).await;
    assert_eq!(get_text(&w, "/increment?name=a&by=5").await.1, "5");
    assert_eq!(
        get_text(&w, "/post?room=lobby&author=al&text=kept").await.1,
        "1"
    );
    let id = get_json(&w, "/ids").await["a"].as_str().unwrap().to_owned();
    let state = w.kill_keep_state().await;
    assert!(
        state
            .path()
            .join(format!("do/Counter/{id}.sqlite3"))
            .is_file()
    );
    let w = TestWorker::start_in("durable_objects", state, &["--no-reload"]).await;
    assert_eq!(get_json(&w, "/read?name=a").await, 5);
    assert_eq!(
        get_json(&w, "/history?room=lobby").await,
        json!([{"author": "al", "text": "kept"}])
    );
    assert_eq!(get_text(&w, "/increment?name=a").await.1, "6");
}

/// Milliseconds since the Unix epoch by pyflare's clock (moved by the test).
async fn pyflare_now_ms(w: &TestWorker, advance_secs: u64) -> i64 {
    let res = TestWorker::client()
        .post(w.url(&format!(
            "/cdn-cgi/pyflare/clock/advance?seconds={advance_secs}"
        )))
        .send()
        .await
        .unwrap();
    res.json::<Value>().await.unwrap()["now_ms"]
        .as_i64()
        .unwrap()
}

/// Waits (polling) until the object's alarm has run `runs` times, and, with
/// `rescheduled`, until the retry is set.
async fn alarm_runs(w: &TestWorker, name: &str, runs: usize, rescheduled: bool) -> Value {
    for _ in 0..100 {
        let state = get_json(w, &format!("/alarm?name={name}")).await;
        if state["runs"].as_array().map_or(0, Vec::len) >= runs
            && (!rescheduled || state["alarm"].is_number())
        {
            return state;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!(
        "the alarm of {name} never ran {runs} times:\n{}",
        w.output()
    );
}

#[tokio::test]
async fn do_alarms_fire_on_the_clock_and_retry_with_backoff() {
    let w = TestWorker::start("durable_objects").await;
    let now = pyflare_now_ms(&w, 0).await;
    let at = now + 60_000;
    // Fails twice, then succeeds.
    assert_eq!(
        get_json(&w, &format!("/alarm?name=al&at={at}&fail=2")).await,
        at
    );
    assert_eq!(
        get_json(&w, "/alarm?name=al").await,
        json!({"alarm": at, "runs": []})
    );
    let now = pyflare_now_ms(&w, 61).await;
    let state = alarm_runs(&w, "al", 1, true).await;
    // During the run the alarm was unset; the retry is due 2 s later.
    assert_eq!(
        state["runs"],
        json!([{"retryCount": 0, "isRetry": false, "during": null}])
    );
    let retry_at = state["alarm"].as_i64().unwrap();
    assert!((now + 2_000..now + 3_000).contains(&retry_at), "{state}");
    assert!(w.output().contains("alarm failed on purpose"));
    pyflare_now_ms(&w, 3).await;
    let state = alarm_runs(&w, "al", 2, true).await;
    let next = state["alarm"].as_i64().unwrap();
    assert!(next - retry_at >= 4_000, "{state}");
    pyflare_now_ms(&w, 5).await;
    let state = alarm_runs(&w, "al", 3, false).await;
    assert_eq!(
        state,
        json!({"alarm": null, "runs": [
            {"retryCount": 0, "isRetry": false, "during": null},
            {"retryCount": 1, "isRetry": true, "during": null},
            {"retryCount": 2, "isRetry": true, "during": null},
        ]})
    );
}

#[tokio::test]
async fn do_an_alarm_due_while_pyflare_was_stopped_fires_at_start() {
    let w = TestWorker::start_with("durable_objects", &["--no-reload"]).await;
    // Due 1 s from now by the wall clock: past once pyflare is back.
    let at = pyflare_now_ms(&w, 0).await + 1_000;
    assert_eq!(get_json(&w, &format!("/alarm?name=late&at={at}")).await, at);
    let state = w.kill_keep_state().await;
    let w = TestWorker::start_in("durable_objects", state, &["--no-reload"]).await;
    let state = alarm_runs(&w, "late", 1, false).await;
    assert_eq!(
        state,
        json!({"alarm": null, "runs": [{"retryCount": 0, "isRetry": false, "during": null}]})
    );
}

#[tokio::test]
async fn do_block_concurrency_while_eviction_inspect_routes_and_the_do_command() {
    let w = TestWorker::start_with("durable_objects", &["--no-reload"]).await;
    // Every call waited for the constructor's blockConcurrencyWhile.
    assert_eq!(
        get_json(&w, "/warm?n=5").await,
        json!([true, true, true, true, true])
    );

    // An object idle for 70 s is evicted: its in-memory state goes, its
    // storage stays.
    assert_eq!(get_text(&w, "/increment?name=ev").await.1, "1");
    assert_eq!(get_json(&w, "/calls?name=ev").await, 1);
    let ids = get_json(&w, "/ids").await;
    let listing = get_json(&w, "/cdn-cgi/pyflare/do/Counter").await;
    let ev = |listing: &Value| {
        listing["objects"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["id"] != ids["a"])
            .cloned()
            .unwrap_or_else(|| panic!("{listing}"))
    };
    assert_eq!(ev(&listing)["live"], true, "{listing}");
    pyflare_now_ms(&w, 71).await;
    let mut evicted = false;
    for _ in 0..100 {
        // The listing reads storage only: it does not wake the object.
        if ev(&get_json(&w, "/cdn-cgi/pyflare/do/Counter").await)["live"] == false {
            evicted = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(evicted, "{}", w.output());
    // Wait for the host to have dropped the instance (the eviction event).
    let mut calls = Value::Null;
    for _ in 0..100 {
        calls = get_json(&w, "/calls?name=ev").await;
        if calls == 0 {
            break;
        }
        pyflare_now_ms(&w, 71).await;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(calls, 0);
    assert_eq!(get_json(&w, "/read?name=ev").await, 1);

    // The loopback-only routes: classes, objects, one object's storage.
    get_text(&w, "/post?room=lobby&author=al&text=hi").await;
    get_text(&w, "/ledger?who=a&amount=2").await;
    let classes = get_json(&w, "/cdn-cgi/pyflare/do").await;
    assert_eq!(classes["Counter"]["sqlite"], false, "{classes}");
    assert_eq!(classes["ChatRoom"], json!({"sqlite": true, "objects": 1}));
    let room = get_json(&w, "/cdn-cgi/pyflare/do/ChatRoom").await["objects"][0]["id"].clone();
    assert_eq!(
        get_json(
            &w,
            &format!("/cdn-cgi/pyflare/do/ChatRoom/{}", room.as_str().unwrap())
        )
        .await,
        json!({"class": "ChatRoom", "id": room, "entries": {"messages": [{"author": "al", "text": "hi"}]}, "alarm": null, "tables": {}})
    );
    let ledger = get_json(&w, "/cdn-cgi/pyflare/do/Ledger").await["objects"][0]["id"].clone();
    let ledger = get_json(
        &w,
        &format!("/cdn-cgi/pyflare/do/Ledger/{}", ledger.as_str().unwrap()),
    )
    .await;
    assert_eq!(ledger["tables"], json!({"entries": 1}), "{ledger}");
    let res = w
        .get(&format!("/cdn-cgi/pyflare/do/Counter/{}", "0".repeat(64)))
        .await;
    assert_eq!(res.status(), 404);

    // `pyflare do get --name` finds the object the worker's idFromName names.
    let mut w = w;
    w.terminate().await;
    let state = w.kill_keep_state().await;
    let dir = crate::util::fixture("durable_objects");
    let out = std::process::Command::new(crate::util::pyflare_bin())
        .args(["do", "get", "--name", "ev", "--binding", "COUNTER", "--dir"])
        .arg(&dir)
        .arg("--persist-to")
        .arg(state.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let object: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(object["entries"], json!({"count": 1}), "{object}");
    assert!(is_id(&object["id"]));
}
