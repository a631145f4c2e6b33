//! Forwarding a routed call (`tools/call`, `resources/read`, `prompts/get`, …) on `/mcp`: the
//! request rewritten with the gateway's own id and progress token, and the upstream's answer
//! streamed back event by event with ids and tokens mapped back to the client's.

use super::Shared;
use super::link::{self, Link, LinkKind};
use crate::config::Route;
use crate::ctx::{Ctx, Era, Outcome};
use crate::error::{Cause, GatewayError};
use crate::http;
use crate::mcp::jsonrpc::{self, Kind, Message, RawParams};
use crate::mcp::sse;
use crate::policy::Caller;
use crate::upstream::{Exchange, Outgoing};
use bytes::Bytes;
use pingora::proxy::Session;
use serde_json::Value;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::time::Duration;
use tokio::time::Instant;

/// Prefix of the ids of upstream requests (sampling, elicitation) relayed to the client.
pub const RELAY_PREFIX: &str = "mcp-edge:";

/// The id the gateway gives a client's request upstream. Derived, not stored, so that a
/// `notifications/cancelled` reaching any instance maps to the same upstream id; it names the
/// caller, so one caller's cancellation can never name another's request.
pub fn upstream_id(caller_key: u64, client_id: &RawValue) -> String {
    format!("c:{caller_key:016x}:{}", client_id.get())
}

/// One proxied call, ready to send.
struct Call<'a> {
    route: &'a Route,
    method: &'a str,
    /// The upstream's name of the tool or prompt (for `Mcp-Name`).
    name: Option<&'a str>,
    body: Bytes,
    /// The body for an upstream session when the client is stateless: the revision's `_meta`
    /// keys left out (a 2025-era upstream refuses a 2026 request inside its session).
    session_body: Option<Bytes>,
    /// The client's answer is already an open event stream (an approval was asked on it).
    streaming: bool,
    /// The upstream's HTTP status, once it answered (for the audit record).
    status: std::sync::atomic::AtomicU16,
    rw: Rewriter<'a>,
}

/// How one upstream answer is mapped back to the client.
struct Rewriter<'a> {
    route: &'a str,
    upstream_id: &'a RawValue,
    client_id: &'a RawValue,
    client_token: Option<Box<RawValue>>,
}

impl Rewriter<'_> {
    /// The client's form of one upstream message, with the call's outcome when it is the final
    /// response.
    fn message(&self, data: &[u8]) -> Option<(Cow<'static, [u8]>, Option<Outcome>)> {
        let (msg, kind) = Message::parse(data).ok()?;
        match kind {
            Kind::Response if msg.id.map(RawValue::get) == Some(self.upstream_id.get()) => {
                let outcome = match msg.result {
                    None => Outcome::Error,
                    Some(r) if is_tool_error(r) => Outcome::ToolError,
                    Some(_) => Outcome::Ok,
                };
                let answer = jsonrpc::reid_response(&msg, self.client_id);
                Some((Cow::Owned(answer), Some(outcome)))
            }
            Kind::Response => None,
            Kind::Notification if msg.method() == "notifications/progress" => {
                let client_token = self.client_token.as_ref()?;
                let mut params = jsonrpc::split_params(msg.params).ok()?;
                let token = params.get("progressToken")?;
                if token.get() != self.upstream_id.get() {
                    return None;
                }
                params.insert("progressToken".into(), Cow::Borrowed(client_token.as_ref()));
                let out = jsonrpc::rebuild("notifications/progress", None, Some(&params));
                Some((Cow::Owned(out), None))
            }
            Kind::Notification => Some((Cow::Owned(data.to_vec()), None)),
            Kind::Request => {
                let id =
                    jsonrpc::to_raw(&format!("{RELAY_PREFIX}{}:{}", self.route, msg.id_text()));
                let params = jsonrpc::split_params(msg.params).ok()?;
                let out = jsonrpc::rebuild(&msg.method(), Some(&id), Some(&params));
                Some((Cow::Owned(out), None))
            }
        }
    }
}

/// Whether a result says `isError: true` (read without building the rest of it).
fn is_tool_error(result: &RawValue) -> bool {
    #[derive(serde::Deserialize)]
    struct Flag {
        #[serde(rename = "isError", default)]
        is_error: bool,
    }
    serde_json::from_str::<Flag>(result.get()).is_ok_and(|f| f.is_error)
}

fn unavailable(id: &RawValue, route: &Route) -> GatewayError {
    Cause::UpstreamUnavailable(route.name.clone()).to(id)
}

fn timed_out(id: &RawValue, route: &Route) -> GatewayError {
    Cause::UpstreamTimeout {
        route: route.name.clone(),
        secs: route.timeout.as_secs_f64(),
    }
    .to(id)
}

/// Sends a routed call upstream with the gateway's own id and progress token, and answers the
/// client as the upstream answers; the outcome and upstream timing go on `ctx`.
#[allow(clippy::too_many_arguments)]
pub async fn call(
    sh: &Shared,
    s: &mut Session,
    ctx: &mut Ctx,
    caller: &Caller,
    route: &Route,
    method: &str,
    upstream_name: Option<&str>,
    mut params: RawParams<'_>,
    id: &RawValue,
    streaming: bool,
) -> Result<(), GatewayError> {
    let upstream_id = jsonrpc::to_raw(&upstream_id(ctx.caller_key, id));
    let client_token = swap_progress_token(&mut params, &upstream_id);
    let session_body = if matches!(ctx.era, Era::Stateless) {
        let mut legacy = params.clone();
        strip_stateless_meta(&mut legacy);
        Some(Bytes::from(jsonrpc::rebuild(
            method,
            Some(&upstream_id),
            Some(&legacy),
        )))
    } else {
        None
    };
    let call = Call {
        route,
        method,
        name: upstream_name,
        session_body,
        body: Bytes::from(jsonrpc::rebuild(method, Some(&upstream_id), Some(&params))),
        streaming,
        status: std::sync::atomic::AtomicU16::new(0),
        rw: Rewriter {
            route: &route.name,
            upstream_id: &upstream_id,
            client_id: id,
            client_token,
        },
    };
    let started = Instant::now();
    let result = forward(sh, s, ctx, caller, &call, started + route.timeout).await;
    ctx.upstream_time = Some(started.elapsed());
    ctx.upstream_status =
        Some(call.status.load(std::sync::atomic::Ordering::Relaxed)).filter(|s| *s != 0);
    match result {
        Ok(outcome) => {
            ctx.outcome = Some(outcome);
            Ok(())
        }
        Err(e) if streaming => {
            // The answer is already an event stream: the error is its last event.
            ctx.outcome = Some(e.outcome());
            let mut out = Vec::new();
            sse::write_event(&mut out, &e.body());
            let _ = s.write_response_body(Some(Bytes::from(out)), true).await;
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Sends the call upstream (re-opening a forgotten upstream session once) and answers the
/// client; the outcome either way.
async fn forward(
    sh: &Shared,
    s: &mut Session,
    ctx: &Ctx,
    caller: &Caller,
    call: &Call<'_>,
    deadline: Instant,
) -> Result<Outcome, GatewayError> {
    let (route, id) = (call.route, call.rw.client_id);
    let session_lost = || Cause::SessionNotFound.to(id);
    let mut link = link::link(sh, ctx, caller, route)
        .await
        .ok_or_else(|| unavailable(id, route))?;
    let mut relinked = false;
    let mut ex = loop {
        let sent = {
            let body = match (&call.session_body, &link.kind) {
                (Some(b), LinkKind::Session { .. }) => b.clone(),
                _ => call.body.clone(),
            };
            let mut out = Outgoing::post(body);
            link.apply(&mut out, call.method, call.name);
            let send = Exchange::send(&sh.upstreams.connector, &route.upstream, &out);
            tokio::time::timeout_at(deadline, send).await
        };
        let ex = match sent {
            Err(_) => return Err(timed_out(id, route)),
            Ok(Err(e)) => {
                log::warn!(
                    "{} to upstream {} failed: {e}",
                    call.method,
                    link::peer_label(route)
                );
                return Err(unavailable(id, route));
            }
            Ok(Ok(ex)) => ex,
        };
        let status = ex.status();
        call.status
            .store(status, std::sync::atomic::Ordering::Relaxed);
        let has_session = link.has_session();
        if status == 404 && has_session {
            ex.finish(&sh.upstreams.connector, &route.upstream).await;
            if relinked {
                return Err(session_lost());
            }
            relinked = true;
            link = link::relink(sh, ctx, caller, route)
                .await
                .ok_or_else(session_lost)?;
            continue;
        }
        if !(200..300).contains(&status) {
            log::warn!(
                "{} to upstream {} answered HTTP {status}",
                call.method,
                link::peer_label(route)
            );
            ex.finish(&sh.upstreams.connector, &route.upstream).await;
            return Err(Cause::UpstreamStatus {
                route: route.name.clone(),
                status,
            }
            .to(id));
        }
        break ex;
    };
    if ex.is_sse() {
        return Ok(stream(sh, s, &mut ex, call, deadline, &link).await);
    }
    let body = match tokio::time::timeout_at(deadline, ex.collect()).await {
        Err(_) => return Err(timed_out(id, route)),
        Ok(Err(_)) => return Err(unavailable(id, route)),
        Ok(Ok(b)) => b,
    };
    ex.finish(&sh.upstreams.connector, &route.upstream).await;
    match call.rw.message(&body) {
        Some((answer, Some(outcome))) if call.streaming => {
            let mut out = Vec::new();
            sse::write_event(&mut out, &answer);
            let _ = s.write_response_body(Some(Bytes::from(out)), true).await;
            Ok(outcome)
        }
        Some((answer, Some(outcome))) => {
            http::json(s, 200, answer.into_owned(), &[]).await.ok();
            Ok(outcome)
        }
        _ => {
            log::warn!(
                "{} to upstream {}: answer is not a JSON-RPC response to our request",
                call.method,
                link::peer_label(route)
            );
            Err(Cause::UpstreamInvalid(route.name.clone()).to(id))
        }
    }
}

/// Relays an SSE answer event by event until the final response, the deadline, or the
/// client leaving (then the upstream request is cancelled).
async fn stream(
    sh: &Shared,
    s: &mut Session,
    ex: &mut Exchange,
    call: &Call<'_>,
    deadline: Instant,
    link: &Link,
) -> Outcome {
    let (route, rw) = (call.route, &call.rw);
    if !call.streaming && http::sse_start(s, &[]).await.is_err() {
        cancel(sh, route, link, rw.upstream_id).await;
        return Outcome::Cancelled;
    }
    let mut reader = sse::Reader::default();
    loop {
        let next = tokio::select! {
            r = tokio::time::timeout_at(deadline, ex.chunk()) => r,
            _ = s.as_downstream_mut().read_body_or_idle(true) => {
                log::debug!("client left during a call to {}; cancelling upstream", route.name);
                cancel(sh, route, link, rw.upstream_id).await;
                return Outcome::Cancelled;
            }
        };
        let failure = match next {
            Err(_) => Some(timed_out(rw.client_id, route)),
            Ok(Err(_)) | Ok(Ok(None)) => Some(unavailable(rw.client_id, route)),
            Ok(Ok(Some(chunk))) => {
                reader.push(&chunk);
                None
            }
        };
        let mut out = Vec::new();
        let mut done = None;
        while let Some(ev) = reader.next_event() {
            if let Some((data, fin)) = rw.message(ev.data.as_bytes()) {
                sse::write_event(&mut out, &data);
                done = fin;
            }
            if done.is_some() {
                break;
            }
        }
        if let Some(e) = &failure
            && done.is_none()
        {
            sse::write_event(&mut out, &e.body());
            done = Some(e.outcome());
            cancel(sh, route, link, rw.upstream_id).await;
        }
        if (!out.is_empty() || done.is_some())
            && s.write_response_body(Some(Bytes::from(out)), done.is_some())
                .await
                .is_err()
        {
            cancel(sh, route, link, rw.upstream_id).await;
            return Outcome::Cancelled;
        }
        if let Some(outcome) = done {
            if failure.is_none() {
                // Let the upstream end its stream so the connection can be reused.
                let _ = tokio::time::timeout(Duration::from_secs(1), async {
                    while let Ok(Some(_)) = ex.chunk().await {}
                })
                .await;
            }
            return outcome;
        }
    }
}

/// Tells the upstream to stop working on a request the client no longer waits for.
async fn cancel(sh: &Shared, route: &Route, link: &Link, upstream_id: &RawValue) {
    let params = serde_json::json!({"requestId": upstream_id, "reason": "client disconnected"});
    let body = jsonrpc::notification("notifications/cancelled", Some(&params));
    let mut out = Outgoing::post(body);
    link.apply(&mut out, "notifications/cancelled", None);
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        crate::upstream::fire(&sh.upstreams.connector, &route.upstream, &out),
    )
    .await;
}

/// Leaves the stateless revision's own `_meta` keys out of `params` (and `_meta` itself when
/// nothing else is in it).
fn strip_stateless_meta(params: &mut RawParams<'_>) {
    let Some(meta) = params.get("_meta") else {
        return;
    };
    let Ok(mut meta) = serde_json::from_str::<serde_json::Map<String, Value>>(meta.get()) else {
        return;
    };
    meta.remove(crate::mcp::META_PROTOCOL_VERSION);
    meta.remove(crate::mcp::META_CLIENT_CAPABILITIES);
    if meta.is_empty() {
        params.remove("_meta");
    } else {
        params.insert("_meta".into(), Cow::Owned(jsonrpc::to_raw(&meta)));
    }
}

/// Replaces the client's progress token with the gateway's; returns the client's.
fn swap_progress_token(params: &mut RawParams<'_>, ours: &RawValue) -> Option<Box<RawValue>> {
    let meta = params.get("_meta")?;
    let mut meta: serde_json::Map<String, Value> = serde_json::from_str(meta.get()).ok()?;
    let theirs = meta.get("progressToken")?.clone();
    meta.insert(
        "progressToken".into(),
        serde_json::from_str(ours.get()).unwrap_or_default(),
    );
    params.insert("_meta".into(), Cow::Owned(jsonrpc::to_raw(&meta)));
    Some(jsonrpc::to_raw(&theirs))
}
