//! Binding calls that block the whole isolate, over a second connection to
//! the host: its standard input, one end of a Unix socket pair, which the
//! host writes and reads with blocking system calls.
//!
//! Python's synchronous storage calls (a Durable Object's `storage.sql` and
//! `storage.kv`) wait with JSPI inside a handler. Code that JavaScript calls
//! synchronously (an event listener, a timer callback) has no stack JSPI
//! can suspend; there the host blocks on this connection instead, as
//! workerd's in-process SQLite blocks the isolate for the call.
//!
//! Frames are the main connection's (see `transport`): a JSON call
//! `{binding, method, args, has_body}` and, with a body, chunks of stream 0
//! up to a last one; the reply is a `call_reply` message and, with a body,
//! its whole body as one last chunk. One call at a time: the host waits for
//! each reply before it runs anything else.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Weak;

use super::transport::{self, MAX_FRAME_BYTES};
use super::*;

/// Longest a blocking call may take before it fails. The isolate runs
/// nothing else meanwhile, so a call that waits on the isolate itself (a
/// storage lock its own handler holds) fails after this rather than
/// hanging it for good.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(serde::Deserialize)]
struct BlockingCall {
    binding: String,
    method: String,
    #[serde(default)]
    args: serde_json::Value,
    #[serde(default)]
    has_body: bool,
}

/// Serves the host's blocking calls until it closes the connection (it
/// exited) or pyflare drops its state. Runs on a thread of its own, which
/// waits for each call on `runtime`.
pub(super) fn serve(stream: UnixStream, shared: Weak<Shared>, runtime: tokio::runtime::Handle) {
    let mut connection = Connection {
        stream,
        buf: BytesMut::with_capacity(64 * 1024),
    };
    loop {
        let (call, body) = match connection.next_call() {
            Ok(Some(call)) => call,
            // The host exited.
            Ok(None) => return,
            Err(e) if e.is::<std::io::Error>() => return,
            Err(e) => {
                // Its next blocking call fails with the connection closed.
                tracing::warn!("closing the host's connection for blocking calls: {e}");
                return;
            }
        };
        let Some(bindings) = shared.upgrade().map(|shared| shared.bindings()) else {
            return;
        };
        let result = runtime.block_on(async {
            let run = async {
                let reply = super::calls::call_binding(
                    &bindings,
                    &call.binding,
                    &call.method,
                    call.args,
                    body.map(BodyStream::whole),
                )
                .await?;
                let body = match reply.body {
                    Some(body) => Some(body.collect(MAX_FRAME_BYTES - 5).await.map_err(|e| {
                        WireError::error(format!("the reply of a synchronous call failed: {e}"))
                    })?),
                    None => None,
                };
                Ok((reply.value, body))
            };
            match tokio::time::timeout(CALL_TIMEOUT, run).await {
                Ok(result) => result,
                Err(_) => Err(WireError::error(format!(
                    "a synchronous {} call did not finish within {} s",
                    call.method,
                    CALL_TIMEOUT.as_secs()
                ))),
            }
        });
        if connection.reply(result).is_err() {
            return;
        }
    }
}

struct Connection {
    stream: UnixStream,
    buf: BytesMut,
}

impl Connection {
    /// The next frame; None when the host closed the connection.
    fn next_frame(&mut self) -> anyhow::Result<Option<Frame>> {
        loop {
            if let Some(frame) = transport::decode(&mut self.buf)? {
                return Ok(Some(frame));
            }
            let mut chunk = [0u8; 64 * 1024];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Ok(None);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next call and its body.
    fn next_call(&mut self) -> anyhow::Result<Option<(BlockingCall, Option<Bytes>)>> {
        let Some(frame) = self.next_frame()? else {
            return Ok(None);
        };
        let Frame::Json(json) = frame else {
            anyhow::bail!("a blocking call must start with its JSON message");
        };
        let call: BlockingCall = serde_json::from_slice(&json)?;
        if !call.has_body {
            return Ok(Some((call, None)));
        }
        let mut body = BytesMut::new();
        loop {
            match self.next_frame()? {
                Some(Frame::Chunk { data, last, .. }) => {
                    body.extend_from_slice(&data);
                    if last {
                        return Ok(Some((call, Some(body.freeze()))));
                    }
                }
                Some(Frame::Json(_)) => anyhow::bail!("a blocking call's body broke off"),
                None => return Ok(None),
            }
        }
    }

    fn reply(
        &mut self,
        result: Result<(serde_json::Value, Option<Bytes>), WireError>,
    ) -> std::io::Result<()> {
        let (ok, error, body) = match result {
            Ok((value, body)) => (Some(value), None, body),
            Err(error) => (None, Some(error), None),
        };
        let message = ToHost::CallReply {
            id: 0,
            ok,
            error,
            has_body: body.is_some(),
        };
        let json = serde_json::to_vec(&message).expect("protocol messages serialize");
        let mut out = BytesMut::new();
        transport::encode_json(&json, &mut out);
        if let Some(body) = &body {
            transport::encode_chunk_header(0, body.len(), true, &mut out);
            out.extend_from_slice(body);
        }
        self.stream.write_all(&out)
    }
}
