//! Periodic work off the data path: upstream health probes (for `/readyz` and
//! `mcp_edge_upstream_up`) and eviction of idle rate-limit buckets.

use crate::config::Live;
use crate::metrics::Metrics;
use crate::upstream::all_within;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

const PROBE_EVERY: Duration = Duration::from_secs(5);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Bucket eviction runs every this many probe rounds.
const EVICT_EVERY: u32 = 6;

pub struct Housekeeping {
    pub live: Arc<Live>,
    pub metrics: Arc<Metrics>,
}

#[async_trait]
impl BackgroundService for Housekeeping {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(PROBE_EVERY);
        let mut probed: HashSet<String> = HashSet::new();
        let mut rounds = 0u32;
        let mut generation = self.live.subscribe();
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick() => {}
                // A new configuration is probed at once, so /readyz follows it.
                Ok(()) = generation.changed() => {}
            }
            self.probe(&mut probed).await;
            rounds += 1;
            if rounds.is_multiple_of(EVICT_EVERY) {
                for limiter in self.live.snapshot().limiters() {
                    limiter.evict_idle();
                }
            }
        }
    }
}

impl Housekeeping {
    /// Connects to every upstream once; removes the gauges of routes that are gone.
    async fn probe(&self, probed: &mut HashSet<String>) {
        let snap = self.live.snapshot();
        let probes = snap
            .routes
            .iter()
            .map(|r| tokio::net::TcpStream::connect(r.upstream.addr));
        let connected = all_within(PROBE_TIMEOUT, probes).await;
        let results: Vec<(&str, bool)> = snap
            .routes
            .iter()
            .zip(connected)
            .map(|(r, c)| (r.name.as_str(), c.is_some_and(|c| c.is_ok())))
            .collect();
        let up = &self.metrics.upstream_up;
        let current: HashSet<String> = results.iter().map(|(n, _)| n.to_string()).collect();
        for gone in probed.difference(&current) {
            let _ = up.remove_label_values(&[gone]);
        }
        for (name, ok) in results {
            up.with_label_values(&[name]).set(i64::from(ok));
        }
        *probed = current;
    }
}

/// Tells open event streams the process is stopping, as soon as the stop begins (before the
/// grace period), so they end with a reconnect hint instead of holding the shutdown.
pub struct StreamCloser {
    pub stopping: Arc<tokio::sync::watch::Sender<bool>>,
    pub draining: Arc<std::sync::atomic::AtomicBool>,
}

#[async_trait]
impl BackgroundService for StreamCloser {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let _ = shutdown.changed().await;
        self.draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.stopping.send_replace(true);
    }
}
