//! `pyflare dev [DIR]`: serve a Python Worker on http://127.0.0.1:8787.

use anyhow::{Context, Result};
use clap::Args;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{ConfigOverrides, WorkerConfig};
use crate::dispatch;
use crate::error::Hinted;
use crate::host::protocol::{BindingInit, WorkerInit};
use crate::host::supervisor::{HostSpec, Slot, Supervisor};
use crate::logging;
use crate::runtime::Runtime;
use crate::server::{self, AppState};
use pyflare_bindings::OffsetClock;

/// Options of `pyflare dev`.
#[derive(Debug, Clone, Args)]
pub struct DevArgs {
    /// Project folder holding wrangler.jsonc / wrangler.toml.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 8787)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub ip: IpAddr,
    /// Folder for local state (bindings' data).
    #[arg(long, value_name = "DIR")]
    pub persist_to: Option<PathBuf>,
    /// Environment section of the config to use (`[env.NAME]`).
    #[arg(long, short = 'e', value_name = "NAME")]
    pub env: Option<String>,
    /// Extra var, overriding the config and .dev.vars (repeatable).
    #[arg(long = "var", value_name = "KEY:VALUE")]
    pub vars: Vec<String>,
    /// Do not reload the worker when its files change.
    #[arg(long)]
    pub no_reload: bool,
    /// Do not fire cron triggers on schedule (/cdn-cgi/handler/scheduled still works).
    #[arg(long)]
    pub no_crons: bool,
}

/// Runs `pyflare dev` until Ctrl-C or SIGTERM.
pub async fn run(args: DevArgs) -> Result<()> {
    let started = Instant::now();
    let dot_env =
        std::env::var("CLOUDFLARE_LOAD_DEV_VARS_FROM_DOT_ENV").map_or(true, |v| v != "false");
    let config = WorkerConfig::load(
        &args.dir,
        &ConfigOverrides {
            env: args.env.clone(),
            vars: args.vars.clone(),
            dot_env,
        },
    )?;
    for warning in &config.warnings {
        logging::warn(warning);
    }
    let persist_root = args
        .persist_to
        .clone()
        .unwrap_or_else(|| config.root.join(".pyflare").join("state"));
    let crons = crate::cron::schedule::crons_from_config(&config)?;
    let clock = Arc::new(OffsetClock::default());
    let bindings = dispatch::open(&config, &persist_root, clock.clone())?;
    let runtime = tokio::task::spawn_blocking(Runtime::ensure)
        .await
        .context("runtime install task failed")??;

    let addr = SocketAddr::new(args.ip, args.port);
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        Hinted::new(
            format!("cannot listen on {addr}: {e}"),
            "another process may use this port; pass --port to choose another",
        )
    })?;
    let local = listener.local_addr()?;

    let socket_dir = tempfile::Builder::new()
        .prefix("pyflare-")
        .tempdir()
        .context("cannot create a folder for the host socket")?;
    let supervisor = Supervisor::spawn(HostSpec {
        runtime: runtime.clone(),
        init: worker_init(&config, &runtime, bindings.init),
        socket_dir: socket_dir.path().to_path_buf(),
        cpu_limit: Duration::from_millis(config.cpu_ms),
        bindings: Arc::new(bindings.map),
    });

    match supervisor.current().await {
        Slot::Ready(host) => tracing::debug!("host loaded in {} ms", host.startup_ms),
        Slot::Failed(_) => logging::warn("serving the error until the worker is fixed"),
        Slot::Starting | Slot::Stopped => {}
    }
    let host_for_url = if local.ip().is_unspecified() {
        "127.0.0.1".to_owned()
    } else {
        local.ip().to_string()
    };
    logging::info(&format!(
        "{} ({}) started in {} ms",
        config.name,
        config.main.display(),
        started.elapsed().as_millis()
    ));
    if !bindings.banner.is_empty() {
        logging::info("bindings:");
        for line in &bindings.banner {
            logging::info(&format!("  {line}"));
        }
    }
    if !crons.is_empty() {
        let list: Vec<&str> = crons.iter().map(|c| c.source.as_str()).collect();
        let state = if args.no_crons {
            "off (--no-crons)"
        } else {
            "on, UTC"
        };
        logging::info(&format!("cron triggers ({state}): {}", list.join(", ")));
    }
    if !args.no_crons {
        tokio::spawn(crate::cron::schedule::run_timer(
            supervisor.clone(),
            clock.clone(),
            crons,
        ));
    }
    // Tests and tools wait for this exact line.
    logging::ready(&format!("Ready on http://{host_for_url}:{}", local.port()));

    let app = server::router(AppState {
        supervisor: supervisor.clone(),
        authority: local.to_string(),
        clock,
    });
    let stopping = supervisor.clone();
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown_signal().await;
        logging::info("shutting down");
        stop(&stopping);
    })
    .await
    .context("the HTTP server failed")?;
    stop(&supervisor);
    drop(socket_dir);
    Ok(())
}

fn stop(supervisor: &Arc<Supervisor>) {
    supervisor.shutdown();
}

fn worker_init(config: &WorkerConfig, runtime: &Runtime, bindings: Vec<BindingInit>) -> WorkerInit {
    let python_modules = config.root.join("python_modules");
    WorkerInit {
        name: config.name.clone(),
        pyodide_dir: runtime.pyodide_dir.to_string_lossy().into_owned(),
        sdk_dir: runtime.sdk_dir.to_string_lossy().into_owned(),
        host_python_dir: runtime.host_python_dir.to_string_lossy().into_owned(),
        module_root: absolute(config.module_root()),
        main_module: config.main_module(),
        python_modules_dir: python_modules.is_dir().then(|| absolute(&python_modules)),
        compatibility_date: config.compatibility_date.clone(),
        compatibility_flags: config.compatibility_flags.clone(),
        vars: config.vars.clone(),
        bindings,
    }
}

fn absolute(path: &std::path::Path) -> String {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .to_string_lossy()
        .into_owned()
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
