//! `pyflare kv key list|get|put|delete --binding NAME`: reads and writes the
//! same local KV data `pyflare dev` uses, as `wrangler kv key ... --local`
//! does.

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::WorkerConfig;
use crate::error::Hinted;
use pyflare_bindings::kv::{self, KvNamespace};
use pyflare_bindings::{Binding, SystemClock};

/// `pyflare kv ...`.
#[derive(Debug, Args)]
pub struct KvArgs {
    #[command(subcommand)]
    pub command: KvCommand,
}

/// `pyflare kv key ...`.
#[derive(Debug, Subcommand)]
pub enum KvCommand {
    /// Read and write single keys.
    #[command(subcommand)]
    Key(KeyCommand),
}

/// What to do with keys.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
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
pub struct Target {
    /// The binding name in kv_namespaces.
    #[arg(long)]
    pub binding: String,
    /// Project folder holding the wrangler config.
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// Folder of local state (as given to pyflare dev).
    #[arg(long, value_name = "DIR")]
    pub persist_to: Option<PathBuf>,
    /// Environment section of the config.
    #[arg(long, short = 'e')]
    pub env: Option<String>,
}

/// Runs a `pyflare kv` command.
pub async fn run(args: KvArgs) -> Result<()> {
    let KvCommand::Key(command) = args.command;
    match command {
        KeyCommand::List { target, prefix } => {
            let ns = open(&target)?;
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
            let ns = open(&target)?;
            let reply = call(&ns, "get", json!({"key": key}), None).await?;
            match reply.body {
                Some(body) => {
                    let bytes = body.collect(usize::MAX).await?;
                    std::io::stdout().lock().write_all(&bytes)?
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
                (None, Some(path)) => std::fs::read(path)
                    .with_context(|| format!("cannot read {}", path.display()))?,
                _ => bail!(Hinted::new(
                    "give the value either as an argument or with --path, not both",
                    "pyflare kv key put KEY VALUE --binding NAME"
                )),
            };
            let ns = open(&target)?;
            let metadata = match metadata {
                Some(text) => {
                    let parsed: Value =
                        serde_json::from_str(&text).context("--metadata is not valid JSON")?;
                    Some(parsed.to_string())
                }
                None => None,
            };
            let args = json!({"key": key, "expirationTtl": ttl, "expiration": expiration, "metadata": metadata});
            call(&ns, "put", args, Some(bytes.into())).await?;
            println!(
                "Writing the value to key \"{key}\" on binding {}.",
                target.binding
            );
        }
        KeyCommand::Delete { key, target } => {
            let ns = open(&target)?;
            call(&ns, "delete", json!({"key": key}), None).await?;
            println!("Deleting the key \"{key}\" on binding {}.", target.binding);
        }
    }
    Ok(())
}

fn open(target: &Target) -> Result<KvNamespace> {
    let config = WorkerConfig::load_for_state(&target.dir, target.env.as_deref())?;
    let entries = match config.rest.get("kv_namespaces") {
        Some(value) => {
            kv::parse_config(value).map_err(|source| crate::config::ConfigError::Binding {
                file: config.file.clone(),
                source,
            })?
        }
        None => vec![],
    };
    let Some(entry) = entries.iter().find(|e| e.binding == target.binding) else {
        let known: Vec<&str> = entries.iter().map(|e| e.binding.as_str()).collect();
        bail!(Hinted::new(
            format!(
                "{} has no KV binding named {}",
                config.file.display(),
                target.binding
            ),
            if known.is_empty() {
                "add it to kv_namespaces in the wrangler config".to_owned()
            } else {
                format!("the KV bindings are: {}", known.join(", "))
            }
        ));
    };
    let persist_root = config.persist_root(target.persist_to.as_deref());
    let store = kv::open_store(&persist_root.join("kv")).map_err(|source| {
        crate::config::ConfigError::Binding {
            file: config.file.clone(),
            source,
        }
    })?;
    Ok(KvNamespace::new(
        entry,
        Arc::new(store),
        Arc::new(SystemClock),
    ))
}

async fn call(
    ns: &KvNamespace,
    method: &str,
    args: Value,
    body: Option<pyflare_bindings::BodyStream>,
) -> Result<pyflare_bindings::Reply> {
    ns.call(method, args, body)
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.message))
}
