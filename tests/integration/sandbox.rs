//! The worker's sandbox: each test is an escape a hostile worker would try,
//! and each must fail as it fails on Cloudflare. The `sandbox` fixture runs
//! the Python snippet it is sent and answers `returned: <repr>` or
//! `raised: <exception>`.

use crate::util::{TestWorker, children, copy_fixture};
use std::path::Path;

const NO_CODEGEN: &str = "EvalError: Code generation from strings disallowed for this context";

async fn probe(w: &TestWorker, code: &str) -> String {
    let res = TestWorker::client()
        .post(w.url("/"))
        .body(code.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{code}");
    res.text().await.unwrap()
}

async fn assert_raises(w: &TestWorker, code: &str, expected: &str) {
    let answer = probe(w, code).await;
    assert!(
        answer.starts_with("raised: ") && answer.contains(expected),
        "{code}\n=> {answer}"
    );
}

#[tokio::test]
async fn sandbox_worker_js_has_no_node_globals() {
    let w = TestWorker::start("sandbox").await;
    let answer = probe(
        &w,
        r#"import js
names = ["process", "Buffer", "require", "module", "global", "setImmediate", "localStorage", "fs", "child_process"]
result = sorted({getattr(scope, name, None) is None for scope in (js, js.globalThis, js.self) for name in names})"#,
    )
    .await;
    assert_eq!(answer, "returned: [True]");
    // What a Worker has is there.
    let answer = probe(
        &w,
        r#"import js
result = [getattr(js, n).typeof for n in ("fetch", "Request", "Response", "URL", "crypto", "setTimeout", "console", "WebAssembly")]"#,
    )
    .await;
    assert_eq!(
        answer,
        "returned: ['function', 'function', 'function', 'function', 'object', 'function', 'object', 'object']"
    );
    // The global object's own names are the worker's, not Node's.
    let answer = probe(
        &w,
        "import js\nresult = sorted(set(js.Object.getOwnPropertyNames(js.globalThis)) & {'process', 'Buffer', 'require', 'performance', 'fetch'})",
    )
    .await;
    assert_eq!(answer, "returned: ['fetch', 'performance']");
}

#[tokio::test]
async fn sandbox_code_generation_from_strings_is_disallowed() {
    let w = TestWorker::start("sandbox").await;
    for code in [
        "import js\nresult = js.eval('process.pid')",
        "import js\nresult = js.Function('return process')()",
        "import js\nresult = js.fetch.constructor('return process')()",
        "import js\nresult = js.Object.constructor('return globalThis.process')()",
        "import js\nresult = await js.eval(\"import('node:child_process')\")",
        "from pyodide.code import run_js\nresult = run_js('process.pid')",
    ] {
        assert_raises(&w, code, NO_CODEGEN).await;
    }
    assert_raises(
        &w,
        "import js\nresult = js.setTimeout('globalThis.x = 1', 0)",
        "TypeError: Failed to execute 'setTimeout' on 'ServiceWorkerGlobalScope': parameter 1 is not of type 'Function'.",
    )
    .await;
    // Functions still work as timers.
    let answer = probe(
        &w,
        "import asyncio, js\nfrom pyodide.ffi import create_once_callable\nfut = asyncio.get_event_loop().create_future()\njs.setTimeout(create_once_callable(lambda: fut.set_result('fired')), 1)\nresult = await fut",
    )
    .await;
    assert_eq!(answer, "returned: 'fired'");
}

#[tokio::test]
async fn sandbox_node_modules_and_host_files_cannot_be_imported() {
    let w = TestWorker::start("sandbox").await;
    for name in [
        "node:child_process",
        "node:fs",
        "child_process",
        "python_modules/workers/../../../../../../etc/passwd.mjs",
        "python_modules/workers//etc/passwd.mjs",
        "file:///etc/passwd",
    ] {
        let code = format!(
            "from workers import import_from_javascript\nresult = import_from_javascript({name:?})"
        );
        assert_raises(&w, &code, &format!("No such module \"{name}\"")).await;
    }
    // The SDK's own JavaScript still loads.
    let answer = probe(
        &w,
        "from workers import import_from_javascript\nresult = import_from_javascript('cloudflare:workers').WorkerEntrypoint.name",
    )
    .await;
    assert_eq!(answer, "returned: 'WorkerEntrypoint'");
}

#[tokio::test]
async fn sandbox_pyodide_api_has_no_host_handles() {
    let w = TestWorker::start("sandbox").await;
    let answer = probe(
        &w,
        r#"import pyodide_js
hidden = ["_module", "FS", "mountNodeFS", "mountNativeFS", "useNodeSockFS", "registerJsModule", "makeMemorySnapshot", "unpackArchive"]
result = ([n for n in hidden if hasattr(pyodide_js, n)], hasattr(pyodide_js._api, "_nodeSock"), pyodide_js.version)"#,
    )
    .await;
    assert!(answer.starts_with("returned: ([], False, '"), "{answer}");
    // No module global anywhere in the interpreter leads to the Emscripten
    // module, its file systems or Node.
    let answer = probe(
        &w,
        r#"import sys
from pyodide.ffi import JsProxy
found = []
for name, mod in list(sys.modules.items()):
    for key, value in list(getattr(mod, "__dict__", {}).items()):
        if isinstance(value, JsProxy):
            try:
                keys = set(dir(value))
            except Exception:
                continue
            if keys & {"FS", "_module", "process", "mountNodeFS", "_nodeSock", "binding"}:
                found.append(f"{name}.{key}")
result = found"#,
    )
    .await;
    assert_eq!(answer, "returned: []");
    assert_raises(
        &w,
        "import pyodide_js\nresult = await pyodide_js.loadPackage('micropip')",
        "pyodide.loadPackage is disabled in Python Workers",
    )
    .await;
}

#[tokio::test]
async fn sandbox_worker_files_sdk_and_glue_are_read_only() {
    let project = copy_fixture("sandbox");
    let entry = project.path().join("src").join("entry.py");
    let before = std::fs::read(&entry).unwrap();
    let w = TestWorker::spawn(project.path(), tempfile::tempdir().unwrap(), &[], &[]).await;
    let denied = "PermissionError: [Errno 63] Operation not permitted";
    for dir in [
        "/session/metadata",
        "/session/sdk/workers",
        "/session/pyflare/_pyflare",
    ] {
        for code in [
            format!("open('{dir}/new.py', 'w').write('x')"),
            format!("import os\nos.mkdir('{dir}/new')"),
            format!(
                "import os\nos.remove('{dir}/__init__.py' if 'metadata' not in '{dir}' else '{dir}/entry.py')"
            ),
            format!(
                "import os\nos.rename('{dir}/__init__.py' if 'metadata' not in '{dir}' else '{dir}/entry.py', '{dir}/moved.py')"
            ),
            format!(
                "open('{dir}/__init__.py' if 'metadata' not in '{dir}' else '{dir}/entry.py', 'w').write('x')"
            ),
        ] {
            assert_raises(&w, &code, denied).await;
        }
    }
    // Opened for appending, a file takes no bytes either.
    assert_raises(
        &w,
        "f = open('/session/metadata/entry.py', 'a')\nf.write('# appended')\nf.close()",
        "OSError: [Errno 28] Invalid argument",
    )
    .await;
    // Reading works, and nothing on disk changed.
    let answer = probe(
        &w,
        "result = open('/session/metadata/entry.py').read() == open('/session/metadata/entry.py', 'rb').read().decode()",
    )
    .await;
    assert_eq!(answer, "returned: True");
    assert_eq!(std::fs::read(&entry).unwrap(), before);
    let names: Vec<_> = std::fs::read_dir(project.path().join("src"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["entry.py"]);
    // /tmp stays writable, in memory, as on Cloudflare.
    let answer = probe(
        &w,
        "open('/tmp/scratch', 'w').write('kept')\nresult = open('/tmp/scratch').read()",
    )
    .await;
    assert_eq!(answer, "returned: 'kept'");
}

#[tokio::test]
async fn sandbox_worker_cannot_reach_pyflare_internal_routes() {
    let w = TestWorker::start("sandbox").await;
    let now = |body: String| -> i64 {
        let value: serde_json::Value = serde_json::from_str(&body).unwrap();
        value["now_ms"].as_i64().unwrap()
    };
    let advance = |seconds: u32| {
        TestWorker::client()
            .post(w.url(&format!("/cdn-cgi/pyflare/clock/advance?seconds={seconds}")))
            .send()
    };
    let before = now(advance(0).await.unwrap().text().await.unwrap());
    for (method, path) in [
        ("POST", "/cdn-cgi/pyflare/clock/advance?seconds=86400"),
        ("GET", "/cdn-cgi/handler/scheduled"),
    ] {
        let code = format!(
            "import js\nr = await js.fetch({url:?}, method={method:?})\nresult = r.status",
            url = w.url(path)
        );
        assert_eq!(probe(&w, &code).await, "returned: 403", "{path}");
    }
    // Also through the SDK's own fetch, and a Request object.
    let code = format!(
        "from workers import fetch\nimport js\nr = await fetch(js.Request.new({url:?}, method='POST'))\nresult = r.status",
        url = w.url("/cdn-cgi/pyflare/clock/advance?seconds=86400")
    );
    assert_eq!(probe(&w, &code).await, "returned: 403");
    let after = now(advance(0).await.unwrap().text().await.unwrap());
    assert!(after - before < 60_000, "the worker moved the clock");
    // The worker's other subrequests reach loopback servers as before.
    let code = format!(
        "import js\nr = await js.fetch({url:?}, method='POST', body='result = 7')\nresult = await r.text()",
        url = w.url("/")
    );
    assert_eq!(probe(&w, &code).await, "returned: 'returned: 7'");
}

#[tokio::test]
async fn sandbox_host_process_is_confined() {
    let snapshots = tempfile::tempdir().unwrap();
    let w = TestWorker::spawn(
        &crate::util::fixture("sandbox"),
        tempfile::tempdir().unwrap(),
        &[],
        &[
            ("PYFLARE_TEST_SECRET", "s3cret-token"),
            ("PYFLARE_SNAPSHOT_DIR", snapshots.path().to_str().unwrap()),
        ],
    )
    .await;
    let mut checked = 0;
    for host in children(w.pid()) {
        // A host that has just exited (the snapshot maker, when its
        // snapshots are written) shows no command line any more.
        let cmdline = std::fs::read(format!("/proc/{host}/cmdline")).unwrap_or_default();
        let Ok(environ) = std::fs::read(format!("/proc/{host}/environ")) else {
            continue;
        };
        if cmdline.is_empty() {
            continue;
        }
        checked += 1;
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        for flag in ["--permission", "--disallow-code-generation-from-strings"] {
            assert!(args.iter().any(|a| a == flag), "{flag} missing: {args:?}");
        }
        assert!(
            !args.iter().any(|a| a.starts_with("--allow-child-process")
                || a.starts_with("--allow-worker")
                || a.starts_with("--allow-addons")),
            "{args:?}"
        );
        // Writable: this worker's own snapshot files in the snapshot
        // folder, never the folder itself (other projects' snapshots).
        let writable: Vec<_> = args
            .iter()
            .filter_map(|a| a.strip_prefix("--allow-fs-write="))
            .map(Path::new)
            .collect();
        assert!(!writable.is_empty(), "{args:?}");
        for path in writable {
            assert_eq!(path.parent(), Some(snapshots.path()), "{args:?}");
            let name = path.file_name().unwrap().to_string_lossy();
            assert!(
                [
                    ".snap",
                    ".snap.tmp",
                    ".snap.made",
                    ".snap.nosnap",
                    ".snap.nosnap.made"
                ]
                .iter()
                .any(|end| name.ends_with(end)),
                "{name}"
            );
        }
        // None of the user's environment reaches the worker's process.
        let environ = String::from_utf8_lossy(&environ);
        assert!(!environ.contains("s3cret-token"), "{environ}");
        assert!(!environ.contains("HOME="), "{environ}");
    }
    assert!(checked > 0, "no running worker host found");
    // And the worker still serves.
    assert_eq!(probe(&w, "result = 1 + 1").await, "returned: 2");
}

#[tokio::test]
async fn sandbox_polluted_prototypes_reach_nothing() {
    let w = TestWorker::start("sandbox").await;
    // The prototypes are shared with pyflare's host code: a worker that
    // replaces `bind` is not handed Pyodide's full API by it.
    let answer = probe(
        &w,
        r#"import js, pyodide_js
from pyodide.ffi import create_proxy
seen = []
original = js.Function.prototype.bind
js.Function.prototype.bind = create_proxy(lambda *args: seen.append(args))
try:
    pyodide_js.runPython
    pyodide_js.pyimport
finally:
    js.Function.prototype.bind = original
result = [a for args in seen for a in args if hasattr(a, "mountNodeFS") or hasattr(a, "_module")]"#,
    )
    .await;
    assert_eq!(answer, "returned: []");
    // A subrequest that is not marked (Headers.prototype.set replaced, or
    // Node's own WebSocket behind the worker's) is still the worker's: the
    // loopback-only routes know it by the process holding the connection.
    let code = format!(
        r#"import js
from pyodide.ffi import create_proxy
original = js.Headers.prototype.set
js.Headers.prototype.set = create_proxy(lambda *args: None)
try:
    r = await js.fetch({url:?}, method="POST")
finally:
    js.Headers.prototype.set = original
result = r.status"#,
        url = w.url("/cdn-cgi/pyflare/clock/advance?seconds=86400")
    );
    assert_eq!(probe(&w, &code).await, "returned: 403");
    let code = format!(
        r#"import asyncio, js
from pyodide.ffi import create_once_callable
Socket = js.Object.getPrototypeOf(js.WebSocket)
socket = Socket.new({url:?})
done = asyncio.get_event_loop().create_future()
socket.addEventListener("close", create_once_callable(lambda event: done.set_result(event.code)))
result = await asyncio.wait_for(done, 5)"#,
        url = w
            .url("/cdn-cgi/handler/scheduled?cron=x")
            .replacen("http", "ws", 1)
    );
    let answer = probe(&w, &code).await;
    assert!(answer.starts_with("returned: "), "{answer}");
    assert!(
        !w.wait_for_output("cron \"x\"", std::time::Duration::from_millis(500))
            .await,
        "the worker's WebSocket ran the scheduled handler:\n{}",
        w.output()
    );
}
