//! Credential expiry: a channel's `credentials_expire`, and which channels are near it.

use super::Config;
use crate::time::duration_ms;

/// A credential's expiry: an RFC 3339 time, or a date (the start of that day in `tz`,
/// the cautious reading of "expires January 15").
pub(super) fn parse(s: &str, tz: &jiff::tz::TimeZone) -> Result<jiff::Timestamp, String> {
    if let Ok(t) = s.trim().parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    let date: jiff::civil::Date = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is neither a date like 2027-01-15 nor a time like 2027-01-15T09:00:00-06:00"))?;
    date.to_zoned(tz.clone()).map(|z| z.timestamp()).map_err(|e| format!("{s:?}: {e}"))
}

/// How near a channel's credentials are to expiring, by the stages staff are told at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Expiry {
    Expired,
    WithinADay,
    WithinThreeDays,
    WithinAWeek,
    /// Within `credentials_warn`, more than a week ahead.
    Ahead,
}

impl Expiry {
    pub fn key(self) -> &'static str {
        match self {
            Expiry::Expired => "expired",
            Expiry::WithinADay => "1d",
            Expiry::WithinThreeDays => "3d",
            Expiry::WithinAWeek => "7d",
            Expiry::Ahead => "warn",
        }
    }
}

/// A channel whose `credentials_expire` is within `credentials_warn` or past.
#[derive(Debug, Clone)]
pub struct Expiring {
    pub channel: String,
    pub at: i64,
    pub stage: Expiry,
}

impl Expiring {
    /// For people: "expire at 00:00 CST (Jan 15), in 3 days" or "expired at ...".
    pub fn describe(&self, config: &Config, now: i64) -> String {
        if self.stage == Expiry::Expired {
            return format!("credentials expired at {}", config.local_time(self.at));
        }
        let hours = (self.at - now) / 3_600_000;
        let left = if hours < 48 { format!("{hours} h") } else { format!("{} days", hours / 24) };
        format!("credentials expire at {}, in {left}", config.local_time(self.at))
    }
}

/// The enabled channels whose recorded `credentials_expire` is near or past, soonest first.
pub fn expiring(config: &Config, now: i64) -> Vec<Expiring> {
    const DAY: i64 = 24 * 3_600_000;
    let warn = duration_ms(config.notify.credentials_warn).max(DAY);
    let mut out: Vec<Expiring> = config
        .channels
        .values()
        .filter(|c| c.enabled)
        .filter_map(|c| {
            let at = c.credentials_expire?.as_millisecond();
            let left = at - now;
            let stage = match left {
                ..=0 => Expiry::Expired,
                l if l > warn => return None,
                l if l <= DAY => Expiry::WithinADay,
                l if l <= 3 * DAY => Expiry::WithinThreeDays,
                l if l <= 7 * DAY => Expiry::WithinAWeek,
                _ => Expiry::Ahead,
            };
            Some(Expiring { channel: c.name.clone(), at, stage })
        })
        .collect();
    out.sort_by_key(|e| (e.at, e.channel.clone()));
    out
}

impl Config {
    /// A time for people, in the agency's zone: "00:00 CST (Jan 15)".
    pub fn local_time(&self, ms: i64) -> String {
        let tz = jiff::tz::TimeZone::get(&self.agency.time_zone).unwrap_or(jiff::tz::TimeZone::UTC);
        match jiff::Timestamp::from_millisecond(ms) {
            Ok(t) => t.to_zoned(tz).strftime("%H:%M %Z (%b %-d)").to_string(),
            Err(_) => ms.to_string(),
        }
    }
}
