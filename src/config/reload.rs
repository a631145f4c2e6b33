//! Live configuration: a file watcher on the config and routes directories (debounced; editors'
//! rename-writes and Kubernetes ConfigMap symlink swaps are directory events too) and SIGHUP both
//! trigger a reload. A valid change is compiled and swapped in; an invalid one is logged with
//! every error, counted, and the last good snapshot keeps serving.

use crate::config::{self, Live};
use crate::mcp::session::now_secs;
use crate::metrics::Metrics;
use async_trait::async_trait;
use notify::{RecursiveMode, Watcher};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Changes closer together than this are one reload.
const DEBOUNCE: Duration = Duration::from_millis(150);

pub struct Reloader {
    pub live: Arc<Live>,
    pub metrics: Arc<Metrics>,
    pub config_path: PathBuf,
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if event.is_ok_and(|e| !e.kind.is_access()) {
                let _ = tx.send(());
            }
        });
        let mut watcher = match watcher {
            Ok(w) => Some(w),
            Err(e) => {
                log::error!("cannot watch the configuration ({e}); reload with SIGHUP");
                None
            }
        };
        if let Some(w) = &mut watcher {
            for dir in self.watched_dirs() {
                if let Err(e) = w.watch(&dir, RecursiveMode::NonRecursive) {
                    log::error!("cannot watch {}: {e}; reload with SIGHUP", dir.display());
                }
            }
        }
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            Ok(s) => Some(s),
            Err(e) => {
                log::error!("cannot handle SIGHUP: {e}");
                None
            }
        };
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                Some(()) = rx.recv() => {
                    // Debounce: wait until the directory has been quiet for a moment.
                    while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, rx.recv()).await {}
                    self.reload("a file changed").await;
                }
                Some(()) = async { match &mut hangup { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    self.reload("SIGHUP").await;
                }
            }
        }
    }
}

impl Reloader {
    fn watched_dirs(&self) -> Vec<PathBuf> {
        let conf_dir = self
            .config_path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let mut dirs = vec![conf_dir];
        if let Some(routes) = self.live.snapshot().routes_dir.clone()
            && !dirs.contains(&routes)
        {
            dirs.push(routes);
        }
        dirs
    }

    async fn reload(&self, why: &str) {
        let path = self.config_path.clone();
        // Loading reads files and resolves upstream hosts: blocking work, off the data path.
        let loaded = tokio::task::spawn_blocking(move || config::load(&path)).await;
        let metrics = &self.metrics;
        match loaded {
            Ok(Ok(snapshot)) => {
                let old = self.live.snapshot();
                for setting in restart_needed(&old, &snapshot) {
                    log::warn!(
                        "configuration reload: `{setting}` changed; it takes effect after a restart"
                    );
                }
                let generation = self.live.install(snapshot);
                metrics.config_generation.set(generation as i64);
                metrics.config_last_success.set(now_secs() as f64);
                metrics.reloads.with_label_values(&["ok"]).inc();
                log::info!("configuration reloaded ({why}): generation {generation}");
            }
            Ok(Err(errors)) => {
                metrics.reloads.with_label_values(&["error"]).inc();
                for e in &errors.0 {
                    log::error!("configuration reload rejected: {e}");
                }
                log::error!(
                    "configuration reload ({why}) rejected with {} error(s); still serving generation {}",
                    errors.0.len(),
                    self.live.generation()
                );
            }
            Err(e) => {
                metrics.reloads.with_label_values(&["error"]).inc();
                log::error!("configuration reload failed: {e}");
            }
        }
    }
}

/// Settings that are read once at start.
fn restart_needed(old: &config::Snapshot, new: &config::Snapshot) -> Vec<&'static str> {
    let mut changed = Vec::new();
    if old.listen != new.listen {
        changed.push("listen");
    }
    if old.admin_listen != new.admin_listen {
        changed.push("admin.listen");
    }
    if old.server != new.server {
        changed.push("server");
    }
    if old.session_keys != new.session_keys {
        changed.push("sessions.keys");
    }
    if old.routes_dir != new.routes_dir {
        changed.push("routes_dir");
    }
    if old.session_store != new.session_store {
        changed.push("sessions.store");
    }
    if old.limit_store != new.limit_store {
        changed.push("limits.store");
    }
    if old.audit != new.audit {
        changed.push("audit");
    }
    changed
}
