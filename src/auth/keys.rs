//! The IdP's verification keys: fetched by a background service (on schedule, at every config
//! change, and on demand when a token names an unknown `kid`, at most every 30 s), read lock-free
//! on the hot path.

use crate::config::Live;
use crate::config::snapshot::{AuthSettings, KeySource};
use crate::upstream::{Client, MAX_DOCUMENT};
use arc_swap::ArcSwap;
use async_trait::async_trait;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// On-demand fetches (unknown `kid`) happen at most this often: made-up kids cannot hammer the IdP.
const ON_DEMAND_EVERY: Duration = Duration::from_secs(30);
/// How long a request waits for an on-demand fetch.
const ON_DEMAND_WAIT: Duration = Duration::from_secs(3);
/// How long the IdP has to answer a document fetch.
pub(super) const DOC_TIMEOUT: Duration = Duration::from_secs(10);
/// Retry delay after a failed fetch.
pub(super) const RETRY: Duration = Duration::from_secs(5);

struct Key {
    kid: Option<String>,
    key: DecodingKey,
    /// The JWK as published, to tell whether a key went away.
    published: String,
}

pub struct KeyStore {
    keys: ArcSwap<Vec<Key>>,
    wanted: Notify,
    fetched: tokio::sync::watch::Sender<u64>,
    /// Milliseconds since `epoch` of the last on-demand fetch (0: never).
    last_on_demand: AtomicU64,
    epoch: Instant,
}

impl Default for KeyStore {
    fn default() -> Self {
        Self::new()
    }
}

impl KeyStore {
    pub fn new() -> Self {
        Self {
            keys: ArcSwap::from_pointee(Vec::new()),
            wanted: Notify::new(),
            fetched: tokio::sync::watch::Sender::new(0),
            last_on_demand: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.load().is_empty()
    }

    /// The key a token names (by `kid`, or the only key when it names none).
    pub fn find(&self, kid: Option<&str>, _alg: Algorithm) -> Option<DecodingKey> {
        let keys = self.keys.load();
        match kid {
            Some(kid) => keys.iter().find(|k| k.kid.as_deref() == Some(kid)),
            None if keys.len() == 1 => keys.first(),
            None => None,
        }
        .map(|k| k.key.clone())
    }

    /// Installs a fetched set: how many keys it has, and whether a key in use before is gone.
    fn install(&self, set: &JwkSet) -> (usize, bool) {
        let keys: Vec<Key> = set
            .keys
            .iter()
            .filter_map(|jwk| {
                Some(Key {
                    kid: jwk.common.key_id.clone(),
                    key: DecodingKey::from_jwk(jwk).ok()?,
                    published: serde_json::to_string(jwk).ok()?,
                })
            })
            .collect();
        let n = keys.len();
        let old = self.keys.swap(Arc::new(keys));
        let now = self.keys.load();
        let gone = old
            .iter()
            .any(|o| !now.iter().any(|k| k.published == o.published));
        (n, gone)
    }

    /// Asks for a fetch now and waits for it briefly, unless one was asked for recently.
    pub async fn request_refresh(&self) {
        let now = self.epoch.elapsed().as_millis() as u64 + 1;
        let last = self.last_on_demand.load(Ordering::Relaxed);
        if last != 0 && now < last + ON_DEMAND_EVERY.as_millis() as u64 {
            return;
        }
        if self
            .last_on_demand
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let mut fetched = self.fetched.subscribe();
        fetched.mark_unchanged();
        self.wanted.notify_one();
        let _ = tokio::time::timeout(ON_DEMAND_WAIT, fetched.changed()).await;
    }
}

/// The background service that keeps the key store filled.
pub struct KeyRefresher {
    pub auth: Arc<super::Authenticator>,
    pub live: Arc<Live>,
    pub client: Arc<Client>,
}

#[async_trait]
impl BackgroundService for KeyRefresher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let store = &self.auth.keys;
        let mut generation = self.live.subscribe();
        // The key source last fetched, and when to fetch again. A reload that leaves the source
        // as it was fetches nothing (routes change far more often than the IdP).
        let mut fetched_from: Option<String> = None;
        let mut next = tokio::time::Instant::now();
        loop {
            let snap = self.live.snapshot();
            let source = match &snap.auth {
                AuthSettings::None => None,
                AuthSettings::Jwt(s) => Some((source_id(&s.keys), s)),
            };
            let due = tokio::time::Instant::now() >= next;
            match source {
                Some((id, s)) if due || fetched_from.as_ref() != Some(&id) => {
                    let wait = match self.fetch(&s.keys).await {
                        Ok(set) => {
                            let (n, gone) = store.install(&set);
                            log::info!("verification keys loaded: {n}");
                            if gone {
                                // Tokens verified by a key the IdP no longer publishes are not kept.
                                self.auth.forget_verified();
                            }
                            fetched_from = Some(id);
                            s.refresh
                        }
                        Err(e) => {
                            log::warn!("cannot load the IdP's verification keys: {e}; retrying");
                            RETRY
                        }
                    };
                    next = tokio::time::Instant::now() + wait;
                    store.fetched.send_modify(|g| *g += 1);
                }
                Some(_) => {}
                None => next = tokio::time::Instant::now() + Duration::from_secs(3600),
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep_until(next) => {}
                // A token with an unknown key asks for a fetch now.
                _ = store.wanted.notified() => next = tokio::time::Instant::now(),
                // A new configuration may change what a valid token is: verify anew.
                Ok(()) = generation.changed() => self.auth.forget_verified(),
            }
        }
    }
}

/// What identifies where keys come from (a changed one is fetched at once).
fn source_id(source: &KeySource) -> String {
    match source {
        KeySource::Discover(up) => format!("discover {}", up.url),
        KeySource::Jwks(up) => format!("jwks {}", up.url),
        KeySource::Static(set) => {
            format!("static {}", serde_json::to_string(set).unwrap_or_default())
        }
    }
}

impl KeyRefresher {
    async fn fetch(&self, source: &KeySource) -> Result<JwkSet, String> {
        let jwks = match source {
            KeySource::Static(set) => return Ok(set.clone()),
            KeySource::Jwks(up) => self.client.get_json(up, DOC_TIMEOUT, MAX_DOCUMENT).await?,
            KeySource::Discover(up) => {
                let meta = self.client.get_json(up, DOC_TIMEOUT, MAX_DOCUMENT).await?;
                let uri = meta["jwks_uri"]
                    .as_str()
                    .ok_or("the IdP's metadata has no jwks_uri")?
                    .to_string();
                let up = tokio::task::spawn_blocking(move || {
                    crate::config::snapshot::upstream_for(&uri)
                })
                .await
                .map_err(|e| e.to_string())??;
                self.client.get_json(&up, DOC_TIMEOUT, MAX_DOCUMENT).await?
            }
        };
        serde_json::from_value(jwks).map_err(|e| format!("the JWKS is not valid: {e}"))
    }
}
