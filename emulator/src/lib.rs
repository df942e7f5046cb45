//! pyflare: a local emulator of Cloudflare Workers for Python workers.
//!
//! `pyflare dev` reads a worker's wrangler config, starts an isolate host
//! (Node running Pyodide and Cloudflare's Python SDK, see `host`), and serves
//! HTTP with axum, handing each request to the worker's fetch handler.

pub mod cli;
pub mod config;
pub mod cron;
pub mod dispatch;
pub mod error;
pub mod host;
pub mod logging;
pub mod reload;
pub mod runtime;
pub mod server;
pub mod snapshot;
pub mod tasks;
