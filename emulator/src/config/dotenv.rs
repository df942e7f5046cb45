//! `.dev.vars` and `.env` files: dotenv syntax as wrangler reads it
//! (`KEY=value`, `KEY="value"`, `export KEY=value`, `#` comments).

use super::error::ConfigError;
use std::path::Path;

/// Parses one dotenv file into ordered pairs.
pub(crate) fn parse(path: &Path, text: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((index, raw)) = lines.next() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err(ConfigError::DotEnv {
                file: path.to_path_buf(),
                line: index + 1,
                message: "expected KEY=value".into(),
            });
        };
        let key = key.trim();
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
        {
            return Err(ConfigError::DotEnv {
                file: path.to_path_buf(),
                line: index + 1,
                message: format!("invalid variable name `{key}`"),
            });
        }
        let value = value.trim();
        let value = match value.chars().next() {
            Some(quote @ ('"' | '\'' | '`')) => {
                // Quoted values may span lines; double quotes expand \n.
                let mut body = value[1..].to_owned();
                while !body.ends_with(quote) {
                    match lines.next() {
                        Some((_, next)) => {
                            body.push('\n');
                            body.push_str(next);
                        }
                        None => {
                            return Err(ConfigError::DotEnv {
                                file: path.to_path_buf(),
                                line: index + 1,
                                message: format!("unterminated {quote} quote in `{key}`"),
                            });
                        }
                    }
                }
                body.pop();
                if quote == '"' {
                    body.replace("\\n", "\n")
                } else {
                    body
                }
            }
            _ => match value.find(" #") {
                Some(at) => value[..at].trim_end().to_owned(),
                None => value.to_owned(),
            },
        };
        out.push((key.to_owned(), value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::parse;
    use std::path::Path;

    #[test]
    fn dotenv_values_quotes_and_comments() {
        let text = "# secrets\nA=1\nexport B = two words # note\nC=\"x\\ny\"\nD='it''s'\nE=\"multi\nline\"\n";
        let pairs = parse(Path::new(".dev.vars"), text).unwrap();
        let pairs: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            pairs,
            vec![
                ("A", "1"),
                ("B", "two words"),
                ("C", "x\ny"),
                ("D", "it''s"),
                ("E", "multi\nline")
            ]
        );
    }

    #[test]
    fn dotenv_line_without_equals_names_the_line() {
        let err = parse(Path::new(".dev.vars"), "A=1\noops\n").unwrap_err();
        assert_eq!(err.to_string(), ".dev.vars:2: expected KEY=value");
    }
}
