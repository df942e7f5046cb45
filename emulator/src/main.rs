//! The `pyflare` binary: parse, run, print `pyflare: error: ...` on failure.

use pyflare::cli::{Command, Invocation};
use std::process::ExitCode;

fn main() -> ExitCode {
    let invocation = pyflare::cli::parse();
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
        match invocation {
            Invocation::Own(Command::Dev(args)) => pyflare::cli::dev::run(args).await,
            Invocation::Own(Command::Setup) => pyflare::cli::setup(),
            Invocation::Own(Command::Sync(args)) => pyflare::cli::sync::run(&args),
            Invocation::Binding(cli, matches) => pyflare::cli::bindings::run(cli, &matches).await,
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
