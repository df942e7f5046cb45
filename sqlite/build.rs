//! Compiles SQLite again from the source `libsqlite3-sys` bundles, with the
//! row counters Cloudflare's D1 reports as `meta.rows_read` and
//! `meta.rows_written`.
//!
//! D1 counts with a patched SQLite: the bytecode engine bumps a counter where
//! a cursor lands on a row (a seek, a rewind, each step of a scan, a count)
//! and where a row or index entry is written (an insert, a delete, a clear).
//! This script adds the same counts to the copy of SQLite that sqlx already
//! builds (the source is found through `DEP_SQLITE3_INCLUDE`), kept per
//! connection and read through `pyflare_rows_take`. The compiled object
//! defines the whole SQLite API. A program that calls `take_counts` (or
//! `take_counts_and_size`) references `pyflare_rows_take`, so the linker
//! takes this object, and with it every SQLite function, before it reaches
//! `libsqlite3-sys`'s own copy (later on the link line, this crate
//! depending on it): that copy is then never linked. Were both ever linked,
//! the duplicate symbols would fail the link rather than mix them. A
//! program that calls neither may link the stock copy, which is fine: it
//! reads no count.
//!
//! Each change is found by the opcode (or function) it belongs to and a
//! line inside it; a line not found exactly where expected stops the build,
//! so a newer SQLite cannot be counted wrong in silence.

use std::env;
use std::fs;
use std::path::PathBuf;

/// Where the counters go: after this line of `struct sqlite3`.
const CONNECTION_FIELD: &str =
    "  u32 mDbFlags;                 /* flags recording internal state */";

/// Counts a row read or written by the statement the caller stepped, as
/// workerd counts per statement: not by the statements SQLite steps on its
/// own while that one runs (FTS5 and R-tree on their shadow tables and
/// blobs, a table's generated columns, VACUUM), nor by its reading of the
/// schema (`init.busy`). A trigger runs inside the statement and counts.
const COUNTING_MACROS: &str = "
#define PYFLARE_COUNTING (p==db->pyflareStatement && !db->init.busy)
#define PYFLARE_ROWS_READ(N) do{ if( PYFLARE_COUNTING ) db->pyflareRowsRead += (N); }while(0)
#define PYFLARE_ROWS_WRITTEN(N) do{ if( PYFLARE_COUNTING ) db->pyflareRowsWritten += (N); }while(0)
";

/// Where a count is added: the opcode's `case` line (or the function's
/// first line), then lines to find one after the other inside it; the
/// count goes before or after the last one.
struct Count {
    within: &'static str,
    path: &'static [&'static str],
    after: bool,
    code: &'static str,
}

const COUNTS: &[Count] = &[
    // The statement a caller steps (not one SQLite steps inside it) is the
    // one whose rows count, and its first step starts them from zero: the
    // counts taken are those of the last statement run, as D1 reports them,
    // with no call to clear what came before it.
    Count {
        within: "static int sqlite3Step(Vdbe *p){",
        path: &["db->nVdbeExec++;"],
        after: false,
        code: "if( db->nVdbeExec==0 ){ \
               if( p->pc==0 ){ db->pyflareRowsRead = 0; db->pyflareRowsWritten = 0; } \
               db->pyflareStatement = p; }",
    },
    // `SELECT count(*)` reads every row it counts.
    Count {
        within: "case OP_Count: {",
        path: &["rc = sqlite3BtreeCount(db, pCrsr, &nEntry);"],
        after: true,
        code: "PYFLARE_ROWS_READ(nEntry);",
    },
    // A seek on an index or a table's key: counted where it lands, unless an
    // equality seek found no entry.
    Count {
        within: "case OP_SeekGT: {",
        path: &["if( eqOnly && r.eqSeen==0 ){", "#ifdef SQLITE_TEST"],
        after: false,
        code: "PYFLARE_ROWS_READ(1);",
    },
    // A lookup by rowid: counted found or not.
    Count {
        within: "case OP_NotExists:",
        path: &["pC->seekResult = res;"],
        after: true,
        code: "PYFLARE_ROWS_READ(1);",
    },
    Count {
        within: "case OP_Last: {",
        path: &["if( rc ) goto abort_due_to_error;"],
        after: true,
        code: "PYFLARE_ROWS_READ(1);",
    },
    // The start of a scan, empty table or not.
    Count {
        within: "case OP_Rewind: {",
        path: &["pC->nullRow = (u8)res;"],
        after: true,
        code: "PYFLARE_ROWS_READ(1);",
    },
    // Each step of a scan that lands on a row.
    Count {
        within: "case OP_Next:",
        path: &["p->aCounter[pOp->p5]++;"],
        after: true,
        code: "PYFLARE_ROWS_READ(1);",
    },
    Count {
        within: "case OP_VNext: {",
        path: &[
            "rc = pModule->xNext(pCur->uc.pVCur);",
            "if( rc ) goto abort_due_to_error;",
        ],
        after: true,
        code: "PYFLARE_ROWS_READ(1);",
    },
    // Every row written to a table, and every entry written to an index;
    // not those of a statement's own temporary tables (a sort, a DISTINCT).
    Count {
        within: "case OP_Insert: {",
        path: &["if( pOp->p5 & OPFLAG_NCHANGE ){"],
        after: false,
        code: "if( !pC->isEphemeral ) PYFLARE_ROWS_WRITTEN(1);",
    },
    Count {
        within: "case OP_IdxInsert: {",
        path: &["if( pOp->p5 & OPFLAG_NCHANGE ) p->nChange++;"],
        after: true,
        code: "if( !pC->isEphemeral ) PYFLARE_ROWS_WRITTEN(1);",
    },
    // A deleted row the statement reports as changed (index entries and the
    // old row of an UPDATE are not counted).
    Count {
        within: "case OP_Delete: {",
        path: &["if( opflags & OPFLAG_NCHANGE ){"],
        after: true,
        code: "if( !pC->isEphemeral ) PYFLARE_ROWS_WRITTEN(1);",
    },
    // `DELETE FROM t` with no WHERE: the rows the table held.
    Count {
        within: "case OP_Clear: {",
        path: &["p->nChange += nChange;"],
        after: true,
        code: "PYFLARE_ROWS_WRITTEN(nChange);",
    },
    Count {
        within: "case OP_VUpdate: {",
        path: &["p->nChange++;"],
        after: false,
        code: "PYFLARE_ROWS_WRITTEN(1);",
    },
];

/// Reads and clears a connection's counts, and gives the size of its main
/// database (`page_count * page_size`, what D1 reports as `size_after`), or
/// -1 if SQLite cannot tell it; appended to the source. The caller holds
/// the connection (sqlx opens it without SQLite's own mutex). Counts are
/// taken before the size: reading the page count is a statement of its
/// own, and starts the counts from zero.
const TAKE_FUNCTION: &str = "
SQLITE_API void pyflare_rows_take(sqlite3 *db, sqlite3_uint64 *pRead, sqlite3_uint64 *pWritten){
  *pRead = db->pyflareRowsRead;
  *pWritten = db->pyflareRowsWritten;
  db->pyflareRowsRead = 0;
  db->pyflareRowsWritten = 0;
}
SQLITE_API sqlite3_int64 pyflare_database_size(sqlite3 *db){
  sqlite3_stmt *pStmt = 0;
  sqlite3_int64 size = -1;
  if( sqlite3_prepare_v2(db, \"PRAGMA main.page_count\", -1, &pStmt, 0)==SQLITE_OK
   && sqlite3_step(pStmt)==SQLITE_ROW ){
    size = sqlite3_column_int64(pStmt, 0) * sqlite3BtreeGetPageSize(db->aDb[0].pBt);
  }
  sqlite3_finalize(pStmt);
  db->pyflareRowsRead = 0;
  db->pyflareRowsWritten = 0;
  return size;
}
";

/// The options `libsqlite3-sys` 0.30.1 compiles its bundled SQLite with on
/// every target, for the features sqlx turns on (`bundled`,
/// `unlock_notify`): the copy linked must behave as the one sqlx was
/// written against. (Its `preupdate_hook` and `session` features are not
/// built in; turned on, their symbols would pull the other copy in too and
/// the link would fail on duplicate symbols.)
const DEFINES: &[&str] = &[
    "SQLITE_CORE",
    "SQLITE_DEFAULT_FOREIGN_KEYS=1",
    "SQLITE_ENABLE_API_ARMOR",
    "SQLITE_ENABLE_COLUMN_METADATA",
    "SQLITE_ENABLE_DBSTAT_VTAB",
    "SQLITE_ENABLE_FTS3",
    "SQLITE_ENABLE_FTS3_PARENTHESIS",
    "SQLITE_ENABLE_FTS5",
    "SQLITE_ENABLE_JSON1",
    "SQLITE_ENABLE_LOAD_EXTENSION=1",
    "SQLITE_ENABLE_MEMORY_MANAGEMENT",
    "SQLITE_ENABLE_RTREE",
    "SQLITE_ENABLE_STAT4",
    "SQLITE_SOUNDEX",
    "SQLITE_THREADSAFE=1",
    "SQLITE_USE_URI",
    "HAVE_USLEEP=1",
    "HAVE_ISNAN",
    "_POSIX_THREAD_SAFE_FUNCTIONS",
    "SQLITE_ENABLE_UNLOCK_NOTIFY",
];

fn main() {
    let include = PathBuf::from(
        env::var_os("DEP_SQLITE3_INCLUDE")
            .expect("libsqlite3-sys names its bundled source (feature `bundled`)"),
    );
    let source_path = include.join("sqlite3.c");
    println!("cargo:rerun-if-changed={}", source_path.display());
    println!("cargo:rerun-if-changed=build.rs");
    let source = fs::read_to_string(&source_path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", source_path.display()));

    let counted = add_counters(&source);
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let counted_path = out.join("sqlite3_counted.c");
    fs::write(&counted_path, counted).expect("cannot write the counted source");

    let mut build = cc::Build::new();
    build.file(&counted_path).include(&include).warnings(false);
    for define in DEFINES {
        build.flag(format!("-D{define}"));
    }
    for flag in target_and_environment_flags() {
        build.flag(flag);
    }
    build.compile("pyflare_sqlite3");
}

/// What `libsqlite3-sys` also takes from the target and from its
/// environment variables, so that the copy linked is built as it would be.
fn target_and_environment_flags() -> Vec<String> {
    let mut flags = Vec::new();
    match env::var("CARGO_CFG_TARGET_OS").as_deref() {
        Ok("windows") => {}
        Ok("android") => {
            flags.push("-DSQLITE_TEMP_STORE=3".to_owned());
            flags.push("-DHAVE_LOCALTIME_R".to_owned());
        }
        _ => flags.push("-DHAVE_LOCALTIME_R".to_owned()),
    }
    for limit in [
        "SQLITE_MAX_VARIABLE_NUMBER",
        "SQLITE_MAX_EXPR_DEPTH",
        "SQLITE_MAX_COLUMN",
    ] {
        println!("cargo:rerun-if-env-changed={limit}");
        if let Ok(value) = env::var(limit) {
            flags.push(format!("-D{limit}={value}"));
        }
    }
    println!("cargo:rerun-if-env-changed=LIBSQLITE3_FLAGS");
    if let Ok(extra) = env::var("LIBSQLITE3_FLAGS") {
        for flag in extra.split_whitespace() {
            if flag.starts_with("-D") || flag.starts_with("-U") {
                flags.push(flag.to_owned());
            } else if flag.starts_with("SQLITE_") {
                flags.push(format!("-D{flag}"));
            } else {
                panic!("LIBSQLITE3_FLAGS: `{flag}` is neither -D, -U nor SQLITE_...");
            }
        }
    }
    flags
}

/// The source with the counters in, or a panic naming the line not found.
fn add_counters(source: &str) -> String {
    let mut lines: Vec<String> = source.lines().map(str::to_owned).collect();

    let field = find_exactly_once(&lines, CONNECTION_FIELD, |line| line == CONNECTION_FIELD);
    lines.insert(
        field + 1,
        "  sqlite3_uint64 pyflareRowsRead;     /* pyflare: rows read, as D1 counts them */\n  \
         sqlite3_uint64 pyflareRowsWritten;  /* pyflare: rows written, as D1 counts them */\n  \
         void *pyflareStatement;             /* pyflare: the statement whose rows count */"
            .to_owned(),
    );

    // Inserted from the last place to the first, so that no insertion moves
    // a place still to be filled.
    let mut places: Vec<(usize, &Count)> = COUNTS
        .iter()
        .map(|count| (place(&lines, count), count))
        .collect();
    places.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
    for (at, count) in places {
        lines.insert(at, format!("  {}", count.code));
    }

    let engine = find_exactly_once(&lines, "sqlite3VdbeExec", |line| {
        line == "SQLITE_PRIVATE int sqlite3VdbeExec("
    });
    lines.insert(engine, COUNTING_MACROS.to_owned());

    let mut out = lines.join("\n");
    out.push('\n');
    out.push_str(TAKE_FUNCTION);
    out
}

/// The line index at which a count's code is inserted.
fn place(lines: &[String], count: &Count) -> usize {
    let mut at = find_exactly_once(lines, count.within, |line| line.starts_with(count.within));
    for wanted in count.path {
        let found = lines[at + 1..]
            .iter()
            .take_while(|line| !line.starts_with("case OP_"))
            .position(|line| line.trim() == *wanted);
        let Some(offset) = found else {
            panic!(
                "`{wanted}` not found in `{}` of the SQLite source",
                count.within
            );
        };
        at += 1 + offset;
    }
    if count.after { at + 1 } else { at }
}

/// The index of the one line that matches, or a panic.
fn find_exactly_once(lines: &[String], what: &str, matches: impl Fn(&str) -> bool) -> usize {
    let mut found = lines.iter().enumerate().filter(|(_, line)| matches(line));
    match (found.next(), found.next()) {
        (Some((at, _)), None) => at,
        (None, _) => panic!("`{what}` not found in the SQLite source"),
        (Some(_), Some(_)) => panic!("`{what}` found more than once in the SQLite source"),
    }
}
