//! `pyflare do list|get --binding NAME`: the objects of a Durable Object
//! class and one object's storage, read from the same local files
//! `pyflare dev` uses (SQLite allows both at once). Cloudflare's local
//! tooling has no such command.

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use std::sync::Arc;

use super::{DurableObjectNamespace, DurableObjects};
use crate::binding::{BindingKind, OpenContext};
use crate::cli::{BindingCli, CliContext, CliError, StateArgs};

/// The `pyflare do` command.
#[derive(Debug)]
pub(super) struct DoCli;

/// Read local Durable Object storage.
#[derive(Debug, Parser)]
#[command(name = "do")]
struct DoArgs {
    #[command(subcommand)]
    command: DoCommand,
}

#[derive(Debug, Subcommand)]
enum DoCommand {
    /// List the objects of a binding's class that have storage (JSON).
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Print one object's storage: its key-value entries, alarm and SQL
    /// tables (JSON).
    Get {
        /// The object's id (64 hex digits).
        id: Option<String>,
        /// The name the worker gets the object by (`idFromName`), instead of its id.
        #[arg(long, conflicts_with = "id")]
        name: Option<String>,
        #[command(flatten)]
        target: Target,
    },
}

/// Which namespace: the worker's binding, read from its config.
#[derive(Debug, Args)]
struct Target {
    /// The binding name in durable_objects.bindings.
    #[arg(long)]
    binding: String,
    #[command(flatten)]
    state: StateArgs,
}

#[async_trait::async_trait]
impl BindingCli for DoCli {
    fn command(&self) -> clap::Command {
        DoArgs::command()
    }

    #[allow(clippy::print_stdout, reason = "the command's output")]
    async fn run(&self, matches: &clap::ArgMatches, cx: &dyn CliContext) -> Result<(), CliError> {
        let command = DoArgs::from_arg_matches(matches)
            .map_err(CliError::other)?
            .command;
        let out = match command {
            DoCommand::List { target } => open(&target, cx)?.describe_objects().await,
            DoCommand::Get { id, name, target } => {
                let ns = open(&target, cx)?;
                let id = match (id, name) {
                    (Some(id), None) => id.to_ascii_lowercase(),
                    (None, Some(name)) => ns.id_from_name(&name),
                    _ => {
                        return Err(CliError::hinted(
                            "name the object by its id or with --name",
                            "pyflare do get ID --binding NAME, or pyflare do get --name NAME --binding NAME",
                        ));
                    }
                };
                ns.describe_object(&id)
                    .await
                    .map_err(|e| CliError::msg(e.to_string()))?
            }
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
        Ok(())
    }
}

/// The namespace `target` names, on the local files.
fn open(target: &Target, cx: &dyn CliContext) -> Result<DurableObjectNamespace, CliError> {
    let project = cx.project(&target.state)?;
    let section = project
        .fields
        .get(DurableObjects.config_key())
        .cloned()
        .unwrap_or_default();
    let open = OpenContext {
        persist_root: project.persist_root.clone(),
        clock: cx.clock(),
        config: Arc::new(project.fields.clone()),
        settings: Default::default(),
        project_root: Default::default(),
        compatibility_date: Default::default(),
        compatibility_flags: Default::default(),
    };
    let namespaces =
        super::open_namespaces(&section, &open).map_err(|source| project.binding_error(source))?;
    let names: Vec<String> = namespaces.iter().map(|n| n.name.clone()).collect();
    namespaces
        .into_iter()
        .find(|n| n.name == target.binding)
        .ok_or_else(|| {
            CliError::hinted(
                format!(
                    "{} has no Durable Object binding named {}",
                    project.file.display(),
                    target.binding
                ),
                if names.is_empty() {
                    "add it to durable_objects.bindings in the wrangler config".to_owned()
                } else {
                    format!("the Durable Object bindings are: {}", names.join(", "))
                },
            )
        })
}
