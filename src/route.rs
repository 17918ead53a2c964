//! Routing: an accepted event becomes one planned delivery per channel. Pure.
//!
//! A channel gets the event when the rule names it (or says `"*"`), the channel is
//! enabled, and the audience allows it: staff-only events (tests, exercises) go only to
//! channels marked `public = false`.

use std::collections::BTreeMap;

use crate::config::{ChannelConfig, EventRule};
use crate::event::{MsgType, Priority};
use crate::policy::Audience;

/// What a delivery does on its channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryKind {
    /// The first post about an incident.
    Post,
    /// A follow-up: a reply to the channel's original post where the platform threads.
    Update,
    /// A cancellation notice; queued originals are suppressed instead of posted.
    Cancel,
}

impl DeliveryKind {
    pub fn for_msg_type(m: MsgType) -> Self {
        match m {
            MsgType::Alert => DeliveryKind::Post,
            MsgType::Update => DeliveryKind::Update,
            MsgType::Cancel => DeliveryKind::Cancel,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryKind::Post => "post",
            DeliveryKind::Update => "update",
            DeliveryKind::Cancel => "cancel",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "post" => Some(DeliveryKind::Post),
            "update" => Some(DeliveryKind::Update),
            "cancel" => Some(DeliveryKind::Cancel),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub channel: String,
    pub kind: DeliveryKind,
    pub priority: Priority,
}

/// The deliveries for an event under `rule`, in channel-name order.
pub fn plan(
    msg_type: MsgType,
    rule: &EventRule,
    audience: Audience,
    channels: &BTreeMap<String, ChannelConfig>,
) -> Vec<Planned> {
    let kind = DeliveryKind::for_msg_type(msg_type);
    channels
        .values()
        .filter(|c| c.enabled && rule.channels.includes(&c.name))
        .filter(|c| audience == Audience::Public || !c.public)
        .map(|c| Planned { channel: c.name.clone(), kind, priority: rule.priority })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ChannelKind, ChannelSelector};

    fn channels() -> BTreeMap<String, ChannelConfig> {
        [("console", true, true), ("staff", true, false), ("hook", true, true), ("off", false, true)]
            .into_iter()
            .map(|(n, enabled, public)| {
                (
                    n.to_owned(),
                    ChannelConfig { name: n.to_owned(), enabled, public, quota: None, kind: ChannelKind::Console },
                )
            })
            .collect()
    }

    fn rule(sel: ChannelSelector) -> EventRule {
        EventRule { priority: Priority::Critical, channels: sel, max_age: None, templates: "x".to_owned() }
    }

    fn names(p: &[Planned]) -> Vec<&str> {
        p.iter().map(|p| p.channel.as_str()).collect()
    }

    #[test]
    fn star_means_every_enabled_channel() {
        let p = plan(MsgType::Alert, &rule(ChannelSelector::All), Audience::Public, &channels());
        assert_eq!(names(&p), ["console", "hook", "staff"]);
        assert!(p.iter().all(|p| p.priority == Priority::Critical && p.kind == DeliveryKind::Post));
    }

    #[test]
    fn named_channels_only() {
        let sel = ChannelSelector::Named(vec!["hook".to_owned(), "off".to_owned()]);
        let p = plan(MsgType::Update, &rule(sel), Audience::Public, &channels());
        assert_eq!(names(&p), ["hook"]);
        assert_eq!(p[0].kind, DeliveryKind::Update);
    }

    #[test]
    fn staff_only_never_reaches_a_public_channel() {
        let p = plan(MsgType::Alert, &rule(ChannelSelector::All), Audience::StaffOnly, &channels());
        assert_eq!(names(&p), ["staff"]);
    }
}
