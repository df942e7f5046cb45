//! Config and command-line errors: `pyflare: error: ...` with the file, the
//! line and the key, and a hint where the fix is obvious.

use crate::util::pyflare_bin;
use std::process::Command;

fn dev_in(files: &[(&str, &str)], args: &[&str]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let out = Command::new(pyflare_bin())
        .arg("dev")
        .arg(dir.path())
        .args(["--port", "0"])
        .args(args)
        .output()
        .unwrap();
    let stderr =
        String::from_utf8_lossy(&out.stderr).replace(&dir.path().display().to_string(), "DIR");
    (out.status.code().unwrap_or(-1), stderr)
}

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
