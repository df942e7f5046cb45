//! Unit tests: migrations, ids, the object store.

use super::call::ListOptions;
use super::config::{classes, parse_bindings, parse_migrations};
use super::store::ClassStore;
use super::*;
use serde_json::json;

#[test]
fn migrations_say_which_classes_are_sqlite_backed_and_follow_renames() {
    let migrations = parse_migrations(Some(&json!([
        {"tag": "v1", "new_classes": ["Old"], "new_sqlite_classes": ["Chat"]},
        {"tag": "v2", "renamed_classes": [{"from": "Old", "to": "Counter"}], "deleted_classes": ["Chat"]},
    ])))
    .unwrap();
    let classes = classes(&migrations);
    assert_eq!(classes.len(), 1);
    let counter = &classes["Counter"];
    assert_eq!(counter.origin, "Old");
    assert!(!counter.sqlite);
    assert_eq!(counter.former_names, vec!["Old".to_owned()]);
    assert_eq!(
        parse_migrations(Some(&json!([{"new_classes": "A"}])))
            .unwrap_err()
            .to_string(),
        "`migrations[0].new_classes`: invalid type: string \"A\", expected a sequence"
    );
}

#[test]
fn class_names_are_identifiers_never_paths() {
    assert_eq!(
        parse_bindings(&json!({"bindings": [{"name": "NS", "class_name": "../../x"}]}))
            .unwrap_err()
            .to_string(),
        "`durable_objects.bindings[0].class_name`: \"../../x\" is not a class name (letters, digits and `_`, not starting with a digit)"
    );
    assert_eq!(
        parse_migrations(Some(&json!([
            {"renamed_classes": [{"from": "A", "to": "/etc"}]},
        ])))
        .unwrap_err()
        .to_string(),
        "`migrations[0].renamed_classes[0].to`: \"/etc\" is not a class name (letters, digits and `_`, not starting with a digit)"
    );
    assert!(
        parse_bindings(&json!({"bindings": [{"name": "NS", "class_name": "Counter_2"}]})).is_ok()
    );
}

#[test]
fn the_exports_map_declares_classes_too() {
    let mut live = classes(&[]);
    super::config::classes_from_exports(
        Some(&json!({
            "Chat": {"type": "durable-object", "state": "created", "storage": "sqlite"},
            "Old": {"type": "durable-object", "state": "created", "storage": "legacy-kv"},
            "Default": {"type": "worker"},
        })),
        &mut live,
    )
    .unwrap();
    assert!(live["Chat"].sqlite);
    assert!(!live["Old"].sqlite);
    assert!(!live.contains_key("Default"));
    let error = super::config::classes_from_exports(
        Some(&json!({"X": {"type": "durable-object", "state": "created"}})),
        &mut live,
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "`exports.X.storage`: expected \"sqlite\" or \"legacy-kv\", found nothing"
    );
}

#[test]
fn bindings_are_parsed_with_their_paths() {
    let entries =
        parse_bindings(&json!({"bindings": [{"name": "C", "class_name": "Counter"}]})).unwrap();
    assert_eq!(entries[0].class_name, "Counter");
    assert_eq!(
        parse_bindings(&json!({"bindings": [{"name": "C"}]}))
            .unwrap_err()
            .to_string(),
        "`durable_objects.bindings[0]`: missing field `class_name`"
    );
}

#[test]
fn ids_are_64_lowercase_hex_digits() {
    assert!(check_id(&"a".repeat(64)).is_ok());
    for bad in ["", "../x", &"A".repeat(64), &"a".repeat(63)] {
        assert_eq!(
            check_id(bad).unwrap_err().to_string(),
            "Invalid Durable Object ID: must be 64 hex digits"
        );
    }
    assert_ne!(namespace_key(None, "A"), namespace_key(None, "B"));
    assert_eq!(namespace_key(None, "A"), namespace_key(None, "A"));
}

#[test]
fn list_options_are_checked_as_workerd_checks_them() {
    let both = ListOptions {
        start: Some("a".into()),
        start_after: Some("b".into()),
        ..Default::default()
    };
    assert_eq!(
        list_limit(&both).unwrap_err().to_string(),
        "list() cannot be called with both start and startAfter values."
    );
    for limit in [0.0, -1.0, f64::NAN] {
        let options = ListOptions {
            limit: Some(limit),
            ..Default::default()
        };
        assert_eq!(
            list_limit(&options).unwrap_err().to_string(),
            "List limit must be positive."
        );
    }
}

#[tokio::test]
async fn an_object_store_gets_puts_lists_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let class = ClassStore::shared(&dir.path().join("Counter"));
    let id = "0".repeat(64);
    let object = class.object(&id).await;
    // A read of an object that never wrote creates no file.
    assert_eq!(object.get(&["a".into()]).await.unwrap(), vec![None]);
    assert!(class.ids().is_empty());
    let entries: Vec<(String, Vec<u8>)> = ["b", "a", "ab", "c"]
        .iter()
        .map(|k| (k.to_string(), k.as_bytes().to_vec()))
        .collect();
    object.put(&entries).await.unwrap();
    assert_eq!(class.ids(), vec![id.clone()]);
    let keys = |list: Vec<(String, Vec<u8>)>| list.into_iter().map(|e| e.0).collect::<Vec<_>>();
    assert_eq!(
        keys(object.list(&ListOptions::default(), None).await.unwrap()),
        ["a", "ab", "b", "c"]
    );
    let options = ListOptions {
        prefix: Some("a".into()),
        ..Default::default()
    };
    assert_eq!(
        keys(object.list(&options, None).await.unwrap()),
        ["a", "ab"]
    );
    let options = ListOptions {
        start_after: Some("a".into()),
        end: Some("c".into()),
        reverse: Some(true),
        ..Default::default()
    };
    assert_eq!(keys(object.list(&options, Some(1)).await.unwrap()), ["b"]);
    assert_eq!(object.delete(&["a".into(), "zz".into()]).await.unwrap(), 1);
    object.delete_all().await.unwrap();
    assert!(
        object
            .list(&ListOptions::default(), None)
            .await
            .unwrap()
            .is_empty()
    );
    class.close().await.unwrap();
}
