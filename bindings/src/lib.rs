//! Cloudflare Workers bindings emulated by pyflare.
