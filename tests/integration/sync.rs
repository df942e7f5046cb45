//! `pyflare sync` (packages resolved for Pyodide's Python, whatever Python
//! runs pip) and packages that work as on Cloudflare.

use crate::util::{TestWorker, pyflare};

/// A worker project whose `pyproject.toml` lists `dependencies` (TOML
/// strings) and whose `src/entry.py` is `entry`.
fn project(dependencies: &str, entry: &str) -> tempfile::TempDir {
    let project = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(project.path().join("src")).unwrap();
    std::fs::write(
        project.path().join("wrangler.toml"),
        "name = \"w\"\nmain = \"src/entry.py\"\ncompatibility_date = \"2025-11-01\"\ncompatibility_flags = [\"python_workers\"]\n",
    )
    .unwrap();
    std::fs::write(
        project.path().join("pyproject.toml"),
        format!("[project]\nname = \"w\"\nversion = \"0.1.0\"\ndependencies = [{dependencies}]\n"),
    )
    .unwrap();
    std::fs::write(project.path().join("src/entry.py"), entry).unwrap();
    project
}

/// `pyflare sync`, then `pyflare dev`, on `project`.
async fn synced(project: &std::path::Path) -> TestWorker {
    let (code, stdout, stderr) = pyflare(&["sync", project.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    serve(project).await
}

async fn serve(project: &std::path::Path) -> TestWorker {
    TestWorker::spawn(project, tempfile::tempdir().unwrap(), &["--no-reload"], &[]).await
}

/// Writes a pure-Python wheel of `newpy` 1.0, which needs Python 3.13 or
/// later (newer than some hosts' own Python), into `dir`.
fn wheel_needing_python_3_13(dir: &std::path::Path) -> std::path::PathBuf {
    let wheel = dir.join("newpy-1.0-py3-none-any.whl");
    let script = r#"
import sys, zipfile
files = {
    "newpy/__init__.py": "import sys\nVERSION = '1.0 on %d.%d' % sys.version_info[:2]\n",
    "newpy-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: newpy\nVersion: 1.0\nRequires-Python: >=3.13\n",
    "newpy-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: pyflare-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
record = "".join(f"{name},,\n" for name in files) + "newpy-1.0.dist-info/RECORD,,\n"
with zipfile.ZipFile(sys.argv[1], "w") as z:
    for name, text in files.items():
        z.writestr(name, text)
    z.writestr("newpy-1.0.dist-info/RECORD", record)
"#;
    let status = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(&wheel)
        .status()
        .unwrap();
    assert!(status.success());
    wheel
}

#[tokio::test]
async fn sync_resolves_for_pyodides_python_whatever_python_runs_pip() {
    let wheels = tempfile::tempdir().unwrap();
    let wheel = wheel_needing_python_3_13(wheels.path());
    let project = project(
        &format!("\"newpy @ file://{}\"", wheel.display()),
        "import newpy\nfrom workers import Response, WorkerEntrypoint\n\nclass Default(WorkerEntrypoint):\n    async def fetch(self, request):\n        return Response(newpy.VERSION)\n",
    );
    let w = synced(project.path()).await;
    assert_eq!(w.get("/").await.text().await.unwrap(), "1.0 on 3.14");
}

/// pyflare's cache as `pyflare` finds it.
fn real_cache_dir() -> std::path::PathBuf {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = var("PYFLARE_CACHE_DIR") {
        return dir.into();
    }
    if let Some(dir) = var("XDG_CACHE_HOME") {
        return std::path::PathBuf::from(dir).join("pyflare");
    }
    std::path::PathBuf::from(var("HOME").unwrap()).join(".cache/pyflare")
}

#[tokio::test]
async fn sync_finds_a_package_pypi_has_no_pyodide_wheel_of() {
    // A cache of its own (sharing the installed Pyodide), so that no wheel
    // an earlier sync kept answers first.
    let cache = tempfile::tempdir().unwrap();
    let pyodide = std::fs::read_dir(real_cache_dir())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("pyodide-")
        })
        .expect("the runtime is installed");
    std::os::unix::fs::symlink(&pyodide, cache.path().join(pyodide.file_name().unwrap())).unwrap();
    // Pyodide's index answers with a wheel that is not the one its lock
    // file names (another digest): pyflare refuses it and builds markupsafe's pure-Python
    // form from its sdist (its C code is an optional speed-up).
    let lock: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(pyodide.join("node_modules/pyodide/pyodide-lock.json")).unwrap(),
    )
    .unwrap();
    let file_name = lock["packages"]["markupsafe"]["file_name"]
        .as_str()
        .unwrap();
    let index = tempfile::tempdir().unwrap();
    let script = r#"
import sys, zipfile
name, version = "markupsafe", sys.argv[2].split("-")[1]
info = f"{name}-{version}.dist-info"
with zipfile.ZipFile(sys.argv[1], "w") as z:
    z.writestr(f"{name}/__init__.py", "raise ImportError('a stand-in')\n")
    z.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: t\nRoot-Is-Purelib: false\nTag: cp314-cp314-pyemscripten_2026_0_wasm32\n")
    z.writestr(f"{info}/RECORD", "")
"#;
    let status = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(index.path().join(file_name))
        .arg(file_name)
        .status()
        .unwrap();
    assert!(status.success());

    let project = project(
        "\"markupsafe\"",
        "import importlib.util, markupsafe\nfrom workers import Response, WorkerEntrypoint\n\nclass Default(WorkerEntrypoint):\n    async def fetch(self, request):\n        native = importlib.util.find_spec('markupsafe._speedups') is not None\n        return Response(f\"{markupsafe.escape('<b>')} native={native}\")\n",
    );
    let out = std::process::Command::new(crate::util::pyflare_bin())
        .args(["sync", project.path().to_str().unwrap()])
        .env("PYFLARE_CACHE_DIR", cache.path())
        .env(
            "PYFLARE_PYODIDE_INDEX_URL",
            format!("file://{}", index.path().display()),
        )
        .output()
        .unwrap();
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{output}");
    assert!(
        output.contains("does not match Pyodide's lock file"),
        "{output}"
    );
    assert!(
        output.contains("-py3-none-any.whl (built pure from its sdist"),
        "{output}"
    );
    // Kept for the next sync.
    let kept: Vec<_> = std::fs::read_dir(cache.path().join("wheels"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        kept.iter().any(|name| name.starts_with("markupsafe-")),
        "{kept:?}"
    );

    let w = serve(project.path()).await;
    assert_eq!(
        w.get("/").await.text().await.unwrap(),
        "&lt;b&gt; native=False"
    );
}

#[tokio::test]
async fn sync_packages_get_the_sdks_patches_as_on_cloudflare() {
    // anyio runs blocking work on threads, which Pyodide has not; the SDK's
    // package patch (loaded through its `.pth` file once `_cloudflare` is
    // importable) runs it inline, as FastAPI's sync routes need.
    let project = project(
        "\"anyio\"",
        "import anyio.to_thread\nfrom workers import Response, WorkerEntrypoint\n\nclass Default(WorkerEntrypoint):\n    async def fetch(self, request):\n        return Response(str(await anyio.to_thread.run_sync(lambda: 6 * 7)))\n",
    );
    let w = synced(project.path()).await;
    let res = w.get("/").await;
    assert_eq!(res.text().await.unwrap(), "42", "{}", w.output());
}

#[tokio::test]
async fn sync_http_clients_reach_the_network_through_fetch() {
    let project = project(
        "\"httpx\", \"requests\", \"aiohttp\"",
        r#"import json

import aiohttp
import httpx
import requests
from workers import Response, WorkerEntrypoint


def summary(name, status, headers, text):
    return f"{name} {status} {headers.get('x-seen-method')} {text}"


async def parts():
    yield b"chunked-"
    yield b"body"


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        url, _, query = request.url.partition("?")
        base = url.rsplit("/", 1)[0]
        if url.endswith("/target"):
            body = await request.text()
            return Response(f"pong:{body}", headers={"x-seen-method": request.method})
        if url.endswith("/echo"):
            seen = {
                "method": request.method,
                "query": query,
                "custom": request.headers.get("x-custom"),
                "type": request.headers.get("content-type"),
                "body": await request.text(),
            }
            return Response(json.dumps(seen), headers={"content-type": "application/json"})
        if url.endswith("/moved"):
            return Response("", status=302, headers={"location": base + "/target"})
        if url.endswith("/sync"):
            with httpx.Client() as client:
                got = client.post(base + "/target", content=b"httpx-sync")
            r = requests.get(base + "/target")
            return Response(
                summary("httpx", got.status_code, got.headers, got.text)
                + " | "
                + summary("requests", r.status_code, r.headers, r.text)
            )
        if url.endswith("/async"):
            async with httpx.AsyncClient() as client:
                got = await client.put(base + "/target", content=b"httpx-async")
            return Response(summary("httpx-async", got.status_code, got.headers, got.text))
        if url.endswith("/aiohttp"):
            out = []
            async with aiohttp.ClientSession() as session:
                echo = base + "/echo"
                async with session.get(echo, params={"q": "a b"}, headers={"x-custom": "yes"}) as r:
                    seen = await r.json()
                    out.append(f"{r.status} {r.headers['content-type']} {seen['method']} {seen['query']} {seen['custom']}")
                async with session.post(base + "/target", data=b"bytes") as r:
                    out.append(summary("post", r.status, r.headers, await r.text()))
                async with session.put(base + "/target", data="text") as r:
                    out.append(summary("put", r.status, r.headers, (await r.read()).decode()))
                async with session.post(echo, json={"k": [1, 2]}) as r:
                    seen = await r.json()
                    out.append(f"{seen['method']} {seen['type']} {seen['body']}")
                async with session.post(base + "/target", data=parts()) as r:
                    out.append(summary("chunked", r.status, r.headers, await r.text()))
                async with session.get(base + "/moved") as r:
                    out.append(f"{[h.status for h in r.history]} {r.url.path} {await r.text()}")
                try:
                    await session.get("http://127.0.0.1:9/")
                except aiohttp.ClientConnectorError as error:
                    out.append(f"ClientConnectorError: {error}")
            return Response("\n".join(out))
        if url.endswith("/refused"):
            try:
                httpx.get("http://127.0.0.1:9/")
            except httpx.ConnectError as error:
                return Response(f"ConnectError: {error}")
        return Response("?", status=404)
"#,
    );
    let w = synced(project.path()).await;
    assert_eq!(
        w.get("/sync").await.text().await.unwrap(),
        "httpx 200 POST pong:httpx-sync | requests 200 GET pong:",
        "{}",
        w.output()
    );
    assert_eq!(
        w.get("/async").await.text().await.unwrap(),
        "httpx-async 200 PUT pong:httpx-async"
    );
    let refused = w.get("/refused").await.text().await.unwrap();
    assert!(
        refused.starts_with("ConnectError: fetch failed"),
        "{refused}"
    );

    let aiohttp = w.get("/aiohttp").await.text().await.unwrap();
    let lines: Vec<&str> = aiohttp.lines().collect();
    assert_eq!(
        lines[..lines.len().min(6)],
        [
            "200 application/json GET q=a+b yes",
            "post 200 POST pong:bytes",
            "put 200 PUT pong:text",
            "POST application/json {\"k\": [1, 2]}",
            "chunked 200 POST pong:chunked-body",
            "[302] /target pong:",
        ],
        "{aiohttp}\n{}",
        w.output()
    );
    let failure = lines.get(6).copied().unwrap_or_default();
    assert!(
        failure.starts_with("ClientConnectorError: Cannot connect to host 127.0.0.1:9")
            && failure.contains("fetch failed"),
        "{aiohttp}"
    );
}
