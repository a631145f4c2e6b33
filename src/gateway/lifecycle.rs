//! Session lifecycle: `initialize` (every upstream at once, capabilities merged, a sealed
//! session issued), links to upstreams (re-opened once when an upstream forgets its session),
//! `server/discover` for stateless clients, and DELETE.

use super::{Era, Gateway, Link, LinkKind, Request, peer_label, respond};
use crate::config::{Route, Snapshot};
use crate::error::GatewayError;
use crate::mcp::jsonrpc::{self, Message};
use crate::mcp::session::{SessionState, UpstreamSession, now_secs};
use crate::mcp::{self, SESSION_VERSION, STATELESS_VERSION};
use crate::policy::Caller;
use crate::upstream::{self, Outgoing, UpstreamError};
use pingora::proxy::Session;
use rmcp::model::{DiscoverResult, Implementation, ProtocolVersion, ServerCapabilities};
use serde_json::value::RawValue;
use serde_json::{Value, json};

/// The client's part of an `initialize`, forwarded to each upstream.
struct ClientHello {
    capabilities: Value,
    client_info: Value,
}

impl ClientHello {
    fn gateway() -> Self {
        Self {
            capabilities: json!({}),
            client_info: json!({"name": "mcp-edge", "version": env!("CARGO_PKG_VERSION")}),
        }
    }
}

fn server_info() -> Implementation {
    Implementation::new("mcp-edge", env!("CARGO_PKG_VERSION"))
}

impl Gateway {
    pub(super) async fn initialize(
        &self,
        s: &mut Session,
        req: &Request<'_>,
        msg: &Message<'_>,
        id: &RawValue,
    ) -> Result<(), GatewayError> {
        let params: Value = msg
            .params
            .and_then(|p| serde_json::from_str(p.get()).ok())
            .unwrap_or(Value::Null);
        if !params.is_object() {
            return Err(GatewayError::rpc(
                id,
                jsonrpc::INVALID_PARAMS,
                "Invalid params: initialize needs protocolVersion, capabilities and clientInfo",
            ));
        }
        let version = mcp::negotiate(params["protocolVersion"].as_str());
        let hello = ClientHello {
            capabilities: params.get("capabilities").cloned().unwrap_or(json!({})),
            client_info: params
                .get("clientInfo")
                .cloned()
                .unwrap_or(ClientHello::gateway().client_info),
        };
        let snap = req.snap;
        let opened = futures::future::join_all(self.routes(req).map(|route| async {
            let headers = self.upstream_headers(req, route);
            let open = self.open_upstream(route, &hello, &headers);
            let r = tokio::time::timeout(snap.timeouts.initialize, open)
                .await
                .unwrap_or(Err(UpstreamError::Timeout));
            if let Err(e) = &r {
                log::warn!("initialize of upstream {} failed: {e}", peer_label(route));
            }
            r.ok()
        }))
        .await;
        let mut capabilities = json!({});
        let mut upstreams = Vec::new();
        for (session, caps) in opened.into_iter().flatten() {
            merge_capabilities(&mut capabilities, &caps);
            upstreams.push(session);
        }
        let state = SessionState {
            id: rand::random(),
            owner: super::caller_key(("sub", &req.caller.subject)),
            version: version.to_string(),
            expires: now_secs() + snap.session_ttl.as_secs(),
            capabilities: hello.capabilities.to_string(),
            upstreams,
        };
        let token = self.sealer.seal(&state);
        self.metrics.sessions_opened.inc();
        let capabilities: ServerCapabilities =
            serde_json::from_value(capabilities).unwrap_or_default();
        let result = json!({
            "protocolVersion": version,
            "capabilities": capabilities,
            "serverInfo": server_info(),
            "instructions": "mcp-edge: tools, prompts and resources of several MCP servers; \
                names are prefixed with their server (server__tool, server+uri).",
        });
        let body = jsonrpc::success(id, &result);
        respond::json(s, 200, body, &[("mcp-session-id", &token)])
            .await
            .ok();
        Ok(())
    }

    /// Opens a session with one upstream on behalf of a client: initialize, then initialized.
    /// `headers` carry the caller's identity and the route's credentials.
    async fn open_upstream(
        &self,
        route: &Route,
        hello: &ClientHello,
        headers: &[(String, String)],
    ) -> Result<(UpstreamSession, Value), UpstreamError> {
        let id = self.own_id();
        let params = json!({
            "protocolVersion": SESSION_VERSION,
            "capabilities": hello.capabilities,
            "clientInfo": hello.client_info,
        });
        let mut out = Outgoing::post(jsonrpc::request(&id, "initialize", Some(&params)));
        out.extra = headers;
        let reply = upstream::rpc(&self.connector, &route.upstream, &out, &id).await?;
        let result: Value = reply
            .outcome
            .ok()
            .and_then(|r| serde_json::from_str(r.get()).ok())
            .ok_or(UpstreamError::Garbage)?;
        let version = result["protocolVersion"]
            .as_str()
            .filter(|v| mcp::is_supported(v))
            .ok_or(UpstreamError::Garbage)?
            .to_string();
        let mut out = Outgoing::post(jsonrpc::notification::<()>(
            "notifications/initialized",
            None,
        ));
        out.session = reply.session.as_deref();
        out.protocol_version = Some(&version);
        out.extra = headers;
        upstream::fire(&self.connector, &route.upstream, &out).await?;
        let caps = result.get("capabilities").cloned().unwrap_or(json!({}));
        Ok((
            UpstreamSession {
                route: route.name.clone(),
                session: reply.session,
                version,
            },
            caps,
        ))
    }

    /// How this request reaches `route`, opening what is missing.
    pub(super) async fn link(&self, req: &Request<'_>, route: &Route) -> Option<Link> {
        let kind = match &req.era {
            Era::Opening => return None,
            Era::Session { state, .. } => {
                let local = self
                    .local()
                    .replaced
                    .get(&(state.id, route.name.clone()))
                    .map(|(u, _)| u.clone());
                match local.or_else(|| state.upstream(&route.name).cloned()) {
                    Some(u) => LinkKind::Session {
                        session: u.session,
                        version: u.version,
                    },
                    None => return self.relink(req, route).await,
                }
            }
            Era::Stateless => {
                let key = (route.name.clone(), route.upstream.addr.to_string());
                let cached = self.local().stateless.get(&key).cloned();
                match cached {
                    Some(kind) => kind,
                    None => return self.relink(req, route).await,
                }
            }
        };
        Some(Link {
            kind,
            headers: self.upstream_headers(req, route),
        })
    }

    /// Replaces this request's link to `route` (after the upstream answered 404, or when there
    /// was none), remembering the new one on this instance only.
    pub(super) async fn relink(&self, req: &Request<'_>, route: &Route) -> Option<Link> {
        let timeout = req.snap.timeouts.initialize;
        let headers = self.upstream_headers(req, route);
        let kind = match &req.era {
            Era::Opening => return None,
            Era::Session { state, .. } => {
                let hello = ClientHello {
                    capabilities: serde_json::from_str(&state.capabilities).unwrap_or(json!({})),
                    ..ClientHello::gateway()
                };
                let opened = self.open_upstream(route, &hello, &headers);
                let (session, _) = tokio::time::timeout(timeout, opened)
                    .await
                    .ok()?
                    .map_err(|e| log::warn!("re-initialize of {} failed: {e}", peer_label(route)))
                    .ok()?;
                let kind = LinkKind::Session {
                    session: session.session.clone(),
                    version: session.version.clone(),
                };
                let mut local = self.local();
                if local.replaced.len() >= super::LOCAL_CAP {
                    let now = now_secs();
                    local.replaced.retain(|_, (_, exp)| *exp > now);
                    if local.replaced.len() >= super::LOCAL_CAP {
                        local.replaced.clear();
                    }
                }
                local
                    .replaced
                    .insert((state.id, route.name.clone()), (session, state.expires));
                kind
            }
            Era::Stateless => {
                let kind = tokio::time::timeout(timeout, self.stateless_link(route, &headers))
                    .await
                    .ok()?
                    .map_err(|e| log::warn!("cannot reach {} statelessly: {e}", peer_label(route)))
                    .ok()?;
                let key = (route.name.clone(), route.upstream.addr.to_string());
                self.local().stateless.insert(key, kind.clone());
                kind
            }
        };
        Some(Link { kind, headers })
    }

    /// For stateless clients: the upstream's own stateless mode when it has one (discovered),
    /// else one session of this instance's with it.
    async fn stateless_link(
        &self,
        route: &Route,
        headers: &[(String, String)],
    ) -> Result<LinkKind, UpstreamError> {
        let id = self.own_id();
        let params = json!({"_meta": {
            mcp::META_PROTOCOL_VERSION: STATELESS_VERSION,
            "io.modelcontextprotocol/clientCapabilities": {},
        }});
        let mut out = Outgoing::post(jsonrpc::request(&id, "server/discover", Some(&params)));
        LinkKind::Stateless.apply(&mut out, "server/discover", None);
        out.extra = headers;
        if let Ok(reply) = upstream::rpc(&self.connector, &route.upstream, &out, &id).await
            && let Ok(result) = reply.outcome
            && let Ok(found) = serde_json::from_str::<DiscoverResult>(result.get())
            && found
                .supported_versions
                .iter()
                .any(|v| v.as_str() == STATELESS_VERSION)
        {
            return Ok(LinkKind::Stateless);
        }
        let (session, _) = self
            .open_upstream(route, &ClientHello::gateway(), headers)
            .await?;
        Ok(LinkKind::Session {
            session: session.session,
            version: session.version,
        })
    }

    /// DELETE: ends the client session and the upstream sessions behind it.
    pub(super) async fn delete(
        &self,
        s: &mut Session,
        snap: &Snapshot,
        caller: &Caller,
    ) -> Result<(), GatewayError> {
        let state = self.session_of(s, caller)?;
        {
            let mut local = self.local();
            let now = now_secs();
            local.ended.retain(|_, exp| *exp > now);
            if local.ended.len() < super::LOCAL_CAP {
                local.ended.insert(state.id, state.expires);
            }
            self.any_ended
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let ends = state.upstreams.iter().filter_map(|u| {
            let route = snap.route(&u.route)?;
            let session = u.session.as_deref()?;
            Some(async move {
                let mut out = Outgoing::post(bytes::Bytes::new());
                out.method = http::Method::DELETE;
                out.session = Some(session);
                out.protocol_version = Some(&u.version);
                let _ = tokio::time::timeout(
                    snap.timeouts.initialize,
                    upstream::fire(&self.connector, &route.upstream, &out),
                )
                .await;
            })
        });
        futures::future::join_all(ends).await;
        self.metrics.sessions_ended.inc();
        respond::empty(s, 200, &[]).await.ok();
        Ok(())
    }
}

/// The `server/discover` answer for stateless clients.
pub(super) fn discover_result() -> Result<Box<RawValue>, GatewayError> {
    let capabilities: ServerCapabilities = serde_json::from_value(json!({
        "tools": {}, "prompts": {}, "resources": {}, "logging": {}, "completions": {},
    }))
    .unwrap_or_default();
    let versions = mcp::SUPPORTED_VERSIONS
        .iter()
        .map(|v| {
            ProtocolVersion::KNOWN_VERSIONS
                .iter()
                .find(|k| k.as_str() == *v)
                .cloned()
        })
        .collect::<Option<Vec<_>>>()
        .unwrap_or_default();
    let result = DiscoverResult::new(versions, capabilities).with_server_info(server_info());
    Ok(jsonrpc::to_raw(&result))
}

/// Union of upstream capabilities: a feature any upstream has, the gateway has. Lists announce
/// changes (the gateway's GET stream says when routes change); `subscribe` is not relayed yet.
fn merge_capabilities(into: &mut Value, upstream: &Value) {
    for key in ["tools", "prompts", "resources", "logging", "completions"] {
        if upstream.get(key).is_some_and(|v| !v.is_null()) {
            into[key] = match key {
                "tools" | "prompts" | "resources" => json!({"listChanged": true}),
                _ => json!({}),
            };
        }
    }
}
