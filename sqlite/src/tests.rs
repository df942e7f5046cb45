use sqlx::{Connection, Executor, SqliteConnection};

use super::{RowCounts, take_counts};

async fn counted(conn: &mut SqliteConnection, sql: &str) -> RowCounts {
    take_counts(conn).await.unwrap();
    conn.execute(sql).await.unwrap();
    take_counts(conn).await.unwrap()
}

fn rows(read: u64, written: u64) -> RowCounts {
    RowCounts { read, written }
}

#[tokio::test]
async fn counts_rows_as_d1_does() {
    let mut conn = SqliteConnection::connect("sqlite::memory:").await.unwrap();
    conn.execute(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT); CREATE INDEX t_name ON t(name)",
    )
    .await
    .unwrap();
    // A row and its index entry.
    assert_eq!(
        counted(&mut conn, "INSERT INTO t (name) VALUES ('a')").await,
        rows(0, 2)
    );
    assert_eq!(
        counted(&mut conn, "INSERT INTO t (name) VALUES ('b'), ('c')").await,
        rows(0, 4)
    );
    // A scan reads every row; a lookup by key one, found or not.
    assert_eq!(counted(&mut conn, "SELECT * FROM t").await, rows(3, 0));
    assert_eq!(
        counted(&mut conn, "SELECT * FROM t WHERE id = 99").await,
        rows(1, 0)
    );
    // An index lookup that finds nothing reads nothing.
    assert_eq!(
        counted(&mut conn, "SELECT * FROM t WHERE name = 'zz'").await,
        rows(0, 0)
    );
    assert_eq!(
        counted(&mut conn, "SELECT count(*) FROM t").await,
        rows(3, 0)
    );
    assert_eq!(counted(&mut conn, "DELETE FROM t").await, rows(0, 3));
    // Nothing is counted between statements.
    assert_eq!(take_counts(&mut conn).await.unwrap(), rows(0, 0));
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
    assert_eq!(counted(&mut first, "SELECT * FROM t").await, rows(2, 0));
}
