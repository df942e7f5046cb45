//! `pyflare queues list` and `pyflare queues send QUEUE BODY`: the local
//! queues `pyflare dev` uses, as `wrangler queues ...` users expect. A
//! message sent here is delivered by a running `pyflare dev` on the same
//! state folder (its consumers poll the database).

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use super::config::{self, QueuesConfig};
use super::error::{Op, check_delay};
use super::limits::MAX_MESSAGE_BYTES;
use super::store::{NewMessage, QueueStore, SqliteQueueStore};
use super::{QueueError, Queues};
use crate::binding::BindingKind;
use crate::cli::{BindingCli, CliContext, CliError, Project, StateArgs};

/// The `pyflare queues` command.
#[derive(Debug)]
pub(super) struct QueuesCli;

/// Look at and send to local queues.
#[derive(Debug, Parser)]
#[command(name = "queues")]
struct QueuesArgs {
    #[command(subcommand)]
    command: QueuesCommand,
}

#[derive(Debug, Subcommand)]
enum QueuesCommand {
    /// Each queue's pending, delayed, in-flight and dead-lettered messages.
    List {
        #[command(flatten)]
        state: StateArgs,
    },
    /// Deliver a queue's pending messages now, in the `pyflare dev` running
    /// on the same state folder, whatever its batch size and timeout say.
    Deliver {
        /// The queue's name.
        queue: String,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Send one message to a queue of the worker's config.
    Send {
        /// The queue's name.
        queue: String,
        /// The body: JSON (default), or text with --content-type text.
        body: String,
        /// json or text.
        #[arg(long, default_value = "json")]
        content_type: String,
        /// Seconds before it may be delivered.
        #[arg(long, default_value_t = 0)]
        delay_seconds: i64,
        #[command(flatten)]
        state: StateArgs,
    },
}

fn queues_of(project: &Project) -> Result<QueuesConfig, CliError> {
    match project.fields.get(Queues.config_key()) {
        Some(value) => {
            config::parse(Queues.config_key(), value).map_err(|e| project.binding_error(e))
        }
        None => Ok(QueuesConfig::default()),
    }
}

async fn open(project: &Project) -> Result<std::sync::Arc<SqliteQueueStore>, CliError> {
    let path = SqliteQueueStore::path_in(&project.persist_root);
    SqliteQueueStore::open_shared(&path)
        .await
        .map_err(|e| CliError::msg(format!("cannot open {}: {e}", path.display())))
}

#[async_trait::async_trait]
impl BindingCli for QueuesCli {
    fn command(&self) -> clap::Command {
        QueuesArgs::command()
    }

    #[allow(clippy::print_stdout, reason = "the command's output")]
    async fn run(&self, matches: &clap::ArgMatches, cx: &dyn CliContext) -> Result<(), CliError> {
        let args = QueuesArgs::from_arg_matches(matches).map_err(CliError::other)?;
        match args.command {
            QueuesCommand::List { state } => {
                let project = cx.project(&state)?;
                let config = queues_of(&project)?;
                let store = open(&project).await?;
                let mut counts = store
                    .counts(cx.clock().now_ms())
                    .await
                    .map_err(CliError::msg)?;
                let configured = config
                    .producers
                    .iter()
                    .map(|p| p.queue.clone())
                    .chain(config.consumers.iter().map(|c| c.queue.clone()));
                for queue in configured {
                    if !counts.iter().any(|c| c.queue == queue) {
                        counts.push(super::store::QueueCounts {
                            queue,
                            ..Default::default()
                        });
                    }
                }
                counts.sort_by(|a, b| a.queue.cmp(&b.queue));
                println!(
                    "{:<24} {:>8} {:>8} {:>9} {:>8} {:>13} {:>8}",
                    "queue", "pending", "delayed", "in-flight", "acked", "dead-lettered", "dropped"
                );
                for c in counts {
                    println!(
                        "{:<24} {:>8} {:>8} {:>9} {:>8} {:>13} {:>8}",
                        c.queue,
                        c.pending,
                        c.delayed,
                        c.in_flight,
                        c.acked,
                        c.dead_lettered,
                        c.dropped
                    );
                }
                store.checkpoint().await.map_err(CliError::msg)?;
                Ok(())
            }
            QueuesCommand::Deliver { queue, state } => {
                let project = cx.project(&state)?;
                let config = queues_of(&project)?;
                let consumed: Vec<&str> =
                    config.consumers.iter().map(|c| c.queue.as_str()).collect();
                if !consumed.contains(&queue.as_str()) {
                    return Err(CliError::hinted(
                        format!(
                            "{} has no consumer for the queue {queue}",
                            project.file.display()
                        ),
                        if consumed.is_empty() {
                            "add one to queues.consumers in the wrangler config".to_owned()
                        } else {
                            format!("the consumed queues are: {}", consumed.join(", "))
                        },
                    ));
                }
                let store = open(&project).await?;
                store
                    .request_flush_durably(&queue)
                    .await
                    .map_err(CliError::msg)?;
                store.checkpoint().await.map_err(CliError::msg)?;
                println!("asked pyflare dev to deliver {queue} now");
                Ok(())
            }
            QueuesCommand::Send {
                queue,
                body,
                content_type,
                delay_seconds,
                state,
            } => {
                let project = cx.project(&state)?;
                let config = queues_of(&project)?;
                let mut known: Vec<&str> = Vec::new();
                for name in config
                    .producers
                    .iter()
                    .map(|p| p.queue.as_str())
                    .chain(config.consumers.iter().map(|c| c.queue.as_str()))
                {
                    if !known.contains(&name) {
                        known.push(name);
                    }
                }
                if !known.contains(&queue.as_str()) {
                    return Err(CliError::hinted(
                        format!("{} has no queue named {queue}", project.file.display()),
                        if known.is_empty() {
                            "add it to queues.producers or queues.consumers in the wrangler config"
                                .to_owned()
                        } else {
                            format!("the queues are: {}", known.join(", "))
                        },
                    ));
                }
                let bytes = match content_type.as_str() {
                    "text" => body.into_bytes(),
                    "json" => {
                        let value: serde_json::Value =
                            serde_json::from_str(&body).map_err(|e| {
                                CliError::hinted(
                                    format!("the body is not JSON: {e}"),
                                    "quote it for the shell, or pass --content-type text",
                                )
                            })?;
                        serde_json::to_vec(&value)?
                    }
                    other => {
                        return Err(CliError::hinted(
                            format!("cannot send a {other} message from the shell"),
                            "use --content-type json or text",
                        ));
                    }
                };
                if bytes.len() > MAX_MESSAGE_BYTES {
                    return Err(CliError::other(QueueError::MessageTooLarge(bytes.len())));
                }
                let delay = check_delay(Op::Send, delay_seconds).map_err(CliError::other)?;
                let store = open(&project).await?;
                let now = cx.clock().now_ms();
                store
                    .send(
                        &queue,
                        now,
                        vec![NewMessage {
                            content_type,
                            body: bytes,
                            visible_at_ms: now + i64::from(delay) * 1000,
                        }],
                    )
                    .await
                    .map_err(CliError::msg)?;
                store.checkpoint().await.map_err(CliError::msg)?;
                println!("sent 1 message to {queue}");
                Ok(())
            }
        }
    }
}
