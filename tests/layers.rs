//! The layering stated in `src/lib.rs`, checked against the code.
//!
//! lib.rs lists the top-level modules in layers, top to bottom. This test reads every
//! source file of the library (tests left out: `tests.rs` files and `#[cfg(test)]` items),
//! collects its `crate::<module>` references, and fails when a module imports one of a
//! higher layer, when two top-level modules import each other through any path (a
//! cycle), or when lib.rs declares a module its layers leave out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// `text` with comments, string and character literals blanked (newlines kept).
fn strip(text: &str) -> String {
    let b: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let at = |i: usize, s: &str| s.chars().enumerate().all(|(k, c)| b.get(i + k) == Some(&c));
    while i < b.len() {
        let c = b[i];
        if at(i, "//") {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if at(i, "/*") {
            let mut depth = 0;
            while i < b.len() {
                if at(i, "/*") {
                    depth += 1;
                    i += 2;
                } else if at(i, "*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if (c == 'r' || c == 'b')
            && (i == 0 || !(b[i - 1].is_alphanumeric() || b[i - 1] == '_'))
            && raw_string_start(&b[i..]).is_some()
        {
            let (skip, hashes) = raw_string_start(&b[i..]).expect("checked");
            i += skip;
            let close: String = std::iter::once('"').chain(std::iter::repeat_n('#', hashes)).collect();
            while i < b.len() && !at(i, &close) {
                i += 1;
            }
            i += close.len();
            out.push_str("\"\"");
        } else if c == '"' {
            i += 1;
            while i < b.len() && b[i] != '"' {
                if b[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' {
            // A character literal ('a', '\n', '\u{200B}'), else a lifetime ('a).
            if b.get(i + 1) == Some(&'\\') {
                // The quote, the backslash and the escaped character, then up to the
                // closing quote ('\u{200B}' has more before it).
                i += 3;
                while i < b.len() && b[i] != '\'' {
                    i += 1;
                }
                i += 1;
                out.push_str("' '");
            } else if b.get(i + 2) == Some(&'\'') {
                i += 3;
                out.push_str("' '");
            } else {
                out.push(c);
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// `r"`, `r#"`, `br"` ...: how many characters open it and how many `#` close it.
fn raw_string_start(b: &[char]) -> Option<(usize, usize)> {
    let mut i = 0;
    if b.first() == Some(&'b') {
        i += 1;
    }
    if b.get(i) != Some(&'r') {
        return None;
    }
    i += 1;
    let mut hashes = 0;
    while b.get(i) == Some(&'#') {
        hashes += 1;
        i += 1;
    }
    (b.get(i) == Some(&'"')).then_some((i + 1, hashes))
}

/// `code` (already stripped) without the items under `#[cfg(test)]`.
fn without_test_items(code: &str) -> String {
    let mut code = code.to_owned();
    while let Some(start) = code.find("#[cfg(test)]") {
        let rest = &code[start..];
        let mut depth = 0i32;
        let mut end = rest.len();
        for (k, c) in rest.char_indices().skip("#[cfg(test)]".len()) {
            match c {
                '(' | '[' => depth += 1,
                ')' | ']' => depth -= 1,
                ';' if depth == 0 => {
                    end = k + 1;
                    break;
                }
                '{' if depth == 0 => {
                    let mut braces = 0;
                    for (j, d) in rest[k..].char_indices() {
                        if d == '{' {
                            braces += 1;
                        } else if d == '}' {
                            braces -= 1;
                            if braces == 0 {
                                end = k + j + 1;
                                break;
                            }
                        }
                    }
                    break;
                }
                _ => {}
            }
        }
        code.replace_range(start..start + end, "");
    }
    code
}

/// `code` with the whitespace around every `::` taken out (`crate ::store` is a path too).
fn tight_paths(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("::") {
        out.push_str(rest[..at].trim_end());
        out.push_str("::");
        rest = rest[at + 2..].trim_start();
    }
    out.push_str(rest);
    out
}

/// The top-level modules `code` names as `crate::x`, in `crate::{x, y::z}`, or through
/// a chain of `super::` long enough to reach the crate root from a file `depth` modules
/// down (`src/policy.rs` is 1, `src/store/writer.rs` 2).
fn crate_refs(code: &str, depth: usize) -> BTreeSet<String> {
    let code = &tight_paths(code);
    let ident = |s: &str| s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>();
    let root = format!("{}::", "super::".repeat(depth).trim_end_matches("::"));
    let mut code = code.replace(&root, "crate::");
    // `super::super::` one level deeper than the root is not a path that compiles.
    code = code.replace("crate::super::", "crate::");
    let code = code.as_str();
    let mut refs = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        if code[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level names of the group: after `{` or a comma at nesting depth 0.
            let mut depth = 0;
            let mut start = true;
            for (k, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if c.is_whitespace() => {}
                    _ if start && depth == 0 => {
                        refs.insert(ident(&group[k..]));
                        start = false;
                    }
                    _ => {}
                }
            }
        } else {
            refs.insert(ident(rest));
        }
    }
    refs.retain(|r| !r.is_empty());
    refs
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The layers lib.rs states, top to bottom: lines `//! N. `a`, `b``.
fn stated_layers(lib: &str) -> Vec<Vec<String>> {
    lib.lines()
        .filter_map(|l| l.strip_prefix("//! "))
        .filter(|l| l.split_once(". ").is_some_and(|(n, _)| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit())))
        .map(|l| l.split('`').skip(1).step_by(2).map(str::to_owned).collect())
        .collect()
}

/// The modules lib.rs declares outside `#[cfg(test)]`.
fn declared_modules(lib: &str) -> BTreeSet<String> {
    let code = without_test_items(&strip(lib));
    code.lines()
        .filter_map(|l| {
            let l = l.trim();
            let l = match l.strip_prefix("pub") {
                // `pub mod`, `pub(crate) mod`, `pub(super) mod`
                Some(rest) => rest.trim_start_matches(|c: char| c != ' ').trim_start(),
                None => l,
            };
            l.strip_prefix("mod ")
        })
        .map(|l| l.trim_end_matches(';').trim().to_owned())
        .collect()
}

/// Every top-level module's `crate::` references to other top-level modules, with the
/// files that make them.
fn import_graph(src: &Path, modules: &BTreeSet<String>) -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut graph: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(src).expect("under src").to_string_lossy().replace('\\', "/");
        let top = rel.split('/').next().expect("a name").trim_end_matches(".rs").to_owned();
        if !modules.contains(&top) || rel.ends_with("/tests.rs") || rel.contains("/tests/") {
            continue;
        }
        let code = without_test_items(&strip(&std::fs::read_to_string(&file).expect("read")));
        // src/a.rs and src/a/mod.rs are one module down, src/a/b.rs two.
        let depth = rel.matches('/').count() + usize::from(!rel.ends_with("/mod.rs"));
        for hidden in ["crate::*", "crate as ", "crate::{self", "extern crate self", "#[path", "include!("] {
            assert!(
                !tight_paths(&code).contains(hidden),
                "{rel}: `{hidden}` hides what it imports from this test; name the modules"
            );
        }
        for r in crate_refs(&code, depth) {
            if r != top && modules.contains(&r) {
                graph.entry(top.clone()).or_default().entry(r).or_default().insert(rel.clone());
            }
        }
    }
    graph
}

/// A path of imports from `from` back to itself, if there is one.
fn cycle_through(graph: &BTreeMap<String, BTreeMap<String, BTreeSet<String>>>, from: &str) -> Option<Vec<String>> {
    let mut stack = vec![vec![from.to_owned()]];
    let mut seen = BTreeSet::new();
    while let Some(path) = stack.pop() {
        let last = path.last().expect("non-empty");
        for next in graph.get(last).into_iter().flat_map(|m| m.keys()) {
            if next == from {
                let mut cycle = path.clone();
                cycle.push(next.clone());
                return Some(cycle);
            }
            if seen.insert(next.clone()) {
                let mut longer = path.clone();
                longer.push(next.clone());
                stack.push(longer);
            }
        }
    }
    None
}

#[test]
fn modules_import_only_their_own_layer_or_below_and_never_in_a_cycle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).expect("lib.rs");
    let layers = stated_layers(&lib);
    let modules = declared_modules(&lib);
    assert!(layers.len() >= 5, "lib.rs states its layers as `//! N. `module`, ...` lines: {layers:?}");

    let mut layer_of = BTreeMap::new();
    for (depth, layer) in layers.iter().enumerate() {
        for m in layer {
            assert!(layer_of.insert(m.clone(), depth).is_none(), "{m} is in two layers of lib.rs");
        }
    }
    let unplaced: Vec<&String> = modules.iter().filter(|m| !layer_of.contains_key(*m)).collect();
    assert!(unplaced.is_empty(), "modules missing from lib.rs's layers: {unplaced:?}");
    let stale: Vec<&String> = layer_of.keys().filter(|m| !modules.contains(*m)).collect();
    assert!(stale.is_empty(), "lib.rs's layers name modules it does not declare: {stale:?}");
    let mapped: BTreeSet<String> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("//! | [`"))
        .filter_map(|l| l.split_once('`').map(|(name, _)| name.to_owned()))
        .collect();
    assert_eq!(mapped, modules, "lib.rs's module map has one row per module");

    let graph = import_graph(&root.join("src"), &modules);
    assert!(graph.values().map(BTreeMap::len).sum::<usize>() > 50, "the references were read: {graph:?}");
    let mut wrong = Vec::new();
    for (from, to) in &graph {
        for (target, files) in to {
            // Layers are listed top to bottom: a higher layer has a smaller index.
            if layer_of[target] < layer_of[from] {
                wrong.push(format!("{from} imports {target}, a higher layer ({files:?})"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    for m in &modules {
        if let Some(cycle) = cycle_through(&graph, m) {
            let detail: Vec<String> =
                cycle.windows(2).map(|w| format!("{} -> {} in {:?}", w[0], w[1], graph[&w[0]][&w[1]])).collect();
            panic!("an import cycle: {}\n{}", cycle.join(" -> "), detail.join("\n"));
        }
    }
}

#[test]
fn the_reader_sees_through_comments_strings_and_tests() {
    let code = r##"
        use crate::config::Config; // crate::notify in a comment
        /* crate::admin /* nested crate::app */ */
        use crate::{event::{self, Event}, render, platform::Platform};
        let s = "crate::store"; let r = r#"crate::cli"#; let c = '"'; let l: &'a str = "";
        fn f<'a>(x: &'a str) -> bool { x == "\"crate::media" }
        #[cfg(test)]
        mod tests { use crate::delivery; }
        #[cfg(test)]
        use crate::ingest;
        let d = crate::digest::sha256_hex(b"");
        let x = mycrate::links::y;
    "##;
    let refs = crate_refs(&without_test_items(&strip(code)), 2);
    let want: BTreeSet<String> =
        ["config", "event", "render", "platform", "digest"].into_iter().map(str::to_owned).collect();
    assert_eq!(refs, want);

    // Paths the compiler takes that are not spelled `crate::x`.
    let sneaky = r#"
        let q = '\''; let d = '"'; use crate ::store::Job;
        use super::super::media::Fetch; use super::sibling::X;
        fn f() -> crate::
            notify::Notice {}
    "#;
    let want: BTreeSet<String> = ["store", "media", "notify"].into_iter().map(str::to_owned).collect();
    assert_eq!(crate_refs(&strip(sneaky), 2), want, "from src/a/b.rs, super::super:: is the crate root");
    let top: BTreeSet<String> = ["sibling", "store"].into_iter().map(str::to_owned).collect();
    let from_top = "use super::sibling::X; use crate::store::Y; use self::inner::Z;";
    assert_eq!(crate_refs(&strip(from_top), 1), top, "from src/a.rs, super:: is the crate root");
    let lib = "pub mod a;\npub(crate) mod b;\nmod c;\n#[cfg(test)]\nmod fuzz;\n";
    let declared: BTreeSet<String> = ["a", "b", "c"].into_iter().map(str::to_owned).collect();
    assert_eq!(declared_modules(lib), declared);
}
