//! WebSockets through `pyflare dev`: the `websockets` fixture answers with
//! a WebSocketPair's client end, from the worker itself and from a Durable
//! Object using the hibernation API, through Cloudflare's SDK. Expected
//! behaviour and strings are workerd's, as a JavaScript worker doing the
//! same under Miniflare 4 shows them.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::util::{TestWorker, copy_fixture};

type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(w: &TestWorker, path: &str) -> Socket {
    let url = w.url(path).replacen("http://", "ws://", 1);
    let (socket, response) = tokio_tungstenite::connect_async(&url)
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}\n{}", w.output()));
    assert_eq!(response.status(), 101);
    socket
}

/// The next message or close, within 20 s.
async fn next(socket: &mut Socket) -> Message {
    match tokio::time::timeout(Duration::from_secs(20), socket.next()).await {
        Ok(Some(Ok(message))) => message,
        other => panic!("no message: {other:?}"),
    }
}

async fn text(socket: &mut Socket) -> String {
    match next(socket).await {
        Message::Text(text) => text.as_str().to_owned(),
        other => panic!("expected text, got {other:?}"),
    }
}

async fn send(socket: &mut Socket, text: &str) {
    socket.send(Message::text(text)).await.unwrap();
}

/// The close frame the server sent: code and reason.
async fn closed_with(socket: &mut Socket) -> (u16, String) {
    match next(socket).await {
        Message::Close(Some(frame)) => (u16::from(frame.code), frame.reason.as_str().to_owned()),
        other => panic!("expected a close, got {other:?}"),
    }
}

#[tokio::test]
async fn websocket_pair_accepted_by_the_worker_echoes_and_survives_a_failing_listener() {
    let w = TestWorker::start("websockets").await;
    let mut ws = connect(&w, "/echo").await;

    send(&mut ws, "hi").await;
    assert_eq!(text(&mut ws).await, "echo text hi");
    // From compatibility date 2026-03-17 a listener gets binary data as a
    // Blob (workerd's websocket_standard_binary_type).
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(text(&mut ws).await, "echo Blob 3");
    // Python bytes go out as a binary message.
    send(&mut ws, "bytes").await;
    assert_eq!(next(&mut ws).await, Message::binary(vec![1u8, 2]));

    // A listener that raises is logged; the socket and the worker go on.
    send(&mut ws, "raise").await;
    send(&mut ws, "still there").await;
    assert_eq!(text(&mut ws).await, "echo text still there");
    assert!(
        w.wait_for_output("the listener failed", Duration::from_secs(10))
            .await,
        "{}",
        w.output()
    );
    assert_eq!(w.get("/").await.text().await.unwrap(), "plain answer");

    // The worker closes: the client gets its code and reason.
    send(&mut ws, "close").await;
    assert_eq!(closed_with(&mut ws).await, (4002, "echo is done".into()));
}

#[tokio::test]
async fn websocket_durable_object_room_uses_the_hibernation_api() {
    let w = TestWorker::start("websockets").await;
    let mut ann = connect(&w, "/room/lobby?ann").await;
    assert_eq!(text(&mut ann).await, "welcome ann, tags ['ann']");
    let mut bob = connect(&w, "/room/lobby?bob").await;
    assert_eq!(text(&mut bob).await, "welcome bob, tags ['bob']");

    send(&mut ann, "who").await;
    assert_eq!(text(&mut ann).await, "ann of 2, tagged ann: 1");

    // The automatic response answers without the object's handler, and
    // leaves a timestamp on the socket it answered.
    send(&mut bob, "answered?").await;
    assert_eq!(text(&mut bob).await, "auto-answered: False");
    send(&mut bob, "ping").await;
    assert_eq!(text(&mut bob).await, "pong");
    send(&mut bob, "answered?").await;
    assert_eq!(text(&mut bob).await, "auto-answered: True");

    // A message reaches webSocketMessage, which broadcasts to every socket.
    send(&mut bob, "hello").await;
    assert_eq!(text(&mut ann).await, "bob: text hello");
    assert_eq!(text(&mut bob).await, "bob: text hello");
    // The hibernation API gets binary messages as ArrayBuffers.
    ann.send(Message::binary(vec![7u8, 8])).await.unwrap();
    assert_eq!(text(&mut ann).await, "ann: ArrayBuffer 2");
    assert_eq!(text(&mut bob).await, "ann: ArrayBuffer 2");

    // A handler that raises is logged with its traceback; the room goes on.
    send(&mut ann, "raise").await;
    assert!(
        w.wait_for_output("the room refuses this message", Duration::from_secs(10))
            .await,
        "{}",
        w.output()
    );

    // The client closes: webSocketClose gets its code and reason while the
    // socket is CLOSING (2), still counted; afterwards it is gone.
    bob.close(Some(CloseFrame {
        code: CloseCode::from(4000),
        reason: "bye".into(),
    }))
    .await
    .unwrap();
    let mut who = String::new();
    for _ in 0..50 {
        send(&mut ann, "who").await;
        who = text(&mut ann).await;
        if who == "ann of 1, tagged ann: 1" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(who, "ann of 1, tagged ann: 1");

    // The object closes: the client gets the frame, and webSocketClose
    // sees the socket CLOSED (3).
    send(&mut ann, "kick").await;
    assert_eq!(closed_with(&mut ann).await, (4001, "kicked".into()));
    // The client's answering close frame goes out as its stream is read on.
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while ann.next().await.is_some() {}
    })
    .await;
    let mut closes = serde_json::Value::Null;
    for _ in 0..50 {
        let body = w.get("/closes/lobby").await.text().await.unwrap();
        closes = serde_json::from_str(&body).unwrap();
        if closes.as_array().is_some_and(|c| c.len() == 2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        closes,
        serde_json::json!([
            ["bob", 4000, "bye", true, 2],
            ["ann", 4001, "kicked", true, 3]
        ])
    );
}

#[tokio::test]
async fn websocket_messages_keep_a_durable_object_alive_and_its_sockets_outlive_eviction() {
    let w = TestWorker::start("websockets").await;
    let mut ann = connect(&w, "/room/ev?ann").await;
    assert_eq!(text(&mut ann).await, "welcome ann, tags ['ann']");
    send(&mut ann, "count").await;
    assert_eq!(text(&mut ann).await, "counted 1");

    // 71 s without events pyflare routes, but with a message on the
    // object's socket: it is not evicted, its in-memory count goes on.
    w.advance_clock(71).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    send(&mut ann, "count").await;
    assert_eq!(text(&mut ann).await, "counted 2");

    // Idle for two spells, messages included: evicted, as a hibernated
    // object is. Its socket stays open; the next message builds a new
    // instance (a fresh count) that finds the socket's tags and attachment.
    w.advance_clock(71).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    w.advance_clock(71).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    send(&mut ann, "count").await;
    assert_eq!(text(&mut ann).await, "counted 1");
    send(&mut ann, "who").await;
    assert_eq!(text(&mut ann).await, "ann of 1, tagged ann: 1");
}

#[tokio::test]
async fn websocket_errors_are_workerds() {
    let w = TestWorker::start("websockets").await;
    // Sending on a server end not accepted yet.
    let res = w.get("/not-accepted").await;
    assert_eq!(res.status(), 400);
    assert_eq!(
        res.text().await.unwrap(),
        "TypeError: You must call one of accept() or state.acceptWebSocket() on this WebSocket before sending messages."
    );
    // A WebSocket answering a request that asked for no upgrade.
    let res = w.get("/room/plain").await;
    assert_eq!(res.status(), 500);
    assert!(
        res.text().await.unwrap().contains(
            "Worker tried to return a WebSocket in a response to a request which did not contain the header \"Upgrade: websocket\"."
        )
    );
    // The worker still serves, sockets included.
    let mut ws = connect(&w, "/echo").await;
    send(&mut ws, "after").await;
    assert_eq!(text(&mut ws).await, "echo text after");
}

/// A WebSocket server for one client, which it sends `messages`, `pause`
/// apart, then keeps open; its address.
async fn serve_messages(
    messages: &'static [&'static str],
    pause: Duration,
) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
        for message in messages {
            ws.send(Message::text(*message)).await.unwrap();
            tokio::time::sleep(pause).await;
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    address
}

/// What `path` answers once it answers `expected`, or after 10 s.
async fn poll_until(w: &TestWorker, path: &str, expected: &str) -> String {
    let mut answer = String::new();
    for _ in 0..100 {
        answer = w.get(path).await.text().await.unwrap();
        if answer == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    answer
}

#[tokio::test]
async fn websocket_outgoing_listener_that_raises_is_logged_and_the_isolate_goes_on() {
    // The second message makes the worker's listener raise.
    let address = serve_messages(&["one", "boom", "two"], Duration::from_millis(100)).await;
    let w = TestWorker::start("websockets").await;
    let res = w.get(&format!("/outbound?ws://{address}/")).await;
    assert_eq!(res.text().await.unwrap(), "connecting");
    // The same isolate got all three: the error did not end it.
    let received = poll_until(&w, "/received", "one,boom,two").await;
    assert_eq!(received, "one,boom,two", "{}", w.output());
    assert!(w.output().contains("the outgoing socket's listener failed"));
    assert!(!w.output().contains("restarting"), "{}", w.output());
}

#[tokio::test]
async fn websocket_listener_in_a_durable_object_stores_with_the_synchronous_kv_api() {
    // A listener is called by JavaScript, with no stack JSPI can suspend:
    // its `storage.kv` calls block the isolate until pyflare answers.
    let address = serve_messages(&["first", "second", "third"], Duration::ZERO).await;
    let w = TestWorker::start("websockets").await;
    let res = w.get(&format!("/listen/feed?ws://{address}/")).await;
    assert_eq!(res.text().await.unwrap(), "listening");
    let heard = poll_until(&w, "/heard/feed", "first,second,third").await;
    assert_eq!(heard, "first,second,third", "{}", w.output());
    assert!(!w.output().contains("Uncaught"), "{}", w.output());
}

#[tokio::test]
async fn durable_object_sql_in_a_timer_callback_answers_as_in_a_handler() {
    // A timer's callback blocks on each call; a handler waits with JSPI.
    // Both see the same rows and the same error.
    let w = TestWorker::start("websockets").await;
    let answer: serde_json::Value = w.get("/in-timer/sql").await.json().await.unwrap();
    let handler = &answer["handler"];
    assert_eq!(handler["rows"], serde_json::json!([42]), "{answer}");
    assert!(
        handler["error"].as_str().unwrap().contains("syntax error"),
        "{answer}"
    );
    assert_eq!(
        answer["timer"]["rows"],
        serde_json::json!([42, 42]),
        "{answer}"
    );
    assert_eq!(answer["timer"]["error"], handler["error"], "{answer}");
}

#[tokio::test]
async fn websocket_idle_longer_than_the_connection_timeouts_stays_open() {
    // The wait for a next request head does not apply to an upgraded
    // connection: a quiet socket outlives both timeouts.
    let w = TestWorker::spawn(
        &crate::util::fixture("websockets"),
        tempfile::tempdir().unwrap(),
        &[],
        &[
            ("PYFLARE_HEADER_TIMEOUT_MS", "200"),
            ("PYFLARE_KEEP_ALIVE_TIMEOUT_MS", "200"),
        ],
    )
    .await;
    let mut ws = connect(&w, "/echo").await;
    send(&mut ws, "first").await;
    assert_eq!(text(&mut ws).await, "echo text first");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    send(&mut ws, "after a quiet spell").await;
    assert_eq!(text(&mut ws).await, "echo text after a quiet spell");
}

#[tokio::test]
async fn websocket_is_closed_with_1012_when_the_worker_reloads() {
    let project = copy_fixture("websockets");
    let w = TestWorker::spawn(project.path(), tempfile::tempdir().unwrap(), &[], &[]).await;
    let mut ws = connect(&w, "/echo").await;
    send(&mut ws, "before").await;
    assert_eq!(text(&mut ws).await, "echo text before");

    let entry = project.path().join("src/entry.py");
    let code = std::fs::read_to_string(&entry).unwrap();
    std::fs::write(&entry, format!("{code}\n# edited\n")).unwrap();
    let (code, reason) = closed_with(&mut ws).await;
    assert_eq!((code, reason.as_str()), (1012, "the worker restarted"));

    // The new version takes new sockets.
    let mut again = connect(&w, "/echo").await;
    send(&mut again, "after").await;
    assert_eq!(text(&mut again).await, "echo text after");
}
