//! The fields wrangler knows in its configuration, so that pyflare warns
//! about the others as wrangler does. Taken from wrangler's validation
//! (workers-sdk packages/workers-utils/src/config/validation.ts,
//! `normalizeAndValidateConfig` and `normalizeAndValidateEnvironment`):
//! a field wrangler knows but pyflare does not emulate yet (`r2_buckets`,
//! `queues`, `durable_objects`, ...) is not unexpected.

use serde_json::{Map, Value};
use std::path::Path;

/// Fields of an environment: the top level and each `[env.NAME]`.
const ENVIRONMENT_FIELDS: [&str; 77] = [
    "account_id",
    "compatibility_date",
    "compatibility_flags",
    "jsx_factory",
    "jsx_fragment",
    "tsconfig",
    "rules",
    "name",
    "main",
    "find_additional_modules",
    "preserve_file_names",
    "base_dir",
    "route",
    "routes",
    "triggers",
    "assets",
    "limits",
    "placement",
    "build",
    "workers_dev",
    "preview_urls",
    "vars",
    "secrets",
    "define",
    "durable_objects",
    "workflows",
    "migrations",
    "exports",
    "kv_namespaces",
    "cloudchamber",
    "containers",
    "send_email",
    "queues",
    "connect",
    "r2_buckets",
    "d1_databases",
    "vectorize",
    "ai_search_namespaces",
    "ai_search",
    "websearch",
    "agent_memory",
    "hyperdrive",
    "services",
    "analytics_engine_datasets",
    "dispatch_namespaces",
    "mtls_certificates",
    "tail_consumers",
    "streaming_tail_consumers",
    "unsafe",
    "browser",
    "ai",
    "images",
    "stream",
    "media",
    "pipelines",
    "secrets_store_secrets",
    "artifacts",
    "unsafe_hello_world",
    "flagship",
    "worker_loaders",
    "ratelimits",
    "vpc_services",
    "vpc_networks",
    "version_metadata",
    "logfwdr",
    "no_bundle",
    "minify",
    "keep_names",
    "first_party_worker",
    "logpush",
    "upload_source_maps",
    "observability",
    "access",
    "cache",
    "compliance_region",
    "python_modules",
    "previews",
];

/// Fields of the top level only.
const TOP_LEVEL_FIELDS: [&str; 19] = [
    "configPath",
    "userConfigPath",
    "topLevelName",
    "definedEnvironments",
    "targetEnvironment",
    "pages_build_output_dir",
    "send_metrics",
    "dependencies_instrumentation",
    "keep_vars",
    "addresses",
    "dev",
    "site",
    "alias",
    "wasm_modules",
    "text_blobs",
    "data_blobs",
    "env",
    "$schema",
    // wrangler refuses it with its own error; pyflare ignores it.
    "legacy_env",
];

/// wrangler's "Unexpected fields found in FIELD field: ..." line, or
/// nothing when every key is known.
fn unexpected<'a>(
    field: &str,
    keys: impl Iterator<Item = &'a String>,
    known: &dyn Fn(&str) -> bool,
) -> Option<String> {
    let names: Vec<String> = keys
        .filter(|k| !known(k))
        .map(|k| format!("\"{k}\""))
        .collect();
    (!names.is_empty()).then(|| {
        format!(
            "Unexpected fields found in {field} field: {}",
            names.join(",")
        )
    })
}

fn is_environment_field(key: &str) -> bool {
    ENVIRONMENT_FIELDS.contains(&key)
}

fn is_top_level_field(key: &str) -> bool {
    is_environment_field(key) || TOP_LEVEL_FIELDS.contains(&key)
}

/// The warning wrangler prints for unknown fields of the top level and of
/// the selected environment (`env`: its name and its keys), rendered as
/// wrangler's logger renders it:
///
/// ```text
/// ▲ [WARNING] Processing wrangler.toml configuration:
///
///     - Unexpected fields found in top-level field: "foo"
/// ```
pub(super) fn unexpected_fields_warning(
    file: &Path,
    top_level: &Map<String, Value>,
    env: Option<(&str, &Map<String, Value>)>,
) -> Option<String> {
    let mut lines = vec![];
    if let Some(line) = unexpected("top-level", top_level.keys(), &is_top_level_field) {
        lines.push(format!("    - {line}"));
    }
    if let Some((name, keys)) = env
        && let Some(line) = unexpected(&format!("env.{name}"), keys.keys(), &is_environment_field)
    {
        lines.push(format!("    - \"env.{name}\" environment configuration"));
        lines.push(format!("      - {line}"));
    }
    if lines.is_empty() {
        return None;
    }
    Some(format!(
        "▲ [WARNING] Processing {} configuration:\n\n{}\n",
        relative_to_cwd(file).display(),
        lines.join("\n")
    ))
}

/// The config file as wrangler names it: relative to the current folder.
fn relative_to_cwd(file: &Path) -> std::path::PathBuf {
    let cwd = std::env::current_dir().ok();
    if let Some(rest) = cwd.as_deref().and_then(|cwd| file.strip_prefix(cwd).ok()) {
        return rest.to_path_buf();
    }
    file.components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect()
}
