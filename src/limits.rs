//! Per-caller token buckets (caller, caller×route, caller×route×tool) and per-upstream
//! concurrency caps. Buckets are governor's GCRA cells in sharded maps: the check takes no global
//! lock, and idle callers are evicted so memory stays bounded however many callers come.

pub mod shared;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

/// `per_minute` tokens a minute, at most `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_minute: NonZeroU32,
    pub burst: NonZeroU32,
}

impl Rate {
    /// `RateLimit-Policy` parameters: quota and window (seconds).
    pub fn policy(&self, name: &str) -> String {
        format!("\"{name}\";q={};w=60", self.per_minute)
    }
}

/// One bucket store: a rate and the buckets of every caller under it.
#[derive(Clone)]
pub struct Limiter {
    pub rate: Rate,
    buckets: Arc<DefaultKeyedRateLimiter<u64>>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter").field("rate", &self.rate).finish()
    }
}

impl Limiter {
    pub fn new(rate: Rate) -> Self {
        let quota = Quota::per_minute(rate.per_minute).allow_burst(rate.burst);
        Self {
            rate,
            buckets: Arc::new(RateLimiter::keyed(quota)),
        }
    }

    /// Keeps `old`'s buckets if the rate is the same.
    pub fn adopt(&mut self, old: &Limiter) {
        if self.rate == old.rate {
            self.buckets = old.buckets.clone();
        }
    }

    /// Takes a token for `caller`, or says how long until one is there.
    pub fn check(&self, caller: u64) -> Result<(), Duration> {
        self.buckets
            .check_key(&caller)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// Drops buckets that are full again (their callers went idle).
    pub fn evict_idle(&self) {
        self.buckets.retain_recent();
        self.buckets.shrink_to_fit();
    }

    /// Buckets held now.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

/// Which bucket refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Caller,
    Route,
    Tool,
    /// Requests that fan out to every upstream.
    FanOut,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Caller => "caller",
            Scope::Route => "route",
            Scope::Tool => "tool",
            Scope::FanOut => "fan_out",
        }
    }
}

/// A refusal: which bucket, its rate, and when to retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub scope: Scope,
    pub rate: Rate,
    pub retry_after: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(per_minute: u32, burst: u32) -> Rate {
        Rate {
            per_minute: NonZeroU32::new(per_minute).unwrap(),
            burst: NonZeroU32::new(burst).unwrap(),
        }
    }

    #[test]
    fn burst_then_refusal_with_a_wait_per_caller() {
        let l = Limiter::new(rate(60, 3));
        for _ in 0..3 {
            assert!(l.check(1).is_ok());
        }
        let wait = l.check(1).unwrap_err();
        assert!(
            wait > Duration::from_millis(500) && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert!(l.check(2).is_ok(), "another caller has its own bucket");
    }

    #[test]
    fn adoption_keeps_state_only_for_the_same_rate() {
        let old = Limiter::new(rate(60, 1));
        assert!(old.check(7).is_ok());
        let mut same = Limiter::new(rate(60, 1));
        same.adopt(&old);
        assert!(same.check(7).is_err(), "bucket carried over");
        let mut changed = Limiter::new(rate(120, 1));
        changed.adopt(&old);
        assert!(changed.check(7).is_ok(), "a new rate starts fresh");
    }

    #[test]
    fn a_million_callers_then_eviction() {
        let l = Limiter::new(rate(6_000_000, 1_000));
        for caller in 0..1_000_000u64 {
            let _ = l.check(caller);
        }
        assert_eq!(l.len(), 1_000_000);
        // At 100 000 tokens a second every bucket refills within a few milliseconds.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !l.is_empty() && std::time::Instant::now() < deadline {
            l.evict_idle();
        }
        assert!(l.is_empty(), "idle buckets evicted: {} left", l.len());
    }
}
