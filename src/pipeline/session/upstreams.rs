//! The upstream sessions behind a client session, opened lazily: the sealed `Mcp-Session-Id`
//! names none (its size does not grow with the routes), each is opened on the first request
//! that needs it. With `sessions.store` the one opened first by any instance is kept there
//! (sealed, for the rest of the client session), so a stateful upstream sees one session per
//! client session whichever instance serves it; without a store each instance keeps its own.
//! Ids issued before sessions were lazy still carry theirs and are honoured.

use crate::config::{Route, Snapshot};
use crate::mcp::session::{SessionState, UpstreamSession, now_secs};
use crate::pipeline::Shared;
use crate::store::Redis;
use std::time::Duration;

/// What an upstream session is sealed as in the store (never as a client's session id).
const STORED: &[u8] = b"mcp-edge upstream session v1";

fn key(state: &SessionState, route: &str) -> String {
    format!("mcp-edge:upstream-session:{:032x}:{route}", state.id)
}

fn ttl(state: &SessionState) -> Duration {
    Duration::from_secs(state.expires.saturating_sub(now_secs()))
}

fn fell_back(store: &Redis, e: &str) {
    if store.should_log() {
        log::warn!(
            "sessions.store failed ({e}); upstream sessions opened now are this instance's own"
        );
    }
}

/// The upstream session this client session has with `route`, if one was opened: here, in
/// the sealed id (ids of earlier versions), or by another instance (with a store).
pub async fn find(sh: &Shared, state: &SessionState, route: &str) -> Option<UpstreamSession> {
    let local = sh.sessions.upstreams.get(&(state.id, route.to_string()));
    if let Some(u) = local.or_else(|| state.upstream(route).cloned()) {
        return Some(u);
    }
    stored(sh, state, route).await
}

/// The upstream session another instance keeps for this client session in the store.
pub async fn stored(sh: &Shared, state: &SessionState, route: &str) -> Option<UpstreamSession> {
    let store = sh.session_store.as_deref()?;
    let found = match store.get(&key(state, route)).await {
        Ok(found) => found?,
        Err(e) => {
            fell_back(store, &e);
            return None;
        }
    };
    let u: UpstreamSession = sh.sealer.open_as(STORED, &found)?;
    (u.route == route).then(|| remember(sh, state, u))
}

fn remember(sh: &Shared, state: &SessionState, u: UpstreamSession) -> UpstreamSession {
    sh.sessions
        .upstreams
        .insert((state.id, u.route.clone()), u.clone(), state.expires);
    u
}

/// Keeps a newly opened upstream session for this client session. `replacing`: it replaces
/// one the upstream forgot, so it is kept whatever was there. Otherwise the first one kept
/// (here or, with a store, by any instance) wins: the session that holds is returned, and ours
/// as the loser to be ended when it lost.
pub async fn keep(
    sh: &Shared,
    state: &SessionState,
    opened: UpstreamSession,
    replacing: bool,
) -> (UpstreamSession, Option<UpstreamSession>) {
    let local_key = (state.id, opened.route.clone());
    if let Some(store) = sh.session_store.as_deref() {
        let sealed = sh.sealer.seal_as(STORED, &opened);
        let k = key(state, &opened.route);
        let kept = if replacing {
            store.put(&k, &sealed, ttl(state)).await.map(|()| None)
        } else {
            store.put_first(&k, &sealed, ttl(state)).await
        };
        match kept {
            Ok(None) => return (remember(sh, state, opened), None),
            Ok(Some(theirs)) => {
                if let Some(u) = sh
                    .sealer
                    .open_as::<UpstreamSession>(STORED, &theirs)
                    .filter(|u| u.route == opened.route)
                {
                    return (remember(sh, state, u), Some(opened));
                }
                // Unreadable (sealed with a retired key): ours replaces it.
                if let Err(e) = store.put(&k, &sealed, ttl(state)).await {
                    fell_back(store, &e);
                }
                return (remember(sh, state, opened), None);
            }
            Err(e) => fell_back(store, &e),
        }
    }
    if replacing {
        return (remember(sh, state, opened), None);
    }
    if sh
        .sessions
        .upstreams
        .insert_new(local_key.clone(), opened.clone(), state.expires)
    {
        return (opened, None);
    }
    match sh.sessions.upstreams.get(&local_key) {
        Some(theirs) => (theirs, Some(opened)),
        None => (remember(sh, state, opened), None),
    }
}

/// Every upstream session this client session opened, for DELETE: the routes of `snap`.
pub async fn all(sh: &Shared, state: &SessionState, snap: &Snapshot) -> Vec<UpstreamSession> {
    let mut found = Vec::new();
    let mut missing: Vec<&Route> = Vec::new();
    for route in &snap.routes {
        let local = sh.sessions.upstreams.get(&(state.id, route.name.clone()));
        match local.or_else(|| state.upstream(&route.name).cloned()) {
            Some(u) => found.push(u),
            None => missing.push(route),
        }
    }
    if let Some(store) = sh.session_store.as_deref()
        && !missing.is_empty()
    {
        let keys: Vec<String> = missing.iter().map(|r| key(state, &r.name)).collect();
        match store.get_many(&keys).await {
            Ok(values) => found.extend(
                values
                    .iter()
                    .flatten()
                    .filter_map(|v| sh.sealer.open_as::<UpstreamSession>(STORED, v)),
            ),
            Err(e) => fell_back(store, &e),
        }
    }
    found
}
