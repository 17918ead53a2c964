//! A channel's quota: at most `limit` requests in any window of `window` (a sliding log,
//! exact at every instant, with a margin for the platform's clock), with a `reserve` of
//! that budget only critical alerts may use, and routine posts (normal, low) paced evenly
//! at their share of the window, so a backlog of them never fills the window in one burst:
//! a critical alert then waits at most one spacing even without a reserve. Pure: the
//! clock is an argument.
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

/// Requests chosen to go out together whose sends are not recorded yet.
#[derive(Debug, Default, Clone, Copy)]
pub struct Pending {
    pub all: usize,
    /// One of them is routine (normal or low).
    pub routine: bool,
}

impl Pending {
    /// `n` requests (messages) of `priority`.
    pub fn add(&mut self, priority: Priority, n: usize) {
        self.all += n;
        self.routine |= routine(priority);
    }
}

#[derive(Debug)]
pub struct Window {
    quota: Quota,
    sent: VecDeque<Instant>,
    /// When the last routine (normal or low) request went out, for pacing.
    last_routine: Option<Instant>,
}

/// Whether a priority is paced: routine posts spread over the window instead of bursting.
fn routine(p: Priority) -> bool {
    matches!(p, Priority::Normal | Priority::Low)
}

impl Window {
    pub fn new(quota: Quota) -> Self {
        Window { quota, sent: VecDeque::new(), last_routine: None }
    }

    /// Start from the send times already in the log (oldest first), e.g. after a restart.
    /// The log does not say which were routine, so pacing counts from the newest.
    pub fn rebuild(quota: Quota, sent: impl IntoIterator<Item = Instant>) -> Self {
        let mut w = Window::new(quota);
        w.sent.extend(sent);
        w.last_routine = w.sent.back().copied();
        w
    }

    /// How long a request counts: the window, plus a margin for the time between our
    /// clock and the platform's (network delay, a slow commit), so that the platform,
    /// counting by arrival, never sees more than the limit in its window.
    fn span(&self) -> Duration {
        (self.quota.window / 100).clamp(Duration::from_millis(250), Duration::from_secs(5)) + self.quota.window
    }

    /// The spacing of routine requests: their share of the window, evenly.
    fn pace(&self) -> Duration {
        let routine_budget = self.quota.limit.saturating_sub(self.quota.reserve).max(1);
        self.quota.window / routine_budget
    }

    fn prune(&mut self, now: Instant) {
        let span = self.span();
        while let Some(&t) = self.sent.front() {
            if now.saturating_duration_since(t) >= span {
                self.sent.pop_front();
            } else {
                break;
            }
        }
    }

    /// How much of the window a delivery of `priority` may fill.
    fn budget(&self, priority: Priority) -> usize {
        let limit = self.quota.limit;
        let budget = if priority >= Priority::Critical { limit } else { limit - self.quota.reserve.min(limit) };
        budget as usize
    }

    /// `None` if a delivery of `priority` may go now, else how long until it may.
    pub fn wait(&mut self, priority: Priority, now: Instant) -> Option<Duration> {
        self.wait_after(priority, now, Pending::default(), 1)
    }

    /// [`Window::wait`] for a request that sends `n` messages (a batch of SMS numbers),
    /// with `pending` requests chosen to go out together but not yet recorded (they are,
    /// at their start, once their attempts are committed): they count as sent now.
    pub fn wait_after(&mut self, priority: Priority, now: Instant, pending: Pending, n: usize) -> Option<Duration> {
        self.prune(now);
        // A retraction has its own budget: it never waits for the window, and still counts
        // in it, so routine posts after it leave the platform's limit room for it.
        if priority == Priority::Retraction {
            return None;
        }
        let budget = self.budget(priority);
        // A request larger than the whole budget waits for an empty window.
        let n = n.clamp(1, budget.max(1));
        let len = self.sent.len() + pending.all;
        let mut wait = Duration::ZERO;
        if len + n > budget {
            // Room for `n` means at most `budget - n` in the window, so the oldest
            // `len + n - budget` sends must leave it; this is the last of them (one still
            // pending leaves a whole span from now).
            let last_to_leave = len + n - budget - 1;
            let freed_by = self.sent.get(last_to_leave).copied().unwrap_or(now);
            wait = (freed_by + self.span()).saturating_duration_since(now).max(Duration::from_millis(1));
        }
        if routine(priority) {
            let last = if pending.routine { Some(now) } else { self.last_routine };
            if let Some(last) = last {
                wait = wait.max((last + self.pace()).saturating_duration_since(now));
            }
        }
        (!wait.is_zero()).then_some(wait)
    }

    /// New limits (a reload); the sends already in the window still count.
    pub fn set_quota(&mut self, quota: Quota) {
        self.quota = quota;
    }

    /// Count a request of `priority` sent at `now`.
    pub fn record(&mut self, priority: Priority, now: Instant) {
        self.record_n(priority, now, 1);
    }

    /// Count a request of `priority` that sent `n` messages at `now`; routine posts after
    /// it wait as if they had gone one spacing apart.
    pub fn record_n(&mut self, priority: Priority, now: Instant, n: usize) {
        for _ in 0..n.max(1) {
            self.sent.push_back(now);
        }
        if routine(priority) {
            let extra = u32::try_from(n.max(1) - 1).unwrap_or(u32::MAX);
            self.last_routine = Some(now + self.pace().saturating_mul(extra));
        }
    }

    pub fn used(&mut self, now: Instant) -> usize {
        self.prune(now);
        self.sent.len()
    }

    /// How many more requests the window takes now (before pacing and the reserve).
    pub fn free(&mut self, now: Instant) -> usize {
        (self.quota.limit as usize).saturating_sub(self.used(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(limit: u32, secs: u64, reserve: u32) -> Quota {
        Quota { limit, window: Duration::from_secs(secs), reserve }
    }

    const S: fn(u64) -> Duration = Duration::from_secs;
    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn at_most_limit_in_any_window_plus_a_margin() {
        let t0 = Instant::now();
        let mut w = Window::new(quota(3, 60, 0));
        for i in 0..3 {
            let at = t0 + S(i * 10);
            assert_eq!(w.wait(Priority::High, at), None);
            w.record(Priority::High, at);
        }
        // Full until the first send (t0) leaves the window and its 0.6 s margin.
        assert_eq!(w.wait(Priority::High, t0 + S(25)), Some(MS(35_600)));
        assert_eq!(w.wait(Priority::High, t0 + MS(60_600)), None);
    }

    #[test]
    fn the_margin_is_at_least_a_quarter_second_and_at_most_five() {
        let t0 = Instant::now();
        let mut short = Window::new(quota(1, 2, 0));
        short.record(Priority::High, t0);
        assert_eq!(short.wait(Priority::High, t0 + S(2)), Some(MS(250)));
        let mut long = Window::new(quota(1, 3 * 3600, 0));
        long.record(Priority::High, t0);
        assert_eq!(long.wait(Priority::High, t0 + S(3 * 3600)), Some(S(5)));
    }

    #[test]
    fn reserve_is_for_critical_only() {
        let t0 = Instant::now();
        let mut w = Window::new(quota(5, 3600, 1));
        for _ in 0..4 {
            assert_eq!(w.wait(Priority::High, t0), None);
            w.record(Priority::High, t0);
        }
        assert_eq!(w.wait(Priority::High, t0), Some(S(3605)));
        assert_eq!(w.wait(Priority::Critical, t0), None, "the reserve is there for critical");
        w.record(Priority::Critical, t0);
        assert!(w.wait(Priority::Critical, t0).is_some(), "and then the window is full for everyone");
    }

    #[test]
    fn routine_posts_are_paced_at_their_share_of_the_window() {
        let t0 = Instant::now();
        // 10 per 100 s with 2 reserved: routine gets 8, one every 12.5 s.
        let mut w = Window::new(quota(10, 100, 2));
        w.record(Priority::Normal, t0);
        assert_eq!(w.wait(Priority::Low, t0 + S(2)), Some(MS(10_500)));
        assert_eq!(w.wait(Priority::Normal, t0 + MS(12_500)), None);
        assert_eq!(w.wait(Priority::High, t0), None, "high is not paced");
        assert_eq!(w.wait(Priority::Critical, t0), None);
    }

    #[test]
    fn critical_waits_at_most_one_spacing_behind_paced_routine_even_without_a_reserve() {
        let t0 = Instant::now();
        let q = quota(100, 10, 0);
        let mut w = Window::new(q);
        // Routine posts go out as fast as pacing lets them, for a minute.
        let mut t = t0;
        while t < t0 + S(60) {
            match w.wait(Priority::Normal, t) {
                None => w.record(Priority::Normal, t),
                Some(d) => t += d,
            }
        }
        // A critical alert arriving at any moment waits at most one spacing (100 ms).
        for offset in 0..50 {
            let at = t + MS(offset * 7);
            let wait = w.wait(Priority::Critical, at).unwrap_or_default();
            assert!(wait <= MS(100), "waited {wait:?} at +{}ms", offset * 7);
        }
    }

    #[test]
    fn a_request_of_several_messages_needs_room_for_each_and_paces_routine_after_it() {
        let t0 = Instant::now();
        let mut w = Window::new(quota(10, 10, 0));
        let pending = Pending::default();
        assert_eq!(w.wait_after(Priority::High, t0, pending, 8), None);
        w.record_n(Priority::High, t0, 8);
        assert!(w.wait_after(Priority::High, t0, pending, 3).is_some(), "8 + 3 > 10");
        assert_eq!(w.wait_after(Priority::High, t0, pending, 2), None);
        // Routine: a batch of 4 at t0 spaces the next routine post 4 spacings (of 1 s) on.
        let mut w = Window::new(quota(10, 10, 0));
        w.record_n(Priority::Normal, t0, 4);
        assert_eq!(w.wait(Priority::Normal, t0 + S(1)), Some(S(3)));
        // Larger than the whole budget: waits for an empty window, not forever.
        let mut w = Window::new(quota(4, 10, 0));
        assert_eq!(w.wait_after(Priority::High, t0, pending, 9), None);
    }

    proptest::proptest! {
        /// Requests chosen together (each counted as pending until their attempts are
        /// committed, then recorded at their start) never put more than the limit in
        /// any window, whatever the priorities, batch sizes and commit delays.
        #[test]
        fn choosing_several_at_once_never_overfills_the_window(
            steps in proptest::collection::vec((0u8..4, 1usize..6, 0u64..400, 0u64..50), 1..80),
        ) {
            let q = quota(6, 2, 1);
            let mut w = Window::new(q);
            let t0 = Instant::now();
            let mut now = t0;
            let mut sent: Vec<Instant> = Vec::new();
            for (p, room, advance_ms, commit_ms) in steps {
                now += MS(advance_ms);
                let priority = [Priority::Low, Priority::Normal, Priority::High, Priority::Critical][usize::from(p)];
                let mut pending = Pending::default();
                let mut chosen = 0;
                while chosen < room && w.wait_after(priority, now, pending, 1).is_none() {
                    pending.add(priority, 1);
                    chosen += 1;
                }
                let start = now + MS(commit_ms);
                for _ in 0..chosen {
                    w.record(priority, start);
                    sent.push(start);
                }
                now = start;
            }
            sent.sort();
            for (i, a) in sent.iter().enumerate() {
                let inside = sent[i..].iter().take_while(|b| b.duration_since(*a) < q.window).count();
                proptest::prop_assert!(inside <= q.limit as usize, "{inside} sends within one window");
            }
        }
    }

    #[test]
    fn rebuilt_window_counts_earlier_sends_and_paces_from_the_newest() {
        let t0 = Instant::now();
        let mut w = Window::rebuild(quota(2, 60, 0), [t0, t0 + S(1)]);
        assert!(w.wait(Priority::Critical, t0 + S(2)).is_some());
        assert_eq!(w.used(t0 + S(62)), 0);
        let mut w = Window::rebuild(quota(10, 100, 0), [t0]);
        assert_eq!(w.wait(Priority::Normal, t0 + S(1)), Some(S(9)));
    }
}
