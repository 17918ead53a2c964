//! MQTT topic filter matching (MQTT 3.1.1 §4.7, MQTT 5 §4.7). Pure. Our own because
//! rumqttc's `matches` slices the topic's first byte and panics on a topic that starts
//! with a multi-byte character: a topic is input, and input must not crash the daemon.

/// Whether `topic` (a topic name) matches `filter` (which may hold `+` and `#`).
pub fn matches(topic: &str, filter: &str) -> bool {
    // Topics starting with '$' are not matched by a filter starting with a wildcard.
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut levels = topic.split('/');
    for f in filter.split('/') {
        if f == "#" {
            return true;
        }
        match levels.next() {
            Some(_) if f == "+" => {}
            Some(t) if t == f => {}
            _ => return false,
        }
    }
    levels.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn levels_and_wildcards() {
        assert!(matches("cad/county/events", "cad/+/events"));
        assert!(matches("cad/county/events", "cad/#"));
        assert!(matches("cad", "cad/#"), "# also matches the parent level");
        assert!(matches("a/b", "a/b"));
        assert!(matches("a//b", "a/+/b"), "an empty level is a level");
        assert!(!matches("cad/county/events/x", "cad/+/events"));
        assert!(!matches("cad/events", "cad/+/events"));
        assert!(!matches("other/county/events", "cad/+/events"));
        assert!(matches("anything/at/all", "#"));
    }

    #[test]
    fn dollar_topics_need_an_explicit_first_level() {
        assert!(!matches("$SYS/broker/load", "#"));
        assert!(!matches("$SYS/broker/load", "+/broker/load"));
        assert!(matches("$SYS/broker/load", "$SYS/#"));
    }

    #[test]
    fn non_ascii_topics_do_not_panic() {
        assert!(matches("é/events", "+/events"));
        assert!(matches("événements", "#"));
        assert!(!matches("日本/x", "cad/+"));
        assert!(!matches("", "cad/+"));
    }
}
