//! JSON with comments (`wrangler.jsonc`): comments and trailing commas are
//! blanked out with spaces so that serde_json's line and column numbers still
//! point into the user's file.

/// Returns `text` with `//` and `/* */` comments and trailing commas replaced
/// by spaces (newlines kept).
pub(crate) fn strip(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = bytes.to_vec();
    let mut i = 0;
    let mut in_string = false;
    // Index in `out` of the last comma seen outside a string, if only
    // whitespace or comments follow it so far.
    let mut pending_comma: Option<usize> = None;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            if b == b'\\' {
                i += 2;
                continue;
            }
            if b == b'"' {
                in_string = false;
            }
            i += 1;
            continue;
        }
        match b {
            b'"' => {
                in_string = true;
                pending_comma = None;
                i += 1;
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    out[i] = b' ';
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                out[i] = b' ';
                out[i + 1] = b' ';
                i += 2;
                while i < bytes.len() && !(bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/')) {
                    if bytes[i] != b'\n' {
                        out[i] = b' ';
                    }
                    i += 1;
                }
                if i < bytes.len() {
                    out[i] = b' ';
                    out[i + 1] = b' ';
                    i += 2;
                }
            }
            b',' => {
                pending_comma = Some(i);
                i += 1;
            }
            b'}' | b']' => {
                if let Some(comma) = pending_comma.take() {
                    out[comma] = b' ';
                }
                i += 1;
            }
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            _ => {
                pending_comma = None;
                i += 1;
            }
        }
    }
    // Only ASCII bytes were replaced, by ASCII spaces, so this stays UTF-8.
    String::from_utf8(out).expect("blanking ASCII keeps UTF-8 valid")
}

#[cfg(test)]
mod tests {
    use super::strip;

    #[test]
    fn comments_and_trailing_commas_become_spaces() {
        let text = "{\n  // name\n  \"a\": \"x//y\", /* b */\n  \"b\": [1, 2,],\n}\n";
        let stripped = strip(text);
        assert_eq!(stripped.len(), text.len());
        let value: serde_json::Value = serde_json::from_str(&stripped).unwrap();
        assert_eq!(value["a"], "x//y");
        assert_eq!(value["b"], serde_json::json!([1, 2]));
        assert_eq!(stripped.lines().count(), text.lines().count());
    }

    #[test]
    fn escaped_quotes_stay_inside_strings() {
        let text = r#"{"a": "say \"hi\" // not a comment"}"#;
        let value: serde_json::Value = serde_json::from_str(&strip(text)).unwrap();
        assert_eq!(value["a"], "say \"hi\" // not a comment");
    }
}
