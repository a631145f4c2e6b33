//! Periodic work off the data path: upstream health probes (for `/readyz` and
//! `mcp_edge_upstream_up`) and eviction of idle rate-limit buckets.

use crate::gateway::Gateway;
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
    pub gateway: Arc<Gateway>,
}

#[async_trait]
impl BackgroundService for Housekeeping {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(PROBE_EVERY);
        let mut probed: HashSet<String> = HashSet::new();
        let mut rounds = 0u32;
        let mut generation = self.gateway.subscribe();
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
                for limiter in self.gateway.snapshot().limiters() {
                    limiter.evict_idle();
                }
            }
        }
    }
}

impl Housekeeping {
    /// Connects to every upstream once; removes the gauges of routes that are gone.
    async fn probe(&self, probed: &mut HashSet<String>) {
        let snap = self.gateway.snapshot();
        let results = futures::future::join_all(snap.routes.iter().map(|r| async move {
            let ok = tokio::time::timeout(
                PROBE_TIMEOUT,
                tokio::net::TcpStream::connect(r.upstream.addr),
            )
            .await
            .is_ok_and(|c| c.is_ok());
            (r.name.as_str(), ok)
        }))
        .await;
        let up = &self.gateway.metrics.upstream_up;
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
