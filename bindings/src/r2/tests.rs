//! Unit tests: conditions and ranges as R2 evaluates them, and the
//! store's conformance suite, run on every blob backend (object_store's
//! `LocalFileSystem` as `pyflare dev` uses it, and its `InMemory`).

use bytes::Bytes;
use futures::StreamExt;
use object_store::memory::InMemory;
use serde_json::json;
use std::sync::Arc;

use super::call::{Conditional, Etag, RangeRequest};
use super::store::{ObjectRow, PartRow, R2Store, UploadRow, WriteError};
use crate::binding::{BodyError, BodyStream};

fn strong(value: &str) -> Etag {
    Etag::Strong {
        value: value.into(),
    }
}

#[test]
fn conditions_follow_rfc_7232_and_r2_precedence() {
    let object = Some(("e", 10_000));
    let holds = |c: Conditional| c.holds(object);
    assert!(holds(Conditional {
        etag_matches: Some(vec![strong("e")]),
        ..Default::default()
    }));
    // etagMatches compares strongly, etagDoesNotMatch weakly.
    let weak = || Etag::Weak { value: "e".into() };
    assert!(!holds(Conditional {
        etag_matches: Some(vec![weak()]),
        ..Default::default()
    }));
    assert!(!holds(Conditional {
        etag_does_not_match: Some(vec![weak()]),
        ..Default::default()
    }));
    // A passing etag condition waives its time condition.
    assert!(holds(Conditional {
        etag_matches: Some(vec![strong("e")]),
        uploaded_before: Some(5_000.0),
        ..Default::default()
    }));
    assert!(holds(Conditional {
        etag_does_not_match: Some(vec![strong("x")]),
        uploaded_after: Some(20_000.0),
        ..Default::default()
    }));
    assert!(!holds(Conditional {
        uploaded_after: Some(10_000.0),
        ..Default::default()
    }));
    // Seconds granularity truncates both times.
    let after = |seconds_granularity| Conditional {
        uploaded_after: Some(10_000.0),
        seconds_granularity,
        ..Default::default()
    };
    assert!(after(false).holds(Some(("e", 10_400))));
    assert!(!after(true).holds(Some(("e", 10_400))));
    // No object: only etagMatches and uploadedAfter fail.
    assert!(
        !Conditional {
            etag_matches: Some(vec![Etag::Wildcard]),
            ..Default::default()
        }
        .holds(None)
    );
    assert!(
        Conditional {
            etag_does_not_match: Some(vec![Etag::Wildcard]),
            ..Default::default()
        }
        .holds(None)
    );
}

#[test]
fn ranges_clamp_or_fail_as_r2() {
    let range = |v: serde_json::Value| serde_json::from_value::<RangeRequest>(v).unwrap();
    assert_eq!(range(json!({"offset": 2})).resolve(10), Ok(Some((2, 8))));
    assert_eq!(
        range(json!({"offset": 8, "length": 5})).resolve(10),
        Ok(Some((8, 2)))
    );
    assert_eq!(range(json!({"suffix": 20})).resolve(10), Ok(Some((0, 10))));
    assert!(range(json!({"suffix": 0})).resolve(10).is_err());
    assert!(range(json!({"offset": 10})).resolve(10).is_err());
    assert_eq!(
        range(json!({"header": "bytes=2-4"})).resolve(10),
        Ok(Some((2, 3)))
    );
    assert_eq!(
        range(json!({"header": "bytes=-3"})).resolve(10),
        Ok(Some((7, 3)))
    );
    assert_eq!(
        range(json!({"header": "bytes=20-30"})).resolve(10),
        Ok(None)
    );
    assert_eq!(
        range(json!({"header": "bytes=0-1,4-5"})).resolve(10),
        Ok(None)
    );
    assert_eq!(range(json!({"header": "items=0-1"})).resolve(10), Ok(None));
}

fn row(key: &str, blob: &str, size: u64) -> ObjectRow {
    ObjectRow {
        key: key.into(),
        version: super::store::new_version(),
        size,
        etag: "e".into(),
        uploaded: 1,
        http_metadata: "{}".into(),
        custom_metadata: "{}".into(),
        checksums: "{}".into(),
        storage_class: "Standard".into(),
        blob: blob.into(),
        inline: None,
    }
}

fn upload_row(key: &str) -> UploadRow {
    UploadRow {
        key: key.into(),
        http_metadata: "{}".into(),
        custom_metadata: "{}".into(),
        storage_class: "Standard".into(),
        state: 0,
    }
}

async fn read(store: &R2Store, blob: &str, offset: u64, length: u64) -> Vec<u8> {
    let mut body = store.read_blob(blob, offset, length).await.unwrap();
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

fn chunks(parts: Vec<Result<Bytes, BodyError>>) -> Option<BodyStream> {
    Some(BodyStream::from_stream(futures::stream::iter(parts)))
}

/// What every blob backend must do the same.
async fn conformance(store: R2Store) {
    // Streamed in, read whole and in ranges.
    let mut seen = 0;
    let written = store
        .write_blob(
            chunks(vec![Ok(Bytes::from("hello ")), Ok(Bytes::from("world"))]),
            100,
            0,
            |b| seen += b.len(),
        )
        .await
        .unwrap();
    assert_eq!((written.size, seen), (11, 11));
    assert_eq!(read(&store, &written.blob, 0, 11).await, b"hello world");
    assert_eq!(read(&store, &written.blob, 6, 5).await, b"world");
    assert_eq!(read(&store, &written.blob, 0, 0).await, b"");

    // Too long, or broken off: no blob stays.
    let long = store
        .write_blob(
            chunks(vec![Ok(Bytes::from(vec![0u8; 101]))]),
            100,
            0,
            |_| {},
        )
        .await;
    assert!(matches!(long, Err(WriteError::TooLarge)));
    let broken = store
        .write_blob(
            chunks(vec![Ok(Bytes::from("a")), Err(BodyError("gone".into()))]),
            100,
            0,
            |_| {},
        )
        .await;
    assert!(matches!(broken, Err(WriteError::Broken(_))));

    // A short value may stay out of the blobs, for its row.
    let small = store
        .write_blob(chunks(vec![Ok(Bytes::from("tiny"))]), 100, 10, |_| {})
        .await
        .unwrap();
    assert_eq!(
        (small.blob.as_str(), small.inline.clone()),
        ("", Some(Bytes::from("tiny")))
    );
    let mut inline_row = row("inline", "", 4);
    inline_row.inline = small.inline;
    store.commit_put(&inline_row, |_| true).await.unwrap();
    assert_eq!(
        store.inline("inline", &inline_row.version).await.unwrap(),
        Some(Bytes::from("tiny"))
    );
    assert_eq!(store.inline("inline", "old").await.unwrap(), None);
    assert_eq!(store.delete(&["inline".into()]).await.unwrap(), [""]);

    // Rows: a put commits only if allowed; the replaced blob comes back.
    let first = row("k", &written.blob, 11);
    assert_eq!(
        store.commit_put(&first, |_| true).await.unwrap(),
        Some(None)
    );
    let other = store.write_blob(None, 100, 0, |_| {}).await.unwrap();
    let second = row("k", &other.blob, 0);
    assert_eq!(store.commit_put(&second, |_| false).await.unwrap(), None);
    assert_eq!(store.head("k").await.unwrap(), Some(first.clone()));
    assert_eq!(
        store
            .commit_put(&second, |old| old.is_some())
            .await
            .unwrap(),
        Some(Some(written.blob.clone()))
    );
    store.delete_blob(&written.blob).await;

    // Keys sort by bytes; prefixes match bytes, not patterns.
    for key in ["a%", "a_", "ab", "b", "\u{e9}", "a\u{0}z"] {
        store.commit_put(&row(key, "x", 0), |_| true).await.unwrap();
    }
    let keys = |rows: Vec<ObjectRow>| rows.into_iter().map(|r| r.key).collect::<Vec<_>>();
    assert_eq!(
        keys(store.scan("a", None, 10).await.unwrap()),
        ["a\u{0}z", "a%", "a_", "ab"]
    );
    assert_eq!(keys(store.scan("a_", None, 10).await.unwrap()), ["a_"]);
    assert_eq!(
        keys(store.scan("", Some("b"), 10).await.unwrap()),
        ["k", "\u{e9}"]
    );
    assert_eq!(
        store.delete(&["a%".into(), "none".into()]).await.unwrap(),
        ["x"]
    );

    // Multipart bookkeeping.
    let upload = upload_row("m");
    store.create_upload("u1", &upload, 5).await.unwrap();
    assert!(store.upload("other-key", "u1").await.unwrap().is_none());
    let part = PartRow {
        part_number: 1,
        size: 1,
        md5: "00".into(),
        etag: "p".into(),
        blob: "b1".into(),
    };
    assert_eq!(store.put_part("m", "u1", &part).await.unwrap(), Some(None));
    assert_eq!(
        store.put_part("m", "u1", &part).await.unwrap(),
        Some(Some("b1".into()))
    );
    assert_eq!(store.parts("u1").await.unwrap().len(), 1);
    assert_eq!(
        store.finish_upload("u1", 2, None).await.unwrap(),
        Some(vec!["b1".to_owned()])
    );
    assert_eq!(store.finish_upload("u1", 1, None).await.unwrap(), None);
    assert_eq!(store.upload("m", "u1").await.unwrap().unwrap().state, 2);
    assert_eq!(store.put_part("m", "u1", &part).await.unwrap(), None);
}

#[tokio::test]
async fn local_file_system_store() {
    let dir = tempfile::tempdir().unwrap();
    conformance(R2Store::open_local(dir.path()).await.unwrap()).await;
}

#[tokio::test]
async fn in_memory_blob_store() {
    let dir = tempfile::tempdir().unwrap();
    conformance(
        R2Store::open(dir.path(), Arc::new(InMemory::new()))
            .await
            .unwrap(),
    )
    .await;
}

/// Two empty blobs: one an object's, one no row names.
async fn kept_and_orphan(store: &R2Store) -> (String, String) {
    let kept = store.write_blob(None, 1, 0, |_| {}).await.unwrap();
    store
        .commit_put(&row("k", &kept.blob, 0), |_| true)
        .await
        .unwrap();
    let orphan = store.write_blob(None, 1, 0, |_| {}).await.unwrap();
    (kept.blob, orphan.blob)
}

#[tokio::test]
async fn open_sweeps_blobs_no_row_names() {
    let dir = tempfile::tempdir().unwrap();
    let store = R2Store::open_local(dir.path()).await.unwrap();
    let (kept, orphan) = kept_and_orphan(&store).await;
    let blobs = dir.path().join("blobs");
    std::fs::write(blobs.join(format!("{orphan}#3")), b"staged").unwrap();
    drop(store);
    let _store = R2Store::open_local(dir.path()).await.unwrap();
    let mut left: Vec<String> = std::fs::read_dir(&blobs)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, [kept]);
}

#[tokio::test]
async fn shared_metadata_store() {
    let s3 = Arc::new(InMemory::new());
    conformance(R2Store::open_shared_in(s3, i64::MAX).await.unwrap()).await;
}

/// Two stores on one S3 prefix, as two pyflare processes: each sees the
/// other's writes, and concurrent writes of different keys all land.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_one_prefix() {
    let s3: Arc<InMemory> = Arc::new(InMemory::new());
    let a = R2Store::open_shared_in(s3.clone(), 0).await.unwrap();
    let b = R2Store::open_shared_in(s3.clone(), 0).await.unwrap();
    assert_eq!(a.inline_max(), 0);
    a.commit_put(&row("k", "blob-a", 1), |_| true)
        .await
        .unwrap();
    assert_eq!(b.head("k").await.unwrap().unwrap().blob, "blob-a");
    // A condition is checked against the other process's row.
    assert_eq!(
        b.commit_put(&row("k", "blob-b", 1), |old| old.is_none())
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        b.delete(&["k".into()]).await.unwrap(),
        ["blob-a".to_owned()]
    );
    assert!(a.head("k").await.unwrap().is_none());

    let writer = |store: R2Store, name: &'static str| {
        tokio::spawn(async move {
            for i in 0..40 {
                let key = format!("{name}-{i:02}");
                store
                    .commit_put(&row(&key, &key, 1), |_| true)
                    .await
                    .unwrap();
            }
        })
    };
    let (x, y) = (writer(a.clone(), "a"), writer(b.clone(), "b"));
    x.await.unwrap();
    y.await.unwrap();
    for store in [&a, &b] {
        assert_eq!(store.scan("", None, 1000).await.unwrap().len(), 80);
    }

    // An upload begun by one is finished once: the other's try is refused.
    let upload = upload_row("m");
    a.create_upload("u", &upload, 1).await.unwrap();
    assert!(b.upload("m", "u").await.unwrap().is_some());
    assert_eq!(b.finish_upload("u", 1, None).await.unwrap(), Some(vec![]));
    assert_eq!(a.finish_upload("u", 2, None).await.unwrap(), None);
}

/// On S3, blobs no row names are swept at open only once older than the
/// grace period: a younger one may be another process's put.
#[tokio::test]
async fn shared_sweep_spares_young_orphans() {
    use object_store::ObjectStore;
    let s3: Arc<InMemory> = Arc::new(InMemory::new());
    let store = R2Store::open_shared_in(s3.clone(), i64::MAX).await.unwrap();
    let (kept, orphan) = kept_and_orphan(&store).await;
    let names = || async {
        let mut names: Vec<String> = s3
            .list(None)
            .map(|m| m.unwrap().location.to_string())
            .collect()
            .await;
        names.sort();
        names
    };
    // Last written after the given time: spared.
    R2Store::open_shared_in(s3.clone(), 0).await.unwrap();
    assert!(names().await.contains(&orphan));
    R2Store::open_shared_in(s3.clone(), i64::MAX).await.unwrap();
    let mut expected = vec![kept.clone(), ".pyflare/metadata.sqlite3".to_owned()];
    expected.sort();
    assert_eq!(names().await, expected);
}
