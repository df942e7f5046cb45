//! pyflare's integration tests: each starts the real `pyflare dev` binary
//! on a fixture worker under `tests/fixtures/` (real Node, Pyodide and
//! Cloudflare's Python SDK) and talks HTTP to it.

// Shared harness: TestWorker starts and stops `pyflare dev`.
mod util;

// Config and command-line errors.
mod cli;
// HTTP fidelity: methods, URLs, headers, bodies, statuses, streaming.
mod http;
// HTTP edges: header bytes and sizes, connection timeouts, body limit.
mod http_edges;
// Python runtime surface: env, modules, globals, waitUntil, concurrency.
mod runtime;
// Exceptions, CPU limit, crashes, load errors, shutdown.
mod failures;
// Fatal Pyodide errors, hangs, broken response streams, the memory limit.
mod worker_faults;
// Workers KV through Cloudflare's SDK.
mod kv;
// D1 through Cloudflare's SDK, and the d1 commands.
mod d1;
// Synchronous binding calls from Python, call bodies streamed both ways.
mod binding_calls;
// Durable Objects: ids, stubs, RPC, storage, one event at a time, persistence.
mod durable_objects;
// Cron triggers and the scheduled endpoint.
mod cron;
// Queues: producers, consumers, retries, delays, durability.
mod queues;
// Live reload and memory snapshots.
mod reload;
// `pyflare sync`: packages for Pyodide's Python.
mod sync;
// The worker's sandbox: no way to Node, the host's files or pyflare's routes.
mod sandbox;
// R2 through Cloudflare's SDK.
mod r2;
// Static assets: served before the worker, and through env.ASSETS.
mod assets;
// WebSockets: WebSocketPair, 101 responses, Durable Objects' hibernation API.
mod websockets;
// The same R2 scenarios with the bytes on S3 (a local moto server).
mod r2_s3;
// Full disks, damaged and read-only stores, D1's log on a clean stop.
mod storage_faults;
// docker/: the image's rules, compose.yaml, the polling watcher, and (with
// PYFLARE_DOCKER_TESTS=1 and a Docker engine) the image served through compose.
mod docker;
