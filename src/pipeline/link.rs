//! Links to upstreams: how one request reaches one route's upstream (its upstream session, or
//! the upstream's own stateless mode) and what the upstream learns of the caller (the route's
//! static credentials, then the identity the route asks for; never the caller's token).

use super::Shared;
use super::session::upstreams;
use crate::config::Route;
use crate::config::raw::IdentityMode;
use crate::ctx::{Ctx, Era};
use crate::mcp::jsonrpc;
use crate::mcp::session::{UpstreamSession, now_secs};
use crate::mcp::{self, SESSION_VERSION, STATELESS_VERSION};
use crate::policy::Caller;
use crate::upstream::{self, Outgoing, UpstreamError};
use pingora::upstreams::peer::Peer;
use rmcp::model::DiscoverResult;
use serde_json::{Value, json};

/// How long a stateless link (discovered mode or instance session) is reused.
const STATELESS_LINK_SECS: u64 = 3600;

/// How requests reach one upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkKind {
    /// A 2025-era upstream session (`session` is none for upstreams that issue no id).
    Session {
        session: Option<String>,
        version: String,
    },
    /// The stateless 2026-07-28 revision: no session, method and name in headers.
    Stateless,
}

impl LinkKind {
    pub fn apply<'a>(&'a self, out: &mut Outgoing<'a>, method: &'a str, name: Option<&'a str>) {
        match self {
            LinkKind::Session { session, version } => {
                out.session = session.as_deref();
                out.protocol_version = Some(version);
            }
            LinkKind::Stateless => {
                out.protocol_version = Some(mcp::STATELESS_VERSION);
                out.mcp_method = Some(method);
                out.mcp_name = name;
            }
        }
    }
}

/// How one request reaches one upstream: the link, and what the upstream learns of the caller.
#[derive(Debug, Clone)]
pub struct Link {
    pub kind: LinkKind,
    /// Static credentials and identity headers for this route and caller.
    pub headers: Vec<(String, String)>,
}

impl Link {
    pub fn apply<'a>(&'a self, out: &mut Outgoing<'a>, method: &'a str, name: Option<&'a str>) {
        self.kind.apply(out, method, name);
        out.extra = &self.headers;
    }

    pub fn has_session(&self) -> bool {
        matches!(
            self.kind,
            LinkKind::Session {
                session: Some(_),
                ..
            }
        )
    }
}

/// The client's part of an `initialize`, forwarded to each upstream.
pub struct ClientHello {
    pub capabilities: Value,
    pub client_info: Value,
}

impl ClientHello {
    pub fn gateway() -> Self {
        Self {
            capabilities: json!({}),
            client_info: json!({"name": "mcp-edge", "version": env!("CARGO_PKG_VERSION")}),
        }
    }
}

/// A header value made of a caller attribute, always percent-encoded (UTF-8) the same way:
/// letters, digits and `-._~:@/` as they are, every other byte as `%XX` (`%` and `,` included),
/// so `éve` and a literal `%C3%A9ve` arrive differently and a comma only ever separates groups.
pub fn header_safe(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:@/".contains(&b) {
            out.push(char::from(b));
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
    out
}

/// Log-safe name of an upstream for operators (never sent to clients).
pub fn peer_label(route: &Route) -> String {
    format!("{} ({})", route.name, route.upstream.peer.address())
}

/// What `route`'s upstream is told with every request made for this caller: the route's
/// static credentials (and its tenant's), then the caller's identity if the route wants it.
/// The caller's own token is never among them.
pub fn upstream_headers(
    sh: &Shared,
    ctx: &Ctx,
    caller: &Caller,
    route: &Route,
) -> Vec<(String, String)> {
    let mut headers = route.headers.clone();
    if let Some(extra) = caller
        .tenant
        .as_ref()
        .and_then(|t| route.tenant_headers.get(t))
    {
        headers.extend(extra.iter().cloned());
    }
    match route.identity {
        IdentityMode::None => {}
        IdentityMode::Headers => {
            headers.push(("x-mcp-edge-subject".into(), header_safe(&caller.subject)));
            let groups: Vec<String> = caller.groups.iter().map(|g| header_safe(g)).collect();
            headers.push(("x-mcp-edge-groups".into(), groups.join(",")));
            if let Some(t) = &caller.tenant {
                headers.push(("x-mcp-edge-tenant".into(), header_safe(t)));
            }
        }
        IdentityMode::Minted => {
            let issuer = &ctx.snapshot.public_origin;
            let lifetime = ctx.snapshot.identity.lifetime;
            let token = sh.minter.mint(issuer, caller, &route.name, lifetime);
            headers.push(("authorization".into(), format!("Bearer {token}")));
        }
    }
    headers
}

/// Opens a session with one upstream on behalf of a client: initialize, then initialized.
/// `headers` carry the caller's identity and the route's credentials. An upstream that refuses
/// `initialize` but speaks the stateless revision (its `server/discover` offers 2026-07-28) is
/// served statelessly within the client's session: no upstream session, version 2026-07-28.
pub async fn open_upstream(
    sh: &Shared,
    route: &Route,
    hello: &ClientHello,
    headers: &[(String, String)],
) -> Result<(UpstreamSession, Value), UpstreamError> {
    let opened = open_either(sh, route, hello, headers).await;
    if let Ok((_, capabilities)) = &opened {
        sh.catalog.capabilities_seen(route, capabilities);
    }
    opened
}

async fn open_either(
    sh: &Shared,
    route: &Route,
    hello: &ClientHello,
    headers: &[(String, String)],
) -> Result<(UpstreamSession, Value), UpstreamError> {
    match initialize(sh, route, hello, headers).await {
        Err(e @ (UpstreamError::Status(_) | UpstreamError::Garbage)) => {
            match discover(sh, route, headers).await {
                Some(capabilities) => Ok((
                    UpstreamSession {
                        route: route.name.clone(),
                        session: None,
                        version: STATELESS_VERSION.into(),
                    },
                    capabilities,
                )),
                None => Err(e),
            }
        }
        other => other,
    }
}

/// The capabilities of an upstream whose `server/discover` offers the stateless revision.
async fn discover(sh: &Shared, route: &Route, headers: &[(String, String)]) -> Option<Value> {
    let id = sh.upstreams.own_id();
    let params = json!({"_meta": stateless_meta()});
    let mut out = Outgoing::post(jsonrpc::request(&id, "server/discover", Some(&params)));
    LinkKind::Stateless.apply(&mut out, "server/discover", None);
    out.extra = headers;
    let reply = upstream::rpc(&sh.upstreams.connector, &route.upstream, &out, &id)
        .await
        .ok()?;
    let found: DiscoverResult = serde_json::from_str(reply.outcome.ok()?.get()).ok()?;
    found
        .supported_versions
        .iter()
        .any(|v| v.as_str() == STATELESS_VERSION)
        .then(|| serde_json::to_value(&found.capabilities).unwrap_or(json!({})))
}

async fn initialize(
    sh: &Shared,
    route: &Route,
    hello: &ClientHello,
    headers: &[(String, String)],
) -> Result<(UpstreamSession, Value), UpstreamError> {
    let id = sh.upstreams.own_id();
    let params = json!({
        "protocolVersion": SESSION_VERSION,
        "capabilities": hello.capabilities,
        "clientInfo": hello.client_info,
    });
    let mut out = Outgoing::post(jsonrpc::request(&id, "initialize", Some(&params)));
    out.extra = headers;
    let reply = upstream::rpc(&sh.upstreams.connector, &route.upstream, &out, &id).await?;
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
    upstream::fire(&sh.upstreams.connector, &route.upstream, &out).await?;
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

/// How this request reaches `route`, opening what is missing (a client session's upstream
/// session is opened on its first use).
pub async fn link(sh: &Shared, ctx: &Ctx, caller: &Caller, route: &Route) -> Option<Link> {
    match existing(sh, ctx, caller, route).await {
        Some(link) => Some(link),
        None => Box::pin(relink(sh, ctx, caller, route, None)).await,
    }
}

/// How this request reaches `route` if that needs nothing opened (a notification goes only to
/// the upstreams the client session already uses).
pub async fn existing(sh: &Shared, ctx: &Ctx, caller: &Caller, route: &Route) -> Option<Link> {
    let kind = match &ctx.era {
        Era::Opening => return None,
        Era::Session(state) => session_link(upstreams::find(sh, state, &route.name).await?),
        // The per-server door's own requests (catalog listings) go the stateless way too.
        Era::Stateless | Era::Unknown => sh.stateless_links.get(&stateless_key(ctx, route))?,
    };
    Some(Link {
        kind,
        headers: upstream_headers(sh, ctx, caller, route),
    })
}

fn stateless_key(ctx: &Ctx, route: &Route) -> (String, String, u64) {
    (
        route.name.clone(),
        route.upstream.addr.to_string(),
        ctx.caller_key,
    )
}

/// Opens this request's link to `route`: when there was none, or replacing `failed` after the
/// upstream answered 404 for it. With a store, a session another instance already replaced is
/// taken instead of opening a third.
pub async fn relink(
    sh: &Shared,
    ctx: &Ctx,
    caller: &Caller,
    route: &Route,
    failed: Option<&LinkKind>,
) -> Option<Link> {
    let timeout = ctx.snapshot.timeouts.initialize;
    let headers = upstream_headers(sh, ctx, caller, route);
    let kind = match &ctx.era {
        Era::Opening => return None,
        Era::Session(state) => {
            if let Some(failed) = failed
                && let Some(theirs) = upstreams::stored(sh, state, &route.name).await
                && session_link(theirs.clone()) != *failed
            {
                return Some(Link {
                    kind: session_link(theirs),
                    headers,
                });
            }
            let hello = ClientHello {
                capabilities: serde_json::from_str(&state.capabilities).unwrap_or(json!({})),
                ..ClientHello::gateway()
            };
            let opened = open_upstream(sh, route, &hello, &headers);
            let (session, _) = tokio::time::timeout(timeout, opened)
                .await
                .ok()?
                .map_err(|e| log::warn!("initialize of {} failed: {e}", peer_label(route)))
                .ok()?;
            let (kept, lost) = upstreams::keep(sh, state, session, failed.is_some()).await;
            if let Some(lost) = lost {
                let end = end_upstream_session(sh, route, &lost);
                let _ = tokio::time::timeout(timeout, end).await;
            }
            session_link(kept)
        }
        Era::Stateless | Era::Unknown => {
            let kind = tokio::time::timeout(timeout, stateless_link(sh, route, &headers))
                .await
                .ok()?
                .map_err(|e| log::warn!("cannot reach {} statelessly: {e}", peer_label(route)))
                .ok()?;
            sh.stateless_links.insert(
                stateless_key(ctx, route),
                kind.clone(),
                now_secs() + STATELESS_LINK_SECS,
            );
            kind
        }
    };
    Some(Link { kind, headers })
}

/// Ends an upstream session (DELETE, answer ignored): a client session's on DELETE, or one
/// opened twice at once of which the other was kept.
pub async fn end_upstream_session(sh: &Shared, route: &Route, u: &UpstreamSession) {
    let Some(session) = u.session.as_deref() else {
        return;
    };
    let mut out = Outgoing::post(bytes::Bytes::new());
    out.method = ::http::Method::DELETE;
    out.session = Some(session);
    out.protocol_version = Some(&u.version);
    let _ = upstream::fire(&sh.upstreams.connector, &route.upstream, &out).await;
}

/// The `_meta` of a request the gateway itself sends in the stateless revision.
pub fn stateless_meta() -> Value {
    json!({
        mcp::META_PROTOCOL_VERSION: STATELESS_VERSION,
        mcp::META_CLIENT_CAPABILITIES: {},
    })
}

/// For stateless clients: the upstream's own stateless mode when it has one (discovered),
/// else one session of this instance's with it.
async fn stateless_link(
    sh: &Shared,
    route: &Route,
    headers: &[(String, String)],
) -> Result<LinkKind, UpstreamError> {
    if discover(sh, route, headers).await.is_some() {
        return Ok(LinkKind::Stateless);
    }
    let (session, _) = open_upstream(sh, route, &ClientHello::gateway(), headers).await?;
    Ok(session_link(session))
}

/// How a request in a client's session reaches an upstream it opened: its upstream session, or
/// statelessly when the upstream speaks only the stateless revision.
fn session_link(u: UpstreamSession) -> LinkKind {
    if u.version == STATELESS_VERSION {
        return LinkKind::Stateless;
    }
    LinkKind::Session {
        session: u.session,
        version: u.version,
    }
}

#[cfg(test)]
mod tests {
    use super::header_safe;

    #[test]
    fn identity_headers_are_unambiguous() {
        assert_eq!(header_safe("team:data"), "team:data");
        assert_eq!(header_safe("éve"), "%C3%A9ve");
        assert_eq!(
            header_safe("%C3%A9ve"),
            "%25C3%25A9ve",
            "a literal escape stays distinct"
        );
        assert_eq!(
            header_safe("a,b c"),
            "a%2Cb%20c",
            "commas only separate groups"
        );
    }
}
