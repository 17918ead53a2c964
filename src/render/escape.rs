//! Escaping of event values for each platform. Pure.
//!
//! A template's own text is trusted: the agency wrote it. Every value interpolated into
//! it (`{{ headline }}`, `{{ child_name }}`) comes from the event, which may carry hostile
//! or accidental markup, so the renderer passes each one through [`escape`] for the
//! platform being rendered, the way HTML auto-escaping protects a web page:
//!
//! - `@name` (or `＠name`, `﹫name`, which X also reads as mentions) at the start of a
//!   word gets a zero-width space after the `@`, so it cannot notify or tag anyone on a
//!   platform with mentions (`@everyone` on Discord included); an e-mail address is left
//!   alone.
//! - Discord: Markdown characters are backslash-escaped (no bold, masked links, spoilers,
//!   quotes or headings), and `<` so `<@id>`-style mentions stay text.
//! - Slack: `&`, `<` and `>` become entities, so `<!channel>` and `<url|label>` stay text
//!   (the channel also sends with `mrkdwn` off).
//! - Teams: Markdown characters are backslash-escaped and `<`/`>`/`&` become entities.
//! - Everything else is plain text and needs nothing more.

use super::length::url_spans;
use crate::platform::{Markup, Platform};

const ZWSP: char = '\u{200B}';

/// `value` made inert for `platform`.
pub fn escape(platform: Platform, value: &str) -> String {
    let row = platform.profile();
    let value = if row.mentions { neutralize_mentions(value) } else { value.to_owned() };
    match row.markup {
        Markup::Discord => line_starts(&backslash(&value, "\\*_~`|[]<")),
        Markup::Slack => entities(&value),
        Markup::Teams => entities(&line_starts(&backslash(&value, "\\*_~`[]"))),
        Markup::Plain => value,
    }
}

/// Insert a zero-width space after an `@` that starts a word and is followed by a name
/// character: `@everyone` → `@\u{200B}everyone`, but `tips@sheriff.example` is untouched.
fn neutralize_mentions(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    let mut prev: Option<char> = None;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        // X also takes the full-width and small commercial at as the start of a mention.
        if matches!(c, '@' | '\u{FF20}' | '\u{FE6B}')
            && prev.is_none_or(|p| !p.is_alphanumeric() && p != '_' && p != '.')
            && chars.peek().is_some_and(|n| n.is_alphanumeric() || *n == '_')
        {
            out.push(ZWSP);
        }
        prev = Some(c);
    }
    out
}

/// Backslash-escape `special` characters outside URLs (escaping inside one breaks it; a
/// bare URL cannot carry formatting).
fn backslash(s: &str, special: &str) -> String {
    let urls = url_spans(s);
    let mut out = String::with_capacity(s.len() + 8);
    for (i, c) in s.char_indices() {
        if special.contains(c) && !urls.iter().any(|&(a, b)| a <= i && i < b) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Escape the Markdown that only counts at the start of a line: headings (`# `, `-# `),
/// list items (`- `, `* `) and quotes (`> `). Elsewhere `#`, `-` and `>` stay as they are
/// (a hashtag, a phone number).
fn line_starts(s: &str) -> String {
    s.split('\n')
        .map(|line| {
            let trimmed = line.trim_start();
            let indent = &line[..line.len() - trimmed.len()];
            let marker = trimmed.trim_start_matches(['#', '-', '>']);
            let is_block = marker.len() < trimmed.len() && (marker.starts_with(' ') || marker.is_empty());
            if is_block { format!("{indent}\\{trimmed}") } else { line.to_owned() }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn entities(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &str =
        "@everyone <b>bold</b> **x** [official](http://evil.example) <@123> <!channel> `code` ||spoiler||";

    #[test]
    fn mentions_cannot_ping_on_any_platform_with_mentions() {
        for &p in Platform::ALL.iter().filter(|p| p.profile().mentions) {
            let out = escape(p, "@everyone and @here, @sheriff_pio");
            assert!(
                !out.contains("@everyone") && !out.contains("@here") && !out.contains("@sheriff_pio"),
                "{p}: {out}"
            );
        }
        assert_eq!(escape(Platform::X, "tips@sheriff.example"), "tips@sheriff.example", "e-mail stays usable");
        for at in ['\u{FF20}', '\u{FE6B}'] {
            let out = escape(Platform::X, &format!("{at}everyone"));
            assert_eq!(out, format!("{at}\u{200B}everyone"), "a full-width or small at is a mention on X too");
        }
        assert_eq!(escape(Platform::Sms, "@everyone"), "@everyone", "no mentions on SMS");
    }

    #[test]
    fn discord_markdown_and_mentions_stay_text() {
        let out = escape(Platform::Discord, HOSTILE);
        assert!(out.contains("\\*\\*x\\*\\*"), "{out}");
        assert!(out.contains("\\[official\\](http"), "no masked link: {out}");
        assert!(out.contains("\\<@\u{200B}123>"), "{out}");
        assert!(out.contains("\\|\\|spoiler\\|\\|"), "{out}");
        assert!(out.contains("@\u{200B}everyone"), "{out}");
    }

    #[test]
    fn slack_control_sequences_stay_text() {
        let out = escape(Platform::Slack, HOSTILE);
        assert!(
            out.contains("&lt;!channel&gt;") && out.contains("&lt;@\u{200B}123&gt;") && out.contains("&lt;b&gt;"),
            "{out}"
        );
        assert!(!out.contains('<'), "{out}");
    }

    #[test]
    fn teams_markdown_and_html_stay_text() {
        let out = escape(Platform::Teams, HOSTILE);
        assert!(out.contains("&lt;b&gt;") && out.contains("\\*\\*x\\*\\*") && out.contains("\\[official\\]"), "{out}");
    }

    #[test]
    fn block_markdown_is_escaped_only_at_a_line_start() {
        assert_eq!(
            escape(Platform::Discord, "# Big\n- item\n> quote\n-# small"),
            "\\# Big\n\\- item\n\\> quote\n\\-# small"
        );
        assert_eq!(
            escape(Platform::Discord, "call 361-555-0100 at 2:15 #RuizCounty"),
            "call 361-555-0100 at 2:15 #RuizCounty"
        );
    }

    #[test]
    fn urls_survive_escaping() {
        let url = "https://sheriff.example/amber_alerts/case-1#map(2)";
        assert!(escape(Platform::Discord, &format!("see {url} now")).contains(url));
        assert!(escape(Platform::Teams, url).contains(url));
    }

    #[test]
    fn plain_platforms_keep_the_text() {
        assert_eq!(escape(Platform::Webhook, HOSTILE), HOSTILE);
        assert_eq!(escape(Platform::Telegram, "<b>x</b> *y*"), "<b>x</b> *y*", "sent without parse_mode");
    }
}
