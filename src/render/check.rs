//! What `bullhorn check` verifies about templates, beyond compiling them:
//!
//! - every template renders against its set's sample event (`<set>/sample.json`), for each
//!   delivery kind and every channel or platform it serves;
//! - no template is too long for a platform it serves even with the description dropped
//!   (shortening a long description is normal; a template whose fixed text overflows is
//!   not);
//! - every variable a template uses exists: a core event key, the agency's and channel's
//!   keys, or a field of the event type (its `public_fields`, else its sample's fields).
//!
//! Every problem is reported, each with its file and, where known, its line.

use std::collections::{BTreeMap, BTreeSet};

use super::{Renderer, SAMPLE, Target, TemplateError};
use crate::config::{Config, EventRule};
use crate::event::{Event, json};
use crate::lifecycle::DeliveryKind;
use crate::platform::Platform;

/// Keys every template may use (besides the event type's fields).
const CORE: &[&str] = &[
    "amber",
    "id",
    "revision",
    "type",
    "msg_type",
    "status",
    "sent",
    "expires",
    "headline",
    "description",
    "instruction",
    "area",
    "location",
    "web",
    "contact",
    "language",
    "media",
    "format",
    "fields",
    "kind",
    "platform",
    "channel",
    "hashtags",
    "agency",
    // An email's subject and HTML only: the rendered text.
    "text",
];
const AGENCY: &[&str] = &["name", "time_zone", "phone", "web", "hashtags"];
const LOCATION: &[&str] = &["text", "lat", "lon"];
const CHANNEL: &[&str] = &["name", "kind", "platform"];
/// What a correction template (`correction.txt`) sees.
const CORRECTION_KEYS: &[&str] = &["headline", "event_type", "sent", "correction", "agency", "platform", "channel"];

/// Check the config's templates; empty when all is well.
pub fn check(config: &Config) -> Vec<TemplateError> {
    let renderer = match Renderer::load(config) {
        Ok(r) => r,
        Err(errors) => return errors,
    };
    let mut problems = Vec::new();

    // The rules and sample events behind each set.
    let mut sets: BTreeMap<&str, Vec<(&str, &EventRule)>> = BTreeMap::new();
    for (event_type, rule) in &config.events {
        sets.entry(rule.templates.as_str()).or_default().push((event_type, rule));
    }
    let mut samples: BTreeMap<&str, Event> = BTreeMap::new();
    for (set, rules) in &sets {
        match sample(&renderer, set, rules[0].0) {
            Ok(e) => {
                samples.insert(set, e);
            }
            Err(e) => problems.push(e),
        }
    }

    // Variables.
    for name in renderer.names() {
        let set = name.split_once('/').map(|(s, _)| s);
        let allowed = set.map(|s| allowed_fields(sets.get(s).map(Vec::as_slice).unwrap_or_default(), samples.get(s)));
        let Ok(template) = renderer.env().get_template(name) else { continue };
        let mut vars: Vec<String> = template.undeclared_variables(true).into_iter().collect();
        vars.sort();
        let correction = set.is_none() && name.starts_with("correction");
        for var in vars {
            let unknown = if correction {
                let top = var.split('.').next().unwrap_or(&var);
                match top {
                    "agency" | "channel" => unknown_variable(&var, None),
                    t if CORRECTION_KEYS.contains(&t) => None,
                    t => {
                        Some(format!("unknown variable {t}: a correction template has {}", CORRECTION_KEYS.join(", ")))
                    }
                }
            } else {
                unknown_variable(&var, allowed.as_ref())
            };
            if let Some(reason) = unknown {
                let line = line_of(template.source(), var.rsplit('.').next().unwrap_or(&var));
                problems.push(TemplateError { file: renderer.dir().join(name), line, message: reason });
            }
        }
    }

    // The correction text, on every enabled channel, as a retraction and as a correction.
    if let Some(event) = samples.values().next() {
        let mut seen = BTreeSet::new();
        for c in config.channels.values().filter(|c| c.enabled) {
            for text in [None, Some("The road is open again; the closure was posted in error.")] {
                let r = renderer.correction(event, &Target::channel(c), text);
                if let Some(error) = r.error
                    && seen.insert(error.clone())
                {
                    problems.push(TemplateError {
                        file: renderer.dir().join(&r.template),
                        line: None,
                        message: format!("rendering a correction for {}: {error}", c.name),
                    });
                }
            }
        }
    }

    // Images: alt text for every image a public channel would post, and the text card.
    for (set, rules) in &sets {
        let Some(event) = samples.get(set) else { continue };
        for (event_type, rule) in rules {
            let channels: Vec<_> = config
                .channels
                .values()
                .filter(|c| c.enabled && rule.channels.includes(&c.name))
                .filter(|c| c.platform().image_spec(c.image_max_bytes).is_some())
                .collect();
            let public: Vec<&str> = channels.iter().filter(|c| c.public).map(|c| c.name.as_str()).collect();
            for language in event.languages() {
                let event = event.in_language(language);
                match renderer.alt_text(rule, &event) {
                    None if !public.is_empty() => problems.push(TemplateError {
                        file: renderer.dir().join(set),
                        line: None,
                        message: format!(
                            "{event_type}: an image sent without alt text would not be posted on {}: add \
                             {set}/alt.txt or alt.txt",
                            public.join(", ")
                        ),
                    }),
                    Some(Err(error)) => {
                        problems.push(TemplateError { file: renderer.dir().join(set), line: None, message: error });
                    }
                    _ => {}
                }
                if channels.iter().any(|c| c.card)
                    && let Err(error) = renderer.card_text(rule, &event)
                {
                    problems.push(TemplateError {
                        file: renderer.dir().join(set),
                        line: None,
                        message: format!("the text card: {error}"),
                    });
                }
            }
        }
    }

    // Rendering and overflow, per rule and target.
    for (set, rules) in &sets {
        let Some(event) = samples.get(set) else { continue };
        for (_, rule) in rules {
            let mut targets: Vec<Target<'_>> = config
                .channels
                .values()
                .filter(|c| c.enabled && rule.channels.includes(&c.name))
                .map(Target::channel)
                .collect();
            // Platform variants are checked on their platform even with no such channel yet.
            for &p in Platform::ALL {
                if renderer.names().any(|n| n.starts_with(&format!("{set}/{}.", p.as_str())))
                    && !targets.iter().any(|t| t.platform == p)
                {
                    targets.push(Target::platform(p));
                }
            }
            let mut seen = BTreeSet::new();
            for target in &targets {
                for language in event.languages() {
                    for kind in [DeliveryKind::Post, DeliveryKind::Update, DeliveryKind::Cancel] {
                        let r = renderer.render_for(rule, target, event, kind, language);
                        let Some(error) = r.error else { continue };
                        if seen.insert((r.template.clone(), error.clone())) {
                            let file =
                                renderer.dir().join(if r.template.is_empty() { set } else { r.template.as_str() });
                            problems.push(TemplateError {
                                file,
                                line: None,
                                message: format!(
                                    "rendering the sample for {} ({}): {error}",
                                    target.name,
                                    kind.as_str()
                                ),
                            });
                        }
                    }
                }
            }
        }
    }
    problems
}

/// The sample event of a set: `<set>/sample.json`, else a generic one of `event_type`.
pub(crate) fn sample(renderer: &Renderer, set: &str, event_type: &str) -> Result<Event, TemplateError> {
    let path = renderer.dir().join(set).join(SAMPLE);
    match std::fs::read(&path) {
        Ok(bytes) => json::decode(&bytes).map_err(|r| TemplateError { file: path, line: None, message: r.to_string() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let generic = serde_json::json!({
                "id": "SAMPLE-1", "revision": 1, "type": event_type, "status": "actual",
                "sent": "2026-01-01T12:00:00Z", "headline": "Sample headline for a check",
                "description": "A sample description, long enough to show how the text is shortened when a platform needs it.",
                "instruction": "Avoid the area.", "web": "https://agency.example/alerts/1"
            });
            json::decode(generic.to_string().as_bytes()).map_err(|r| TemplateError {
                file: path,
                line: None,
                message: r.to_string(),
            })
        }
        Err(e) => Err(TemplateError { file: path, line: None, message: e.to_string() }),
    }
}

/// The fields a set's templates may use: the union of its rules' `public_fields`, or, for
/// a rule without a list, the sample's fields.
fn allowed_fields(rules: &[(&str, &EventRule)], sample: Option<&Event>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (_, rule) in rules {
        match &rule.public_fields {
            Some(list) => out.extend(list.iter().cloned()),
            None => out.extend(sample.iter().flat_map(|e| e.fields.keys().cloned())),
        }
    }
    out
}

/// Why `var` (e.g. `fields.plate`, `agency.phone`) cannot be resolved, if it cannot.
/// `allowed` is `None` for the global default, which serves every type.
fn unknown_variable(var: &str, allowed: Option<&BTreeSet<String>>) -> Option<String> {
    let mut parts = var.split('.');
    let top = parts.next().unwrap_or(var);
    let sub = parts.next();
    let check_sub = |known: &[&str], what: &str| {
        sub.filter(|s| !known.contains(s))
            .map(|s| format!("unknown variable {top}.{s}: {what} has {}", known.join(", ")))
    };
    match top {
        "agency" => check_sub(AGENCY, "the agency"),
        "location" => check_sub(LOCATION, "a location"),
        "channel" => check_sub(CHANNEL, "a channel"),
        "fields" => match (sub, allowed) {
            (Some(f), Some(allowed)) if !allowed.contains(f) => {
                Some(format!("unknown variable fields.{f}: not in this type's public_fields or sample event fields"))
            }
            _ => None,
        },
        t if CORE.contains(&t) => None,
        t => match allowed {
            Some(allowed) if allowed.contains(t) => None,
            Some(_) => Some(format!(
                "unknown variable {t}: not an event key ({}) nor in this type's public_fields or sample event fields",
                CORE.join(", ")
            )),
            None => Some(format!(
                "unknown variable {t}: the global default serves every event type, so use core keys or fields.{t} with `is defined`"
            )),
        },
    }
}

/// The first line of `source` that mentions `word` as a whole word.
fn line_of(source: &str, word: &str) -> Option<usize> {
    source
        .lines()
        .position(|l| {
            l.match_indices(word).any(|(i, _)| {
                let before = l[..i].chars().next_back();
                let after = l[i + word.len()..].chars().next();
                !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
                    && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
            })
        })
        .map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_are_checked_against_the_schema() {
        let allowed: BTreeSet<String> = ["child_name".to_owned()].into();
        assert_eq!(unknown_variable("headline", Some(&allowed)), None);
        assert_eq!(unknown_variable("child_name", Some(&allowed)), None);
        assert_eq!(unknown_variable("fields.child_name", Some(&allowed)), None);
        assert!(unknown_variable("suspect_name", Some(&allowed)).is_some());
        assert!(unknown_variable("fields.suspect_name", Some(&allowed)).is_some());
        assert!(unknown_variable("agency.fax", Some(&allowed)).is_some());
        assert_eq!(unknown_variable("agency.phone", None), None);
        assert_eq!(unknown_variable("fields.anything", None), None, "the global default may look into fields");
        assert!(unknown_variable("child_name", None).is_some());
    }

    #[test]
    fn lines_are_found_by_whole_word() {
        assert_eq!(line_of("a\n{{ plate_no }}\n{{ plate }}", "plate"), Some(3));
        assert_eq!(line_of("x", "plate"), None);
    }
}
