//! D1 through `pyflare dev` (the `d1_quotes` fixture calls every method
//! through Cloudflare's SDK) and the `pyflare d1` commands.

use crate::util::{TestWorker, fixture, pyflare};
use serde_json::{Value, json};

/// A state folder with the fixture's migrations applied by the CLI.
fn migrated_state() -> tempfile::TempDir {
    let state = tempfile::tempdir().unwrap();
    let dir = fixture("d1_quotes");
    let (code, stdout, stderr) = pyflare(&[
        "d1",
        "migrations",
        "apply",
        "quotes",
        "--dir",
        dir.to_str().unwrap(),
        "--persist-to",
        state.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    state
}

async fn call(w: &TestWorker, route: &str, body: Value) -> Value {
    TestWorker::client()
        .post(w.url(&format!("/{route}")))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn error(message: &str) -> Value {
    json!({"error": "JsException", "message": format!("Error: {message}")})
}

#[tokio::test]
async fn d1_queries_return_cloudflares_shapes() {
    let w = TestWorker::start_in("d1_quotes", migrated_state(), &["--no-reload"]).await;
    let all = call(&w, "query", json!({"sql": "SELECT id, author FROM quotes WHERE rating >= ? ORDER BY id", "params": [4]})).await;
    assert_eq!(all["success"], true);
    assert_eq!(
        all["results"],
        json!([{"id": 1, "author": "Ada Lovelace"}, {"id": 2, "author": "Grace Hopper"}])
    );
    let meta = all["meta"].as_object().unwrap();
    for key in [
        "duration",
        "size_after",
        "rows_read",
        "rows_written",
        "last_row_id",
        "changed_db",
        "changes",
        "served_by",
    ] {
        assert!(meta.contains_key(key), "meta lacks {key}: {meta:?}");
    }
    assert_eq!(all["meta"]["rows_read"], 2);
    assert_eq!(all["meta"]["changed_db"], false);

    let run = call(
        &w,
        "query",
        json!({"mode": "run", "sql": "INSERT INTO quotes (author, text, rating, image) VALUES (?1, ?2, ?3, ?4)",
               "params": ["Alan Kay", "The best way to predict the future is to invent it.", 4.75, {"$bytes": [0, 1, 254, 255]}]}),
    )
    .await;
    assert_eq!(run["results"], json!([]));
    assert_eq!(run["meta"]["changes"], 1);
    assert_eq!(run["meta"]["last_row_id"], 3);
    assert_eq!(run["meta"]["changed_db"], true);
    assert!(run["meta"]["size_after"].as_u64().unwrap() > 0);

    assert_eq!(
        call(&w, "query", json!({"mode": "first", "sql": "SELECT author, rating FROM quotes WHERE id = ?", "params": [3]})).await,
        json!({"author": "Alan Kay", "rating": 4.75})
    );
    assert_eq!(
        call(&w, "query", json!({"mode": "first", "column": "author", "sql": "SELECT author FROM quotes WHERE id = ?", "params": [1]})).await,
        json!("Ada Lovelace")
    );
    assert_eq!(
        call(
            &w,
            "query",
            json!({"mode": "first", "sql": "SELECT * FROM quotes WHERE id = 99"})
        )
        .await,
        Value::Null
    );
    assert_eq!(
        call(
            &w,
            "query",
            json!({"mode": "raw", "sql": "SELECT id, author FROM quotes WHERE id < 3 ORDER BY id"})
        )
        .await,
        json!([[1, "Ada Lovelace"], [2, "Grace Hopper"]])
    );
    assert_eq!(
        call(&w, "query", json!({"mode": "raw", "columnNames": true, "sql": "SELECT id, author FROM quotes WHERE id = 99"})).await,
        json!([["id", "author"]])
    );
    assert_eq!(
        call(
            &w,
            "results-index",
            json!({"sql": "SELECT count(*) AS n FROM quotes"})
        )
        .await,
        json!({"n": 3})
    );
    // BLOBs come back as D1 returns them: arrays of bytes.
    assert_eq!(
        call(
            &w,
            "blob-type",
            json!({"sql": "SELECT image FROM quotes WHERE id = 3"})
        )
        .await,
        json!({"type": "list", "value": [0, 1, 254, 255]})
    );
    // None binds NULL; booleans bind 1 and 0.
    assert_eq!(
        call(&w, "query", json!({"mode": "first", "sql": "SELECT ? IS NULL AS n, ? AS t, ? AS f", "params": [null, true, false]})).await,
        json!({"n": 1, "t": 1, "f": 0})
    );
}

/// `meta.rows_read` and `meta.rows_written` of each statement, as a
/// JavaScript worker under Miniflare 4.20260730 (workerd's counting SQLite)
/// reports them for the same statements run in this order.
#[tokio::test]
async fn d1_meta_counts_rows_as_d1_does() {
    let w = TestWorker::start_in("d1_quotes", migrated_state(), &["--no-reload"]).await;
    let expected: &[(&str, u64, u64)] = &[
        (
            "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, n INTEGER)",
            1,
            2,
        ),
        ("CREATE INDEX t_name ON t(name)", 2, 1),
        ("CREATE TABLE plain (a, b)", 1, 2),
        // A row and its index entry.
        ("INSERT INTO t (name, n) VALUES ('a', 1)", 0, 2),
        (
            "INSERT INTO t (name, n) VALUES ('b', 2), ('c', 3), ('d', 4)",
            0,
            6,
        ),
        ("INSERT INTO plain VALUES (1, 2)", 0, 1),
        ("INSERT INTO plain SELECT n, name FROM t", 4, 4),
        ("SELECT * FROM t", 4, 0),
        ("SELECT * FROM plain", 5, 0),
        // A lookup by key reads one row, found or not.
        ("SELECT * FROM t WHERE id = 2", 1, 0),
        ("SELECT * FROM t WHERE id = 99", 1, 0),
        ("SELECT * FROM t WHERE name = 'c'", 2, 0),
        // An index lookup that finds nothing reads nothing.
        ("SELECT * FROM t WHERE name = 'zz'", 0, 0),
        ("SELECT id FROM t WHERE name > 'a'", 3, 0),
        ("SELECT count(*) FROM t", 4, 0),
        ("SELECT count(*) FROM plain", 5, 0),
        // The sort's own temporary table is not counted as written.
        ("SELECT * FROM t ORDER BY n DESC LIMIT 2", 8, 0),
        ("SELECT max(id) FROM t", 1, 0),
        ("SELECT * FROM t WHERE n > 1", 4, 0),
        ("UPDATE t SET n = n + 1 WHERE id = 1", 1, 1),
        // An indexed column: the row and the new index entry.
        ("UPDATE t SET name = 'x' WHERE id = 2", 1, 2),
        ("UPDATE t SET n = 0", 4, 4),
        ("UPDATE plain SET a = 5 WHERE a = 1", 5, 2),
        ("DELETE FROM t WHERE id = 3", 1, 1),
        ("DELETE FROM plain WHERE a = 5", 5, 2),
        // A DELETE with no WHERE clears the table without reading it.
        ("DELETE FROM plain", 0, 3),
        (
            "INSERT OR REPLACE INTO t (id, name, n) VALUES (1, 'r', 9)",
            1,
            2,
        ),
        (
            "INSERT INTO t (id, name) VALUES (50, 'q') ON CONFLICT(id) DO UPDATE SET n = 7",
            1,
            2,
        ),
        (
            "INSERT INTO t (id, name) VALUES (50, 'q') ON CONFLICT(id) DO UPDATE SET n = 7",
            1,
            1,
        ),
        ("SELECT t.id, p.a FROM t JOIN plain p ON p.a = t.n", 1, 0),
        ("SELECT 1", 0, 0),
        ("CREATE TABLE w (k TEXT PRIMARY KEY, v) WITHOUT ROWID", 1, 2),
        ("INSERT INTO w VALUES ('a', 1), ('b', 2)", 0, 2),
        ("SELECT * FROM w WHERE k = 'b'", 1, 0),
        ("DELETE FROM t", 0, 4),
        // Of several statements, the last one's counts alone.
        (
            "INSERT INTO t (name) VALUES ('m'); SELECT count(*) FROM t",
            1,
            0,
        ),
        (
            "SELECT count(*) FROM t; INSERT INTO t (name) VALUES ('n')",
            0,
            2,
        ),
    ];
    assert_counts(&w, expected).await;
    // Each statement of a batch has its own counts.
    let batch = call(
        &w,
        "batch",
        json!({"statements": [
            {"sql": "INSERT INTO w VALUES ('c', 3)"},
            {"sql": "SELECT * FROM w"},
        ]}),
    )
    .await;
    let counts: Vec<_> = batch
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["meta"]["rows_read"].clone(),
                r["meta"]["rows_written"].clone(),
            )
        })
        .collect();
    assert_eq!(
        counts,
        [(json!(0), json!(1)), (json!(3), json!(0))],
        "{batch}"
    );

    // Virtual tables, temporary tables (DISTINCT, GROUP BY, IN), subqueries
    // and a trigger's own writes; Miniflare's answers for the same sequence.
    assert_counts(
        &w,
        &[
            ("CREATE TABLE u (id INTEGER PRIMARY KEY, name TEXT, n INTEGER)", 1, 2),
            ("CREATE INDEX u_name ON u(name)", 2, 1),
            ("INSERT INTO u (name, n) VALUES ('a', 1), ('b', 2), ('c', 3), ('d', 4)", 0, 8),
            ("SELECT value FROM json_each('[1,2,3]')", 3, 0),
            ("SELECT * FROM u WHERE id IN (1, 3)", 4, 0),
            ("SELECT DISTINCT n FROM u", 4, 0),
            ("SELECT name, count(*) FROM u GROUP BY name", 4, 0),
            ("SELECT * FROM u WHERE name LIKE 'a%'", 4, 0),
            ("SELECT (SELECT count(*) FROM u) AS c", 4, 0),
            ("WITH x AS (SELECT n FROM u) SELECT sum(n) FROM x", 4, 0),
            ("UPDATE u SET n = n * 2 WHERE name IN ('a', 'b')", 6, 2),
            ("INSERT INTO u (name, n) SELECT name || 'x', n FROM u WHERE n > 2", 7, 6),
            ("DELETE FROM u WHERE n > 4", 7, 0),
            ("CREATE TRIGGER tr AFTER INSERT ON u BEGIN UPDATE u SET n = 0 WHERE id = new.id; END", 0, 1),
            ("INSERT INTO u (name, n) VALUES ('z', 9)", 1, 3),
            ("SELECT * FROM u LIMIT 1 OFFSET 2", 3, 0),
            ("REPLACE INTO u (id, name, n) VALUES (1, 'q', 1)", 2, 3),
        ],
    )
    .await;

    // Statements SQLite runs on its own inside one (FTS5 on its shadow
    // tables, a stored generated column) are not the statement's rows.
    assert_counts(
        &w,
        &[
            ("CREATE VIRTUAL TABLE docs USING fts5(title, body)", 1, 2),
            ("INSERT INTO docs (title, body) VALUES ('a', 'hello world'), ('b', 'goodbye world'), ('c', 'hello again')", 0, 3),
            ("SELECT title FROM docs WHERE docs MATCH 'hello'", 2, 0),
            ("SELECT count(*) FROM docs", 3, 0),
            ("DELETE FROM docs WHERE title = 'b'", 3, 1),
            ("CREATE TABLE g (a INTEGER, b INTEGER GENERATED ALWAYS AS (a * 2) STORED)", 1, 2),
            ("INSERT INTO g (a) VALUES (1), (2)", 0, 2),
            ("SELECT * FROM g", 2, 0),
        ],
    )
    .await;
}

/// Runs each statement and checks its `meta.rows_read` and `meta.rows_written`.
async fn assert_counts(w: &TestWorker, expected: &[(&str, u64, u64)]) {
    for &(sql, read, written) in expected {
        let answer = call(w, "query", json!({ "sql": sql })).await;
        let counts = (
            &answer["meta"]["rows_read"],
            &answer["meta"]["rows_written"],
        );
        assert_eq!(counts, (&json!(read), &json!(written)), "{sql}: {answer}");
    }
}

#[tokio::test]
async fn d1_errors_are_cloudflares() {
    let w = TestWorker::start_in("d1_quotes", migrated_state(), &["--no-reload"]).await;
    assert_eq!(
        call(&w, "query", json!({"sql": "SELEC 1"})).await,
        error("D1_ERROR: near \"SELEC\": syntax error at offset 0: SQLITE_ERROR")
    );
    assert_eq!(
        call(&w, "query", json!({"sql": "SELECT * FROM missing"})).await,
        error("D1_ERROR: no such table: missing: SQLITE_ERROR")
    );
    assert_eq!(
        call(&w, "query", json!({"sql": "  "})).await,
        error("D1_ERROR: No SQL statements detected.")
    );
    // Each as a JavaScript worker under Miniflare 4.20260730 words it.
    for statement in [
        "CREATE TABLE c (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, n INTEGER CHECK (n >= 0), p INTEGER REFERENCES c(id))",
        "CREATE TABLE s (a INTEGER) STRICT",
        "INSERT INTO c (id, name, n) VALUES (1, 'a', 1)",
    ] {
        assert_eq!(
            call(&w, "query", json!({"sql": statement})).await["success"],
            true
        );
    }
    for (sql, message) in [
        (
            "INSERT INTO c (id, name, n) VALUES (1, 'z', 1)",
            "UNIQUE constraint failed: c.id: SQLITE_CONSTRAINT (extended: SQLITE_CONSTRAINT_PRIMARYKEY)",
        ),
        (
            "INSERT INTO c (id, name, n) VALUES (9, 'a', 1)",
            "UNIQUE constraint failed: c.name: SQLITE_CONSTRAINT (extended: SQLITE_CONSTRAINT_UNIQUE)",
        ),
        (
            "INSERT INTO c (id, name, n) VALUES (9, NULL, 1)",
            "NOT NULL constraint failed: c.name: SQLITE_CONSTRAINT (extended: SQLITE_CONSTRAINT_NOTNULL)",
        ),
        (
            "INSERT INTO c (id, name, n) VALUES (9, 'q', -1)",
            "CHECK constraint failed: n >= 0: SQLITE_CONSTRAINT (extended: SQLITE_CONSTRAINT_CHECK)",
        ),
        (
            "INSERT INTO c (id, name, n, p) VALUES (9, 'q', 1, 77)",
            "FOREIGN KEY constraint failed: SQLITE_CONSTRAINT (extended: SQLITE_CONSTRAINT_FOREIGNKEY)",
        ),
        (
            "INSERT INTO s VALUES ('x')",
            "cannot store TEXT value in INTEGER column s.a: SQLITE_CONSTRAINT (extended: SQLITE_CONSTRAINT_DATATYPE)",
        ),
        ("SELECT * FROM c WHERE", "incomplete input: SQLITE_ERROR"),
        (
            "SELECT nope FROM c",
            "no such column: nope at offset 7: SQLITE_ERROR",
        ),
        (
            "SELECT c.nope FROM c",
            "no such column: c.nope at offset 7: SQLITE_ERROR",
        ),
        (
            "SELECT name FROM c, c AS d",
            "ambiguous column name: name at offset 7: SQLITE_ERROR",
        ),
        (
            "SELECT nofunc(1)",
            "no such function: nofunc at offset 7: SQLITE_ERROR",
        ),
        (
            "SELECT abs(1, 2)",
            "wrong number of arguments to function abs() at offset 7: SQLITE_ERROR",
        ),
        (
            "SELECT * FROM c WHERE count(*) > 1",
            "misuse of aggregate function count() at offset 22: SQLITE_ERROR",
        ),
        (
            "INSERT INTO c (zz) VALUES (1)",
            "table c has no column named zz: SQLITE_ERROR",
        ),
        (
            "CREATE TABLE c (a)",
            "table c already exists at offset 13: SQLITE_ERROR",
        ),
        (
            "CREATE TABLE w (a, a)",
            "duplicate column name: a: SQLITE_ERROR",
        ),
        (
            "SELECT * FROM c LIMIT 'x'",
            "datatype mismatch: SQLITE_MISMATCH",
        ),
        ("SELECT json('{bad')", "malformed JSON: SQLITE_ERROR"),
    ] {
        assert_eq!(
            call(&w, "query", json!({"sql": sql})).await,
            error(&format!("D1_ERROR: {message}")),
            "{sql}"
        );
    }
    // A read after a write changes nothing (SQLite alone would repeat the
    // write's count).
    let meta = |answer: Value| {
        (
            answer["meta"]["changes"].clone(),
            answer["meta"]["rows_written"].clone(),
        )
    };
    assert_eq!(
        meta(call(&w, "query", json!({"sql": "UPDATE c SET n = 2"})).await),
        (json!(1), json!(1))
    );
    assert_eq!(
        meta(call(&w, "query", json!({"sql": "SELECT * FROM c"})).await),
        (json!(0), json!(0))
    );
    assert_eq!(
        call(
            &w,
            "query",
            json!({"sql": "SELECT ?; SELECT ?", "params": [1, 2]})
        )
        .await,
        error(
            "D1_ERROR: When executing multiple SQL statements in a single call, only the last statement can have parameters."
        )
    );
    assert_eq!(
        call(&w, "query", json!({"sql": "SELECT ?", "params": [1, 2]})).await,
        error("D1_ERROR: Wrong number of parameter bindings for SQL query.")
    );
    assert_eq!(
        call(
            &w,
            "query",
            json!({"mode": "first", "column": "nope", "sql": "SELECT author FROM quotes"})
        )
        .await,
        error("D1_COLUMN_NOTFOUND: Column not found (nope)")
    );
    assert_eq!(
        call(&w, "query", json!({"sql": "INSERT INTO quotes (author, text) VALUES ('x', ?)", "params": ["It is easier to ask forgiveness than it is to get permission."]})).await,
        error("D1_ERROR: UNIQUE constraint failed: quotes.text: SQLITE_CONSTRAINT (extended: SQLITE_CONSTRAINT_UNIQUE)")
    );
    // An integer beyond 2^53 becomes a JS BigInt, which D1 refuses.
    let big = call(
        &w,
        "query",
        json!({"sql": "SELECT ?", "params": [{"$int": "99999999999999999999"}]}),
    )
    .await;
    assert_eq!(
        big["message"],
        "Error: D1_TYPE_ERROR: Type 'bigint' not supported for value '99999999999999999999'"
    );
    let params: Vec<Value> = (0..101).map(|i| json!(i)).collect();
    let placeholders = vec!["?"; 101].join(", ");
    assert_eq!(
        call(
            &w,
            "query",
            json!({"sql": format!("SELECT {placeholders}"), "params": params})
        )
        .await,
        error("D1_ERROR: too many SQL variables: SQLITE_ERROR")
    );
    // The worker keeps serving.
    assert_eq!(
        call(
            &w,
            "query",
            json!({"mode": "first", "column": "n", "sql": "SELECT 1 AS n"})
        )
        .await,
        json!(1)
    );
}

#[tokio::test]
async fn d1_batch_exec_dump_and_sessions() {
    let w = TestWorker::start_in("d1_quotes", migrated_state(), &["--no-reload"]).await;
    let batch = call(
        &w,
        "batch",
        json!({"statements": [
            {"sql": "INSERT INTO quotes (author, text) VALUES (?, ?)", "params": ["A", "first"]},
            {"sql": "SELECT count(*) AS n FROM quotes"}
        ]}),
    )
    .await;
    assert_eq!(batch.as_array().unwrap().len(), 2);
    assert_eq!(batch[0]["meta"]["changes"], 1);
    assert_eq!(batch[1]["results"], json!([{"n": 3}]));

    // A failure anywhere rolls the whole batch back.
    let failed = call(
        &w,
        "batch",
        json!({"statements": [
            {"sql": "INSERT INTO quotes (author, text) VALUES ('B', 'second')"},
            {"sql": "INSERT INTO quotes (author, text) VALUES ('C', 'first')"}
        ]}),
    )
    .await;
    assert_eq!(
        failed,
        error(
            "D1_ERROR: UNIQUE constraint failed: quotes.text: SQLITE_CONSTRAINT (extended: SQLITE_CONSTRAINT_UNIQUE)"
        )
    );
    assert_eq!(
        call(&w, "query", json!({"mode": "first", "column": "n", "sql": "SELECT count(*) AS n FROM quotes WHERE author = 'B'"})).await,
        json!(0)
    );

    let exec = call(&w, "exec", json!({"sql": "CREATE TABLE tags (name TEXT);\nINSERT INTO tags VALUES ('a');\nINSERT INTO tags VALUES ('b');"})).await;
    assert_eq!(exec["count"], 3);
    assert!(exec["duration"].is_number());
    assert_eq!(
        call(
            &w,
            "exec",
            json!({"sql": "INSERT INTO tags VALUES ('c');\nINSERTZ INTO tags;"})
        )
        .await,
        error(
            "D1_EXEC_ERROR: Error in line 2: INSERTZ INTO tags;: near \"INSERTZ\": syntax error at offset 0: SQLITE_ERROR"
        )
    );

    let dump = call(&w, "dump", json!({})).await;
    assert_eq!(dump["header"], "SQLite format 3");
    assert!(dump["bytes"].as_u64().unwrap() >= 4096);

    let session = call(&w, "session", json!({})).await;
    assert_eq!(session["before"], Value::Null);
    assert!(session["after"].as_str().unwrap().len() > 10);
}

#[tokio::test]
async fn d1_commit_survives_kill_9_and_file_is_readable() {
    let w = TestWorker::start_in("d1_quotes", migrated_state(), &["--no-reload"]).await;
    let run = call(&w, "query", json!({"mode": "run", "sql": "INSERT INTO quotes (author, text) VALUES ('K', 'kill -9 proof')"})).await;
    assert_eq!(run["meta"]["changes"], 1);
    let state = w.kill_keep_state().await;
    // The file is a plain SQLite database under a readable name.
    let dir = fixture("d1_quotes");
    let (code, stdout, stderr) = pyflare(&[
        "d1",
        "execute",
        "quotes",
        "--dir",
        dir.to_str().unwrap(),
        "--persist-to",
        state.path().to_str().unwrap(),
        "--json",
        "--command",
        "SELECT author FROM quotes WHERE text = 'kill -9 proof'",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let out: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(out[0]["results"], json!([{"author": "K"}]));
    assert!(state.path().join("d1/quotes.sqlite3").is_file());
    let w = TestWorker::start_in("d1_quotes", state, &["--no-reload"]).await;
    assert_eq!(
        call(&w, "query", json!({"mode": "first", "column": "author", "sql": "SELECT author FROM quotes WHERE text = 'kill -9 proof'"})).await,
        json!("K")
    );
}

#[test]
fn d1_migrations_cli_create_list_apply() {
    let project = crate::util::copy_fixture("d1_quotes");
    let state = tempfile::tempdir().unwrap();
    let dir = project.path().to_str().unwrap();
    let state_dir = state.path().to_str().unwrap();
    let d1 = |args: &[&str]| {
        let mut all = vec!["d1"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--dir", dir, "--persist-to", state_dir]);
        pyflare(&all)
    };
    assert_eq!(
        d1(&["migrations", "list", "quotes"]),
        (
            0,
            "Migrations to be applied:\n  0000_create_quotes.sql\n  0001_seed.sql\n".into(),
            String::new()
        )
    );
    assert_eq!(
        d1(&["migrations", "apply", "quotes"]),
        (
            0,
            "Migrations to be applied:\n  0000_create_quotes.sql\n  0001_seed.sql\n✅ 0000_create_quotes.sql\n✅ 0001_seed.sql\n✅ Applied 2 migrations.\n".into(),
            String::new()
        )
    );
    // Applying again does nothing; the binding name works too.
    assert_eq!(
        d1(&["migrations", "apply", "DB"]).1,
        "✅ No migrations to apply!\n"
    );

    // create numbers from the files present.
    let (code, stdout, _) = d1(&["migrations", "create", "quotes", "add tags"]);
    assert_eq!(code, 0);
    assert!(
        stdout.starts_with("✅ Successfully created Migration '0002_add_tags.sql'!\n"),
        "{stdout}"
    );
    let created = project.path().join("migrations/0002_add_tags.sql");
    let text = std::fs::read_to_string(&created).unwrap();
    assert!(
        text.starts_with("-- Migration number: 0002 \t 20"),
        "{text:?}"
    );

    // A failing migration is rolled back and stops the run.
    std::fs::write(
        &created,
        "CREATE TABLE tags (name TEXT);\nINSERT INTO nope VALUES (1);\n",
    )
    .unwrap();
    let (code, stdout, stderr) = d1(&["migrations", "apply", "quotes"]);
    assert_eq!(code, 1);
    assert_eq!(
        stdout,
        "Migrations to be applied:\n  0002_add_tags.sql\n❌ 0002_add_tags.sql\n"
    );
    assert!(
        stderr.starts_with("pyflare: error: migration 0002_add_tags.sql failed and was rolled back: D1_ERROR: no such table: nope: SQLITE_ERROR\nhint: "),
        "{stderr}"
    );
    let (_, stdout, _) = d1(&[
        "execute",
        "quotes",
        "--json",
        "--command",
        "SELECT name FROM sqlite_master WHERE name = 'tags'",
    ]);
    assert_eq!(
        serde_json::from_str::<Value>(&stdout).unwrap()[0]["results"],
        json!([])
    );
    assert_eq!(
        d1(&["migrations", "list", "quotes"]).1,
        "Migrations to be applied:\n  0002_add_tags.sql\n"
    );
}
