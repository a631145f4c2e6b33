//! `subscriptions/listen` on `/mcp` (2026-07-28): one event stream per client request, opened
//! with the acknowledgement (the subset of list changes honoured, tagged with the request's id as
//! subscription id), then fed by the gateway's own list changes (a reload that changes the
//! routes) and by every visible upstream's: its own listen stream (2026 upstreams) or its session
//! stream (2025 upstreams), re-tagged. An upstream stream that drops is reopened, and the client
//! told its lists may have changed, since nothing is replayed.

use super::link::{self, LinkKind, peer_label};
use super::listen::{self, Open};
use super::{Shared, visible};
use crate::config::{Route, Snapshot};
use crate::ctx::{Ctx, Era};
use crate::error::GatewayError;
use crate::http;
use crate::mcp::jsonrpc::{self, Message};
use crate::mcp::sse;
use crate::policy::Caller;
use crate::upstream::{Exchange, Outgoing};
use bytes::Bytes;
use pingora::protocols::http::ServerSession as Session;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// The list changes a listen stream can carry, as the request names them and as notified.
const KINDS: [(&str, &str); 3] = [
    ("toolsListChanged", "notifications/tools/list_changed"),
    ("promptsListChanged", "notifications/prompts/list_changed"),
    (
        "resourcesListChanged",
        "notifications/resources/list_changed",
    ),
];

/// How long the acknowledgement waits for the upstream streams to open, at most.
const OPEN_WAIT: Duration = Duration::from_secs(2);

/// How long an upstream stream waits before it is reopened, at most.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Which of `KINDS` the client asked for.
fn wanted(params: Option<&RawValue>) -> [bool; 3] {
    let asked: Value = params
        .and_then(|p| serde_json::from_str::<Value>(p.get()).ok())
        .map(|p| p["notifications"].clone())
        .unwrap_or_default();
    KINDS.map(|(key, _)| asked[key] == json!(true))
}

/// The kind of a list-changed notification (its index in `KINDS`).
fn kind_of(data: &[u8]) -> Option<usize> {
    let (msg, _) = Message::parse(data).ok()?;
    let method = msg.method();
    KINDS.iter().position(|(_, m)| *m == method)
}

fn tagged(method: &str, id: &RawValue) -> Vec<u8> {
    let params = json!({"_meta": {"io.modelcontextprotocol/subscriptionId": id}});
    jsonrpc::notification(method, Some(&params))
}

/// Serves one listen request until the client leaves.
pub async fn listen(
    sh: &Arc<Shared>,
    s: &mut Session,
    ctx: &Ctx,
    snap: &Arc<Snapshot>,
    caller: &Arc<Caller>,
    msg: &Message<'_>,
    id: &RawValue,
) -> Result<(), GatewayError> {
    let wants = wanted(msg.params);
    // Each visible upstream's changes arrive here while this stream lives.
    let (tx, mut rx) = mpsc::channel::<usize>(16);
    let mut upstreams = tokio::task::JoinSet::new();
    let mut opened = Vec::new();
    if wants.iter().any(|w| *w) {
        for route in visible(snap, caller) {
            let (sh, snap, caller, tx) = (sh.clone(), snap.clone(), caller.clone(), tx.clone());
            let mut upstream_ctx = Ctx::new(snap.clone());
            upstream_ctx.era = Era::Stateless;
            upstream_ctx.caller_key = ctx.caller_key;
            let index = route.index;
            let (ready, is_ready) = oneshot::channel();
            opened.push(is_ready);
            upstreams.spawn(async move {
                if let Some(route) = snap.routes.get(index) {
                    follow(&sh, &upstream_ctx, &caller, route, wants, tx, ready).await;
                }
            });
        }
    }
    drop(tx);
    // The acknowledgement waits (briefly) for the upstream streams to be open, so a change made
    // right after it is not missed; a slow upstream does not hold it longer.
    let deadline = tokio::time::Instant::now() + ctx.snapshot.timeouts.list.min(OPEN_WAIT);
    for is_ready in opened {
        let _ = tokio::time::timeout_at(deadline, is_ready).await;
    }
    let mut honoured = Map::new();
    for (i, (key, _)) in KINDS.iter().enumerate() {
        if wants[i] {
            honoured.insert((*key).into(), Value::Bool(true));
        }
    }
    let ack = json!({
        "_meta": {"io.modelcontextprotocol/subscriptionId": id},
        "notifications": honoured,
    });
    let mut out = Vec::new();
    sse::write_event(
        &mut out,
        &jsonrpc::notification("notifications/subscriptions/acknowledged", Some(&ack)),
    );
    if http::sse_start(s, &[]).await.is_err()
        || s.write_response_body(Bytes::from(out), false)
            .await
            .is_err()
    {
        return Ok(());
    }
    sh.metrics.open_streams.inc();
    let _open = Open(&sh.metrics.open_streams);
    let mut generation = sh.live.subscribe();
    let mut seen = listen::fingerprint(snap, caller);
    let mut keepalive = tokio::time::interval(listen::KEEPALIVE);
    keepalive.tick().await;
    let mut stopping = sh.stopping.subscribe();
    loop {
        let mut out = Vec::new();
        tokio::select! {
            () = async { let _ = stopping.wait_for(|s| *s).await; } => {
                // The graceful end of a listen stream: its result, then the stream closes.
                let end = json!({
                    "resultType": "complete",
                    "_meta": {"io.modelcontextprotocol/subscriptionId": id},
                });
                sse::write_event(&mut out, &jsonrpc::success(id, &end));
                let _ = s.write_response_body(Bytes::from(out), true).await;
                return Ok(());
            }
            changed = generation.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                let now = listen::fingerprint(&sh.live.snapshot(), caller);
                if now == seen {
                    continue;
                }
                seen = now;
                for (i, (_, method)) in KINDS.iter().enumerate() {
                    if wants[i] {
                        sse::write_event(&mut out, &tagged(method, id));
                    }
                }
            }
            Some(kind) = rx.recv() => {
                if wants[kind] {
                    sse::write_event(&mut out, &tagged(KINDS[kind].1, id));
                }
            }
            _ = keepalive.tick() => out.extend_from_slice(b": keepalive\n\n"),
            _ = s.read_body_or_idle(true) => return Ok(()),
        }
        if out.is_empty() {
            continue;
        }
        if s.write_response_body(Bytes::from(out), false)
            .await
            .is_err()
        {
            return Ok(());
        }
    }
}

/// Follows one upstream's list changes for as long as the listener lives (its task is dropped
/// with the listen stream), reopening a dropped stream with backoff.
async fn follow(
    sh: &Shared,
    ctx: &Ctx,
    caller: &Caller,
    route: &Route,
    wants: [bool; 3],
    tx: mpsc::Sender<usize>,
    ready: oneshot::Sender<()>,
) {
    let mut backoff = Duration::from_secs(1);
    let mut reopened = false;
    let mut ready = Some(ready);
    loop {
        let ended = stream(sh, ctx, caller, route, wants, &tx, reopened, &mut ready).await;
        // Whatever happened, the acknowledgement need not wait for this upstream any longer.
        if let Some(ready) = ready.take() {
            let _ = ready.send(());
        }
        match ended {
            Ended::NotOffered | Ended::ListenerGone => return,
            Ended::Dropped => {}
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
        reopened = true;
    }
}

/// How an upstream stream ended.
enum Ended {
    /// It broke or the upstream closed it: reopened after a while.
    Dropped,
    /// The upstream offers no such stream: not followed.
    NotOffered,
    /// The client's listen stream is gone.
    ListenerGone,
}

/// One upstream stream, until it ends; `ready` is told once the stream is open. Once it is open
/// after a drop, every wanted kind is reported changed (what happened meanwhile is not replayed).
#[allow(clippy::too_many_arguments)]
async fn stream(
    sh: &Shared,
    ctx: &Ctx,
    caller: &Caller,
    route: &Route,
    wants: [bool; 3],
    tx: &mpsc::Sender<usize>,
    reopened: bool,
    ready: &mut Option<oneshot::Sender<()>>,
) -> Ended {
    let Some(link) = link::link(sh, ctx, caller, route).await else {
        return Ended::Dropped;
    };
    let id = sh.upstreams.own_id();
    let mut out = match link.kind {
        LinkKind::Stateless => {
            let mut filter = Map::new();
            for (i, (key, _)) in KINDS.iter().enumerate() {
                if wants[i] {
                    filter.insert((*key).into(), Value::Bool(true));
                }
            }
            let params = json!({"_meta": link::stateless_meta(), "notifications": filter});
            Outgoing::post(jsonrpc::request(&id, "subscriptions/listen", Some(&params)))
        }
        LinkKind::Session { .. } => {
            let mut out = Outgoing::post(Bytes::new());
            out.method = ::http::Method::GET;
            out
        }
    };
    let method = if link.kind == LinkKind::Stateless {
        "subscriptions/listen"
    } else {
        "GET"
    };
    link.apply(&mut out, method, None);
    let Ok(mut ex) = Exchange::send(&sh.upstreams.connector, &route.upstream, &out).await else {
        return Ended::Dropped;
    };
    if !(200..300).contains(&ex.status()) {
        log::debug!(
            "{method} stream of {} answered HTTP {}; not followed",
            peer_label(route),
            ex.status()
        );
        return Ended::NotOffered;
    }
    if let Some(ready) = ready.take() {
        let _ = ready.send(());
    }
    if reopened {
        // What changed while the stream was down is not replayed: the kept lists may be stale.
        sh.catalog.lists.changed(route.index);
        for (i, w) in wants.iter().enumerate() {
            if *w && tx.send(i).await.is_err() {
                return Ended::ListenerGone;
            }
        }
    }
    let sse = ex.is_sse();
    let mut reader = sse::Reader::default();
    let mut lines: Vec<u8> = Vec::new();
    let cap = ctx.snapshot.max_upstream_message_bytes;
    while let Ok(Some(chunk)) = ex.chunk().await {
        let mut kinds = Vec::new();
        if sse {
            reader.push(&chunk);
            while let Some(ev) = reader.next_event() {
                kinds.extend(kind_of(ev.data.as_bytes()));
            }
            if reader.pending() > cap {
                return Ended::Dropped;
            }
        } else {
            // Newline-delimited JSON in one chunked answer.
            lines.extend_from_slice(&chunk);
            while let Some(end) = lines.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = lines.drain(..=end).collect();
                kinds.extend(kind_of(&line));
            }
            if lines.len() > cap {
                return Ended::Dropped;
            }
        }
        if !kinds.is_empty() {
            sh.catalog.lists.changed(route.index);
        }
        for kind in kinds {
            if tx.send(kind).await.is_err() {
                return Ended::ListenerGone;
            }
        }
    }
    Ended::Dropped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_and_the_kinds_are_read_exactly() {
        let params: Box<RawValue> = jsonrpc::to_raw(&json!({
            "notifications": {"toolsListChanged": true, "promptsListChanged": false},
        }));
        assert_eq!(wanted(Some(&params)), [true, false, false]);
        assert_eq!(wanted(None), [false, false, false]);
        let changed = br#"{"jsonrpc":"2.0","method":"notifications/prompts/list_changed"}"#;
        assert_eq!(kind_of(changed), Some(1));
        let other = br#"{"jsonrpc":"2.0","method":"notifications/message","params":{}}"#;
        assert_eq!(kind_of(other), None);
    }
}
