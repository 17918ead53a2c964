//! `[events.<type>]`: each event type's rule (approval, channels, expiry, templates).

use std::collections::BTreeMap;
use std::time::Duration;

use super::file::*;
use super::read::section;
use super::*;

/// What happens to events of one type.
#[derive(Debug, Clone)]
pub struct EventRule {
    pub priority: Priority,
    pub channels: ChannelSelector,
    pub max_age: Option<Duration>,
    pub templates: String,
    /// As configured; see [`EventRule::approval_for`].
    pub approval: Option<Approval>,
    pub hashtags: Vec<String>,
    /// When set, only these entries of the event's `fields` reach templates.
    pub public_fields: Option<Vec<String>>,
    /// When a CAD incident closes: post it (as a cancellation) or end silently.
    pub post_on_close: bool,
    /// How long a held alert waits for a decision, then `after_hold` applies.
    pub hold_for: Option<Duration>,
    pub after_hold: AfterHold,
}

impl EventRule {
    /// A rule with defaults for everything but these (tests, samples).
    pub fn new(priority: Priority, channels: ChannelSelector, templates: &str) -> Self {
        EventRule {
            priority,
            channels,
            max_age: None,
            templates: templates.to_owned(),
            approval: None,
            hashtags: Vec::new(),
            public_fields: None,
            post_on_close: false,
            hold_for: None,
            after_hold: AfterHold::Reject,
        }
    }

    /// Whether events from `format` wait for a person: as configured, else hold for CAD
    /// incident data (an incident is not an alert until someone says so) and auto for
    /// alerts.
    pub fn approval_for(&self, format: Format) -> Approval {
        self.approval.unwrap_or(if format.is_cad() { Approval::Hold } else { Approval::Auto })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelSelector {
    All,
    Named(Vec<String>),
}

impl ChannelSelector {
    pub fn includes(&self, channel: &str) -> bool {
        match self {
            ChannelSelector::All => true,
            ChannelSelector::Named(names) => names.iter().any(|n| n == channel),
        }
    }
}

pub(super) fn validate(
    entries: BTreeMap<String, config::Value>,
    channels: &BTreeMap<String, ChannelConfig>,
    errors: &mut Errors,
) -> BTreeMap<String, EventRule> {
    let mut rules = BTreeMap::new();
    for (name, value) in entries {
        let path = format!("events.{name}");
        if !crate::event::valid_type_name(&name) {
            errors.push(&path, "event type names are lowercase letters, digits and underscores");
        }
        let Some(rule) = section::<EventRuleFile>(value, &path, errors) else {
            continue;
        };
        let selector = if rule.channels.iter().any(|c| c == "*") {
            if rule.channels.len() > 1 {
                errors.push(
                    format!("{path}.channels"),
                    "\"*\" already means every channel; list names or \"*\", not both",
                );
            }
            ChannelSelector::All
        } else {
            for c in &rule.channels {
                if !channels.contains_key(c) {
                    errors.push(format!("{path}.channels"), format!("unknown channel {c:?}"));
                }
            }
            ChannelSelector::Named(rule.channels)
        };
        if rule.max_age.is_some_and(|d| d.0.is_zero()) {
            errors.push(format!("{path}.max_age"), "must be above zero (leave it out for no limit)");
        }
        let templates = rule.templates.unwrap_or_else(|| name.clone());
        for (i, f) in rule.public_fields.iter().flatten().enumerate() {
            if f.is_empty() || f.chars().any(|c| !(c.is_ascii_alphanumeric() || c == '_')) {
                errors.push(format!("{path}.public_fields[{i}]"), format!("{f:?} is not a field name"));
            }
        }
        if rule.hold_for.is_some_and(|d| d.0.is_zero()) {
            errors.push(format!("{path}.hold_for"), "must be above zero (leave it out to wait for a decision)");
        }
        if templates.is_empty() || templates.contains(['/', '\\']) || templates.starts_with('.') {
            errors.push(format!("{path}.templates"), "must be a folder name under the templates dir");
        }
        rules.insert(
            name,
            EventRule {
                priority: rule.priority,
                channels: selector,
                max_age: rule.max_age.map(|d| d.0),
                templates,
                approval: rule.approval,
                hashtags: rule.hashtags,
                public_fields: rule.public_fields,
                post_on_close: rule.post_on_close,
                hold_for: rule.hold_for.map(|d| d.0),
                after_hold: rule.after_hold,
            },
        );
    }
    rules
}
