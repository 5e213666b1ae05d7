//! "Raise this finding once per window": the repeat suppression shared by
//! the analyses whose findings recur with every retransmission, call or
//! drop (reachability, inbound calls). Bounded: at capacity, keys whose
//! window is over go first, then the oldest; both kinds of loss counted.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use crate::time::Timestamp;

pub(crate) struct OncePerWindow<K> {
    window: Duration,
    capacity: usize,
    raised: HashMap<K, Timestamp>,
    /// Repeats within the window, not raised.
    pub suppressed: u64,
    /// Keys forgotten before their window was over (table full): their
    /// next repeat is raised again.
    pub evicted: u64,
}

impl<K: Eq + Hash + Clone> OncePerWindow<K> {
    pub(crate) fn new(window: Duration, capacity: usize) -> Self {
        Self {
            window,
            capacity: capacity.max(1),
            raised: HashMap::new(),
            suppressed: 0,
            evicted: 0,
        }
    }

    /// True when `key` was not raised within the window before `now` (and
    /// records it as raised now).
    pub(crate) fn first(&mut self, key: K, now: Timestamp) -> bool {
        if let Some(last) = self.raised.get(&key)
            && now.since(*last) < self.window
        {
            self.suppressed += 1;
            return false;
        }
        if self.raised.len() >= self.capacity && !self.raised.contains_key(&key) {
            let window = self.window;
            self.raised.retain(|_, t| now.since(*t) < window);
            if self.raised.len() >= self.capacity
                && let Some(oldest) = self
                    .raised
                    .iter()
                    .min_by_key(|(_, t)| **t)
                    .map(|(k, _)| k.clone())
            {
                self.raised.remove(&oldest);
                self.evicted += 1;
            }
        }
        self.raised.insert(key, now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn repeats_within_the_window_are_suppressed_and_counted() {
        let mut w = OncePerWindow::new(Duration::from_secs(10), 4);
        assert!(w.first("a", Timestamp(0)));
        assert!(!w.first("a", Timestamp(9 * S)));
        assert!(w.first("a", Timestamp(10 * S)), "window over");
        assert!(w.first("b", Timestamp(10 * S)));
        assert_eq!((w.suppressed, w.evicted), (1, 0));
    }

    #[test]
    fn a_full_table_forgets_expired_keys_first_then_the_oldest() {
        let mut w = OncePerWindow::new(Duration::from_secs(10), 2);
        assert!(w.first(1, Timestamp(0)));
        assert!(w.first(2, Timestamp(5 * S)));
        // 1's window is over at 12 s: it goes without counting.
        assert!(w.first(3, Timestamp(12 * S)));
        assert_eq!(w.evicted, 0);
        // Both 2 and 3 are in their window: the oldest (2) is evicted.
        assert!(w.first(4, Timestamp(13 * S)));
        assert_eq!(w.evicted, 1);
        assert!(w.first(2, Timestamp(14 * S)), "evicted: raised again");
        assert!(!w.first(4, Timestamp(14 * S)));
    }
}
