//! Messages on `/mcp` that are not requests: client notifications (cancellations and roots
//! changes go to every upstream of the caller), the client's answers to relayed upstream
//! requests (back to that upstream, original id) and to the gateway's approval questions, and
//! `logging/setLevel`, sent to every upstream with the answers ignored.

use super::Shared;
use super::approval::{self, APPROVAL_PREFIX};
use super::link;
use crate::config::Snapshot;
use crate::ctx::Ctx;
use crate::error::{Cause, GatewayError};
use crate::mcp::jsonrpc::{self, Message};
use crate::mcp::rewrite::{RELAY_PREFIX, upstream_id};
use crate::policy::Caller;
use crate::upstream::{self, Outgoing};
use serde_json::Value;
use serde_json::value::RawValue;

pub async fn notification(
    sh: &Shared,
    ctx: &Ctx,
    snap: &Snapshot,
    caller: &Caller,
    msg: &Message<'_>,
    method: &str,
) {
    let body = match method {
        "notifications/cancelled" => {
            let Ok(mut params) = jsonrpc::split_params(msg.params) else {
                return;
            };
            let Some(rid) = params.get("requestId") else {
                return;
            };
            let upstream_id = jsonrpc::to_raw(&upstream_id(ctx.caller_key, rid));
            params.insert("requestId".into(), std::borrow::Cow::Owned(upstream_id));
            jsonrpc::rebuild(method, None, Some(&params))
        }
        "notifications/roots/list_changed" => jsonrpc::rebuild(method, None, None),
        // `initialized` goes to each upstream as its session opens; the rest has no owner.
        _ => return,
    };
    let body = bytes::Bytes::from(body);
    let sends = super::visible(snap, caller).map(|route| {
        let body = body.clone();
        async move {
            // Only to the upstream sessions this client session already uses.
            if let Some(link) = link::existing(sh, ctx, caller, route).await {
                let mut out = Outgoing::post(body);
                link.apply(&mut out, method, None);
                let _ = upstream::fire(&sh.upstreams.connector, &route.upstream, &out).await;
            }
        }
    });
    upstream::all_within(snap.timeouts.initialize, sends).await;
}

/// Sends a request to every upstream the caller can reach and ignores the answers.
pub async fn broadcast_request(
    sh: &Shared,
    ctx: &Ctx,
    snap: &Snapshot,
    caller: &Caller,
    msg: &Message<'_>,
    method: &str,
) {
    let params = msg.params;
    // Only to the upstream sessions already open: one opened later starts at its defaults.
    let sends = super::visible(snap, caller).map(|route| async move {
        if let Some(link) = link::existing(sh, ctx, caller, route).await {
            let id = sh.upstreams.own_id();
            let body = jsonrpc::request(&id, method, params);
            let mut out = Outgoing::post(body);
            link.apply(&mut out, method, None);
            let _ = upstream::rpc(&sh.upstreams.connector, &route.upstream, &out, &id).await;
        }
    });
    upstream::all_within(snap.timeouts.list, sends).await;
}

/// A client's answer to a relayed upstream request or to an approval question.
pub async fn client_response(
    sh: &Shared,
    ctx: &mut Ctx,
    snap: &Snapshot,
    caller: &Caller,
    msg: &Message<'_>,
) -> Result<(), GatewayError> {
    let bad = || GatewayError::from(Cause::UnknownResponse);
    let id: String = serde_json::from_str(msg.id_text()).map_err(|_| bad())?;
    if let Some(n) = id
        .strip_prefix(APPROVAL_PREFIX)
        .or_else(|| id.strip_prefix(super::bridge::INPUT_PREFIX))
    {
        let result = msg
            .result
            .and_then(|r| serde_json::from_str(r.get()).ok())
            .unwrap_or(Value::Null);
        return approval::answer(sh, ctx, n, result).await;
    }
    ctx.method = "response";
    let rest = id.strip_prefix(RELAY_PREFIX).ok_or_else(bad)?;
    let (route_name, original) = rest.split_once(':').ok_or_else(bad)?;
    // Answers go only to routes the caller can see, over the caller's own link.
    let route = snap
        .route(route_name)
        .filter(|r| r.policy.visible_to(caller))
        .ok_or_else(bad)?;
    ctx.route = Some(route.index);
    let original: Box<RawValue> = serde_json::from_str(original).map_err(|_| bad())?;
    let body = jsonrpc::reid_response(msg, &original);
    let link = link::link(sh, ctx, caller, route).await.ok_or_else(bad)?;
    let mut out = Outgoing::post(body);
    link.apply(&mut out, "", None);
    let _ = tokio::time::timeout(
        snap.timeouts.initialize,
        upstream::fire(&sh.upstreams.connector, &route.upstream, &out),
    )
    .await;
    Ok(())
}
