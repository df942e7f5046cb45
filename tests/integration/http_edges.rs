//! HTTP edges through `pyflare dev`, over real TCP sockets: header bytes
//! past ASCII, many and large headers, idle and slow connections, bodies
//! over Cloudflare's limit, and that no internal stack reaches a client.

use crate::util::{TestWorker, fixture};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `host:port` of a running worker.
fn address(w: &TestWorker) -> String {
    w.base.trim_start_matches("http://").to_owned()
}

/// Sends `request` on a new connection and reads until the server closes
/// it (every request here asks for `Connection: close` or is refused).
async fn exchange(w: &TestWorker, request: &[u8]) -> String {
    let mut socket = TcpStream::connect(address(w)).await.unwrap();
    socket.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), socket.read_to_end(&mut answer))
        .await
        .expect("an answer, then the connection closed")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

/// Waits for the server to close `socket`; how long that took.
async fn closed_after(socket: &mut TcpStream, limit: Duration) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(limit, socket.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => panic!("the connection is still open after {limit:?}"),
        }
    }
}

fn assert_no_internal_stack(text: &str) {
    for leak in ["node:internal", "file://", ".mjs:", "\n    at "] {
        assert!(!text.contains(leak), "internal stack ({leak}) in:\n{text}");
    }
}

#[tokio::test]
async fn http_edges_header_bytes_past_ascii_reach_the_worker_as_on_cloudflare() {
    let w = TestWorker::start("http").await;
    let mut request = b"GET /inspect HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n".to_vec();
    // UTF-8 Latin-1 text, UTF-8 past U+00FF, and a byte that is not UTF-8.
    request.extend_from_slice("x-utf8: café\r\n".as_bytes());
    request.extend_from_slice("x-wide: a…b\r\n".as_bytes());
    request.extend_from_slice(b"x-latin1: caf\xe9\r\n\r\n");
    let answer = exchange(&w, &request).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    let json = &answer[answer.find("\r\n\r\n").unwrap() + 4..];
    let seen: serde_json::Value = serde_json::from_str(json).unwrap();
    let header = |name: &str| {
        seen["headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|pair| pair[0] == name)
            .map(|pair| pair[1].as_str().unwrap().to_owned())
    };
    // As workerd: the UTF-8 decoding.
    assert_eq!(header("x-utf8").as_deref(), Some("café"));
    // Node's Headers cannot hold U+2026 or U+FFFD: one character per byte.
    assert_eq!(header("x-wide").as_deref(), Some("a\u{e2}\u{80}\u{a6}b"));
    assert_eq!(header("x-latin1").as_deref(), Some("caf\u{e9}"));
    assert!(
        w.output()
            .contains("warning: request header `x-wide` is not UTF-8 text"),
        "{}",
        w.output()
    );
}

#[tokio::test]
async fn http_edges_a_host_that_is_no_host_name_is_a_plain_400() {
    let w = TestWorker::start("http").await;
    for host in [
        &b"ex\xc3\xa4mple.com"[..],
        b"ex\xe4mple.com",
        b"a b",
        b"user@host",
        b"host:99999",
        b"a%zzb",
    ] {
        let mut request = b"GET / HTTP/1.1\r\nHost: ".to_vec();
        request.extend_from_slice(host);
        request.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
        let answer = exchange(&w, &request).await;
        assert!(
            answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{answer}"
        );
        assert!(
            answer.contains("<center><h1>400 Bad Request</h1></center>"),
            "{answer}"
        );
        assert_no_internal_stack(&answer);
    }
    // The worker still serves.
    assert_eq!(w.get("/").await.status(), 200);
}

#[tokio::test]
async fn http_edges_no_internal_stack_reaches_the_client() {
    let w = TestWorker::start("http").await;
    // Node's Request refuses these methods; workerd runs the worker.
    for method in ["TRACE", "TRACK", "CONNECT"] {
        let request =
            format!("{method} /inspect HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        let answer = exchange(&w, request.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 "), "{answer}");
        assert_no_internal_stack(&answer);
        assert_no_internal_stack(&w.output());
    }
}

#[tokio::test]
async fn http_edges_headers_are_limited_by_total_size_not_count() {
    let w = TestWorker::start("http").await;
    // 500 headers (hyper alone refuses more than 100): all reach the worker.
    let mut request = TestWorker::client().get(w.url("/inspect"));
    for i in 0..500 {
        request = request.header(format!("x-h{i}"), format!("value {i}"));
    }
    let res = request.send().await.unwrap();
    assert_eq!(res.status(), 200);
    let seen: serde_json::Value = res.json().await.unwrap();
    let headers = seen["headers"].as_array().unwrap();
    assert!(
        headers
            .iter()
            .any(|p| p[0] == "x-h499" && p[1] == "value 499"),
        "{seen}"
    );
    assert!(headers.len() >= 500);

    // Just under 128 KB in 4 KB headers passes; over it is Cloudflare's 400.
    let big = "v".repeat(4000);
    let mut request = TestWorker::client().get(w.url("/inspect"));
    for i in 0..32 {
        request = request.header(format!("x-big{i:02}"), &big);
    }
    assert_eq!(request.send().await.unwrap().status(), 200);
    let mut request = b"GET / HTTP/1.1\r\nHost: localhost\r\n".to_vec();
    for i in 0..34 {
        request.extend_from_slice(format!("x-big{i:02}: {big}\r\n").as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    let answer = exchange(&w, &request).await;
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{}",
        &answer[..answer.len().min(300)]
    );
    assert!(
        answer.contains("<title>400 Request Header Or Cookie Too Large</title>"),
        "{answer}"
    );
    assert!(
        answer.contains("<hr><center>cloudflare</center>"),
        "{answer}"
    );
}

#[tokio::test]
async fn http_edges_idle_and_slow_connections_are_closed() {
    let state = tempfile::tempdir().unwrap();
    let w = TestWorker::spawn(
        &fixture("http"),
        state,
        &[],
        &[
            ("PYFLARE_KEEP_ALIVE_TIMEOUT_MS", "2000"),
            ("PYFLARE_HEADER_TIMEOUT_MS", "600"),
        ],
    )
    .await;
    let get = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let read_response = async |socket: &mut TcpStream| {
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(30), socket.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };

    // Keep-alive: a connection idle for longer than the header timeout but
    // less than the keep-alive timeout still serves; then it is closed.
    let mut socket = TcpStream::connect(address(&w)).await.unwrap();
    socket.write_all(get).await.unwrap();
    let answer = read_response(&mut socket).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    socket.write_all(get).await.unwrap();
    let answer = read_response(&mut socket).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    let idle = closed_after(&mut socket, Duration::from_secs(10)).await;
    assert!(
        idle >= Duration::from_millis(1500) && idle < Duration::from_secs(5),
        "{idle:?}"
    );

    // A connection that never sends anything is closed at the idle limit.
    let mut socket = TcpStream::connect(address(&w)).await.unwrap();
    let idle = closed_after(&mut socket, Duration::from_secs(10)).await;
    assert!(idle < Duration::from_secs(5), "{idle:?}");

    // Slowloris: a head that trickles in is cut off at the header timeout,
    // though bytes keep coming; also after requests with bodies, read by
    // the worker or not.
    let before: [&[u8]; 3] = [
        b"",
        b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello",
        b"POST /inspect HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello",
    ];
    for first in before {
        let mut socket = TcpStream::connect(address(&w)).await.unwrap();
        if !first.is_empty() {
            socket.write_all(first).await.unwrap();
            let mut answer = String::new();
            while !answer.ends_with("Worker!") && !answer.ends_with('}') {
                answer.push_str(&read_response(&mut socket).await);
            }
            assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        }
        socket
            .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
            .await
            .unwrap();
        let started = Instant::now();
        let mut closed = false;
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if socket.write_all(b"x").await.is_err() {
                closed = true;
                break;
            }
            let mut buf = [0u8; 64];
            if let Ok(Ok(0) | Err(_)) =
                tokio::time::timeout(Duration::from_millis(1), socket.read(&mut buf)).await
            {
                closed = true;
                break;
            }
        }
        let took = started.elapsed();
        assert!(closed, "a trickled head kept the connection open");
        assert!(
            took >= Duration::from_millis(500) && took < Duration::from_millis(1900),
            "closed after {took:?}"
        );
    }

    // A body may come slowly: only the head is timed.
    let mut socket = TcpStream::connect(address(&w)).await.unwrap();
    socket
        .write_all(b"POST /inspect HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\n")
        .await
        .unwrap();
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        socket.write_all(b"z").await.unwrap();
    }
    let mut answer = String::new();
    while !answer.ends_with('}') {
        answer.push_str(&read_response(&mut socket).await);
    }
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.contains("\"body\": \"zzzzzzzzzz\""), "{answer}");

    // The server still serves new connections.
    assert_eq!(w.get("/").await.status(), 200);
}

#[tokio::test]
async fn http_edges_bodies_over_the_limit_get_cloudflares_413() {
    let w = TestWorker::start_with("http", &["--max-body-size", "1KB"]).await;
    // A declared length over the limit is refused before any body is sent.
    let answer = exchange(
        &w,
        b"POST /inspect HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000000\r\n\r\n",
    )
    .await;
    assert!(
        answer.starts_with("HTTP/1.1 413 Request Entity Too Large\r\n"),
        "{answer}"
    );
    assert!(
        answer.ends_with("<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n<body>\r\n<center><h1>413 Request Entity Too Large</h1></center>\r\n<hr><center>cloudflare</center>\r\n</body>\r\n</html>\r\n"),
        "{answer}"
    );

    // At the limit it passes.
    let res = TestWorker::client()
        .post(w.url("/inspect"))
        .body(vec![b'a'; 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let seen: serde_json::Value = res.json().await.unwrap();
    assert_eq!(seen["body"].as_str().unwrap().len(), 1024);

    // A chunked body is cut off once it passes the limit.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..8).map(|_| Ok(vec![b'b'; 512])).collect();
    let res = TestWorker::client()
        .post(w.url("/inspect"))
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("<title>413 Request Entity Too Large</title>")
    );
    assert_eq!(w.get("/").await.status(), 200);
}

#[tokio::test]
async fn http_edges_unknown_pyflare_routes_are_404() {
    let w = TestWorker::start("http").await;
    // A binding kind without routes of its own, and no kind at all.
    for path in [
        "/cdn-cgi/pyflare/kv",
        "/cdn-cgi/pyflare/kv/x",
        "/cdn-cgi/pyflare/nope/x",
    ] {
        let res = w.get(path).await;
        assert_eq!(res.status(), 404, "{path}");
    }
    assert_eq!(w.get("/cdn-cgi/pyflare/health").await.status(), 200);
}

/// An address of this machine that is not loopback, if it has one.
fn non_loopback_address() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    // No packet is sent: connecting a UDP socket only picks a route.
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[tokio::test]
async fn http_edges_internal_routes_open_to_other_clients_only_when_asked() {
    let Some(ip) = non_loopback_address() else {
        eprintln!("skipped: this machine has no address but loopback");
        return;
    };
    for (setting, want) in [("loopback", 403), ("any", 200)] {
        let w = TestWorker::spawn(
            &fixture("http"),
            tempfile::tempdir().unwrap(),
            &["--ip", "0.0.0.0"],
            &[("PYFLARE_INTERNAL_ROUTES", setting)],
        )
        .await;
        let port = w
            .url("")
            .rsplit(':')
            .next()
            .unwrap()
            .trim_end_matches('/')
            .to_owned();
        let url = format!("http://{ip}:{port}/cdn-cgi/pyflare/health");
        let res = TestWorker::client().get(&url).send().await.unwrap();
        assert_eq!(res.status(), want, "{setting}");
    }
    // Any other value stops pyflare with a hint.
    let out = std::process::Command::new(crate::util::pyflare_bin())
        .arg("dev")
        .arg(fixture("http"))
        .args(["--port", "0"])
        .env("PYFLARE_INTERNAL_ROUTES", "open")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("pyflare: error: PYFLARE_INTERNAL_ROUTES is `open`\nhint: set it to `loopback` (the default) or `any`"),
        "{stderr}"
    );
}
