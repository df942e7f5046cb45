//! `pyflare dev [DIR]`: serve a Python Worker on http://127.0.0.1:8787.

use anyhow::{Context, Result};
use clap::Args;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::config::{ConfigOverrides, WorkerConfig};
use crate::cron::Cron;
use crate::dispatch::{self, OpenBindings};
use crate::error::Hinted;
use crate::host::protocol::{BindingInit, WorkerInit};
use crate::host::supervisor::{HostSpec, Slot, Supervisor};
use crate::logging;
use crate::runtime::Runtime;
use crate::server::{self, AppState};
use crate::tasks::BackgroundTasks;
use pyflare_bindings::OffsetClock;

/// Cloudflare's memory limit per isolate, in MB (MiB, as V8 counts):
/// https://developers.cloudflare.com/workers/platform/limits/#memory
const DEFAULT_MEMORY_LIMIT_MB: u64 = 128;

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
    /// Find changed files by scanning the project every 0.5 s instead of
    /// file events (for bind mounts and network filesystems that deliver
    /// none); also PYFLARE_WATCH=poll.
    #[arg(long, conflicts_with = "no_reload")]
    pub watch_poll: bool,
    /// Do not use memory snapshots (every start imports the worker afresh).
    #[arg(long)]
    pub no_snapshot: bool,
    /// Memory limit of the worker's isolate, in MB: Pyodide's memory plus
    /// the JavaScript heap (Cloudflare's limit is 128; 0 turns it off).
    #[arg(long, value_name = "MB", default_value_t = DEFAULT_MEMORY_LIMIT_MB)]
    pub memory_limit: u64,
    /// Do not fire cron triggers on schedule (/cdn-cgi/handler/scheduled still works).
    #[arg(long)]
    pub no_crons: bool,
    /// Largest request body accepted, as your Cloudflare plan's limit
    /// (Free and Pro 100MB, Business 200MB, Enterprise 500MB); larger
    /// bodies get Cloudflare's 413.
    #[arg(long, value_name = "SIZE", default_value = "100MB", value_parser = server::limits::parse_size)]
    pub max_body_size: u64,
}

/// Everything read from the project for one version of the worker.
struct Loaded {
    config: WorkerConfig,
    crons: Vec<Cron>,
    bindings: OpenBindings,
}

fn load(args: &DevArgs, clock: &Arc<OffsetClock>) -> Result<Loaded> {
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
    if let Some(warning) = &config.unexpected_fields {
        // As wrangler prints it, on stderr.
        eprintln!("{warning}");
    }
    for warning in &config.warnings {
        logging::warn(warning);
    }
    let persist_root = config.persist_root(args.persist_to.as_deref());
    let crons = crate::cron::schedule::crons_from_config(&config)?;
    let bindings = dispatch::open(&config, &persist_root, clock.clone())?;
    Ok(Loaded {
        config,
        crons,
        bindings,
    })
}

fn host_spec(
    loaded: Loaded,
    runtime: &Runtime,
    socket_dir: &std::path::Path,
    args: &DevArgs,
) -> HostSpec {
    let snapshots = !args.no_snapshot;
    let mut init = worker_init(&loaded.config, runtime, loaded.bindings.init);
    init.memory_limit_bytes = args.memory_limit.saturating_mul(1024 * 1024);
    if snapshots {
        let path = |p: std::path::PathBuf| Some(p.to_string_lossy().into_owned());
        let paths = crate::snapshot::paths_for(&runtime.snapshot_dir, &init);
        init.snapshot_path = path(paths.dedicated);
        init.baseline_snapshot_path = path(paths.baseline);
        init.packages_snapshot_path = paths.packages.and_then(path);
        // After the paths above have marked this worker's snapshots used.
        crate::snapshot::prune(&runtime.snapshot_dir, crate::snapshot::cache_bound());
    }
    HostSpec {
        runtime: runtime.clone(),
        init,
        socket_dir: socket_dir.to_path_buf(),
        cpu_limit: Duration::from_millis(loaded.config.cpu_ms),
        bindings: Arc::new(loaded.bindings.map),
        standby: !args.no_reload && snapshots,
    }
}

/// Runs `pyflare dev` until Ctrl-C or SIGTERM.
pub async fn run(args: DevArgs) -> Result<()> {
    let started = Instant::now();
    let watch_mode = crate::reload::WatchMode::choose(
        args.watch_poll,
        std::env::var("PYFLARE_WATCH").ok().as_deref(),
    )?;
    if crate::cli::sync::needed(&args.dir) {
        // As `pywrangler dev` does: dependencies first.
        let dir = args.dir.clone();
        tokio::task::spawn_blocking(move || crate::cli::sync::sync(&dir))
            .await
            .context("sync task failed")??;
    }
    let clock = Arc::new(OffsetClock::default());
    let loaded = load(&args, &clock)?;
    // Every binding opened by this run (reloads open new ones), closed on a clean stop.
    let opened: Opened = Arc::default();
    remember(&opened, &loaded);
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
    let name = loaded.config.name.clone();
    let main = loaded.config.main.clone();
    let root = loaded.config.root.clone();
    let banner = loaded.bindings.banner.clone();
    let crons = Arc::new(RwLock::new(loaded.crons.clone()));
    let first_bindings = loaded.bindings.map.clone();
    let assets: server::SharedAssets = Arc::new(RwLock::new(loaded.bindings.assets.clone()));
    warn_about_assets(&loaded.bindings);
    let supervisor = Supervisor::spawn(host_spec(loaded, &runtime, socket_dir.path(), &args));

    let how = match supervisor.current().await {
        Slot::Ready(host) => match host.origin.as_str() {
            "restored" => "from a snapshot",
            "baseline" => "from the baseline snapshot",
            "packages" => "from the packages snapshot",
            _ => "without a snapshot",
        },
        Slot::Failed(_) => {
            logging::warn("serving the error until the worker is fixed");
            "with an error"
        }
        Slot::Starting | Slot::Stopped => "",
    };
    let host_for_url = if local.ip().is_unspecified() {
        "127.0.0.1".to_owned()
    } else {
        local.ip().to_string()
    };
    logging::info(&format!(
        "{name} ({}) started in {} ms, {how}",
        main.display(),
        started.elapsed().as_millis()
    ));
    if !banner.is_empty() {
        logging::info("bindings:");
        for line in &banner {
            logging::info(&format!("  {line}"));
        }
    }
    {
        let list: Vec<String> = read(&crons).iter().map(|c| c.source.clone()).collect();
        if !list.is_empty() {
            let state = if args.no_crons {
                "off (--no-crons)"
            } else {
                "on, UTC"
            };
            logging::info(&format!("cron triggers ({state}): {}", list.join(", ")));
        }
    }
    let tasks = Arc::new(BackgroundTasks::new(
        clock.clone(),
        Arc::new(supervisor.dispatcher()),
    ));
    tasks.replace_bindings(&first_bindings);
    if !args.no_crons {
        let crons = crons.clone();
        tasks.spawn_own(|cx| crate::cron::schedule::timer(cx, crons));
    }
    let _watcher = if args.no_reload {
        None
    } else {
        start_reloading(
            &args,
            &root,
            &clock,
            &runtime,
            socket_dir.path(),
            &supervisor,
            &crons,
            &assets,
            &opened,
            &tasks,
            watch_mode,
        )
    };
    // Tests and tools wait for this exact line.
    logging::ready(&format!("Ready on http://{host_for_url}:{}", local.port()));

    let app = AppState {
        supervisor: supervisor.clone(),
        authority: local.to_string(),
        clock,
        max_body_bytes: args.max_body_size,
        internal_from_any: internal_routes_from_any()?,
        assets: assets.clone(),
    };
    let stopping = supervisor.clone();
    server::listen::serve(
        listener,
        app,
        server::listen::Timeouts::from_env(),
        async move {
            shutdown_signal().await;
            logging::info("shutting down");
            stop(&stopping);
        },
    )
    .await;
    // A short run (start, a few requests, stop) still leaves its snapshot.
    supervisor.finish_snapshots(Duration::from_secs(5)).await;
    tasks.stop().await;
    stop(&supervisor);
    close_bindings(&opened).await;
    drop(socket_dir);
    Ok(())
}

type Opened = Arc<std::sync::Mutex<Vec<Arc<dyn pyflare_bindings::Binding>>>>;

fn remember(opened: &Opened, loaded: &Loaded) {
    opened
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .extend(loaded.bindings.map.values().cloned());
}

/// Lets every binding leave its storage complete on disk (D1 empties its
/// write-ahead log into the `.sqlite3` file).
async fn close_bindings(opened: &Opened) {
    let bindings = std::mem::take(&mut *opened.lock().unwrap_or_else(|p| p.into_inner()));
    for binding in bindings {
        if let Err(e) = binding.close().await {
            logging::warn(&e);
        }
    }
}

/// Says what pyflare does not apply of the worker's static assets.
fn warn_about_assets(bindings: &OpenBindings) {
    for warning in bindings.assets.iter().flat_map(|a| a.warnings()) {
        logging::warn(&warning);
    }
}

/// Whether every path in `changed` is a static asset: the front serves
/// those from the folder as saved, so the worker needs no reload. Not when
/// the assets folder holds the project's code too.
fn only_assets(
    changed: &[std::path::PathBuf],
    assets: &server::SharedAssets,
    project: &std::path::Path,
) -> bool {
    let Some(assets) = assets.read().unwrap_or_else(|p| p.into_inner()).clone() else {
        return false;
    };
    let canonical = |p: &std::path::Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    let folder = assets.directory();
    let real = canonical(folder);
    // A deleted file has no canonical path: its folder has.
    let inside = |path: &std::path::PathBuf| {
        let path = path.parent().map_or_else(
            || canonical(path),
            |p| canonical(p).join(path.file_name().unwrap_or_default()),
        );
        path.starts_with(&real) || path.starts_with(folder)
    };
    !changed.is_empty() && !canonical(project).starts_with(&real) && changed.iter().all(inside)
}

fn read(crons: &RwLock<Vec<Cron>>) -> std::sync::RwLockReadGuard<'_, Vec<Cron>> {
    crons.read().unwrap_or_else(|p| p.into_inner())
}

/// Watches the project; each saved change reloads the worker.
#[allow(
    clippy::too_many_arguments,
    reason = "each is one piece of the running dev session the reload task keeps"
)]
fn start_reloading(
    args: &DevArgs,
    root: &std::path::Path,
    clock: &Arc<OffsetClock>,
    runtime: &Runtime,
    socket_dir: &std::path::Path,
    supervisor: &Arc<Supervisor>,
    crons: &Arc<RwLock<Vec<Cron>>>,
    assets: &server::SharedAssets,
    opened: &Opened,
    tasks: &Arc<BackgroundTasks>,
    mode: crate::reload::WatchMode,
) -> Option<crate::reload::ProjectWatcher> {
    let (watcher, mut changes) = match crate::reload::watch(root, mode) {
        Ok(pair) => pair,
        Err(e) => {
            logging::warn(&format!(
                "live reload is off: cannot watch {}: {e}",
                root.display()
            ));
            return None;
        }
    };
    if watcher.mode == crate::reload::WatchMode::Poll {
        logging::info(&format!(
            "live reload: scanning the project every {} ms",
            crate::reload::POLL_INTERVAL.as_millis()
        ));
    }
    let opened = opened.clone();
    let tasks = tasks.clone();
    let assets = assets.clone();
    let (args, clock, runtime, socket_dir, supervisor, crons, root) = (
        args.clone(),
        clock.clone(),
        runtime.clone(),
        socket_dir.to_path_buf(),
        supervisor.clone(),
        crons.clone(),
        root.to_path_buf(),
    );
    tokio::spawn(async move {
        while let Some(paths) = changes.recv().await {
            if only_assets(&paths, &assets, &args.dir) {
                // Served from the folder as saved: nothing to reload.
                continue;
            }
            let shown: Vec<String> = paths
                .iter()
                .take(3)
                .map(|p| p.strip_prefix(&root).unwrap_or(p).display().to_string())
                .collect();
            logging::info(&format!("{} changed; reloading", shown.join(", ")));
            tracing::debug!("reload requested");
            match load(&args, &clock) {
                Ok(loaded) => {
                    remember(&opened, &loaded);
                    tasks.replace_bindings(&loaded.bindings.map);
                    *crons.write().unwrap_or_else(|p| p.into_inner()) = loaded.crons.clone();
                    warn_about_assets(&loaded.bindings);
                    *assets.write().unwrap_or_else(|p| p.into_inner()) =
                        loaded.bindings.assets.clone();
                    supervisor.reload(host_spec(loaded, &runtime, &socket_dir, &args));
                }
                Err(error) => {
                    logging::error(&format!(
                        "not reloading: {}",
                        crate::error::render(&error).trim_start_matches("pyflare: error: ")
                    ));
                }
            }
        }
    });
    Some(watcher)
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
        snapshot_path: None,
        baseline_snapshot_path: None,
        packages_snapshot_path: None,
        packages: Vec::new(),
        dylibs: Vec::new(),
        take_snapshots: false,
        memory_limit_bytes: 0,
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

/// `PYFLARE_INTERNAL_ROUTES`: `loopback` (the default) or `any`.
fn internal_routes_from_any() -> Result<bool> {
    match std::env::var("PYFLARE_INTERNAL_ROUTES").ok().as_deref() {
        None | Some("" | "loopback") => Ok(false),
        Some("any") => Ok(true),
        Some(other) => Err(Hinted::new(
            format!("PYFLARE_INTERNAL_ROUTES is `{other}`"),
            "set it to `loopback` (the default) or `any`",
        )
        .into()),
    }
}
