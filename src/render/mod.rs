//! Rendering: the text a channel receives for an event.
//!
//! Templates are files under the templates dir: `<set>/default.txt` for an event type's
//! set (the rule's `templates`, by default the type name), and `default.txt` for every
//! type without one. They are Jinja (minijinja) with strict undefined variables, a fuel
//! limit, no file or network access and no HTML escaping: posts are plain text.
//!
//! A template that fails at render time never loses the alert: the delivery gets a plain
//! fallback text (headline, instruction, link, contact) and the error is recorded with it.
//! Non-actual events are always prefixed with their status, whatever the template says.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde_json::{Map, Value};

use crate::config::{Agency, ChannelConfig, Config};
use crate::event::{Event, Status};
use crate::route::DeliveryKind;

/// Work one render may do before it is stopped (a loop bomb in a template).
const FUEL: u64 = 100_000;
/// The template every event type falls back to.
pub const GLOBAL_DEFAULT: &str = "default.txt";

/// A template problem, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{l}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// The rendered text of one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub text: String,
    /// Set when the template failed and the fallback text was used.
    pub error: Option<String>,
}

/// Compiled templates for one config.
#[derive(Debug)]
pub struct Renderer {
    env: Environment<'static>,
    sets: BTreeSet<String>,
    agency: Agency,
}

impl Renderer {
    /// Load and compile every template the config's rules use.
    pub fn load(config: &Config) -> Result<Renderer, Vec<TemplateError>> {
        let dir = &config.templates_dir;
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_fuel(Some(FUEL));
        env.set_auto_escape_callback(|_| AutoEscape::None);

        let mut errors = Vec::new();
        let mut sets = BTreeSet::new();
        let global = add(&mut env, dir, GLOBAL_DEFAULT, &mut errors);
        let wanted: BTreeSet<&str> = config.events.values().map(|r| r.templates.as_str()).collect();
        for set in wanted {
            let name = format!("{set}/default.txt");
            if dir.join(&name).is_file() {
                if add(&mut env, dir, &name, &mut errors) {
                    sets.insert(set.to_owned());
                }
            } else if !global {
                errors.push(TemplateError {
                    file: dir.join(&name),
                    line: None,
                    message: format!("missing, and there is no {GLOBAL_DEFAULT} to fall back to"),
                });
            }
        }
        if errors.is_empty() { Ok(Renderer { env, sets, agency: config.agency.clone() }) } else { Err(errors) }
    }

    /// The text `channel` posts for `event`.
    pub fn render(&self, set: &str, channel: &ChannelConfig, event: &Event, kind: DeliveryKind) -> Rendered {
        let name = if self.sets.contains(set) { format!("{set}/default.txt") } else { GLOBAL_DEFAULT.to_owned() };
        let ctx = context(event, kind, channel, &self.agency);
        let result =
            self.env.get_template(&name).and_then(|t| t.render(minijinja::Value::from(minijinja::value::Serde(&ctx))));
        let (text, error) = match result {
            Ok(t) if !t.trim().is_empty() => (t.trim().to_owned(), None),
            Ok(_) => (fallback(event, kind), Some(format!("{name}: rendered empty text"))),
            Err(e) => (fallback(event, kind), Some(describe(&name, &e))),
        };
        Rendered { text: with_status_prefix(event.status, text), error }
    }
}

fn add(env: &mut Environment<'static>, dir: &Path, name: &str, errors: &mut Vec<TemplateError>) -> bool {
    let path = dir.join(name);
    let source = match std::fs::read_to_string(&path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && name == GLOBAL_DEFAULT => {
            return false;
        }
        Err(e) => {
            errors.push(TemplateError { file: path, line: None, message: e.to_string() });
            return false;
        }
    };
    match env.add_template_owned(name.to_owned(), source) {
        Ok(()) => true,
        Err(e) => {
            errors.push(TemplateError {
                file: path,
                line: e.line(),
                message: e.detail().unwrap_or("syntax error").to_owned(),
            });
            false
        }
    }
}

fn describe(name: &str, e: &minijinja::Error) -> String {
    match (e.line(), e.detail()) {
        (Some(l), Some(d)) => format!("{name}:{l}: {}: {d}", e.kind()),
        (Some(l), None) => format!("{name}:{l}: {}", e.kind()),
        (None, Some(d)) => format!("{name}: {}: {d}", e.kind()),
        (None, None) => format!("{name}: {}", e.kind()),
    }
}

/// What a template sees: the event's fields at the top level (and again under `fields`),
/// the core event keys, the delivery kind, the channel and the agency.
fn context(event: &Event, kind: DeliveryKind, channel: &ChannelConfig, agency: &Agency) -> Value {
    let mut ctx: Map<String, Value> = event.fields.clone();
    if let Ok(Value::Object(core)) = serde_json::to_value(event) {
        ctx.extend(core);
    }
    for key in
        ["revision", "sent", "expires", "description", "instruction", "area", "location", "web", "contact", "language"]
    {
        ctx.entry(key).or_insert(Value::Null);
    }
    ctx.insert("fields".to_owned(), Value::Object(event.fields.clone()));
    ctx.insert("kind".to_owned(), Value::from(kind.as_str()));
    ctx.insert("channel".to_owned(), serde_json::json!({ "name": channel.name, "kind": channel.kind.name() }));
    ctx.insert("agency".to_owned(), serde_json::to_value(agency).unwrap_or(Value::Null));
    Value::Object(ctx)
}

/// A plain text that keeps what matters when a template cannot be used.
pub fn fallback(event: &Event, kind: DeliveryKind) -> String {
    let head = match kind {
        DeliveryKind::Post => event.headline.clone(),
        DeliveryKind::Update => format!("UPDATE: {}", event.headline),
        DeliveryKind::Cancel => format!("CANCELLED: {}", event.headline),
    };
    [Some(&head), event.instruction.as_ref(), event.web.as_ref(), event.contact.as_ref()]
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join("\n")
}

fn with_status_prefix(status: Status, text: String) -> String {
    match status {
        Status::Actual => text,
        other => format!("[{}] {text}", other.as_str().to_uppercase()),
    }
}

#[cfg(test)]
mod tests;
