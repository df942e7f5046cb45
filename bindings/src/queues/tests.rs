//! Unit tests: config parsing, the producer's checks and messages, the
//! store's operations, and what becomes of a delivered batch.

use super::config::{self, ConsumerConfig};
use super::consumer::{Report, settle};
use super::store::{Leased, NewMessage, QueueStore, Settle, SqliteQueueStore};
use super::*;
use serde_json::json;

fn consumer(value: Value) -> ConsumerConfig {
    config::parse("queues", &json!({ "consumers": [value] }))
        .unwrap()
        .consumers
        .remove(0)
}

fn config_error(value: Value) -> String {
    config::parse("queues", &value).unwrap_err().to_string()
}

#[test]
fn queues_config_errors_name_the_field() {
    assert_eq!(
        config_error(json!([])),
        "`queues`: expected an object with `producers` and `consumers`"
    );
    assert_eq!(
        config_error(json!({"producers": [{"binding": "Q"}]})),
        "`queues.producers[0]`: missing field `queue`"
    );
    assert_eq!(
        config_error(json!({"consumers": [{"queue": "a", "max_batch_timeout": 61}]})),
        "`queues.consumers[0].max_batch_timeout`: Number must be less than or equal to 60"
    );
    assert_eq!(
        config_error(json!({"consumers": [{"queue": "a", "max_batch_size": 101}]})),
        "`queues.consumers[0].max_batch_size`: Number must be less than or equal to 100"
    );
    assert_eq!(
        config_error(json!({"consumers": [{"queue": "bad", "dead_letter_queue": "bad"}]})),
        "`queues.consumers[0].dead_letter_queue`: Dead letter queue for queue \"bad\" cannot be itself"
    );
    assert_eq!(
        config_error(json!({"consumers": [{"queue": "a"}, {"queue": "a"}]})),
        "`queues.consumers[1].queue`: the queue a has two consumers"
    );
    assert_eq!(
        config_error(json!({"consumers": [{"queue": "a", "max_retries": "x"}]})),
        "`queues.consumers[0].max_retries`: invalid type: string \"x\", expected u32"
    );
    let c = consumer(json!({"queue": "a"}));
    assert_eq!(
        (
            c.batch_size(),
            c.batch_timeout_ms(),
            c.retries(),
            c.retry_delay_secs()
        ),
        (10, 5000, 3, 0)
    );
}

#[test]
fn queue_errors_are_cloudflares() {
    let cases: Vec<(QueueError, &str, crate::error::JsClass)> = vec![
        (
            QueueError::UndefinedBody,
            "Message body cannot be undefined",
            crate::error::JsClass::TypeError,
        ),
        (
            QueueError::NotText("number".into()),
            "Content Type \"text\" requires a value of type string, but received: number",
            crate::error::JsClass::TypeError,
        ),
        (
            QueueError::MessageTooLarge(128_001),
            "Queue send failed: message length of 128001 bytes exceeds limit of 128000",
            crate::error::JsClass::Error,
        ),
        (
            QueueError::TooManyMessages(101),
            "Queue sendBatch failed: batch message count of 101 exceeds limit of 100",
            crate::error::JsClass::Error,
        ),
        (
            QueueError::BatchTooLarge(300_000),
            "Queue sendBatch failed: batch size of 300000 bytes exceeds limit of 256000",
            crate::error::JsClass::Error,
        ),
    ];
    for (error, message, class) in cases {
        assert_eq!(error.to_string(), message);
        assert_eq!(error.js_class(), class);
    }
}

fn leased(seq: i64, attempts: u32) -> Leased {
    Leased {
        seq,
        id: format!("m{seq}"),
        timestamp_ms: 0,
        content_type: "json".into(),
        body: b"1".to_vec(),
        attempts,
    }
}

#[test]
fn settle_follows_ack_then_retry_then_outcome() {
    let c = consumer(
        json!({"queue": "q", "max_retries": 1, "retry_delay": 7, "dead_letter_queue": "dlq"}),
    );
    let batch = [leased(1, 1), leased(2, 1), leased(3, 2), leased(4, 1)];
    let report = Report {
        acks: vec!["m1".into()],
        retries: vec![("m2".into(), Some(3.0))],
        ..Default::default()
    };
    let decisions = settle(&c, &batch, &report, true, 1000);
    assert_eq!(decisions[0].settle, Settle::Ack);
    assert_eq!(
        decisions[1].settle,
        Settle::Retry {
            visible_at_ms: 4000
        }
    );
    assert_eq!(
        decisions[2].settle,
        Settle::DeadLetter {
            queue: "dlq".into(),
            visible_at_ms: 1000
        }
    );
    assert_eq!(
        decisions[2].log.as_deref(),
        Some(
            "Moving message \"m3\" on queue \"q\" to dead letter queue \"dlq\" after 2 failed attempts..."
        )
    );
    // Failed without a word on it: retried after the consumer's retry_delay.
    assert_eq!(
        decisions[3].settle,
        Settle::Retry {
            visible_at_ms: 8000
        }
    );
    // Success acknowledges all; no dead letter queue drops.
    let c = consumer(json!({"queue": "q", "max_retries": 0}));
    let ok = settle(&c, &[leased(1, 1)], &Report::default(), false, 0);
    assert_eq!(ok[0].settle, Settle::Ack);
    let all = Report {
        retry_all: true,
        ..Default::default()
    };
    let dropped = settle(&c, &[leased(1, 1)], &all, false, 0);
    assert_eq!(dropped[0].settle, Settle::Drop);
    assert_eq!(
        dropped[0].log.as_deref(),
        Some("Dropped message \"m1\" on queue \"q\" after 1 failed attempt!")
    );
}

#[test]
fn calls_without_effect_get_workerds_warnings() {
    let report: Report = serde_json::from_value(json!({
        "acks": ["a"],
        "ignored": [["retry", "a", "ack"], ["ackAll", null, "retryAll"]],
    }))
    .unwrap();
    assert_eq!(
        report.warnings(),
        [
            "Received a call to retry() on message a after ack() was already called. Calling retry() on a message after calling ack() has no effect.",
            "Received a call to ackAll() after retryAll() was already called. Calling ackAll() after calling retryAll() has no effect.",
        ]
    );
}

#[tokio::test]
async fn sqlite_store_leases_settles_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteQueueStore::open(&dir.path().join("q.sqlite3"))
        .await
        .unwrap();
    let message = |body: &str, at: i64| NewMessage {
        content_type: "text".into(),
        body: body.as_bytes().to_vec(),
        visible_at_ms: at,
    };
    let backlog = store
        .send(
            "q",
            100,
            vec![message("a", 100), message("b", 100), message("later", 5000)],
        )
        .await
        .unwrap();
    assert_eq!(
        (backlog.count, backlog.bytes, backlog.oldest_ms),
        (3, 7, Some(100))
    );
    assert_eq!(store.next_due("q", 200).await.unwrap(), Some(5000));
    assert_eq!(store.next_due("q", 5000).await.unwrap(), None);
    let due = store.due("q", 200, 10).await.unwrap();
    assert_eq!((due.count, due.oldest_ms), (2, Some(100)));
    let batch = store.lease("q", 200, 10).await.unwrap();
    assert_eq!(
        batch.iter().map(|m| m.body.clone()).collect::<Vec<_>>(),
        [b"a".to_vec(), b"b".to_vec()]
    );
    assert_eq!(batch[0].id.len(), 32);
    assert_eq!(batch[0].attempts, 1);
    assert_eq!(store.due("q", 200, 10).await.unwrap().count, 0);
    store
        .settle(
            "q",
            &[
                (batch[0].seq, Settle::Ack),
                (
                    batch[1].seq,
                    Settle::DeadLetter {
                        queue: "dlq".into(),
                        visible_at_ms: 300,
                    },
                ),
            ],
        )
        .await
        .unwrap();
    let moved = store.lease("dlq", 300, 10).await.unwrap();
    assert_eq!(
        (moved[0].id.clone(), moved[0].attempts),
        (batch[1].id.clone(), 1)
    );
    // A killed pyflare's lease is released and its attempt not counted.
    assert_eq!(store.recover().await.unwrap(), 1);
    let again = store.lease("dlq", 300, 10).await.unwrap();
    assert_eq!(again[0].attempts, 1);
    let counts = store.counts(300).await.unwrap();
    let q = counts.iter().find(|c| c.queue == "q").unwrap();
    assert_eq!(
        (q.pending, q.delayed, q.acked, q.dead_lettered),
        (0, 1, 1, 1)
    );
    let dlq = counts.iter().find(|c| c.queue == "dlq").unwrap();
    assert_eq!(dlq.in_flight, 1);
}
