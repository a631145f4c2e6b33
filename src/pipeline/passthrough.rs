//! Forwarding on `/servers/{route}/mcp`: one upstream as it is, unmerged and unprefixed. The
//! client's session with the upstream passes through and answers stream back untouched, except
//! `tools/list`, whose answer is filtered by the route's policy. The route's credentials and the
//! caller's identity go with every request, as on `/mcp`; the caller's token never does.

use super::link::{peer_label, upstream_headers};
use super::{Shared, catalog::Catalog};
use crate::config::Route;
use crate::ctx::Ctx;
use crate::error::{Cause, GatewayError};
use crate::http;
use crate::mcp::jsonrpc::{self, Kind, Message};
use crate::mcp::sse;
use crate::policy::{Caller, Decision};
use crate::upstream::{Exchange, Outgoing};
use bytes::Bytes;
use pingora::proxy::Session;
use serde_json::Value;

/// Client headers the upstream needs to see.
const COPIED: &[&str] = &[
    "accept",
    "content-type",
    "mcp-session-id",
    "mcp-protocol-version",
    "mcp-method",
    "mcp-name",
    "last-event-id",
];
/// Upstream headers the client needs to see.
const RETURNED: &[&str] = &["content-type", "mcp-session-id", "allow"];

/// Sends the client's request to `route`'s upstream and relays the answer. `list_id`: the id of
/// a `tools/list` request, whose answer is filtered for the caller.
pub async fn relay(
    sh: &Shared,
    s: &mut Session,
    ctx: &mut Ctx,
    caller: &Caller,
    route: &Route,
    body: Bytes,
    list_id: Option<&str>,
) -> Result<(), GatewayError> {
    let method = s.req_header().method.clone();
    let copied: Vec<(&'static str, String)> = COPIED
        .iter()
        .filter_map(|&k| http::header(s, k).map(|v| (k, v.to_string())))
        .collect();
    let credentials = upstream_headers(sh, ctx, caller, route);
    let mut out = Outgoing::post(body);
    out.method = method.clone();
    out.copied = copied.iter().map(|(k, v)| (*k, v.as_str())).collect();
    out.extra = &credentials;
    // A GET stream lives as long as both ends want it; anything else has the route's deadline.
    let deadline =
        (method != ::http::Method::GET).then(|| tokio::time::Instant::now() + route.timeout);
    let timed_out = || Cause::UpstreamTimeout {
        route: route.name.clone(),
        secs: route.timeout.as_secs_f64(),
    };
    let started = tokio::time::Instant::now();
    let send = Exchange::send(&sh.upstreams.connector, &route.upstream, &out);
    let sent = match deadline {
        Some(d) => tokio::time::timeout_at(d, send)
            .await
            .map_err(|_| timed_out())?,
        None => send.await,
    };
    let mut ex = sent.map_err(|e| {
        log::warn!("passthrough to {} failed: {e}", peer_label(route));
        Cause::UpstreamUnavailable(route.name.clone())
    })?;
    ctx.upstream_status = Some(ex.status());
    let returned: Vec<(&'static str, String)> = RETURNED
        .iter()
        .filter_map(|&k| ex.header(k).map(|v| (k, v.to_string())))
        .collect();
    let headers: Vec<(&'static str, &str)> =
        returned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    if let Some(list_id) = list_id.filter(|_| (200..300).contains(&ex.status())) {
        let d = deadline.unwrap_or(started + route.timeout);
        let answer = match tokio::time::timeout_at(d, ex.collect()).await {
            Err(_) => return Err(timed_out().into()),
            Ok(Err(_)) => return Err(Cause::UpstreamUnavailable(route.name.clone()).into()),
            Ok(Ok(a)) => a,
        };
        let filtered = filter_list(&answer, ex.is_sse(), list_id, route, caller, &sh.catalog);
        ex.finish(&sh.upstreams.connector, &route.upstream).await;
        ctx.upstream_time = Some(started.elapsed());
        let mut h = pingora::http::ResponseHeader::build(200, Some(headers.len() + 1))
            .map_err(|_| Cause::UpstreamInvalid(route.name.clone()))?;
        for (k, v) in &headers {
            let _ = h.insert_header(*k, *v);
        }
        let _ = h.insert_header("content-length", filtered.len());
        if s.write_response_header(Box::new(h), false).await.is_ok() {
            let _ = s
                .write_response_body(Some(Bytes::from(filtered)), true)
                .await;
        }
        return Ok(());
    }
    let mut h = pingora::http::ResponseHeader::build(ex.status(), Some(headers.len() + 1))
        .map_err(|_| Cause::UpstreamInvalid(route.name.clone()))?;
    for (k, v) in &headers {
        let _ = h.insert_header(*k, *v);
    }
    if s.write_response_header(Box::new(h), false).await.is_err() {
        return Ok(());
    }
    loop {
        let next = tokio::select! {
            r = async {
                match deadline {
                    Some(d) => tokio::time::timeout_at(d, ex.chunk()).await.unwrap_or(Ok(None)),
                    None => ex.chunk().await,
                }
            } => r,
            _ = s.as_downstream_mut().read_body_or_idle(true) => return Ok(()),
        };
        match next {
            Ok(Some(chunk)) => {
                if s.write_response_body(Some(chunk), false).await.is_err() {
                    return Ok(());
                }
            }
            Ok(None) | Err(_) => break,
        }
    }
    ctx.upstream_time = Some(started.elapsed());
    let _ = s.write_response_body(None, true).await;
    ex.finish(&sh.upstreams.connector, &route.upstream).await;
    Ok(())
}

/// The upstream's `tools/list` answer with the tools the caller may not call left out (JSON, or
/// every event of an SSE answer); the route's catalog learns the full list on the way.
fn filter_list(
    answer: &[u8],
    is_sse: bool,
    list_id: &str,
    route: &Route,
    caller: &Caller,
    catalog: &Catalog,
) -> Vec<u8> {
    let filter = |data: &[u8]| -> Vec<u8> {
        let Ok((msg, Kind::Response)) = Message::parse(data) else {
            return data.to_vec();
        };
        let Some(result) = msg.result.filter(|_| msg.id_text() == list_id) else {
            return data.to_vec();
        };
        let Ok(mut result) = serde_json::from_str::<Value>(result.get()) else {
            return data.to_vec();
        };
        if let Some(Value::Array(tools)) = result.get_mut("tools") {
            catalog.remember(route, tools);
            tools.retain(|t| {
                let name = t["name"].as_str().unwrap_or_default();
                matches!(
                    route.policy.decide(caller, name, Some(t)),
                    Decision::Allow { .. }
                )
            });
        }
        msg.id
            .map(|id| jsonrpc::success(id, &result))
            .unwrap_or_else(|| data.to_vec())
    };
    if !is_sse {
        return filter(answer);
    }
    let mut reader = sse::Reader::default();
    reader.push(answer);
    let mut out = Vec::with_capacity(answer.len());
    while let Some(ev) = reader.next_event() {
        sse::write_event(&mut out, &filter(ev.data.as_bytes()));
    }
    out
}
