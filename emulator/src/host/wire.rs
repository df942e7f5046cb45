//! The connection to the host: frames written and read, the handshake
//! until the host is ready, and every message from the host routed to
//! its request, body or binding call.

use super::*;

pub(super) async fn write_frames(
    write: tokio::net::unix::OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
) {
    let mut writer = BufWriter::with_capacity(256 * 1024, write);
    let mut header = BytesMut::with_capacity(64);
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(item) = next.take() {
            header.clear();
            let result = match item {
                Outgoing::Json(json) => {
                    transport::encode_json(&json, &mut header);
                    writer.write_all(&header).await
                }
                Outgoing::Chunk(stream, data, last) => {
                    transport::encode_chunk_header(stream, data.len(), last, &mut header);
                    match writer.write_all(&header).await {
                        Ok(()) => writer.write_all(&data).await,
                        Err(e) => Err(e),
                    }
                }
            };
            if result.is_err() {
                return;
            }
            next = rx.try_recv().ok();
        }
        if writer.flush().await.is_err() {
            return;
        }
    }
}

pub(super) struct FrameReader {
    pub(super) read: tokio::net::unix::OwnedReadHalf,
    pub(super) buf: BytesMut,
}

impl FrameReader {
    pub(super) fn new(read: tokio::net::unix::OwnedReadHalf) -> Self {
        Self {
            read,
            buf: BytesMut::with_capacity(256 * 1024),
        }
    }

    pub(super) async fn next(&mut self) -> anyhow::Result<Option<Frame>> {
        loop {
            if let Some(frame) = transport::decode(&mut self.buf)? {
                return Ok(Some(frame));
            }
            if self.buf.capacity() - self.buf.len() < 64 * 1024 {
                self.buf.reserve(256 * 1024);
            }
            if self.read.read_buf(&mut self.buf).await? == 0 {
                return Ok(None);
            }
        }
    }
}

pub(super) async fn wait_ready(
    reader: &mut FrameReader,
    shared: &Arc<Shared>,
    standby: bool,
) -> Result<(u64, String), StartError> {
    loop {
        let frame = reader
            .next()
            .await
            .map_err(StartError::Host)?
            .ok_or_else(|| {
                StartError::Host(anyhow!("the host closed the connection while loading"))
            })?;
        let json = match frame {
            Frame::Json(json) => json,
            // Bodies of binding calls the worker makes while it loads.
            Frame::Chunk { stream, data, last } => {
                on_chunk(shared, stream, data, last);
                continue;
            }
        };
        match serde_json::from_slice::<FromHost>(&json) {
            Ok(FromHost::Ready {
                version,
                startup_ms,
                origin,
            }) => {
                if version != PROTOCOL_VERSION {
                    return Err(StartError::Host(anyhow!(
                        "protocol version mismatch: pyflare speaks {PROTOCOL_VERSION}, the host speaks {version}"
                    )));
                }
                let origin = origin.unwrap_or_default();
                tracing::debug!("host ready in {startup_ms} ms ({origin})");
                return Ok((startup_ms, origin));
            }
            Ok(FromHost::StandbyReady { startup_ms }) if standby => {
                return Ok((startup_ms, "standby".into()));
            }
            Ok(FromHost::LoadError { message }) => return Err(StartError::Load(message)),
            Ok(FromHost::Log { level, message }) => logging::worker(level, &message),
            // Binding calls made at import time are answered as usual.
            Ok(
                message @ (FromHost::Call { .. }
                | FromHost::BodyEnd { .. }
                | FromHost::Credit { .. }
                | FromHost::Cancel { .. }),
            ) => handle_message(shared, message),
            Ok(_) => {}
            Err(e) => return Err(StartError::Host(anyhow!("bad message from the host: {e}"))),
        }
    }
}

pub(super) async fn read_loop(mut reader: FrameReader, shared: Arc<Shared>) {
    let reason = loop {
        match reader.next().await {
            Ok(Some(Frame::Chunk { stream, data, last })) => on_chunk(&shared, stream, data, last),
            Ok(Some(Frame::Json(json))) => match serde_json::from_slice::<FromHost>(&json) {
                // Nothing the host sends after this counts.
                Ok(FromHost::Abort { reason, message }) => break abort_reason(reason, message),
                Ok(message) => handle_message(&shared, message),
                Err(e) => tracing::warn!("ignoring a bad message from the host: {e}"),
            },
            Ok(None) => break ExitReason::Crashed("the host process exited".into()),
            Err(e) => break ExitReason::Crashed(format!("connection to the host failed: {e}")),
        }
    };
    let pending: Vec<_> = {
        let mut pending = lock(&shared.pending);
        shared.set_exit(reason);
        pending.drain().collect()
    };
    let reason = shared.exit_reason().unwrap_or(ExitReason::Stopped);
    for (_, tx) in pending {
        let _ = tx.send(Reply::HostGone(reason.clone()));
    }
    let bodies: Vec<_> = lock(&shared.bodies).drain().collect();
    for (_, tx) in bodies {
        let _ = tx.send(Err(BodyError("the worker host stopped".into())));
    }
    // Their clients are told the worker went away.
    lock(&shared.sockets).clear();
    let mut credits: Vec<_> = lock(&shared.credit).drain().collect();
    credits.extend(lock(&shared.reply_credit).drain());
    for (_, sem) in credits {
        sem.close();
    }
}

pub(super) fn abort_reason(reason: protocol::AbortReason, message: String) -> ExitReason {
    logging::error(&message);
    match reason {
        protocol::AbortReason::Fatal => ExitReason::Fatal(message),
        protocol::AbortReason::MemoryLimit => ExitReason::MemoryLimit(message),
    }
}

/// A piece of a response body or of a binding call's body; the last one
/// ends its stream as `body_end` does.
pub(super) fn on_chunk(shared: &Arc<Shared>, stream: u32, data: Bytes, last: bool) {
    if let Some(tx) = lock(&shared.bodies).get(&stream) {
        let _ = tx.send(Ok(data));
    }
    if last {
        handle_message(
            shared,
            FromHost::BodyEnd {
                stream,
                error: None,
            },
        );
    }
}

pub(super) fn handle_message(shared: &Arc<Shared>, message: FromHost) {
    match message {
        FromHost::Response {
            id,
            status,
            status_text,
            headers,
            has_body,
            body_length,
            websocket,
        } => {
            let Some(tx) = lock(&shared.pending).remove(&id) else {
                // The client went away; tell the host to stop the body.
                if has_body {
                    shared.send(&ToHost::Cancel { stream: id });
                }
                return;
            };
            let body = if has_body {
                let (body_tx, body_rx) = mpsc::unbounded_channel();
                lock(&shared.bodies).insert(id, body_tx);
                Some(ResponseBody {
                    id,
                    rx: body_rx,
                    shared: shared.clone(),
                    finished: false,
                })
            } else {
                shared.finish_request_body(id);
                None
            };
            let websocket = websocket.then(|| {
                let (events_tx, events) = mpsc::unbounded_channel();
                lock(&shared.sockets).insert(id, events_tx);
                HostSocket {
                    id,
                    events,
                    shared: shared.clone(),
                }
            });
            let _ = tx.send(Reply::Response(HostResponse {
                status,
                status_text,
                headers,
                body,
                body_length,
                websocket,
            }));
        }
        FromHost::Call {
            id,
            binding,
            method,
            args,
            has_body,
        } => {
            // The call runs at once; its body streams in as the binding
            // reads it, each chunk taken granting the host credit.
            let body = has_body.then(|| {
                let (body_tx, body_rx) = mpsc::unbounded_channel();
                lock(&shared.bodies).insert(id, body_tx);
                BodyStream::from_stream(ResponseBody {
                    id,
                    rx: body_rx,
                    shared: shared.clone(),
                    finished: false,
                })
            });
            tokio::spawn(run_call(shared.clone(), id, binding, method, args, body));
        }
        FromHost::Cancel { stream } => {
            // The worker stopped reading a binding call's reply body.
            if let Some(sem) = lock(&shared.reply_credit).remove(&stream) {
                sem.close();
            }
        }
        FromHost::BodyEnd { stream, error } => {
            shared.finish_request_body(stream);
            if let Some(tx) = lock(&shared.bodies).remove(&stream)
                && let Some(error) = error
            {
                let _ = tx.send(Err(BodyError(error)));
            }
        }
        FromHost::Credit { stream, bytes } => {
            if let Some(sem) = lock(&shared.credit).get(&stream) {
                sem.add_permits(bytes);
            } else if let Some(sem) = lock(&shared.reply_credit).get(&stream) {
                sem.add_permits(bytes);
            }
        }
        FromHost::Pong { seq } => {
            let mut ping = lock(&shared.ping);
            if ping.outstanding.is_some_and(|(s, _)| s == seq) {
                ping.outstanding = None;
            }
        }
        FromHost::Log { level, message } => logging::worker(level, &message),
        FromHost::EventResult {
            id,
            outcome,
            message,
            result,
        } => {
            shared.finish_request_body(id);
            let tx = lock(&shared.pending).remove(&id);
            match (tx, message) {
                (Some(tx), message) => {
                    let _ = tx.send(Reply::Finished {
                        status: outcome,
                        message,
                        result,
                    });
                }
                // Its caller went away: the failure is only logged.
                (None, Some(message)) => logging::worker(protocol::LogLevel::Error, &message),
                (None, None) => {}
            }
        }
        FromHost::WsSend {
            stream,
            text,
            binary,
        } => {
            use base64::Engine as _;
            let event = match (text, binary) {
                (Some(text), _) => SocketEvent::Text(text),
                (None, Some(binary)) => {
                    match base64::engine::general_purpose::STANDARD.decode(binary) {
                        Ok(bytes) => SocketEvent::Binary(Bytes::from(bytes)),
                        Err(e) => {
                            tracing::warn!("ignoring a bad WebSocket message from the host: {e}");
                            return;
                        }
                    }
                }
                (None, None) => SocketEvent::Text(String::new()),
            };
            if let Some(tx) = lock(&shared.sockets).get(&stream) {
                let _ = tx.send(event);
            }
        }
        FromHost::WsClose {
            stream,
            code,
            reason,
        } => {
            if let Some(tx) = lock(&shared.sockets).get(&stream) {
                let _ = tx.send(SocketEvent::Close { code, reason });
            }
        }
        FromHost::SnapshotDone { imported } => {
            shared.snapshot_done.send_replace(Some(imported));
        }
        FromHost::Ready { .. }
        | FromHost::LoadError { .. }
        | FromHost::StandbyReady { .. }
        | FromHost::Abort { .. } => {}
    }
}
