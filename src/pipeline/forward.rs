//! Forwarding a routed call (`tools/call`, `resources/read`, `prompts/get`, …) on `/mcp`: the
//! request rewritten with the gateway's own id and progress token, and the upstream's answer
//! streamed back event by event with ids and tokens mapped back to the client's.

mod answers;

use super::held::{self, Held};
use super::link::{self, Link, LinkKind};
use super::{Shared, bridge};
use crate::config::Route;
use crate::ctx::{Ctx, Era, Outcome};
use crate::error::{Cause, GatewayError};
use crate::http;
use crate::mcp::jsonrpc::{self, RawParams};
use crate::mcp::rewrite::{
    Ending, Rewriter, add_stateless_meta, strip_stateless_meta, swap_progress_token, upstream_id,
};
use crate::mcp::sse;
use crate::policy::Caller;
use crate::upstream::{Exchange, Outgoing, UpstreamError};
use answers::{answer_json, bad_status, refused};
use bytes::Bytes;
use pingora::protocols::http::ServerSession as Session;
use serde_json::value::RawValue;
use std::time::Duration;
use tokio::time::Instant;

/// One proxied call, ready to send.
struct Call<'a> {
    route: &'a Route,
    method: &'a str,
    /// The upstream's name of the tool or prompt, or its URI (for `Mcp-Name`).
    name: Option<&'a str>,
    body: Bytes,
    /// The body for a link of the other era, and whether that link is stateless: a stateless
    /// client's request without the revision's `_meta` keys (a 2025 upstream refuses them inside
    /// its session), or a session client's request with them (a 2026-only upstream needs them).
    other_body: Option<(bool, Bytes)>,
    /// The `Mcp-Param-*` headers toward a stateless upstream, from the tool's annotations.
    param_headers: Vec<(String, String)>,
    /// The client's answer is already an open event stream (an approval was asked on it).
    streaming: bool,
    /// The most of an upstream answer read whole (a JSON answer, one SSE event).
    cap: usize,
    /// The upstream's HTTP status, once it answered (for the audit record).
    status: std::sync::atomic::AtomicU16,
    rw: Rewriter<'a>,
}

fn too_large(id: &RawValue, route: &Route, cap: usize) -> GatewayError {
    Cause::UpstreamTooLarge {
        route: route.name.clone(),
        cap,
    }
    .to(id)
}

/// How one upstream exchange of a call ended.
enum Step {
    /// Answered (the client has the answer).
    Done(Outcome),
    /// A 2026 upstream's `input_required` for a 2025 session client, to be driven through the
    /// session (`bridge`); `started`: the client's answer is already an event stream.
    Input { result: Vec<u8>, started: bool },
    /// A 2025 upstream's server request for a 2026 client: the upstream call is held open
    /// (`bridge::hold`) while the client answers an `input_required` round.
    Asks {
        request: Vec<u8>,
        reader: sse::Reader,
    },
}

fn outcome_of(ending: Ending) -> Outcome {
    match ending {
        Ending::Result => Outcome::Ok,
        Ending::ToolError => Outcome::ToolError,
        Ending::Error | Ending::InputRequired | Ending::ServerRequest => Outcome::Error,
    }
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
    mcp_name: Option<&str>,
    listing: Option<&super::catalog::Tool>,
    mut params: RawParams<'_>,
    id: &RawValue,
    streaming: bool,
) -> Result<(), GatewayError> {
    let base_id = upstream_id(ctx.caller_key, id);
    // A stateless client's retry that answers a held call continues that call.
    let mut resumed = match ctx.era {
        Era::Stateless => Box::pin(held::resume(sh, ctx, route, &params, id)).await?,
        _ => None,
    };
    let first_id = match &resumed {
        Some(h) => h.upstream_id.clone(),
        None => jsonrpc::to_raw(&base_id),
    };
    let client_token = swap_progress_token(&mut params, &first_id);
    let mut streaming = streaming;
    let mut round = 0;
    let started = Instant::now();
    let result = loop {
        // Each round of a bridged call is a new request upstream, with an id of its own.
        let upstream_id = match round {
            0 => first_id.clone(),
            n => jsonrpc::to_raw(&format!("{base_id}:round{n}")),
        };
        // A held call resumes on its own link; a new one gets its link first, as the body for
        // a session client differs toward an upstream that speaks only the stateless revision.
        let link = match &resumed {
            Some(_) => None,
            None => match link::link(sh, ctx, caller, route).await {
                Some(link) => Some(link),
                None => break Err(unavailable(id, route)),
            },
        };
        let to_stateless = link.as_ref().is_some_and(|l| l.kind == LinkKind::Stateless);
        let mut call = prepare(
            ctx,
            route,
            method,
            mcp_name,
            &params,
            &upstream_id,
            id,
            streaming,
            to_stateless,
        );
        call.rw.client_token = client_token.clone();
        call.param_headers =
            crate::mcp::params::for_call(listing.map_or(&[], |t| &t.annotations), &params);
        let deadline = Instant::now() + route.timeout;
        let step = match (resumed.take(), link) {
            (Some(h), _) => Ok(Box::pin(relay_stream(
                sh, s, ctx, &call, h.ex, h.link, h.reader, deadline,
            ))
            .await),
            (None, Some(link)) => forward(sh, s, ctx, caller, &call, link, deadline).await,
            (None, None) => Err(unavailable(id, route)),
        };
        ctx.upstream_status =
            Some(call.status.load(std::sync::atomic::Ordering::Relaxed)).filter(|s| *s != 0);
        match step {
            Ok(Step::Input { result, started }) => {
                streaming |= started;
                round += 1;
                match bridge::ask(sh, s, ctx, route, &result, id, &mut streaming, round).await {
                    Ok(answers) => answers.apply(&mut params),
                    Err(e) => break Err(e),
                }
            }
            Ok(Step::Done(outcome)) => break Ok(outcome),
            // Held and answered inside `relay_stream`.
            Ok(Step::Asks { .. }) => break Ok(Outcome::Error),
            Err(e) => break Err(e),
        }
    };
    ctx.upstream_time = Some(started.elapsed());
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
            let _ = s.write_response_body(Bytes::from(out), true).await;
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// One upstream request of a call: the body for each era's link and the answer's rewriter;
/// `to_stateless`: the link goes to an upstream that speaks only the stateless revision.
#[allow(clippy::too_many_arguments)]
fn prepare<'a>(
    ctx: &Ctx,
    route: &'a Route,
    method: &'a str,
    mcp_name: Option<&'a str>,
    params: &RawParams<'_>,
    upstream_id: &'a RawValue,
    id: &'a RawValue,
    streaming: bool,
    to_stateless: bool,
) -> Call<'a> {
    let other_body = match &ctx.era {
        Era::Stateless => {
            let mut legacy = params.clone();
            strip_stateless_meta(&mut legacy);
            Some((
                false,
                jsonrpc::rebuild(method, Some(upstream_id), Some(&legacy)),
            ))
        }
        Era::Session(state) if to_stateless => {
            let mut modern = params.clone();
            add_stateless_meta(&mut modern, &state.capabilities);
            Some((
                true,
                jsonrpc::rebuild(method, Some(upstream_id), Some(&modern)),
            ))
        }
        _ => None,
    }
    .map(|(stateless, body)| (stateless, Bytes::from(body)));
    Call {
        route,
        method,
        name: mcp_name,
        other_body,
        param_headers: Vec::new(),
        cap: ctx.snapshot.max_upstream_message_bytes,
        body: Bytes::from(jsonrpc::rebuild(method, Some(upstream_id), Some(params))),
        streaming,
        status: std::sync::atomic::AtomicU16::new(0),
        rw: Rewriter {
            route: &route.name,
            upstream_id,
            client_id: id,
            client_token: None,
            stateless: matches!(ctx.era, Era::Stateless).then_some(method),
        },
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
    mut link: Link,
    deadline: Instant,
) -> Result<Step, GatewayError> {
    let (route, id) = (call.route, call.rw.client_id);
    let session_lost = || Cause::SessionNotFound.to(id);
    let mut relinked = false;
    let mut ex = loop {
        let sent = {
            let body = match &call.other_body {
                Some((stateless, b)) if *stateless == (link.kind == LinkKind::Stateless) => {
                    b.clone()
                }
                _ => call.body.clone(),
            };
            let mut out = Outgoing::post(body);
            link.apply(&mut out, call.method, call.name);
            if link.kind == LinkKind::Stateless {
                out.params = &call.param_headers;
            }
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
            link = Box::pin(link::relink(sh, ctx, caller, route, Some(&link.kind)))
                .await
                .ok_or_else(session_lost)?;
            continue;
        }
        if (400..500).contains(&status) {
            // The upstream refused the request itself (a missing client capability, bad
            // params): its JSON-RPC error goes to the client with its code and status.
            return Box::pin(refused(sh, s, ex, call, deadline))
                .await
                .map(Step::Done);
        }
        if !(200..300).contains(&status) {
            ex.finish(&sh.upstreams.connector, &route.upstream).await;
            return Err(bad_status(call, status));
        }
        break ex;
    };
    if ex.is_sse() {
        let reader = sse::Reader::default();
        return Ok(Box::pin(relay_stream(sh, s, ctx, call, ex, link, reader, deadline)).await);
    }
    let body = match tokio::time::timeout_at(deadline, ex.collect_at_most(call.cap)).await {
        Err(_) => return Err(timed_out(id, route)),
        Ok(Err(UpstreamError::TooLarge)) => return Err(too_large(id, route, call.cap)),
        Ok(Err(_)) => return Err(unavailable(id, route)),
        Ok(Ok(b)) => b,
    };
    ex.finish(&sh.upstreams.connector, &route.upstream).await;
    answer_json(s, call, &body).await
}

/// Relays an SSE answer (a new one, or a held one resumed); a server request for a 2026 client
/// holds the call and ends this answer with the `input_required` round that asks it.
#[allow(clippy::too_many_arguments)]
async fn relay_stream(
    sh: &Shared,
    s: &mut Session,
    ctx: &Ctx,
    call: &Call<'_>,
    mut ex: Exchange,
    link: Link,
    reader: sse::Reader,
    deadline: Instant,
) -> Step {
    let (request, reader) = match stream(sh, s, &mut ex, call, deadline, &link, reader).await {
        Step::Asks { request, reader } => (request, reader),
        step => return step,
    };
    let kept = Held::new(ex, link, reader, call.rw.upstream_id);
    let asked = Box::pin(held::hold(sh, ctx, call.route, kept, &request)).await;
    let (answer, outcome) = match &asked {
        Some(result) => (jsonrpc::success(call.rw.client_id, result), Outcome::Ok),
        None => (
            Cause::CannotRelay(format!(
                "upstream `{}` asked the client for input that could not be held for it",
                call.route.name
            ))
            .to(call.rw.client_id)
            .body(),
            Outcome::Error,
        ),
    };
    let mut out = Vec::new();
    sse::write_event(&mut out, &answer);
    let _ = s.write_response_body(Bytes::from(out), true).await;
    Step::Done(outcome)
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
    mut reader: sse::Reader,
) -> Step {
    let (route, rw) = (call.route, &call.rw);
    let cap = call.cap;
    if !call.streaming && http::sse_start(s, &[]).await.is_err() {
        cancel(sh, route, link, rw.upstream_id).await;
        return Step::Done(Outcome::Cancelled);
    }
    loop {
        let next = tokio::select! {
            r = tokio::time::timeout_at(deadline, ex.chunk()) => r,
            _ = s.read_body_or_idle(true) => {
                log::debug!("client left during a call to {}; cancelling upstream", route.name);
                cancel(sh, route, link, rw.upstream_id).await;
                return Step::Done(Outcome::Cancelled);
            }
        };
        let mut failure = match next {
            Err(_) => Some(timed_out(rw.client_id, route)),
            Ok(Err(_)) | Ok(Ok(None)) => Some(unavailable(rw.client_id, route)),
            Ok(Ok(Some(chunk))) => {
                reader.push(&chunk);
                None
            }
        };
        let mut out = Vec::new();
        let mut done = None;
        let mut input = None;
        while let Some(ev) = reader.next_event() {
            if let Some((data, fin)) = rw.message(ev.data.as_bytes()) {
                if fin == Some(Ending::InputRequired) {
                    input = Some(data.into_owned());
                    break;
                }
                if fin == Some(Ending::ServerRequest) {
                    if !out.is_empty() {
                        let _ = s.write_response_body(Bytes::from(out), false).await;
                    }
                    let request = data.into_owned();
                    return Step::Asks { request, reader };
                }
                sse::write_event(&mut out, &data);
                done = fin.map(outcome_of);
            }
            if done.is_some() {
                break;
            }
        }
        if let Some(result) = input {
            // The round is the gateway's to drive: the stream stays open for it.
            if !out.is_empty() {
                let _ = s.write_response_body(Bytes::from(out), false).await;
            }
            return Step::Input {
                result,
                started: true,
            };
        }
        // One event without end must not grow without end: past the cap the call ends and the
        // connection is dropped (not pooled), which returns its memory.
        if failure.is_none() && done.is_none() && reader.pending() > cap {
            log::warn!(
                "{} to upstream {}: one event exceeds {cap} bytes; call ended",
                call.method,
                link::peer_label(route)
            );
            failure = Some(too_large(rw.client_id, route, cap));
        }
        if let Some(e) = &failure
            && done.is_none()
        {
            sse::write_event(&mut out, &e.body());
            done = Some(e.outcome());
            cancel(sh, route, link, rw.upstream_id).await;
        }
        if (!out.is_empty() || done.is_some())
            && s.write_response_body(Bytes::from(out), done.is_some())
                .await
                .is_err()
        {
            cancel(sh, route, link, rw.upstream_id).await;
            return Step::Done(Outcome::Cancelled);
        }
        if let Some(outcome) = done {
            if failure.is_none() {
                // Let the upstream end its stream so the connection can be reused; one that
                // does not (it still waits for something, e.g. an answer the client cannot
                // give) is told the request is over.
                let ended = tokio::time::timeout(Duration::from_secs(1), async {
                    while let Ok(Some(_)) = ex.chunk().await {}
                })
                .await;
                if ended.is_err() {
                    cancel(sh, route, link, rw.upstream_id).await;
                }
            }
            return Step::Done(outcome);
        }
    }
}

/// Tells the upstream to stop working on a request the client no longer waits for.
pub(super) async fn cancel(sh: &Shared, route: &Route, link: &Link, upstream_id: &RawValue) {
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
