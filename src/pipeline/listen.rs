//! `GET /mcp`: a session's standalone SSE stream. The gateway tells the client here when the
//! merged lists change because the routes did (a reload added, removed or re-pointed one).

use super::{Shared, session};
use crate::config::Snapshot;
use crate::error::{Cause, GatewayError};
use crate::http;
use crate::mcp::{jsonrpc, sse};
use crate::policy::Caller;
use bytes::Bytes;
use pingora::proxy::Session;
use std::time::Duration;

/// An SSE comment this often keeps idle intermediaries from closing the stream.
pub(super) const KEEPALIVE: Duration = Duration::from_secs(15);

/// What a client's merged lists are made of: which routes, under which prefixes, where.
pub(super) fn fingerprint(snap: &Snapshot) -> Vec<(String, String, String)> {
    snap.routes
        .iter()
        .map(|r| (r.name.clone(), r.prefix.clone(), r.upstream.url.clone()))
        .collect()
}

/// Decrements the open-streams gauge however the stream ends.
pub(super) struct Open<'g>(pub(super) &'g prometheus::IntGauge);

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

pub async fn serve(
    sh: &Shared,
    s: &mut Session,
    snap: &Snapshot,
    caller: &Caller,
) -> Result<(), GatewayError> {
    let accepts_sse = http::header(s, "accept").is_some_and(|a| {
        a.split(',').any(|t| {
            t.split(';')
                .next()
                .is_some_and(|t| t.trim() == "text/event-stream")
        })
    });
    if !accepts_sse {
        return Err(Cause::NotAcceptable("GET needs Accept: text/event-stream").into());
    }
    session::session_of(sh, s, caller).await?;
    let mut generation = sh.live.subscribe();
    let mut seen = fingerprint(snap);
    if http::sse_start(s, &[]).await.is_err() {
        return Ok(());
    }
    sh.metrics.open_streams.inc();
    let _open = Open(&sh.metrics.open_streams);
    let mut keepalive = tokio::time::interval(KEEPALIVE);
    keepalive.tick().await;
    loop {
        let out = tokio::select! {
            changed = generation.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                let now = fingerprint(&sh.live.snapshot());
                if now == seen {
                    continue;
                }
                seen = now;
                let mut out = Vec::new();
                for method in [
                    "notifications/tools/list_changed",
                    "notifications/prompts/list_changed",
                    "notifications/resources/list_changed",
                ] {
                    sse::write_event(&mut out, &jsonrpc::notification::<()>(method, None));
                }
                out
            }
            _ = keepalive.tick() => b": keepalive\n\n".to_vec(),
            _ = s.as_downstream_mut().read_body_or_idle(true) => return Ok(()),
        };
        if s.write_response_body(Some(Bytes::from(out)), false)
            .await
            .is_err()
        {
            return Ok(());
        }
    }
}
