//! The one parser of binding arrays in the wrangler config
//! (`kv_namespaces`, `d1_databases`, ...): the array shape, each entry's
//! fields through serde with the path of a bad field
//! (`d1_databases[0].binding`), and the checks every binding name gets (a
//! JavaScript identifier, used once in its array). A binding's own checks
//! (D1's file-safe `database_name`) hang off [`NamedBinding::check`], so
//! their errors carry the same paths.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::binding::BindingConfigError;

/// One entry of a binding array: it has a binding name, and may have a
/// second name the CLI commands accept (D1's `database_name`).
pub trait NamedBinding {
    /// What one entry is called in messages, e.g. `"KV binding"`.
    const WHAT: &'static str;

    /// The name the worker sees on `env`.
    fn binding(&self) -> &str;

    /// Another name the CLI commands find this entry by, if any.
    fn other_name(&self) -> Option<&str> {
        None
    }

    /// This kind's own checks, after the shared ones. On failure, the
    /// entry's field at fault and what is wrong with it.
    fn check(&self) -> Result<(), FieldError> {
        Ok(())
    }
}

/// A field of one entry that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field's name in the entry, e.g. `database_name`.
    pub field: &'static str,
    /// What is wrong with it.
    pub message: String,
}

/// Parses the array `value` found under `config_key` into its entries.
pub fn parse_entries<T: DeserializeOwned + NamedBinding>(
    config_key: &str,
    value: &Value,
) -> Result<Vec<T>, BindingConfigError> {
    let invalid = |path: String, message: String| BindingConfigError::Invalid { path, message };
    let list = value
        .as_array()
        .ok_or_else(|| invalid(config_key.to_owned(), "expected an array".to_owned()))?;
    let mut out: Vec<T> = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let at = format!("{config_key}[{i}]");
        let entry: T = parse_value(&at, item)?;
        let name = entry.binding();
        if !is_binding_name(name) {
            // wrangler's words, from its `kv:namespace create` check
            // (packages/wrangler/src/kv/index.ts before cloudflare/workers-sdk#5050).
            return Err(invalid(
                format!("{at}.binding"),
                format!(
                    "The binding name \"{name}\" is invalid. It can only have alphanumeric and _ characters, and cannot begin with a number."
                ),
            ));
        }
        if out.iter().any(|e| e.binding() == name) {
            return Err(invalid(
                format!("{at}.binding"),
                format!("the binding name {name} is used twice"),
            ));
        }
        entry
            .check()
            .map_err(|e| invalid(format!("{at}.{}", e.field), e.message))?;
        out.push(entry);
    }
    Ok(out)
}

/// Deserializes the config value found at `at` (`queues.consumers[0]`),
/// naming the field at fault in the error's path
/// (`queues.consumers[0].max_retries`).
pub fn parse_value<T: DeserializeOwned>(at: &str, value: &Value) -> Result<T, BindingConfigError> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let inner = error.path().to_string();
        let path = match inner.as_str() {
            "." => at.to_owned(),
            field if field.starts_with('[') => format!("{at}{field}"),
            field => format!("{at}.{field}"),
        };
        BindingConfigError::Invalid {
            path,
            message: error.into_inner().to_string(),
        }
    })
}

/// A name the worker can use as `env.NAME` from both JavaScript and
/// Python: an ASCII letter or `_`, then ASCII letters, digits and `_`, as
/// wrangler checked binding names (`/^[a-zA-Z_][a-zA-Z0-9_]*$/`).
pub fn is_binding_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Deserialize)]
    struct Entry {
        binding: String,
        #[serde(default)]
        size: Option<u32>,
        #[serde(default)]
        path: Option<String>,
    }

    impl NamedBinding for Entry {
        const WHAT: &'static str = "test binding";
        fn binding(&self) -> &str {
            &self.binding
        }
        fn check(&self) -> Result<(), FieldError> {
            match &self.path {
                Some(p) if p.contains('/') => Err(FieldError {
                    field: "path",
                    message: format!("\"{p}\" has a slash"),
                }),
                _ => Ok(()),
            }
        }
    }

    fn error(value: Value) -> String {
        parse_entries::<Entry>("things", &value)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn entries_parse_in_order() {
        let entries = parse_entries::<Entry>(
            "things",
            &json!([{"binding": "A"}, {"binding": "_b2", "size": 3}]),
        )
        .unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].binding, "A");
        assert_eq!(entries[1].size, Some(3));
        assert!(
            parse_entries::<Entry>("things", &json!([]))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn the_array_shape_is_checked() {
        assert_eq!(
            error(json!({"binding": "A"})),
            "`things`: expected an array"
        );
    }

    #[test]
    fn serde_errors_name_the_entry_and_field() {
        assert_eq!(
            error(json!([{"binding": "A"}, {"size": 1}])),
            "`things[1]`: missing field `binding`"
        );
        assert_eq!(
            error(json!([{"binding": 7}])),
            "`things[0].binding`: invalid type: integer `7`, expected a string"
        );
        assert_eq!(
            error(json!([{"binding": "A", "size": "big"}])),
            "`things[0].size`: invalid type: string \"big\", expected u32"
        );
        assert_eq!(
            error(json!(["A"])),
            "`things[0]`: invalid type: string \"A\", expected struct Entry"
        );
    }

    #[test]
    fn binding_names_must_be_identifiers_in_wranglers_words() {
        assert_eq!(
            error(json!([{"binding": "OK"}, {"binding": "my-kv"}])),
            "`things[1].binding`: The binding name \"my-kv\" is invalid. It can only have alphanumeric and _ characters, and cannot begin with a number."
        );
        for bad in ["", "1st", "a b", "a.b", "a$", "é"] {
            assert!(
                error(json!([{ "binding": bad }]))
                    .starts_with("`things[0].binding`: The binding name"),
                "{bad:?}"
            );
        }
        for good in ["A", "_", "_x1", "MY_KV", "db"] {
            assert!(is_binding_name(good), "{good}");
        }
    }

    #[test]
    fn a_name_used_twice_is_refused() {
        assert_eq!(
            error(json!([{"binding": "A"}, {"binding": "B"}, {"binding": "A"}])),
            "`things[2].binding`: the binding name A is used twice"
        );
    }

    #[test]
    fn a_kinds_own_check_gets_the_same_path() {
        assert_eq!(
            error(json!([{"binding": "A", "path": "x/y"}])),
            "`things[0].path`: \"x/y\" has a slash"
        );
    }
}
