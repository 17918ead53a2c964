use super::*;
use crate::config::tests::{MINIMAL, load_str};
use crate::event::json;

fn event(extra: Value) -> Event {
    let mut v = serde_json::json!({
        "id": "INC-1", "type": "missing_child", "status": "actual",
        "headline": "Child missing", "fields": { "child_name": "Sofia" }
    });
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    json::decode(v.to_string().as_bytes()).expect("event")
}

/// A config whose templates dir holds `files`.
fn setup(files: &[(&str, &str)]) -> (tempfile::TempDir, Config) {
    let (dir, config) = load_str(MINIMAL);
    for (name, text) in files {
        let path = config.templates_dir.join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }
    (dir, config)
}

#[test]
fn event_set_template_wins_over_the_global_default() {
    let (_d, c) =
        setup(&[("missing_child/default.txt", "AMBER: {{ headline }} / {{ child_name }} / {{ agency.time_zone }}")]);
    let r = Renderer::load(&c).expect("load");
    let out = r.render("missing_child", &c.channels["console"], &event(serde_json::json!({})), DeliveryKind::Post);
    assert_eq!(out, Rendered { text: "AMBER: Child missing / Sofia / UTC".to_owned(), error: None });
    let out = r.render("road_closure", &c.channels["console"], &event(serde_json::json!({})), DeliveryKind::Post);
    assert_eq!(out.text, "Child missing", "falls back to default.txt");
}

#[test]
fn syntax_errors_name_file_and_line() {
    let (_d, c) = setup(&[("missing_child/default.txt", "line one\n{{ headline }\n")]);
    let errs = Renderer::load(&c).expect_err("syntax error");
    assert_eq!(errs.len(), 1);
    assert!(errs[0].file.ends_with("missing_child/default.txt"));
    assert_eq!(errs[0].line, Some(2));
}

#[test]
fn undefined_variable_falls_back_and_says_why() {
    let (_d, c) = setup(&[("missing_child/default.txt", "{{ headline }} {{ suspect_name }}")]);
    let r = Renderer::load(&c).expect("load");
    let e = event(serde_json::json!({ "instruction": "Call 911", "web": "https://s.example/a" }));
    let out = r.render("missing_child", &c.channels["console"], &e, DeliveryKind::Post);
    assert_eq!(out.text, "Child missing\nCall 911\nhttps://s.example/a");
    let err = out.error.expect("error recorded");
    assert!(err.contains("missing_child/default.txt") && err.contains("undefined"), "{err}");
}

#[test]
fn a_loop_bomb_runs_out_of_fuel_instead_of_hanging() {
    let (_d, c) = setup(&[(
        "missing_child/default.txt",
        "{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}",
    )]);
    let r = Renderer::load(&c).expect("load");
    let out = r.render("missing_child", &c.channels["console"], &event(serde_json::json!({})), DeliveryKind::Post);
    assert!(out.error.as_deref().is_some_and(|e| e.contains("fuel")), "{:?}", out.error);
    assert_eq!(out.text, "Child missing");
}

#[test]
fn non_actual_events_are_always_marked() {
    let (_d, c) = setup(&[]);
    let r = Renderer::load(&c).expect("load");
    let out =
        r.render("x", &c.channels["console"], &event(serde_json::json!({ "status": "exercise" })), DeliveryKind::Post);
    assert_eq!(out.text, "[EXERCISE] Child missing");
}

#[test]
fn html_is_not_escaped_in_plain_text() {
    let (_d, c) = setup(&[]);
    let r = Renderer::load(&c).expect("load");
    let out = r.render(
        "x",
        &c.channels["console"],
        &event(serde_json::json!({ "headline": "Tom & Jerry <ok>" })),
        DeliveryKind::Post,
    );
    assert_eq!(out.text, "Tom & Jerry <ok>");
}

#[test]
fn no_template_at_all_is_a_load_error() {
    let (_d, c) = setup(&[]);
    std::fs::remove_file(c.templates_dir.join("default.txt")).expect("rm");
    let errs = Renderer::load(&c).expect_err("nothing to render with");
    assert!(errs.iter().any(|e| e.message.contains("no default.txt")), "{errs:?}");
}

#[test]
fn shipped_templates_render_the_example_events() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/bullhorn.toml");
    let c = crate::config::load_with_env(&path, Vec::new()).expect("config");
    let r = Renderer::load(&c).expect("templates");
    for name in ["amber.json", "amber-cancel.json", "road-closure.json", "drill.json"] {
        let bytes = std::fs::read(path.with_file_name("examples").join(name)).expect("example");
        let e = json::decode(&bytes).unwrap_or_else(|r| panic!("{name}: {r}"));
        let set = &c.events[&e.event_type].templates;
        let out = r.render(set, &c.channels["console"], &e, DeliveryKind::for_msg_type(e.msg_type));
        assert_eq!(out.error, None, "{name}");
        assert!(out.text.contains(&e.headline), "{name}: {}", out.text);
    }
}
