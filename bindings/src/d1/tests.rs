//! D1 unit tests on a real SQLite file: results, errors, batch atomicity,
//! migrations.

use super::migrations;
use super::*;
use sqlx::ConnectOptions;

async fn db() -> (tempfile::TempDir, D1Database) {
    let dir = tempfile::tempdir().unwrap();
    let config = D1DatabaseConfig {
        binding: "DB".into(),
        database_name: Some("test-db".into()),
        database_id: None,
        preview_database_id: None,
        migrations_dir: None,
        migrations_table: None,
    };
    let db = D1Database::new(config, dir.path());
    (dir, db)
}

async fn query(db: &D1Database, sql: &str, params: Value, mode: &str) -> Result<Value, D1Error> {
    db.run(D1Call::Query {
        query: serde_json::from_value(json!({"sql": sql, "params": params})).unwrap(),
        mode: mode.into(),
        column: None,
    })
    .await
    .map(|r| r.value)
}

#[tokio::test]
async fn d1_file_is_named_after_the_database() {
    let (dir, db) = db().await;
    query(&db, "CREATE TABLE t (x)", json!([]), "all")
        .await
        .unwrap();
    assert!(dir.path().join("d1/test-db.sqlite3").is_file());
}

#[tokio::test]
async fn d1_values_keep_their_types() {
    let (_dir, db) = db().await;
    query(
        &db,
        "CREATE TABLE t (i INTEGER, r REAL, s TEXT, b BLOB, n)",
        json!([]),
        "all",
    )
    .await
    .unwrap();
    let inserted = query(
        &db,
        "INSERT INTO t VALUES (?, ?, ?, ?, ?)",
        json!([1, 1.5, "text", [0, 255], null]),
        "all",
    )
    .await
    .unwrap();
    assert_eq!(inserted["meta"]["changes"], 1);
    assert_eq!(inserted["meta"]["last_row_id"], 1);
    assert_eq!(inserted["results"], json!([]));
    let all = query(&db, "SELECT * FROM t", json!([]), "all")
        .await
        .unwrap();
    assert_eq!(
        all["results"],
        json!([{"i": 1, "r": 1.5, "s": "text", "b": [0, 255], "n": null}])
    );
    assert_eq!(all["success"], true);
    let raw = query(&db, "SELECT s, i FROM t WHERE i = ?1", json!([2]), "raw")
        .await
        .unwrap();
    assert_eq!(raw, json!({"columns": ["s", "i"], "rows": []}));
}

#[tokio::test]
async fn d1_rules_and_messages() {
    let (_dir, db) = db().await;
    let err = |r: Result<Value, D1Error>| r.unwrap_err().to_string();
    assert_eq!(
        err(query(&db, "", json!([]), "all").await),
        "D1_ERROR: No SQL statements detected."
    );
    assert_eq!(
        err(query(&db, "-- nothing", json!([]), "all").await),
        "D1_ERROR: SQL code did not contain a statement."
    );
    assert_eq!(
        err(query(&db, "SELECT ?; SELECT ?", json!([1, 2]), "all").await),
        "D1_ERROR: When executing multiple SQL statements in a single call, only the last statement can have parameters."
    );
    assert_eq!(
        err(query(&db, "SELECT ?", json!([1, 2]), "all").await),
        "D1_ERROR: Wrong number of parameter bindings for SQL query."
    );
    assert_eq!(
        err(query(&db, "SELEC 1", json!([]), "all").await),
        "D1_ERROR: near \"SELEC\": syntax error at offset 0: SQLITE_ERROR"
    );
    assert_eq!(
        err(query(&db, "SELECT * FROM nope", json!([]), "all").await),
        "D1_ERROR: no such table: nope: SQLITE_ERROR"
    );
    let last = query(&db, "SELECT 1 AS a; SELECT ? AS b", json!([2]), "all")
        .await
        .unwrap();
    assert_eq!(last["results"], json!([{"b": 2}]));
}

#[tokio::test]
async fn d1_batch_is_all_or_nothing() {
    let (dir, db) = db().await;
    query(&db, "CREATE TABLE t (x UNIQUE)", json!([]), "all")
        .await
        .unwrap();
    let batch = |sqls: &[&str]| D1Call::Batch {
        queries: sqls
            .iter()
            .map(|s| serde_json::from_value(json!({"sql": s})).unwrap())
            .collect(),
    };
    let error = db
        .run(batch(&[
            "INSERT INTO t VALUES (1)",
            "INSERT INTO t VALUES (1)",
        ]))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "D1_ERROR: UNIQUE constraint failed: t.x: SQLITE_CONSTRAINT (extended: SQLITE_CONSTRAINT_UNIQUE)"
    );
    let count = query(&db, "SELECT count(*) AS n FROM t", json!([]), "all")
        .await
        .unwrap();
    assert_eq!(count["results"][0]["n"], 0);
    // The failed batch's transaction is over: a later write is committed,
    // as another connection to the file sees.
    query(&db, "INSERT INTO t VALUES (2)", json!([]), "run")
        .await
        .unwrap();
    let path = dir.path().join("d1").join("test-db.sqlite3");
    let mut other = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .connect()
        .await
        .unwrap();
    let committed: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
        .fetch_one(&mut other)
        .await
        .unwrap();
    assert_eq!(committed, 1);
}

#[tokio::test]
async fn d1_migrations_apply_in_order_and_stop_at_a_failure() {
    let (dir, db) = db().await;
    let folder = dir.path().join("migrations");
    let first = migrations::create(&folder, "create users", "2026-11-24T00:00:00.000Z").unwrap();
    assert_eq!(first.file_name().unwrap(), "0000_create_users.sql");
    std::fs::write(
        &first,
        "CREATE TABLE users (name TEXT);\nINSERT INTO users VALUES ('a');\n",
    )
    .unwrap();
    let second = migrations::create(&folder, "broken", "2026-11-24T00:00:01.000Z").unwrap();
    assert_eq!(second.file_name().unwrap(), "0001_broken.sql");
    std::fs::write(&second, "INSERT INTO users VALUES ('b');\nSELEC oops;\n").unwrap();
    let store = db.store().await.unwrap().clone();
    let pending = migrations::unapplied(store.as_ref(), &folder, "d1_migrations")
        .await
        .unwrap();
    assert_eq!(pending, vec!["0000_create_users.sql", "0001_broken.sql"]);
    migrations::apply(store.as_ref(), &folder, "d1_migrations", &pending[0])
        .await
        .unwrap();
    let failed = migrations::apply(store.as_ref(), &folder, "d1_migrations", &pending[1]).await;
    assert!(
        failed
            .unwrap_err()
            .to_string()
            .starts_with("0001_broken.sql: D1_ERROR: near \"SELEC\"")
    );
    // The failed file left nothing behind; the first stays applied.
    let users = query(&db, "SELECT name FROM users", json!([]), "raw")
        .await
        .unwrap();
    assert_eq!(users["rows"], json!([["a"]]));
    let pending = migrations::unapplied(store.as_ref(), &folder, "d1_migrations")
        .await
        .unwrap();
    assert_eq!(pending, vec!["0001_broken.sql"]);
}

#[tokio::test]
async fn d1_refuses_statements_that_reach_files_outside_its_own() {
    let (dir, db) = db().await;
    let outside = dir.path().join("outside.db");
    for sql in [
        format!("ATTACH DATABASE '{}' AS other", outside.display()),
        format!("VACUUM INTO '{}'", outside.display()),
        format!("SELECT 1; ATTACH '{}' AS other", outside.display()),
        "PRAGMA temp_store_directory = '/'".to_owned(),
    ] {
        let error = query(&db, &sql, json!([]), "all").await.unwrap_err();
        assert_eq!(
            error.to_string(),
            "D1_ERROR: not authorized: SQLITE_AUTH",
            "{sql}"
        );
    }
    let exec = db
        .run(D1Call::Exec {
            sql: format!("ATTACH '{}' AS other", outside.display()),
        })
        .await
        .unwrap_err();
    assert!(
        exec.to_string().ends_with(": not authorized: SQLITE_AUTH"),
        "{exec}"
    );
    let batch = db
        .run(D1Call::Batch {
            queries: vec![
                serde_json::from_value(
                    json!({"sql": format!("VACUUM INTO '{}'", outside.display()), "params": []}),
                )
                .unwrap(),
            ],
        })
        .await
        .unwrap_err();
    assert_eq!(batch.to_string(), "D1_ERROR: not authorized: SQLITE_AUTH");
    assert!(!outside.exists());
    // load_extension stays refused too (SQLite's own default).
    let error = query(&db, "SELECT load_extension('x')", json!([]), "all")
        .await
        .unwrap_err();
    assert_eq!(error.to_string(), "D1_ERROR: not authorized: SQLITE_ERROR");
}

#[tokio::test]
async fn d1_database_names_are_never_decoded_as_urls() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let config: D1DatabaseConfig = serde_json::from_value(
        json!({"binding": "DB", "database_name": "%2e%2e%2f%2e%2e%2fescaped"}),
    )
    .unwrap();
    let db = D1Database::new(config, &state);
    query(&db, "CREATE TABLE t (x)", json!([]), "all")
        .await
        .unwrap();
    assert!(state.join("d1/%2e%2e%2f%2e%2e%2fescaped.sqlite3").is_file());
    assert!(!dir.path().join("escaped.sqlite3").exists());
    for bad in ["../x", "a/b", "a\\b", ".hidden", "a\0b"] {
        let error = parse_entries::<D1DatabaseConfig>(
            "d1_databases",
            &json!([{"binding": "DB", "database_name": bad}]),
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("d1_databases[0].database_name"),
            "{error}"
        );
    }
}

#[tokio::test]
async fn d1_a_damaged_file_is_reported_at_open_not_read_as_empty() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d1/db.sqlite3");
    {
        let store = SqliteD1Store::open(&path).await.unwrap();
        let create = statements_of("CREATE TABLE t (x TEXT); CREATE INDEX tx ON t (x)");
        store.run(&create, &[]).await.unwrap();
        for i in 0..200 {
            let insert = statements_of("INSERT INTO t VALUES (?)");
            store
                .run(
                    &insert,
                    &[Param::Text(format!("row {i} {}", "x".repeat(50)))],
                )
                .await
                .unwrap();
        }
        store.checkpoint().await.unwrap();
    }
    // Scribble over the third page (a table or index page).
    let mut bytes = std::fs::read(&path).unwrap();
    for b in &mut bytes[2 * 4096..2 * 4096 + 200] {
        *b = 0x5a;
    }
    std::fs::write(&path, &bytes).unwrap();
    let error = SqliteD1Store::open(&path).await.unwrap_err();
    assert!(matches!(error, D1Error::Damaged { .. }), "{error}");
    assert!(
        error.to_string().contains("db.sqlite3 is damaged"),
        "{error}"
    );
    assert!(error.hint().unwrap().contains("move the file"));
}

#[tokio::test]
async fn d1_checkpoint_leaves_every_table_in_the_file_alone() {
    let (dir, db) = db().await;
    query(&db, "CREATE TABLE kept (x)", json!([]), "all")
        .await
        .unwrap();
    query(&db, "INSERT INTO kept VALUES (42)", json!([]), "all")
        .await
        .unwrap();
    Binding::close(&db).await.unwrap();
    let copy = dir.path().join("copy.sqlite3");
    std::fs::copy(dir.path().join("d1/test-db.sqlite3"), &copy).unwrap();
    let alone = SqliteD1Store::open(&copy).await.unwrap();
    let out = alone
        .run(&statements_of("SELECT x FROM kept"), &[])
        .await
        .unwrap();
    assert_eq!(out.rows, vec![vec![json!(42)]]);
}

fn statements_of(sql: &str) -> Vec<Statement> {
    match statements::split(sql) {
        Split::Statements(list) => list,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn d1_a_damaged_write_ahead_log_is_reported_not_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.sqlite3");
    let store = SqliteD1Store::open(&path).await.unwrap();
    store
        .run(&statements_of("CREATE TABLE t (x TEXT)"), &[])
        .await
        .unwrap();
    store.checkpoint().await.unwrap();
    for i in 0..5 {
        store
            .run(
                &statements_of("INSERT INTO t VALUES (?)"),
                &[Param::Text(format!("row {i}"))],
            )
            .await
            .unwrap();
    }
    // A copy taken while pyflare runs: the inserts are only in the log.
    let copy = dir.path().join("copy.sqlite3");
    std::fs::copy(&path, &copy).unwrap();
    let wal = std::fs::read(dir.path().join("live.sqlite3-wal")).unwrap();
    assert!(wal.len() > 32 + 24 + 4096, "no frames in the log");
    std::fs::write(dir.path().join("copy.sqlite3-wal"), &wal).unwrap();
    let intact = SqliteD1Store::open(&copy).await.unwrap();
    let rows = intact
        .run(&statements_of("SELECT count(*) FROM t"), &[])
        .await
        .unwrap()
        .rows;
    assert_eq!(rows, vec![vec![json!(5)]]);
    drop(intact);

    let damaged = dir.path().join("damaged.sqlite3");
    std::fs::copy(&path, &damaged).unwrap();
    let mut bad = wal.clone();
    bad[32 + 24 + 100] ^= 0x01;
    std::fs::write(dir.path().join("damaged.sqlite3-wal"), &bad).unwrap();
    let error = SqliteD1Store::open(&damaged).await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("damaged.sqlite3-wal is damaged: frame 1"),
        "{error}"
    );
}

#[test]
fn d1_config_gets_the_shared_checks() {
    use crate::config::NamedBinding;
    let parse = |value: Value| {
        parse_entries::<D1DatabaseConfig>(D1Databases.config_key(), &value)
            .map_err(|e| e.to_string())
    };
    assert_eq!(
        parse(json!([{"binding": "my-db", "database_name": "quotes"}])).unwrap_err(),
        "`d1_databases[0].binding`: The binding name \"my-db\" is invalid. It can only have alphanumeric and _ characters, and cannot begin with a number."
    );
    assert_eq!(
        parse(json!([{"binding": "DB"}, {"binding": "DB", "database_name": "other"}])).unwrap_err(),
        "`d1_databases[1].binding`: the binding name DB is used twice"
    );
    assert_eq!(
        parse(json!([{"database_name": "quotes"}])).unwrap_err(),
        "`d1_databases[0]`: missing field `binding`"
    );
    assert_eq!(
        parse(json!([{"binding": "DB", "migrations_dir": 3}])).unwrap_err(),
        "`d1_databases[0].migrations_dir`: invalid type: integer `3`, expected a string"
    );
    let entries =
        parse(json!([{"binding": "DB", "database_name": "quotes"}, {"binding": "LOGS"}])).unwrap();
    assert_eq!(entries[0].other_name(), Some("quotes"));
    assert_eq!(entries[1].other_name(), Some("LOGS"));
}
