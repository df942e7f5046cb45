//! `pyflare r2 object get|put|delete BUCKET/KEY` and `pyflare r2 object
//! list BUCKET`: reads and writes the same buckets `pyflare dev` uses, as
//! `wrangler r2 object ... --local` does: local ones, and those on S3 with
//! the same settings (environment and `.dev.vars`). Bodies stream: a large
//! object never sits whole in memory.

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use futures::StreamExt;
use serde_json::{Value, json};
use std::path::PathBuf;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::config::R2BucketConfig;
use super::{R2Bucket, R2Buckets};
use crate::binding::{Binding, BindingKind, BodyError, BodyStream, Reply};
use crate::cli::{BindingCli, CliContext, CliError, StateArgs};

/// The `pyflare r2` command.
#[derive(Debug)]
pub(super) struct R2Cli;

/// Read and write the R2 buckets of pyflare dev (as `wrangler r2 ... --local`).
#[derive(Debug, Parser)]
#[command(name = "r2")]
struct R2Args {
    #[command(subcommand)]
    command: R2Command,
}

/// `pyflare r2 object ...`.
#[derive(Debug, Subcommand)]
enum R2Command {
    /// Read and write objects.
    #[command(subcommand)]
    Object(ObjectCommand),
}

/// What to do with objects.
#[derive(Debug, Subcommand)]
enum ObjectCommand {
    /// Write an object's bytes to a file or to stdout.
    Get {
        /// BUCKET/KEY (the bucket name, or the binding name).
        path: String,
        #[command(flatten)]
        io: Io,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Store an object from a file or from stdin.
    Put {
        /// BUCKET/KEY (the bucket name, or the binding name).
        path: String,
        #[command(flatten)]
        io: Io,
        /// The object's Content-Type.
        #[arg(long, short = 'c')]
        content_type: Option<String>,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Delete an object.
    Delete {
        /// BUCKET/KEY (the bucket name, or the binding name).
        path: String,
        #[command(flatten)]
        state: StateArgs,
    },
    /// List objects (JSON).
    List {
        /// The bucket name, or the binding name.
        bucket: String,
        /// Only keys starting with this.
        #[arg(long)]
        prefix: Option<String>,
        #[command(flatten)]
        state: StateArgs,
    },
}

/// Where the bytes come from or go.
#[derive(Debug, Args)]
struct Io {
    /// A file to read from (put) or write to (get).
    #[arg(long, short = 'f', conflicts_with = "pipe")]
    file: Option<PathBuf>,
    /// Stdin (put) or stdout (get).
    #[arg(long, short = 'p')]
    pipe: bool,
}

/// `BUCKET/KEY` -> (bucket, key): the key is everything after the first `/`.
fn split(path: &str) -> Result<(&str, &str), CliError> {
    match path.split_once('/') {
        Some((bucket, key)) if !bucket.is_empty() && !key.is_empty() => Ok((bucket, key)),
        _ => Err(CliError::hinted(
            format!("\"{path}\" is not BUCKET/KEY"),
            "pyflare r2 object get my-bucket/path/to/key --file out.bin",
        )),
    }
}

fn need_io(io: &Io, example: &str) -> Result<(), CliError> {
    if io.file.is_none() && !io.pipe {
        return Err(CliError::hinted(
            "say where the bytes go: --file FILE or --pipe",
            example,
        ));
    }
    Ok(())
}

/// A reader as a call body, 1 MiB at a time.
fn body_of(reader: impl AsyncRead + Unpin + Send + 'static) -> BodyStream {
    BodyStream::from_stream(futures::stream::unfold(reader, |mut reader| async move {
        let mut buf = vec![0u8; 1024 * 1024];
        match reader.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(bytes::Bytes::from(buf)), reader))
            }
            Err(e) => Some((Err(BodyError(e.to_string())), reader)),
        }
    }))
}

#[async_trait::async_trait]
impl BindingCli for R2Cli {
    fn command(&self) -> clap::Command {
        R2Args::command()
    }

    #[allow(clippy::print_stdout, reason = "the command's output")]
    #[allow(clippy::print_stderr, reason = "progress, apart from piped bytes")]
    async fn run(&self, matches: &clap::ArgMatches, cx: &dyn CliContext) -> Result<(), CliError> {
        let R2Command::Object(command) = R2Args::from_arg_matches(matches)
            .map_err(CliError::other)?
            .command;
        match command {
            ObjectCommand::Get { path, io, state } => {
                need_io(&io, "pyflare r2 object get BUCKET/KEY --file out.bin")?;
                let (name, key) = split(&path)?;
                let bucket = open(name, &state, cx).await?;
                if !io.pipe {
                    eprintln!("Downloading \"{key}\" from \"{name}\".");
                }
                let reply = call(&bucket, "get", json!({"key": key}), None).await?;
                let Some(mut body) = reply.body else {
                    return Err(CliError::msg(format!(
                        "The specified key does not exist: \"{key}\" in bucket \"{name}\"."
                    )));
                };
                let mut out: Box<dyn AsyncWrite + Unpin + Send> = match &io.file {
                    Some(file) => Box::new(tokio::fs::File::create(file).await.map_err(|e| {
                        CliError::context(format!("cannot write {}", file.display()), e)
                    })?),
                    None => Box::new(tokio::io::stdout()),
                };
                while let Some(chunk) = body.next().await {
                    out.write_all(&chunk.map_err(CliError::other)?).await?;
                }
                out.flush().await?;
                close(&bucket).await?;
                if !io.pipe {
                    eprintln!("Download complete.");
                }
            }
            ObjectCommand::Put {
                path,
                io,
                content_type,
                state,
            } => {
                need_io(&io, "pyflare r2 object put BUCKET/KEY --file in.bin")?;
                let (name, key) = split(&path)?;
                let bucket = open(name, &state, cx).await?;
                let body = match &io.file {
                    Some(file) => body_of(tokio::fs::File::open(file).await.map_err(|e| {
                        CliError::context(format!("cannot read {}", file.display()), e)
                    })?),
                    None => body_of(tokio::io::stdin()),
                };
                eprintln!("Creating object \"{key}\" in bucket \"{name}\".");
                let args = json!({"key": key, "httpMetadata": {"contentType": content_type}});
                call(&bucket, "put", args, Some(body)).await?;
                close(&bucket).await?;
                eprintln!("Upload complete.");
            }
            ObjectCommand::Delete { path, state } => {
                let (name, key) = split(&path)?;
                let bucket = open(name, &state, cx).await?;
                eprintln!("Deleting object \"{key}\" from bucket \"{name}\".");
                call(&bucket, "delete", json!({"keys": [key]}), None).await?;
                close(&bucket).await?;
                eprintln!("Delete complete.");
            }
            ObjectCommand::List {
                bucket: name,
                prefix,
                state,
            } => {
                let bucket = open(&name, &state, cx).await?;
                let mut objects: Vec<Value> = Vec::new();
                let mut cursor: Option<String> = None;
                loop {
                    let args = json!({"prefix": prefix, "cursor": cursor, "include": ["httpMetadata", "customMetadata"]});
                    let reply = call(&bucket, "list", args, None).await?;
                    objects.extend(
                        reply.value["objects"]
                            .as_array()
                            .cloned()
                            .unwrap_or_default(),
                    );
                    match reply.value["cursor"].as_str() {
                        Some(next) if reply.value["truncated"] == true => {
                            cursor = Some(next.to_owned())
                        }
                        _ => break,
                    }
                }
                println!("{}", serde_json::to_string_pretty(&objects)?);
            }
        }
        Ok(())
    }
}

/// The bucket `name` names (bucket or binding name): on local state, or
/// on S3 when the settings `pyflare dev` reads (environment, `.dev.vars`)
/// give its `PYFLARE_R2_<BINDING>_URL`.
async fn open(name: &str, state: &StateArgs, cx: &dyn CliContext) -> Result<R2Bucket, CliError> {
    let project = cx.project(state)?;
    let entry: R2BucketConfig = project.find(R2Buckets.config_key(), name)?;
    let setting = super::s3_setting(&entry.binding);
    let bucket = R2Bucket::new(entry, &project.persist_root, cx.clock(), &project.settings);
    if let Err(e) = bucket.store().await {
        return Err(CliError::hinted(
            format!("cannot open the R2 bucket {name}: {e}"),
            format!(
                "a bucket on S3 needs {setting} and its AWS_* settings in the environment or .dev.vars, as for pyflare dev"
            ),
        ));
    }
    Ok(bucket)
}

/// Leaves the bucket's metadata in one file.
async fn close(bucket: &R2Bucket) -> Result<(), CliError> {
    bucket.close().await.map_err(CliError::msg)
}

/// One call, as the worker would make it; Cloudflare's error text is the
/// command's error.
async fn call(
    bucket: &R2Bucket,
    method: &str,
    args: Value,
    body: Option<BodyStream>,
) -> Result<Reply, CliError> {
    bucket
        .call(method, args, body)
        .await
        .map_err(|e| CliError::msg(e.message))
}
