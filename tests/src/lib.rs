//! Integration tests for pyflare live in `integration/`; this crate has no
//! library code of its own.
