//! How each platform counts the length of a post. Pure.
//!
//! Every platform measures text its own way, and a post that is one unit over is refused,
//! so each rule follows the platform's own definition, with a real library where one
//! exists: X's weighted length from twitter-text (URLs 23, CJK and emoji 2), grapheme
//! clusters (unicode-segmentation) for Mastodon and Bluesky, UTF-16 code units for
//! Telegram, GSM-7 or UCS-2 segments for SMS.

use std::fmt;

use serde::Serialize;
use unicode_segmentation::UnicodeSegmentation as _;

use crate::platform::{Count, Platform};

/// How long a text is on one platform, and whether it fits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Length {
    pub count: usize,
    pub limit: Option<usize>,
    pub unit: &'static str,
    /// A second constraint or detail: Bluesky bytes, SMS segments and encoding.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub fits: bool,
}

impl fmt::Display for Length {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.limit {
            Some(l) => write!(f, "{}/{l} {}", self.count, self.unit)?,
            None => write!(f, "{} characters (no limit)", self.count)?,
        }
        if let Some(d) = &self.detail {
            write!(f, ", {d}")?;
        }
        if !self.fits {
            f.write_str(", OVER THE LIMIT")?;
        }
        Ok(())
    }
}

/// Bluesky's second limit, in UTF-8 bytes.
pub const BLUESKY_MAX_BYTES: usize = 3000;
/// What Mastodon counts any URL as.
const MASTODON_URL_LENGTH: usize = 23;

/// Measure `text` as `platform` counts it, against `limit` (the platform's default unless
/// the channel sets its own, e.g. a Mastodon instance with a higher limit).
pub fn measure(platform: Platform, text: &str, limit: Option<usize>) -> Length {
    let how = platform.profile().count;
    let unit = how.unit();
    let mut detail = None;
    let mut extra_fits = true;
    let count = match how {
        Count::XWeighted => x_weighted_length(text),
        Count::GraphemesUrls23 => mastodon_length(text),
        Count::GraphemesAndBytes => {
            let bytes = text.len();
            extra_fits = bytes <= BLUESKY_MAX_BYTES;
            detail = Some(format!("{bytes}/{BLUESKY_MAX_BYTES} bytes"));
            graphemes(text)
        }
        Count::CharsEmojiBytes => threads_length(text),
        Count::Utf16 => text.encode_utf16().count(),
        Count::Bytes => text.len(),
        Count::SmsChars => {
            let s = sms_segments(text);
            detail =
                Some(format!("{} SMS segment{} ({})", s.segments, if s.segments == 1 { "" } else { "s" }, s.encoding));
            text.chars().count()
        }
        Count::Chars => text.chars().count(),
    };
    let fits = extra_fits && limit.is_none_or(|l| count <= l);
    Length { count, limit, unit, detail, fits }
}

/// X's weighted length (twitter-text, config v3: NFC, ranges weighing 1 or 2, each URL 23,
/// an emoji sequence 2).
///
/// twitter-text 0.3.1 panics on some inputs (it slices a string inside a multi-byte character
/// when it looks for "RT" before an `@`, e.g. "日@x"); then the text is counted by
/// [`x_conservative_length`], which never counts less than X does.
pub fn x_weighted_length(text: &str) -> usize {
    let parsed = std::panic::catch_unwind(|| twitter_text::parse(text, twitter_text_config::config_v3(), true));
    match parsed {
        Ok(parsed) => usize::try_from(parsed.weighted_length).unwrap_or(usize::MAX),
        Err(_) => {
            tracing::debug!("twitter-text failed on a text; counting it conservatively");
            x_conservative_length(text)
        }
    }
}

/// An upper bound of X's weighted length: after NFC, each character in config v3's light
/// ranges weighs 1 and every other character 2 (so an emoji sequence counts each of its
/// parts), and anything that looks like a link counts in full but at least 23.
pub fn x_conservative_length(text: &str) -> usize {
    use unicode_normalization::UnicodeNormalization;
    let text: String = text.nfc().collect();
    let text = text.as_str();
    fn weight(s: &str) -> usize {
        s.chars()
            .map(|c| match u32::from(c) {
                // © and ® are emoji to twitter-text, which weighs them 2.
                0xA9 | 0xAE => 2,
                0..=4351 | 8192..=8205 | 8208..=8223 | 8242..=8247 => 1,
                _ => 2,
            })
            .sum()
    }
    let mut finder = linkify::LinkFinder::new();
    finder.kinds(&[linkify::LinkKind::Url]).url_must_have_scheme(false);
    let mut count = 0;
    let mut at = 0;
    for link in finder.links(text) {
        count += weight(&text[at..link.start()]) + weight(link.as_str()).max(23);
        at = link.end();
    }
    count + weight(&text[at..])
}

pub fn graphemes(text: &str) -> usize {
    text.graphemes(true).count()
}

/// Mastodon: grapheme clusters, with each http(s) URL counted as 23.
pub fn mastodon_length(text: &str) -> usize {
    let mut count = 0;
    let mut at = 0;
    for (start, end) in url_spans(text) {
        count += graphemes(&text[at..start]) + MASTODON_URL_LENGTH;
        at = end;
    }
    count + graphemes(&text[at..])
}

/// Threads: characters, except that an emoji counts as its UTF-8 bytes.
pub fn threads_length(text: &str) -> usize {
    text.graphemes(true).map(|g| if g.chars().any(is_emoji) { g.len() } else { g.chars().count() }).sum()
}

fn is_emoji(c: char) -> bool {
    matches!(u32::from(c),
        0x1F000..=0x1FAFF | 0x2600..=0x27BF | 0x2300..=0x23FF | 0x2B00..=0x2BFF | 0xE0020..=0xE007F)
}

/// Byte ranges of the http(s) URLs in `text`.
pub fn url_spans(text: &str) -> Vec<(usize, usize)> {
    let mut finder = linkify::LinkFinder::new();
    finder.kinds(&[linkify::LinkKind::Url]).url_must_have_scheme(true);
    finder
        .links(text)
        .filter(|l| {
            let s = l.as_str();
            s.starts_with("http://") || s.starts_with("https://")
        })
        .map(|l| (l.start(), l.end()))
        .collect()
}

/// How an SMS body is split and billed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SmsSegments {
    pub encoding: &'static str,
    /// Length in the encoding's units: GSM-7 septets, or UTF-16 code units for UCS-2.
    pub units: usize,
    pub segments: usize,
}

/// GSM 03.38 basic character set (one septet each).
const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
/// GSM 03.38 extension table (escape + one septet: two each).
const GSM7_EXTENDED: &str = "^{}\\[~]|€\u{000C}";

/// GSM-7 if every character is in the GSM 03.38 tables (160 septets, or 153 per part when
/// split), else UCS-2 (70 UTF-16 units, or 67 per part).
pub fn sms_segments(text: &str) -> SmsSegments {
    let mut septets = 0;
    let gsm = text.chars().all(|c| {
        if GSM7_BASIC.contains(c) {
            septets += 1;
            true
        } else if GSM7_EXTENDED.contains(c) {
            septets += 2;
            true
        } else {
            false
        }
    });
    let (encoding, units, single, multi) =
        if gsm { ("GSM-7", septets, 160, 153) } else { ("UCS-2", text.encode_utf16().count(), 70, 67) };
    let segments = if units <= single { 1 } else { units.div_ceil(multi) };
    SmsSegments { encoding, units, segments }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x_counts_urls_as_23_and_cjk_and_emoji_as_2() {
        assert_eq!(x_weighted_length("hello"), 5);
        assert_eq!(
            x_weighted_length("see https://www.ruizcountysheriff.gov/amber/RCSO-2026-1121-0001-very-long-path"),
            4 + 23
        );
        // X links only real top-level domains; an example domain counts in full.
        assert_eq!(x_weighted_length("https://sheriff.example/a"), 25);
        assert_eq!(x_weighted_length("日本語"), 6);
        assert_eq!(x_weighted_length("😀"), 2);
        assert_eq!(x_weighted_length("👨‍👩‍👧"), 2, "a ZWJ family is one emoji");
        assert_eq!(x_weighted_length("é"), 1);
        assert_eq!(x_weighted_length("e\u{301}"), 1, "NFC: e + combining acute is é");
        assert!(measure(Platform::X, &"a".repeat(280), None).count == 280);
        assert!(!measure(Platform::X, &"a".repeat(281), Some(280)).fits);
        assert!(!measure(Platform::X, &"日".repeat(141), Some(280)).fits);
    }

    #[test]
    fn x_length_survives_twitter_text_panics() {
        // twitter-text 0.3.1 slices "日" in half looking for "RT" before the "@".
        for text in ["日@x", "日:@x", "Suspect fled 北@station", "a\u{301}\u{301}@b"] {
            assert!(x_weighted_length(text) >= 4, "{text:?}");
        }
        assert_eq!(x_weighted_length("日@x"), x_conservative_length("日@x"));
        assert_eq!(x_conservative_length("日@x"), 4);
    }

    #[test]
    fn x_conservative_length_never_undercounts() {
        for text in [
            "hello",
            "日本語 😀 👨‍👩‍👧",
            "e\u{301} café",
            "see https://www.ruizcountysheriff.gov/amber/RCSO-2026-1121-0001-very-long-path",
            "short x.co link and sheriff.gov",
            "\u{2014} dash \u{2026} ellipsis",
        ] {
            assert!(x_conservative_length(text) >= x_weighted_length(text), "{text:?}");
        }
    }

    #[test]
    fn mastodon_counts_graphemes_and_urls_as_23() {
        assert_eq!(mastodon_length("héllo 👨‍👩‍👧"), 7);
        assert_eq!(mastodon_length("a https://example.com/a/very/long/path/that/goes/on b"), 2 + 23 + 2);
        assert_eq!(mastodon_length("e\u{301}"), 1, "a combining mark is part of its grapheme");
        assert!(measure(Platform::Mastodon, &"x".repeat(501), Some(500)).count == 501);
        assert!(measure(Platform::Mastodon, &"x".repeat(501), Some(1000)).fits, "an instance may allow more");
    }

    #[test]
    fn bluesky_has_two_limits() {
        let m = measure(Platform::Bluesky, &"👨‍👩‍👧‍👦".repeat(300), Some(300));
        assert_eq!(m.count, 300, "a family emoji is one grapheme");
        assert!(!m.fits, "but {} bytes exceed 3000", "👨‍👩‍👧‍👦".len() * 300);
        assert_eq!(measure(Platform::Bluesky, "👍🏽", Some(300)).count, 1, "skin tones join their emoji");
        assert!(measure(Platform::Bluesky, &"a".repeat(300), Some(300)).fits);
        assert!(!measure(Platform::Bluesky, &"a".repeat(301), Some(300)).fits);
    }

    #[test]
    fn telegram_counts_utf16_units() {
        assert_eq!(measure(Platform::Telegram, "a😀", None).count, 3);
        assert_eq!(measure(Platform::Telegram, "日本", None).count, 2);
    }

    #[test]
    fn threads_counts_emoji_as_their_bytes() {
        assert_eq!(threads_length("hi 😀"), 3 + 4);
        assert_eq!(threads_length("日本"), 2);
    }

    #[test]
    fn sms_segments_follow_gsm7_and_ucs2() {
        assert_eq!(sms_segments(&"a".repeat(160)), SmsSegments { encoding: "GSM-7", units: 160, segments: 1 });
        assert_eq!(sms_segments(&"a".repeat(161)).segments, 2);
        assert_eq!(sms_segments(&"a".repeat(306)).segments, 2);
        assert_eq!(sms_segments(&"a".repeat(307)).segments, 3);
        assert_eq!(sms_segments("€").units, 2, "extension characters take two septets");
        let u = sms_segments("Alerta: niño 😀");
        assert_eq!((u.encoding, u.segments), ("UCS-2", 1));
        assert_eq!(sms_segments(&"ñ😀".repeat(30)).segments, 2, "90 UTF-16 units > 70");
    }

    #[test]
    fn url_spans_are_byte_ranges_of_http_urls() {
        let t = "Café → https://a.example/x and mailto:x@y.example";
        let spans = url_spans(t);
        assert_eq!(spans.len(), 1);
        assert_eq!(&t[spans[0].0..spans[0].1], "https://a.example/x");
    }
}
