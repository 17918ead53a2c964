//! Bluesky rich-text facets: the byte ranges of links and hashtags in a post. Pure.
//!
//! Bluesky shows URLs and hashtags as plain, unclickable text unless the record carries a
//! facet for each, with UTF-8 byte offsets (start inclusive, end exclusive, no overlaps).
//! Only text visible in the post gets a facet, so a link's visible text is its address:
//! no masked links.

use serde::Serialize;
use unicode_segmentation::UnicodeSegmentation as _;

use super::length::url_spans;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Facet {
    pub byte_start: usize,
    pub byte_end: usize,
    #[serde(flatten)]
    pub feature: Feature,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Feature {
    Link { uri: String },
    Tag { tag: String },
}

/// Longest hashtag Bluesky accepts, in graphemes (without the `#`).
const MAX_TAG: usize = 64;

/// The link and hashtag facets of `text`, in order.
pub fn facets(text: &str) -> Vec<Facet> {
    let links: Vec<(usize, usize)> = url_spans(text);
    let mut out: Vec<Facet> = links
        .iter()
        .map(|&(s, e)| Facet { byte_start: s, byte_end: e, feature: Feature::Link { uri: text[s..e].to_owned() } })
        .collect();
    for (start, c) in text.char_indices() {
        if c != '#' && c != '＃' {
            continue;
        }
        let before = text[..start].chars().next_back();
        if before.is_some_and(|b| !b.is_whitespace()) {
            continue;
        }
        let body_start = start + c.len_utf8();
        let body_end = text[body_start..].find(char::is_whitespace).map_or(text.len(), |i| body_start + i);
        let body = text[body_start..body_end].trim_end_matches(|c: char| c.is_ascii_punctuation() || c == '…');
        let end = body_start + body.len();
        let valid = !body.is_empty()
            && body.chars().any(|c| !c.is_numeric() && !c.is_ascii_punctuation())
            && body.graphemes(true).count() <= MAX_TAG
            && !links.iter().any(|&(s, e)| start < e && end > s);
        if valid {
            out.push(Facet { byte_start: start, byte_end: end, feature: Feature::Tag { tag: body.to_owned() } });
        }
    }
    out.sort_by_key(|f| f.byte_start);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_offsets_on_non_ascii_text() {
        let text = "Niña desaparecida 🚨 https://sheriff.example/amber/1 #AmberAlert #Ruiz_County. #2026";
        let f = facets(text);
        assert_eq!(f.len(), 3, "{f:?}");
        assert_eq!(&text[f[0].byte_start..f[0].byte_end], "https://sheriff.example/amber/1");
        assert_eq!(f[0].byte_start, "Niña desaparecida 🚨 ".len(), "UTF-8 bytes, not characters");
        assert_eq!(f[0].feature, Feature::Link { uri: "https://sheriff.example/amber/1".to_owned() });
        assert_eq!(&text[f[1].byte_start..f[1].byte_end], "#AmberAlert");
        assert_eq!(
            f[2].feature,
            Feature::Tag { tag: "Ruiz_County".to_owned() },
            "trailing punctuation is not part of a tag"
        );
    }

    #[test]
    fn no_tag_inside_a_url_or_a_word() {
        let f = facets("see https://a.example/#section and C#sharp");
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(matches!(f[0].feature, Feature::Link { .. }));
    }
}
