//! bullhorn: an emergency alert broadcast daemon.
//!
//! Dispatch systems publish incident events to MQTT; bullhorn decodes each one, decides
//! whether and where it may be posted, renders one text per channel, commits the event
//! and its deliveries to a durable outbox, acknowledges the MQTT message, and then posts
//! from the outbox to every channel under that channel's rate limit.
//!
//! Module map, in the order of the layers below:
//!
//! | module | owns |
//! |---|---|
//! | [`cli`] | the subcommands: run, check, render, send, status, approve, pause, ... |
//! | [`app`] | builds everything from a `Config`, runs it, shuts it down in order |
//! | [`admin`] | loopback HTTP: health, readiness, metrics; the operators' API and staff links |
//! | [`notify`] | staff notices (held alerts with approve links, late alerts, refused credentials) and hold timers |
//! | [`broker`] | the embedded MQTT broker, for trying bullhorn out with nothing else installed |
//! | [`ingest`] | MQTT: owns the connection, hands each message to `pipeline`, acks after commit |
//! | [`delivery`] | one worker per channel: priority queue, quota, attempts, outcomes |
//! | [`pipeline`] | pure: a received message becomes its store record (verify, decode, policy, route, render) |
//! | [`media`] | images: allowlisted fetch, EXIF stripped, fitted per platform, text cards, the public media store |
//! | [`control`] | the kill switch: what is paused, shared with every worker |
//! | [`store`] | SQLite outbox and audit log: one group-commit writer, readers |
//! | [`channel`] | one file per platform: request shape and response classification |
//! | [`reload`] | hot reload: the running config and templates, swapped whole after validation |
//! | [`render`] | templates: the text each channel receives, measured and escaped per platform |
//! | [`route`] | pure: an accepted event becomes one planned delivery per channel |
//! | [`policy`] | pure decisions before anything is posted: status, expiry, age, dedupe key |
//! | [`lifecycle`] | pure: what a message does to its incident, and whether a delivery may still go out (the safety rules) |
//! | [`links`] | one-time approve/reject links, derived from a key and never stored usable |
//! | [`config`] | the TOML file (two-phase: serde mirror, then a validated [`config::Config`]), one file per section |
//! | [`event`] | the [`event::Event`] model and the decoders that produce it |
//! | [`platform`] | every platform's profile: length rule, rate, escaping, images, what its API can do |
//! | [`digest`] | SHA-256, random tokens and nonces |
//! | [`time`] | wall-clock helpers (Unix milliseconds) |
//! | [`backoff`] | capped exponential backoff, the pure maths |
//! | [`metrics`] | Prometheus metrics, one registry per daemon |
//! | [`health`] | readiness shared by the tasks that know it |
//! | [`supervise`] | tasks whose failure stops the daemon |
//!
//! Layers, top to bottom. A module imports from its own layer or a lower one, never a
//! higher one, and never in a cycle; `tests/layers.rs` reads the code and checks it.
//!
//! 1. `cli`
//! 2. `app`
//! 3. `admin`, `notify`, `broker`
//! 4. `ingest`, `delivery`
//! 5. `pipeline`, `media`, `control`
//! 6. `store`
//! 7. `channel`, `reload`
//! 8. `render`, `route`, `policy`, `lifecycle`, `links`
//! 9. `config`
//! 10. `event`
//! 11. `platform`, `digest`, `time`, `backoff`, `metrics`, `health`, `supervise`
//!
//! How an event flows: the `ingest` task receives a PUBLISH and hands it to `pipeline`,
//! which verifies its signature, decodes it (`event`), places it in its incident, applies
//! `policy`, plans deliveries (`route`) and renders their text (`render`), all without I/O
//! of its own. Ingest hands the record to the `store` writer thread, which asks
//! `lifecycle` what the event does to its incident and commits the event and its delivery
//! rows in one transaction (batched with whatever else is waiting) and answers. Only then
//! is the PUBACK sent, in arrival order. The writer announces the new delivery ids to
//! `delivery`, whose per-channel worker takes the most urgent one, waits for quota, commits
//! an attempt row, calls the `channel` with a narrow view of the delivery, and commits the
//! outcome. The CLI (`render`, `send`) and the operators' API run the same `pipeline`.

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
pub mod pipeline;
pub mod platform;
pub mod policy;
pub mod reload;
pub mod render;
pub mod route;
pub mod store;
pub mod supervise;
pub mod time;
