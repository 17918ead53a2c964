//! Filters templates use: dates and times in the agency's time zone, a map link for a
//! location, truncation at a word, hashtags.
//!
//! ```text
//! {{ sent | datetime }}            Nov 21, 2026 3:00 AM CST
//! {{ sent | time }}                3:00 AM
//! {{ sent | date }}                Saturday, November 21
//! {{ sent | datetime("%H:%M") }}   03:00
//! {{ location | map_url }}         https://www.openstreetmap.org/?mlat=27.75&mlon=-97.39#map=16/27.75/-97.39
//! {{ description | truncate_words(120) }}
//! {{ hashtags | hashtags }}         #AmberAlert #RuizCounty
//! {{ text | paragraphs }}          <p>line<br>line</p><p>... (email HTML: escaped, links kept)
//! ```

use jiff::Timestamp;
use jiff::tz::TimeZone;
use minijinja::value::Value;
use minijinja::{Environment, Error, ErrorKind};

use super::fit::truncate_at_word;
use crate::config::MapProvider;

pub const DEFAULT_DATETIME: &str = "%b %-d, %Y %-I:%M %p %Z";

/// Register the filters on `env`, with times shown in `tz`.
pub fn register(env: &mut Environment<'static>, tz: TimeZone, maps: MapProvider) {
    let zone = tz.clone();
    env.add_filter("datetime", move |value: Value, fmt: Option<String>| {
        format_time(&value, &zone, fmt.as_deref().unwrap_or(DEFAULT_DATETIME))
    });
    let zone = tz.clone();
    env.add_filter("time", move |value: Value| format_time(&value, &zone, "%-I:%M %p"));
    env.add_filter("date", move |value: Value| format_time(&value, &tz, "%A, %B %-d"));
    env.add_filter("map_url", move |value: Value| map_url(&value, maps));
    env.add_filter("truncate_words", |value: String, max: usize| truncate_at_word(&value, max));
    env.add_filter("hashtags", hashtags);
    env.add_filter("paragraphs", |value: String| Value::from_safe_string(paragraphs(&value)));
}

/// Plain text as HTML: escaped, a paragraph per blank-line-separated block, a `<br>` per
/// line break, and each http(s) URL a link to itself.
pub fn paragraphs(text: &str) -> String {
    use minijinja::HtmlEscape;
    let mut finder = linkify::LinkFinder::new();
    finder.kinds(&[linkify::LinkKind::Url]);
    let line = |l: &str| -> String {
        finder
            .spans(l)
            .map(|span| match span.kind() {
                Some(_) if span.as_str().starts_with("https://") || span.as_str().starts_with("http://") => {
                    let url = HtmlEscape(span.as_str());
                    format!("<a href=\"{url}\">{url}</a>")
                }
                _ => HtmlEscape(span.as_str()).to_string(),
            })
            .collect()
    };
    text.split("\n\n")
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .map(|block| format!("<p>{}</p>", block.lines().map(line).collect::<Vec<_>>().join("<br>\n")))
        .collect::<Vec<_>>()
        .join("\n")
}

fn format_time(value: &Value, tz: &TimeZone, fmt: &str) -> Result<String, Error> {
    let text = value.as_str().ok_or_else(|| Error::new(ErrorKind::InvalidOperation, "expected a timestamp"))?;
    let ts: Timestamp = text
        .parse()
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("not a timestamp ({text:?}): {e}")))?;
    // jiff's strftime writes errors into the output as text; format into a buffer instead.
    let mut out = String::new();
    jiff::fmt::strtime::format(fmt, &ts.to_zoned(tz.clone()))
        .map(|s| out.push_str(&s))
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("bad time format {fmt:?}: {e}")))?;
    Ok(out)
}

/// A map link for a location (`{text, lat, lon}`) or a place name. Marked safe: it is
/// built here, not taken from the event, and escaping would break it.
fn map_url(value: &Value, maps: MapProvider) -> Result<Value, Error> {
    let coord = |k: &str| value.get_attr(k).ok().and_then(|v| f64::try_from(v).ok());
    let url = match (coord("lat"), coord("lon")) {
        (Some(lat), Some(lon)) => match maps {
            MapProvider::OpenStreetMap => {
                format!("https://www.openstreetmap.org/?mlat={lat}&mlon={lon}#map=16/{lat}/{lon}")
            }
            MapProvider::Google => format!("https://www.google.com/maps/search/?api=1&query={lat},{lon}"),
        },
        _ => {
            let text = value
                .as_str()
                .map(str::to_owned)
                .or_else(|| value.get_attr("text").ok().and_then(|v| v.as_str().map(str::to_owned)))
                .filter(|s| !s.trim().is_empty())
                .ok_or_else(|| Error::new(ErrorKind::InvalidOperation, "map_url needs lat/lon or a place name"))?;
            let q: String = url::form_urlencoded::byte_serialize(text.as_bytes()).collect();
            match maps {
                MapProvider::OpenStreetMap => format!("https://www.openstreetmap.org/search?query={q}"),
                MapProvider::Google => format!("https://www.google.com/maps/search/?api=1&query={q}"),
            }
        }
    };
    Ok(Value::from_safe_string(url))
}

/// `["AmberAlert", "#Ruiz County"]` → `#AmberAlert #RuizCounty`. Marked safe: the tags
/// come from the config, and each is reduced to letters, digits and `_`.
fn hashtags(value: Value) -> Result<Value, Error> {
    let mut out = Vec::new();
    for v in value.try_iter()? {
        let tag: String = v.as_str().unwrap_or_default().chars().filter(|c| c.is_alphanumeric() || *c == '_').collect();
        if !tag.is_empty() {
            out.push(format!("#{tag}"));
        }
    }
    Ok(Value::from_safe_string(out.join(" ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Environment<'static> {
        let mut env = Environment::new();
        register(&mut env, TimeZone::get("America/Chicago").expect("tz"), MapProvider::OpenStreetMap);
        env
    }

    fn render(template: &str, ctx: serde_json::Value) -> Result<String, Error> {
        env().render_str(template, Value::from(minijinja::value::Serde(&ctx)))
    }

    #[test]
    fn times_render_in_the_agency_time_zone() {
        let ctx = serde_json::json!({ "sent": "2026-11-21T09:00:00Z" });
        assert_eq!(render("{{ sent | datetime }}", ctx.clone()).expect("ok"), "Nov 21, 2026 3:00 AM CST");
        assert_eq!(render("{{ sent | time }}", ctx.clone()).expect("ok"), "3:00 AM");
        assert_eq!(render("{{ sent | date }}", ctx.clone()).expect("ok"), "Saturday, November 21");
        assert_eq!(render("{{ sent | datetime('%H:%M') }}", ctx.clone()).expect("ok"), "03:00");
        assert!(render("{{ 'soon' | datetime }}", ctx).is_err());
    }

    #[test]
    fn map_links_from_coordinates_or_a_place() {
        let ctx = serde_json::json!({ "loc": { "text": "Lakeview Park", "lat": 27.75, "lon": -97.39 }, "place": "4100 Ocean Dr, Corpus Christi" });
        assert_eq!(
            render("{{ loc | map_url }}", ctx.clone()).expect("ok"),
            "https://www.openstreetmap.org/?mlat=27.75&mlon=-97.39#map=16/27.75/-97.39"
        );
        assert_eq!(
            render("{{ place | map_url }}", ctx).expect("ok"),
            "https://www.openstreetmap.org/search?query=4100+Ocean+Dr%2C+Corpus+Christi"
        );
    }

    #[test]
    fn words_and_tags() {
        let ctx =
            serde_json::json!({ "d": "last seen wearing a yellow raincoat", "tags": ["AmberAlert", "#Ruiz County"] });
        assert_eq!(render("{{ d | truncate_words(20) }}", ctx.clone()).expect("ok"), "last seen wearing a…");
        assert_eq!(render("{{ tags | hashtags }}", ctx).expect("ok"), "#AmberAlert #RuizCounty");
    }
}
