//! Reading the file's sections with serde, every problem recorded with its key path.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;

use super::Errors;

/// Deserialize one section, recording unknown keys and the first type error (with its
/// exact path) instead of stopping.
pub(super) fn section<T: DeserializeOwned>(value: config::Value, path: &str, errors: &mut Errors) -> Option<T> {
    let mut unknown = Vec::new();
    let mut record = |p: serde_ignored::Path<'_>| unknown.push(key_path(&p));
    let de = serde_ignored::Deserializer::new(value, &mut record);
    let result: Result<T, _> = serde_path_to_error::deserialize(de);
    for key in unknown {
        errors.push(join(path, &key), "unknown key");
    }
    match result {
        Ok(v) => Some(v),
        Err(e) => {
            let inner = e.path().to_string();
            let at = if inner == "." { path.to_owned() } else { join(path, &inner) };
            errors.push(at, clean_serde_message(&e.into_inner().to_string()));
            None
        }
    }
}

/// A key path as the config's errors write them: `subscribe[3].mapping.typo`.
pub(super) fn key_path(p: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match p {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", key_path(parent)),
        Path::Map { parent, key } => join(&key_path(parent), key),
        Path::Some { parent } | Path::NewtypeStruct { parent } | Path::NewtypeVariant { parent } => key_path(parent),
    }
}

pub(super) fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_owned(),
        (_, true) => a.to_owned(),
        _ => format!("{a}.{b}"),
    }
}

/// The config crate appends its own (often wrong) key path to serde messages; ours is exact.
pub(super) fn clean_serde_message(msg: &str) -> String {
    msg.split(" for key `").next().unwrap_or(msg).to_owned()
}

pub(super) fn take_section<T: DeserializeOwned + Default>(
    root: &mut BTreeMap<String, config::Value>,
    name: &str,
    errors: &mut Errors,
) -> T {
    match root.remove(name) {
        Some(v) => section(v, name, errors).unwrap_or_default(),
        None => T::default(),
    }
}

pub(super) fn table(value: config::Value, path: &str, errors: &mut Errors) -> BTreeMap<String, config::Value> {
    match value.into_table() {
        Ok(t) => t.into_iter().collect(),
        Err(e) => {
            errors.push(path, clean_serde_message(&e.to_string()));
            BTreeMap::new()
        }
    }
}

pub(super) const SECTIONS: &[&str] = &[
    "mode",
    "log",
    "mqtt",
    "broker",
    "store",
    "admin",
    "agency",
    "delivery",
    "templates",
    "reload",
    "notify",
    "media",
    "events",
    "channels",
];
