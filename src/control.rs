//! The kill switch: which channels and event types are paused, shared with every worker.
//!
//! Pauses are rows in the store (so they outlive a restart) and, once committed, a value
//! in a `watch` channel the workers look at before each request. A paused channel's worker
//! takes nothing from its queue but retractions; a delivery of a paused event type is set
//! aside and queued again on resume. Nothing is dropped: what is still valid when the
//! pause ends goes out, what expired meanwhile is closed as expired by the usual checks.

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio::sync::watch;

use crate::config::ChannelConfig;
use crate::store::{Reader, Scope, StoreError};

/// What is paused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pauses {
    /// Every public channel.
    pub all: bool,
    pub channels: BTreeSet<String>,
    /// Event types, on public channels.
    pub types: BTreeSet<String>,
}

impl Pauses {
    pub fn from_scopes<'a>(scopes: impl IntoIterator<Item = &'a str>) -> Pauses {
        let mut p = Pauses::default();
        for s in scopes {
            match Scope::parse(s) {
                Ok(Scope::All) => p.all = true,
                Ok(Scope::Channel(c)) => {
                    p.channels.insert(c);
                }
                Ok(Scope::Type(t)) => {
                    p.types.insert(t);
                }
                Err(e) => tracing::warn!(error = %e, "ignoring a pause the store holds"),
            }
        }
        p
    }

    /// Whether `channel` takes nothing from its queue (but retractions).
    pub fn channel_paused(&self, channel: &ChannelConfig) -> bool {
        (self.all && channel.public) || self.channels.contains(&channel.name)
    }

    /// Whether deliveries of `event_type` wait on `channel`.
    pub fn type_paused(&self, channel: &ChannelConfig, event_type: &str) -> bool {
        channel.public && self.types.contains(event_type)
    }

    pub fn is_empty(&self) -> bool {
        !self.all && self.channels.is_empty() && self.types.is_empty()
    }
}

/// The daemon's pause state, read from the store at start and after every change.
#[derive(Debug, Clone)]
pub struct Control {
    tx: Arc<watch::Sender<Pauses>>,
}

impl Control {
    /// Load the pauses the store holds.
    pub async fn load(reader: &Reader) -> Result<Control, StoreError> {
        let rows = reader.pauses().await?;
        let pauses = Pauses::from_scopes(rows.iter().map(|r| r.scope.as_str()));
        if !pauses.is_empty() {
            let scopes: Vec<&str> = rows.iter().map(|r| r.scope.as_str()).collect();
            tracing::warn!(?scopes, "starting PAUSED (kill switch on); `bullhorn resume` lifts it");
        }
        Ok(Control { tx: Arc::new(watch::Sender::new(pauses)) })
    }

    /// No pauses (tests, tools).
    pub fn unpaused() -> Control {
        Control { tx: Arc::new(watch::Sender::new(Pauses::default())) }
    }

    pub fn subscribe(&self) -> watch::Receiver<Pauses> {
        self.tx.subscribe()
    }

    pub fn current(&self) -> Pauses {
        self.tx.borrow().clone()
    }

    /// Re-read the pauses from the store (after a committed change) and tell the workers.
    pub async fn refresh(&self, reader: &Reader) -> Result<Pauses, StoreError> {
        let rows = reader.pauses().await?;
        let pauses = Pauses::from_scopes(rows.iter().map(|r| r.scope.as_str()));
        self.tx.send_replace(pauses.clone());
        Ok(pauses)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ChannelKind;

    #[test]
    fn the_kill_switch_stops_public_channels_only() {
        let public = ChannelConfig::new("x", ChannelKind::Console);
        let mut staff = ChannelConfig::new("staff", ChannelKind::Console);
        staff.public = false;
        let p = Pauses::from_scopes(["all"]);
        assert!(p.channel_paused(&public));
        assert!(!p.channel_paused(&staff), "staff channels keep working during a pause");
        let p = Pauses::from_scopes(["channel:staff", "type:road_closure"]);
        assert!(p.channel_paused(&staff) && !p.channel_paused(&public));
        assert!(p.type_paused(&public, "road_closure"));
        assert!(!p.type_paused(&public, "missing_child"));
        assert!(!p.type_paused(&staff, "road_closure"));
        assert!(Pauses::from_scopes(["bogus"]).is_empty());
    }
}
