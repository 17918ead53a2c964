//! Facebook Pages, Instagram and Threads against the fake Graph API.

use std::time::Duration;

use bullhorn::channel::{Channel, Outcome, PostRef, Resolution};
use bullhorn::config::{ChannelConfig, ChannelKind, MetaSettings};
use secrecy::SecretString;

use crate::support::platforms::meta::{self, Fake, IG, PAGE, THREADS, TOKEN};
use crate::support::platforms::{Fault, context, job, png, request};

fn settings(url: &str, id: &str, token: &str) -> MetaSettings {
    MetaSettings {
        base_url: format!("{url}/v23.0").parse().expect("url"),
        account_id: id.to_owned(),
        access_token: SecretString::from(token),
    }
}

fn build(kind: ChannelKind, dir: &std::path::Path, timeout: Duration) -> Channel {
    Channel::build(&ChannelConfig::new("meta", kind), &context(dir, timeout))
}

fn sent(o: &Outcome) -> PostRef {
    match o {
        Outcome::Sent(p) => p.clone(),
        other => panic!("not sent: {other:?}"),
    }
}

#[tokio::test]
async fn facebook_posts_comments_photos_and_deletes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, fake) = meta::start().await;
    let fb = build(ChannelKind::Facebook(settings(&server.url, PAGE, TOKEN)), dir.path(), Duration::from_secs(5));

    let post = sent(&fb.send(&request(&job(1, "AMBER ALERT: Sofia Ramirez, 6."), None, &[])).await.outcome);
    let id = post.id.clone().expect("id");
    assert!(id.starts_with(&format!("{PAGE}_")));
    assert_eq!(post.url, Some(format!("https://www.facebook.com/{id}")));
    let hit = &fake.common.hits_to("POST", "/feed")[0];
    assert!(hit.path.starts_with("/v23.0/"), "the API version is part of the base URL");
    assert_eq!(hit.form().get("message").map(String::as_str), Some("AMBER ALERT: Sofia Ramirez, 6."));

    let comment = sent(&fb.send(&request(&job(2, "UPDATE: vehicle found."), Some(&post), &[])).await.outcome);
    assert_eq!(fake.live("comment")[0].parent.as_deref(), Some(id.as_str()));
    assert!(comment.id.is_some());

    let media = [png()];
    sent(&fb.send(&request(&job(3, "Photo of Sofia"), None, &media)).await.outcome);
    let photo = fake.live("feed").pop().expect("photo post");
    assert_eq!(photo.image.as_deref(), Some("https://media.sheriff.example/amber/sofia.png"));
    assert_eq!(photo.alt.as_deref(), Some("Photo of Sofia Ramirez, 6"));

    // A photo Facebook refuses: the text goes out alone, and the record says so.
    let mut bad = png();
    bad.url = Some("http://not-public.example/x.png".to_owned());
    let r = fb.send(&request(&job(4, "Photo refused"), None, &[bad])).await;
    sent(&r.outcome);
    assert!(r.note.as_deref().is_some_and(|n| n.contains("without an image")), "{:?}", r.note);

    assert!(matches!(fb.delete(&post).await.outcome, Outcome::Sent(_)));
    assert!(matches!(fb.delete(&post).await.outcome, Outcome::Sent(_)), "already gone counts as deleted");
    // Its comments' parent is gone: an update goes to the Page instead.
    sent(&fb.send(&request(&job(5, "UPDATE: child found safe."), Some(&post), &[])).await.outcome);
    assert!(fake.live("feed").iter().any(|o| o.text == "UPDATE: child found safe."));
    assert!(fb.verify().await.into_result().expect("verify").contains("Ruiz County"));
}

#[tokio::test]
async fn facebook_throttles_tokens_and_lost_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, fake) = meta::start().await;
    let fb = build(ChannelKind::Facebook(settings(&server.url, PAGE, TOKEN)), dir.path(), Duration::from_millis(400));
    fake.common.fault("feed", Fake::throttle(12));
    let alert = job(6, "Road closed: SH-358 at Airline Rd.");
    match fb.send(&request(&alert, None, &[])).await.outcome {
        Outcome::RetryAfter(d, m) => {
            assert_eq!(d, Duration::from_secs(720));
            assert!(m.contains("code 32"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    let bad = build(ChannelKind::Facebook(settings(&server.url, PAGE, "expired")), dir.path(), Duration::from_secs(5));
    assert!(
        matches!(bad.send(&request(&alert, None, &[])).await.outcome, Outcome::Credentials(m) if m.contains("190"))
    );

    fake.common.fault("feed", Fault::AfterWork(Duration::from_secs(2)));
    let req = request(&alert, None, &[]);
    assert!(matches!(fb.send(&req).await.outcome, Outcome::Unknown(_)));
    let found = match fb.resolve(&req).await {
        Resolution::Posted(p) => p,
        other => panic!("{other:?}"),
    };
    // Sent again anyway: Facebook refuses the duplicate, which is recognised as this post.
    assert_eq!(sent(&fb.send(&req).await.outcome).id, found.id);
    assert_eq!(fake.live("feed").len(), 1, "posted once");
}

#[tokio::test]
async fn instagram_publishes_a_container_and_comments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, fake) = meta::start().await;
    let ig = build(ChannelKind::Instagram(settings(&server.url, IG, TOKEN)), dir.path(), Duration::from_secs(5));
    assert!(!ig.caps().delete, "the API cannot delete a post");

    match ig.send(&request(&job(1, "Text only"), None, &[])).await.outcome {
        Outcome::Permanent(m) => assert!(m.contains("need an image"), "{m}"),
        other => panic!("{other:?}"),
    }
    let media = [png()];
    let post = sent(&ig.send(&request(&job(2, "AMBER ALERT: Sofia Ramirez, 6."), None, &media)).await.outcome);
    let published = fake.live("ig_media");
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].text, "AMBER ALERT: Sofia Ramirez, 6.");
    assert_eq!(published[0].alt.as_deref(), Some("Photo of Sofia Ramirez, 6"));
    assert!(post.url.as_deref().is_some_and(|u| u.starts_with("https://www.instagram.com/p/")));
    assert!(fake.common.hits().iter().any(|h| h.query.contains("status_code")), "waited for the container");

    sent(&ig.send(&request(&job(3, "UPDATE: vehicle found."), Some(&post), &[])).await.outcome);
    assert_eq!(fake.live("ig_comment")[0].parent, post.id);
    assert!(ig.verify().await.into_result().expect("verify").contains("@ruizcountysheriff"));
}

#[tokio::test]
async fn instagram_and_threads_never_publish_a_saved_container_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, fake) = meta::start().await;
    let ig = build(ChannelKind::Instagram(settings(&server.url, IG, TOKEN)), dir.path(), Duration::from_millis(400));
    let media = [png()];
    // The publish is answered too late: the post exists, the answer is lost.
    fake.common.fault("ig_publish", Fault::AfterWork(Duration::from_secs(2)));
    let alert = job(4, "Evacuate Zone B now.");
    assert!(matches!(ig.send(&request(&alert, None, &media)).await.outcome, Outcome::Unknown(_)));
    // What the store kept: the container id, saved before publishing.
    let container = fake.containers.lock().expect("c").keys().next().cloned().expect("container");
    let mut resumed = alert.clone();
    resumed.scratch.insert("container:0".to_owned(), container.clone());
    let req = request(&resumed, None, &media);
    assert!(matches!(ig.resolve(&req).await, Resolution::Posted(_)));
    sent(&ig.send(&req).await.outcome);
    assert_eq!(fake.live("ig_media").len(), 1, "published once");
    assert_eq!(fake.containers.lock().expect("c").len(), 1, "no second container");

    let th = build(ChannelKind::Threads(settings(&server.url, THREADS, TOKEN)), dir.path(), Duration::from_millis(400));
    fake.common.fault("th_publish", Fault::AfterWork(Duration::from_secs(2)));
    let alert = job(5, "Shelter in place: gas leak on Main St.");
    assert!(matches!(th.send(&request(&alert, None, &[])).await.outcome, Outcome::Unknown(_)));
    let container = fake
        .containers
        .lock()
        .expect("c")
        .iter()
        .find(|(_, c)| c.owner == THREADS)
        .map(|(k, _)| k.clone())
        .expect("container");
    let mut resumed = alert.clone();
    resumed.scratch.insert("container:0".to_owned(), container);
    let found = sent(&th.send(&request(&resumed, None, &[])).await.outcome);
    assert_eq!(fake.live("thread").len(), 1, "published once");
    assert!(found.url.as_deref().is_some_and(|u| u.contains("threads.net")));
}

#[tokio::test]
async fn threads_posts_replies_and_deletes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, fake) = meta::start().await;
    let th = build(ChannelKind::Threads(settings(&server.url, THREADS, TOKEN)), dir.path(), Duration::from_secs(5));
    let post = sent(&th.send(&request(&job(1, "BOLO: silver Honda Odyssey, TX NRT-4471."), None, &[])).await.outcome);
    let create = &fake.common.hits_to("POST", "/threads")[0];
    assert_eq!(create.form().get("media_type").map(String::as_str), Some("TEXT"));
    let reply = sent(&th.send(&request(&job(2, "UPDATE: vehicle located."), Some(&post), &[])).await.outcome);
    assert_eq!(fake.live("thread")[1].parent, post.id);
    let media = [png()];
    sent(&th.send(&request(&job(3, "Photo"), None, &media)).await.outcome);
    assert_eq!(fake.live("thread")[2].image.as_deref(), Some("https://media.sheriff.example/amber/sofia.png"));
    assert!(matches!(th.delete(&reply).await.outcome, Outcome::Sent(_)));
    assert_eq!(fake.live("thread").len(), 2);
    fake.common.fault("th_create", Fake::throttle(3));
    assert!(
        matches!(th.send(&request(&job(4, "x"), None, &[])).await.outcome, Outcome::RetryAfter(d, _) if d.as_secs() == 180)
    );
    assert!(th.verify().await.into_result().expect("verify").contains("@ruizcountysheriff"));
}
