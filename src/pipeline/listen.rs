//! `GET /mcp`: a session's standalone SSE stream. The gateway tells the client here when its
//! merged lists change because the routes did (a reload added, removed, re-pointed or re-ruled a
//! route it sees; a change to routes it cannot see tells it nothing).

use super::{Shared, session};
use crate::config::Snapshot;
use crate::error::{Cause, GatewayError};
use crate::http;
use crate::mcp::{jsonrpc, sse};
use crate::policy::Caller;
use bytes::Bytes;
use pingora::protocols::http::ServerSession as Session;
use std::time::Duration;

/// An SSE comment this often keeps idle intermediaries from closing the stream.
pub(super) const KEEPALIVE: Duration = Duration::from_secs(15);

/// What this caller's merged lists are made of: which routes they see, under which prefixes,
/// where, under which policy. A reload that leaves it as it was tells this caller nothing.
pub(super) fn fingerprint(snap: &Snapshot, caller: &Caller) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    for r in super::visible(snap, caller) {
        (&r.name, &r.prefix, &r.upstream.url).hash(&mut h);
        format!("{:?}", r.policy).hash(&mut h);
    }
    h.finish()
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
    let mut seen = fingerprint(snap, caller);
    if http::sse_start(s, &[]).await.is_err() {
        return Ok(());
    }
    sh.metrics.open_streams.inc();
    let _open = Open(&sh.metrics.open_streams);
    let mut keepalive = tokio::time::interval(KEEPALIVE);
    keepalive.tick().await;
    let mut stopping = sh.stopping.subscribe();
    loop {
        let out = tokio::select! {
            () = async { let _ = stopping.wait_for(|s| *s).await; } => {
                // The process is stopping: reconnect in a second (to another instance, or
                // to the upgraded process).
                let _ = s.write_response_body(Bytes::from_static(b"retry: 1000\n\n"), true).await;
                return Ok(());
            }
            changed = generation.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                let now = fingerprint(&sh.live.snapshot(), caller);
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
            _ = s.read_body_or_idle(true) => return Ok(()),
        };
        if s.write_response_body(Bytes::from(out), false)
            .await
            .is_err()
        {
            return Ok(());
        }
    }
}
