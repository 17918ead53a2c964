use std::time::Duration;

use bullhorn::channel::{Channel, Outcome, PostRef, Resolution};
use bullhorn::config::{ChannelConfig, ChannelKind, SecretUrl, SlackSettings};
use secrecy::SecretString;

use crate::support::platforms::slack::{self, BOT_TOKEN, CHANNEL, Fake, HOOK_PATH};
use crate::support::platforms::{Fault, context, job, png, request};

fn build(s: SlackSettings, dir: &std::path::Path, timeout: Duration) -> Channel {
    Channel::build(&ChannelConfig::new("slack", ChannelKind::Slack(s)), &context(dir, timeout))
}

fn api(url: &str, token: &str) -> SlackSettings {
    SlackSettings::Api {
        base_url: format!("{url}/api").parse().expect("url"),
        bot_token: SecretString::from(token),
        channel: CHANNEL.to_owned(),
    }
}

fn sent(o: &Outcome) -> PostRef {
    match o {
        Outcome::Sent(p) => p.clone(),
        other => panic!("not sent: {other:?}"),
    }
}

#[tokio::test]
async fn the_web_api_threads_and_deletes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, fake) = slack::start().await;
    let ch = build(api(&server.url, BOT_TOKEN), dir.path(), Duration::from_secs(5));
    assert!(ch.caps().delete);
    let post = sent(&ch.send(&request(&job(1, "*AMBER ALERT*: Sofia Ramirez, 6."), None, &[])).await.outcome);
    assert!(post.id.as_deref().is_some_and(|ts| ts.starts_with("1503435956.")));
    sent(&ch.send(&request(&job(2, "UPDATE: vehicle found."), Some(&post), &[])).await.outcome);
    assert_eq!(fake.live()[1].thread_ts, post.id, "the update is in the alert's thread");
    let media = [png()];
    sent(&ch.send(&request(&job(3, "Photo of Sofia"), None, &media)).await.outcome);
    let photo = &fake.live()[2];
    assert_eq!(photo.attachments[0]["fallback"], "Photo of Sofia Ramirez, 6");
    assert_eq!(photo.attachments[0]["image_url"], "https://media.sheriff.example/amber/sofia.png");
    assert_eq!(photo.mrkdwn, Some(false), "markup in values stays text");
    assert!(matches!(ch.delete(&post).await.outcome, Outcome::Sent(_)));
    assert!(matches!(ch.delete(&post).await.outcome, Outcome::Sent(_)), "already gone counts as deleted");
    assert!(ch.verify().await.into_result().expect("verify").contains("RCSO"));

    let bad = build(api(&server.url, "xoxb-revoked"), dir.path(), Duration::from_secs(5));
    assert!(
        matches!(bad.send(&request(&job(4, "x"), None, &[])).await.outcome, Outcome::Credentials(m) if m.contains("invalid_auth"))
    );
    fake.common.fault("postMessage", Fake::throttle(30));
    assert!(
        matches!(ch.send(&request(&job(5, "x"), None, &[])).await.outcome, Outcome::RetryAfter(d, _) if d.as_secs() == 30)
    );
}

#[tokio::test]
async fn an_incoming_webhook_posts_and_says_what_it_cannot_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, fake) = slack::start().await;
    let hook = || SlackSettings::Webhook {
        webhook_url: SecretUrl::new(format!("{}{HOOK_PATH}", server.url).parse().expect("url")),
    };
    let ch = build(hook(), dir.path(), Duration::from_millis(400));
    assert!(!ch.caps().delete, "a webhook returns no message id");
    sent(&ch.send(&request(&job(1, "Road closed: SH-358."), None, &[])).await.outcome);
    assert_eq!(fake.live()[0].text, "Road closed: SH-358.");
    assert!(ch.verify().await.into_result().is_err(), "cannot be checked without posting");

    fake.common.fault("webhook", Fake::throttle(1));
    assert!(matches!(ch.send(&request(&job(2, "x"), None, &[])).await.outcome, Outcome::RetryAfter(..)));
    fake.common.fault("webhook", Fault::respond(400, &[], "invalid_payload"));
    assert!(
        matches!(ch.send(&request(&job(3, "x"), None, &[])).await.outcome, Outcome::Permanent(m) if m.contains("invalid_payload"))
    );
    fake.archived.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(
        matches!(ch.send(&request(&job(4, "x"), None, &[])).await.outcome, Outcome::Credentials(m) if m.contains("archived"))
    );
    fake.archived.store(false, std::sync::atomic::Ordering::SeqCst);

    fake.common.fault("webhook", Fault::AfterWork(Duration::from_secs(2)));
    let req_job = job(5, "Evacuate.");
    let req = request(&req_job, None, &[]);
    assert!(matches!(ch.send(&req).await.outcome, Outcome::Unknown(_)));
    assert_eq!(ch.resolve(&req).await, Resolution::CannotTell);
}
