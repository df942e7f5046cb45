//! Splitting SQL into statements and counting their parameters, as SQLite
//! reads them: quotes, comments, and trigger bodies (`BEGIN ... END`, with
//! `CASE ... END` inside) are respected.

/// One statement of a SQL text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The statement's text, without the trailing `;`.
    pub sql: String,
    /// Parameters it needs (SQLite numbering: `?` is one more than the
    /// highest so far, `?NNN` is NNN).
    pub parameters: usize,
    /// 1-based line where the statement starts.
    pub line: usize,
}

/// What a SQL text holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Split {
    /// Whitespace only.
    Empty,
    /// Comments only.
    OnlyComments,
    /// One or more statements.
    Statements(Vec<Statement>),
}

/// Splits `sql` into statements.
pub fn split(sql: &str) -> Split {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut current = String::new();
    let mut has_code = false;
    let mut saw_comment = false;
    let mut word = String::new();
    let mut words: Vec<String> = Vec::new();
    let mut depth = 0usize;
    let mut parameters = 0usize;
    let mut line = 1usize;
    let mut start_line = 1usize;
    let mut i = 0;

    let end_word = |word: &mut String, words: &mut Vec<String>, depth: &mut usize| {
        if word.is_empty() {
            return;
        }
        let upper = word.to_ascii_uppercase();
        let is_trigger = words.len() >= 2
            && words[0] == "CREATE"
            && (words[1] == "TRIGGER" || words.get(2).is_some_and(|w| w == "TRIGGER"));
        if is_trigger {
            match upper.as_str() {
                "BEGIN" | "CASE" => *depth += 1,
                "END" => *depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        if words.len() < 3 {
            words.push(upper);
        }
        word.clear();
    };

    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
        }
        match c {
            '\'' | '"' | '`' | '[' => {
                end_word(&mut word, &mut words, &mut depth);
                let close = if c == '[' { ']' } else { c };
                if !has_code {
                    start_line = line;
                }
                has_code = true;
                current.push(c);
                i += 1;
                while i < chars.len() {
                    let d = chars[i];
                    if d == '\n' {
                        line += 1;
                    }
                    current.push(d);
                    i += 1;
                    if d == close {
                        // A doubled quote is an escaped quote.
                        if close != ']' && i < chars.len() && chars[i] == close {
                            current.push(close);
                            i += 1;
                            continue;
                        }
                        break;
                    }
                }
                continue;
            }
            '-' if chars.get(i + 1) == Some(&'-') => {
                end_word(&mut word, &mut words, &mut depth);
                saw_comment = true;
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            '/' if chars.get(i + 1) == Some(&'*') => {
                end_word(&mut word, &mut words, &mut depth);
                saw_comment = true;
                i += 2;
                while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                    if chars[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
                i += 2;
                current.push(' ');
                continue;
            }
            ';' => {
                end_word(&mut word, &mut words, &mut depth);
                if depth == 0 {
                    if has_code {
                        out.push(Statement {
                            sql: current.trim().to_owned(),
                            parameters,
                            line: start_line,
                        });
                    }
                    current.clear();
                    has_code = false;
                    words.clear();
                    parameters = 0;
                    i += 1;
                    continue;
                }
                current.push(c);
            }
            '?' => {
                end_word(&mut word, &mut words, &mut depth);
                current.push(c);
                if !has_code {
                    start_line = line;
                }
                has_code = true;
                let mut digits = String::new();
                while i + 1 < chars.len() && chars[i + 1].is_ascii_digit() {
                    i += 1;
                    digits.push(chars[i]);
                    current.push(chars[i]);
                }
                parameters = match digits.parse::<usize>() {
                    Ok(n) => parameters.max(n),
                    Err(_) => parameters + 1,
                };
            }
            c if c.is_alphanumeric() || c == '_' => {
                if !has_code {
                    start_line = line;
                }
                has_code = true;
                word.push(c);
                current.push(c);
            }
            c => {
                end_word(&mut word, &mut words, &mut depth);
                if !c.is_whitespace() {
                    if !has_code {
                        start_line = line;
                    }
                    has_code = true;
                }
                current.push(c);
            }
        }
        i += 1;
    }
    end_word(&mut word, &mut words, &mut depth);
    if has_code {
        out.push(Statement {
            sql: current.trim().to_owned(),
            parameters,
            line: start_line,
        });
    }
    if !out.is_empty() {
        Split::Statements(out)
    } else if saw_comment {
        Split::OnlyComments
    } else {
        Split::Empty
    }
}

/// Whether `sql` would make SQLite read or write a file other than the
/// database's own: `ATTACH`, `VACUUM ... INTO`, or a pragma that moves
/// SQLite's files (`temp_store_directory`, `data_store_directory`). D1
/// refuses these with `not authorized`. Every statement in the text is
/// checked, after `;` wherever it appears (even where [`split`] would see a
/// trigger body), so no way of grouping statements hides one.
///
/// Not emulated: D1 decides this in SQLite's authorizer; pyflare reads the
/// statement's own words (an authorizer would need `unsafe`, which the
/// workspace forbids). A column or table named `attach` used as the first
/// word of a statement cannot occur, so nothing valid is refused.
pub fn reaches_other_files(sql: &str) -> bool {
    let words = words(sql);
    let mut at_start = true;
    let mut i = 0;
    while i < words.len() {
        let word = words[i].as_str();
        if word == ";" {
            at_start = true;
            i += 1;
            continue;
        }
        if at_start {
            let rest = || words[i..].iter().take_while(|w| *w != ";");
            let moves_files = |w: &String| {
                let name = w.trim_start_matches('\u{0}');
                name == "TEMP_STORE_DIRECTORY" || name == "DATA_STORE_DIRECTORY"
            };
            match word {
                "ATTACH" => return true,
                "VACUUM" if rest().any(|w| w == "INTO") => return true,
                "PRAGMA" if rest().any(moves_files) => return true,
                // `EXPLAIN` describes a statement, but SQLite carries out a
                // pragma's assignment while preparing it: the statement
                // behind it is checked as if it stood alone.
                "EXPLAIN" | "QUERY" | "PLAN" => {
                    i += 1;
                    continue;
                }
                _ => {}
            }
            at_start = false;
        }
        i += 1;
    }
    false
}

/// Whether the statement `sql` changes rows (`INSERT`, `UPDATE`, `DELETE`,
/// `REPLACE`, also behind a `WITH` clause), so that SQLite's change count
/// is its own: after any other statement SQLite still reports the last
/// write's count, where D1 reports 0.
pub fn changes_rows(sql: &str) -> bool {
    let words = words(sql);
    let is_write = |i: usize| match words[i].as_str() {
        "INSERT" | "UPDATE" | "DELETE" => true,
        "REPLACE" => words.get(i + 1).is_some_and(|w| w == "INTO"),
        _ => false,
    };
    match words.first().map(String::as_str) {
        Some("WITH") => (1..words.len()).any(is_write),
        Some(_) => is_write(0),
        None => false,
    }
}

/// The upper-cased words of `sql` and its `;`s, skipping comments; a quoted
/// string or identifier is its dequoted text behind a NUL, so it is never
/// taken for a keyword.
fn words(sql: &str) -> Vec<String> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut word = String::new();
    let mut i = 0;
    let flush = |word: &mut String, out: &mut Vec<String>| {
        if !word.is_empty() {
            out.push(word.to_ascii_uppercase());
            word.clear();
        }
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\'' | '"' | '`' | '[' => {
                flush(&mut word, &mut out);
                let close = if c == '[' { ']' } else { c };
                // A quoted name or string: its text, marked so that it is
                // never taken for a keyword (SQLite dequotes a pragma's
                // name, so `PRAGMA "temp_store_directory"` is that pragma).
                let mut text = String::from("\u{0}");
                i += 1;
                while i < chars.len() {
                    if chars[i] == close {
                        if close != ']' && chars.get(i + 1) == Some(&close) {
                            text.push(close);
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    text.push(chars[i]);
                    i += 1;
                }
                out.push(text.to_ascii_uppercase());
            }
            '-' if chars.get(i + 1) == Some(&'-') => {
                flush(&mut word, &mut out);
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '/' if chars.get(i + 1) == Some(&'*') => {
                flush(&mut word, &mut out);
                i += 2;
                while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                    i += 1;
                }
                i += 1;
            }
            ';' => {
                flush(&mut word, &mut out);
                out.push(";".into());
            }
            c if c.is_alphanumeric() || c == '_' || c == '$' => word.push(c),
            _ => flush(&mut word, &mut out),
        }
        i += 1;
    }
    flush(&mut word, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statements(sql: &str) -> Vec<(String, usize)> {
        match split(sql) {
            Split::Statements(list) => list.into_iter().map(|s| (s.sql, s.parameters)).collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn splits_on_semicolons_outside_quotes_and_comments() {
        assert_eq!(
            statements("SELECT 'a;b' AS \"x;y\"; -- c;d\nSELECT 2 /* ; */;"),
            vec![
                ("SELECT 'a;b' AS \"x;y\"".into(), 0),
                ("SELECT 2".into(), 0)
            ]
        );
        assert_eq!(
            statements("SELECT 'it''s;'"),
            vec![("SELECT 'it''s;'".into(), 0)]
        );
    }

    #[test]
    fn counts_parameters_as_sqlite_numbers_them() {
        assert_eq!(statements("SELECT ?, ?")[0].1, 2);
        assert_eq!(statements("SELECT ?3, ?1")[0].1, 3);
        assert_eq!(statements("SELECT ?2, ?")[0].1, 3);
        assert_eq!(statements("SELECT '?'")[0].1, 0);
    }

    #[test]
    fn trigger_bodies_stay_whole() {
        let sql = "CREATE TRIGGER t AFTER INSERT ON a BEGIN UPDATE b SET n = CASE WHEN 1 THEN 2 END; DELETE FROM c; END; SELECT 1";
        let list = statements(sql);
        assert_eq!(list.len(), 2);
        assert!(list[0].0.ends_with("DELETE FROM c; END"));
    }

    #[test]
    fn empty_and_comment_only_texts() {
        assert_eq!(split("  \n "), Split::Empty);
        assert_eq!(split("-- nothing\n/* here */"), Split::OnlyComments);
    }

    #[test]
    fn statements_that_reach_other_files_are_found_wherever_they_hide() {
        for sql in [
            "ATTACH DATABASE '/tmp/x.db' AS x",
            "attach '/tmp/x.db' as x",
            "/* c */ -- d\n ATTACH '/tmp/x.db' AS x",
            "SELECT 1; ATTACH '/tmp/x.db' AS x",
            "VACUUM INTO '/tmp/copy.db'",
            "vacuum main into '/tmp/copy.db'",
            "PRAGMA temp_store_directory = '/tmp'",
            "PRAGMA main.data_store_directory='/tmp'",
            "PRAGMA \"temp_store_directory\" = '/tmp'",
            "PRAGMA 'temp_store_directory'='/tmp'",
            "PRAGMA main.\"data_store_directory\"='/tmp'",
            "EXPLAIN PRAGMA temp_store_directory='/tmp'",
            "EXPLAIN QUERY PLAN ATTACH 'x' AS y",
            "CREATE TRIGGER t AFTER INSERT ON a BEGIN SELECT CASE WHEN 1 THEN 2 END; END; ATTACH 'x' AS y",
            "CREATE TRIGGER t AFTER INSERT ON a BEGIN SELECT 1; ATTACH 'x' AS y; END",
        ] {
            assert!(reaches_other_files(sql), "{sql}");
        }
        for sql in [
            "SELECT 'ATTACH' AS attach",
            "SELECT * FROM t -- ATTACH 'x' AS y",
            "VACUUM",
            "CREATE TABLE vacuum_into (attach TEXT)",
            "INSERT INTO \"attach\" VALUES ('VACUUM INTO x')",
            "EXPLAIN SELECT 1",
        ] {
            assert!(!reaches_other_files(sql), "{sql}");
        }
    }

    #[test]
    fn changes_rows_knows_writes_from_reads() {
        for sql in [
            "INSERT INTO t VALUES (1)",
            "update t set a = 1",
            "DELETE FROM t",
            "REPLACE INTO t VALUES (1)",
            "WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x",
            "/* c */ insert into t values (1) returning *",
        ] {
            assert!(changes_rows(sql), "{sql}");
        }
        for sql in [
            "SELECT * FROM t",
            "WITH x AS (SELECT replace(a, 'b', 'c') FROM t) SELECT * FROM x",
            "SELECT 'INSERT'",
            "CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE u SET a = 1; END",
            "PRAGMA table_info(t)",
            "",
        ] {
            assert!(!changes_rows(sql), "{sql}");
        }
    }
}
