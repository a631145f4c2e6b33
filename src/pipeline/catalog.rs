//! Each route's tools as last listed, for the classes that come from the upstream's annotations.
//! Refreshed whenever a `tools/list` passes; a call that finds it stale decides on it and has it
//! listed again in the background (only a route never listed is listed before the decision);
//! decisions read it without cloning tool JSON.

use super::{Shared, lists};
use crate::config::{Route, Snapshot};
use crate::ctx::Ctx;
use crate::policy::Caller;
use dashmap::DashMap;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a route's tool list decides classes before it is listed again.
const CATALOG_TTL: Duration = Duration::from_secs(300);

/// One route's tools by upstream name.
pub type Tools = Arc<HashMap<String, Value>>;

#[derive(Default)]
pub struct Catalog {
    routes: DashMap<String, Entry>,
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
            .filter_map(|t| Some((t["name"].as_str()?.to_string(), t.clone())))
            .collect();
        let entry = Entry {
            listed: Instant::now(),
            tools: Arc::new(tools),
            refreshing: false,
        };
        self.routes.insert(route.name.clone(), entry);
    }

    /// The route's tools, and whether a background listing should start now (stale, and none
    /// is under way: it is then marked as under way).
    fn get(&self, route: &Route) -> Option<(Tools, bool)> {
        let mut entry = self.routes.get_mut(&route.name)?;
        let refresh = entry.listed.elapsed() >= CATALOG_TTL && !entry.refreshing;
        entry.refreshing |= refresh;
        Some((entry.tools.clone(), refresh))
    }

    fn refresh_failed(&self, route: &Route) {
        if let Some(mut entry) = self.routes.get_mut(&route.name) {
            entry.refreshing = false;
        }
    }
}

/// The route's tools: from the catalog (refreshed behind the call when stale), else listed now
/// for this caller.
pub async fn listing(
    sh: &Arc<Shared>,
    ctx: &Ctx,
    snap: &Arc<Snapshot>,
    caller: &Arc<Caller>,
    route: &Route,
) -> Option<Tools> {
    if let Some((tools, refresh)) = sh.catalog.get(route) {
        if refresh {
            refresh_behind(sh.clone(), snap.clone(), caller.clone(), route.index);
        }
        return Some(tools);
    }
    let items = tokio::time::timeout(
        snap.timeouts.list,
        lists::collect(sh, ctx, caller, route, "tools/list", "tools", None),
    )
    .await
    .ok()?
    .ok()?;
    sh.catalog.remember(route, &items);
    sh.catalog.get(route).map(|(tools, _)| tools)
}

/// Lists a route's tools again off the request, over the gateway's own link to the upstream
/// (with the identity of the caller whose call found the catalog stale).
fn refresh_behind(sh: Arc<Shared>, snap: Arc<Snapshot>, caller: Arc<Caller>, index: usize) {
    tokio::spawn(async move {
        let Some(route) = snap.routes.get(index) else {
            return;
        };
        let ctx = Ctx::new(snap.clone());
        let listed = tokio::time::timeout(
            snap.timeouts.list,
            lists::collect(&sh, &ctx, &caller, route, "tools/list", "tools", None),
        )
        .await;
        match listed {
            Ok(Ok(items)) => sh.catalog.remember(route, &items),
            _ => sh.catalog.refresh_failed(route),
        }
    });
}
