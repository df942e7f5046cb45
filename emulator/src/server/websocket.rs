//! WebSockets a worker answers with (`Response(None, status=101,
//! web_socket=client)`): pyflare's front completes the client's upgrade and
//! relays messages between the client and the worker's end of the pair in
//! the isolate host (`HostSocket`).
//!
//! Not emulated: permessage-deflate (no extension is negotiated) and the
//! worker picking a subprotocol other than by its own response header.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use futures::{SinkExt, StreamExt};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};

use super::listen::ConnectionUse;
use crate::host::{HostResponse, HostSocket, SocketEvent};

/// Largest message a client may send: Cloudflare's limit for a message a
/// Worker or Durable Object receives (32 MiB); larger ones close the
/// socket with 1009.
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024 * 1024;

/// What a request needs to become a WebSocket, when it asks to.
pub struct Upgrade {
    key: HeaderValue,
    on_upgrade: OnUpgrade,
    connection: Option<ConnectionUse>,
}

impl Upgrade {
    /// The upgrade a `GET` with `Upgrade: websocket` asks for, taken out of
    /// its extensions; None for any other request.
    pub fn take(
        method: &axum::http::Method,
        headers: &HeaderMap,
        extensions: &mut axum::http::Extensions,
    ) -> Option<Self> {
        let wants = method == axum::http::Method::GET
            && headers
                .get(header::UPGRADE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
        if !wants {
            return None;
        }
        let key = headers.get(header::SEC_WEBSOCKET_KEY)?.clone();
        let on_upgrade = extensions.remove::<OnUpgrade>()?;
        Some(Self {
            key,
            on_upgrade,
            connection: extensions.get::<ConnectionUse>().cloned(),
        })
    }
}

/// Answers the client with 101 and relays the socket, from the worker's
/// response head (its headers go out, as workerd sends them).
pub fn accept(upgrade: Upgrade, head: HostResponse, socket: HostSocket) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    super::append_headers(headers, head.headers);
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = HeaderValue::try_from(derive_accept_key(upgrade.key.as_bytes())) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    headers.remove(header::CONTENT_LENGTH);
    tokio::spawn(relay(upgrade, socket));
    response
}

/// A worker answered a request that asked for no upgrade with a WebSocket:
/// workerd's error, thrown as the worker's own exception would be.
pub fn not_an_upgrade(socket: HostSocket) -> String {
    socket.closed(1006, String::new(), false);
    "TypeError: Worker tried to return a WebSocket in a response to a request which did not contain the header \"Upgrade: websocket\".".into()
}

async fn relay(upgrade: Upgrade, mut socket: HostSocket) {
    // Busy while the socket is open: the connection's wait for a next
    // request head does not apply to it.
    let _busy = upgrade.connection.as_ref().map(ConnectionUse::hold);
    let io = match upgrade.on_upgrade.await {
        Ok(io) => TokioIo::new(io),
        Err(e) => {
            tracing::debug!("WebSocket upgrade failed: {e}");
            socket.closed(1006, String::new(), false);
            return;
        }
    };
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES));
    let mut ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
    // Whether the client's close reached the worker already.
    let mut told = false;
    loop {
        tokio::select! {
            incoming = ws.next() => match incoming {
                Some(Ok(Message::Text(text))) => socket.send_text(text.as_str().to_owned()),
                Some(Ok(Message::Binary(bytes))) => socket.send_binary(&bytes),
                Some(Ok(Message::Close(frame))) => {
                    // The close frame is answered as the stream goes on.
                    let (code, reason) = frame
                        .map(|f| (u16::from(f.code), f.reason.as_str().to_owned()))
                        .unwrap_or((1005, String::new()));
                    socket.closed(code, reason, true);
                    told = true;
                }
                Some(Ok(_)) => {}
                Some(Err(tokio_tungstenite::tungstenite::Error::Capacity(e))) => {
                    // workerd's answer to a message over the limit.
                    tracing::debug!("WebSocket message from the client too large: {e}");
                    let reason = "Message is too large";
                    let frame = CloseFrame { code: CloseCode::Size, reason: reason.into() };
                    let _ = ws.close(Some(frame)).await;
                    if !told {
                        socket.closed(1009, reason.into(), false);
                    }
                    return;
                }
                Some(Err(e)) => {
                    tracing::debug!("WebSocket from the client failed: {e}");
                    if !told {
                        socket.closed(1006, String::new(), false);
                    }
                    return;
                }
                None => {
                    if !told {
                        socket.closed(1006, String::new(), false);
                    }
                    return;
                }
            },
            event = socket.events.recv() => {
                let sent = match event {
                    Some(SocketEvent::Text(text)) => ws.send(Message::text(text)).await,
                    Some(SocketEvent::Binary(bytes)) => ws.send(Message::binary(bytes)).await,
                    Some(SocketEvent::Close { code, reason }) => {
                        let frame = code.map(|code| CloseFrame { code: CloseCode::from(code), reason: reason.into() });
                        ws.close(frame).await
                    }
                    None => {
                        // The worker's host stopped (a reload, or a crash).
                        let frame = CloseFrame {
                            code: CloseCode::Restart,
                            reason: "the worker restarted".into(),
                        };
                        let _ = ws.close(Some(frame)).await;
                        if !told {
                            socket.closed(1006, String::new(), false);
                        }
                        return;
                    }
                };
                if let Err(e) = sent {
                    tracing::debug!("WebSocket to the client failed: {e}");
                }
            }
        }
    }
}
