//! The vitals host: loads collector plugins from the config, runs them, and serves the snapshot.

pub mod api;
pub mod check;
pub mod config;
pub mod loader;
pub mod scheduler;
pub mod store;
pub mod web;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use config::Config;
use scheduler::{CollectorHandle, CollectorSpec};
use store::Store;

/// How many recent errors the host keeps.
pub const ERROR_CAPACITY: usize = 200;

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

/// Loads and starts every enabled collector; load failures become that collector's state.
pub fn start_collectors(config: &Config, store: &Arc<Store>) -> Vec<CollectorHandle> {
    let exe = exe_dir();
    let mut handles = Vec::new();
    for (name, c) in &config.collectors {
        let deadline = c.effective_deadline();
        store.register(name, c.interval, deadline, c.enabled);
        if !c.enabled {
            tracing::info!(collector = %name, "disabled in the config");
            continue;
        }
        let loaded = config
            .resolve_library(name, c, exe.as_deref())
            .and_then(|path| loader::load(&path).map_err(|e| e.to_string()));
        match loaded {
            Ok(plugin) => {
                tracing::info!(
                    collector = %name,
                    plugin = %plugin.info.name,
                    version = %plugin.info.version,
                    api = %plugin.info.api_version,
                    library = %plugin.path.display(),
                    "plugin loaded"
                );
                let spec = CollectorSpec {
                    name: name.clone(),
                    interval: c.interval,
                    deadline,
                    config: table_to_json(&c.config),
                };
                handles.push(scheduler::spawn(spec, plugin, store.clone()));
            }
            Err(message) => {
                tracing::error!(collector = %name, "cannot load plugin: {message}");
                store.record_failure(name, &format!("cannot load plugin: {message}"), None, None);
            }
        }
    }
    handles
}

/// Runs the host until `shutdown` resolves: collectors, then the HTTP server on `bind`.
///
/// `on_listen` is told the address actually bound (useful with port 0).
///
/// # Errors
/// [`HostError::Bind`] when the address cannot be listened on.
pub async fn run(
    config: Config,
    bind: SocketAddr,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_listen: impl FnOnce(SocketAddr),
) -> Result<(), HostError> {
    let store = Arc::new(Store::new(config.history.points, ERROR_CAPACITY));
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .map_err(|source| HostError::Bind { addr: bind, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| HostError::Bind { addr: bind, source })?;
    let handles = start_collectors(&config, &store);
    on_listen(addr);

    let routes = api::routes(api::ApiState {
        store: store.clone(),
        mode: config.server.mode,
    });
    warp::serve(routes)
        .incoming(listener)
        .graceful(shutdown)
        .run()
        .await;
    tracing::info!("shutting down");
    for h in handles {
        h.stop().await;
    }
    Ok(())
}
