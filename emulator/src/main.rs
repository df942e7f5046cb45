//! The `pyflare` binary: parse, run, print `pyflare: error: ...` on failure.

use clap::Parser;
use pyflare::cli::{Cli, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("pyflare: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Dev(args) => pyflare::cli::dev::run(args).await,
            Command::Setup => pyflare::cli::setup(),
            Command::Sync(args) => pyflare::cli::sync::run(&args),
            Command::Kv(args) => pyflare::cli::kv::run(args).await,
            Command::D1(args) => pyflare::cli::d1::run(args).await,
        }
    });
    // Do not wait for blocked tasks (a host being killed) on the way out.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{}", pyflare::error::render(&error));
            ExitCode::FAILURE
        }
    }
}
