//! The one request pipeline. Every door (`/mcp`, `/servers/{route}/mcp`, both protocol eras)
//! takes the same steps, in this order: transport checks → authenticate → parse once →
//! session/era → route → authorize → limit → forward → answer. Each step is a module of its own;
//! routing, authorization and the choice of buckets are pure functions of (snapshot, caller,
//! request). `proxy.rs` calls `run` from `request_filter`; the `logging` hook calls `finish`.

mod approval;
mod authorize;
mod bridge;
mod catalog;
mod forward;
mod held;
mod initialize;
mod limit;
mod link;
mod listen;
mod lists;
mod notify;
mod passthrough;
mod record;
mod route;
mod session;
mod shared;
mod stateless;
mod subscriptions;
pub mod transport;

pub use record::finish;
pub use shared::Shared;

use crate::auth::metadata;
use crate::auth::oauth::OAuthFront;
use crate::config::{Route, Snapshot};
use crate::ctx::{Ctx, Door, Era, Outcome, method_label};
use crate::error::{Cause, GatewayError};
use crate::http;
use crate::mcp::jsonrpc::{self, Kind, Message};
use crate::policy::Caller;
use approval::Approval;
use bytes::Bytes;
use pingora::protocols::http::ServerSession as Session;
use serde_json::value::RawValue;
use std::sync::Arc;

/// Serves one HTTP request on the MCP listener. Errors returned are client-connection errors.
pub async fn run(sh: &Arc<Shared>, s: &mut Session, ctx: &mut Ctx) -> pingora::Result<()> {
    let snap = ctx.snapshot.clone();
    if let Err(e) = transport::check_head_size(s, snap.max_header_bytes) {
        ctx.outcome = Some(Outcome::Refused);
        return http::error(s, &e).await;
    }
    let path = s.req_header().uri.path();
    ctx.door = transport::door(path, &snap);
    if ctx.door == Door::Other {
        return Box::pin(local(sh, s, ctx, &snap)).await;
    }
    let result = mcp(sh, s, ctx, &snap).await;
    match result {
        Ok(()) => {
            ctx.outcome.get_or_insert(Outcome::Ok);
            Ok(())
        }
        Err(e) => {
            ctx.outcome.get_or_insert(e.outcome());
            // A refusal is the gateway's decision (recorded with its reason); a failure is not.
            if e.is_refusal() {
                ctx.refused = Some(e.to_string());
            }
            http::error(s, &e).await
        }
    }
}

/// What is not MCP: the OAuth proxy, well-known documents, and unknown paths.
async fn local(
    sh: &Shared,
    s: &mut Session,
    ctx: &mut Ctx,
    snap: &Snapshot,
) -> pingora::Result<()> {
    let path = s.req_header().uri.path();
    if OAuthFront::is_oauth_path(path) {
        ctx.method = "oauth";
        return sh.oauth.serve(s, snap).await;
    }
    let e = match metadata::document(path, snap, &sh.minter) {
        Some(Some(doc)) => {
            ctx.method = "metadata";
            let body = serde_json::to_vec(&doc).unwrap_or_default();
            return http::json(s, 200, body, &[("cache-control", "max-age=300")]).await;
        }
        Some(None) => {
            ctx.method = "metadata";
            GatewayError::from(Cause::NoMetadata)
        }
        None => Cause::NoEndpoint(snap.mcp_url.clone()).into(),
    };
    ctx.outcome = Some(Outcome::Refused);
    http::error(s, &e).await
}

/// An MCP exchange through either door.
async fn mcp(
    sh: &Arc<Shared>,
    s: &mut Session,
    ctx: &mut Ctx,
    snap: &Arc<Snapshot>,
) -> Result<(), GatewayError> {
    transport::check_origin(s, snap)?;
    let caller = Box::pin(authenticate(sh, s, snap)).await?;
    ctx.caller = Some(caller.clone());
    // Room for this request's audit record before anything is decided for this caller: once
    // accepted, its record is never lost. Unauthenticated refusals take no room (they are
    // counted in metrics), so anonymous floods cannot fill the queue.
    ctx.slot = sh.audit.reserve().await.map_err(|_| {
        sh.metrics.audit_refused.inc();
        Cause::AuditFull
    })?;
    let server = match ctx.door {
        Door::Server(i) => {
            ctx.route = Some(i);
            let route = &snap.routes[i];
            // A route the caller cannot see does not exist for them.
            if !route.policy.visible_to(&caller) {
                return Err(Cause::NoEndpoint(snap.mcp_url.clone()).into());
            }
            Some(route)
        }
        _ => None,
    };
    match (s.req_header().method.as_str(), server) {
        ("POST", _) => {}
        ("GET", None) => {
            ctx.method = "GET";
            return Box::pin(listen::serve(sh, s, snap, &caller)).await;
        }
        ("DELETE", None) => {
            ctx.method = "DELETE";
            return Box::pin(session::delete(sh, s, snap, &caller)).await;
        }
        ("GET" | "DELETE", Some(route)) => {
            ctx.method = if s.req_header().method == "GET" {
                "GET"
            } else {
                "DELETE"
            };
            return Box::pin(passthrough::relay(
                sh,
                s,
                ctx,
                &caller,
                route,
                Bytes::new(),
                None,
            ))
            .await;
        }
        _ => return Err(Cause::MethodNotAllowed.into()),
    }
    transport::check_post_headers(s)?;
    let body = Box::pin(http::read_body(s, snap.max_body_bytes))
        .await?
        .freeze();
    let (msg, kind) = Message::parse(&body)?;
    // On a per-server door the upstream checks its own revision's contract and version.
    let modern = server.is_none()
        && stateless::check(s, &msg, kind, http::header(s, "mcp-protocol-version"))?;
    let header_version = if modern || server.is_some() {
        None
    } else {
        transport::protocol_version(s)?
    };
    let method = msg.method();
    ctx.method = method_label(&method);
    ctx.request_id = msg.id.map(|id| id.get().to_string());
    if ctx.audited() {
        ctx.body = Some(body.clone());
    }
    if let Some(route) = server {
        return Box::pin(through_server(
            sh, s, ctx, snap, &caller, route, &msg, kind, &body,
        ))
        .await;
    }
    Box::pin(session::classify(
        sh,
        s,
        ctx,
        &caller,
        modern,
        header_version,
        &msg,
        kind,
    ))
    .await?;
    let id = msg.id.unwrap_or(RawValue::NULL);
    if modern && stateless::removed(&method) {
        return Err(Cause::UnknownMethod(method.to_string()).to(id));
    }
    match kind {
        Kind::Notification => {
            Box::pin(notify::notification(sh, ctx, snap, &caller, &msg, &method)).await;
            http::empty(s, 202, &[]).await.ok();
            return Ok(());
        }
        Kind::Response => {
            Box::pin(notify::client_response(sh, ctx, snap, &caller, &msg)).await?;
            http::empty(s, 202, &[]).await.ok();
            return Ok(());
        }
        Kind::Request => {}
    }
    if matches!(
        method.as_ref(),
        "initialize"
            | "tools/list"
            | "prompts/list"
            | "resources/list"
            | "resources/templates/list"
            | "logging/setLevel"
            | "subscriptions/listen"
    ) {
        limit::admit_fan_out(sh, snap, ctx.caller_key)
            .await
            .map_err(|c| c.to(id))?;
    }
    let result = match method.as_ref() {
        "initialize" => {
            return Box::pin(initialize::open(sh, s, ctx, snap, &caller, &msg, id)).await;
        }
        "server/discover" => initialize::discover_result(),
        "ping" => jsonrpc::to_raw(&serde_json::json!({})),
        "tools/list" | "prompts/list" | "resources/list" | "resources/templates/list" => {
            Box::pin(lists::merged(sh, ctx, snap, &caller, &msg, &method, id)).await?
        }
        "logging/setLevel" => {
            Box::pin(notify::broadcast_request(
                sh, ctx, snap, &caller, &msg, &method,
            ))
            .await;
            jsonrpc::to_raw(&serde_json::json!({}))
        }
        "subscriptions/listen" if modern => {
            return Box::pin(subscriptions::listen(sh, s, ctx, snap, &caller, &msg, id)).await;
        }
        m if route::is_routed(m) => {
            return Box::pin(call(sh, s, ctx, snap, &caller, &msg, &method, None)).await;
        }
        _ if modern => return Err(Cause::UnknownMethod(method.to_string()).to(id)),
        _ => return Err(Cause::MethodNotFound(method.to_string()).to(id)),
    };
    http::json(s, 200, jsonrpc::success(id, &result), &[])
        .await
        .ok();
    Ok(())
}

/// The per-server door after the body was read: routed calls take the same route → authorize →
/// limit steps as on `/mcp`; everything goes to the upstream as the client sent it.
#[allow(clippy::too_many_arguments)]
async fn through_server(
    sh: &Arc<Shared>,
    s: &mut Session,
    ctx: &mut Ctx,
    snap: &Arc<Snapshot>,
    caller: &Arc<Caller>,
    route: &Route,
    msg: &Message<'_>,
    kind: Kind,
    body: &Bytes,
) -> Result<(), GatewayError> {
    ctx.caller_key = session::server_caller_key(s, &ctx.snapshot, caller);
    if stateless::claims(msg, http::header(s, "mcp-protocol-version")) {
        // The upstream checks the revision's contract; its results are completed as it requires.
        ctx.era = Era::Stateless;
    }
    let method = msg.method();
    if kind == Kind::Request && route::is_routed(&method) {
        return call(sh, s, ctx, snap, caller, msg, &method, Some(body)).await;
    }
    let answer = (kind == Kind::Request).then(|| (msg.id_text(), method.as_ref()));
    passthrough::relay(sh, s, ctx, caller, route, body.clone(), answer).await
}

/// A routed call (`tools/call`, `prompts/get`, `resources/read`, …): route → authorize →
/// limit → approval → forward. `as_sent`: the per-server door's body, forwarded unchanged.
#[allow(clippy::too_many_arguments)]
async fn call(
    sh: &Arc<Shared>,
    s: &mut Session,
    ctx: &mut Ctx,
    snap: &Arc<Snapshot>,
    caller: &Arc<Caller>,
    msg: &Message<'_>,
    method: &str,
    as_sent: Option<&Bytes>,
) -> Result<(), GatewayError> {
    let id = msg.id.unwrap_or(RawValue::NULL);
    let mut params =
        jsonrpc::split_params(msg.params).map_err(|e| GatewayError::from(e).answering(id))?;
    ctx.target = jsonrpc::str_param(&params, route::name_key(method));
    let stateless = matches!(ctx.era, Era::Stateless);
    let named = ctx.target.as_deref();
    let target = route::resolve(snap, caller, ctx.door, method, named, &params, stateless)
        .map_err(|c| c.to(id))?;
    let route = target.route;
    ctx.route = Some(route.index);
    let tool = target
        .upstream_name
        .as_deref()
        .filter(|_| method == "tools/call");
    let exposed = ctx.target.clone().unwrap_or_default();
    // A tool is what the upstream lists under exactly that name; anything else is unknown,
    // worded exactly like a denied or hidden tool.
    let listed = match tool {
        Some(t) => Some(
            catalog::tool(sh, ctx, snap, caller, route, t)
                .await
                .map_err(|missing| match missing {
                    catalog::Missing::Unlisted => authorize::unknown_tool(&exposed).to(id),
                    catalog::Missing::Unavailable => {
                        Cause::UpstreamUnavailable(route.name.clone()).to(id)
                    }
                })?,
        ),
        None => None,
    };
    let schema = listed.as_ref().and_then(|l| tool.and_then(|t| l.get(t)));
    let needs_approval = authorize::decide(
        snap,
        caller,
        route,
        method,
        tool,
        &exposed,
        schema.map(|t| &t.listing),
    )
    .map_err(|c| c.to(id))?;
    ctx.tool = tool.filter(|t| route.names_tool(t)).map(str::to_string);
    if stateless
        && as_sent.is_none()
        && let Some(listed) = schema
    {
        let arguments = params.get("arguments").map(|a| a.as_ref());
        stateless::check_params(s, &listed.annotations, arguments, id)?;
    }
    let _in_flight = limit::admit(sh, snap, route, tool, ctx.caller_key)
        .await
        .map_err(|c| c.to(id))?;
    if let Some(body) = as_sent {
        if needs_approval {
            return Err(Cause::NotApproved(format!(
                "tool `{exposed}` needs the user's approval for each call, which only {} can ask for",
                snap.mcp_url
            ))
            .to(id));
        }
        let answer = Some((msg.id_text(), method));
        return Box::pin(passthrough::relay(
            sh,
            s,
            ctx,
            caller,
            route,
            body.clone(),
            answer,
        ))
        .await;
    }
    // Approval comes last, so nobody is asked about a call that a limit would refuse anyway.
    let streaming = if needs_approval && stateless {
        match approval::round::approve(sh, ctx, route, &exposed, &mut params, id).await? {
            approval::round::Round::Approved => false,
            approval::round::Round::Ask(result) => {
                ctx.outcome = Some(Outcome::Refused);
                ctx.refused = Some("waiting for the user's approval (input_required)".into());
                http::json(s, 200, jsonrpc::success(id, &result), &[])
                    .await
                    .ok();
                return Ok(());
            }
        }
    } else if needs_approval {
        let arguments = params.get("arguments").map(|a| a.as_ref());
        match approval::approve(sh, s, ctx, route, &exposed, arguments, id).await {
            Approval::Approved => true,
            Approval::Refused(e) => return Err(e),
            Approval::Ended => {
                ctx.outcome = Some(Outcome::Refused);
                return Ok(());
            }
        }
    } else {
        false
    };
    if let Some((key, value)) = target.rewrite {
        params.insert(key.into(), std::borrow::Cow::Owned(value));
    }
    forward::call(
        sh,
        s,
        ctx,
        caller,
        route,
        method,
        target.mcp_name.as_deref(),
        schema,
        params,
        id,
        streaming,
    )
    .await
}

/// The caller of a request, or the 401 that refuses it.
async fn authenticate(
    sh: &Shared,
    s: &Session,
    snap: &Snapshot,
) -> Result<Arc<Caller>, GatewayError> {
    sh.auth
        .authenticate(snap, http::header(s, "authorization"))
        .await
        .map_err(|e| {
            sh.metrics
                .auth_failures
                .with_label_values(&[e.reason()])
                .inc();
            let error =
                (e != crate::auth::AuthError::Missing).then_some(&e as &dyn std::fmt::Display);
            Cause::Unauthenticated {
                challenge: metadata::challenge(snap, error),
                error: e.to_string(),
            }
            .into()
        })
}

/// The routes a caller may reach, in a stable order.
fn visible<'r>(snap: &'r Snapshot, caller: &'r Caller) -> impl Iterator<Item = &'r Route> {
    snap.routes.iter().filter(|r| r.policy.visible_to(caller))
}
