//! Capped exponential backoff, the pure maths. A [`Backoff`] turns "the n-th failure in a
//! row" plus a random number in `[0, 1)` into a delay, so the shape is unit-tested without
//! clocks or randomness; callers pass `fastrand::f64()`.

use std::time::Duration;

/// Delay `base * 2^n`, capped at `cap`, then jittered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Backoff {
    pub const fn new(base: Duration, cap: Duration) -> Self {
        Backoff { base, cap }
    }

    /// The un-jittered ceiling for the `n`-th consecutive failure (0-based).
    pub fn ceiling(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.min(31)).unwrap_or(u32::MAX);
        self.base.checked_mul(factor).map_or(self.cap, |d| d.min(self.cap))
    }

    /// Full jitter (uniform in `[0, ceiling)`): spreads retries of many deliveries apart.
    /// Used for platform retries, where an early retry costs one request.
    pub fn full_jitter(&self, n: u32, unit: f64) -> Duration {
        self.ceiling(n).mul_f64(unit.clamp(0.0, 1.0))
    }

    /// Equal jitter (uniform in `[ceiling/2, ceiling)`): never retries at once. Used for
    /// broker reconnects, where a zero delay would spin.
    pub fn equal_jitter(&self, n: u32, unit: f64) -> Duration {
        let c = self.ceiling(n);
        c / 2 + (c / 2).mul_f64(unit.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));

    #[test]
    fn doubles_then_caps() {
        assert_eq!(B.ceiling(0), Duration::from_millis(100));
        assert_eq!(B.ceiling(1), Duration::from_millis(200));
        assert_eq!(B.ceiling(6), Duration::from_millis(6400));
        assert_eq!(B.ceiling(7), Duration::from_secs(10));
        assert_eq!(B.ceiling(500), Duration::from_secs(10));
    }

    #[test]
    fn full_jitter_spans_zero_to_ceiling() {
        assert_eq!(B.full_jitter(3, 0.0), Duration::ZERO);
        assert_eq!(B.full_jitter(3, 0.5), Duration::from_millis(400));
        assert!(B.full_jitter(40, 0.999_999) <= Duration::from_secs(10));
    }

    #[test]
    fn equal_jitter_never_below_half() {
        assert_eq!(B.equal_jitter(0, 0.0), Duration::from_millis(50));
        assert_eq!(B.equal_jitter(0, 1.0), Duration::from_millis(100));
        assert_eq!(B.equal_jitter(9, 0.0), Duration::from_secs(5));
    }
}
