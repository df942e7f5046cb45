//! KV unit tests: the store conformance suite on every adapter, and the
//! binding's validation and shapes on a manual clock.

use super::store::{Entry, KvStore, MemoryKvStore, SledKvStore};
use super::*;
use crate::clock::ManualClock;
use bytes::Bytes;

fn entry(value: &str, expiration: Option<u64>, metadata: Option<&str>) -> Entry {
    Entry {
        value: Bytes::copy_from_slice(value.as_bytes()),
        expiration,
        metadata: metadata.map(str::to_owned),
    }
}

fn conformance(store: &dyn KvStore) {
    // put / get / overwrite / delete
    store
        .put("ns", "a", &entry("1", None, Some("{\"m\":1}")))
        .unwrap();
    assert_eq!(
        store.get("ns", "a", 0).unwrap(),
        Some(entry("1", None, Some("{\"m\":1}")))
    );
    store.put("ns", "a", &entry("2", None, None)).unwrap();
    assert_eq!(
        store.get("ns", "a", 0).unwrap().unwrap().value,
        Bytes::from_static(b"2")
    );
    store.delete("ns", "a").unwrap();
    assert_eq!(store.get("ns", "a", 0).unwrap(), None);
    store.delete("ns", "never-existed").unwrap();

    // namespaces are separate
    store.put("one", "k", &entry("x", None, None)).unwrap();
    assert_eq!(store.get("two", "k", 0).unwrap(), None);

    // expiry: live strictly before the expiration second
    store.put("ns", "e", &entry("v", Some(100), None)).unwrap();
    assert!(store.get("ns", "e", 99).unwrap().is_some());
    assert_eq!(store.get("ns", "e", 100).unwrap(), None);

    // list: byte order, prefix, pages, expired keys skipped
    for key in ["b", "a", "c/2", "c/1", "é", "Z"] {
        store.put("list", key, &entry("v", None, None)).unwrap();
    }
    store
        .put("list", "c/0", &entry("v", Some(10), None))
        .unwrap();
    let (all, more) = store.list("list", "", None, 1000, 50).unwrap();
    let names: Vec<_> = all.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(names, ["Z", "a", "b", "c/1", "c/2", "é"]);
    assert!(!more);
    let (page, more) = store.list("list", "c/", None, 1, 50).unwrap();
    assert_eq!(page[0].name, "c/1");
    assert!(more);
    let (page, more) = store.list("list", "c/", Some("c/1"), 1, 50).unwrap();
    assert_eq!(page[0].name, "c/2");
    assert!(!more);
}

#[test]
fn sled_store() {
    conformance(&SledKvStore::open_temp().unwrap());
}

#[test]
fn memory_store() {
    conformance(&MemoryKvStore::default());
}

#[test]
fn sled_store_keeps_data_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SledKvStore::open(dir.path()).unwrap();
        store.put("ns", "k", &entry("kept", None, None)).unwrap();
    }
    let store = SledKvStore::open(dir.path()).unwrap();
    assert_eq!(
        store.get("ns", "k", 0).unwrap().unwrap().value,
        Bytes::from_static(b"kept")
    );
}

#[test]
fn corrupt_store_is_an_error_not_an_empty_store() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SledKvStore::open(dir.path()).unwrap();
        store.put("ns", "k", &entry("v", None, None)).unwrap();
    }
    std::fs::write(
        dir.path().join("conf"),
        b"garbage that is not a sled config",
    )
    .unwrap();
    let err = open_store(dir.path()).unwrap_err();
    assert!(
        err.to_string().starts_with("cannot open the KV store at"),
        "{err}"
    );
    assert!(err.hint().unwrap().contains("move the folder aside"));
}

fn namespace(clock: Arc<ManualClock>) -> KvNamespace {
    let config = KvNamespaceConfig {
        binding: "KV".into(),
        id: Some("abc".into()),
        preview_id: None,
    };
    KvNamespace::new(&config, Arc::new(MemoryKvStore::default()), clock)
}

async fn call(
    ns: &KvNamespace,
    method: &str,
    args: Value,
    body: Option<&str>,
) -> Result<Reply, WireError> {
    ns.call(
        method,
        args,
        body.map(|b| BodyStream::whole(Bytes::copy_from_slice(b.as_bytes()))),
    )
    .await
}

#[tokio::test]
async fn kv_expiration_ttl_and_clock() {
    let clock = Arc::new(ManualClock::new(1_000_000_000_000));
    let ns = namespace(clock.clone());
    call(
        &ns,
        "put",
        json!({"key": "k", "expirationTtl": 60}),
        Some("v"),
    )
    .await
    .unwrap();
    let listed = call(&ns, "list", json!({}), None).await.unwrap().value;
    assert_eq!(listed["keys"][0]["expiration"], json!(1_000_000_060));
    assert_eq!(listed["list_complete"], json!(true));
    assert!(listed.get("cursor").is_none());
    clock.advance(59_000);
    assert!(
        call(&ns, "get", json!({"key": "k"}), None)
            .await
            .unwrap()
            .body
            .is_some()
    );
    clock.advance(1_000);
    assert_eq!(
        call(&ns, "get", json!({"key": "k"}), None)
            .await
            .unwrap()
            .value,
        Value::Null
    );
    assert_eq!(
        call(&ns, "list", json!({}), None).await.unwrap().value["keys"],
        json!([])
    );
}

#[tokio::test]
async fn kv_validation_messages() {
    let ns = namespace(Arc::new(ManualClock::new(1_000_000_000_000)));
    let err = |r: Result<Reply, WireError>| r.unwrap_err().message;
    assert_eq!(
        err(call(&ns, "get", json!({"key": ""}), None).await),
        "Key name cannot be empty."
    );
    assert_eq!(
        err(call(
            &ns,
            "put",
            json!({"key": "k", "expirationTtl": 30}),
            Some("v")
        )
        .await),
        "KV PUT failed: 400 Invalid expiration_ttl of 30. Expiration TTL must be at least 60."
    );
    assert_eq!(
        err(call(
            &ns,
            "put",
            json!({"key": "k", "expiration": 1_000_000_030}),
            Some("v")
        )
        .await),
        "KV PUT failed: 400 Invalid expiration of 1000000030. Expiration times must be at least 60 seconds in the future."
    );
    assert_eq!(
        err(call(&ns, "list", json!({"limit": 1001}), None).await),
        "KV GET failed: 400 Invalid key_count_limit of 1001. Please specify an integer less than 1000."
    );
    assert_eq!(
        err(call(&ns, "get", json!({"key": "k", "type": "xml"}), None).await),
        "Unknown response type. Possible types are \"text\", \"arrayBuffer\", \"json\", and \"stream\"."
    );
    let keys: Vec<String> = (0..101).map(|i| i.to_string()).collect();
    assert_eq!(
        err(call(&ns, "getBulk", json!({"keys": keys}), None).await),
        "KV GET_BULK failed: 400 You can request a maximum of 100 keys"
    );
}

#[tokio::test]
async fn kv_list_pages_with_cursor() {
    let ns = namespace(Arc::new(ManualClock::new(0)));
    for i in 0..5 {
        call(&ns, "put", json!({"key": format!("k{i}")}), Some("v"))
            .await
            .unwrap();
    }
    let first = call(&ns, "list", json!({"limit": 2}), None)
        .await
        .unwrap()
        .value;
    assert_eq!(first["list_complete"], json!(false));
    let cursor = first["cursor"].as_str().unwrap().to_owned();
    let second = call(&ns, "list", json!({"limit": 2, "cursor": cursor}), None)
        .await
        .unwrap()
        .value;
    assert_eq!(second["keys"], json!([{"name": "k2"}, {"name": "k3"}]));
}

/// 50 keys written and the store closed, as `pyflare dev` leaves it.
fn store_with_50_keys() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let store = SledKvStore::open(dir.path()).unwrap();
    for i in 0..50 {
        store
            .put(
                "ns",
                &format!("key-{i:02}"),
                &entry(&"v".repeat(100 + i), None, None),
            )
            .unwrap();
    }
    store.close().unwrap();
    dir
}

fn snapshot(dir: &std::path::Path) -> Vec<u8> {
    std::fs::read(dir.join("db")).unwrap()
}

#[test]
fn sled_store_truncated_is_refused_and_left_as_it_is() {
    let dir = store_with_50_keys();
    let bytes = snapshot(dir.path());
    std::fs::write(dir.path().join("db"), &bytes[..bytes.len() / 2]).unwrap();
    let before = snapshot(dir.path());
    let err = open_store(dir.path()).unwrap_err();
    assert!(err.to_string().contains("damaged"), "{err}");
    assert!(
        err.hint().unwrap().contains("pyflare changed nothing"),
        "{err:?}"
    );
    assert_eq!(snapshot(dir.path()), before, "the damaged file was changed");
}

#[test]
fn sled_store_with_one_byte_flipped_is_refused_and_left_as_it_is() {
    let dir = store_with_50_keys();
    let mut bytes = snapshot(dir.path());
    // A byte inside the records (the log starts with segment headers).
    let at = bytes.len() / 3;
    bytes[at] ^= 0x40;
    std::fs::write(dir.path().join("db"), &bytes).unwrap();
    let err = open_store(dir.path()).unwrap_err();
    assert!(err.to_string().contains("damaged"), "{err}");
    assert_eq!(snapshot(dir.path()), bytes, "the damaged file was changed");
}

#[test]
fn sled_store_a_write_cut_short_by_a_kill_still_opens() {
    // The check file says a write was under way (before and after states);
    // the store holds either one: both are accepted.
    let dir = store_with_50_keys();
    let check = dir.path().join(store::CHECK_FILE);
    let text = std::fs::read_to_string(&check).unwrap();
    let fields: Vec<&str> = text.split_whitespace().collect();
    // Pretend a 51st key was being written and the log changed since.
    let pending = format!(
        "{} {} {} 51 {} 0 0\n",
        fields[0], fields[1], fields[2], "0123456789abcdef0123456789abcdef"
    );
    std::fs::write(&check, pending).unwrap();
    let store = SledKvStore::open(dir.path()).unwrap();
    assert!(store.get("ns", "key-49", 0).unwrap().is_some());
}

#[test]
fn sled_store_check_at_open_costs_little() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SledKvStore::open(dir.path()).unwrap();
        for i in 0..2000 {
            store
                .put("ns", &format!("key-{i}"), &entry("value", None, None))
                .unwrap();
        }
    }
    let started = crate::clock::Stopwatch::start();
    let store = SledKvStore::open(dir.path()).unwrap();
    let elapsed = started.elapsed_ms();
    assert!(store.get("ns", "key-1999", 0).unwrap().is_some());
    eprintln!("opened and checked 2000 records in {elapsed:.1} ms");
    assert!(elapsed < 5000.0, "{elapsed} ms");
}

/// A 2 MiB tmpfs for one test (root only), unmounted when dropped.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(test: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            println!("skipping {test}: mounting a tmpfs needs root (the tests run as root in CI)");
            return None;
        }
        Some(Self(dir))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.0.path())
            .status();
    }
}

#[test]
fn sled_store_works_again_after_sled_itself_meets_a_full_disk() {
    let Some(fs) = Tmpfs::mount("sled_store_works_again_after_sled_itself_meets_a_full_disk")
    else {
        return;
    };
    let store = SledKvStore::open(&fs.0.path().join("kv")).unwrap();
    store
        .put("ns", "before", &entry("kept", None, None))
        .unwrap();
    // No check: sled itself, not pyflare's check, meets the full disk.
    store.set_free_space_margin(None);
    let filler = fs.0.path().join("filler");
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&filler).unwrap();
        while file.write_all(&[0u8; 4096]).is_ok() {}
    }
    let value = "v".repeat(1000);
    let mut sled_error = None;
    for i in 0..200 {
        match store.put("ns", &format!("k{i}"), &entry(&value, None, None)) {
            Ok(()) => {}
            Err(e) => {
                if !e.to_string().starts_with("no space left on the disk of") {
                    sled_error = Some(e);
                    break;
                }
            }
        }
    }
    let sled_error = sled_error.expect("sled never met the full disk");
    assert!(
        matches!(sled_error, store::StoreError::Full(_)),
        "{sled_error:?}"
    );
    // Without room, reopening fails too, promptly.
    assert!(
        store
            .put("ns", "still-full", &entry(&value, None, None))
            .is_err()
    );
    std::fs::remove_file(&filler).unwrap();
    store.set_free_space_margin(Some(store::FREE_SPACE_MARGIN));
    store
        .put("ns", "after", &entry("fresh", None, None))
        .unwrap();
    assert_eq!(
        store.get("ns", "after", 0).unwrap().unwrap().value,
        Bytes::from_static(b"fresh")
    );
    assert_eq!(
        store.get("ns", "before", 0).unwrap().unwrap().value,
        Bytes::from_static(b"kept")
    );
    drop(store);
}

/// A put body streamed in 1 MiB chunks of `byte`, `len` bytes in all.
fn streamed(len: usize, byte: u8) -> BodyStream {
    let chunk = Bytes::from(vec![byte; 1024 * 1024]);
    let chunks = (0..len.div_ceil(chunk.len())).map(move |i| {
        let end = ((i + 1) * chunk.len()).min(len);
        Ok(chunk.slice(..end - i * chunk.len()))
    });
    BodyStream::from_stream(futures::stream::iter(chunks))
}

#[tokio::test]
async fn kv_put_collects_a_streamed_value_within_the_limit() {
    let ns = namespace(Arc::new(ManualClock::new(0)));
    let len = MAX_VALUE_BYTES;
    ns.call("put", json!({"key": "big"}), Some(streamed(len, 7)))
        .await
        .unwrap();
    let reply = ns.call("get", json!({"key": "big"}), None).await.unwrap();
    let value = reply.body.unwrap().collect(len).await.unwrap();
    assert_eq!(value.len(), len);
    assert!(value.iter().all(|b| *b == 7));
}

#[tokio::test]
async fn kv_put_of_a_stream_past_the_limit_names_its_whole_length() {
    let ns = namespace(Arc::new(ManualClock::new(0)));
    let len = MAX_VALUE_BYTES + 3 * 1024 * 1024 + 5;
    let err = ns
        .call("put", json!({"key": "big"}), Some(streamed(len, 1)))
        .await
        .unwrap_err();
    assert_eq!(
        err.message,
        format!("KV PUT failed: 413 Value length of {len} exceeds limit of 26214400.")
    );
    let reply = ns.call("get", json!({"key": "big"}), None).await.unwrap();
    assert_eq!(reply.value, Value::Null);
}

#[test]
fn kv_config_gets_the_shared_checks() {
    use crate::config::NamedBinding;
    let parse = |value: Value| {
        crate::config::parse_entries::<KvNamespaceConfig>(KvNamespaces.config_key(), &value)
            .map_err(|e| e.to_string())
    };
    assert_eq!(
        parse(json!([{"binding": "MY_KV"}, {"binding": "2KV", "id": "x"}])).unwrap_err(),
        "`kv_namespaces[1].binding`: The binding name \"2KV\" is invalid. It can only have alphanumeric and _ characters, and cannot begin with a number."
    );
    assert_eq!(
        parse(json!([{"binding": "A", "id": "1"}, {"binding": "A", "id": "2"}])).unwrap_err(),
        "`kv_namespaces[1].binding`: the binding name A is used twice"
    );
    assert_eq!(
        parse(json!({"binding": "A"})).unwrap_err(),
        "`kv_namespaces`: expected an array"
    );
    assert_eq!(
        parse(json!([{"binding": "A", "preview_id": false}])).unwrap_err(),
        "`kv_namespaces[0].preview_id`: invalid type: boolean `false`, expected a string"
    );
    let entries = parse(json!([{"binding": "A", "id": "1"}, {"binding": "B"}])).unwrap();
    assert_eq!(entries[0].namespace(), "1");
    assert_eq!(entries[1].namespace(), "B");
    assert_eq!(entries[1].other_name(), None);
}
