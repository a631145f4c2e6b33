//! The shared store (Redis) that several instances coordinate through: one connection handling
//! for every use (a bounded wait, a pause before reconnecting after a failure, rate-limited
//! fallback logs), and the coordination the sessions store gives (`sessions.store`): single-use
//! markers (OAuth login states), revoked sessions and the upstream sessions opened for a client
//! session (first one kept wins), approval questions and the answers sent to the instance that
//! asked. A store that does not answer makes each
//! use fall back to what the instance knows on its own, with a warning: never to failing open.

use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

/// How long a command may wait for Redis before the caller falls back.
pub const TIMEOUT: Duration = Duration::from_millis(250);
/// After a failed connection attempt, uses fall back this long before trying again.
const RETRY_CONNECT: Duration = Duration::from_secs(1);

pub struct Redis {
    client: redis::Client,
    conn: OnceCell<ConnectionManager>,
    /// Milliseconds since `epoch` before which no new connection is attempted.
    next_attempt: AtomicU64,
    /// Seconds since `epoch` (plus one) of the last fallback log line.
    last_log: AtomicU64,
    epoch: Instant,
}

impl Redis {
    /// `what` names the setting in errors (`limits.store`, `sessions.store`).
    pub fn new(url: &str, what: &str) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| format!("{what}: {e}"))?;
        Ok(Self {
            client,
            conn: OnceCell::new(),
            next_attempt: AtomicU64::new(0),
            last_log: AtomicU64::new(0),
            epoch: Instant::now(),
        })
    }

    pub async fn connection(&self) -> Result<ConnectionManager, String> {
        let now = self.epoch.elapsed().as_millis() as u64;
        if self.conn.get().is_none() && now < self.next_attempt.load(Ordering::Relaxed) {
            return Err("redis unreachable (waiting before reconnecting)".into());
        }
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT))
            .set_number_of_retries(1);
        let made = self
            .conn
            .get_or_try_init(|| ConnectionManager::new_with_config(self.client.clone(), config))
            .await;
        match made {
            Ok(c) => Ok(c.clone()),
            Err(e) => {
                let retry = now + RETRY_CONNECT.as_millis() as u64;
                self.next_attempt.store(retry, Ordering::Relaxed);
                Err(e.to_string())
            }
        }
    }

    /// Whether a fallback should be logged now (at most once every ten seconds).
    pub fn should_log(&self) -> bool {
        let now = self.epoch.elapsed().as_secs() + 1;
        let last = self.last_log.load(Ordering::Relaxed);
        (now >= last + 10 || last == 0)
            && self
                .last_log
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// Runs one command within twice the timeout.
    async fn run<T>(
        &self,
        command: impl AsyncFnOnce(&mut ConnectionManager) -> redis::RedisResult<T>,
    ) -> Result<T, String> {
        let mut conn = self.connection().await?;
        tokio::time::timeout(TIMEOUT * 2, command(&mut conn))
            .await
            .map_err(|_| "redis did not answer in time".to_string())?
            .map_err(|e| e.to_string())
    }

    /// Marks `key` used for `ttl`: true the first time, false ever after (across instances).
    pub async fn first_use(&self, key: &str, ttl: Duration) -> Result<bool, String> {
        let options = redis::SetOptions::default()
            .conditional_set(redis::ExistenceCheck::NX)
            .with_expiration(redis::SetExpiry::EX(ttl.as_secs().max(1)));
        let set: Option<String> = self
            .run(async |c| c.set_options(key, 1, options).await)
            .await?;
        Ok(set.is_some())
    }

    /// Records `key` (a revoked session) for `ttl`.
    pub async fn mark(&self, key: &str, ttl: Duration) -> Result<(), String> {
        self.run(async |c| c.set_ex::<_, _, ()>(key, 1, ttl.as_secs().max(1)).await)
            .await
    }

    pub async fn is_marked(&self, key: &str) -> Result<bool, String> {
        self.run(async |c| c.exists(key).await).await
    }

    pub async fn get(&self, key: &str) -> Result<Option<String>, String> {
        self.run(async |c| c.get(key).await).await
    }

    /// The values of `keys`, in order (one round trip).
    pub async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<String>>, String> {
        self.run(async |c| redis::cmd("MGET").arg(keys).query_async(c).await)
            .await
    }

    /// Deletes `key`: true if this call removed it (it was there, and nobody removed it first).
    pub async fn remove(&self, key: &str) -> Result<bool, String> {
        let removed: usize = self.run(async |c| c.del(key).await).await?;
        Ok(removed == 1)
    }

    pub async fn publish(&self, channel: &str, message: &str) -> Result<(), String> {
        self.run(async |c| c.publish::<_, _, ()>(channel, message).await)
            .await
    }

    /// A connection of its own subscribed to `channel` (for messages to this instance).
    pub async fn subscribe(&self, channel: &str) -> Result<redis::aio::PubSub, String> {
        let mut pubsub = tokio::time::timeout(TIMEOUT * 4, self.client.get_async_pubsub())
            .await
            .map_err(|_| "redis did not answer in time".to_string())?
            .map_err(|e| e.to_string())?;
        pubsub.subscribe(channel).await.map_err(|e| e.to_string())?;
        Ok(pubsub)
    }

    /// Sets `key` to `value` for `ttl`, whatever was there.
    pub async fn put(&self, key: &str, value: &str, ttl: Duration) -> Result<(), String> {
        self.run(async |c| c.set_ex::<_, _, ()>(key, value, ttl.as_secs().max(1)).await)
            .await
    }

    /// Sets `key` to `value` for `ttl` unless it is set: `None` when ours was set, else the
    /// value that was there first (another instance's), left as it was.
    pub async fn put_first(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<Option<String>, String> {
        let options = redis::SetOptions::default()
            .conditional_set(redis::ExistenceCheck::NX)
            .get(true)
            .with_expiration(redis::SetExpiry::EX(ttl.as_secs().max(1)));
        self.run(async |c| c.set_options(key, value, options).await)
            .await
    }
}

/// Records `nonce` as used until `exp` (Unix seconds); false if it already was: here (`local`)
/// or, with a store, on any instance. A store that does not answer leaves the check to this
/// instance, with a warning naming `what`.
pub async fn use_once(
    local: &crate::cache::Bounded<u128, ()>,
    store: Option<&Redis>,
    what: &str,
    nonce: u128,
    exp: u64,
) -> bool {
    let here = local.insert_new(nonce, (), exp);
    let Some(store) = store else {
        return here;
    };
    let ttl = Duration::from_secs(exp.saturating_sub(crate::mcp::session::now_secs()));
    match store
        .first_use(&format!("mcp-edge:{what}:{nonce:032x}"), ttl)
        .await
    {
        Ok(first) => here && first,
        Err(e) => {
            if store.should_log() {
                log::warn!(
                    "sessions.store failed ({e}); {what} nonces are single-use on this instance only"
                );
            }
            here
        }
    }
}
