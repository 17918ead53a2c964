//! A small, bounded element tree over quick-xml, for the XML inputs (CAP). Namespaces are
//! resolved (so `cap:alert` and `alert` with the CAP namespace are the same element);
//! DTDs and unknown entities are refused (no entity expansion); depth and element count
//! are capped, so a hostile document costs at most a bounded amount of work.

use quick_xml::NsReader;
use quick_xml::events::Event as X;
use quick_xml::name::ResolveResult;

/// Deepest nesting accepted.
const MAX_DEPTH: usize = 64;
/// Most elements accepted in one document.
const MAX_ELEMENTS: usize = 50_000;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    /// The namespace URI, if the element is in one.
    pub ns: Option<String>,
    /// The local name (without a prefix).
    pub name: String,
    /// Text directly in the element (children's text excluded), entities resolved.
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    /// Children with local name `name`.
    pub fn all<'a, 'n>(&'a self, name: &'n str) -> impl Iterator<Item = &'a Element> + use<'a, 'n> {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The first child with local name `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.all(name).next()
    }

    /// The trimmed text of the first child `name`, if it has any.
    pub fn text_of(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.trim()).filter(|t| !t.is_empty())
    }

    /// Every element in the tree (this one first), depth first.
    pub fn descendants(&self) -> Vec<&Element> {
        let mut out = vec![self];
        let mut i = 0;
        while i < out.len() {
            let e = out[i];
            out.extend(e.children.iter());
            i += 1;
        }
        out
    }
}

/// Parse `text` into its root element.
pub fn parse(text: &str) -> Result<Element, String> {
    let mut reader = NsReader::from_str(text);
    reader.config_mut().trim_text(false);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut count = 0usize;
    loop {
        let position = reader.buffer_position();
        let (ns, event) = reader.read_resolved_event().map_err(|e| format!("malformed XML at byte {position}: {e}"))?;
        let ns = match ns {
            ResolveResult::Bound(n) => Some(n.as_ref().to_owned()),
            ResolveResult::Unbound => None,
            ResolveResult::Unknown(p) => {
                return Err(format!("undeclared namespace prefix {p:?}"));
            }
        };
        match event {
            X::Start(e) | X::Empty(e) if root.is_some() => {
                return Err(format!("a second root element <{}> after the first", e.local_name().as_ref()));
            }
            X::Start(e) => {
                count += 1;
                if count > MAX_ELEMENTS || stack.len() >= MAX_DEPTH {
                    return Err("the document is too large or too deeply nested".to_owned());
                }
                let name = e.local_name().as_ref().to_owned();
                stack.push(Element { ns, name, ..Element::default() });
            }
            X::Empty(e) => {
                count += 1;
                if count > MAX_ELEMENTS {
                    return Err("the document is too large".to_owned());
                }
                let name = e.local_name().as_ref().to_owned();
                let el = Element { ns, name, ..Element::default() };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            X::End(_) => {
                let el = stack.pop().ok_or("an end tag without its start")?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            X::Text(t) => {
                if let Some(el) = stack.last_mut() {
                    el.text.push_str(&t.xml10_content());
                }
            }
            X::CData(c) => {
                if let Some(el) = stack.last_mut() {
                    el.text.push_str(&c.into_inner());
                }
            }
            X::GeneralRef(r) => {
                let c = match r.resolve_char_ref() {
                    Ok(Some(c)) => c,
                    Ok(None) => match &*r {
                        "amp" => '&',
                        "lt" => '<',
                        "gt" => '>',
                        "quot" => '"',
                        "apos" => '\'',
                        other => return Err(format!("unknown entity &{other};")),
                    },
                    Err(e) => return Err(format!("bad character reference: {e}")),
                };
                if let Some(el) = stack.last_mut() {
                    el.text.push(c);
                }
            }
            X::DocType(_) => return Err("DTDs are not accepted".to_owned()),
            X::Eof => break,
            X::Decl(_) | X::PI(_) | X::Comment(_) => {}
        }
    }
    if !stack.is_empty() {
        return Err(format!("the document ends inside <{}>", stack.last().map_or("", |e| e.name.as_str())));
    }
    root.ok_or_else(|| "no root element".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_entities_and_nesting() {
        let doc = r#"<?xml version='1.0'?>
            <feed xmlns="http://www.w3.org/2005/Atom" xmlns:cap="urn:oasis:names:tc:emergency:cap:1.2">
              <!-- a comment -->
              <entry><cap:alert><cap:identifier>A&amp;B &#x41;<![CDATA[<x>]]></cap:identifier><empty/></cap:alert></entry>
            </feed>"#;
        let root = parse(doc).expect("parse");
        assert_eq!(root.name, "feed");
        assert_eq!(root.ns.as_deref(), Some("http://www.w3.org/2005/Atom"));
        let alert = root.descendants().into_iter().find(|e| e.name == "alert").expect("alert");
        assert_eq!(alert.ns.as_deref(), Some("urn:oasis:names:tc:emergency:cap:1.2"));
        assert_eq!(alert.text_of("identifier"), Some("A&B A<x>"));
        assert!(alert.child("empty").is_some());
    }

    #[test]
    fn hostile_documents_are_refused() {
        assert!(parse("<!DOCTYPE x [<!ENTITY a 'b'>]><x>&a;</x>").is_err());
        assert!(parse("<x>&foo;</x>").is_err());
        assert!(parse("<x><y></x>").is_err());
        assert!(parse("<x/><y/>").is_err());
        assert!(parse("<p:x/>").is_err(), "undeclared prefix");
        let deep = "<a>".repeat(100) + &"</a>".repeat(100);
        assert!(parse(&deep).is_err());
        assert!(parse("").is_err());
    }
}
