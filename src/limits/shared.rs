//! Buckets shared by several instances in Redis (`limits.store: redis://…`). One Lua script
//! checks every bucket of a call and takes the tokens only if all allow it (GCRA, Redis's own
//! clock, keys expiring once full so memory stays bounded). When Redis cannot answer the caller
//! is checked locally instead; the caller decides that, with a metric and a log line.

use super::{Limiter, Refusal, Scope};
use redis::aio::ConnectionManager;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

/// How long a check may wait for Redis before falling back to local buckets.
const TIMEOUT: Duration = Duration::from_millis(250);
/// After a failed connection attempt, calls go local this long before trying again.
const RETRY_CONNECT: Duration = Duration::from_secs(1);

/// KEYS: one per bucket. ARGV: per bucket, its emission interval (ms) and burst.
/// Returns {1} when every bucket had a token (all taken), else {0, index, retry_ms}.
const GCRA: &str = r#"
local t = redis.call('TIME')
local now = t[1] * 1000 + t[2] / 1000
local tats = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  local new_tat = tat + interval
  local excess = new_tat - now - interval * burst
  if excess > 0 then
    return {0, i, math.ceil(excess)}
  end
  tats[i] = new_tat
end
for i, key in ipairs(KEYS) do
  local ttl = math.ceil(tats[i] - now) + 1000
  redis.call('SET', key, tostring(tats[i]), 'PX', ttl)
end
return {1}
"#;

pub struct SharedBuckets {
    client: redis::Client,
    conn: OnceCell<ConnectionManager>,
    script: redis::Script,
    /// Milliseconds since `epoch` before which no new connection is attempted.
    next_attempt: AtomicU64,
    /// Seconds since `epoch` (plus one) of the last fallback log line.
    last_log: AtomicU64,
    epoch: Instant,
}

impl SharedBuckets {
    pub fn new(url: &str) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| format!("limits.store: {e}"))?;
        Ok(Self {
            client,
            conn: OnceCell::new(),
            script: redis::Script::new(GCRA),
            next_attempt: AtomicU64::new(0),
            last_log: AtomicU64::new(0),
            epoch: Instant::now(),
        })
    }

    async fn connection(&self) -> Result<ConnectionManager, String> {
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

    /// Takes a token from every bucket, atomically across instances. `Err` means Redis did not
    /// answer and nothing was decided.
    pub async fn check(
        &self,
        buckets: &[(Scope, &Limiter, String)],
    ) -> Result<Result<(), Refusal>, String> {
        if buckets.is_empty() {
            return Ok(Ok(()));
        }
        let mut conn = self.connection().await?;
        let mut invocation = self.script.prepare_invoke();
        for (_, limiter, key) in buckets {
            let interval_ms = 60_000.0 / f64::from(limiter.rate.per_minute.get());
            invocation
                .key(key)
                .arg(interval_ms)
                .arg(limiter.rate.burst.get());
        }
        let answer: Vec<i64> =
            tokio::time::timeout(TIMEOUT * 2, invocation.invoke_async(&mut conn))
                .await
                .map_err(|_| "redis did not answer in time".to_string())?
                .map_err(|e| e.to_string())?;
        match answer.as_slice() {
            [1] => Ok(Ok(())),
            [0, index, retry_ms] => {
                let (scope, limiter, _) = buckets
                    .get((*index as usize).saturating_sub(1))
                    .ok_or("redis answered an unknown bucket")?;
                Ok(Err(Refusal {
                    scope: *scope,
                    rate: limiter.rate,
                    retry_after: Duration::from_millis((*retry_ms).max(1) as u64),
                }))
            }
            _ => Err(format!(
                "unexpected answer from the limit script: {answer:?}"
            )),
        }
    }
}
