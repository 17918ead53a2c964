//! Making a text fit a platform's limit without cutting it blindly. Pure.
//!
//! - [`truncate_at_word`] shortens a value at a word boundary with an ellipsis: it never
//!   splits a grapheme, and a URL (one word) is kept whole or dropped whole.
//! - [`hard_fit`] is the last resort for a text that cannot be fitted by shortening its
//!   description: the longest prefix that fits, cut the same way.
//! - [`split_thread`] splits a text into numbered parts that each fit, at paragraph, then
//!   line, then word boundaries.

use unicode_segmentation::UnicodeSegmentation as _;

use super::length::url_spans;

pub const ELLIPSIS: &str = "…";

/// `s` cut to at most `max` graphemes (plus the ellipsis) at a word boundary.
pub fn truncate_at_word(s: &str, max: usize) -> String {
    if s.graphemes(true).count() <= max {
        return s.to_owned();
    }
    let cut = word_cut(s, max);
    let kept = s[..cut].trim_end_matches(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | ':' | '-'));
    if kept.is_empty() { String::new() } else { format!("{kept}{ELLIPSIS}") }
}

/// A byte index at which to cut `s` so that at most `max` graphemes stay: the last
/// whitespace at or before the grapheme limit, moved back out of any URL it would split.
fn word_cut(s: &str, max: usize) -> usize {
    let limit = s.grapheme_indices(true).nth(max).map_or(s.len(), |(i, _)| i);
    let mut cut = if s[limit..].starts_with(char::is_whitespace) {
        limit
    } else {
        s[..limit].rfind(char::is_whitespace).unwrap_or(0)
    };
    if cut == 0 {
        // One word longer than the limit: cut inside it, at a grapheme boundary.
        cut = limit;
    }
    for (start, end) in url_spans(s) {
        if start < cut && cut < end {
            cut = start;
        }
    }
    cut
}

/// The longest prefix of `text` (cut at a word boundary, with an ellipsis) that `fits`.
pub fn hard_fit(text: &str, fits: &dyn Fn(&str) -> bool) -> String {
    if fits(text) {
        return text.to_owned();
    }
    let total = text.graphemes(true).count();
    let (mut lo, mut hi) = (0usize, total);
    let mut best = String::new();
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        let candidate = truncate_at_word(text, mid);
        if fits(&candidate) {
            best = candidate;
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    best
}

/// When even the shortest description does not fit: keep the first line (the headline)
/// and the last ones (call to action, link, contact), dropping the lines between, from
/// the top, until the text fits. `None` if first and last lines alone do not fit.
pub fn drop_middle(text: &str, fits: &dyn Fn(&str) -> bool) -> Option<String> {
    let mut lines: Vec<&str> = text.lines().collect();
    while lines.len() > 2 {
        lines.remove(1);
        let candidate = lines.join("\n");
        // Dropping a line can leave two blank lines together; tidy them.
        let candidate = candidate.replace("\n\n\n", "\n\n");
        if fits(&candidate) {
            return Some(candidate);
        }
    }
    None
}

/// Split `text` into parts that each fit once numbered ` (i/n)`; one part is returned
/// unnumbered.
pub fn split_thread(text: &str, fits: &dyn Fn(&str) -> bool) -> Vec<String> {
    if fits(text) {
        return vec![text.to_owned()];
    }
    // Reserve room for the widest numbering we will plausibly need.
    let room = |s: &str| fits(&format!("{s} (99/99)"));
    let mut pieces: Vec<String> = Vec::new();
    for para in text.split("\n\n").map(str::trim).filter(|p| !p.is_empty()) {
        if room(para) {
            pieces.push(para.to_owned());
            continue;
        }
        for line in para.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if room(line) {
                pieces.push(line.to_owned());
            } else {
                pieces.extend(split_words(line, &room));
            }
        }
    }
    // Pack pieces greedily into parts.
    let mut parts: Vec<String> = Vec::new();
    for piece in pieces {
        match parts.last_mut() {
            Some(last) if room(&format!("{last}\n\n{piece}")) => {
                last.push_str("\n\n");
                last.push_str(&piece);
            }
            _ => parts.push(piece),
        }
    }
    let n = parts.len();
    if n <= 1 {
        return parts;
    }
    parts.into_iter().enumerate().map(|(i, p)| format!("{p} ({}/{n})", i + 1)).collect()
}

/// Split one over-long line into word runs that fit.
fn split_words(line: &str, room: &dyn Fn(&str) -> bool) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for word in line.split_whitespace() {
        let candidate = if current.is_empty() { word.to_owned() } else { format!("{current} {word}") };
        if room(&candidate) {
            current = candidate;
        } else {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
            // A single word too long for a part: cut it, at grapheme boundaries.
            current = if room(word) { word.to_owned() } else { hard_fit(word, room) };
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chars_at_most(n: usize) -> impl Fn(&str) -> bool {
        move |s: &str| s.chars().count() <= n
    }

    #[test]
    fn truncation_is_at_a_word_boundary() {
        assert_eq!(truncate_at_word("last seen wearing a yellow raincoat", 20), "last seen wearing a…");
        assert_eq!(truncate_at_word("short", 20), "short");
        assert_eq!(truncate_at_word("a, b, c, d", 5), "a, b…");
    }

    #[test]
    fn truncation_never_splits_a_grapheme() {
        let flags = "🇺🇸🇲🇽🇨🇦🇬🇧";
        let t = truncate_at_word(flags, 2);
        assert_eq!(t, "🇺🇸🇲🇽…");
        let family = "👨‍👩‍👧 👨‍👩‍👧 👨‍👩‍👧";
        assert_eq!(truncate_at_word(family, 4), "👨‍👩‍👧 👨‍👩‍👧…");
        assert_eq!(truncate_at_word("e\u{301}e\u{301}e\u{301}", 2), "e\u{301}e\u{301}…");
    }

    #[test]
    fn truncation_never_splits_a_url() {
        let s = "details https://sheriff.example/amber/case/2026/1121 now";
        for max in 8..50 {
            let t = truncate_at_word(s, max);
            assert!(
                !t.contains("https://") || t.contains("https://sheriff.example/amber/case/2026/1121"),
                "{max}: {t}"
            );
        }
        assert_eq!(
            truncate_at_word("https://sheriff.example/amber/case/2026/1121", 10),
            "",
            "a URL is kept whole or dropped"
        );
    }

    #[test]
    fn hard_fit_keeps_the_longest_prefix() {
        let text = "AMBER ALERT: Sofia Ramirez, 6. Call 911.";
        let out = hard_fit(text, &chars_at_most(25));
        assert_eq!(out, "AMBER ALERT: Sofia…");
        assert!(out.chars().count() <= 25);
    }

    #[test]
    fn the_end_is_kept_and_the_middle_dropped() {
        let text = "AMBER ALERT: Sofia, 6\nDetails line one\nDetails line two\nCall 911 if seen.\nhttps://s.example/a";
        let out = drop_middle(text, &chars_at_most(80)).expect("fits");
        assert_eq!(out, "AMBER ALERT: Sofia, 6\nDetails line two\nCall 911 if seen.\nhttps://s.example/a");
        assert_eq!(drop_middle(text, &chars_at_most(10)), None);
    }

    #[test]
    fn threads_split_at_paragraphs_and_are_numbered() {
        let text = "First paragraph is here.\n\nSecond paragraph here.\n\nThird one.";
        let parts = split_thread(text, &chars_at_most(40));
        assert_eq!(parts, ["First paragraph is here. (1/3)", "Second paragraph here. (2/3)", "Third one. (3/3)"]);
        let long = "word ".repeat(60);
        let parts = split_thread(long.trim(), &chars_at_most(50));
        assert!(parts.iter().all(|p| p.chars().count() <= 50), "{parts:?}");
        assert_eq!(parts.iter().map(|p| p.matches("word").count()).sum::<usize>(), 60, "no word lost");
        assert_eq!(split_thread("fits", &chars_at_most(50)), ["fits"]);
    }
}
