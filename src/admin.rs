//! The admin listener (loopback by default): `/metrics` in Prometheus text format, `/healthz`
//! (the process answers), `/readyz` (configuration loaded and at least one upstream reachable).

use crate::config::Live;
use crate::metrics::Metrics;
use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use std::sync::Arc;

pub struct Admin {
    pub live: Arc<Live>,
    pub metrics: Arc<Metrics>,
}

fn answer(status: u16, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("content-length", body.len())
        .body(body)
        .unwrap_or_default()
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        match session.req_header().uri.path() {
            "/metrics" => answer(
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                self.metrics.render(),
            ),
            "/healthz" => answer(200, "text/plain", b"ok\n".to_vec()),
            "/readyz" => match self.readiness() {
                Ok(()) => answer(200, "text/plain", b"ready\n".to_vec()),
                Err(why) => answer(
                    503,
                    "text/plain",
                    format!("not ready: {why}\n").into_bytes(),
                ),
            },
            _ => answer(
                404,
                "text/plain",
                b"not found: try /metrics, /healthz or /readyz\n".to_vec(),
            ),
        }
    }
}

impl Admin {
    /// Ready: a configuration is loaded and at least one upstream accepted its health probe.
    fn readiness(&self) -> Result<(), &'static str> {
        let snap = self.live.snapshot();
        if snap.routes.is_empty() {
            return Err("no routes configured");
        }
        let up = snap.routes.iter().any(|r| {
            self.metrics
                .upstream_up
                .get_metric_with_label_values(&[&r.name])
                .is_ok_and(|g| g.get() == 1)
        });
        if up {
            Ok(())
        } else {
            Err("no upstream reachable")
        }
    }
}
