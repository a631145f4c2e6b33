//! The shared catalog: each route's upstream lists, listed once for every caller and filtered
//! per caller by policy when answered. A list is kept until the upstream's `ttlMs` (where it
//! states one) or `catalog.ttl` runs out, a reload makes another generation of routes, or the
//! upstream notifies that it changed. Callers asking at once wait for one listing.

use crate::mcp::era::CacheHint;
use crate::upstream::UpstreamError;
use dashmap::DashMap;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

/// A route (its index in the snapshot), a list method, and the caller's tenant where the
/// route sends headers per tenant (the upstream's answer may depend on them).
pub type Key = (usize, &'static str, Option<String>);

/// One upstream's complete list and the hint its pages carried.
#[derive(Clone)]
pub struct Listed {
    pub items: Arc<Vec<Value>>,
    pub hint: CacheHint,
    /// When the upstream's own `ttlMs` stated how long the list holds (stateless upstreams).
    pub stated_ttl: Option<Duration>,
}

struct Slot {
    generation: u64,
    /// Set by the first listing that succeeds; callers arriving meanwhile wait for it.
    listed: OnceCell<(Listed, Instant)>,
}

impl Slot {
    fn usable(&self, generation: u64, now: Instant) -> bool {
        self.generation == generation && self.listed.get().is_none_or(|(_, until)| now < *until)
    }
}

#[derive(Default)]
pub struct ListCache {
    slots: DashMap<Key, Arc<Slot>>,
    /// The routes' generation the slots belong to; a reload empties the cache.
    generation: AtomicU64,
}

impl ListCache {
    /// The list for `key`: kept, or listed by `list` now (once for every caller asking at
    /// once). The hint given back has its `ttlMs` shortened by the list's age.
    pub async fn get_or_list<F, Fut>(
        &self,
        generation: u64,
        key: Key,
        default_ttl: Duration,
        list: F,
    ) -> Result<Listed, UpstreamError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Listed, UpstreamError>>,
    {
        let slot = self.slot(generation, key);
        let (listed, until) = slot
            .listed
            .get_or_try_init(|| async {
                let listed = list().await?;
                let ttl = listed.stated_ttl.unwrap_or(default_ttl).min(default_ttl);
                Ok::<_, UpstreamError>((listed, Instant::now() + ttl))
            })
            .await?;
        let left = until.saturating_duration_since(Instant::now()).as_millis();
        let mut listed = listed.clone();
        listed.hint.ttl_ms = listed.hint.ttl_ms.min(left as u64);
        Ok(listed)
    }

    fn slot(&self, generation: u64, key: Key) -> Arc<Slot> {
        if self.generation.swap(generation, Ordering::Relaxed) != generation {
            self.slots.retain(|_, slot| slot.generation == generation);
        }
        let now = Instant::now();
        if let Some(slot) = self.slots.get(&key).filter(|s| s.usable(generation, now)) {
            return slot.clone();
        }
        let mut slot = self
            .slots
            .entry(key)
            .or_insert_with(|| Slot::new(generation));
        if !slot.usable(generation, now) {
            *slot = Slot::new(generation);
        }
        slot.clone()
    }

    /// The upstream of route `index` said a list changed (or may have: its stream dropped).
    pub fn changed(&self, index: usize) {
        self.slots.retain(|(route, _, _), _| *route != index);
    }
}

impl Slot {
    fn new(generation: u64) -> Arc<Slot> {
        Arc::new(Slot {
            generation,
            listed: OnceCell::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn listed(n: usize, stated_ttl: Option<Duration>) -> Listed {
        Listed {
            items: Arc::new(vec![Value::from(n)]),
            hint: CacheHint::OPEN,
            stated_ttl,
        }
    }

    async fn get(
        cache: &ListCache,
        generation: u64,
        ttl: Duration,
        stated: Option<Duration>,
        count: &AtomicUsize,
    ) -> Listed {
        let key: Key = (0, "tools/list", None);
        cache
            .get_or_list(generation, key, ttl, || async {
                let n = count.fetch_add(1, Ordering::SeqCst);
                tokio::task::yield_now().await;
                Ok(listed(n, stated))
            })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn callers_at_once_wait_for_one_listing_and_a_reload_lists_again() {
        let cache = ListCache::default();
        let count = AtomicUsize::new(0);
        let ttl = Duration::from_secs(60);
        let all = futures::future::join_all((0..20).map(|_| get(&cache, 1, ttl, None, &count)));
        let answers = all.await;
        assert_eq!(count.load(Ordering::SeqCst), 1);
        assert!(answers.iter().all(|l| l.items[0] == 0));
        assert!(answers[0].hint.ttl_ms <= 60_000 && answers[0].hint.ttl_ms > 50_000);
        get(&cache, 2, ttl, None, &count).await;
        assert_eq!(
            count.load(Ordering::SeqCst),
            2,
            "a new generation lists again"
        );
        cache.changed(0);
        get(&cache, 2, ttl, None, &count).await;
        assert_eq!(count.load(Ordering::SeqCst), 3, "a change lists again");
    }

    #[tokio::test]
    async fn a_stated_ttl_of_zero_keeps_nothing_and_a_failure_is_not_kept() {
        let cache = ListCache::default();
        let count = AtomicUsize::new(0);
        let ttl = Duration::from_secs(60);
        get(&cache, 1, ttl, Some(Duration::ZERO), &count).await;
        let again = get(&cache, 1, ttl, Some(Duration::ZERO), &count).await;
        assert_eq!(count.load(Ordering::SeqCst), 2);
        assert_eq!(again.hint.ttl_ms, 0);
        let key: Key = (1, "tools/list", None);
        let failed = cache
            .get_or_list(1, key.clone(), ttl, || async {
                Err(UpstreamError::Timeout)
            })
            .await;
        assert!(failed.is_err());
        let ok = cache
            .get_or_list(1, key, ttl, || async { Ok(listed(7, None)) })
            .await
            .unwrap();
        assert_eq!(ok.items[0], 7);
    }
}
