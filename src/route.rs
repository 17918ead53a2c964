//! Routing: an accepted event becomes one planned delivery per channel. Pure.
//!
//! A channel gets the event when the rule names it (or says `"*"`), the channel is
//! enabled, and the audience allows it: staff-only events (tests, exercises) go only to
//! channels marked `public = false`.

use std::collections::BTreeMap;

use crate::config::{ChannelConfig, EventRule};
use crate::event::{Event, Priority, language_matches};
use crate::lifecycle::{Audience, DeliveryKind};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub channel: String,
    pub kind: DeliveryKind,
    pub priority: Priority,
    /// The language of this post; `None` when the event does not say.
    pub language: Option<String>,
}

/// The deliveries for an event under `rule`, in channel-name order, one per language the
/// channel posts (see [`languages`]).
pub fn plan(
    event: &Event,
    rule: &EventRule,
    audience: Audience,
    channels: &BTreeMap<String, ChannelConfig>,
    agency_languages: &[String],
) -> Vec<Planned> {
    plan_as(event, rule, audience, channels, agency_languages, DeliveryKind::for_msg_type(event.msg_type))
}

/// [`plan`] for deliveries of `kind` (an update of an incident never seen posts as a new
/// alert; a CAD snapshot may turn out to be either).
pub fn plan_as(
    event: &Event,
    rule: &EventRule,
    audience: Audience,
    channels: &BTreeMap<String, ChannelConfig>,
    agency_languages: &[String],
    kind: DeliveryKind,
) -> Vec<Planned> {
    channels
        .values()
        // A cancellation is planned for every channel: the store keeps it only where
        // something of the incident is out, which may be a channel the rule has since
        // stopped naming.
        .filter(|c| c.enabled && (kind == DeliveryKind::Cancel || rule.channels.includes(&c.name)))
        .filter(|c| audience == Audience::Public || !c.public)
        .flat_map(|c| {
            let wanted = c.languages.as_deref().unwrap_or(agency_languages);
            languages(event, wanted).into_iter().map(move |language| Planned {
                channel: c.name.clone(),
                kind,
                priority: rule.priority,
                language: language.map(str::to_owned),
            })
        })
        .collect()
}

/// The languages to post `event` in: every one it has when `wanted` is empty, else those
/// of `wanted` it has, in `wanted`'s order. Never none: if the event has none of them, its
/// main language is posted rather than dropping the alert.
pub fn languages<'e>(event: &'e Event, wanted: &[String]) -> Vec<Option<&'e str>> {
    let available = event.languages();
    if wanted.is_empty() || event.translations.is_empty() {
        return if event.translations.is_empty() { vec![event.language.as_deref()] } else { available };
    }
    let mut out: Vec<Option<&str>> = Vec::new();
    for w in wanted {
        if let Some(found) = available.iter().find(|a| a.is_some_and(|a| language_matches(a, w)))
            && !out.contains(found)
        {
            out.push(*found);
        }
    }
    if out.is_empty() { vec![event.language.as_deref()] } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ChannelKind, ChannelSelector};
    use crate::event::json;

    fn channels() -> BTreeMap<String, ChannelConfig> {
        [("console", true, true), ("staff", true, false), ("hook", true, true), ("off", false, true)]
            .into_iter()
            .map(|(n, enabled, public)| {
                let mut c = ChannelConfig::new(n, ChannelKind::Console);
                c.enabled = enabled;
                c.public = public;
                (n.to_owned(), c)
            })
            .collect()
    }

    fn rule(sel: ChannelSelector) -> EventRule {
        EventRule::new(Priority::Critical, sel, "x")
    }

    fn event(msg_type: &str, extra: serde_json::Value) -> Event {
        let mut v =
            serde_json::json!({ "id": "1", "type": "t", "msg_type": msg_type, "status": "actual", "headline": "h" });
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        json::decode(v.to_string().as_bytes()).expect("event")
    }

    fn names(p: &[Planned]) -> Vec<&str> {
        p.iter().map(|p| p.channel.as_str()).collect()
    }

    #[test]
    fn star_means_every_enabled_channel() {
        let p = plan(
            &event("alert", serde_json::json!({})),
            &rule(ChannelSelector::All),
            Audience::Public,
            &channels(),
            &[],
        );
        assert_eq!(names(&p), ["console", "hook", "staff"]);
        assert!(
            p.iter().all(|p| p.priority == Priority::Critical && p.kind == DeliveryKind::Post && p.language.is_none())
        );
    }

    #[test]
    fn named_channels_only() {
        let sel = ChannelSelector::Named(vec!["hook".to_owned(), "off".to_owned()]);
        let p = plan(&event("update", serde_json::json!({})), &rule(sel), Audience::Public, &channels(), &[]);
        assert_eq!(names(&p), ["hook"]);
        assert_eq!(p[0].kind, DeliveryKind::Update);
    }

    #[test]
    fn a_cancellation_is_planned_for_channels_the_rule_no_longer_names() {
        let sel = ChannelSelector::Named(vec!["hook".to_owned()]);
        let p = plan(&event("cancel", serde_json::json!({})), &rule(sel.clone()), Audience::Public, &channels(), &[]);
        assert_eq!(names(&p), ["console", "hook", "staff"], "the store keeps it only where something is out");
        let p = plan(&event("update", serde_json::json!({})), &rule(sel), Audience::Public, &channels(), &[]);
        assert_eq!(names(&p), ["hook"]);
    }

    #[test]
    fn staff_only_never_reaches_a_public_channel() {
        let p = plan(
            &event("alert", serde_json::json!({})),
            &rule(ChannelSelector::All),
            Audience::Staff,
            &channels(),
            &[],
        );
        assert_eq!(names(&p), ["staff"]);
    }

    #[test]
    fn one_post_per_language_or_only_the_configured_ones() {
        let e = event(
            "alert",
            serde_json::json!({ "language": "en-US", "translations": [
                { "language": "es-US", "headline": "Niña desaparecida" },
                { "language": "vi", "headline": "Trẻ em mất tích" }
            ]}),
        );
        assert_eq!(languages(&e, &[]), [Some("en-US"), Some("es-US"), Some("vi")]);
        assert_eq!(languages(&e, &["es".to_owned(), "en".to_owned()]), [Some("es-US"), Some("en-US")]);
        assert_eq!(languages(&e, &["fr".to_owned()]), [Some("en-US")], "never drops the alert");
        let mut chans = channels();
        if let Some(c) = chans.get_mut("hook") {
            c.languages = Some(vec!["es".to_owned()]);
        }
        let p = plan(
            &e,
            &rule(ChannelSelector::Named(vec!["hook".to_owned(), "console".to_owned()])),
            Audience::Public,
            &chans,
            &["en".to_owned()],
        );
        let got: Vec<(&str, Option<&str>)> = p.iter().map(|p| (p.channel.as_str(), p.language.as_deref())).collect();
        assert_eq!(got, [("console", Some("en-US")), ("hook", Some("es-US"))]);
    }
}
