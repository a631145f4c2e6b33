//! Merged lists: every upstream asked at once, all its pages followed, names prefixed, one page
//! answered. An upstream that fails or is slow costs only its own entries.

use super::{Gateway, LinkKind, Request, peer_label};
use crate::config::Route;
use crate::config::snapshot::{expose_name, expose_uri};
use crate::error::GatewayError;
use crate::mcp::jsonrpc::{self, Message};
use crate::policy::{Class, Decision};
use crate::upstream::{self, Outgoing, UpstreamError};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// How long a route's tool list decides classes before it is listed again.
const CATALOG_TTL: std::time::Duration = std::time::Duration::from_secs(300);

/// Pages followed per upstream before its list is cut (a loop guard, not a limit in practice).
const MAX_PAGES: usize = 100;

/// What a list method returns and which field of an entry carries its routable identity.
#[derive(Clone, Copy)]
struct Shape {
    key: &'static str,
    field: &'static str,
    is_uri: bool,
}

fn shape(method: &str) -> Shape {
    match method {
        "prompts/list" => Shape {
            key: "prompts",
            field: "name",
            is_uri: false,
        },
        "resources/list" => Shape {
            key: "resources",
            field: "uri",
            is_uri: true,
        },
        "resources/templates/list" => Shape {
            key: "resourceTemplates",
            field: "uriTemplate",
            is_uri: true,
        },
        _ => Shape {
            key: "tools",
            field: "name",
            is_uri: false,
        },
    }
}

impl Gateway {
    pub(super) async fn list(
        &self,
        req: &Request<'_>,
        msg: &Message<'_>,
        method: &str,
        id: &RawValue,
    ) -> Result<Box<RawValue>, GatewayError> {
        let params = jsonrpc::split_params(msg.params)
            .map_err(|e| GatewayError::rpc(id, e.code, e.message))?;
        if params.get("cursor").is_some_and(|c| c.get() != "null") {
            // The merged answer is always one page, so no cursor of ours exists.
            return Err(GatewayError::rpc(
                id,
                jsonrpc::INVALID_PARAMS,
                "Invalid params: unknown cursor; this server returns complete lists",
            ));
        }
        let meta = params.get("_meta").map(|m| m.as_ref());
        let shape = shape(method);
        let timeout = req.snap.timeouts.list;
        // Prompts and resources are read-class: a caller without read on a route sees none.
        let routes: Vec<&Route> = self
            .routes(req)
            .filter(|r| shape.key == "tools" || r.policy.grants(&req.caller, Class::Read))
            .collect();
        let per_route = futures::future::join_all(routes.iter().map(|route| async move {
            let r =
                tokio::time::timeout(timeout, self.collect(req, route, method, shape.key, meta))
                    .await
                    .unwrap_or(Err(UpstreamError::Timeout));
            if let Err(e) = &r {
                log::warn!("{method} from upstream {} failed: {e}", peer_label(route));
            }
            r.unwrap_or_default()
        }))
        .await;
        let mut merged = Vec::new();
        for (route, items) in routes.iter().zip(per_route) {
            if shape.key == "tools" {
                self.remember_tools(route, &items);
            }
            for mut item in items {
                let Some(original) = item.get(shape.field).and_then(Value::as_str) else {
                    continue;
                };
                let allowed = shape.key != "tools"
                    || matches!(
                        route.policy.decide(&req.caller, original, Some(&item)),
                        Decision::Allow { .. }
                    );
                if !allowed {
                    continue;
                }
                let exposed = if shape.is_uri {
                    Some(expose_uri(&route.prefix, original))
                } else {
                    expose_name(&route.prefix, original)
                };
                match exposed {
                    Some(name) => {
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
        Ok(jsonrpc::to_raw(&result))
    }

    /// Keeps a route's tool list for annotation-derived classes at call time.
    fn remember_tools(&self, route: &Route, items: &[Value]) {
        let tools = items
            .iter()
            .filter_map(|t| Some((t["name"].as_str()?.to_string(), t.clone())))
            .collect();
        self.catalog
            .insert(route.name.clone(), (std::time::Instant::now(), tools));
    }

    /// The upstream's listing of one tool (annotations included), from the catalog when fresh,
    /// else listed again for this caller.
    pub(super) async fn listing(
        &self,
        req: &Request<'_>,
        route: &Route,
        tool: &str,
    ) -> Option<Value> {
        if let Some(entry) = self.catalog.get(&route.name)
            && entry.0.elapsed() < CATALOG_TTL
        {
            return entry.1.get(tool).cloned();
        }
        let timeout = req.snap.timeouts.list;
        let items = tokio::time::timeout(
            timeout,
            self.collect(req, route, "tools/list", "tools", None),
        )
        .await
        .ok()?
        .ok()?;
        self.remember_tools(route, &items);
        items.into_iter().find(|t| t["name"] == tool)
    }

    /// Every page of one upstream's list.
    async fn collect(
        &self,
        req: &Request<'_>,
        route: &Route,
        method: &str,
        key: &str,
        meta: Option<&RawValue>,
    ) -> Result<Vec<Value>, UpstreamError> {
        let mut link = self.link(req, route).await.ok_or(UpstreamError::Connect)?;
        let mut relinked = false;
        let mut cursor: Option<String> = None;
        let mut items = Vec::new();
        let mut pages = 0;
        while pages < MAX_PAGES {
            let id = self.own_id();
            let mut params = Map::new();
            if let Some(c) = &cursor {
                params.insert("cursor".into(), Value::String(c.clone()));
            }
            if let Some(m) = meta {
                params.insert(
                    "_meta".into(),
                    serde_json::from_str(m.get()).unwrap_or_default(),
                );
            }
            let sent = {
                let mut out = Outgoing::post(jsonrpc::request(&id, method, Some(&params)));
                link.apply(&mut out, method, None);
                upstream::rpc(&self.connector, &route.upstream, &out, &id).await
            };
            let reply = match sent {
                Err(UpstreamError::Status(404))
                    if !relinked && matches!(link.kind, LinkKind::Session { .. }) =>
                {
                    link = self
                        .relink(req, route)
                        .await
                        .ok_or(UpstreamError::Status(404))?;
                    relinked = true;
                    continue;
                }
                other => other?,
            };
            pages += 1;
            let mut result: Value = reply
                .outcome
                .ok()
                .and_then(|r| serde_json::from_str(r.get()).ok())
                .ok_or(UpstreamError::Garbage)?;
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
        Ok(items)
    }
}
