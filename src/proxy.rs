//! The one `ProxyHttp` implementation. Every MCP exchange is answered from `request_filter`:
//! the body must be read (routing needs the tool name), rewritten (ids, names) and the answer
//! re-identified, so upstream traffic goes through Pingora's pooled connector from there rather
//! than through the proxy phase, whose body replay stops at 64 KiB.

use crate::audit::Pending;
use crate::ctx::{Ctx, Outcome, Record};
use crate::gateway::Gateway;
use async_trait::async_trait;
use pingora::prelude::*;
use pingora::proxy::{ProxyHttp, Session};
use std::sync::Arc;

pub struct McpProxy {
    pub gateway: Arc<Gateway>,
}

#[async_trait]
impl ProxyHttp for McpProxy {
    type CTX = Ctx;

    /// Runs first for each request: pins one snapshot for the whole request.
    fn new_ctx(&self) -> Ctx {
        Ctx {
            snapshot: self.gateway.snapshot(),
            record: Record::default(),
        }
    }

    /// Answers the request completely (`Ok(true)` tells Pingora it is done).
    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        self.gateway
            .serve(session, &ctx.snapshot, &mut ctx.record)
            .await?;
        Ok(true)
    }

    /// Never reached: `request_filter` answers every request.
    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        Error::e_explain(
            ErrorType::InternalError,
            "mcp-edge answers every request in request_filter",
        )
    }

    /// Runs last for every request: the one place metrics are recorded.
    async fn logging(&self, session: &mut Session, error: Option<&Error>, ctx: &mut Ctx) {
        let rec = &ctx.record;
        let outcome = match (rec.outcome, error) {
            (Some(o), _) => o,
            // The client connection failed before an answer was recorded.
            (None, Some(_)) => Outcome::Cancelled,
            (None, None) => Outcome::Ok,
        };
        let route = rec
            .route
            .and_then(|i| ctx.snapshot.routes.get(i))
            .map_or("-", |r| r.name.as_str());
        let m = &self.gateway.metrics;
        m.requests
            .with_label_values(&[route, rec.method, outcome.as_str()])
            .inc();
        m.request_seconds
            .with_label_values(&[route, rec.method])
            .observe(rec.started.elapsed().as_secs_f64());
        if let Some(t) = rec.upstream_time {
            m.upstream_seconds
                .with_label_values(&[route])
                .observe(t.as_secs_f64());
        }
        if rec.method == "tools/call" && route != "-" {
            let tool = rec.tool.as_deref().unwrap_or("other");
            m.tool_calls
                .with_label_values(&[route, tool, outcome.as_str()])
                .inc();
        }
        let audited = rec.audited();
        let rec = &mut ctx.record;
        if let Some(slot) = rec.slot.take()
            && audited
        {
            slot.send(Pending {
                at: std::time::SystemTime::now() - rec.started.elapsed(),
                request_id: rec.request_id.take(),
                session: rec.session,
                caller: rec.caller.take(),
                method: rec.method,
                route: rec
                    .route
                    .and_then(|i| ctx.snapshot.routes.get(i))
                    .map(|r| r.name.clone()),
                target: rec.target.take(),
                body: rec.body.take(),
                refused: rec.reason.take(),
                outcome: outcome.as_str(),
                upstream_status: rec.upstream_status,
                latency: rec.started.elapsed(),
                bytes_in: session.body_bytes_read() as u64,
                bytes_out: session.body_bytes_sent() as u64,
            });
        }
    }
}
