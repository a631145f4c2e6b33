//! The configuration in force: one immutable snapshot behind an `ArcSwap` (a request takes it
//! once), and a generation counter that open client streams and background services watch.

use super::Snapshot;
use arc_swap::ArcSwap;
use std::sync::Arc;
use tokio::sync::watch;

pub struct Live {
    current: ArcSwap<Snapshot>,
    generation: watch::Sender<u64>,
}

impl Live {
    pub fn new(snapshot: Snapshot) -> Self {
        Self {
            current: ArcSwap::from_pointee(snapshot),
            generation: watch::Sender::new(1),
        }
    }

    /// The configuration in force; a request takes it once.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Swaps in a new configuration (bucket state carried over where rates are unchanged).
    /// Requests in flight finish on the snapshot they started with. Returns the new generation.
    pub fn install(&self, mut snapshot: Snapshot) -> u64 {
        snapshot.adopt_limits(&self.current.load());
        self.current.store(Arc::new(snapshot));
        let mut generation = 0;
        self.generation.send_modify(|g| {
            *g += 1;
            generation = *g;
        });
        generation
    }

    /// Notified at every new configuration.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    pub fn generation(&self) -> u64 {
        *self.generation.borrow()
    }
}
