//! A channel's quota: at most `limit` requests in any window of `window` (a sliding log,
//! exact at every instant), with a `reserve` of that budget only critical alerts may use.
//! Pure: the clock is an argument.
//!
//! Why a log and not a token bucket (governor's GCRA): the platforms state their limits
//! as "N per window", a bucket lets a full burst through and refills continuously, which
//! can exceed such a limit over a window; a log of send times also rebuilds exactly from
//! the store's attempt rows after a restart, and makes the reserve a simple count.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::Quota;
use crate::event::Priority;

#[derive(Debug)]
pub struct Window {
    quota: Quota,
    sent: VecDeque<Instant>,
}

impl Window {
    pub fn new(quota: Quota) -> Self {
        Window { quota, sent: VecDeque::new() }
    }

    /// Start from the send times already in the log (oldest first), e.g. after a restart.
    pub fn rebuild(quota: Quota, sent: impl IntoIterator<Item = Instant>) -> Self {
        let mut w = Window::new(quota);
        w.sent.extend(sent);
        w
    }

    fn prune(&mut self, now: Instant) {
        while let Some(&t) = self.sent.front() {
            if now.saturating_duration_since(t) >= self.quota.window {
                self.sent.pop_front();
            } else {
                break;
            }
        }
    }

    /// How much of the window a delivery of `priority` may fill.
    fn budget(&self, priority: Priority) -> usize {
        let limit = self.quota.limit;
        let budget = if priority == Priority::Critical { limit } else { limit - self.quota.reserve.min(limit) };
        budget as usize
    }

    /// `None` if a delivery of `priority` may go now, else how long until it may.
    pub fn wait(&mut self, priority: Priority, now: Instant) -> Option<Duration> {
        self.prune(now);
        let budget = self.budget(priority);
        if self.sent.len() < budget {
            return None;
        }
        // Room means fewer than `budget` in the window, so the oldest `len - budget + 1`
        // sends must leave it; this is the last of them.
        let last_to_leave = self.sent.len() - budget;
        let freed_by = self.sent.get(last_to_leave).copied().unwrap_or(now);
        Some((freed_by + self.quota.window).saturating_duration_since(now).max(Duration::from_millis(1)))
    }

    /// New limits (a reload); the sends already in the window still count.
    pub fn set_quota(&mut self, quota: Quota) {
        self.quota = quota;
    }

    /// Count a request sent at `now`.
    pub fn record(&mut self, now: Instant) {
        self.sent.push_back(now);
    }

    /// Take back the last [`record`](Self::record): the request never left.
    pub fn unrecord(&mut self) {
        self.sent.pop_back();
    }

    pub fn used(&mut self, now: Instant) -> usize {
        self.prune(now);
        self.sent.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(limit: u32, secs: u64, reserve: u32) -> Quota {
        Quota { limit, window: Duration::from_secs(secs), reserve }
    }

    #[test]
    fn at_most_limit_in_any_window() {
        let t0 = Instant::now();
        let mut w = Window::new(quota(3, 60, 0));
        for i in 0..3 {
            let at = t0 + Duration::from_secs(i * 10);
            assert_eq!(w.wait(Priority::Normal, at), None);
            w.record(at);
        }
        // Full until the first send (t0) leaves the window at t0+60.
        assert_eq!(w.wait(Priority::Normal, t0 + Duration::from_secs(25)), Some(Duration::from_secs(35)));
        assert_eq!(w.wait(Priority::Normal, t0 + Duration::from_secs(60)), None);
    }

    #[test]
    fn reserve_is_for_critical_only() {
        let t0 = Instant::now();
        let mut w = Window::new(quota(5, 3600, 1));
        for _ in 0..4 {
            assert_eq!(w.wait(Priority::High, t0), None);
            w.record(t0);
        }
        assert_eq!(w.wait(Priority::High, t0), Some(Duration::from_secs(3600)));
        assert_eq!(w.wait(Priority::Critical, t0), None, "the reserve is there for critical");
        w.record(t0);
        assert!(w.wait(Priority::Critical, t0).is_some(), "and then the window is full for everyone");
    }

    #[test]
    fn normal_waits_for_enough_sends_to_leave() {
        let t0 = Instant::now();
        // Limit 4, reserve 2: normal may use 2. Critical used the whole window.
        let mut w = Window::new(quota(4, 100, 2));
        for i in 0..4 {
            w.record(t0 + Duration::from_secs(i));
        }
        // A normal send needs fewer than 2 in the window, so three sends must leave: the
        // third (at t0+2) leaves at t0+102.
        assert_eq!(w.wait(Priority::Normal, t0 + Duration::from_secs(10)), Some(Duration::from_secs(92)));
    }

    #[test]
    fn rebuilt_window_counts_earlier_sends() {
        let t0 = Instant::now();
        let mut w = Window::rebuild(quota(2, 60, 0), [t0, t0 + Duration::from_secs(1)]);
        assert!(w.wait(Priority::Critical, t0 + Duration::from_secs(2)).is_some());
        assert_eq!(w.used(t0 + Duration::from_secs(61)), 0);
    }

    #[test]
    fn unrecord_gives_the_slot_back() {
        let t0 = Instant::now();
        let mut w = Window::new(quota(1, 60, 0));
        w.record(t0);
        w.unrecord();
        assert_eq!(w.wait(Priority::Low, t0), None);
    }
}
