//! What `pyflare dev` prints: one line per request, the worker's own output
//! (`print()` and console), and pyflare's notices. Internal diagnostics go
//! through `tracing` (`RUST_LOG=pyflare=debug`).

use crate::host::protocol::LogLevel;
use std::io::Write;
use std::time::Duration;

/// One line per request: method, path, status and duration.
pub fn request(method: &str, path: &str, status: u16, reason: &str, elapsed: Duration) {
    let ms = elapsed.as_secs_f64() * 1000.0;
    line_out(&format!(
        "[pyflare] {method} {path} {status} {reason} ({ms:.0}ms)"
    ));
}

/// A line the worker printed.
pub fn worker(level: LogLevel, message: &str) {
    match level {
        LogLevel::Debug | LogLevel::Info => line_out(message),
        LogLevel::Warn | LogLevel::Error => line_err(message),
    }
}

/// Output of the host process itself (Node warnings, crashes).
pub fn host_output(line: &str) {
    line_err(&format!("[host] {line}"));
}

pub fn info(message: &str) {
    line_out(&format!("[pyflare] {message}"));
}

pub fn warn(message: &str) {
    line_err(&format!("[pyflare] warning: {message}"));
}

pub fn error(message: &str) {
    line_err(&format!("[pyflare] error: {message}"));
}

fn line_out(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn line_err(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

/// The line tools wait for, printed alone.
pub fn ready(message: &str) {
    line_out(message);
}
