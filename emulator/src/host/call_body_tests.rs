//! Binding call bodies through a real host: a Node process running the
//! worker's runtime, the real transport and the real call path, with a test
//! binding that echoes a large streamed body back as its streamed reply.
//! Both processes' memory must stay far below the body's size.

use super::*;
use async_trait::async_trait;
use protocol::BindingInit;
use pyflare_bindings::{BodyError, Reply};
use std::sync::atomic::AtomicU64;
use tokio::sync::Notify;

/// Bytes sent each way: far more than any buffer on the path may hold.
const BODY_BYTES: u64 = 256 * 1024 * 1024;

/// The byte at `offset` of the body: its 64 KiB block number, so a chunk
/// lost, repeated or reordered shows.
fn byte_at(offset: u64) -> u8 {
    (offset >> 16) as u8
}

/// `env.PIPE`: once pyflare lets it go (`wait`), sends `BODY_BYTES` made as
/// they are read to `echo`, reads the streamed reply, checks every byte
/// and reports what it saw with `done`.
const SHIM: &str = r#"
export function create(name, call) {
  (async () => {
    await call("wait", {});
    const total = Number(BODY_BYTES);
    let made = 0;
    const body = new ReadableStream({
      pull(controller) {
        if (made >= total) return controller.close();
        const size = Math.min(256 * 1024, total - made);
        const bytes = new Uint8Array(size);
        for (let at = 0; at < size; at += 65536) bytes.fill(((made + at) / 65536) & 255, at, at + 65536);
        made += size;
        controller.enqueue(bytes);
      },
    });
    const { body: reply } = await call("echo", {}, body, { stream: true });
    let seen = 0;
    let wrong = 0;
    for await (const chunk of reply) {
      for (let i = 0; i < chunk.byteLength; i += 4093) {
        if (chunk[i] !== (Math.floor((seen + i) / 65536) & 255)) wrong++;
      }
      seen += chunk.byteLength;
    }
    await call("done", { seen, wrong });
  })().catch((error) => call("done", { error: String(error) }));
  return {};
}
"#;

#[derive(Debug, Default)]
struct Pipe {
    go: Notify,
    finished: Notify,
    /// Bytes the binding read from the call body, and wrong ones among them.
    read: AtomicU64,
    wrong: AtomicU64,
    report: Mutex<Option<serde_json::Value>>,
}

#[derive(Debug)]
struct PipeBinding(Arc<Pipe>);

#[async_trait]
impl Binding for PipeBinding {
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
        method: &str,
        args: serde_json::Value,
        body: Option<BodyStream>,
    ) -> Result<Reply, WireError> {
        match method {
            "wait" => {
                self.0.go.notified().await;
                Ok(Reply::json(serde_json::Value::Null))
            }
            "echo" => {
                // The reply is the call's own body, checked as it passes.
                let pipe = self.0.clone();
                let body = body.ok_or_else(|| WireError::error("no body"))?;
                let checked = body.map(move |chunk: Result<Bytes, BodyError>| {
                    let chunk = chunk?;
                    let start = pipe.read.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    let wrong = (0..chunk.len())
                        .step_by(4093)
                        .filter(|&i| chunk[i] != byte_at(start + i as u64))
                        .count();
                    pipe.wrong.fetch_add(wrong as u64, Ordering::Relaxed);
                    Ok(chunk)
                });
                Ok(Reply::with_body(
                    serde_json::Value::Null,
                    BodyStream::from_stream(checked),
                ))
            }
            "done" => {
                *lock(&self.0.report) = Some(args);
                self.0.finished.notify_one();
                Ok(Reply::json(serde_json::Value::Null))
            }
            other => Err(WireError::error(format!("no method {other}"))),
        }
    }
}

/// Resident memory of process `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Starts a real host whose worker has one binding, `PIPE`: `shim` on the
/// JavaScript side, `binding` in pyflare. The temporary folder must outlive
/// the host.
async fn start_host(shim: String, binding: Arc<dyn Binding>) -> (Arc<Host>, tempfile::TempDir) {
    start_host_with(
        "from workers import Response, WorkerEntrypoint\n\n\nclass Default(WorkerEntrypoint):\n    async def fetch(self, request):\n        return Response('ok')\n",
        shim,
        binding,
    )
    .await
}

/// [`start_host`] with the worker's own `entry.py`.
pub(super) async fn start_host_with(
    entry: &str,
    shim: String,
    binding: Arc<dyn Binding>,
) -> (Arc<Host>, tempfile::TempDir) {
    let runtime = Runtime::ensure().expect("the pinned runtime (pyflare setup)");
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("entry.py"), entry).unwrap();
    let init = WorkerInit {
        name: "call-bodies".into(),
        pyodide_dir: runtime.pyodide_dir.to_string_lossy().into_owned(),
        sdk_dir: runtime.sdk_dir.to_string_lossy().into_owned(),
        host_python_dir: runtime.host_python_dir.to_string_lossy().into_owned(),
        module_root: src.to_string_lossy().into_owned(),
        main_module: "entry".into(),
        python_modules_dir: None,
        compatibility_date: "2026-06-01".into(),
        compatibility_flags: vec!["python_workers".into()],
        vars: Default::default(),
        bindings: vec![BindingInit {
            name: "PIPE".into(),
            kind: "pipe".into(),
            shim,
            options: serde_json::Value::Null,
        }],
        snapshot_path: None,
        baseline_snapshot_path: None,
        packages_snapshot_path: None,
        packages: Vec::new(),
        dylibs: Vec::new(),
        take_snapshots: false,
        memory_limit_bytes: 0,
    };
    let mut bindings = BindingMap::new();
    bindings.insert("PIPE".into(), binding);
    let host = match Host::start(
        &runtime,
        init,
        dir.path(),
        Duration::from_secs(30),
        Arc::new(bindings),
    )
    .await
    {
        Ok(host) => host,
        Err(StartError::Load(message)) => panic!("the worker did not load: {message}"),
        Err(StartError::Host(e)) => panic!("the host did not start: {e:#}"),
    };
    (host, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_call_body_streams_both_ways_in_bounded_memory() {
    let pipe = Arc::new(Pipe::default());
    let (host, _dir) = start_host(
        SHIM.replace("BODY_BYTES", &BODY_BYTES.to_string()),
        Arc::new(PipeBinding(pipe.clone())),
    )
    .await;
    let node = lock(&host.child)
        .as_ref()
        .and_then(Child::id)
        .expect("the host's pid");
    let me = std::process::id();

    // Let the isolate settle after loading, then sample both processes'
    // memory while the body goes through.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (node_before, me_before) = (rss(node), rss(me));
    let peaks = Arc::new((AtomicU64::new(node_before), AtomicU64::new(me_before)));
    let sampler = tokio::spawn({
        let peaks = peaks.clone();
        async move {
            loop {
                peaks.0.fetch_max(rss(node), Ordering::Relaxed);
                peaks.1.fetch_max(rss(me), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    });
    let started = Instant::now();
    pipe.go.notify_one();
    tokio::time::timeout(Duration::from_secs(120), pipe.finished.notified())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the round trip stalled after {} bytes",
                pipe.read.load(Ordering::Relaxed)
            )
        });
    let elapsed = started.elapsed();
    sampler.abort();
    host.stop(ExitReason::Stopped);

    let report = lock(&pipe.report).take().unwrap();
    assert_eq!(report["error"], serde_json::Value::Null, "{report}");
    assert_eq!(report["seen"], serde_json::json!(BODY_BYTES), "{report}");
    assert_eq!(report["wrong"], serde_json::json!(0), "{report}");
    assert_eq!(pipe.read.load(Ordering::Relaxed), BODY_BYTES);
    assert_eq!(pipe.wrong.load(Ordering::Relaxed), 0);

    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    let node_growth = peaks.0.load(Ordering::Relaxed).saturating_sub(node_before);
    let me_growth = peaks.1.load(Ordering::Relaxed).saturating_sub(me_before);
    eprintln!(
        "{} MiB each way in {elapsed:?} ({:.0} MiB/s); peak RSS growth: host {:.1} MiB, pyflare {:.1} MiB",
        mib(BODY_BYTES),
        mib(BODY_BYTES) / elapsed.as_secs_f64(),
        mib(node_growth),
        mib(me_growth),
    );
    // Holding the body whole anywhere would add its 256 MiB (twice over in
    // the host, which would hold both directions). pyflare measured ~4 MiB;
    // the host ~80 MiB of JavaScript garbage V8 collects lazily (it grows
    // far slower than the body: ~120 MiB for 512 MiB each way).
    assert!(
        me_growth < BODY_BYTES / 16,
        "pyflare grew {:.1} MiB",
        mib(me_growth)
    );
    assert!(
        node_growth < BODY_BYTES / 2,
        "the host grew {:.1} MiB",
        mib(node_growth)
    );
}

/// `env.PIPE` for the cancel test: reads 2 MiB of a 64 MiB reply, then
/// cancels it; sends a 64 MiB body of which the binding reads 1 MiB.
const CANCEL_SHIM: &str = r#"
export function create(name, call) {
  (async () => {
    await call("wait", {});
    const { body } = await call("source", {}, null, { stream: true });
    const reader = body.getReader();
    let seen = 0;
    while (seen < 2 * 1024 * 1024) seen += (await reader.read()).value.byteLength;
    await reader.cancel();
    let pulled = 0;
    let cancelled = false;
    const big = new ReadableStream({
      pull(controller) {
        if (pulled >= 64 * 1024 * 1024) return controller.close();
        pulled += 65536;
        controller.enqueue(new Uint8Array(65536));
      },
      cancel() {
        cancelled = true;
      },
    });
    await call("sink_some", {}, big);
    for (let i = 0; i < 100 && !cancelled; i++) await new Promise((resolve) => setTimeout(resolve, 20));
    await call("done", { seen, pulled, cancelled });
  })().catch((error) => call("done", { error: String(error) }));
  return {};
}
"#;

/// Counts what a reply stream produced; set when it is dropped.
#[derive(Debug, Default)]
struct Source {
    produced: AtomicU64,
    dropped: Notify,
}

struct DropSignal(Arc<Source>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        self.0.dropped.notify_one();
    }
}

#[derive(Debug)]
struct CancelBinding(Arc<Pipe>, Arc<Source>);

#[async_trait]
impl Binding for CancelBinding {
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
        method: &str,
        args: serde_json::Value,
        body: Option<BodyStream>,
    ) -> Result<Reply, WireError> {
        match method {
            "source" => {
                // 64 MiB made as they are taken; the guard rides along.
                let guard = DropSignal(self.1.clone());
                let chunks = futures::stream::unfold(guard, |guard| async move {
                    let made = guard.0.produced.fetch_add(65536, Ordering::Relaxed);
                    (made < 64 * 1024 * 1024).then(|| (Ok(Bytes::from(vec![0u8; 65536])), guard))
                });
                Ok(Reply::with_body(
                    serde_json::Value::Null,
                    BodyStream::from_stream(chunks),
                ))
            }
            "sink_some" => {
                let mut body = body.ok_or_else(|| WireError::error("no body"))?;
                while self.0.read.load(Ordering::Relaxed) < 1024 * 1024 {
                    match body.next().await {
                        Some(Ok(chunk)) => {
                            self.0.read.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                        }
                        _ => break,
                    }
                }
                // Dropped unfinished: pyflare tells the host to stop it.
                Ok(Reply::json(serde_json::Value::Null))
            }
            _ => PipeBinding(self.0.clone()).call(method, args, None).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_body_either_side_stops_reading_stops_its_sender() {
    let pipe = Arc::new(Pipe::default());
    let source = Arc::new(Source::default());
    let (host, _dir) = start_host(
        CANCEL_SHIM.into(),
        Arc::new(CancelBinding(pipe.clone(), source.clone())),
    )
    .await;
    pipe.go.notify_one();
    tokio::time::timeout(Duration::from_secs(60), pipe.finished.notified())
        .await
        .expect("the worker finished");
    // The reply stream the worker cancelled was dropped here.
    tokio::time::timeout(Duration::from_secs(10), source.dropped.notified())
        .await
        .expect("the cancelled reply body was dropped");
    host.stop(ExitReason::Stopped);

    let report = lock(&pipe.report).take().unwrap();
    assert_eq!(report["error"], serde_json::Value::Null, "{report}");
    let mib = 1024 * 1024;
    // At most the credit window (1 MiB) past what was read, plus a chunk
    // or two on the way.
    let produced = source.produced.load(Ordering::Relaxed);
    assert!(produced < 4 * mib, "the binding made {produced} bytes");
    assert_eq!(report["cancelled"], serde_json::json!(true), "{report}");
    let pulled = report["pulled"].as_u64().unwrap();
    assert!(
        pulled < 4 * mib,
        "the worker's stream was read for {pulled} bytes"
    );
}
