//! Era bridging for a 2026-07-28 client in front of a 2025 upstream: a server request the
//! upstream sends during a call (elicitation, sampling, roots) becomes an `input_required` round.
//! The upstream call is held open on this instance; the client gets the request as its one
//! `inputRequests` entry and a `requestState` sealed under the session keys, bound to the caller
//! and the route, expiring. Its retry (the same call, with the answer and the state) sends the
//! answer to the upstream and goes on relaying the held call. A held call nobody comes back for
//! is cancelled upstream once it expires; a retry that reaches another instance is told so.

use super::Shared;
use super::link::Link;
use crate::config::Route;
use crate::ctx::Ctx;
use crate::error::{Cause, GatewayError};
use crate::mcp::jsonrpc::{self, Message, RawParams};
use crate::mcp::session::now_secs;
use crate::mcp::sse;
use crate::upstream::{self, Exchange, Outgoing};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::time::Duration;

/// How long a held call waits for the client's retry.
const HOLD: Duration = Duration::from_secs(300);
/// Held calls on one instance at most (each holds an upstream connection).
const MAX_HELD: usize = 10_000;
/// The key of the relayed request among `inputRequests`/`inputResponses`.
pub const KEY: &str = "mcp-edge.upstream";
const PURPOSE: &[u8] = b"mcp-edge held call v1";

/// Upstream calls waiting for their client's answer, by their random handle.
#[derive(Default)]
pub struct HeldCalls(std::sync::Mutex<HashMap<u128, Held>>);

impl HeldCalls {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u128, Held>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// One held upstream call: its stream, where it was in it, and what it asked.
pub struct Held {
    pub ex: Exchange,
    pub link: Link,
    pub reader: sse::Reader,
    /// The gateway's id of the call upstream (its final response carries it).
    pub upstream_id: Box<RawValue>,
    route: usize,
    caller: u64,
    /// The id of the upstream's own request, which the answer goes to.
    request_id: Box<RawValue>,
    expires: u64,
}

impl Held {
    pub fn new(ex: Exchange, link: Link, reader: sse::Reader, upstream_id: &RawValue) -> Self {
        Self {
            ex,
            link,
            reader,
            upstream_id: upstream_id.to_owned(),
            route: 0,
            caller: 0,
            request_id: RawValue::NULL.to_owned(),
            expires: 0,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct State {
    handle: u128,
    caller: u64,
    route: String,
    exp: u64,
}

/// Holds the call and gives the `input_required` result that asks the client what the
/// upstream's `request` asks; `None` when it is no request (the call then ends in error).
pub async fn hold(
    sh: &Shared,
    ctx: &Ctx,
    route: &Route,
    mut held: Held,
    request: &[u8],
) -> Option<Value> {
    let (msg, _) = Message::parse(request).ok()?;
    let params: Value = msg
        .params
        .and_then(|p| serde_json::from_str(p.get()).ok())
        .unwrap_or(json!({}));
    held.route = route.index;
    held.caller = ctx.caller_key;
    held.request_id = msg.id?.to_owned();
    held.expires = now_secs() + HOLD.as_secs();
    let handle: u128 = rand::random();
    let state = State {
        handle,
        caller: ctx.caller_key,
        route: route.name.clone(),
        exp: held.expires,
    };
    let expired = {
        let mut all = sh.held.lock();
        let now = now_secs();
        let gone: Vec<u128> = all
            .iter()
            .filter(|(_, h)| h.expires <= now)
            .map(|(n, _)| *n)
            .collect();
        let expired: Vec<Held> = gone.iter().filter_map(|n| all.remove(n)).collect();
        if all.len() >= MAX_HELD {
            return None;
        }
        all.insert(handle, held);
        expired
    };
    for old in expired {
        if let Some(route) = ctx.snapshot.routes.get(old.route) {
            super::forward::cancel(sh, route, &old.link, &old.upstream_id).await;
        }
    }
    Some(json!({
        "resultType": "input_required",
        "inputRequests": {KEY: {"method": msg.method(), "params": params}},
        "requestState": sh.sealer.seal_as(PURPOSE, &state),
    }))
}

/// The held call a retry continues, once the client's answer went to the upstream; `None` when
/// the request carries no state of a held call.
pub async fn resume(
    sh: &Shared,
    ctx: &Ctx,
    route: &Route,
    params: &RawParams<'_>,
    id: &RawValue,
) -> Result<Option<Held>, GatewayError> {
    let Some(token) = params
        .get("requestState")
        .and_then(|s| serde_json::from_str::<String>(s.get()).ok())
    else {
        return Ok(None);
    };
    let Some(state) = sh.sealer.open_as::<State>(PURPOSE, &token) else {
        return Ok(None);
    };
    let invalid = |why: &str| Cause::InvalidParams(format!("requestState: {why}")).to(id);
    if state.caller != ctx.caller_key || state.route != route.name {
        return Err(invalid("issued for another call"));
    }
    let held = sh.held.lock().remove(&state.handle);
    let Some(held) = held.filter(|h| h.caller == ctx.caller_key && h.expires > now_secs()) else {
        return Err(invalid(
            "the call it continues is gone (expired, already answered, or held by another instance)",
        ));
    };
    let answer = params
        .get("inputResponses")
        .and_then(|r| serde_json::from_str::<Map<String, Value>>(r.get()).ok())
        .and_then(|mut r| r.remove(KEY));
    let Some(answer) = answer else {
        super::forward::cancel(sh, route, &held.link, &held.upstream_id).await;
        return Err(invalid(
            "inputResponses does not answer `mcp-edge.upstream`",
        ));
    };
    let body = jsonrpc::response(&held.request_id, Some(&jsonrpc::to_raw(&answer)), None);
    let mut out = Outgoing::post(body);
    held.link.apply(&mut out, "", None);
    let sent = tokio::time::timeout(
        ctx.snapshot.timeouts.initialize,
        upstream::fire(&sh.upstreams.connector, &route.upstream, &out),
    )
    .await;
    if !matches!(sent, Ok(Ok(_))) {
        return Err(Cause::UpstreamUnavailable(route.name.clone()).to(id));
    }
    Ok(Some(held))
}
