//! The MCP listener's HTTP application, on Pingora's HTTP server sessions (HTTP/1.1, h2 by ALPN,
//! h2c). Every request is answered by the pipeline: an MCP body must be read (routing needs the
//! tool name) and rewritten, and upstream traffic goes through Pingora's pooled connector from
//! there. Pingora's proxy state machine (`pingora-proxy`) is not used: the gateway never reaches
//! its proxy phases, and its per-request future held ~14 KB for every open connection
//! (bench/CONNECTIONS.md).

use crate::ctx::Ctx;
use crate::pipeline::{self, Shared};
use async_trait::async_trait;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, HttpServerOptions, ReusedHttpStream};
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;
use std::sync::Arc;
use std::sync::atomic::Ordering;

pub struct Edge {
    pub shared: Arc<Shared>,
    pub options: HttpServerOptions,
}

#[async_trait]
impl HttpServerApp for Edge {
    /// Each stage in a box of its own, freed when it ends: a connection waiting for its next
    /// request holds only the session and the read, an open stream only the session and the
    /// pipeline (bench/CONNECTIONS.md).
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        if !Box::pin(self.read(&mut session, shutdown)).await {
            return None;
        }
        Box::pin(self.serve(&mut session)).await?;
        let settings = HttpPersistentSettings::for_session(&session);
        match Box::pin(session.finish()).await {
            Ok(reusable) => reusable.map(|s| ReusedHttpStream::from_reusable_stream(s, settings)),
            Err(_) => None,
        }
    }

    fn server_options(&self) -> Option<&HttpServerOptions> {
        Some(&self.options)
    }
}

impl Edge {
    /// Reads the request head; false when the connection is done.
    async fn read(&self, session: &mut ServerSession, shutdown: &ShutdownWatch) -> bool {
        let mut stopping = shutdown.clone();
        // A request already on the wire is served; an idle connection ends with the process.
        let read = tokio::select! {
            biased;
            read = session.read_request() => read,
            _ = stopping.wait_for(|s| *s) => return false,
        };
        match read {
            Ok(true) => {}
            Ok(false) => return false,
            Err(e) => {
                if matches!(e.etype, pingora::ErrorType::InvalidHTTPHeader) {
                    let _ = session.respond_error(400).await;
                }
                return false;
            }
        }
        // Stopping or handing over: this answer closes its connection (see `Shared::draining`).
        if *shutdown.borrow() || self.shared.draining.load(Ordering::Relaxed) {
            session.set_keepalive(None);
        }
        true
    }

    /// Answers the request; `None` when the connection cannot be reused.
    async fn serve(&self, session: &mut ServerSession) -> Option<()> {
        // One snapshot for the whole request.
        let mut ctx = Ctx::new(self.shared.live.snapshot());
        let result = pipeline::run(&self.shared, session, &mut ctx).await;
        // The one place metrics and the audit record are emitted.
        pipeline::finish(&self.shared, session, result.is_err(), &mut ctx);
        if result.is_err() {
            if session.response_written().is_none() {
                let _ = session.respond_error(500).await;
            }
            return None;
        }
        Some(())
    }
}
