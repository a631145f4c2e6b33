//! The last step, run from the `logging` hook for every request: metrics, and the audit record
//! handed to the slot reserved when the request began.

use super::Shared;
use crate::audit::Pending;
use crate::ctx::{Ctx, Outcome};
use pingora::protocols::http::ServerSession as Session;

pub fn finish(sh: &Shared, session: &Session, failed: bool, ctx: &mut Ctx) {
    let outcome = match (ctx.outcome, failed) {
        (Some(o), _) => o,
        // The client connection failed before an answer was recorded.
        (None, true) => Outcome::Cancelled,
        (None, false) => Outcome::Ok,
    };
    let snap = ctx.snapshot.clone();
    let route = ctx
        .route
        .and_then(|i| snap.routes.get(i))
        .map_or("-", |r| r.name.as_str());
    let m = &sh.metrics;
    m.requests
        .with_label_values(&[route, ctx.method, outcome.as_str()])
        .inc();
    m.request_seconds
        .with_label_values(&[route, ctx.method])
        .observe(ctx.started.elapsed().as_secs_f64());
    if let Some(t) = ctx.upstream_time {
        m.upstream_seconds
            .with_label_values(&[route])
            .observe(t.as_secs_f64());
    }
    if ctx.method == "tools/call" && route != "-" {
        let tool = ctx.tool.as_deref().unwrap_or("other");
        m.tool_calls
            .with_label_values(&[route, tool, outcome.as_str()])
            .inc();
    }
    let audited = ctx.audited();
    if let Some(slot) = ctx.slot.take()
        && audited
    {
        slot.send(Pending {
            at: std::time::SystemTime::now() - ctx.started.elapsed(),
            request_id: ctx.request_id.take(),
            session: match &ctx.era {
                crate::ctx::Era::Session(state) => Some(state.id),
                _ => None,
            },
            caller: ctx.caller.take(),
            method: ctx.method,
            route: (route != "-").then(|| route.to_string()),
            target: ctx.target.take(),
            body: ctx.body.take(),
            refused: ctx.refused.take(),
            outcome: outcome.as_str(),
            upstream_status: ctx.upstream_status,
            latency: ctx.started.elapsed(),
            bytes_in: session.body_bytes_read() as u64,
            bytes_out: session.body_bytes_sent() as u64,
        });
    }
}
