use std::path::PathBuf;

use super::*;
use crate::config::ChannelSelector;
use crate::config::tests::{MINIMAL, load_str};
use crate::event::{Priority, json};

fn event(extra: serde_json::Value) -> Event {
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
    setup_with(MINIMAL, files)
}

fn setup_with(toml: &str, files: &[(&str, &str)]) -> (tempfile::TempDir, Config) {
    let (dir, config) = load_str(toml);
    for (name, text) in files {
        let path = config.templates_dir.join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }
    (dir, config)
}

fn rule(c: &Config) -> &EventRule {
    &c.events["missing_child"]
}

fn render(r: &Renderer, c: &Config, target: &Target<'_>, e: &Event) -> Rendered {
    r.render_for(rule(c), target, e, DeliveryKind::Post, None)
}

#[test]
fn the_chain_is_channel_then_platform_then_event_then_global() {
    let (_d, c) = setup(&[
        ("missing_child/default.txt", "event default"),
        ("missing_child/x.txt", "for X"),
        ("missing_child/channel-console.txt", "for the console channel"),
    ]);
    let r = Renderer::load(&c).expect("load");
    let e = event(serde_json::json!({}));
    assert_eq!(render(&r, &c, &Target::channel(&c.channels["console"]), &e).text, "for the console channel");
    assert_eq!(render(&r, &c, &Target::platform(Platform::X), &e).text, "for X");
    assert_eq!(render(&r, &c, &Target::platform(Platform::Mastodon), &e).text, "event default");
    let road = EventRule::new(Priority::Normal, ChannelSelector::All, "road_closure");
    assert_eq!(r.render_for(&road, &Target::platform(Platform::X), &e, DeliveryKind::Post, None).text, "Child missing");
}

#[test]
fn language_variants_are_preferred_for_their_language() {
    let (_d, c) = setup(&[
        ("missing_child/default.txt", "EN: {{ headline }}"),
        ("missing_child/default.es.txt", "ES: {{ headline }}"),
    ]);
    let r = Renderer::load(&c).expect("load");
    let e = event(serde_json::json!({
        "language": "en-US",
        "translations": [{ "language": "es-US", "headline": "Niña desaparecida" }]
    }));
    let t = Target::platform(Platform::Mastodon);
    assert_eq!(r.render_for(rule(&c), &t, &e, DeliveryKind::Post, Some("en-US")).text, "EN: Child missing");
    assert_eq!(r.render_for(rule(&c), &t, &e, DeliveryKind::Post, Some("es-US")).text, "ES: Niña desaparecida");
}

#[test]
fn values_are_escaped_for_the_platform_but_template_text_is_not() {
    let (_d, c) = setup(&[("missing_child/default.txt", "**AMBER** {{ headline }}")]);
    let r = Renderer::load(&c).expect("load");
    let e = event(serde_json::json!({ "headline": "@everyone [click](http://evil.example) *now*" }));
    let discord = render(&r, &c, &Target::platform(Platform::Discord), &e).text;
    assert_eq!(discord, "**AMBER** @\u{200B}everyone \\[click\\](http://evil.example) \\*now\\*");
    let x = render(&r, &c, &Target::platform(Platform::X), &e).text;
    assert_eq!(x, "**AMBER** @\u{200B}everyone [click](http://evil.example) *now*");
    let hook = render(&r, &c, &Target::platform(Platform::Webhook), &e).text;
    assert_eq!(hook, "**AMBER** @everyone [click](http://evil.example) *now*");
}

#[test]
fn field_values_are_data_never_template_code() {
    let (_d, c) = setup(&[("missing_child/default.txt", "{{ headline }}")]);
    let r = Renderer::load(&c).expect("load");
    let e = event(serde_json::json!({ "headline": "{{ agency.name }} {% for x in range(9) %}x{% endfor %}" }));
    assert_eq!(
        render(&r, &c, &Target::platform(Platform::X), &e).text,
        "{{ agency.name }} {% for x in range(9) %}x{% endfor %}"
    );
}

#[test]
fn too_long_shortens_the_description_at_a_word_and_keeps_the_rest() {
    let (_d, c) = setup(&[(
        "missing_child/default.txt",
        "AMBER ALERT: {{ headline }}\n{{ description }}\nCall 911 if seen.\nhttps://sheriff.example/amber/1",
    )]);
    let r = Renderer::load(&c).expect("load");
    let long =
        "Sofia was last seen wearing a yellow raincoat and pink rain boots near the north entrance of Lakeview Park. "
            .repeat(6);
    let e = event(serde_json::json!({ "description": long }));
    let out = render(&r, &c, &Target::platform(Platform::X), &e);
    assert!(out.shortened && out.length.fits && out.error.is_none(), "{out:?}");
    assert!(out.length.count <= 280);
    assert!(out.text.starts_with("AMBER ALERT: Child missing\nSofia was last seen"), "{}", out.text);
    assert!(out.text.contains("…\nCall 911 if seen.\nhttps://sheriff.example/amber/1"), "{}", out.text);
    let untouched = render(&r, &c, &Target::platform(Platform::Facebook), &e);
    assert!(!untouched.shortened && untouched.text.contains(long.trim()));
}

#[test]
fn a_thread_channel_splits_instead() {
    let toml = MINIMAL.replace(
        "[channels.console]\nkind = \"console\"",
        "[channels.console]\nkind = \"console\"\nmax_chars = 60\noverflow = \"thread\"",
    );
    let (_d, c) =
        setup_with(&toml, &[("missing_child/default.txt", "{{ headline }}\n\n{{ description }}\n\nCall 911.")]);
    let r = Renderer::load(&c).expect("load");
    let e = event(
        serde_json::json!({ "description": "A long description that cannot fit in sixty characters together with the rest." }),
    );
    let out = r.render(rule(&c), &c.channels["console"], &e, DeliveryKind::Post, None);
    assert!(out.parts.len() >= 2, "{out:?}");
    assert!(out.parts.iter().all(|p| p.chars().count() <= 60), "{:?}", out.parts);
    assert!(out.parts[0].starts_with("Child missing"));
    assert!(out.parts.last().is_some_and(|p| p.contains("Call 911.")));
}

#[test]
fn a_template_too_long_without_its_description_is_cut_and_says_so() {
    let (_d, c) = setup(&[("missing_child/default.txt", "{{ headline }} {% for i in range(100) %}word {% endfor %}")]);
    let r = Renderer::load(&c).expect("load");
    let out = render(&r, &c, &Target::platform(Platform::X), &event(serde_json::json!({})));
    assert!(out.length.fits && out.shortened);
    assert!(out.error.as_deref().is_some_and(|e| e.contains("too long for x")), "{:?}", out.error);
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
fn unknown_template_names_are_refused() {
    let (_d, c) = setup(&[("missing_child/mastodn.txt", "typo")]);
    let errs = Renderer::load(&c).expect_err("typo");
    assert!(errs[0].file.ends_with("mastodn.txt"), "{errs:?}");
}

#[test]
fn undefined_variable_falls_back_and_says_why() {
    let (_d, c) = setup(&[("missing_child/default.txt", "{{ headline }} {{ suspect_name }}")]);
    let r = Renderer::load(&c).expect("load");
    let e = event(serde_json::json!({ "instruction": "Call 911", "web": "https://s.example/a" }));
    let out = render(&r, &c, &Target::platform(Platform::Console), &e);
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
    let out = render(&r, &c, &Target::platform(Platform::Console), &event(serde_json::json!({})));
    assert!(out.error.as_deref().is_some_and(|e| e.contains("fuel")), "{:?}", out.error);
    assert_eq!(out.text, "Child missing");
}

#[test]
fn only_public_fields_reach_the_template() {
    let toml = MINIMAL.replace(
        "[events.missing_child]\npriority = \"critical\"",
        "[events.missing_child]\npriority = \"critical\"\npublic_fields = [\"child_name\"]",
    );
    let (_d, c) = setup_with(
        &toml,
        &[(
            "missing_child/default.txt",
            "{{ child_name }}{% if home_address is defined %} {{ home_address }}{% endif %}",
        )],
    );
    let r = Renderer::load(&c).expect("load");
    let e = event(serde_json::json!({ "fields": { "child_name": "Sofia", "home_address": "12 Elm St" } }));
    assert_eq!(render(&r, &c, &Target::platform(Platform::X), &e).text, "Sofia");
}

#[test]
fn non_actual_events_are_always_marked() {
    let (_d, c) = setup(&[]);
    let r = Renderer::load(&c).expect("load");
    let out = render(&r, &c, &Target::platform(Platform::Console), &event(serde_json::json!({ "status": "exercise" })));
    assert_eq!(out.text, "[EXERCISE] Child missing");
}

#[test]
fn no_template_at_all_is_a_load_error() {
    let (_d, c) = setup(&[]);
    std::fs::remove_file(c.templates_dir.join("default.txt")).expect("rm");
    let errs = Renderer::load(&c).expect_err("nothing to render with");
    assert!(errs.iter().any(|e| e.message.contains("no default.txt")), "{errs:?}");
}

fn shipped() -> (Config, Renderer) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/bullhorn.toml");
    let c = crate::config::load_with_env(&path, Vec::new()).expect("config");
    let r = Renderer::load(&c).expect("templates");
    (c, r)
}

#[test]
fn the_shipped_config_passes_check() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/bullhorn.toml");
    let c = crate::config::load_with_env(&path, Vec::new()).expect("config");
    let problems = check::check(&c);
    assert!(problems.is_empty(), "{}", problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"));
}

/// The Debian package's config (packaging/bullhorn.toml) is valid with the shipped
/// templates and has the same event rules as the default config.
#[test]
fn the_packaged_config_passes_check_with_the_default_rules() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let templates = root.join("config/templates").display().to_string();
    let env = vec![("BULLHORN__TEMPLATES__DIR".to_owned(), templates)];
    let packaged = crate::config::load_with_env(&root.join("packaging/bullhorn.toml"), env).expect("config");
    let problems = check::check(&packaged);
    assert!(problems.is_empty(), "{}", problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"));
    let default = crate::config::load_with_env(&root.join("config/bullhorn.toml"), Vec::new()).expect("config");
    assert_eq!(format!("{:?}", packaged.events), format!("{:?}", default.events), "the event rules drifted apart");
    assert!(!packaged.broker.enabled, "a package uses the agency's broker");
    assert!(packaged.store.path.is_absolute(), "the CLI finds the store (and the admin token) from anywhere");
}

/// Every shipped template set, rendered from its sample for every platform and kind: the
/// snapshots in `src/render/snapshots/` are what each platform receives.
#[test]
fn snapshots_of_every_shipped_template_on_every_platform() {
    let (c, r) = shipped();
    let mut sets: Vec<(&String, &EventRule)> = c.events.iter().collect();
    sets.sort_by_key(|(t, _)| t.as_str());
    for (event_type, rule) in sets {
        let e = check::sample(&r, &rule.templates, event_type).unwrap_or_else(|e| panic!("{e}"));
        let mut out = String::new();
        for kind in [DeliveryKind::Post, DeliveryKind::Update, DeliveryKind::Cancel] {
            for &p in Platform::ALL.iter().filter(|p| !matches!(p, Platform::File | Platform::Webhook)) {
                for lang in e.languages() {
                    let rendered = r.render_for(rule, &Target::platform(p), &e, kind, lang);
                    assert!(rendered.error.is_none(), "{event_type}/{p}/{}: {:?}", kind.as_str(), rendered.error);
                    assert!(rendered.length.fits, "{event_type}/{p}: {}", rendered.length);
                    if let Some(html) = &rendered.html {
                        // Mail clients show the HTML: it must say what the text says.
                        assert!(html.contains(&filters::paragraphs(&rendered.text)), "{event_type}: {html}");
                    }
                    out.push_str(&format!(
                        "=== {} · {p}{} · {} · {}{}\n{}{}\n{}\n",
                        kind.as_str(),
                        lang.map(|l| format!(" · {l}")).unwrap_or_default(),
                        rendered.template,
                        rendered.length,
                        if rendered.shortened { " · shortened" } else { "" },
                        rendered.subject.map(|s| format!("Subject: {s}\n")).unwrap_or_default(),
                        rendered.text,
                        rendered.html.map(|h| format!("--- HTML\n{h}\n")).unwrap_or_default(),
                    ));
                }
            }
        }
        insta::assert_snapshot!(event_type.as_str(), out);
    }
}

/// A template is text with values: it cannot read a file, the environment or another
/// template outside the dir, so an admin's edit (or a hostile one) cannot leak secrets
/// into a post.
#[test]
fn templates_cannot_read_files_or_the_environment() {
    let path_var = std::env::var("PATH").unwrap_or_default();
    for (attempt, source) in [
        ("include", r#"{% include "/etc/passwd" %}"#),
        ("include up", r#"{% include "../bullhorn.toml" %}"#),
        ("import", r#"{% import "/etc/hostname" as h %}x"#),
        ("env", "{{ env.PATH }}"),
        ("environ", "{{ environ }}"),
    ] {
        let (_d, c) = setup(&[("missing_child/default.txt", source)]);
        let loaded = Renderer::load(&c);
        let Ok(r) = loaded else { continue };
        let out = render(&r, &c, &Target::platform(Platform::X), &event(serde_json::json!({})));
        assert!(out.error.is_some(), "{attempt}: rendered {:?}", out.text);
        assert!(!out.text.contains("root:"), "{attempt}");
        assert!(path_var.is_empty() || !out.text.contains(&path_var), "{attempt}");
        assert_eq!(out.text, "Child missing", "{attempt}: the fallback text is used");
    }
}

#[test]
fn a_correction_is_escaped_and_fitted() {
    let (_d, c) = setup(&[("missing_child/default.txt", "{{ headline }}")]);
    let r = Renderer::load(&c).expect("load");
    let e = event(serde_json::json!({ "headline": "AMBER ALERT <@123> @everyone" }));
    let discord = Target::platform(Platform::Discord);
    let retract = r.correction(&e, &discord, None);
    assert!(retract.text.starts_with("CORRECTION: Our alert"), "{}", retract.text);
    assert!(retract.text.contains(r"\<@") && !retract.text.contains("<@123"), "{}", retract.text);
    assert!(!retract.text.contains("@everyone"), "{}", retract.text);
    assert_eq!(retract.error, None);
    let long = "The child was found safe. ".repeat(30);
    let sms = r.correction(&e, &Target::platform(Platform::Bluesky), Some(&long));
    assert!(sms.length.fits, "{:?}", sms.length);
    assert!(sms.text.starts_with("CORRECTION: The child was found safe."), "{}", sms.text);
}

/// `check` flags a set whose images would reach a public channel without alt text, and
/// renders the alt and card templates against the sample.
#[test]
fn check_flags_images_without_alt_text_and_broken_alt_or_card_templates() {
    let toml = format!(
        "{MINIMAL}\n[channels.discord]\nkind = \"discord\"\nwebhook_url = \"https://discord.com/api/webhooks/1/x\"\n\
         card = \"missing\"\n"
    );
    let (_d, c) = setup_with(&toml, &[]);
    let problems = check::check(&c);
    assert!(
        problems.iter().any(|p| p.message.contains("without alt text would not be posted on discord")
            && p.message.contains("missing_child/alt.txt or alt.txt")),
        "{problems:?}"
    );
    let (_d, c) = setup_with(
        &toml,
        &[("alt.txt", "Photo: {{ headline }}"), ("missing_child/card.txt", "{{ fields.nope.deeper }}")],
    );
    let problems = check::check(&c);
    assert!(!problems.iter().any(|p| p.message.contains("without alt text")), "{problems:?}");
    assert!(problems.iter().any(|p| p.message.starts_with("the text card:")), "{problems:?}");
    let (_d, c) = setup_with(&toml, &[("missing_child/alt.txt", "{{ '' }}")]);
    let problems = check::check(&c);
    assert!(problems.iter().any(|p| p.message.contains("rendered empty")), "{problems:?}");
    let r = Renderer::load(&c).expect("load");
    assert!(r.alt_text(rule(&c), &event(serde_json::json!({}))).is_some_and(|a| a.is_err()));
}

#[test]
fn an_email_gets_its_subject_and_html_from_their_templates_with_values_escaped_for_html() {
    let (_d, c) = setup(&[
        ("missing_child/default.txt", "AMBER ALERT: {{ headline }}\nCall 911."),
        ("missing_child/email.subject.txt", "AMBER ALERT:\n  {{ headline }}"),
        ("missing_child/email.subject.es.txt", "ALERTA AMBER: {{ headline }}"),
        ("missing_child/email.html", "<html><body><h1>{{ headline }}</h1><p>{{ child_name }}</p></body></html>"),
    ]);
    let r = Renderer::load(&c).expect("load");
    let e = event(serde_json::json!({ "headline": "Child <b>missing</b> & \"taken\"" }));
    let out = render(&r, &c, &Target::platform(Platform::Email), &e);
    assert_eq!(out.subject.as_deref(), Some("AMBER ALERT: Child <b>missing</b> & \"taken\""), "one line, not HTML");
    let html = out.html.expect("html");
    assert!(html.contains("<h1>Child &lt;b&gt;missing&lt;&#x2f;b&gt; &amp; &quot;taken&quot;</h1>"), "{html}");
    assert!(out.text.starts_with("AMBER ALERT: Child <b>missing</b>"), "the text is plain: {}", out.text);
    assert_eq!(out.error, None);
    // In Spanish, the Spanish subject; no Spanish HTML, so the set's.
    let spanish = event(serde_json::json!({ "language": "es" }));
    let es = r.render_for(rule(&c), &Target::platform(Platform::Email), &spanish, DeliveryKind::Post, Some("es"));
    assert!(es.subject.as_deref().is_some_and(|s| s.starts_with("ALERTA AMBER")), "{es:?}");
    assert!(es.html.is_some());
    // Other platforms get neither.
    let x = render(&r, &c, &Target::platform(Platform::X), &e);
    assert_eq!((x.subject, x.html), (None, None));
    // An exercise says so in the subject and atop the HTML.
    let drill = event(serde_json::json!({ "status": "exercise" }));
    let out = render(&r, &c, &Target::platform(Platform::Email), &drill);
    assert!(out.subject.as_deref().is_some_and(|s| s.starts_with("[EXERCISE] AMBER ALERT")), "{out:?}");
    assert!(
        out.html.as_deref().is_some_and(|h| h.starts_with("<html><body><p><strong>[EXERCISE]</strong></p>")),
        "{out:?}"
    );
}

#[test]
fn an_email_without_templates_of_its_own_is_text_only_and_a_failing_one_is_left_out() {
    let (_d, c) = setup(&[("missing_child/default.txt", "{{ headline }}")]);
    let r = Renderer::load(&c).expect("load");
    let out = render(&r, &c, &Target::platform(Platform::Email), &event(serde_json::json!({})));
    assert_eq!((out.subject, out.html, out.error), (None, None, None));

    let (_d, c) = setup(&[
        ("missing_child/default.txt", "{{ headline }}"),
        ("email.subject.txt", "{{ no_such_field }}"),
        ("email.html", "<p>{{ headline }}</p>"),
    ]);
    let r = Renderer::load(&c).expect("load");
    let out = render(&r, &c, &Target::platform(Platform::Email), &event(serde_json::json!({})));
    assert_eq!(out.subject, None, "the text's first line stands in");
    assert_eq!(out.html.as_deref(), Some("<p>Child missing</p>"), "the templates dir's own");
    assert!(out.error.as_deref().is_some_and(|e| e.contains("email.subject.txt")), "{out:?}");
    assert_eq!(out.text, "Child missing", "the alert still goes");
}

#[test]
fn email_template_names_are_known_and_others_refused() {
    assert_eq!(template_stem("email.subject.txt"), Some(("email", Part::Subject, None)));
    assert_eq!(template_stem("email.subject.es.txt"), Some(("email", Part::Subject, Some("es"))));
    assert_eq!(template_stem("channel-press.es-MX.html"), Some(("channel-press", Part::Html, Some("es-MX"))));
    assert_eq!(template_stem("x.es.txt"), Some(("x", Part::Text, Some("es"))));
    assert_eq!(template_stem("email.subject.html"), None);
    assert_eq!(template_stem("email.es.subject.txt"), None);
    let (_d, c) = setup(&[("missing_child/default.txt", "{{ headline }}"), ("missing_child/x.html", "<p></p>")]);
    let errors = Renderer::load(&c).expect_err("x.html is not a template");
    assert!(errors.iter().any(|e| e.file.ends_with("x.html")), "{errors:?}");
}

#[test]
fn an_email_html_template_can_wrap_the_text_itself() {
    let (_d, c) = setup(&[
        ("missing_child/default.txt", "{{ headline }}\n\nCall 911.\nhttps://sheriff.example/a?b=1&c=2"),
        ("email.html", "<body>{{ text | paragraphs }}</body>"),
    ]);
    let r = Renderer::load(&c).expect("load");
    let e = event(serde_json::json!({ "headline": "Child <missing>", "status": "exercise" }));
    let out = render(&r, &c, &Target::platform(Platform::Email), &e);
    assert_eq!(
        out.html.as_deref(),
        Some(
            "<body><p>[EXERCISE] Child &lt;missing&gt;</p>\n<p>Call 911.<br>\n<a href=\"https:&#x2f;&#x2f;sheriff.example&#x2f;a?b=1&amp;c=2\">https:&#x2f;&#x2f;sheriff.example&#x2f;a?b=1&amp;c=2</a></p></body>"
        ),
        "the same words as the text, escaped, once marked as an exercise"
    );
}
