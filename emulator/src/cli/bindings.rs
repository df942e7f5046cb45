//! The bindings' own commands (`pyflare kv ...`, `pyflare d1 ...`): each
//! binding declares its subcommand through `BindingKind::cli`; this module
//! adds them to pyflare's command line from `pyflare_bindings::BINDINGS`,
//! gives them the project's config, and shows their errors as pyflare's
//! own. No binding is named here.

use std::sync::Arc;

use crate::config::{ConfigError, WorkerConfig};
use crate::error::Hinted;
use pyflare_bindings::cli::{Project, StateArgs};
use pyflare_bindings::{BINDINGS, BindingCli, CliContext, CliError, Clock, SystemClock};

/// Every binding's command, in name order.
pub(crate) fn commands() -> Vec<clap::Command> {
    let mut commands: Vec<clap::Command> = clis().map(|cli| cli.command()).collect();
    commands.sort_by(|a, b| a.get_name().cmp(b.get_name()));
    commands
}

/// The binding command named `name`, if there is one.
pub(crate) fn find(name: &str) -> Option<&'static dyn BindingCli> {
    clis().find(|cli| cli.command().get_name() == name)
}

fn clis() -> impl Iterator<Item = &'static dyn BindingCli> {
    BINDINGS.iter().filter_map(|kind| kind.cli())
}

/// Runs a binding's command with the matches of its subcommand.
pub async fn run(cli: &dyn BindingCli, matches: &clap::ArgMatches) -> anyhow::Result<()> {
    cli.run(matches, &StateCommand).await.map_err(into_anyhow)
}

/// What a binding's command gets: the config read as for local state, the
/// system clock, pyflare's warnings.
struct StateCommand;

impl CliContext for StateCommand {
    fn project(&self, state: &StateArgs) -> Result<Project, CliError> {
        let config = WorkerConfig::load_for_state(&state.dir, state.env.as_deref())
            .map_err(CliError::other)?;
        let settings = crate::dispatch::binding_settings(&config);
        Ok(Project {
            persist_root: config.persist_root(state.persist_to.as_deref()),
            file: config.file,
            root: config.root,
            settings,
            fields: config.rest,
        })
    }

    fn clock(&self) -> Arc<dyn Clock> {
        Arc::new(SystemClock)
    }

    fn warn(&self, message: &str) {
        crate::logging::warn(message);
    }
}

/// A binding command's error as pyflare's own, so it prints the same
/// `pyflare: error:`, `caused by:` and `hint:` lines.
fn into_anyhow(error: CliError) -> anyhow::Error {
    match error {
        CliError::Binding { file, source } => ConfigError::Binding { file, source }.into(),
        CliError::Hinted { message, hint } => Hinted::new(message, hint).into(),
        CliError::Other(error) => match error.downcast::<ConfigError>() {
            Ok(config) => (*config).into(),
            Err(error) => CliError::Other(error).into(),
        },
        failed @ CliError::Failed { .. } => failed.into(),
    }
}
