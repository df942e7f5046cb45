//! Binding calls from the worker: run on the live binding, answered with
//! JSON and, streamed under the host's credit, a body.

use super::*;

/// Runs one binding call from the worker and sends the reply.
pub(super) async fn run_call(
    shared: Arc<Shared>,
    id: u32,
    binding: String,
    method: String,
    args: serde_json::Value,
    body: Option<BodyStream>,
) {
    match call_binding(&shared.bindings(), &binding, &method, args, body).await {
        Ok(reply) => {
            shared.send(&ToHost::CallReply {
                id,
                ok: Some(reply.value),
                error: None,
                has_body: reply.body.is_some(),
            });
            if let Some(body) = reply.body {
                send_call_body(&shared, id, body).await;
            }
        }
        Err(error) => shared.send(&ToHost::CallReply {
            id,
            ok: None,
            error: Some(error),
            has_body: false,
        }),
    }
}

/// Runs `method` of the live binding named `binding`.
pub(super) async fn call_binding(
    bindings: &BindingMap,
    binding: &str,
    method: &str,
    args: serde_json::Value,
    body: Option<BodyStream>,
) -> Result<pyflare_bindings::Reply, WireError> {
    match bindings.get(binding) {
        Some(target) => target.call(method, args, body).await,
        None => Err(WireError::error(format!(
            "pyflare has no binding named {binding}"
        ))),
    }
}

/// Sends a binding call's reply body. A small body at hand leaves at once,
/// its last chunk ending the stream; any other body is sent as it is
/// produced, at most `BODY_WINDOW_BYTES` ahead of what the host has taken,
/// then ended with `body_end`.
pub(super) async fn send_call_body(shared: &Arc<Shared>, id: u32, mut body: BodyStream) {
    if let Some(bytes) = body.as_whole()
        && bytes.len() <= BODY_WINDOW_BYTES
    {
        let mut bytes = bytes.clone();
        loop {
            let piece = bytes.split_to(bytes.len().min(CHUNK_BYTES));
            let last = bytes.is_empty();
            let _ = shared.out.send(Outgoing::Chunk(id, piece, last));
            if last {
                return;
            }
        }
    }
    let credit = Arc::new(Semaphore::new(BODY_WINDOW_BYTES));
    lock(&shared.reply_credit).insert(id, credit.clone());
    if shared.exit_reason().is_some() {
        // read_loop has already closed the others.
        return;
    }
    let mut error = None;
    'outer: while let Some(item) = body.next().await {
        match item {
            Ok(mut rest) => {
                while !rest.is_empty() {
                    let piece = rest.split_to(rest.len().min(CHUNK_BYTES));
                    // The window is far below u32::MAX, as is a chunk.
                    let Ok(permit) = credit.acquire_many(piece.len() as u32).await else {
                        // The worker cancelled the stream, or the host stopped.
                        return;
                    };
                    permit.forget();
                    let _ = shared.out.send(Outgoing::Chunk(id, piece, false));
                }
            }
            Err(e) => {
                error = Some(e.0);
                break 'outer;
            }
        }
    }
    lock(&shared.reply_credit).remove(&id);
    shared.send(&ToHost::BodyEnd { stream: id, error });
}
