//! The MCP endpoint: transport checks, one parse of the body, dispatch by method. Answers are
//! written here; `proxy.rs` only calls `serve`.

mod approval;
mod edge;
mod forward;
mod lifecycle;
mod listen;
mod lists;
mod oauth;
mod passthrough;
pub mod respond;

use crate::audit::Audit;
use crate::auth::Authenticator;
use crate::auth::minted::Minter;
use crate::config::raw::IdentityMode;
use crate::config::snapshot::AuthSettings;
use crate::config::{Route, Snapshot};
use crate::ctx::{Outcome, Record, method_label};
use crate::error::GatewayError;
use crate::limits::shared::SharedBuckets;
use crate::limits::{self, Refusal};
use crate::mcp;
use crate::mcp::jsonrpc::{self, Kind, Message};
use crate::mcp::session::{Sealer, SessionState, UpstreamSession, now_secs};
use crate::metrics::Metrics;
use crate::policy::Caller;
use crate::upstream::Outgoing;
use arc_swap::ArcSwap;
use pingora::connectors::http::Connector;
use pingora::proxy::Session;
use pingora::upstreams::peer::Peer;
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Opened session ids kept at most: a few MiB for the busiest sessions, so idle ones cost nothing.
const OPENED_CAP: usize = 4096;

/// Local memory is bounded: past this many entries the expired ones go, then all.
const LOCAL_CAP: usize = 100_000;

/// Everything the endpoint needs that outlives one request.
pub struct Gateway {
    config: ArcSwap<Snapshot>,
    sealer: Sealer,
    connector: Connector,
    next_id: AtomicU64,
    local: Mutex<Local>,
    pub metrics: Arc<Metrics>,
    /// The audit trail's queue.
    pub audit: Audit,
    /// The configuration generation; open client streams watch it for list changes.
    generation: tokio::sync::watch::Sender<u64>,
    /// Calls in flight per upstream, for `upstream.max_concurrency`.
    inflight: pingora_limits::inflight::Inflight,
    /// Buckets shared with other instances, when `limits.store` is set.
    shared: Option<SharedBuckets>,
    pub auth: Authenticator,
    /// Signs identity tokens for `identity: minted` routes.
    minter: Minter,
    /// Session ids already opened here (see `open_session`).
    opened: dashmap::DashMap<String, Arc<SessionState>>,
    /// Whether any session was ended here (spares the lock on the common path).
    any_ended: std::sync::atomic::AtomicBool,
    /// Calls waiting for the user's approval, by the number in the elicitation's id.
    approvals: Mutex<HashMap<u64, tokio::sync::oneshot::Sender<serde_json::Value>>>,
    /// Each route's tools as last listed (for annotation-derived classes), by route name.
    catalog: dashmap::DashMap<String, (std::time::Instant, HashMap<String, serde_json::Value>)>,
}

/// The little an instance remembers on its own; losing it costs a re-initialize, never a session.
#[derive(Default)]
struct Local {
    /// Upstream sessions re-opened after the upstream forgot the one in the sealed id.
    replaced: HashMap<(u128, String), (UpstreamSession, u64)>,
    /// Sessions ended by DELETE here, until they would expire anyway.
    ended: HashMap<u128, u64>,
    /// How to reach each upstream for clients of the stateless revision, by route and address.
    stateless: HashMap<(String, String), LinkKind>,
    /// OAuth login states already used (replay protection), until they expire.
    used_states: HashMap<u64, u64>,
}

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
    fn apply<'a>(&'a self, out: &mut Outgoing<'a>, method: &'a str, name: Option<&'a str>) {
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
    headers: Vec<(String, String)>,
}

impl Link {
    fn apply<'a>(&'a self, out: &mut Outgoing<'a>, method: &'a str, name: Option<&'a str>) {
        self.kind.apply(out, method, name);
        out.extra = &self.headers;
    }

    fn has_session(&self) -> bool {
        matches!(
            self.kind,
            LinkKind::Session {
                session: Some(_),
                ..
            }
        )
    }
}

/// Which protocol era a request belongs to, and its session if it has one.
pub enum Era {
    /// `initialize`: no session yet.
    Opening,
    Session {
        state: Arc<SessionState>,
    },
    Stateless,
}

/// One client request after the transport checks.
pub struct Request<'s> {
    pub snap: &'s Snapshot,
    pub era: Era,
    /// Protocol version in force for this request.
    pub version: String,
    pub caller: Arc<Caller>,
    /// Who is calling, as a bucket key: the subject; without authentication (`auth.mode: none`)
    /// each session is its own caller, and a stateless client is its address.
    pub caller_key: u64,
}

pub(crate) fn caller_key(value: impl std::hash::Hash) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one(value)
}

impl Gateway {
    /// Everything the endpoint needs. Fails when an audit sink cannot be opened: the gateway
    /// does not run without the trail it was told to keep.
    pub fn new(snapshot: Snapshot) -> Result<Self, String> {
        let sealer = Sealer::new(&snapshot.session_keys);
        if snapshot.session_keys.is_empty() {
            log::warn!(
                "sessions.keys is empty: a key made at start seals sessions{}; they end with this process and other instances cannot open them",
                if snapshot.oauth.is_some() {
                    ", OAuth registrations and consents"
                } else {
                    ""
                }
            );
        }
        let opts = pingora::connectors::ConnectorOptions::new(
            snapshot.server.upstream_keepalive_pool_size,
        );
        let shared = snapshot.limit_store.as_deref().and_then(|url| {
            SharedBuckets::new(url)
                .map_err(|e| log::error!("{e}; limits stay local"))
                .ok()
        });
        let minter = match snapshot.identity.signing_key_pem.as_deref() {
            Some(pem) => Minter::from_pem(pem).unwrap_or_else(|e| {
                log::error!("{e}; using a key made at start");
                Minter::generate()
            }),
            None => Minter::generate(),
        };
        let metrics = Arc::new(Metrics::new());
        metrics.config_generation.set(1);
        metrics.config_last_success.set(now_secs() as f64);
        let audit = Audit::start(&snapshot.audit, metrics.clone())?;
        Ok(Self {
            audit,
            config: ArcSwap::from_pointee(snapshot),
            sealer,
            connector: Connector::new(Some(opts)),
            next_id: AtomicU64::new(1),
            local: Mutex::new(Local::default()),
            metrics,
            generation: tokio::sync::watch::Sender::new(1),
            inflight: pingora_limits::inflight::Inflight::new(),
            shared,
            auth: Authenticator::new(),
            minter,
            catalog: dashmap::DashMap::new(),
            approvals: Mutex::new(HashMap::new()),
            opened: dashmap::DashMap::new(),
            any_ended: std::sync::atomic::AtomicBool::new(false),
        })
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

    fn approvals(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<u64, tokio::sync::oneshot::Sender<serde_json::Value>>>
    {
        self.approvals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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
        let mcp = path == snap.mcp_path;
        let passthrough = passthrough::route_of(path, snap);
        if mcp || passthrough.is_some() {
            // Room for this request's audit record first: once accepted, its record is never lost.
            match self.audit.reserve().await {
                Ok(slot) => rec.slot = slot,
                Err(_) => {
                    self.metrics.audit_refused.inc();
                    let e = GatewayError::http(
                        503,
                        "Service Unavailable: the audit trail is not keeping up; try again shortly",
                    );
                    return respond::error(s, &e).await;
                }
            }
        }
        let served = if mcp {
            self.serve_merged(s, snap, rec).await
        } else if let Some(route) = passthrough {
            rec.route = Some(route.index);
            match self.authenticate(s, snap).await {
                Ok(caller) => {
                    rec.caller = Some(caller.clone());
                    self.serve_passthrough(s, snap, route, &caller).await
                }
                Err(e) => Err(e),
            }
        } else if Gateway::is_oauth_path(path) {
            rec.method = "oauth";
            return self.serve_oauth(s, snap).await;
        } else if let Some(doc) = self.well_known(path, snap) {
            rec.method = "metadata";
            match doc {
                Ok(doc) => {
                    let body = serde_json::to_vec(&doc).unwrap_or_default();
                    respond::json(s, 200, body, &[("cache-control", "max-age=300")]).await?;
                    return Ok(());
                }
                Err(e) => Err(e),
            }
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
                let outcome = *rec.outcome.get_or_insert(Outcome::Refused);
                // A refusal is the gateway's decision; an upstream failure is not.
                if (mcp || passthrough.is_some())
                    && matches!(outcome, Outcome::Refused | Outcome::RateLimited)
                {
                    rec.reason = Some(e.to_string());
                }
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
        let caller = self.authenticate(s, snap).await?;
        rec.caller = Some(caller.clone());
        match s.req_header().method.as_str() {
            "POST" => {}
            "DELETE" => {
                rec.method = "DELETE";
                return self.delete(s, snap, &caller).await;
            }
            "GET" => {
                rec.method = "GET";
                return self.listen(s, snap, &caller).await;
            }
            _ => return Err(GatewayError::http(405, "use POST, GET or DELETE")),
        }
        edge::check_post_headers(s)?;
        let header_version = edge::protocol_version(s)?;
        let body = edge::read_body(s, snap.max_body_bytes).await?.freeze();
        let (msg, kind) = Message::parse(&body)?;
        let method = msg.method();
        rec.method = method_label(&method);
        rec.request_id = msg.id.map(|id| id.get().to_string());
        if rec.audited() {
            rec.body = Some(body.clone());
        }
        let req = self.classify(s, snap, header_version, &msg, kind, caller)?;
        if let Era::Session { state, .. } = &req.era {
            rec.session = Some(state.id);
        }
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
        caller: Arc<Caller>,
    ) -> Result<Request<'s>, GatewayError> {
        let method = msg.method();
        let anonymous = matches!(snap.auth, AuthSettings::None);
        let subject_key = caller_key(("sub", &caller.subject));
        if header_version.as_deref() == Some(mcp::STATELESS_VERSION) {
            edge::check_stateless_headers(s, msg, &method)?;
            let addr = s.client_addr().map(|a| a.as_inet().map(|i| i.ip()));
            return Ok(Request {
                snap,
                era: Era::Stateless,
                version: mcp::STATELESS_VERSION.into(),
                caller_key: if anonymous {
                    caller_key(("addr", addr.flatten()))
                } else {
                    subject_key
                },
                caller,
            });
        }
        if kind == Kind::Request && method == "initialize" {
            return Ok(Request {
                snap,
                era: Era::Opening,
                version: String::new(),
                caller_key: subject_key,
                caller,
            });
        }
        let state = self.session_of(s, &caller)?;
        let version = header_version.unwrap_or_else(|| state.version.clone());
        Ok(Request {
            snap,
            version,
            caller_key: if anonymous {
                caller_key(("session", state.id))
            } else {
                subject_key
            },
            caller,
            era: Era::Session { state },
        })
    }

    /// The caller's session named by `Mcp-Session-Id`: 400 without one; 404 when it is unknown,
    /// tampered, expired, ended, or another caller's (a session belongs to whoever opened it).
    fn session_of(&self, s: &Session, caller: &Caller) -> Result<Arc<SessionState>, GatewayError> {
        let token = edge::header(s, "mcp-session-id").ok_or_else(|| {
            GatewayError::http(
                400,
                "Bad Request: missing Mcp-Session-Id; send initialize first (or use protocol version 2026-07-28 without sessions)",
            )
        })?;
        let owner = caller_key(("sub", &caller.subject));
        let ended = |st: &SessionState| {
            self.any_ended.load(Ordering::Relaxed) && self.local().ended.contains_key(&st.id)
        };
        self.open_session(token)
            .filter(|st| st.owner == owner && !ended(st))
            .ok_or_else(|| GatewayError::http(404, "Session not found: initialize a new session"))
    }

    /// A session id opened once per instance and then remembered until it expires: the AEAD and
    /// JSON work is per session, not per request.
    fn open_session(&self, token: &str) -> Option<Arc<SessionState>> {
        let now = now_secs();
        if let Some(hit) = self.opened.get(token)
            && hit.expires > now
        {
            return Some(hit.clone());
        }
        let state = Arc::new(self.sealer.open(token)?);
        if self.opened.len() >= OPENED_CAP {
            self.opened.retain(|_, st| st.expires > now);
            if self.opened.len() >= OPENED_CAP {
                self.opened.clear();
            }
        }
        self.opened.insert(token.to_string(), state.clone());
        Some(state)
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
        req.snap
            .routes
            .iter()
            .filter(|r| r.policy.visible_to(&req.caller))
    }

    /// The caller of a request, or the 401 that refuses it.
    async fn authenticate(
        &self,
        s: &Session,
        snap: &Snapshot,
    ) -> Result<Arc<Caller>, GatewayError> {
        self.auth
            .authenticate(snap, edge::header(s, "authorization"))
            .await
            .map_err(|e| {
                self.metrics
                    .auth_failures
                    .with_label_values(&[e.reason()])
                    .inc();
                GatewayError::unauthorized(snap, e)
            })
    }

    /// What `route`'s upstream is told with every request made for this caller: the route's
    /// static credentials (and its tenant's), then the caller's identity if the route wants it.
    /// The caller's own token is never among them.
    fn upstream_headers(&self, req: &Request<'_>, route: &Route) -> Vec<(String, String)> {
        let caller = &req.caller;
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
                headers.push((
                    "x-mcp-edge-groups".into(),
                    header_safe(&caller.groups.join(",")),
                ));
                if let Some(t) = &caller.tenant {
                    headers.push(("x-mcp-edge-tenant".into(), header_safe(t)));
                }
            }
            IdentityMode::Minted => {
                let issuer = &req.snap.public_origin;
                let lifetime = req.snap.identity.lifetime;
                let token = self.minter.mint(issuer, caller, &route.name, lifetime);
                headers.push(("authorization".into(), format!("Bearer {token}")));
            }
        }
        headers
    }

    /// The documents served at well-known paths: protected resource metadata (RFC 9728) and the
    /// gateway's JWKS. `None`: not such a path.
    fn well_known(
        &self,
        path: &str,
        snap: &Snapshot,
    ) -> Option<Result<serde_json::Value, GatewayError>> {
        const PRM: &str = "/.well-known/oauth-protected-resource";
        if path == "/.well-known/jwks.json" {
            return Some(Ok(self.minter.jwks()));
        }
        let suffix = path.strip_prefix(PRM)?;
        if !(suffix.is_empty() || suffix == snap.mcp_path) {
            return None;
        }
        Some(match &snap.auth {
            AuthSettings::None => Err(GatewayError::http(
                404,
                "no protected resource metadata: authentication is off (auth.mode: none)",
            )),
            AuthSettings::Jwt(jwt) => {
                let server = match &snap.oauth {
                    Some(_) => snap.public_base(),
                    None => jwt.issuer.trim_end_matches('/').to_string(),
                };
                Ok(serde_json::json!({
                    "resource": snap.mcp_url,
                    "authorization_servers": [server],
                    "scopes_supported": jwt.scopes_supported,
                    "bearer_methods_supported": ["header"],
                    "resource_name": "mcp-edge",
                }))
            }
        })
    }

    /// The gateway's public keys for minted identity tokens.
    pub fn jwks(&self) -> serde_json::Value {
        self.minter.jwks()
    }

    /// GETs a JSON document (IdP metadata, JWKS).
    pub async fn get_json(
        &self,
        up: &crate::config::snapshot::Upstream,
    ) -> Result<serde_json::Value, String> {
        let mut out = Outgoing::post(bytes::Bytes::new());
        out.method = http::Method::GET;
        out.copied = vec![("accept", "application/json")];
        let fetch = async {
            let mut ex = crate::upstream::Exchange::send(&self.connector, up, &out)
                .await
                .map_err(|e| e.to_string())?;
            let status = ex.status();
            let body = ex.collect().await.map_err(|e| e.to_string())?;
            ex.finish(&self.connector, up).await;
            if !(200..300).contains(&status) {
                return Err(format!("{} answered HTTP {status}", up.url));
            }
            serde_json::from_slice(&body).map_err(|e| format!("{} is not JSON: {e}", up.url))
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), fetch)
            .await
            .map_err(|_| format!("{} did not answer in time", up.url))?
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

/// A header value made of a caller attribute: visible ASCII kept, anything else percent-encoded.
fn header_safe(value: &str) -> String {
    if value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        value.to_string()
    } else {
        url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
    }
}

/// Log-safe name of an upstream for operators (never sent to clients).
fn peer_label(route: &Route) -> String {
    format!("{} ({})", route.name, route.upstream.peer.address())
}
