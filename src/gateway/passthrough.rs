//! `/servers/{route}/mcp`: one upstream as it is, unmerged and unprefixed. The client's session
//! with the upstream passes through; bodies stream both ways untouched.

use super::{Gateway, edge, peer_label};
use crate::config::{Route, Snapshot};
use crate::error::GatewayError;
use crate::policy::Caller;
use crate::upstream::{Exchange, Outgoing};
use pingora::proxy::Session;

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
const RETURNED: &[&str] = &[
    "content-type",
    "mcp-session-id",
    "allow",
    "www-authenticate",
];

pub fn route_of<'s>(path: &str, snap: &'s Snapshot) -> Option<&'s Route> {
    let name = path.strip_prefix("/servers/")?.strip_suffix("/mcp")?;
    snap.route(name)
}

impl Gateway {
    pub(super) async fn serve_passthrough(
        &self,
        s: &mut Session,
        snap: &Snapshot,
        route: &Route,
        caller: &Caller,
    ) -> Result<(), GatewayError> {
        edge::check_origin(s, snap)?;
        if !route.policy.visible_to(caller) {
            return Err(GatewayError::http(
                404,
                format!("no MCP endpoint at this path; use {}", snap.mcp_url),
            ));
        }
        // The per-server endpoint passes bodies through unread, so it cannot apply per-tool
        // policy: routes that have any are served through the merged endpoint only.
        if route.policy.access.is_some() || !route.policy.tools.is_empty() {
            return Err(GatewayError::http(
                403,
                format!(
                    "route `{}` has per-tool policy; use {}",
                    route.name, snap.mcp_url
                ),
            ));
        }
        let method = s.req_header().method.clone();
        if !matches!(method.as_str(), "POST" | "GET" | "DELETE") {
            return Err(GatewayError::http(405, "use POST, GET or DELETE"));
        }
        let body = edge::read_body(s, snap.max_body_bytes).await?;
        let copied: Vec<(&'static str, String)> = COPIED
            .iter()
            .filter_map(|&k| edge::header(s, k).map(|v| (k, v.to_string())))
            .collect();
        let mut out = Outgoing::post(body.freeze());
        out.method = method.clone();
        out.copied = copied.iter().map(|(k, v)| (*k, v.as_str())).collect();
        // A GET stream lives as long as both ends want it; anything else has the route's deadline.
        let deadline =
            (method != http::Method::GET).then(|| tokio::time::Instant::now() + route.timeout);
        let sent = match deadline {
            Some(d) => {
                tokio::time::timeout_at(d, Exchange::send(&self.connector, &route.upstream, &out))
                    .await
                    .ok()
            }
            None => Some(Exchange::send(&self.connector, &route.upstream, &out).await),
        };
        let mut ex = match sent {
            None => {
                return Err(GatewayError::http(
                    504,
                    format!("upstream `{}` did not answer in time", route.name),
                ));
            }
            Some(Err(e)) => {
                log::warn!("passthrough to {} failed: {e}", peer_label(route));
                return Err(GatewayError::http(
                    502,
                    format!("upstream `{}` is unavailable", route.name),
                ));
            }
            Some(Ok(ex)) => ex,
        };
        let returned: Vec<(&'static str, String)> = RETURNED
            .iter()
            .filter_map(|&k| ex.header(k).map(|v| (k, v.to_string())))
            .collect();
        let headers: Vec<(&'static str, &str)> =
            returned.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut h = pingora::http::ResponseHeader::build(ex.status(), Some(headers.len() + 1))
            .map_err(|_| GatewayError::http(502, "upstream sent an invalid status"))?;
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
        let _ = s.write_response_body(None, true).await;
        ex.finish(&self.connector, &route.upstream).await;
        Ok(())
    }
}
