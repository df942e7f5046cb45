//! Command line: `pyflare dev`, shaped like `wrangler dev`, `pyflare sync`,
//! `pyflare setup`, and each binding's own command (`pyflare kv ...`),
//! which the binding declares in its folder (see [`bindings`]).

pub mod bindings;
pub mod dev;
pub mod sync;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

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
    /// Install the pinned runtime (Node with JSPI, Pyodide, Cloudflare's
    /// Python SDK) and the pip `pyflare sync` runs into the cache now;
    /// `pyflare dev` and `pyflare sync` do this on first use.
    Setup,
}

/// What the command line asked for.
pub enum Invocation {
    /// One of pyflare's own commands.
    Own(Command),
    /// A binding's command, with the matches of its subcommand.
    Binding(&'static dyn pyflare_bindings::BindingCli, clap::ArgMatches),
}

/// pyflare's whole command line, listed by `pyflare --help` as: `dev`,
/// `sync`, each binding's command from the registry (in name order), then
/// `setup`.
pub fn command() -> clap::Command {
    let own_first = 2;
    let bindings = bindings::commands();
    let setup_at = own_first + bindings.len();
    bindings.into_iter().enumerate().fold(
        Cli::command().mut_subcommand("setup", |setup| setup.display_order(setup_at)),
        |cli, (i, binding)| cli.subcommand(binding.display_order(own_first + i)),
    )
}

/// Parses the process's arguments; on a mistake, or for `--help`, prints
/// clap's text and exits, as `Cli::parse` does.
pub fn parse() -> Invocation {
    let mut command = command();
    let matches = command.get_matches_mut();
    if let Some((name, sub)) = matches.subcommand()
        && let Some(cli) = bindings::find(name)
    {
        return Invocation::Binding(cli, sub.clone());
    }
    match Cli::from_arg_matches(&matches) {
        Ok(cli) => Invocation::Own(cli.command),
        Err(error) => error.format(&mut command).exit(),
    }
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
    // `pyflare sync` runs it; installed now, sync needs no pip of the system's.
    let pip = crate::runtime::ensure_pinned_pip()?;
    crate::logging::info(&format!("pip for pyflare sync: {}", pip.display()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use pyflare_bindings::BINDINGS;

    #[test]
    fn the_command_line_holds_every_binding_command_once() {
        let command = super::command();
        // Panics on two subcommands of one name, among other mistakes.
        command.clone().debug_assert();
        let mut found = 0;
        for cli in BINDINGS.iter().filter_map(|kind| kind.cli()) {
            let name = cli.command().get_name().to_owned();
            assert!(command.find_subcommand(&name).is_some(), "{name}");
            assert!(super::bindings::find(&name).is_some(), "{name}");
            found += 1;
        }
        assert!(found >= 2, "kv and d1 declare commands");
    }
}
