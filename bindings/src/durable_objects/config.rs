//! The `durable_objects` section and the `migrations` list of the wrangler
//! config (<https://developers.cloudflare.com/durable-objects/reference/durable-objects-migrations/>).

use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

use crate::binding::BindingConfigError;
use crate::config::{NamedBinding, parse_entries};

/// `"durable_objects": {"bindings": [...]}`.
#[derive(Debug, Deserialize)]
struct Section {
    #[serde(default)]
    bindings: Option<Value>,
}

/// One entry of `durable_objects.bindings`.
#[derive(Debug, Clone, Deserialize)]
pub struct DurableObjectBindingConfig {
    /// Name on `env`.
    pub name: String,
    /// The class the namespace's objects are instances of.
    pub class_name: String,
    /// The worker that defines the class, when it is another one.
    #[serde(default)]
    pub script_name: Option<String>,
    /// That worker's environment.
    #[serde(default)]
    pub environment: Option<String>,
}

impl NamedBinding for DurableObjectBindingConfig {
    const WHAT: &'static str = "Durable Object binding";

    fn binding(&self) -> &str {
        &self.name
    }
}

/// Parses `durable_objects.bindings`.
pub fn parse_bindings(
    value: &Value,
) -> Result<Vec<DurableObjectBindingConfig>, BindingConfigError> {
    let section: Section =
        serde_json::from_value(value.clone()).map_err(|e| BindingConfigError::Invalid {
            path: "durable_objects".into(),
            message: e.to_string(),
        })?;
    let entries: Vec<DurableObjectBindingConfig> = match section.bindings {
        None => Vec::new(),
        Some(list) => parse_entries("durable_objects.bindings", &list)?,
    };
    for (i, entry) in entries.iter().enumerate() {
        check_class_name(
            &format!("durable_objects.bindings[{i}].class_name"),
            &entry.class_name,
        )?;
    }
    Ok(entries)
}

/// A class name is a Python identifier (it names a class of the worker),
/// and so also a safe folder name under `do/`.
fn check_class_name(path: &str, name: &str) -> Result<(), BindingConfigError> {
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || c == '_');
    if valid {
        return Ok(());
    }
    Err(BindingConfigError::Invalid {
        path: path.to_owned(),
        message: format!(
            "{name:?} is not a class name (letters, digits and `_`, not starting with a digit)"
        ),
    })
}

/// One step of `migrations`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Migration {
    /// The migration's tag.
    #[serde(default)]
    pub tag: Option<String>,
    /// Classes created with the key-value storage backend.
    #[serde(default)]
    pub new_classes: Vec<String>,
    /// Classes created with the SQLite storage backend.
    #[serde(default)]
    pub new_sqlite_classes: Vec<String>,
    /// Classes renamed; their objects keep their ids and data.
    #[serde(default)]
    pub renamed_classes: Vec<Rename>,
    /// Classes deleted.
    #[serde(default)]
    pub deleted_classes: Vec<String>,
}

/// `{"from": "A", "to": "B"}`.
#[derive(Debug, Clone, Deserialize)]
pub struct Rename {
    /// The old class name.
    pub from: String,
    /// The new one.
    pub to: String,
}

/// What the migrations say about one class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassInfo {
    /// The class's first name, which its ids are derived from, so renaming a
    /// class keeps its objects' ids.
    pub origin: String,
    /// Whether it is SQLite-backed (`new_sqlite_classes`).
    pub sqlite: bool,
    /// Names it had before, oldest first (their data moves to the new name).
    pub former_names: Vec<String>,
}

/// Parses `migrations` (absent: none).
pub fn parse_migrations(value: Option<&Value>) -> Result<Vec<Migration>, BindingConfigError> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let migrations: Vec<Migration> =
        serde_path_to_error::deserialize(value).map_err(|e| BindingConfigError::Invalid {
            path: format!("migrations{}", e.path().to_string().trim_start_matches('.')),
            message: e.into_inner().to_string(),
        })?;
    for (i, step) in migrations.iter().enumerate() {
        let lists = [
            ("new_classes", &step.new_classes),
            ("new_sqlite_classes", &step.new_sqlite_classes),
            ("deleted_classes", &step.deleted_classes),
        ];
        for (key, names) in lists {
            for (j, name) in names.iter().enumerate() {
                check_class_name(&format!("migrations[{i}].{key}[{j}]"), name)?;
            }
        }
        for (j, rename) in step.renamed_classes.iter().enumerate() {
            check_class_name(
                &format!("migrations[{i}].renamed_classes[{j}].from"),
                &rename.from,
            )?;
            check_class_name(
                &format!("migrations[{i}].renamed_classes[{j}].to"),
                &rename.to,
            )?;
        }
    }
    Ok(migrations)
}

/// Replays `migrations` in order: the classes that exist at the end.
pub fn classes(migrations: &[Migration]) -> BTreeMap<String, ClassInfo> {
    let mut live: BTreeMap<String, ClassInfo> = BTreeMap::new();
    for step in migrations {
        for (names, sqlite) in [(&step.new_classes, false), (&step.new_sqlite_classes, true)] {
            for name in names {
                live.insert(
                    name.clone(),
                    ClassInfo {
                        origin: name.clone(),
                        sqlite,
                        former_names: Vec::new(),
                    },
                );
            }
        }
        for rename in &step.renamed_classes {
            if let Some(mut info) = live.remove(&rename.from) {
                info.former_names.push(rename.from.clone());
                live.insert(rename.to.clone(), info);
            }
        }
        for name in &step.deleted_classes {
            live.remove(name);
        }
    }
    live
}

/// Applies the newer `exports` map (instead of `migrations`):
/// `{"Class": {"type": "durable-object", "state": "created", "storage": "sqlite"}}`
/// (<https://developers.cloudflare.com/workers/wrangler/configuration/>).
pub fn classes_from_exports(
    exports: Option<&Value>,
    live: &mut BTreeMap<String, ClassInfo>,
) -> Result<(), BindingConfigError> {
    let Some(map) = exports.and_then(Value::as_object) else {
        return Ok(());
    };
    for (class, entry) in map {
        if entry.get("type").and_then(Value::as_str) != Some("durable-object") {
            continue;
        }
        let field = |name: &str| entry.get(name).and_then(Value::as_str);
        match field("state").unwrap_or("created") {
            "created" | "expecting-transfer" => {
                let sqlite = match field("storage") {
                    Some("sqlite") => true,
                    Some("legacy-kv") => false,
                    other => {
                        return Err(BindingConfigError::Invalid {
                            path: format!("exports.{class}.storage"),
                            message: format!(
                                "expected \"sqlite\" or \"legacy-kv\", found {}",
                                other.map_or("nothing".to_owned(), |s| format!("\"{s}\""))
                            ),
                        });
                    }
                };
                live.entry(class.clone()).or_insert(ClassInfo {
                    origin: class.clone(),
                    sqlite,
                    former_names: Vec::new(),
                });
            }
            "renamed" => {
                if let (Some(to), Some(mut info)) = (field("renamed_to"), live.remove(class)) {
                    info.former_names.push(class.clone());
                    live.insert(to.to_owned(), info);
                }
            }
            "deleted" => {
                live.remove(class);
            }
            _ => {}
        }
    }
    Ok(())
}
