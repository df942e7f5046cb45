//! `pyflare sync`: packages resolved for Pyodide's Python, not the host's.

use crate::util::{TestWorker, pyflare};

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
    let project = tempfile::tempdir().unwrap();
    let wheels = tempfile::tempdir().unwrap();
    let wheel = wheel_needing_python_3_13(wheels.path());
    std::fs::create_dir_all(project.path().join("src")).unwrap();
    std::fs::write(
        project.path().join("wrangler.toml"),
        "name = \"newpy\"\nmain = \"src/entry.py\"\ncompatibility_date = \"2025-11-01\"\ncompatibility_flags = [\"python_workers\"]\n",
    )
    .unwrap();
    std::fs::write(
        project.path().join("pyproject.toml"),
        format!(
            "[project]\nname = \"newpy-worker\"\nversion = \"0.1.0\"\ndependencies = [\"newpy @ file://{}\"]\n",
            wheel.display()
        ),
    )
    .unwrap();
    std::fs::write(
        project.path().join("src/entry.py"),
        "import newpy\nfrom workers import Response, WorkerEntrypoint\n\nclass Default(WorkerEntrypoint):\n    async def fetch(self, request):\n        return Response(newpy.VERSION)\n",
    )
    .unwrap();
    let (code, stdout, stderr) = pyflare(&["sync", project.path().to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let w = TestWorker::spawn(
        project.path(),
        tempfile::tempdir().unwrap(),
        &["--no-reload"],
        &[],
    )
    .await;
    assert_eq!(w.get("/").await.text().await.unwrap(), "1.0 on 3.14");
}
