//! Forwarding on `/servers/{route}/mcp`: one upstream as it is, unmerged and unprefixed. The
//! client's session with the upstream passes through and answers stream back untouched, except
//! the answer to the client's request: `tools/list` is filtered by the route's policy, and a
//! stateless (2026-07-28) client's result is completed as its revision requires. The route's credentials and the
//! caller's identity go with every request, as on `/mcp`; the caller's token never does.

use super::link::{peer_label, upstream_headers};
use super::{Shared, catalog::Catalog};
use crate::config::Route;
use crate::ctx::{Ctx, Era};
use crate::error::{Cause, GatewayError};
use crate::http;
use crate::mcp::jsonrpc::{self, Kind, Message};
use crate::mcp::{era, sse};
use crate::policy::{Caller, Decision};
use crate::upstream::{Exchange, Outgoing};
use bytes::Bytes;
use pingora::protocols::http::ServerSession as Session;
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

/// Sends the client's request to `route`'s upstream and relays the answer. `answer`: the id and
/// method of the client's request, whose response is fitted (`fit`) on the way.
pub async fn relay(
    sh: &Shared,
    s: &mut Session,
    ctx: &mut Ctx,
    caller: &Caller,
    route: &Route,
    body: Bytes,
    answer: Option<(&str, &str)>,
) -> Result<(), GatewayError> {
    let method = s.req_header().method.clone();
    let copied: Vec<(&'static str, String)> = COPIED
        .iter()
        .filter_map(|&k| http::header(s, k).map(|v| (k, v.to_string())))
        .collect();
    let credentials = upstream_headers(sh, ctx, caller, route);
    // The stateless revision's `Mcp-Param-*` headers go to the upstream as they came.
    let params: Vec<(String, String)> = s
        .req_header()
        .headers
        .iter()
        .filter(|(k, _)| k.as_str().starts_with("mcp-param-"))
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let mut out = Outgoing::post(body);
    out.params = &params;
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
    let stateless = matches!(ctx.era, Era::Stateless);
    let fitted = answer
        // A listen stream has no result to fit until it ends: it passes as it is.
        .filter(|(_, method)| {
            (stateless && *method != "subscriptions/listen") || *method == "tools/list"
        })
        .filter(|_| (200..300).contains(&ex.status()))
        .map(|(id, method)| Fitting {
            id,
            method,
            stateless,
            route,
            caller,
            catalog: &sh.catalog,
        });
    if let Some(fitting) = fitted.as_ref().filter(|_| !ex.is_sse()) {
        // One JSON answer: read whole (within the cap), fitted, then sent.
        let d = deadline.unwrap_or(started + route.timeout);
        let cap = ctx.snapshot.max_upstream_message_bytes;
        let answer = match tokio::time::timeout_at(d, ex.collect_at_most(cap)).await {
            Err(_) => return Err(timed_out().into()),
            Ok(Err(_)) => return Err(Cause::UpstreamUnavailable(route.name.clone()).into()),
            Ok(Ok(a)) => a,
        };
        let answer = fitting.fit(&answer);
        ex.finish(&sh.upstreams.connector, &route.upstream).await;
        ctx.upstream_time = Some(started.elapsed());
        let mut h = pingora::http::ResponseHeader::build_no_case(200, Some(headers.len() + 1))
            .map_err(|_| Cause::UpstreamInvalid(route.name.clone()))?;
        for (k, v) in &headers {
            let _ = h.insert_header(*k, *v);
        }
        let _ = h.insert_header("content-length", answer.len());
        if s.write_response_header(Box::new(h)).await.is_ok() {
            let _ = s.write_response_body(Bytes::from(answer), true).await;
        }
        return Ok(());
    }
    let mut h = pingora::http::ResponseHeader::build_no_case(ex.status(), Some(headers.len() + 1))
        .map_err(|_| Cause::UpstreamInvalid(route.name.clone()))?;
    for (k, v) in &headers {
        let _ = h.insert_header(*k, *v);
    }
    if s.write_response_header(Box::new(h)).await.is_err() {
        return Ok(());
    }
    let mut events = fitted.as_ref().map(|_| sse::Reader::default());
    loop {
        let next = tokio::select! {
            r = async {
                match deadline {
                    Some(d) => tokio::time::timeout_at(d, ex.chunk()).await.unwrap_or(Ok(None)),
                    None => ex.chunk().await,
                }
            } => r,
            _ = s.read_body_or_idle(true) => return Ok(()),
        };
        match next {
            Ok(Some(chunk)) => {
                // An event stream to fit is relayed event by event (each read whole).
                let chunk = match (&fitted, &mut events) {
                    (Some(fitting), Some(reader)) => {
                        reader.push(&chunk);
                        let mut out = Vec::new();
                        while let Some(ev) = reader.next_event() {
                            sse::write_event(&mut out, &fitting.fit(ev.data.as_bytes()));
                        }
                        Bytes::from(out)
                    }
                    _ => chunk,
                };
                if s.write_response_body(chunk, false).await.is_err() {
                    return Ok(());
                }
            }
            Ok(None) | Err(_) => break,
        }
    }
    ctx.upstream_time = Some(started.elapsed());
    let _ = s.write_response_body(Bytes::new(), true).await;
    ex.finish(&sh.upstreams.connector, &route.upstream).await;
    Ok(())
}

/// How the response to the client's request is fitted: a `tools/list` filtered for the caller
/// (the route's catalog learns the full list on the way), a stateless client's result completed
/// as its revision requires.
struct Fitting<'a> {
    id: &'a str,
    method: &'a str,
    stateless: bool,
    route: &'a Route,
    caller: &'a Caller,
    catalog: &'a Catalog,
}

impl Fitting<'_> {
    /// One message of the answer, fitted if it is the response to the client's request.
    fn fit(&self, data: &[u8]) -> Vec<u8> {
        let Ok((msg, Kind::Response)) = Message::parse(data) else {
            return data.to_vec();
        };
        let (Some(result), Some(id)) = (msg.result.filter(|_| msg.id_text() == self.id), msg.id)
        else {
            return data.to_vec();
        };
        let mut fitted = None;
        if self.method == "tools/list"
            && let Ok(mut list) = serde_json::from_str::<Value>(result.get())
        {
            if let Some(Value::Array(tools)) = list.get_mut("tools") {
                self.catalog.remember(self.route, tools);
                tools.retain(|t| {
                    let name = t["name"].as_str().unwrap_or_default();
                    matches!(
                        self.route.policy.decide(self.caller, name, Some(t)),
                        Decision::Allow { .. }
                    )
                });
            }
            fitted = Some(jsonrpc::to_raw(&list));
        }
        if self.stateless {
            let current = fitted.as_deref().unwrap_or(result);
            if let Some(completed) =
                era::for_stateless(current, &era::Probe::of(current), self.method)
            {
                fitted = Some(completed);
            }
        }
        match fitted {
            Some(result) => jsonrpc::response(id, Some(&result), None),
            None => data.to_vec(),
        }
    }
}
