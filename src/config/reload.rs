//! Live configuration: a file watcher on the config and routes directories (debounced; editors'
//! rename-writes and Kubernetes ConfigMap symlink swaps are directory events too) and SIGHUP both
//! trigger a reload. Only the configuration file and route files count (a log or an editor's swap
//! file beside them does not), and files that say what they said before are no change: no new
//! generation, no refetch, no notification. A valid change is compiled and swapped in; an
//! invalid one is logged with every error, counted, and the last good snapshot keeps serving.

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
        let mut names: Vec<_> = self.config_path.file_name().into_iter().collect();
        let snapshot = self.live.snapshot();
        let certs = snapshot.tls.as_ref().map_or(&[][..], |t| &t.files[..]);
        names.extend(certs.iter().filter_map(|f| f.file_name()));
        let names: Vec<_> = names.into_iter().map(ToOwned::to_owned).collect();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let relevant = event.is_ok_and(|e| {
                !e.kind.is_access() && e.paths.iter().any(|p| is_configuration(p, &names))
            });
            if relevant {
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
                    self.reload("a file changed", false).await;
                }
                Some(()) = async { match &mut hangup { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    // An operator's explicit reload also takes changed secret files and DNS.
                    self.reload("SIGHUP", true).await;
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
        let snapshot = self.live.snapshot();
        let certs = snapshot.tls.as_ref().map_or(&[][..], |t| &t.files[..]);
        let cert_dirs = certs
            .iter()
            .filter_map(|f| f.parent().map(Path::to_path_buf));
        let mut dirs = vec![conf_dir];
        for dir in snapshot.routes_dir.clone().into_iter().chain(cert_dirs) {
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
        dirs
    }

    async fn reload(&self, why: &str, always: bool) {
        let path = self.config_path.clone();
        // Loading reads files and resolves upstream hosts: blocking work, off the data path.
        let loaded = tokio::task::spawn_blocking(move || config::load(&path)).await;
        let metrics = &self.metrics;
        match loaded {
            Ok(Ok(snapshot)) => {
                let old = self.live.snapshot();
                if !always && snapshot.sources == old.sources {
                    log::debug!("configuration files unchanged ({why}); nothing to reload");
                    return;
                }
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

/// Whether a changed path can change the configuration: the configuration file or a certificate
/// file (`names`), a route file (`*.yaml`, `*.yml`), or a Kubernetes ConfigMap's or Secret's
/// `..data` link swap. Logs, editors' swap files and anything else in those directories are not.
fn is_configuration(path: &Path, names: &[std::ffi::OsString]) -> bool {
    let Some(name) = path.file_name() else {
        return false;
    };
    let text = name.to_string_lossy();
    names.iter().any(|n| n == name)
        || text.starts_with("..")
        || matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) && !text.starts_with('.')
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
    if old.tls.is_some() != new.tls.is_some()
        || old.tls.as_ref().map(|t| t.http2) != new.tls.as_ref().map(|t| t.http2)
    {
        changed.push("tls (on or off, http2)");
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

#[cfg(test)]
mod tests {
    use super::is_configuration;
    use std::path::Path;

    #[test]
    fn only_configuration_files_trigger_a_reload() {
        let conf = &["mcp-edge.yaml".into(), "edge.crt".into()];
        for yes in [
            "/c/mcp-edge.yaml",
            "/r/alpha.yaml",
            "/r/beta.yml",
            "/r/..data",
            "/r/..2026_v2",
            "/etc/tls/edge.crt",
        ] {
            assert!(is_configuration(Path::new(yes), conf), "{yes}");
        }
        for no in [
            "/c/gateway.log",
            "/c/.mcp-edge.yaml.swp",
            "/r/alpha.yaml~",
            "/r/.alpha.yaml.swp",
            "/r/notes.txt",
            "/etc/tls/other.crt",
        ] {
            assert!(!is_configuration(Path::new(no), conf), "{no}");
        }
    }
}
