//! bullhorn: an emergency alert broadcast daemon.
//!
//! Dispatch systems publish incident events to MQTT; bullhorn decodes each one, decides
//! whether and where it may be posted, renders one text per channel, commits the event
//! and its deliveries to a durable outbox, acknowledges the MQTT message, and then posts
//! from the outbox to every channel under that channel's rate limit.
//!
//! Module map:
//!
//! | module | owns |
//! |---|---|
//! | [`config`] | the TOML file (two-phase: serde mirror, then a validated [`config::Config`]) |
//! | [`event`] | the [`event::Event`] model and the decoders that produce it |
//! | [`policy`] | pure decisions before anything is posted: status, expiry, age, dedupe key |
//! | [`lifecycle`] | pure: what a message does to its incident, and whether a delivery may still go out (the safety rules) |
//! | [`links`] | one-time approve/reject links, derived from a key and never stored usable |
//! | [`route`] | pure: an accepted event becomes one planned delivery per channel |
//! | [`render`] | templates: the text each channel receives |
//! | [`ingest`] | MQTT: owns the connection, runs the pure stages, acks after commit |
//! | [`store`] | SQLite outbox and audit log: one group-commit writer, readers |
//! | [`delivery`] | one worker per channel: priority queue, quota, retries, outcomes |
//! | [`channel`] | one file per platform: request shape and response classification |
//! | [`admin`] | loopback HTTP: health, readiness, metrics; the operators' API and staff links |
//! | [`control`] | the kill switch: what is paused, shared with every worker |
//! | [`media`] | images: allowlisted fetch, EXIF stripped, fitted per platform, text cards, the public media store |
//! | [`notify`] | staff notices (held alerts with approve links, late alerts, refused credentials) and hold timers |
//! | [`app`] | builds everything from a `Config`, runs it, shuts it down in order |
//!
//! How an event flows: the `ingest` task receives a PUBLISH, decodes it (`event`), places
//! it in its incident, applies `policy`, plans deliveries (`route`) and renders their text
//! (`render`), all without I/O of their own. It hands one write request to the `store`
//! writer thread, which asks `lifecycle` what the event does to its incident and commits
//! the event and its delivery rows in one transaction (batched with whatever else is
//! waiting) and answers. Only then is the PUBACK sent, in arrival order. The writer announces the
//! new delivery ids to `delivery`, whose per-channel worker takes the most urgent one,
//! waits for quota, commits an attempt row, calls the `channel`, and commits the outcome.

pub mod admin;
pub mod app;
pub mod backoff;
#[cfg(feature = "embedded-broker")]
pub mod broker;
pub mod channel;
pub mod cli;
pub mod config;
pub mod control;
pub mod delivery;
pub mod digest;
pub mod event;
#[cfg(test)]
mod fuzz;
pub mod health;
pub mod ingest;
pub mod lifecycle;
pub mod links;
pub mod media;
pub mod metrics;
pub mod notify;
pub mod platform;
pub mod policy;
pub mod reload;
pub mod render;
pub mod route;
pub mod store;
pub mod supervise;
pub mod time;
