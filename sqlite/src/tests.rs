use sqlx::{Connection, Executor, SqliteConnection};

use super::{RowCounts, take_counts, take_counts_and_size};

async fn counted(conn: &mut SqliteConnection, sql: &str) -> RowCounts {
    take_counts(conn).await.unwrap();
    conn.execute(sql).await.unwrap();
    take_counts(conn).await.unwrap()
}

/// Runs each statement and checks the rows it read and wrote.
async fn assert_counts(conn: &mut SqliteConnection, expected: &[(&str, u64, u64)]) {
    for &(sql, read, written) in expected {
        assert_eq!(
            counted(conn, sql).await,
            RowCounts { read, written },
            "{sql}"
        );
    }
}

#[tokio::test]
async fn counts_rows_as_d1_does() {
    let mut conn = SqliteConnection::connect("sqlite::memory:").await.unwrap();
    conn.execute(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT); CREATE INDEX t_name ON t(name)",
    )
    .await
    .unwrap();
    assert_counts(
        &mut conn,
        &[
            // A row and its index entry.
            ("INSERT INTO t (name) VALUES ('a')", 0, 2),
            ("INSERT INTO t (name) VALUES ('b'), ('c')", 0, 4),
            // A scan reads every row; a lookup by key one, found or not.
            ("SELECT * FROM t", 3, 0),
            ("SELECT * FROM t WHERE id = 99", 1, 0),
            // An index lookup that finds nothing reads nothing.
            ("SELECT * FROM t WHERE name = 'zz'", 0, 0),
            ("SELECT count(*) FROM t", 3, 0),
            ("DELETE FROM t", 0, 3),
        ],
    )
    .await;
    // Nothing is counted between statements.
    assert_eq!(take_counts(&mut conn).await.unwrap(), RowCounts::default());
}

#[tokio::test]
async fn reading_the_schema_again_is_not_counted() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("db.sqlite3").display()
    );
    let mut first = SqliteConnection::connect(&url).await.unwrap();
    let mut second = SqliteConnection::connect(&url).await.unwrap();
    first
        .execute("CREATE TABLE t (a); INSERT INTO t VALUES (1), (2)")
        .await
        .unwrap();
    second.execute("SELECT * FROM t").await.unwrap();
    // The first connection reads the changed schema (sqlite_master's rows)
    // before its next statement; only the statement's own rows count.
    second
        .execute("CREATE TABLE other (b); CREATE TABLE third (c)")
        .await
        .unwrap();
    assert_counts(&mut first, &[("SELECT * FROM t", 2, 0)]).await;
}

#[tokio::test]
async fn each_statement_starts_the_counts_from_zero() {
    let mut conn = SqliteConnection::connect("sqlite::memory:").await.unwrap();
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY); INSERT INTO t VALUES (1), (2), (3)")
        .await
        .unwrap();
    conn.execute("SELECT * FROM t").await.unwrap();
    // Not the scan's 3 reads, nor the inserts' 3 writes before it.
    conn.execute("SELECT * FROM t WHERE id = 2").await.unwrap();
    assert_eq!(
        take_counts(&mut conn).await.unwrap(),
        RowCounts {
            read: 1,
            written: 0
        }
    );
}

#[tokio::test]
async fn the_size_comes_with_the_counts() {
    let mut conn = SqliteConnection::connect("sqlite::memory:").await.unwrap();
    conn.execute("CREATE TABLE t (v TEXT); INSERT INTO t VALUES (zeroblob(20000))")
        .await
        .unwrap();
    let (counts, size) = take_counts_and_size(&mut conn).await.unwrap();
    // The insert's counts, not those of reading the page count.
    assert_eq!(
        counts,
        RowCounts {
            read: 0,
            written: 1
        }
    );
    // Reading the size left no count behind.
    assert_eq!(take_counts(&mut conn).await.unwrap(), RowCounts::default());
    let (pages, page_size): (i64, i64) =
        sqlx::query_as("SELECT page_count, page_size FROM pragma_page_count(), pragma_page_size()")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(pages > 4, "{pages} pages");
    assert_eq!(size, Some((pages * page_size) as u64));
}
