//! Buckets shared by several instances in Redis (`limits.store: redis://…`). One Lua script
//! checks every bucket of a call and takes the tokens only if all allow it (GCRA, Redis's own
//! clock, keys expiring once full so memory stays bounded). When Redis cannot answer the caller
//! is checked locally instead; the caller decides that, with a metric and a log line.

use super::{Limiter, Refusal, Scope};
use crate::store::{Redis, TIMEOUT};
use std::time::Duration;

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
    pub redis: Redis,
    script: redis::Script,
}

impl SharedBuckets {
    pub fn new(url: &str) -> Result<Self, String> {
        Ok(Self {
            redis: Redis::new(url, "limits.store")?,
            script: redis::Script::new(GCRA),
        })
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
        let mut conn = self.redis.connection().await?;
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
