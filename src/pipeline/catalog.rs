//! Each route's tools as last listed, for the classes that come from the upstream's annotations.
//! Refreshed whenever a merged `tools/list` passes, and listed again (before the decision, never
//! inside it) when a call finds it stale; decisions read it without cloning tool JSON.

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
    routes: DashMap<String, (Instant, Tools)>,
}

impl Catalog {
    /// Keeps a route's tool list.
    pub fn remember(&self, route: &Route, items: &[Value]) {
        let tools = items
            .iter()
            .filter_map(|t| Some((t["name"].as_str()?.to_string(), t.clone())))
            .collect();
        self.routes
            .insert(route.name.clone(), (Instant::now(), Arc::new(tools)));
    }

    fn fresh(&self, route: &Route) -> Option<Tools> {
        let entry = self.routes.get(&route.name)?;
        (entry.0.elapsed() < CATALOG_TTL).then(|| entry.1.clone())
    }
}

/// The route's tools, from the catalog when fresh, else listed again for this caller.
pub async fn listing(
    sh: &Shared,
    ctx: &Ctx,
    snap: &Snapshot,
    caller: &Caller,
    route: &Route,
) -> Option<Tools> {
    if let Some(tools) = sh.catalog.fresh(route) {
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
    sh.catalog.fresh(route)
}
