//! Invisible characters out of every text an event carries, whatever format it came in.
//!
//! A post must say what it looks like it says. Control characters (a CAD's stray `\r`,
//! a NUL, C1 codes), bidirectional overrides (which can make "call 911" display as
//! something else, or reverse a URL) and zero-width characters (which hide inside a word
//! so filters and people see different things, or split an `@` from its name) are
//! removed, and so are the brackets of bullhorn's own link placeholders (`crate::links`),
//! so no event text can pose as one. Line breaks stay; a tab becomes a space. A
//! zero-width joiner or non-joiner stays where it does real work: between two non-ASCII
//! letters or symbols (emoji sequences such as 👨‍👩‍👧, Indic and Persian writing).

use std::borrow::Cow;

use super::Event;

/// Whether `c` is dropped wherever it appears.
fn dropped(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{d}' | '\u{e}'..='\u{1f}' | '\u{7f}'..='\u{9f}'
        // Bidirectional marks, embeddings, overrides and isolates.
        | '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        // Zero-width space, word joiner, invisible operators, BOM, Mongolian vowel separator.
        | '\u{200b}' | '\u{2060}'..='\u{2064}' | '\u{feff}' | '\u{180e}'
        // Interlinear annotation, and the tag characters.
        | '\u{fff9}'..='\u{fffb}' | '\u{e0000}'..='\u{e007f}'
        // The brackets of bullhorn's own link placeholders (crate::links).
        | '\u{27e6}' | '\u{27e7}')
}

/// A joiner between two non-ASCII, non-space characters is kept.
fn joiner(c: char) -> bool {
    matches!(c, '\u{200c}' | '\u{200d}')
}

/// `s` without the invisible characters (see the module's doc).
pub fn clean(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| dropped(c) || joiner(c) || c == '\t') {
        return Cow::Borrowed(s);
    }
    // Line ends become `\n`, whichever convention the source used.
    let normalised;
    let s = if s.contains('\r') {
        normalised = s.replace("\r\n", "\n").replace('\r', "\n");
        normalised.as_str()
    } else {
        s
    };
    let chars: Vec<char> = s.chars().collect();
    let visible = |c: &char| !c.is_ascii() && !c.is_whitespace() && !dropped(*c) && !joiner(*c);
    let mut out = String::with_capacity(s.len());
    for (i, &c) in chars.iter().enumerate() {
        if c == '\t' {
            out.push(' ');
        } else if joiner(c) {
            let before = i.checked_sub(1).and_then(|j| chars.get(j)).is_some_and(visible);
            if before && chars.get(i + 1).is_some_and(visible) {
                out.push(c);
            }
        } else if !dropped(c) {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn clean_in_place(s: &mut String) {
    if let Cow::Owned(c) = clean(s) {
        *s = c;
    }
}

fn clean_opt(s: &mut Option<String>) {
    if let Some(s) = s {
        clean_in_place(s);
    }
}

fn clean_value(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) => clean_in_place(s),
        serde_json::Value::Array(a) => a.iter_mut().for_each(clean_value),
        serde_json::Value::Object(o) => o.values_mut().for_each(clean_value),
        _ => {}
    }
}

/// Every text of `e` cleaned: the ones templates show, and its fields.
pub fn clean_event(e: &mut Event) {
    clean_in_place(&mut e.headline);
    for s in [&mut e.description, &mut e.instruction, &mut e.area, &mut e.web, &mut e.contact] {
        clean_opt(s);
    }
    if let Some(l) = &mut e.location {
        clean_opt(&mut l.text);
    }
    for m in &mut e.media {
        clean_opt(&mut m.alt);
    }
    for t in &mut e.translations {
        clean_in_place(&mut t.headline);
        for s in [&mut t.description, &mut t.instruction, &mut t.area, &mut t.web, &mut t.contact] {
            clean_opt(s);
        }
    }
    e.fields.values_mut().for_each(clean_value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_bidi_and_zero_width_characters_are_removed() {
        assert_eq!(clean("Call\u{0} 911\u{7}"), "Call 911");
        assert_eq!(clean("line one\r\nline two"), "line one\nline two");
        assert_eq!(clean("old\rmac"), "old\nmac");
        assert_eq!(clean("a\tb"), "a b");
        assert_eq!(clean("\u{202e}lanigiro\u{202c} text"), "lanigiro text", "no override reverses it");
        assert_eq!(clean("see \u{2066}https://evil.example\u{2069}"), "see https://evil.example");
        assert_eq!(clean("@\u{200b}every\u{200d}one"), "@everyone", "nothing hides inside a word");
        assert_eq!(clean("\u{feff}AMBER"), "AMBER");
        assert_eq!(clean("C1\u{85}code"), "C1code");
        assert_eq!(clean("\u{27e6}link:abc\u{27e7}"), "link:abc", "no event text can carry a link placeholder");
    }

    #[test]
    fn joiners_that_do_real_work_stay() {
        let family = "👨\u{200d}👩\u{200d}👧";
        assert_eq!(clean(family), family);
        let persian = "می\u{200c}خواهم";
        assert_eq!(clean(persian), persian);
        assert_eq!(clean("plain text, nothing to do"), Cow::Borrowed("plain text, nothing to do"));
    }
}
