//! Command line: `pyflare dev`, shaped like `wrangler dev`.

pub mod d1;
pub mod dev;
pub mod kv;
pub mod sync;

use clap::{Parser, Subcommand};

/// Local emulator of Cloudflare Workers for Python workers.
#[derive(Debug, Parser)]
#[command(name = "pyflare", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve a Python Worker project locally.
    Dev(dev::DevArgs),
    /// Install pyproject.toml's dependencies into python_modules/ for Pyodide.
    Sync(sync::SyncArgs),
    /// Local D1 databases: migrations and SQL (as `wrangler d1 ... --local`).
    D1(d1::D1Args),
    /// Read and write local Workers KV data (as `wrangler kv ... --local`).
    Kv(kv::KvArgs),
    /// Install the pinned runtime (Node with JSPI, Pyodide, Cloudflare's
    /// Python SDK) into the cache now; `pyflare dev` does this on first use.
    Setup,
}

/// `pyflare setup`: installs the runtime and says where it is.
pub fn setup() -> anyhow::Result<()> {
    let runtime = crate::runtime::Runtime::ensure()?;
    crate::logging::info(&format!(
        "runtime ready: node {}, pyodide {}, workers-runtime-sdk {}",
        runtime.node.display(),
        runtime.pyodide_dir.display(),
        runtime.sdk_dir.display()
    ));
    Ok(())
}
