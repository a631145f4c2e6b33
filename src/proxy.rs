//! The one `ProxyHttp` implementation. Every MCP exchange is answered from `request_filter`:
//! the body must be read (routing needs the tool name), rewritten (ids, names) and the answer
//! re-identified, so upstream traffic goes through Pingora's pooled connector from there rather
//! than through the proxy phase, whose body replay stops at 64 KiB.

use crate::ctx::Ctx;
use crate::pipeline::{self, Shared};
use async_trait::async_trait;
use pingora::prelude::*;
use pingora::proxy::{ProxyHttp, Session};
use std::sync::Arc;

pub struct McpProxy {
    pub shared: Arc<Shared>,
}

#[async_trait]
impl ProxyHttp for McpProxy {
    type CTX = Ctx;

    /// Runs first for each request: pins one snapshot for the whole request.
    fn new_ctx(&self) -> Ctx {
        Ctx::new(self.shared.live.snapshot())
    }

    /// Runs the pipeline, which answers the request completely (`Ok(true)` tells Pingora it is
    /// done).
    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        if self
            .shared
            .draining
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            session.set_keepalive(None);
        }
        pipeline::run(&self.shared, session, ctx).await?;
        Ok(true)
    }

    /// Never reached: `request_filter` answers every request.
    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        Error::e_explain(
            ErrorType::InternalError,
            "mcp-edge answers every request in request_filter",
        )
    }

    /// Runs last for every request: the one place metrics and the audit record are emitted.
    async fn logging(&self, session: &mut Session, error: Option<&Error>, ctx: &mut Ctx) {
        pipeline::finish(&self.shared, session, error.is_some(), ctx);
    }
}
