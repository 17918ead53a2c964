use std::time::Duration;

use bullhorn::channel::{Channel, Outcome, PostRef, Resolution};
use bullhorn::config::{ChannelConfig, ChannelKind, MastodonSettings};
use secrecy::SecretString;

use crate::support::platforms::mastodon::{self, Fake, TOKEN};
use crate::support::platforms::{Fault, context, job, png, request};

fn channel(url: &str, token: &str, dir: &std::path::Path, timeout: Duration) -> Channel {
    let s = MastodonSettings {
        base_url: url.parse().expect("url"),
        access_token: SecretString::from(token),
        visibility: "public".to_owned(),
    };
    Channel::build(&ChannelConfig::new("masto", ChannelKind::Mastodon(s)), &context(dir, timeout))
}

fn sent(o: &Outcome) -> PostRef {
    match o {
        Outcome::Sent(p) => p.clone(),
        other => panic!("not sent: {other:?}"),
    }
}

#[tokio::test]
async fn posts_replies_and_deletes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, fake) = mastodon::start().await;
    let ch = channel(&server.url, TOKEN, dir.path(), Duration::from_secs(5));

    let alert = job(1, "AMBER ALERT: Sofia Ramirez, 6, missing from Lakeview Park. Call 911.");
    let post = sent(&ch.send(&request(&alert, None, &[])).await.outcome);
    assert_eq!(
        post.url.as_deref(),
        Some(format!("{}/@rcso/{}", server.url, post.id.as_deref().unwrap_or("")).as_str())
    );
    let created = fake.common.hits_to("POST", "/api/v1/statuses");
    assert_eq!(created[0].header("idempotency-key"), Some("bh-key-1"));
    assert_eq!(created[0].json()["visibility"], "public");
    assert_eq!(created[0].json()["language"], "en", "the primary language subtag");

    let update = job(2, "UPDATE: the vehicle was found. The child is still missing.");
    let reply = sent(&ch.send(&request(&update, Some(&post), &[])).await.outcome);
    let live = fake.live();
    assert_eq!(live.len(), 2);
    assert_eq!(live[1].in_reply_to_id, post.id, "the update threads under the alert");

    assert!(matches!(ch.delete(&reply).await.outcome, Outcome::Sent(_)));
    assert_eq!(fake.live().len(), 1);
    assert!(matches!(ch.delete(&reply).await.outcome, Outcome::Sent(_)), "already gone counts as deleted");
    assert!(ch.caps().threads && ch.caps().delete);
}

#[tokio::test]
async fn a_reply_to_a_deleted_post_goes_out_on_its_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, fake) = mastodon::start().await;
    let ch = channel(&server.url, TOKEN, dir.path(), Duration::from_secs(5));
    let gone = PostRef::id("999");
    let update = job(3, "UPDATE: road reopened.");
    sent(&ch.send(&request(&update, Some(&gone), &[])).await.outcome);
    assert_eq!(fake.live()[0].in_reply_to_id, None);
}

#[tokio::test]
async fn media_is_uploaded_with_alt_text_and_waited_for() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, fake) = mastodon::start().await;
    let ch = channel(&server.url, TOKEN, dir.path(), Duration::from_secs(5));
    let media = [png()];
    let alert = job(4, "AMBER ALERT with photo");
    let r = ch.send(&request(&alert, None, &media)).await;
    sent(&r.outcome);
    assert_eq!(r.note, None);
    let status = &fake.live()[0];
    assert_eq!(status.media.len(), 1);
    let media_state = fake.media.lock().expect("media").get(&status.media[0]).cloned().expect("uploaded");
    assert_eq!(media_state.1, "Photo of Sofia Ramirez, 6");
    assert!(fake.common.hits_to("GET", "/api/v1/media/").len() >= 2, "polled while processing");

    // An upload that fails leaves the alert to go out without the image, and says so.
    fake.common.fault("media", Fault::respond(500, &[], r#"{"error":"Internal server error"}"#));
    let r = ch.send(&request(&job(5, "AMBER ALERT, image upload fails"), None, &media)).await;
    sent(&r.outcome);
    assert!(r.note.as_deref().is_some_and(|n| n.contains("without an image")), "{:?}", r.note);
    assert!(fake.live()[1].media.is_empty());
}

#[tokio::test]
async fn a_throttle_names_its_reset_then_the_post_goes_through() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, fake) = mastodon::start().await;
    let ch = channel(&server.url, TOKEN, dir.path(), Duration::from_secs(5));
    fake.common.fault("statuses", Fake::throttle_in(120));
    let alert = job(6, "Shelter in place");
    let r = ch.send(&request(&alert, None, &[])).await;
    assert_eq!(r.http_status, Some(429));
    match r.outcome {
        Outcome::RetryAfter(d, m) => {
            assert!((115..=121).contains(&d.as_secs()), "{d:?}");
            assert!(m.contains("Too many requests"));
        }
        other => panic!("{other:?}"),
    }
    sent(&ch.send(&request(&alert, None, &[])).await.outcome);
    assert_eq!(fake.live().len(), 1);
}

#[tokio::test]
async fn too_long_is_permanent_and_a_bad_token_is_a_credentials_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, _fake) = mastodon::start().await;
    let ch = channel(&server.url, TOKEN, dir.path(), Duration::from_secs(5));
    let long = job(7, &"x".repeat(501));
    match ch.send(&request(&long, None, &[])).await.outcome {
        Outcome::Permanent(m) => assert!(m.contains("422") && m.contains("character limit"), "{m}"),
        other => panic!("{other:?}"),
    }
    let bad = channel(&server.url, "revoked", dir.path(), Duration::from_secs(5));
    assert!(
        matches!(bad.send(&request(&job(8, "x"), None, &[])).await.outcome, Outcome::Credentials(m) if m.contains("invalid"))
    );
    assert!(bad.verify().await.into_result().is_err());
    assert!(ch.verify().await.into_result().expect("verify").contains("@rcso"));
}

#[tokio::test]
async fn a_timeout_after_the_post_is_resent_with_the_same_key_and_posts_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, fake) = mastodon::start().await;
    let ch = channel(&server.url, TOKEN, dir.path(), Duration::from_millis(300));
    fake.common.fault("statuses", Fault::AfterWork(Duration::from_secs(2)));
    let alert = job(9, "Evacuate now");
    let req = request(&alert, None, &[]);
    assert!(matches!(ch.send(&req).await.outcome, Outcome::Unknown(_)));
    assert_eq!(ch.resolve(&req).await, Resolution::Deduplicated);
    let again = sent(&ch.send(&req).await.outcome);
    assert_eq!(fake.all().len(), 1, "the instance answered the repeat with the status it made");
    assert_eq!(again.id, fake.all()[0].id.clone().into());
}
