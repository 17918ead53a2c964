//! A channel's queue: deliveries ready now, most urgent first (then oldest first), and
//! deliveries waiting for a retry time. Pure: the clock is an argument.
//!
//! Entries hold only ids and priorities (the text stays in the store until sent), so a
//! backlog of 100,000 deliveries costs a few megabytes.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashSet};

use tokio::time::Instant;

use crate::event::Priority;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Item {
    pub id: i64,
    pub priority: Priority,
}

/// Heap order: higher priority first, then lower (older) id first.
impl Ord for Item {
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority.cmp(&other.priority).then_with(|| other.id.cmp(&self.id))
    }
}

impl PartialOrd for Item {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[derive(Debug, Default)]
pub struct Queue {
    ready: BinaryHeap<Item>,
    delayed: BinaryHeap<Reverse<(Instant, i64, Reverse<Item>)>>,
    ids: HashSet<i64>,
}

impl Queue {
    /// Add `item`, due at `due` (or now). An id already queued is ignored.
    pub fn push(&mut self, item: Item, due: Option<Instant>, now: Instant) -> bool {
        if !self.ids.insert(item.id) {
            return false;
        }
        match due {
            Some(at) if at > now => self.delayed.push(Reverse((at, item.id, Reverse(item)))),
            _ => self.ready.push(item),
        }
        true
    }

    fn promote(&mut self, now: Instant) {
        while let Some(Reverse((at, _, _))) = self.delayed.peek() {
            if *at > now {
                break;
            }
            if let Some(Reverse((_, _, Reverse(item)))) = self.delayed.pop() {
                self.ready.push(item);
            }
        }
    }

    /// The most urgent item due by `now`, left in the queue.
    pub fn peek(&mut self, now: Instant) -> Option<Item> {
        self.promote(now);
        self.ready.peek().copied()
    }

    /// The ids of the `n` most urgent items due by `now`, most urgent first, left in the
    /// queue.
    pub fn peek_ids(&mut self, now: Instant, n: usize) -> Vec<i64> {
        self.promote(now);
        let mut taken = Vec::with_capacity(n.min(self.ready.len()));
        while taken.len() < n {
            let Some(item) = self.ready.pop() else { break };
            taken.push(item);
        }
        let ids = taken.iter().map(|i| i.id).collect();
        self.ready.extend(taken);
        ids
    }

    /// Take the most urgent item due by `now`.
    pub fn pop(&mut self, now: Instant) -> Option<Item> {
        self.promote(now);
        let item = self.ready.pop()?;
        self.ids.remove(&item.id);
        Some(item)
    }

    /// When the next delayed item falls due.
    pub fn next_due(&self) -> Option<Instant> {
        self.delayed.peek().map(|Reverse((at, _, _))| *at)
    }

    pub fn contains(&self, id: i64) -> bool {
        self.ids.contains(&id)
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn item(id: i64, priority: Priority) -> Item {
        Item { id, priority }
    }

    #[test]
    fn critical_first_then_oldest() {
        let now = Instant::now();
        let mut q = Queue::default();
        for (id, p) in [
            (1, Priority::Normal),
            (2, Priority::Low),
            (3, Priority::Critical),
            (4, Priority::Normal),
            (5, Priority::Critical),
        ] {
            q.push(item(id, p), None, now);
        }
        let order: Vec<i64> = std::iter::from_fn(|| q.pop(now)).map(|i| i.id).collect();
        assert_eq!(order, [3, 5, 1, 4, 2]);
        assert!(q.is_empty());
    }

    #[test]
    fn delayed_items_wait_for_their_time() {
        let now = Instant::now();
        let mut q = Queue::default();
        q.push(item(1, Priority::Critical), Some(now + Duration::from_secs(5)), now);
        q.push(item(2, Priority::Low), None, now);
        assert_eq!(q.pop(now).map(|i| i.id), Some(2));
        assert_eq!(q.pop(now), None);
        assert_eq!(q.next_due(), Some(now + Duration::from_secs(5)));
        assert_eq!(q.peek(now + Duration::from_secs(5)).map(|i| i.id), Some(1));
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn peeking_several_leaves_them_in_order() {
        let now = Instant::now();
        let mut q = Queue::default();
        for (id, p) in [(1, Priority::Normal), (2, Priority::Critical), (3, Priority::Normal), (4, Priority::High)] {
            q.push(item(id, p), None, now);
        }
        q.push(item(5, Priority::Critical), Some(now + Duration::from_secs(60)), now);
        assert_eq!(q.peek_ids(now, 3), [2, 4, 1], "the most urgent due, in order");
        assert_eq!(q.peek_ids(now, 10), [2, 4, 1, 3], "not the one not yet due");
        let popped: Vec<i64> = std::iter::from_fn(|| q.pop(now).map(|i| i.id)).collect();
        assert_eq!(popped, [2, 4, 1, 3], "all still there, in the same order");
    }

    #[test]
    fn an_id_is_queued_once() {
        let now = Instant::now();
        let mut q = Queue::default();
        assert!(q.push(item(7, Priority::High), None, now));
        assert!(!q.push(item(7, Priority::High), None, now));
        assert_eq!(q.len(), 1);
        q.pop(now);
        assert!(q.push(item(7, Priority::High), None, now), "re-queued after it was taken");
    }
}
