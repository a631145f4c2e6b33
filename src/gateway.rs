//! The MCP endpoint: transport checks, one parse of the body, dispatch by method. Answers are
//! written here; `proxy.rs` only calls `serve`.

mod edge;
mod forward;
mod lifecycle;
mod listen;
mod lists;
mod passthrough;
pub mod respond;

use crate::config::{Route, Snapshot};
use crate::ctx::{Outcome, Record, method_label};
use crate::error::GatewayError;
use crate::limits::shared::SharedBuckets;
use crate::limits::{self, Refusal};
use crate::mcp;
use crate::mcp::jsonrpc::{self, Kind, Message};
use crate::mcp::session::{Sealer, SessionState, UpstreamSession, now_secs};
use crate::metrics::Metrics;
use crate::upstream::Outgoing;
use arc_swap::ArcSwap;
use pingora::connectors::http::Connector;
use pingora::proxy::Session;
use pingora::upstreams::peer::Peer;
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Local memory is bounded: past this many entries the expired ones go, then all.
const LOCAL_CAP: usize = 100_000;

/// Everything the endpoint needs that outlives one request.
pub struct Gateway {
    config: ArcSwap<Snapshot>,
    sealer: Sealer,
    connector: Connector,
    next_id: AtomicU64,
    local: Mutex<Local>,
    pub metrics: Metrics,
    /// The configuration generation; open client streams watch it for list changes.
    generation: tokio::sync::watch::Sender<u64>,
    /// Calls in flight per upstream, for `upstream.max_concurrency`.
    inflight: pingora_limits::inflight::Inflight,
    /// Buckets shared with other instances, when `limits.store` is set.
    shared: Option<SharedBuckets>,
}

/// The little an instance remembers on its own; losing it costs a re-initialize, never a session.
#[derive(Default)]
struct Local {
    /// Upstream sessions re-opened after the upstream forgot the one in the sealed id.
    replaced: HashMap<(u128, String), (UpstreamSession, u64)>,
    /// Sessions ended by DELETE here, until they would expire anyway.
    ended: HashMap<u128, u64>,
    /// How to reach each upstream for clients of the stateless revision, by route and address.
    stateless: HashMap<(String, String), Link>,
}

/// How one request reaches one upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// A 2025-era upstream session (`session` is none for upstreams that issue no id).
    Session {
        session: Option<String>,
        version: String,
    },
    /// The stateless 2026-07-28 revision: no session, method and name in headers.
    Stateless,
}

impl Link {
    fn apply<'a>(&'a self, out: &mut Outgoing<'a>, method: &'a str, name: Option<&'a str>) {
        match self {
            Link::Session { session, version } => {
                out.session = session.as_deref();
                out.protocol_version = Some(version);
            }
            Link::Stateless => {
                out.protocol_version = Some(mcp::STATELESS_VERSION);
                out.mcp_method = Some(method);
                out.mcp_name = name;
            }
        }
    }
}

/// Which protocol era a request belongs to, and its session if it has one.
pub enum Era {
    /// `initialize`: no session yet.
    Opening,
    Session {
        state: SessionState,
        token: String,
    },
    Stateless,
}

/// One client request after the transport checks.
pub struct Request<'s> {
    pub snap: &'s Snapshot,
    pub era: Era,
    /// Protocol version in force for this request.
    pub version: String,
    /// Who is calling, as a bucket key. Without authentication (`auth.mode: none`) each session
    /// is its own caller, and a stateless client is its address.
    pub caller: u64,
}

fn caller_key(value: impl std::hash::Hash) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one(value)
}

impl Gateway {
    pub fn new(snapshot: Snapshot) -> Self {
        let sealer = Sealer::new(&snapshot.session_keys);
        let opts = pingora::connectors::ConnectorOptions::new(
            snapshot.server.upstream_keepalive_pool_size,
        );
        let shared = snapshot.limit_store.as_deref().and_then(|url| {
            SharedBuckets::new(url)
                .map_err(|e| log::error!("{e}; limits stay local"))
                .ok()
        });
        let metrics = Metrics::new();
        metrics.config_generation.set(1);
        metrics.config_last_success.set(now_secs() as f64);
        Self {
            config: ArcSwap::from_pointee(snapshot),
            sealer,
            connector: Connector::new(Some(opts)),
            next_id: AtomicU64::new(1),
            local: Mutex::new(Local::default()),
            metrics,
            generation: tokio::sync::watch::Sender::new(1),
            inflight: pingora_limits::inflight::Inflight::new(),
            shared,
        }
    }

    /// The configuration in force; a request takes it once.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.config.load_full()
    }

    /// Swaps in a new configuration (bucket state carried over where rates are unchanged).
    /// Requests in flight finish on the snapshot they started with. Returns the new generation.
    pub fn install(&self, mut snapshot: Snapshot) -> u64 {
        snapshot.adopt_limits(&self.config.load());
        self.config.store(Arc::new(snapshot));
        let mut generation = 0;
        self.generation.send_modify(|g| {
            *g += 1;
            generation = *g;
        });
        self.metrics.config_generation.set(generation as i64);
        self.metrics.config_last_success.set(now_secs() as f64);
        generation
    }

    /// Takes a token from every bucket a call draws from: in the shared store when there is
    /// one and it answers, else locally.
    async fn take_tokens(
        &self,
        snap: &Snapshot,
        route: &Route,
        tool: Option<&str>,
        caller: u64,
    ) -> Result<(), Refusal> {
        if let Some(shared) = &self.shared {
            let keyed: Vec<_> = limits::buckets(snap, route, tool)
                .map(|(scope, l)| (scope, l, limits::shared_key(scope, route, tool, caller)))
                .collect();
            match shared.check(&keyed).await {
                Ok(verdict) => return verdict,
                Err(e) => {
                    self.metrics.limit_store_fallbacks.inc();
                    if shared.should_log() {
                        log::warn!("shared rate-limit store failed ({e}); limiting locally");
                    }
                }
            }
        }
        limits::check_local(snap, route, tool, caller)
    }

    /// Notified at every new configuration.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.generation.subscribe()
    }

    pub fn generation(&self) -> u64 {
        *self.generation.borrow()
    }

    /// Ready: a configuration is loaded and at least one upstream accepted its health probe.
    pub fn readiness(&self) -> Result<(), &'static str> {
        let snap = self.snapshot();
        if snap.routes.is_empty() {
            return Err("no routes configured");
        }
        let up = snap.routes.iter().any(|r| {
            self.metrics
                .upstream_up
                .get_metric_with_label_values(&[&r.name])
                .is_ok_and(|g| g.get() == 1)
        });
        if up {
            Ok(())
        } else {
            Err("no upstream reachable")
        }
    }

    /// An id for a request the gateway itself sends upstream (never a client's id).
    fn own_id(&self) -> Box<RawValue> {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        jsonrpc::to_raw(&format!("mcp-edge-{n}"))
    }

    fn local(&self) -> std::sync::MutexGuard<'_, Local> {
        self.local
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Serves one HTTP request on the MCP listener. Errors returned are client-connection errors.
    pub async fn serve(
        &self,
        s: &mut Session,
        snap: &Snapshot,
        rec: &mut Record,
    ) -> pingora::Result<()> {
        let path = s.req_header().uri.path();
        let served = if path == snap.mcp_path {
            self.serve_merged(s, snap, rec).await
        } else if let Some(route) = passthrough::route_of(path, snap) {
            rec.route = Some(route.index);
            self.serve_passthrough(s, snap, route).await
        } else {
            Err(GatewayError::http(
                404,
                format!("no MCP endpoint at this path; use {}", snap.mcp_url),
            ))
        };
        match served {
            Ok(()) => {
                rec.outcome.get_or_insert(Outcome::Ok);
                Ok(())
            }
            Err(e) => {
                rec.outcome.get_or_insert(Outcome::Refused);
                respond::error(s, &e).await
            }
        }
    }

    async fn serve_merged(
        &self,
        s: &mut Session,
        snap: &Snapshot,
        rec: &mut Record,
    ) -> Result<(), GatewayError> {
        edge::check_origin(s, snap)?;
        match s.req_header().method.as_str() {
            "POST" => {}
            "DELETE" => {
                rec.method = "DELETE";
                return self.delete(s, snap).await;
            }
            "GET" => {
                rec.method = "GET";
                return self.listen(s, snap).await;
            }
            _ => return Err(GatewayError::http(405, "use POST, GET or DELETE")),
        }
        edge::check_post_headers(s)?;
        let header_version = edge::protocol_version(s)?;
        let body = edge::read_body(s, snap.max_body_bytes).await?;
        let (msg, kind) = Message::parse(&body)?;
        let method = msg.method();
        rec.method = method_label(&method);
        let req = self.classify(s, snap, header_version, &msg, kind, &method)?;
        match kind {
            Kind::Request => self.request(s, req, &msg, &method, rec).await,
            Kind::Notification => {
                self.notification(&req, &msg, &method).await;
                respond::empty(s, 202, &[]).await.ok();
                Ok(())
            }
            Kind::Response => {
                self.client_response(&req, &msg).await?;
                respond::empty(s, 202, &[]).await.ok();
                Ok(())
            }
        }
    }

    /// Decides the era and opens the session, refusing what the transport rules forbid.
    fn classify<'s>(
        &self,
        s: &Session,
        snap: &'s Snapshot,
        header_version: Option<String>,
        msg: &Message<'_>,
        kind: Kind,
        method: &str,
    ) -> Result<Request<'s>, GatewayError> {
        if header_version.as_deref() == Some(mcp::STATELESS_VERSION) {
            edge::check_stateless_headers(s, msg, method)?;
            let addr = s.client_addr().map(|a| a.as_inet().map(|i| i.ip()));
            return Ok(Request {
                snap,
                era: Era::Stateless,
                version: mcp::STATELESS_VERSION.into(),
                caller: caller_key(("addr", addr.flatten())),
            });
        }
        if kind == Kind::Request && method == "initialize" {
            return Ok(Request {
                snap,
                era: Era::Opening,
                version: String::new(),
                caller: 0,
            });
        }
        let Some(token) = edge::header(s, "mcp-session-id") else {
            return Err(GatewayError::http(
                400,
                "Bad Request: missing Mcp-Session-Id; send initialize first (or use protocol version 2026-07-28 without sessions)",
            ));
        };
        let state = self
            .sealer
            .open(token)
            .filter(|st| !self.local().ended.contains_key(&st.id))
            .ok_or_else(|| {
                GatewayError::http(404, "Session not found: initialize a new session")
            })?;
        let version = header_version.unwrap_or_else(|| state.version.clone());
        Ok(Request {
            snap,
            version,
            caller: caller_key(("session", state.id)),
            era: Era::Session {
                state,
                token: token.to_string(),
            },
        })
    }

    async fn request(
        &self,
        s: &mut Session,
        req: Request<'_>,
        msg: &Message<'_>,
        method: &str,
        rec: &mut Record,
    ) -> Result<(), GatewayError> {
        let id = msg.id.unwrap_or(RawValue::NULL);
        let result = match method {
            "initialize" => return self.initialize(s, &req, msg, id).await,
            "server/discover" => lifecycle::discover_result(),
            "ping" => Ok(jsonrpc::to_raw(&serde_json::json!({}))),
            "tools/list" | "prompts/list" | "resources/list" | "resources/templates/list" => {
                self.list(&req, msg, method, id).await
            }
            "logging/setLevel" => {
                self.broadcast_request(&req, msg, method).await;
                Ok(jsonrpc::to_raw(&serde_json::json!({})))
            }
            "tools/call"
            | "prompts/get"
            | "resources/read"
            | "resources/subscribe"
            | "resources/unsubscribe"
            | "completion/complete" => {
                return self.call(s, &req, msg, method, id, rec).await;
            }
            _ => Err(GatewayError::rpc(
                id,
                jsonrpc::METHOD_NOT_FOUND,
                format!("Method not found: `{method}`"),
            )),
        }?;
        let body = jsonrpc::success(id, &result);
        respond::json(s, 200, body, &[]).await.ok();
        Ok(())
    }

    /// The routes a request may reach, in a stable order.
    fn routes<'r>(&self, req: &'r Request<'_>) -> impl Iterator<Item = &'r Route> {
        req.snap.routes.iter()
    }

    async fn notification(&self, req: &Request<'_>, msg: &Message<'_>, method: &str) {
        match method {
            "notifications/cancelled" => {
                let Ok(mut params) = jsonrpc::split_params(msg.params) else {
                    return;
                };
                let Some(rid) = params.get("requestId") else {
                    return;
                };
                let upstream_id = jsonrpc::to_raw(&forward::upstream_id(rid));
                params.insert("requestId".into(), std::borrow::Cow::Owned(upstream_id));
                let body = jsonrpc::rebuild(method, None, Some(&params));
                self.broadcast(req, method, body).await;
            }
            "notifications/roots/list_changed" => {
                let body = jsonrpc::rebuild(method, None, None);
                self.broadcast(req, method, body).await;
            }
            // `initialized` was already sent to every upstream at initialize; the rest has no owner.
            _ => {}
        }
    }

    /// Sends a notification to every upstream the request can reach, concurrently.
    async fn broadcast(&self, req: &Request<'_>, method: &str, body: Vec<u8>) {
        let body = bytes::Bytes::from(body);
        let sends = self.routes(req).map(|route| {
            let body = body.clone();
            async move {
                if let Some(link) = self.link(req, route).await {
                    let mut out = Outgoing::post(body);
                    link.apply(&mut out, method, None);
                    let _ = crate::upstream::fire(&self.connector, &route.upstream, &out).await;
                }
            }
        });
        futures::future::join_all(sends).await;
    }

    /// Sends a request to every upstream and ignores the answers (logging/setLevel).
    async fn broadcast_request(&self, req: &Request<'_>, msg: &Message<'_>, method: &str) {
        let params = msg.params;
        let sends = self.routes(req).map(|route| async move {
            if let Some(link) = self.link(req, route).await {
                let id = self.own_id();
                let body = jsonrpc::request(&id, method, params);
                let mut out = Outgoing::post(body);
                link.apply(&mut out, method, None);
                let timeout = req.snap.timeouts.list;
                let _ = tokio::time::timeout(
                    timeout,
                    crate::upstream::rpc(&self.connector, &route.upstream, &out, &id),
                )
                .await;
            }
        });
        futures::future::join_all(sends).await;
    }
}

/// Log-safe name of an upstream for operators (never sent to clients).
fn peer_label(route: &Route) -> String {
    format!("{} ({})", route.name, route.upstream.peer.address())
}
