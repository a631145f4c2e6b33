//! Answers the gateway gives itself about the merged server: `initialize` (capabilities merged
//! from what the upstreams declared, a sealed session issued; upstream sessions open on first
//! use) and `server/discover` for stateless clients.

use super::Shared;
use super::link::{self, ClientHello};
use super::session::{self, upstreams};
use crate::config::{Route, Snapshot};
use crate::ctx::Ctx;
use crate::error::{Cause, GatewayError};
use crate::http;
use crate::mcp;
use crate::mcp::jsonrpc::{self, Message};
use crate::mcp::session::{SessionState, compact_capabilities, now_secs};
use crate::policy::Caller;
use crate::upstream::{self, UpstreamError};
use pingora::protocols::http::ServerSession as Session;
use rmcp::model::{DiscoverResult, Implementation, ProtocolVersion, ServerCapabilities};
use serde_json::value::RawValue;
use serde_json::{Value, json};

fn server_info() -> Implementation {
    Implementation::new("mcp-edge", env!("CARGO_PKG_VERSION"))
}

/// `initialize`: the visible upstreams' capabilities merged, the version negotiated, and a
/// sealed session of bounded size issued to the caller; it costs no upstream request once
/// every visible upstream has been seen.
pub async fn open(
    sh: &Shared,
    s: &mut Session,
    ctx: &Ctx,
    snap: &Snapshot,
    caller: &Caller,
    msg: &Message<'_>,
    id: &RawValue,
) -> Result<(), GatewayError> {
    let params: Value = msg
        .params
        .and_then(|p| serde_json::from_str(p.get()).ok())
        .unwrap_or(Value::Null);
    if !params.is_object() {
        return Err(Cause::InvalidParams(
            "initialize needs protocolVersion, capabilities and clientInfo".into(),
        )
        .to(id));
    }
    let version = mcp::negotiate(params["protocolVersion"].as_str());
    let hello = ClientHello {
        capabilities: params.get("capabilities").cloned().unwrap_or(json!({})),
        client_info: params
            .get("clientInfo")
            .cloned()
            .unwrap_or(ClientHello::gateway().client_info),
    };
    let state = SessionState {
        id: rand::random(),
        owner: session::subject_key(caller),
        version: version.to_string(),
        expires: now_secs() + snap.session_ttl.as_secs(),
        capabilities: compact_capabilities(&hello.capabilities),
        upstreams: Vec::new(),
    };
    let hello = ClientHello {
        capabilities: serde_json::from_str(&state.capabilities).unwrap_or(json!({})),
        ..hello
    };
    // Upstream sessions are opened on first use; only an upstream whose capabilities this
    // instance has not seen yet is opened now (and its session kept for this client session).
    let mut capabilities = json!({});
    let unknown: Vec<&Route> = super::visible(snap, caller)
        .filter(|route| match sh.catalog.capabilities(route) {
            Some(caps) => {
                merge_capabilities(&mut capabilities, &caps);
                false
            }
            None => true,
        })
        .collect();
    let opens = unknown.iter().map(|route| {
        let headers = link::upstream_headers(sh, ctx, caller, route);
        let hello = &hello;
        async move { link::open_upstream(sh, route, hello, &headers).await }
    });
    let opened = upstream::all_within(snap.timeouts.initialize, opens).await;
    for (route, r) in unknown.iter().zip(opened) {
        match r.unwrap_or(Err(UpstreamError::Timeout)) {
            Ok((session, caps)) => {
                merge_capabilities(&mut capabilities, &caps);
                upstreams::keep(sh, &state, session, false).await;
            }
            Err(e) => log::warn!(
                "initialize of upstream {} failed: {e}",
                link::peer_label(route)
            ),
        }
    }
    let token = sh.sealer.seal(&state);
    sh.metrics.sessions_opened.inc();
    let capabilities: ServerCapabilities = serde_json::from_value(capabilities).unwrap_or_default();
    let result = json!({
        "protocolVersion": version,
        "capabilities": capabilities,
        "serverInfo": server_info(),
        "instructions": "mcp-edge: tools, prompts and resources of several MCP servers; \
            names are prefixed with their server (server__tool, server+uri).",
    });
    let body = jsonrpc::success(id, &result);
    http::json(s, 200, body, &[("mcp-session-id", &token)])
        .await
        .ok();
    Ok(())
}

/// The `server/discover` answer for stateless clients: list changes are announced on
/// `subscriptions/listen`.
pub fn discover_result() -> Box<RawValue> {
    let capabilities: ServerCapabilities = serde_json::from_value(json!({
        "tools": {"listChanged": true},
        "prompts": {"listChanged": true},
        "resources": {"listChanged": true},
        "logging": {},
        "completions": {},
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
    jsonrpc::to_raw(&result)
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
