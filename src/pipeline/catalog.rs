//! Each route's tools as last listed: a call names a tool the upstream listed, exactly, or it is
//! unknown (never forwarded); the listing gives the classes that come from annotations.
//! Refreshed whenever a `tools/list` passes; a call that finds it stale decides on it and has it
//! listed again in the background; decisions read it without cloning tool JSON.

use super::{Shared, link, lists};
use crate::config::{Route, Snapshot};
use crate::ctx::Ctx;
use crate::mcp::params::{self, Annotation};
use crate::policy::Caller;
use crate::upstream::UpstreamError;
use dashmap::DashMap;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a route's tool list decides classes before it is listed again.
const CATALOG_TTL: Duration = Duration::from_secs(300);
/// A call naming a tool the catalog lacks lists the upstream again at most this often.
const RELIST_AFTER: Duration = Duration::from_secs(10);

/// One route's tools by upstream name.
pub type Tools = Arc<HashMap<String, Tool>>;

/// A tool as the upstream listed it, with what calls to it need read out once per listing.
pub struct Tool {
    pub listing: Value,
    /// Its `x-mcp-header` annotations (none when it has none or an invalid one).
    pub annotations: Vec<Annotation>,
}

#[derive(Default)]
pub struct Catalog {
    routes: DashMap<String, Entry>,
    /// What each upstream (route and address) declared when a session with it was last opened.
    capabilities: DashMap<(String, String), Value>,
    /// Every upstream list kept for all callers of a route (`catalog: shared`).
    pub lists: lists::cache::ListCache,
}

struct Entry {
    listed: Instant,
    tools: Tools,
    /// A background listing is under way.
    refreshing: bool,
}

impl Catalog {
    /// Keeps a route's tool list.
    pub fn remember(&self, route: &Route, items: &[Value]) {
        let tools = items
            .iter()
            .filter_map(|t| {
                let tool = Tool {
                    listing: t.clone(),
                    annotations: params::annotations(&t["inputSchema"]).unwrap_or_default(),
                };
                Some((t["name"].as_str()?.to_string(), tool))
            })
            .collect();
        let entry = Entry {
            listed: Instant::now(),
            tools: Arc::new(tools),
            refreshing: false,
        };
        self.routes.insert(route.name.clone(), entry);
    }

    pub fn capabilities_seen(&self, route: &Route, capabilities: &Value) {
        let key = (route.name.clone(), route.upstream.addr.to_string());
        self.capabilities.insert(key, capabilities.clone());
    }

    /// What the route's upstream declared when last opened, if it has been.
    pub fn capabilities(&self, route: &Route) -> Option<Value> {
        let key = (route.name.clone(), route.upstream.addr.to_string());
        self.capabilities.get(&key).map(|c| c.clone())
    }

    /// The route's tools, how long ago they were listed, and whether a background listing
    /// should start now (stale, and none under way: it is then marked as under way). The
    /// common case takes only a shard's read lock.
    fn get(&self, route: &Route) -> Option<(Tools, Duration, bool)> {
        {
            let entry = self.routes.get(&route.name)?;
            let age = entry.listed.elapsed();
            if age < CATALOG_TTL || entry.refreshing {
                return Some((entry.tools.clone(), age, false));
            }
        }
        let mut entry = self.routes.get_mut(&route.name)?;
        let refresh = !entry.refreshing;
        entry.refreshing = true;
        Some((entry.tools.clone(), entry.listed.elapsed(), refresh))
    }

    fn refresh_failed(&self, route: &Route) {
        if let Some(mut entry) = self.routes.get_mut(&route.name) {
            entry.refreshing = false;
        }
    }
}

/// The route's tools if the upstream lists `tool` (exact name): from the catalog (refreshed
/// behind the call when stale); listed now for this caller when the route was never listed, or
/// once when the catalog lacks `tool` and is older than `RELIST_AFTER` (so made-up names cannot
/// make the gateway list an upstream more often than that). Either way a tool not listed is
/// never forwarded: `Unlisted` (the caller learns it is unknown) or `Unavailable` (the upstream
/// could not be listed at all).
pub async fn tool(
    sh: &Arc<Shared>,
    ctx: &Ctx,
    snap: &Arc<Snapshot>,
    caller: &Arc<Caller>,
    route: &Route,
    tool: &str,
) -> Result<Tools, Missing> {
    let found = |tools: Tools| {
        if tools.contains_key(tool) {
            Ok(tools)
        } else {
            Err(Missing::Unlisted)
        }
    };
    if let Some((tools, age, refresh)) = sh.catalog.get(route) {
        if refresh {
            refresh_behind(sh.clone(), snap.clone(), caller.clone(), route.index);
        }
        if tools.contains_key(tool) || age < RELIST_AFTER {
            return found(tools);
        }
    }
    let listed = tokio::time::timeout(
        snap.timeouts.list,
        Box::pin(lists::listed(sh, ctx, caller, route, "tools/list", None)),
    )
    .await
    .unwrap_or(Err(UpstreamError::Timeout));
    let listed = listed
        .map_err(|e| {
            log::warn!(
                "tools/list from upstream {} failed ({e}); its tools answer as unknown until it lists them",
                link::peer_label(route)
            );
        })
        .map_err(|()| Missing::Unavailable)?;
    sh.catalog.remember(route, &listed.items);
    let (tools, _, _) = sh.catalog.get(route).ok_or(Missing::Unavailable)?;
    found(tools)
}

/// Why a call's tool is not in the catalog.
pub enum Missing {
    Unlisted,
    Unavailable,
}

/// Lists a route's tools again off the request, over the gateway's own link to the upstream
/// (with the identity of the caller whose call found the catalog stale).
fn refresh_behind(sh: Arc<Shared>, snap: Arc<Snapshot>, caller: Arc<Caller>, index: usize) {
    tokio::spawn(async move {
        let Some(route) = snap.routes.get(index) else {
            return;
        };
        let mut ctx = Ctx::new(snap.clone());
        ctx.caller_key = super::session::subject_key(&caller);
        let listed = tokio::time::timeout(
            snap.timeouts.list,
            lists::listed(&sh, &ctx, &caller, route, "tools/list", None),
        )
        .await;
        match listed {
            Ok(Ok(listed)) => sh.catalog.remember(route, &listed.items),
            _ => sh.catalog.refresh_failed(route),
        }
    });
}
