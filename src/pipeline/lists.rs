//! Merged lists: every upstream asked at once, all its pages followed, names prefixed, one page
//! answered. An upstream that fails or is slow costs only its own entries.

use super::Shared;
use super::link::{self, LinkKind, peer_label};
use crate::config::snapshot::AuthSettings;
use crate::config::snapshot::{expose_name, expose_uri};
use crate::config::{Route, Snapshot};
use crate::ctx::{Ctx, Era};
use crate::error::{Cause, GatewayError};
use crate::mcp;
use crate::mcp::era::{self, CacheHint};
use crate::mcp::jsonrpc::{self, Message};
use crate::policy::Caller;
use crate::policy::{Class, Decision};
use crate::upstream::{self, Outgoing, UpstreamError};
use cache::Listed;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::Duration;

pub mod cache;

/// The longest a merged list may be cached for (upstream hints only shorten it).
const MAX_TTL_MS: u64 = 60_000;

/// Pages followed per upstream before its list is cut (a loop guard, not a limit in practice).
const MAX_PAGES: usize = 100;

/// What a list method returns and which field of an entry carries its routable identity.
#[derive(Clone, Copy)]
struct Shape {
    method: &'static str,
    key: &'static str,
    field: &'static str,
    is_uri: bool,
}

fn shape(method: &str) -> Shape {
    match method {
        "prompts/list" => Shape {
            method: "prompts/list",
            key: "prompts",
            field: "name",
            is_uri: false,
        },
        "resources/list" => Shape {
            method: "resources/list",
            key: "resources",
            field: "uri",
            is_uri: true,
        },
        "resources/templates/list" => Shape {
            method: "resources/templates/list",
            key: "resourceTemplates",
            field: "uriTemplate",
            is_uri: true,
        },
        _ => Shape {
            method: "tools/list",
            key: "tools",
            field: "name",
            is_uri: false,
        },
    }
}

/// A merged list for the caller: every visible upstream asked at once.
pub async fn merged(
    sh: &Shared,
    ctx: &Ctx,
    snap: &Snapshot,
    caller: &Caller,
    msg: &Message<'_>,
    method: &str,
    id: &RawValue,
) -> Result<Box<RawValue>, GatewayError> {
    let params =
        jsonrpc::split_params(msg.params).map_err(|e| GatewayError::from(e).answering(id))?;
    if params.get("cursor").is_some_and(|c| c.get() != "null") {
        // The merged answer is always one page, so no cursor of ours exists.
        return Err(Cause::InvalidParams(
            "unknown cursor; this server returns complete lists".into(),
        )
        .to(id));
    }
    let meta = params.get("_meta").map(|m| m.as_ref());
    let shape = shape(method);
    // Prompts and resources are read-class: a caller without read on a route sees none.
    let routes: Vec<&Route> = super::visible(snap, caller)
        .filter(|r| shape.key == "tools" || r.policy.grants(caller, Class::Read))
        .collect();
    let lists = routes
        .iter()
        .map(|route| listed(sh, ctx, caller, route, method, meta));
    let answers = upstream::all_within(snap.timeouts.list, lists).await;
    // Lists filtered per caller may be cached only for that caller.
    let mut hint = CacheHint {
        ttl_ms: MAX_TTL_MS,
        public: matches!(snap.auth, AuthSettings::None),
    };
    let per_route: Vec<Arc<Vec<Value>>> = routes
        .iter()
        .zip(answers)
        .map(
            |(route, r)| match r.unwrap_or(Err(UpstreamError::Timeout)) {
                Err(e) => {
                    log::warn!("{method} from upstream {} failed: {e}", peer_label(route));
                    // A partial merge: clients should ask again soon.
                    hint = hint.and(CacheHint::NONE);
                    Arc::default()
                }
                Ok(listed) => {
                    hint = hint.and(listed.hint);
                    listed.items
                }
            },
        )
        .collect();
    let mut merged = Vec::new();
    for (route, items) in routes.iter().zip(per_route) {
        for item in items.iter() {
            let Some(original) = item.get(shape.field).and_then(Value::as_str) else {
                continue;
            };
            let allowed = shape.key != "tools"
                || matches!(
                    route.policy.decide(caller, original, Some(item)),
                    Decision::Allow { .. }
                );
            if !allowed {
                continue;
            }
            // A tool whose `x-mcp-header` annotations are invalid cannot be called correctly.
            if shape.key == "tools"
                && let Err(why) = crate::mcp::params::annotations(&item["inputSchema"])
            {
                log::warn!(
                    "upstream {} offers `{original}` with an invalid x-mcp-header ({why}); left out",
                    peer_label(route)
                );
                continue;
            }
            let exposed = if shape.is_uri {
                Some(expose_uri(&route.prefix, original))
            } else {
                expose_name(&route.prefix, original)
            };
            match exposed {
                Some(name) if !snap.leads_to(&name, route, shape.is_uri) => log::warn!(
                    "upstream {} offers `{original}`, which names another route's entry unprefixed; left out",
                    peer_label(route)
                ),
                Some(name) => {
                    let mut item = item.clone();
                    item[shape.field] = Value::String(name);
                    merged.push(item);
                }
                None => log::warn!(
                    "upstream {} offers `{original}`, which cannot be exposed as a valid MCP name (64 characters of [A-Za-z0-9_.-] with its prefix); left out",
                    peer_label(route)
                ),
            }
        }
    }
    let mut result = Map::new();
    result.insert(shape.key.into(), Value::Array(merged));
    if matches!(ctx.era, Era::Stateless) {
        era::complete_map(&mut result, hint);
    }
    Ok(jsonrpc::to_raw(&result))
}

/// One upstream's list of `method` for the caller: from the shared catalog when the route's
/// lists are shared (listed then without the client's `_meta`), else listed for this caller.
/// A tool list listed is the route's tool catalog as well.
pub async fn listed(
    sh: &Shared,
    ctx: &Ctx,
    caller: &Caller,
    route: &Route,
    method: &str,
    meta: Option<&RawValue>,
) -> Result<Listed, UpstreamError> {
    let shape = shape(method);
    let list = |meta| async move {
        let listed = collect(sh, ctx, caller, route, method, shape.key, meta).await?;
        if shape.key == "tools" {
            sh.catalog.remember(route, &listed.items);
        }
        Ok(listed)
    };
    if !route.shared_catalog {
        return list(meta).await;
    }
    let tenant = caller
        .tenant
        .as_ref()
        .filter(|t| route.tenant_headers.contains_key(*t));
    let key = (route.index, shape.method, tenant.cloned());
    let generation = sh.live.generation();
    let ttl = ctx.snapshot.catalog_ttl;
    sh.catalog
        .lists
        .get_or_list(generation, key, ttl, || list(None))
        .await
}

/// Every page of one upstream's list, and the cache hint that holds for all of them.
async fn collect(
    sh: &Shared,
    ctx: &Ctx,
    caller: &Caller,
    route: &Route,
    method: &str,
    key: &str,
    meta: Option<&RawValue>,
) -> Result<Listed, UpstreamError> {
    let mut link = link::link(sh, ctx, caller, route)
        .await
        .ok_or(UpstreamError::Connect)?;
    let mut relinked = false;
    let mut cursor: Option<String> = None;
    let mut items = Vec::new();
    let mut hint = CacheHint::OPEN;
    let mut stated: Option<u64> = None;
    let mut pages = 0;
    while pages < MAX_PAGES {
        let id = sh.upstreams.own_id();
        let mut params = Map::new();
        if let Some(c) = &cursor {
            params.insert("cursor".into(), Value::String(c.clone()));
        }
        let mut own: Map<String, Value> = meta
            .and_then(|m| serde_json::from_str(m.get()).ok())
            .unwrap_or_default();
        if link.kind == LinkKind::Stateless {
            // The stateless revision's envelope, which a session client's request lacks.
            if let Value::Object(envelope) = link::stateless_meta() {
                for (k, v) in envelope {
                    own.entry(k).or_insert(v);
                }
            }
        } else {
            // A 2025 session upstream refuses the stateless revision's envelope.
            for key in mcp::STATELESS_META_KEYS {
                own.remove(*key);
            }
        }
        if !own.is_empty() {
            params.insert("_meta".into(), Value::Object(own));
        }
        let sent = {
            let mut out = Outgoing::post(jsonrpc::request(&id, method, Some(&params)));
            link.apply(&mut out, method, None);
            upstream::rpc(&sh.upstreams.connector, &route.upstream, &out, &id).await
        };
        let reply = match sent {
            Err(UpstreamError::Status(404))
                if !relinked && matches!(link.kind, LinkKind::Session { .. }) =>
            {
                link = link::relink(sh, ctx, caller, route, Some(&link.kind))
                    .await
                    .ok_or(UpstreamError::Status(404))?;
                relinked = true;
                continue;
            }
            other => other?,
        };
        pages += 1;
        let page = reply.outcome.map_err(|_| UpstreamError::Garbage)?;
        hint = hint.and(CacheHint::of(&page));
        if let Some(ttl) = era::stated_ttl(&page) {
            stated = Some(stated.map_or(ttl, |s| s.min(ttl)));
        }
        let mut result: Value =
            serde_json::from_str(page.get()).map_err(|_| UpstreamError::Garbage)?;
        if let Some(Value::Array(list)) = result.get_mut(key).map(Value::take) {
            items.extend(list);
        }
        cursor = result
            .get("nextCursor")
            .and_then(Value::as_str)
            .map(str::to_string);
        if cursor.is_none() {
            break;
        }
    }
    Ok(Listed {
        items: Arc::new(items),
        hint,
        stated_ttl: stated.map(Duration::from_millis),
    })
}
