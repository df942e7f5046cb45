//! Config and command-line errors: `pyflare: error: ...` with the file, the
//! line and the key, and a hint where the fix is obvious.

use crate::util::{dev_in, pyflare, pyflare_bin};
use std::process::Command;

const ENTRY: (&str, &str) = ("src/entry.py", "");

#[test]
fn cli_malformed_jsonc_names_file_line_and_column() {
    let (code, stderr) = dev_in(
        &[
            (
                "wrangler.jsonc",
                "{\n  \"name\": \"x\",\n  \"main\" \"src/entry.py\"\n}\n",
            ),
            ENTRY,
        ],
        &[],
    );
    assert_eq!(code, 1);
    assert_eq!(
        stderr.trim_end(),
        "pyflare: error: DIR/wrangler.jsonc:3:10: expected `:`"
    );
}

#[test]
fn cli_wrong_type_names_the_key() {
    let (code, stderr) = dev_in(
        &[
            (
                "wrangler.toml",
                "name = \"x\"\nmain = \"src/entry.py\"\ncompatibility_flags = \"python_workers\"\n",
            ),
            ENTRY,
        ],
        &[],
    );
    assert_eq!(code, 1);
    assert!(
        stderr.starts_with(
            "pyflare: error: DIR/wrangler.toml:3:23: `compatibility_flags`: invalid type: string"
        ),
        "{stderr}"
    );
}

#[test]
fn cli_python_without_python_workers_flag_fails_as_wrangler_does() {
    let (code, stderr) = dev_in(
        &[
            (
                "wrangler.jsonc",
                r#"{"name": "x", "main": "src/entry.py", "compatibility_date": "2026-06-01"}"#,
            ),
            ENTRY,
        ],
        &[],
    );
    assert_eq!(code, 1);
    assert_eq!(
        stderr.trim_end(),
        "pyflare: error: DIR/wrangler.jsonc: The `python_workers` compatibility flag is required to use Python.\n\
         hint: add \"python_workers\" to compatibility_flags in the wrangler config"
    );
}

#[test]
fn cli_missing_config_has_a_hint() {
    let (code, stderr) = dev_in(&[ENTRY], &[]);
    assert_eq!(code, 1);
    assert!(
        stderr.starts_with(
            "pyflare: error: no wrangler.jsonc, wrangler.json or wrangler.toml in DIR\nhint: "
        ),
        "{stderr}"
    );
}

#[test]
fn cli_unknown_env_and_bad_var() {
    let config = (
        "wrangler.jsonc",
        r#"{"name": "x", "main": "src/entry.py", "compatibility_date": "2026-06-01", "compatibility_flags": ["python_workers"]}"#,
    );
    let (code, stderr) = dev_in(&[config, ENTRY], &["--env", "nope"]);
    assert_eq!(code, 1);
    assert!(
        stderr
            .starts_with("pyflare: error: environment `nope` is not defined in DIR/wrangler.jsonc"),
        "{stderr}"
    );
    let (code, stderr) = dev_in(&[config, ENTRY], &["--var", "NOCOLON"]);
    assert_eq!(code, 1);
    assert_eq!(
        stderr.trim_end(),
        "pyflare: error: invalid --var `NOCOLON`\nhint: write --var KEY:VALUE"
    );
}

#[test]
fn cli_kv_key_put_get_list_delete_on_local_state() {
    let state = tempfile::tempdir().unwrap();
    let dir = crate::util::fixture("kv_basic");
    let dir = dir.to_str().unwrap();
    let state = state.path().to_str().unwrap();
    let common = ["--binding", "MY_KV", "--dir", dir, "--persist-to", state];
    let kv = |extra: &[&str]| {
        let mut args = vec!["kv", "key"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&common);
        pyflare(&args)
    };
    assert_eq!(
        kv(&[
            "put",
            "greeting",
            "hello",
            "--metadata",
            "{\"lang\":\"en\"}"
        ]),
        (
            0,
            "Writing the value to key \"greeting\" on binding MY_KV.\n".into(),
            String::new()
        )
    );
    assert_eq!(kv(&["put", "other", "x"]).0, 0);
    assert_eq!(kv(&["get", "greeting"]), (0, "hello".into(), String::new()));
    assert_eq!(
        kv(&["list"]).1,
        "[\n  {\n    \"name\": \"greeting\",\n    \"metadata\": {\n      \"lang\": \"en\"\n    }\n  },\n  {\n    \"name\": \"other\"\n  }\n]\n"
    );
    assert_eq!(
        kv(&["delete", "greeting"]),
        (
            0,
            "Deleting the key \"greeting\" on binding MY_KV.\n".into(),
            String::new()
        )
    );
    assert_eq!(
        kv(&["get", "greeting"]),
        (0, "Value not found\n".into(), String::new())
    );
    assert_eq!(
        kv(&["put", "k", "v", "--ttl", "5"]),
        (
            1,
            String::new(),
            "pyflare: error: KV PUT failed: 400 Invalid expiration_ttl of 5. Expiration TTL must be at least 60.\n".into()
        )
    );
}

#[test]
fn cli_kv_unknown_binding_lists_the_known_ones() {
    let dir = crate::util::fixture("kv_basic");
    let (code, _, stderr) = pyflare(&[
        "kv",
        "key",
        "list",
        "--binding",
        "NOPE",
        "--dir",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(
        stderr.ends_with(
            "has no KV binding named NOPE\nhint: the KV bindings are: MY_KV, OTHER_KV, SAME_KV\n"
        ),
        "{stderr}"
    );
}

#[test]
fn cli_dev_refuses_a_corrupt_kv_store_without_deleting_it() {
    let state = tempfile::tempdir().unwrap();
    let kv_dir = state.path().join("kv");
    std::fs::create_dir_all(&kv_dir).unwrap();
    std::fs::write(kv_dir.join("conf"), "not a sled config").unwrap();
    std::fs::write(kv_dir.join("db"), "not a sled database").unwrap();
    let dir = crate::util::fixture("kv_basic");
    let (code, _, stderr) = pyflare(&[
        "dev",
        dir.to_str().unwrap(),
        "--port",
        "0",
        "--persist-to",
        state.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("cannot open the KV store at"), "{stderr}");
    assert!(stderr.contains("hint: pyflare changed nothing"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(kv_dir.join("db")).unwrap(),
        "not a sled database"
    );
}

#[test]
fn cli_sync_installs_pyodide_wheels_and_names_a_package_without_one() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("pyproject.toml"),
        "[project]\nname = \"w\"\nversion = \"0.1.0\"\ndependencies = [\"six\"]\n",
    )
    .unwrap();
    let project = dir.path().to_str().unwrap();
    let (code, stdout, stderr) = pyflare(&["sync", project]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let modules = dir.path().join("python_modules");
    assert!(modules.join("six.py").is_file());
    // Cloudflare's SDK comes along, as pywrangler sync adds it.
    assert!(modules.join("workers").join("__init__.py").is_file());
    assert!(modules.join(".pyflare-synced").is_file());

    std::fs::write(
        dir.path().join("pyproject.toml"),
        "[project]\nname = \"w\"\nversion = \"0.1.0\"\ndependencies = [\"psycopg2\"]\n",
    )
    .unwrap();
    let (code, _, stderr) = pyflare(&["sync", project]);
    assert_eq!(code, 1);
    // Neither Pyodide's package index nor a pure-Python build of its sdist
    // has it either, and the error says so.
    assert!(
        stderr.starts_with(
            "pyflare: error: `psycopg2` has no wheel that runs in Pyodide (pure Python or pyemscripten_2026_0_wasm32) on PyPI: Pyodide 314.0.7's package index has no `psycopg2`; its C extension `psycopg2._psycopg` is not optional (its sdist does not build without it)\nhint: "
        ),
        "{stderr}"
    );
    // The last good sync is kept.
    assert!(modules.join("six.py").is_file());
}

#[test]
fn cli_setup_without_npm_says_what_to_install() {
    let cache = tempfile::tempdir().unwrap();
    let out = Command::new(pyflare_bin())
        .arg("setup")
        .env("PATH", "")
        .env("PYFLARE_CACHE_DIR", cache.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.ends_with(
            "pyflare: error: npm was not found on PATH; pyflare needs it once to install its pinned Pyodide\nhint: install Node.js with npm (any version), then run pyflare again\n"
        ),
        "{stderr}"
    );
}

#[tokio::test]
async fn cli_dev_warns_about_unknown_config_fields_as_wrangler_and_starts() {
    let project = crate::util::copy_fixture("hello");
    std::fs::write(
        project.path().join("wrangler.jsonc"),
        r#"{
  "name": "hello",
  "main": "src/entry.py",
  "compatibility_date": "2026-06-01",
  "compatibility_flags": ["python_workers"],
  "colour": "blue",
  // Known to wrangler, not emulated by pyflare yet: no warning.
  "r2_buckets": [],
  "queues": { "producers": [] },
  "observability": { "enabled": true },
  "foo": 1
}"#,
    )
    .unwrap();
    let w = crate::util::TestWorker::spawn(project.path(), tempfile::tempdir().unwrap(), &[], &[])
        .await;
    let output = w.output();
    assert!(
        output.contains(&format!(
            "▲ [WARNING] Processing {} configuration:\n\n    - Unexpected fields found in top-level field: \"colour\",\"foo\"\n",
            project.path().join("wrangler.jsonc").display()
        )),
        "{output}"
    );
    assert!(!output.contains("r2_buckets"), "{output}");
    assert_eq!(w.get("/").await.status(), 200);
}

#[test]
fn cli_d1_binding_name_must_be_an_identifier_as_for_kv() {
    let config = r#"{
  "name": "x",
  "main": "src/entry.py",
  "compatibility_date": "2026-06-01",
  "compatibility_flags": ["python_workers"],
  "d1_databases": [{ "binding": "my-db", "database_name": "quotes" }]
}"#;
    let expected = "`d1_databases[0].binding`: The binding name \"my-db\" is invalid. It can only have alphanumeric and _ characters, and cannot begin with a number.";
    let (code, stderr) = dev_in(&[("wrangler.jsonc", config), ENTRY], &[]);
    assert_eq!(code, 1);
    assert_eq!(
        stderr.trim_end(),
        format!("pyflare: error: DIR/wrangler.jsonc: {expected}")
    );
    // The d1 commands read the config through the same parser.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("wrangler.jsonc"), config).unwrap();
    std::fs::create_dir(dir.path().join("src")).unwrap();
    std::fs::write(dir.path().join(ENTRY.0), ENTRY.1).unwrap();
    let (code, _, stderr) = pyflare(&[
        "d1",
        "execute",
        "quotes",
        "--dir",
        dir.path().to_str().unwrap(),
        "--command",
        "SELECT 1",
    ]);
    assert_eq!(code, 1);
    assert!(stderr.ends_with(&format!("{expected}\n")), "{stderr}");
    assert!(!dir.path().join(".pyflare").exists());
}
