//! Wall-clock helpers. The store keeps times as Unix milliseconds (`i64`); everything that
//! waits uses `tokio::time` so tests can pause and advance it.

use std::time::Duration;

use jiff::Timestamp;

/// Now, as Unix milliseconds.
pub fn now_ms() -> i64 {
    Timestamp::now().as_millisecond()
}

/// `ms` as an RFC 3339 UTC timestamp, for logs and payloads.
pub fn rfc3339(ms: i64) -> String {
    Timestamp::from_millisecond(ms).map_or_else(|_| ms.to_string(), |t| t.to_string())
}

/// A duration as whole milliseconds, saturating.
pub fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// How long from `now_ms` until `at_ms` (zero if it has passed).
pub fn until(at_ms: i64, now_ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(at_ms.saturating_sub(now_ms)).unwrap_or(0))
}
