//! Errors shown to people: `pyflare: error: ...` with a `hint:` line where
//! the fix is obvious.

use std::fmt;

/// An error with a suggested fix.
#[derive(Debug)]
pub struct Hinted {
    pub message: String,
    pub hint: String,
}

impl Hinted {
    pub fn new(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            hint: hint.into(),
        }
    }
}

impl fmt::Display for Hinted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Hinted {}

/// Renders an error chain for the terminal, with its hint if it has one.
pub fn render(error: &anyhow::Error) -> String {
    let mut out = format!("pyflare: error: {error}");
    for cause in error.chain().skip(1) {
        // Config errors already include their source's text.
        if error.downcast_ref::<crate::config::ConfigError>().is_none() {
            out.push_str(&format!("\n  caused by: {cause}"));
        }
    }
    let hint = error.chain().find_map(|e| {
        if let Some(h) = e.downcast_ref::<Hinted>() {
            return Some(h.hint.clone());
        }
        e.downcast_ref::<crate::config::ConfigError>()
            .and_then(|c| c.hint())
    });
    if let Some(hint) = hint {
        out.push_str(&format!("\nhint: {hint}"));
    }
    out
}
