//! The vitals host: loads collector plugins from the config, runs them, and serves the snapshot.

pub mod alerts;
pub mod api;
pub mod check;

pub mod config;
pub mod control;
pub mod guard;
pub mod host_root;
pub mod loader;
pub mod projection;
pub mod recorder;
pub mod scheduler;
pub mod store;
pub mod watch;
pub mod web;
pub mod worker;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use config::Config;
use control::Control;
use store::Store;

/// Why the host could not start.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The listening socket could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A non-loopback address without tokens, and no explicit opt-out.
    #[error(
        "refusing to serve the admin API on {0} without authentication: add [[server.tokens]] \
         (see `vitals hash-token`), bind a loopback address, or set \
         `allow_unauthenticated_remote = true` in [server] if this is really wanted"
    )]
    Unauthenticated(SocketAddr),
}

/// The folder of the running `vitals` binary, searched for plugins last.
pub fn exe_dir() -> Option<PathBuf> {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(PathBuf::from))
}

/// Converts a collector's TOML config table to the JSON the plugin receives.
pub fn table_to_json(table: &toml::Table) -> serde_json::Value {
    serde_json::to_value(table).unwrap_or(serde_json::Value::Object(Default::default()))
}

/// Once the durable history has opened, lists in `/errors` what went wrong opening it: a
/// corrupt store moved aside, or a store that cannot be used at all.
async fn report_history_start(store: Arc<Store>, recorder: Arc<recorder::Recorder>) {
    use recorder::RecorderState;
    let mut waited = std::time::Duration::ZERO;
    let step = std::time::Duration::from_millis(100);
    while recorder.status().state == RecorderState::Starting
        && waited < std::time::Duration::from_secs(60)
    {
        tokio::time::sleep(step).await;
        waited += step;
    }
    let status = recorder.status();
    if let Some(recovered) = &status.recovered {
        store.push_error("history", recovered);
    }
    if status.state == RecorderState::Unavailable {
        let reason = status.reason.unwrap_or_default();
        store.push_error(
            "history",
            &format!("the durable history is not available: {reason}"),
        );
    }
}

/// What the running host needs besides its config.
pub struct RunOptions {
    /// Listen here instead of `server.bind`.
    pub bind: SocketAddr,
    /// The config file, watched for changes (none for the built-in default).
    pub config_path: Option<PathBuf>,
}

/// Runs the host until `shutdown` resolves; `reload` fires a config reload (SIGHUP).
///
/// `on_listen` is told the address actually bound (useful with port 0).
///
/// # Errors
/// [`HostError`] when the server cannot start.
pub async fn run(
    config: Config,
    options: RunOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
    mut reload: tokio::sync::mpsc::Receiver<()>,
    on_listen: impl FnOnce(SocketAddr),
) -> Result<(), HostError> {
    let bind = options.bind;
    if !bind.ip().is_loopback()
        && config.server.tokens.is_empty()
        && !config.server.allow_unauthenticated_remote
    {
        return Err(HostError::Unauthenticated(bind));
    }
    let store = Arc::new(Store::new(config.history.points, config.server.max_errors));
    let recorder = Arc::new(if config.history.persist {
        recorder::Recorder::start(recorder::RecorderConfig {
            path: config.history.store_path(&config.base_dir),
            retention: vitals_history::Retention {
                raw: config.history.raw,
                minute: config.history.minute,
                hour: config.history.hour,
                budget_bytes: config.history.budget.0,
            },
            flush_interval: config.history.flush_interval,
        })
    } else {
        recorder::Recorder::disabled()
    });
    store.set_recorder(recorder.clone());
    tokio::spawn(report_history_start(store.clone(), recorder.clone()));
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .map_err(|source| HostError::Bind { addr: bind, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| HostError::Bind { addr: bind, source })?;

    let control = Control::new(
        store.clone(),
        &config,
        options.config_path.clone(),
        exe_dir(),
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut server_config = config.server.clone();
    server_config.bind = bind;
    let alerts = alerts::start(store.clone(), control.alerts_config(), stop_rx.clone());
    control.apply(config).await;
    if let Some(path) = options.config_path {
        tokio::spawn(watch::watch_file(control.clone(), path, stop_rx.clone()));
    }
    {
        let control = control.clone();
        let mut stopped = stop_rx.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    r = reload.recv() => match r {
                        Some(()) => { let _ = control.reload().await; }
                        None => return,
                    },
                    _ = stopped.changed() => return,
                }
            }
        });
    }
    on_listen(addr);
    store.event(
        "host",
        "started",
        &format!("vitals started, listening on {addr}"),
    );

    let mut state = api::ApiState::new(store.clone(), &server_config, stop_rx, control.clone());
    state.alerts = alerts;
    let routes = api::routes(state);
    let graceful = async move {
        shutdown.await;
        // Ends every event stream, so the server's graceful shutdown does not wait on them.
        let _ = stop_tx.send(true);
    };
    let limits = api::serve::Limits {
        header_read_timeout: server_config.header_read_timeout,
        // Event streams write a keep-alive each `keep_alive`: never idle for that long.
        idle_timeout: server_config.idle_timeout.max(server_config.keep_alive * 2),
        max_connections: server_config.max_connections,
        max_connections_per_client: server_config.max_connections_per_client,
        fd_reserve: server_config.fd_reserve,
        shutdown_timeout: server_config.shutdown_timeout,
    };
    api::serve::serve(listener, routes, limits, graceful).await;
    tracing::info!("shutting down");
    control.stop_all().await;
    store.event("host", "stopped", "vitals stopped");
    recorder.stop(std::time::Duration::from_secs(5)).await;
    Ok(())
}
