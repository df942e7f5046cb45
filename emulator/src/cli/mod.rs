//! Command line: `pyflare dev`, shaped like `wrangler dev`.

pub mod dev;

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
}
