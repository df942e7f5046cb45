//! `pyflare kv key list|get|put|delete --binding NAME`: reads and writes the
//! same local KV data `pyflare dev` uses, as `wrangler kv key ... --local`
//! does.

use bytes::Bytes;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use futures::StreamExt;
use serde_json::{Value, json};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use super::config::KvNamespaceConfig;
use super::{KvNamespace, KvNamespaces};
use crate::binding::{Binding, BindingKind, BodyStream, Reply};
use crate::cli::{BindingCli, CliContext, CliError, StateArgs};

/// The `pyflare kv` command.
#[derive(Debug)]
pub(super) struct KvCli;

/// Read and write local Workers KV data (as `wrangler kv ... --local`).
#[derive(Debug, Parser)]
#[command(name = "kv")]
struct KvArgs {
    #[command(subcommand)]
    command: KvCommand,
}

/// `pyflare kv key ...`.
#[derive(Debug, Subcommand)]
enum KvCommand {
    /// Read and write single keys.
    #[command(subcommand)]
    Key(KeyCommand),
}

/// What to do with keys.
#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// List keys (JSON, as wrangler prints it).
    List {
        #[command(flatten)]
        target: Target,
        /// Only keys starting with this.
        #[arg(long)]
        prefix: Option<String>,
    },
    /// Print a key's value.
    Get {
        key: String,
        #[command(flatten)]
        target: Target,
    },
    /// Write a value (from the argument, or a file with --path).
    Put {
        key: String,
        value: Option<String>,
        #[command(flatten)]
        target: Target,
        /// Read the value from this file.
        #[arg(long)]
        path: Option<PathBuf>,
        /// Seconds until the key expires (at least 60).
        #[arg(long)]
        ttl: Option<u64>,
        /// Absolute expiry, seconds since the epoch.
        #[arg(long)]
        expiration: Option<u64>,
        /// JSON metadata.
        #[arg(long)]
        metadata: Option<String>,
    },
    /// Delete a key.
    Delete {
        key: String,
        #[command(flatten)]
        target: Target,
    },
}

/// Which namespace: the worker's binding, read from its config.
#[derive(Debug, Args)]
struct Target {
    /// The binding name in kv_namespaces.
    #[arg(long)]
    binding: String,
    #[command(flatten)]
    state: StateArgs,
}

#[async_trait::async_trait]
impl BindingCli for KvCli {
    fn command(&self) -> clap::Command {
        KvArgs::command()
    }

    #[allow(clippy::print_stdout, reason = "the command's output")]
    async fn run(&self, matches: &clap::ArgMatches, cx: &dyn CliContext) -> Result<(), CliError> {
        let KvCommand::Key(command) = KvArgs::from_arg_matches(matches)
            .map_err(CliError::other)?
            .command;
        match command {
            KeyCommand::List { target, prefix } => {
                let ns = open(&target, cx)?;
                let mut keys = Vec::new();
                let mut cursor: Option<String> = None;
                loop {
                    let reply = call(
                        &ns,
                        "list",
                        json!({"prefix": prefix, "cursor": cursor}),
                        None,
                    )
                    .await?;
                    keys.extend(reply.value["keys"].as_array().cloned().unwrap_or_default());
                    match reply.value["cursor"].as_str() {
                        Some(next) if reply.value["list_complete"] == false => {
                            cursor = Some(next.to_owned())
                        }
                        _ => break,
                    }
                }
                println!("{}", serde_json::to_string_pretty(&keys)?);
            }
            KeyCommand::Get { key, target } => {
                let ns = open(&target, cx)?;
                let reply = call(&ns, "get", json!({"key": key}), None).await?;
                match reply.body {
                    Some(mut body) => {
                        while let Some(chunk) = body.next().await {
                            let chunk = chunk.map_err(CliError::other)?;
                            std::io::stdout().lock().write_all(&chunk)?;
                        }
                        std::io::stdout().lock().flush()?;
                    }
                    None => println!("Value not found"),
                }
            }
            KeyCommand::Put {
                key,
                value,
                target,
                path,
                ttl,
                expiration,
                metadata,
            } => {
                let bytes = match (value, &path) {
                    (Some(value), None) => value.into_bytes(),
                    (None, Some(path)) => std::fs::read(path).map_err(|e| {
                        CliError::context(format!("cannot read {}", path.display()), e)
                    })?,
                    _ => {
                        return Err(CliError::hinted(
                            "give the value either as an argument or with --path, not both",
                            "pyflare kv key put KEY VALUE --binding NAME",
                        ));
                    }
                };
                let ns = open(&target, cx)?;
                let metadata = match metadata {
                    Some(text) => {
                        let parsed: Value = serde_json::from_str(&text)
                            .map_err(|e| CliError::context("--metadata is not valid JSON", e))?;
                        Some(parsed.to_string())
                    }
                    None => None,
                };
                let args = json!({"key": key, "expirationTtl": ttl, "expiration": expiration, "metadata": metadata});
                call(&ns, "put", args, Some(Bytes::from(bytes).into())).await?;
                println!(
                    "Writing the value to key \"{key}\" on binding {}.",
                    target.binding
                );
            }
            KeyCommand::Delete { key, target } => {
                let ns = open(&target, cx)?;
                call(&ns, "delete", json!({"key": key}), None).await?;
                println!("Deleting the key \"{key}\" on binding {}.", target.binding);
            }
        }
        Ok(())
    }
}

/// The namespace `target` names, on the local store.
fn open(target: &Target, cx: &dyn CliContext) -> Result<KvNamespace, CliError> {
    let project = cx.project(&target.state)?;
    let entry: KvNamespaceConfig = project.find(KvNamespaces.config_key(), &target.binding)?;
    let store = super::open_store(&project.persist_root.join("kv"))
        .map_err(|source| project.binding_error(source))?;
    Ok(KvNamespace::new(&entry, Arc::new(store), cx.clock()))
}

/// One call, as the worker would make it; Cloudflare's error text is the
/// command's error.
async fn call(
    ns: &KvNamespace,
    method: &str,
    args: Value,
    body: Option<BodyStream>,
) -> Result<Reply, CliError> {
    ns.call(method, args, body)
        .await
        .map_err(|e| CliError::msg(e.message))
}
