//! Session and era: whether a request is `initialize`, part of a sealed 2025-era session (which
//! must be the caller's own), or of the stateless 2026-07-28 revision; who the caller is as a
//! bucket key; and DELETE. What an instance remembers about sessions lives in sharded bounded
//! caches, so no global lock is taken on the data path; with `sessions.store`, ended sessions
//! are shared by every instance (one EXISTS per session request while the store is configured).

use super::Shared;
use super::shared::LOCAL_CAP;
use crate::cache::Bounded;
use crate::config::Snapshot;
use crate::config::snapshot::AuthSettings;
use crate::ctx::{Ctx, Era};
use crate::error::{Cause, GatewayError};
use crate::http;
use crate::mcp::STATELESS_VERSION;
use crate::mcp::jsonrpc::{Kind, Message};
use crate::mcp::session::{SessionState, UpstreamSession, now_secs};
use crate::policy::Caller;
use crate::upstream;
use pingora::protocols::http::ServerSession as Session;
use std::sync::Arc;

pub mod upstreams;

/// Opened session ids kept at most: a few MiB for the busiest sessions, so idle ones cost nothing.
const OPENED_CAP: usize = 4096;

/// The little an instance remembers on its own; losing it costs a re-initialize, never a session.
pub struct Sessions {
    /// Session ids already opened here: the AEAD and JSON work is per session, not per request.
    opened: Bounded<String, Arc<SessionState>>,
    /// Sessions ended by DELETE here, until they would expire anyway.
    ended: Bounded<u128, ()>,
    /// Upstream sessions by client session and route, opened (or found in the store) here.
    pub upstreams: Bounded<(u128, String), UpstreamSession>,
}

impl Sessions {
    pub fn new() -> Self {
        Self {
            opened: Bounded::new(OPENED_CAP),
            ended: Bounded::new(LOCAL_CAP),
            upstreams: Bounded::new(LOCAL_CAP),
        }
    }
}

pub fn caller_key(value: impl std::hash::Hash) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one(value)
}

/// The bucket key (and session owner) of an authenticated subject.
pub fn subject_key(caller: &Caller) -> u64 {
    caller_key(("sub", &caller.subject))
}

/// The bucket key on the per-server door, whose sessions are the upstream's: the subject;
/// without authentication the upstream session (else the client's address), as on `/mcp`.
pub fn server_caller_key(s: &Session, snap: &Snapshot, caller: &Caller) -> u64 {
    if !matches!(snap.auth, AuthSettings::None) {
        return subject_key(caller);
    }
    match http::header(s, "mcp-session-id") {
        Some(session) => caller_key(("upstream-session", session)),
        None => caller_key((
            "addr",
            s.client_addr().and_then(|a| a.as_inet().map(|i| i.ip())),
        )),
    }
}

/// Decides the era and opens the session, refusing what the transport rules forbid; sets the
/// era, the protocol version and the caller's bucket key on `ctx`. `modern`: the stateless
/// revision's checks passed (`stateless::check`).
#[allow(clippy::too_many_arguments)]
pub async fn classify(
    sh: &Shared,
    s: &Session,
    ctx: &mut Ctx,
    caller: &Caller,
    modern: bool,
    header_version: Option<String>,
    msg: &Message<'_>,
    kind: Kind,
) -> Result<(), GatewayError> {
    let method = msg.method();
    let anonymous = matches!(ctx.snapshot.auth, AuthSettings::None);
    let subject = subject_key(caller);
    if modern {
        let addr = s.client_addr().map(|a| a.as_inet().map(|i| i.ip()));
        ctx.era = Era::Stateless;
        ctx.version = STATELESS_VERSION.into();
        ctx.caller_key = if anonymous {
            caller_key(("addr", addr.flatten()))
        } else {
            subject
        };
        return Ok(());
    }
    if kind == Kind::Request && method == "initialize" {
        ctx.era = Era::Opening;
        // Without authentication there is nobody to hold to a bucket before the session exists:
        // each connection is its own caller (as each session is afterwards).
        ctx.caller_key = if anonymous {
            caller_key(("connection", s.client_addr().map(|a| a.to_string())))
        } else {
            subject
        };
        return Ok(());
    }
    let state = session_of(sh, s, caller).await?;
    ctx.version = header_version.unwrap_or_else(|| state.version.clone());
    ctx.caller_key = if anonymous {
        caller_key(("session", state.id))
    } else {
        subject
    };
    ctx.era = Era::Session(state);
    Ok(())
}

/// The caller's session named by `Mcp-Session-Id`: 400 without one; 404 when it is unknown,
/// tampered, expired, ended, or another caller's (a session belongs to whoever opened it).
pub async fn session_of(
    sh: &Shared,
    s: &Session,
    caller: &Caller,
) -> Result<Arc<SessionState>, GatewayError> {
    let token = http::header(s, "mcp-session-id").ok_or(Cause::NoSession)?;
    let owner = subject_key(caller);
    let state = open_session(sh, token)
        .filter(|st| st.owner == owner)
        .ok_or(Cause::SessionNotFound)?;
    if ended(sh, &state).await {
        return Err(Cause::SessionNotFound.into());
    }
    Ok(state)
}

fn ended_key(id: u128) -> String {
    format!("mcp-edge:ended-session:{id:032x}")
}

/// Whether the session was ended (DELETE): here, or with a sessions store on any instance.
async fn ended(sh: &Shared, state: &SessionState) -> bool {
    if !sh.sessions.ended.is_empty() && sh.sessions.ended.contains(&state.id) {
        return true;
    }
    let Some(store) = &sh.session_store else {
        return false;
    };
    match store.is_marked(&ended_key(state.id)).await {
        Ok(ended) => {
            if ended {
                sh.sessions.ended.insert(state.id, (), state.expires);
            }
            ended
        }
        Err(e) => {
            if store.should_log() {
                log::warn!(
                    "sessions.store failed ({e}); ended sessions are known per instance only"
                );
            }
            false
        }
    }
}

fn open_session(sh: &Shared, token: &str) -> Option<Arc<SessionState>> {
    if let Some(hit) = sh.sessions.opened.get(token) {
        return Some(hit);
    }
    let state = Arc::new(sh.sealer.open(token)?);
    if state.expires <= now_secs() {
        return None;
    }
    sh.sessions
        .opened
        .insert(token.to_string(), state.clone(), state.expires);
    Some(state)
}

/// DELETE: ends the client session and the upstream sessions behind it.
pub async fn delete(
    sh: &Shared,
    s: &mut Session,
    snap: &Snapshot,
    caller: &Caller,
) -> Result<(), GatewayError> {
    let state = session_of(sh, s, caller).await?;
    sh.sessions.ended.insert(state.id, (), state.expires);
    if let Some(store) = &sh.session_store {
        let ttl = std::time::Duration::from_secs(state.expires.saturating_sub(now_secs()));
        if let Err(e) = store.mark(&ended_key(state.id), ttl).await {
            log::warn!("sessions.store failed ({e}); this session is ended on this instance only");
        }
    }
    let opened = upstreams::all(sh, &state, snap).await;
    let ends = opened.iter().filter_map(|u| {
        let route = snap.route(&u.route)?;
        Some(super::link::end_upstream_session(sh, route, u))
    });
    upstream::all_within(snap.timeouts.initialize, ends).await;
    sh.metrics.sessions_ended.inc();
    http::empty(s, 200, &[]).await.ok();
    Ok(())
}
