//! Rendering: the exact text each channel receives for an event.
//!
//! Templates are plain-text Jinja files (minijinja) under the templates dir, one folder
//! ("set") per event type. For a channel, the first file that exists wins:
//!
//! ```text
//! <set>/channel-<name>.txt   this channel only
//! <set>/<platform>.txt       e.g. x.txt, mastodon.txt, sms.txt
//! <set>/default.txt          the event type's default
//! default.txt                every type without its own
//! ```
//!
//! and each may have a language variant (`default.es.txt`). An email channel also takes
//! its subject from `<set>/channel-<name>.subject.txt`, `<set>/email.subject.txt` or
//! `email.subject.txt` (else the text's first line), and an HTML alternative from the
//! same names ending `.html` (values escaped for HTML there). Both also see the rendered
//! `text`, so an HTML template can wrap exactly what the text says
//! (`{{ text | paragraphs }}`). A post in a language uses the
//! most specific template *in that language* before any template in another: a Spanish
//! post never gets English wording from `x.txt` while `default.es.txt` exists.
//!
//! Templates run with strict undefined variables, a fuel limit, no file or network access
//! and no HTML escaping. Instead every value interpolated from the event is escaped for
//! the platform being rendered ([`escape`]), so a hostile field cannot ping, format or
//! masquerade as a link; the template's own text is trusted.
//!
//! The result is fitted to the platform's limit ([`platform`]): by re-rendering with the
//! description shortened at a word boundary (headline, call to action, link and contact
//! stay), or, where the channel says so, by splitting into a thread ([`fit`]).
//!
//! A template that fails never loses the alert: the delivery gets a plain fallback text
//! and the error is recorded with it. Non-actual events are always prefixed with their
//! status, whatever the template says.

pub mod check;
pub mod escape;
pub mod facets;
pub mod filters;
pub mod fit;
pub mod length;

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use minijinja::value::Value;
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::Serialize;
use serde_json::Map;

use crate::config::{Agency, ChannelConfig, Config, EventRule, Overflow};
use crate::event::{Event, Status};
use crate::lifecycle::DeliveryKind;
use length::Length;

use crate::platform::Platform;

/// Work one render may do before it is stopped (a loop bomb in a template).
const FUEL: u64 = 100_000;
/// The template every event type falls back to.
pub const GLOBAL_DEFAULT: &str = "default.txt";
/// A sample event for a set, used by `bullhorn check`.
pub const SAMPLE: &str = "sample.json";
/// The text of a retraction or correction (`bullhorn retract` / `correct`), at the top of
/// the templates dir; [`BUILTIN_CORRECTION`] when there is none.
pub const CORRECTION: &str = "correction.txt";
/// Used when the templates dir has no `correction.txt`.
pub const BUILTIN_CORRECTION: &str = r#"{% if correction %}CORRECTION: {{ correction }}{% else %}CORRECTION: Our alert "{{ headline }}" was sent in error. Please disregard it.{% endif %}
{{ agency.name }}{% if agency.phone %} · {{ agency.phone }}{% endif %}"#;

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

/// What one channel gets for one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rendered {
    /// The post (for a thread, the whole text before splitting).
    pub text: String,
    /// A thread's numbered parts, each within the limit; empty for a single post.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<String>,
    /// The length of the post (of the longest part for a thread).
    pub length: Length,
    /// The description was shortened (or the text cut) to fit.
    pub shortened: bool,
    /// The template used, relative to the templates dir.
    pub template: String,
    /// An email's subject line (`None`: its text's first line).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// An email's HTML alternative, where its templates have one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    /// Set when the template failed and the fallback text was used, or when the text could
    /// not be fitted without cutting more than the description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Where a text is going: a channel's name, platform and text rules.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    pub name: &'a str,
    pub platform: Platform,
    pub limit: Option<usize>,
    pub overflow: Overflow,
}

impl<'a> Target<'a> {
    pub fn channel(c: &'a ChannelConfig) -> Self {
        Target { name: &c.name, platform: c.platform(), limit: c.limit(), overflow: c.overflow }
    }

    /// A preview for a platform with its default rules (no channel configured).
    pub fn platform(p: Platform) -> Target<'static> {
        Target { name: p.as_str(), platform: p, limit: p.profile().limit, overflow: Overflow::Shorten }
    }
}

/// Compiled templates for one config.
#[derive(Debug)]
pub struct Renderer {
    env: Environment<'static>,
    names: BTreeSet<String>,
    dir: PathBuf,
    agency: Agency,
}

impl Renderer {
    /// Load and compile every template the config's rules use; every problem is reported.
    pub fn load(config: &Config) -> Result<Renderer, Vec<TemplateError>> {
        let dir = config.templates_dir.clone();
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_fuel(Some(FUEL));
        // An email's HTML template escapes every value for HTML; the others, per platform.
        env.set_auto_escape_callback(|name| if name.ends_with(".html") { AutoEscape::Html } else { AutoEscape::None });
        env.set_formatter(|out, state, value| {
            if value.is_none() || value.is_undefined() {
                return Ok(());
            }
            if matches!(state.auto_escape(), AutoEscape::Html) {
                return minijinja::escape_formatter(out, state, value);
            }
            let text = value.to_string();
            if value.is_safe() {
                return out
                    .write_str(&text)
                    .map_err(|e| minijinja::Error::new(minijinja::ErrorKind::WriteFailure, e.to_string()));
            }
            let platform = state
                .lookup("platform")
                .and_then(|p| p.as_str().and_then(Platform::parse))
                .unwrap_or(Platform::Console);
            out.write_str(&escape::escape(platform, &text))
                .map_err(|e| minijinja::Error::new(minijinja::ErrorKind::WriteFailure, e.to_string()))
        });
        let tz = jiff::tz::TimeZone::get(&config.agency.time_zone).unwrap_or(jiff::tz::TimeZone::UTC);
        filters::register(&mut env, tz, config.agency.map);

        let mut errors = Vec::new();
        let mut names = BTreeSet::new();
        for entry in read_dir_sorted(&dir, &mut errors) {
            let Some(file) = entry.file_name().and_then(|f| f.to_str()).map(str::to_owned) else { continue };
            if entry.is_file()
                && template_stem(&file).is_some_and(|(base, part, _)| match part {
                    Part::Text => matches!(base, "default" | "correction" | "alt" | "card"),
                    Part::Subject | Part::Html => base == "email",
                })
            {
                add(&mut env, &dir, &file, &mut names, &mut errors);
            }
        }
        if !names.contains(CORRECTION) {
            if let Err(e) = env.add_template(CORRECTION, BUILTIN_CORRECTION) {
                errors.push(TemplateError { file: dir.join(CORRECTION), line: e.line(), message: e.to_string() });
            }
            names.insert(CORRECTION.to_owned());
        }
        let sets: BTreeSet<&str> = config.events.values().map(|r| r.templates.as_str()).collect();
        for set in sets {
            let folder = dir.join(set);
            if !folder.is_dir() {
                if !names.contains(GLOBAL_DEFAULT) {
                    errors.push(TemplateError {
                        file: folder.join("default.txt"),
                        line: None,
                        message: format!("missing, and there is no {GLOBAL_DEFAULT} to fall back to"),
                    });
                }
                continue;
            }
            for entry in read_dir_sorted(&folder, &mut errors) {
                let Some(file) = entry.file_name().and_then(|f| f.to_str()).map(str::to_owned) else { continue };
                if file == SAMPLE || file.starts_with('.') || !entry.is_file() {
                    continue;
                }
                match template_stem(&file) {
                    Some((base, part, _)) if valid_base(base, part, config) => {
                        add(&mut env, &dir, &format!("{set}/{file}"), &mut names, &mut errors);
                    }
                    _ => errors.push(TemplateError {
                        file: entry,
                        line: None,
                        message: "not a template name bullhorn uses: default.txt, <platform>.txt (x, mastodon, bluesky, sms, ...), channel-<name>.txt, email.subject.txt, email.html, each optionally with a language (default.es.txt, email.es.html)".to_owned(),
                    }),
                }
            }
            if !names.iter().any(|n| n.starts_with(&format!("{set}/default"))) && !names.contains(GLOBAL_DEFAULT) {
                errors.push(TemplateError {
                    file: folder.join("default.txt"),
                    line: None,
                    message: format!("missing, and there is no {GLOBAL_DEFAULT} to fall back to"),
                });
            }
        }
        if errors.is_empty() { Ok(Renderer { env, names, dir, agency: config.agency.clone() }) } else { Err(errors) }
    }

    /// Every compiled template, by name relative to the templates dir.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn env(&self) -> &Environment<'static> {
        &self.env
    }

    /// Render template `name` for `event` under `rule`, as plain text (no platform).
    fn plain(&self, name: &str, rule: &EventRule, event: &Event) -> Result<String, String> {
        let ctx = minijinja::context! {
            kind => "post",
            platform => Platform::Console.as_str(),
            channel => minijinja::context! { name => "", kind => "", platform => "" },
            ..self.base_context(event, rule)
        };
        self.env.get_template(name).and_then(|t| t.render(ctx)).map(|t| tidy(&t)).map_err(|e| describe(name, &e))
    }

    /// The alt text for an image of `event` without its own: `<set>/alt.txt`, else
    /// `alt.txt` (each first in the event's language). `None` when there is no such
    /// template; an error when it fails or renders empty.
    pub fn alt_text(&self, rule: &EventRule, event: &Event) -> Option<Result<String, String>> {
        let bases = [format!("{}/alt", rule.templates), "alt".to_owned()];
        let name = self.first_of(&bases, Part::Text, event.language.as_deref())?;
        Some(self.plain(&name, rule, event).and_then(|t| {
            let t = t.split_whitespace().collect::<Vec<_>>().join(" ");
            if t.is_empty() { Err(format!("{name}: rendered empty text")) } else { Ok(t) }
        }))
    }

    /// The text of a card: its first line the headline, the rest the facts, from
    /// `<set>/card.txt`, else `card.txt`, else the event's headline, area, instruction
    /// and location.
    pub fn card_text(&self, rule: &EventRule, event: &Event) -> Result<(String, Vec<String>), String> {
        let bases = [format!("{}/card", rule.templates), "card".to_owned()];
        let text = match self.first_of(&bases, Part::Text, event.language.as_deref()) {
            Some(name) => self.plain(&name, rule, event)?,
            None => [
                Some(event.headline.clone()),
                event.area.clone(),
                event.instruction.clone(),
                event.location.as_ref().and_then(|l| l.text.clone()),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("\n"),
        };
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned);
        let title = lines.next().ok_or_else(|| "the card text is empty".to_owned())?;
        Ok((with_status_prefix(event.status, title), lines.collect()))
    }

    /// The template used for `set` on `target` in `language`: channel, platform, event
    /// default, global default, first in the post's language, then without one.
    pub fn template_name(&self, set: &str, target: &Target<'_>, language: Option<&str>) -> Option<String> {
        let bases = [
            format!("{set}/channel-{}", target.name),
            format!("{set}/{}", target.platform.as_str()),
            format!("{set}/default"),
            "default".to_owned(),
        ];
        self.first_of(&bases, Part::Text, language)
    }

    /// The template of an email's subject or HTML for `set` on `target`: the channel's,
    /// the set's, then the templates dir's, first in the post's language.
    fn email_template(&self, set: &str, target: &Target<'_>, part: Part, language: Option<&str>) -> Option<String> {
        let email = Platform::Email.as_str();
        let bases = [format!("{set}/channel-{}", target.name), format!("{set}/{email}"), email.to_owned()];
        self.first_of(&bases, part, language)
    }

    /// The first of `bases` with a `part` template, in `language` (then its primary
    /// language) before any without one.
    fn first_of(&self, bases: &[String], part: Part, language: Option<&str>) -> Option<String> {
        let langs: Vec<String> = match language {
            Some(l) => {
                let primary = l.split('-').next().unwrap_or(l);
                if primary == l { vec![l.to_owned()] } else { vec![l.to_owned(), primary.to_owned()] }
            }
            None => Vec::new(),
        };
        let in_language = langs.iter().flat_map(|l| bases.iter().map(move |b| part.file(b, Some(l))));
        let plain = bases.iter().map(|b| part.file(b, None));
        in_language.chain(plain).find(|n| self.names.contains(n))
    }

    /// The text `channel` posts for `event` in `language`.
    pub fn render(
        &self,
        rule: &EventRule,
        channel: &ChannelConfig,
        event: &Event,
        kind: DeliveryKind,
        language: Option<&str>,
    ) -> Rendered {
        self.render_for(rule, &Target::channel(channel), event, kind, language)
    }

    /// [`render`](Self::render) for any target, configured channel or not.
    pub fn render_for(
        &self,
        rule: &EventRule,
        target: &Target<'_>,
        event: &Event,
        kind: DeliveryKind,
        language: Option<&str>,
    ) -> Rendered {
        self.for_event(rule, event, language).render(target, kind)
    }

    /// `event` in `language`, with the template context built once for every channel.
    pub fn for_event<'a>(&'a self, rule: &'a EventRule, event: &'a Event, language: Option<&str>) -> ForEvent<'a> {
        let event = event.in_language(language);
        let base = self.base_context(&event, rule);
        ForEvent { renderer: self, rule, event, base }
    }

    /// What every template sees: the event's fields at the top level (and again under
    /// `fields`, only the rule's public ones when it lists them), the core event keys, the
    /// hashtags and the agency. The channel, platform and kind are added per delivery.
    fn base_context(&self, event: &Event, rule: &EventRule) -> Value {
        let fields: Map<String, serde_json::Value> = match &rule.public_fields {
            Some(allowed) => {
                event.fields.iter().filter(|(k, _)| allowed.contains(k)).map(|(k, v)| (k.clone(), v.clone())).collect()
            }
            None => event.fields.clone(),
        };
        let mut ctx = fields.clone();
        if let Ok(serde_json::Value::Object(core)) = serde_json::to_value(event) {
            ctx.extend(core);
        }
        ctx.remove("translations");
        for key in [
            "revision",
            "sent",
            "expires",
            "description",
            "instruction",
            "area",
            "location",
            "web",
            "contact",
            "language",
        ] {
            ctx.entry(key).or_insert(serde_json::Value::Null);
        }
        // A location always has its three keys, so `location.text` is never undefined.
        if let Some(serde_json::Value::Object(l)) = ctx.get_mut("location") {
            for key in ["text", "lat", "lon"] {
                l.entry(key).or_insert(serde_json::Value::Null);
            }
        }
        ctx.insert("fields".to_owned(), serde_json::Value::Object(fields));
        // Whether the wording may say AMBER: a CAP AMBER activation, or a native event
        // published on purpose; never CAD data (see `Event::amber`).
        ctx.insert("amber".to_owned(), event.amber().into());
        for key in ["lifecycle", "restricted", "ignored"] {
            ctx.remove(key);
        }
        let mut tags = self.agency.hashtags.clone();
        tags.extend(rule.hashtags.iter().filter(|t| !self.agency.hashtags.contains(t)).cloned());
        // No #AmberAlert on what is not an AMBER activation (a CAD abduction call).
        if !event.amber() {
            tags.retain(|t| !t.to_ascii_lowercase().contains("amber"));
        }
        ctx.insert("hashtags".to_owned(), tags.into());
        ctx.insert("agency".to_owned(), serde_json::to_value(&self.agency).unwrap_or_default());
        Value::from(minijinja::value::Serde(&ctx))
    }
}

impl Renderer {
    /// The text of a retraction (`correction` is `None`) or correction of `event` for
    /// `target`, fitted to its limit. Every value is escaped for the platform, the
    /// operator's text included.
    pub fn correction(&self, event: &Event, target: &Target<'_>, correction: Option<&str>) -> Rendered {
        let platform = target.platform;
        let measure = |s: &str| length::measure(platform, s, target.limit);
        let language = event.language.as_deref();
        let name = [language.map(|l| format!("correction.{l}.txt")), Some(CORRECTION.to_owned())]
            .into_iter()
            .flatten()
            .find(|n| self.names.contains(n))
            .unwrap_or_else(|| CORRECTION.to_owned());
        let ctx = minijinja::context! {
            platform => platform.as_str(),
            channel => minijinja::context! { name => target.name, kind => platform.as_str(), platform => platform.as_str() },
            headline => &event.headline,
            event_type => &event.event_type,
            sent => event.sent.map(|t| t.to_string()),
            correction => correction,
            agency => Value::from(minijinja::value::Serde(&self.agency)),
        };
        let drawn = self.env.get_template(&name).and_then(|t| t.render(ctx)).map_err(|e| describe(&name, &e));
        let (text, mut error) = match drawn.map(|t| tidy(&t)) {
            Ok(t) if !t.is_empty() => (t, None),
            Ok(_) => (String::new(), Some(format!("{name}: rendered empty text"))),
            Err(e) => (String::new(), Some(e)),
        };
        let text = if text.is_empty() {
            let plain = match correction {
                Some(c) => format!("CORRECTION: {c}"),
                None => format!("CORRECTION: Our alert \"{}\" was sent in error. Please disregard it.", event.headline),
            };
            escape::escape(platform, &plain)
        } else {
            text
        };
        let fits = |s: &str| measure(s).fits;
        let shortened = !fits(&text);
        let text = if shortened {
            error.get_or_insert_with(|| format!("too long for {platform}; the text was cut"));
            fit::hard_fit(&text, &fits)
        } else {
            text
        };
        let length = measure(&text);
        Rendered { text, parts: Vec::new(), length, shortened, template: name, subject: None, html: None, error }
    }
}

/// An event ready to render in one language for any number of channels.
#[derive(Debug)]
pub struct ForEvent<'a> {
    renderer: &'a Renderer,
    rule: &'a EventRule,
    event: std::borrow::Cow<'a, Event>,
    base: Value,
}

impl ForEvent<'_> {
    /// The text `target` posts as a delivery of `kind`.
    pub fn render(&self, target: &Target<'_>, kind: DeliveryKind) -> Rendered {
        let event = &self.event;
        let platform = target.platform;
        let measure = |s: &str| length::measure(platform, s, target.limit);
        let fits = |s: &str| measure(s).fits;
        let name = self.renderer.template_name(&self.rule.templates, target, event.language.as_deref());
        let ctx = minijinja::context! {
            kind => kind.as_str(),
            platform => platform.as_str(),
            channel => minijinja::context! { name => target.name, kind => platform.as_str(), platform => platform.as_str() },
            ..self.base.clone()
        };
        let draw = |description: Option<&str>| -> Result<String, String> {
            let name = name.as_deref().ok_or_else(|| "no template for this event type".to_owned())?;
            let ctx = minijinja::context! { description => description, ..ctx.clone() };
            let text =
                self.renderer.env.get_template(name).and_then(|t| t.render(ctx)).map_err(|e| describe(name, &e))?;
            let text = tidy(&text);
            if text.is_empty() {
                return Err(format!("{name}: rendered empty text"));
            }
            Ok(with_status_prefix(event.status, text))
        };

        let (text, mut error) = match draw(event.description.as_deref()) {
            Ok(t) => (t, None),
            Err(e) => (with_status_prefix(event.status, fallback(event, kind, platform)), Some(e)),
        };
        let mut shortened = false;
        let mut parts = Vec::new();
        let text = if fits(&text) {
            text
        } else if target.overflow == Overflow::Thread {
            parts = fit::split_thread(&text, &fits);
            text
        } else {
            shortened = true;
            let shorter =
                if error.is_none() { shorten_description(&draw, event.description.as_deref(), &fits) } else { None };
            shorter.unwrap_or_else(|| {
                // The template's fixed text is too long for this platform (`check` says
                // so): keep the headline and the closing lines, drop details between.
                let base = draw(None).unwrap_or_else(|_| text.clone());
                let over = measure(&base);
                let (cut, what) = match fit::drop_middle(&base, &fits) {
                    Some(t) => (t, "lines between the headline and the closing lines were dropped"),
                    None => (fit::hard_fit(&base, &fits), "the text was cut"),
                };
                error.get_or_insert_with(|| {
                    format!("too long for {platform} ({over}) even without the description; {what}")
                });
                cut
            })
        };
        let longest = parts.iter().max_by_key(|p| measure(p).count).unwrap_or(&text);
        let length = measure(longest);
        let (subject, html) = if platform == Platform::Email {
            // The subject and HTML may use the text itself: `{{ text | paragraphs }}`.
            let ctx = minijinja::context! { text => &text, ..ctx.clone() };
            self.email_parts(target, &ctx, &mut error)
        } else {
            (None, None)
        };
        Rendered { text, parts, length, shortened, template: name.unwrap_or_default(), subject, html, error }
    }

    /// An email's subject and HTML alternative, from their templates where they exist.
    /// One that fails is left out (the subject is then the text's first line, the mail
    /// text only) and the error recorded.
    fn email_parts(
        &self,
        target: &Target<'_>,
        ctx: &Value,
        error: &mut Option<String>,
    ) -> (Option<String>, Option<String>) {
        let status = self.event.status;
        let run = |part: Part| -> Option<Result<String, String>> {
            let name =
                self.renderer.email_template(&self.rule.templates, target, part, self.event.language.as_deref())?;
            let drawn = self.renderer.env.get_template(&name).and_then(|t| t.render(ctx.clone()));
            Some(match drawn {
                Ok(t) if t.trim().is_empty() => Err(format!("{name}: rendered empty text")),
                Ok(t) => Ok(t),
                Err(e) => Err(describe(&name, &e)),
            })
        };
        let mut keep = |r: Option<Result<String, String>>| match r? {
            Ok(t) => Some(t),
            Err(e) => {
                error.get_or_insert(e);
                None
            }
        };
        let subject = keep(run(Part::Subject))
            .map(|s| with_status_prefix(status, s.split_whitespace().collect::<Vec<_>>().join(" ")));
        let html = keep(run(Part::Html)).map(|h| match status {
            Status::Actual => h,
            // Said already (the HTML shows the text, which says it).
            other if h.contains(&format!("[{}]", other.as_str().to_uppercase())) => h,
            other => {
                let banner = format!("<p><strong>[{}]</strong></p>\n", other.as_str().to_uppercase());
                // After the opening <body ...>, else first.
                let at = h.find("<body").and_then(|b| h[b..].find('>').map(|e| b + e + 1)).unwrap_or(0);
                format!("{}{banner}{}", &h[..at], &h[at..])
            }
        });
        (subject, html)
    }
}

/// What a template file gives: a post's text, or an email's subject or HTML.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Text,
    Subject,
    Html,
}

impl Part {
    /// The file of this part for `base` (a path without its ending) in `language`.
    fn file(self, base: &str, language: Option<&str>) -> String {
        let lang = language.map(|l| format!(".{l}")).unwrap_or_default();
        match self {
            Part::Text => format!("{base}{lang}.txt"),
            Part::Subject => format!("{base}.subject{lang}.txt"),
            Part::Html => format!("{base}{lang}.html"),
        }
    }
}

/// The template file's base name, part and language: `x.es.txt` → (`x`, text, `es`),
/// `email.subject.txt` → (`email`, subject, none), `email.es.html` → (`email`, HTML, `es`).
fn template_stem(file: &str) -> Option<(&str, Part, Option<&str>)> {
    let (stem, html) = match file.strip_suffix(".html") {
        Some(s) => (s, true),
        None => (file.strip_suffix(".txt")?, false),
    };
    let mut words = stem.split('.');
    let base = words.next()?;
    let rest: Vec<&str> = words.collect();
    let lang = |l: &str| crate::event::valid_language(l);
    match (rest.as_slice(), html) {
        ([], true) => Some((base, Part::Html, None)),
        ([], false) => Some((base, Part::Text, None)),
        (["subject"], false) => Some((base, Part::Subject, None)),
        (["subject", l], false) if lang(l) => Some((base, Part::Subject, Some(*l))),
        ([l], true) if lang(l) && *l != "subject" => Some((base, Part::Html, Some(*l))),
        ([l], false) if lang(l) => Some((base, Part::Text, Some(*l))),
        _ => None,
    }
}

fn valid_base(base: &str, part: Part, config: &Config) -> bool {
    let channel = base.strip_prefix("channel-").is_some_and(|c| config.channels.contains_key(c));
    match part {
        Part::Text => matches!(base, "default" | "alt" | "card") || Platform::parse(base).is_some() || channel,
        Part::Subject | Part::Html => base == Platform::Email.as_str() || channel,
    }
}

fn read_dir_sorted(dir: &Path, errors: &mut Vec<TemplateError>) -> Vec<PathBuf> {
    match std::fs::read_dir(dir) {
        Ok(rd) => {
            let mut v: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
            v.sort();
            v
        }
        Err(e) => {
            errors.push(TemplateError { file: dir.to_path_buf(), line: None, message: format!("cannot read: {e}") });
            Vec::new()
        }
    }
}

fn add(
    env: &mut Environment<'static>,
    dir: &Path,
    name: &str,
    names: &mut BTreeSet<String>,
    errors: &mut Vec<TemplateError>,
) {
    let path = dir.join(name);
    let source = match std::fs::read_to_string(&path) {
        Ok(s) => s,
        Err(e) => {
            errors.push(TemplateError { file: path, line: None, message: e.to_string() });
            return;
        }
    };
    match env.add_template_owned(name.to_owned(), source) {
        Ok(()) => {
            names.insert(name.to_owned());
        }
        Err(e) => errors.push(TemplateError {
            file: path,
            line: e.line(),
            message: e.detail().unwrap_or("syntax error").to_owned(),
        }),
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

/// Trim lines' trailing spaces, collapse runs of blank lines, trim the ends: templates
/// with optional sections leave gaps behind.
fn tidy(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank = 0;
    for line in text.trim().lines().map(str::trim_end) {
        if line.is_empty() {
            blank += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank > 0 { "\n\n" } else { "\n" });
        }
        blank = 0;
        out.push_str(line);
    }
    out
}

/// A description cut shorter than this says too little to keep; it is dropped instead.
const MIN_DESCRIPTION: usize = 40;

/// The longest description (cut at a word) with which the text fits, or the text without
/// a description; `None` if even that does not fit.
fn shorten_description(
    draw: &dyn Fn(Option<&str>) -> Result<String, String>,
    description: Option<&str>,
    fits: &dyn Fn(&str) -> bool,
) -> Option<String> {
    let description = description?;
    let without = draw(None).ok().filter(|t| fits(t))?;
    let total = length::graphemes(description);
    let mut best = without;
    let mut lo = MIN_DESCRIPTION.min(total).saturating_sub(1);
    let mut hi = total;
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        let cut = fit::truncate_at_word(description, mid);
        match draw(if cut.is_empty() { None } else { Some(&cut) }) {
            Ok(t) if fits(&t) => {
                best = t;
                lo = mid;
            }
            _ => hi = mid - 1,
        }
    }
    Some(best)
}

/// A plain text that keeps what matters when a template cannot be used.
pub fn fallback(event: &Event, kind: DeliveryKind, platform: Platform) -> String {
    let head = match kind {
        DeliveryKind::Post => event.headline.clone(),
        DeliveryKind::Update => format!("UPDATE: {}", event.headline),
        DeliveryKind::Cancel => format!("CANCELLED: {}", event.headline),
        DeliveryKind::Retract => format!("CORRECTION: {}", event.headline),
    };
    [Some(&head), event.instruction.as_ref(), event.web.as_ref(), event.contact.as_ref()]
        .into_iter()
        .flatten()
        .map(|v| escape::escape(platform, v))
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
