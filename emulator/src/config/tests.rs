use super::*;

fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

const ENTRY: (&str, &str) = ("src/entry.py", "");

fn load(dir: &Path, overrides: &ConfigOverrides) -> Result<WorkerConfig, ConfigError> {
    WorkerConfig::load(dir, overrides)
}

#[test]
fn config_jsonc_with_comments_vars_and_limits() {
    let dir = project(&[
        (
            "wrangler.jsonc",
            r#"{
  // a Python worker
  "name": "hello",
  "main": "src/entry.py",
  "compatibility_date": "2026-06-01",
  "compatibility_flags": ["python_workers"],
  "vars": { "GREETING": "hi", "LIMITS": { "max": 3 }, },
  "limits": { "cpu_ms": 50 },
  "kv_namespaces": [{ "binding": "KV", "id": "x" }],
}"#,
        ),
        ENTRY,
    ]);
    let config = load(dir.path(), &ConfigOverrides::default()).unwrap();
    assert_eq!(config.name, "hello");
    assert_eq!(config.main_module(), "entry");
    assert_eq!(config.cpu_ms, 50);
    assert_eq!(config.vars["GREETING"], "hi");
    assert_eq!(config.vars["LIMITS"]["max"], 3);
    assert!(config.rest.contains_key("kv_namespaces"));
}

#[test]
fn config_toml_env_section_overrides_and_does_not_inherit_vars() {
    let dir = project(&[
        (
            "wrangler.toml",
            r#"
name = "app"
main = "src/entry.py"
compatibility_date = "2026-06-01"
compatibility_flags = ["python_workers"]
[vars]
A = "top"
B = "top"
[env.staging.vars]
A = "staging"
"#,
        ),
        ENTRY,
    ]);
    let overrides = ConfigOverrides {
        env: Some("staging".into()),
        vars: vec!["C:from-cli:with-colon".into()],
        dot_env: true,
    };
    let config = load(dir.path(), &overrides).unwrap();
    assert_eq!(config.name, "app-staging");
    assert_eq!(config.vars["A"], "staging");
    assert!(!config.vars.contains_key("B"));
    assert_eq!(config.vars["C"], "from-cli:with-colon");
}

#[test]
fn config_dev_vars_win_over_dot_env() {
    let wrangler = r#"{"main": "src/entry.py", "compatibility_flags": ["python_workers"], "compatibility_date": "2026-06-01", "vars": {"S": "var"}}"#;
    let dir = project(&[
        ("wrangler.json", wrangler),
        ENTRY,
        (".dev.vars", "S=secret\n"),
        (".env", "T=dotenv\n"),
    ]);
    let config = load(
        dir.path(),
        &ConfigOverrides {
            dot_env: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(config.vars["S"], "secret");
    assert!(!config.vars.contains_key("T"));
    assert!(config.warnings.iter().any(|w| w.contains("`S`")));

    std::fs::remove_file(dir.path().join(".dev.vars")).unwrap();
    let config = load(
        dir.path(),
        &ConfigOverrides {
            dot_env: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(config.vars["T"], "dotenv");
}

#[test]
fn config_without_python_workers_flag_uses_wranglers_message() {
    let dir = project(&[
        (
            "wrangler.json",
            r#"{"main": "src/entry.py", "compatibility_date": "2026-06-01"}"#,
        ),
        ENTRY,
    ]);
    let err = load(dir.path(), &ConfigOverrides::default()).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("The `python_workers` compatibility flag is required to use Python.")
    );
    assert!(err.hint().unwrap().contains("python_workers"));
}

#[test]
fn config_syntax_error_names_file_and_line() {
    let dir = project(&[
        (
            "wrangler.jsonc",
            "{\n  \"name\": \"x\",\n  \"main\" \"src/entry.py\"\n}\n",
        ),
        ENTRY,
    ]);
    let err = load(dir.path(), &ConfigOverrides::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("wrangler.jsonc:3:"), "{err}");
}

#[test]
fn config_wrong_type_names_the_key_and_line() {
    let dir = project(&[
        (
            "wrangler.jsonc",
            "{\n  \"name\": \"x\",\n  \"limits\": { \"cpu_ms\": \"fast\" }\n}\n",
        ),
        ENTRY,
    ]);
    let err = load(dir.path(), &ConfigOverrides::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("wrangler.jsonc:3:"), "{err}");
    assert!(err.contains("`limits.cpu_ms`"), "{err}");

    let dir = project(&[
        (
            "wrangler.toml",
            "name = \"x\"\n\n[limits]\ncpu_ms = \"fast\"\n",
        ),
        ENTRY,
    ]);
    let err = load(dir.path(), &ConfigOverrides::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("wrangler.toml:4:"), "{err}");
    assert!(err.contains("`limits.cpu_ms`"), "{err}");
}

#[test]
fn config_missing_file_has_a_hint() {
    let dir = project(&[]);
    let err = load(dir.path(), &ConfigOverrides::default()).unwrap_err();
    assert!(err.to_string().starts_with("no wrangler.jsonc"));
    assert!(err.hint().is_some());
}

#[test]
fn config_unknown_fields_warn_as_wrangler_known_unemulated_ones_do_not() {
    let dir = project(&[
        (
            "wrangler.toml",
            r#"
name = "app"
main = "src/entry.py"
compatibility_date = "2026-06-01"
compatibility_flags = ["python_workers"]
foo = 1
colour = "blue"
r2_buckets = [{ binding = "B", bucket_name = "b" }]
queues = { producers = [] }
durable_objects = { bindings = [] }
observability = { enabled = true }
[dev]
port = 9000
[env.staging]
bar = true
workflows = []
"#,
        ),
        ENTRY,
    ]);
    let config = load(dir.path(), &ConfigOverrides::default()).unwrap();
    let warning = config.unexpected_fields.expect("a warning");
    assert!(warning.starts_with("▲ [WARNING] Processing "), "{warning}");
    assert!(
        warning.contains("wrangler.toml configuration:\n\n    - Unexpected fields found in top-level field: \"colour\",\"foo\"\n"),
        "{warning}"
    );
    // The environment is checked only when it is selected, as by wrangler.
    assert!(!warning.contains("env.staging"), "{warning}");

    let overrides = ConfigOverrides {
        env: Some("staging".into()),
        ..ConfigOverrides::default()
    };
    let warning = load(dir.path(), &overrides)
        .unwrap()
        .unexpected_fields
        .unwrap();
    assert!(
        warning.ends_with(
            "    - Unexpected fields found in top-level field: \"colour\",\"foo\"\n    - \"env.staging\" environment configuration\n      - Unexpected fields found in env.staging field: \"bar\"\n"
        ),
        "{warning}"
    );
}

#[test]
fn config_without_unknown_fields_has_no_warning() {
    let dir = project(&[
        (
            "wrangler.jsonc",
            r#"{
  "$schema": "node_modules/wrangler/config-schema.json",
  "name": "hello",
  "main": "src/entry.py",
  "compatibility_date": "2026-06-01",
  "compatibility_flags": ["python_workers"],
  "kv_namespaces": [{ "binding": "KV", "id": "x" }],
  "triggers": { "crons": [] },
  "env": { "prod": { "vars": {} } }
}"#,
        ),
        ENTRY,
    ]);
    let config = load(dir.path(), &ConfigOverrides::default()).unwrap();
    assert_eq!(config.unexpected_fields, None);
}
