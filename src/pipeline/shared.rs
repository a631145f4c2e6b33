//! What outlives one request: a plain struct of shared handles, built once at start. Background
//! services are given the handles they use, not this whole struct.

use super::approval::Approvals;
use super::catalog::Catalog;
use super::link::LinkKind;
use super::session::Sessions;
use crate::audit::Audit;
use crate::auth::Authenticator;
use crate::auth::minted::Minter;
use crate::auth::oauth::OAuthFront;
use crate::cache::Bounded;
use crate::config::{Live, Snapshot};
use crate::limits::shared::SharedBuckets;
use crate::mcp::session::{Sealer, now_secs};
use crate::metrics::Metrics;
use crate::store::Redis;
use crate::upstream::Client;
use std::sync::Arc;

/// Entries kept at most in each of the instance-local caches.
pub(super) const LOCAL_CAP: usize = 100_000;

pub struct Shared {
    pub live: Arc<Live>,
    pub sealer: Arc<Sealer>,
    pub upstreams: Arc<Client>,
    pub metrics: Arc<Metrics>,
    pub audit: Audit,
    pub auth: Arc<Authenticator>,
    /// Signs identity tokens for `identity: minted` routes.
    pub minter: Minter,
    pub oauth: OAuthFront,
    /// Calls in flight per upstream, for `upstream.max_concurrency`.
    pub inflight: pingora_limits::inflight::Inflight,
    /// Buckets shared with other instances, when `limits.store` is set.
    pub shared_buckets: Option<SharedBuckets>,
    /// Ended sessions and used login states shared with other instances (`sessions.store`).
    pub session_store: Option<Arc<Redis>>,
    pub sessions: Sessions,
    /// How each caller of the stateless revision reaches each upstream, by route, address and
    /// caller: an upstream session opened for one caller is never another's.
    pub stateless_links: Bounded<(String, String, u64), LinkKind>,
    pub approvals: Approvals,
    /// Upstream calls held open for a stateless client's next round.
    pub held: super::held::HeldCalls,
    /// Set when the process begins to stop: open event streams end (clients reconnect elsewhere).
    pub stopping: Arc<tokio::sync::watch::Sender<bool>>,
    /// Set when this process hands over or stops: every answer then closes its connection, so
    /// no client sends on a keep-alive connection the drain is about to drop.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
    pub catalog: Catalog,
}

impl Shared {
    /// Everything the pipeline needs. Fails when an audit sink cannot be opened: the gateway
    /// does not run without the trail it was told to keep.
    pub fn new(snapshot: Snapshot) -> Result<Self, String> {
        let sealer = Arc::new(Sealer::new(&snapshot.session_keys));
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
        let shared_buckets = snapshot.limit_store.as_deref().and_then(|url| {
            SharedBuckets::new(url)
                .map_err(|e| log::error!("{e}; limits stay local"))
                .ok()
        });
        let session_store = snapshot.session_store.as_deref().and_then(|url| {
            Redis::new(url, "sessions.store")
                .map(Arc::new)
                .map_err(|e| log::error!("{e}; ended sessions and login states stay per instance"))
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
        let upstreams = Arc::new(Client::new(snapshot.server.upstream_keepalive_pool_size));
        Ok(Self {
            audit,
            oauth: OAuthFront::new(sealer.clone(), upstreams.clone(), session_store.clone()),
            session_store,
            live: Arc::new(Live::new(snapshot)),
            sealer,
            upstreams,
            metrics,
            inflight: pingora_limits::inflight::Inflight::new(),
            shared_buckets,
            auth: Arc::new(Authenticator::new()),
            minter,
            sessions: Sessions::new(),
            stateless_links: Bounded::new(LOCAL_CAP),
            approvals: Approvals::default(),
            held: Default::default(),
            stopping: Arc::new(tokio::sync::watch::Sender::new(false)),
            draining: Arc::default(),
            catalog: Catalog::default(),
        })
    }
}
