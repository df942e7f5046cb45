//! A binding's own events through a real host: the binding's shim builds a
//! batch-like object from the payload, the worker's `queue` handler runs
//! with it through Cloudflare's SDK, and the shim's report comes back, after
//! success and after the handler raised.

use super::call_body_tests::start_host_with;
use super::*;
use async_trait::async_trait;
use pyflare_bindings::Reply;

/// `env.PIPE`: its events give the handler a batch of `payload.messages`
/// whose `ack(body)` the report lists.
const SHIM: &str = r#"
export function create() {
  return {};
}
export function event(handler, payload) {
  const acked = [];
  const batch = {
    queue: payload.queue,
    messages: payload.messages,
    ack(body) {
      acked.push(body);
    },
  };
  return { args: [batch], finish: () => ({ handler, acked }) };
}
"#;

const ENTRY: &str = r#"from workers import Response, WorkerEntrypoint


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        return Response("ok")

    async def queue(self, batch, env, ctx):
        for body in batch.messages:
            if body == "boom":
                raise ValueError(f"cannot take {body} from {batch.queue}")
            batch.ack(body)
"#;

#[derive(Debug)]
struct Silent;

#[async_trait]
impl Binding for Silent {
    fn name(&self) -> &str {
        "PIPE"
    }
    fn kind(&self) -> &'static str {
        "pipe"
    }
    fn describe(&self) -> String {
        "PIPE".into()
    }
    async fn call(
        &self,
        _: &str,
        _: serde_json::Value,
        _: Option<BodyStream>,
    ) -> Result<Reply, WireError> {
        Ok(Reply::json(serde_json::Value::Null))
    }
}

fn batch(messages: &[&str]) -> BindingEvent {
    BindingEvent {
        binding: "PIPE".into(),
        handler: "queue".into(),
        payload: serde_json::json!({ "queue": "jobs", "messages": messages }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binding_event_runs_the_handler_with_what_the_shim_builds() {
    let (host, _dir) = start_host_with(ENTRY, SHIM.into(), Arc::new(Silent)).await;

    let outcome = host.deliver(batch(&["a", "b"])).await.unwrap();
    assert_eq!(
        outcome,
        BindingOutcome {
            outcome: ScheduledOutcome::Ok { no_retry: false },
            result: serde_json::json!({ "handler": "queue", "acked": ["a", "b"] })
        }
    );

    // A handler that raises: its traceback, and the shim's report of what
    // it did before.
    let BindingOutcome {
        outcome: ScheduledOutcome::Exception { message, .. },
        result,
    } = host.deliver(batch(&["a", "boom", "c"])).await.unwrap()
    else {
        panic!("the handler raised");
    };
    assert!(
        message.contains("ValueError: cannot take boom from jobs"),
        "{message}"
    );
    assert_eq!(
        result,
        serde_json::json!({ "handler": "queue", "acked": ["a"] })
    );

    // A binding whose shim delivers no events, and a handler the worker
    // does not have.
    let mut event = batch(&["a"]);
    event.binding = "MISSING".into();
    let BindingOutcome {
        outcome: ScheduledOutcome::Exception { message, .. },
        ..
    } = host.deliver(event).await.unwrap()
    else {
        panic!("no such binding");
    };
    assert!(
        message.contains("the binding MISSING delivers no events"),
        "{message}"
    );
    let mut event = batch(&["a"]);
    event.handler = "alarm".into();
    let BindingOutcome {
        outcome: ScheduledOutcome::Exception { message, .. },
        ..
    } = host.deliver(event).await.unwrap()
    else {
        panic!("no such handler");
    };
    assert!(message.contains("alarm"), "{message}");
}

/// A shim whose `create` answers undefined: no `env` entry, events all
/// the same (a queue's consumers).
const HIDDEN_SHIM: &str = r#"
export function create() {
  return undefined;
}
export function event(handler, payload) {
  const seen = [];
  return { args: [{ queue: payload.queue, messages: [], ack: (v) => seen.push(v) }], finish: () => ({ seen }) };
}
"#;

const HIDDEN_ENTRY: &str = r#"from workers import Response, WorkerEntrypoint


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        return Response("ok")

    async def queue(self, batch, env, ctx):
        batch.ack(hasattr(self.env, "PIPE"))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binding_without_an_env_entry_still_delivers_events() {
    let (host, _dir) = start_host_with(HIDDEN_ENTRY, HIDDEN_SHIM.into(), Arc::new(Silent)).await;
    let outcome = host.deliver(batch(&[])).await.unwrap();
    assert_eq!(
        outcome,
        BindingOutcome {
            outcome: ScheduledOutcome::Ok { no_retry: false },
            result: serde_json::json!({ "seen": [false] })
        }
    );
}
