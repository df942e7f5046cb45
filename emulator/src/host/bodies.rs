//! Bodies between pyflare and the host: a request body pumped to the
//! host under its credit, a response (or binding call) body streamed from it,
//! and the cancel sent when the client goes away.

use super::*;

/// Tells the host to drop a request whose client went away.
pub(super) struct CancelGuard {
    pub(super) shared: Arc<Shared>,
    pub(super) id: u32,
    pub(super) armed: bool,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if self.armed {
            lock(&self.shared.pending).remove(&self.id);
            self.shared.finish_request_body(self.id);
            self.shared.send(&ToHost::Cancel { stream: self.id });
        }
    }
}

pub(super) async fn pump_request_body(
    shared: Arc<Shared>,
    id: u32,
    body: axum::body::Body,
    credit: Arc<Semaphore>,
) {
    let mut stream = body.into_data_stream();
    let mut error = None;
    'outer: while let Some(item) = stream.next().await {
        match item {
            Ok(bytes) => {
                let mut rest = bytes;
                while !rest.is_empty() {
                    let piece = rest.split_to(rest.len().min(CHUNK_BYTES));
                    // The window is far below u32::MAX, as is a chunk.
                    let Ok(permit) = credit.acquire_many(piece.len() as u32).await else {
                        error = Some("request body no longer read".to_owned());
                        break 'outer;
                    };
                    permit.forget();
                    let _ = shared.out.send(Outgoing::Chunk(id, piece, false));
                }
            }
            Err(e) => {
                error = Some(e.to_string());
                break;
            }
        }
    }
    shared.send(&ToHost::BodyEnd { stream: id, error });
}

/// The worker's response body as it streams in from the host; every chunk
/// taken grants the host credit for another. The body of a binding call
/// arrives the same way.
pub struct ResponseBody {
    pub(super) id: u32,
    pub(super) rx: mpsc::UnboundedReceiver<BodyItem>,
    pub(super) shared: Arc<Shared>,
    pub(super) finished: bool,
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("id", &self.id)
            .finish()
    }
}

impl Stream for ResponseBody {
    type Item = BodyItem;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<BodyItem>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(bytes))) => {
                // The host sends nothing after a stream's last chunk, so
                // that one needs no credit.
                let ended = self.rx.is_closed() && self.rx.is_empty();
                if ended {
                    self.finished = true;
                } else {
                    self.shared.send(&ToHost::Credit {
                        stream: self.id,
                        bytes: bytes.len(),
                    });
                }
                Poll::Ready(Some(Ok(bytes)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.finished = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                self.finished = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        if !self.finished {
            lock(&self.shared.bodies).remove(&self.id);
            self.shared.finish_request_body(self.id);
            self.shared.send(&ToHost::Cancel { stream: self.id });
        }
    }
}
