use std::time::Duration;

use bullhorn::channel::{Channel, Outcome, PostRef, Resolution};
use bullhorn::config::{ChannelConfig, ChannelKind, DiscordSettings, SecretUrl};

use crate::support::platforms::discord::{self, Fake};
use crate::support::platforms::{Fault, context, job, png, request};

fn channel(url: &str, dir: &std::path::Path, timeout: Duration) -> Channel {
    let s = DiscordSettings {
        webhook_url: SecretUrl::new(url.parse().expect("url")),
        username: Some("RCSO Alerts".to_owned()),
    };
    Channel::build(&ChannelConfig::new("discord", ChannelKind::Discord(s)), &context(dir, timeout))
}

fn sent(o: &Outcome) -> PostRef {
    match o {
        Outcome::Sent(p) => p.clone(),
        other => panic!("not sent: {other:?}"),
    }
}

#[tokio::test]
async fn posts_without_pinging_anyone_with_images_and_deletes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, fake) = discord::start().await;
    let ch = channel(&Fake::url(&server.url), dir.path(), Duration::from_secs(5));
    let post = sent(&ch.send(&request(&job(1, "AMBER ALERT @everyone: Sofia Ramirez, 6."), None, &[])).await.outcome);
    let m = &fake.live()[0];
    assert_eq!(m.allowed_mentions, serde_json::json!({ "parse": [] }), "no mention can ping");
    assert_eq!(m.username.as_deref(), Some("RCSO Alerts"));
    assert_eq!(
        fake.common.hits_to("POST", "/api/webhooks/")[0].query,
        "wait=true",
        "the message comes back with its id"
    );

    let media = [png()];
    sent(&ch.send(&request(&job(2, "Photo of Sofia"), None, &media)).await.outcome);
    assert_eq!(fake.live()[1].attachment_description.as_deref(), Some("Photo of Sofia Ramirez, 6"));
    // An image Discord refuses for its size (40005): the alert goes out without it.
    fake.common.fault("execute", Fault::respond(413, &[], r#"{"message": "Request entity too large", "code": 40005}"#));
    let r = ch.send(&request(&job(3, "Photo of Sofia, too large"), None, &media)).await;
    sent(&r.outcome);
    assert!(r.note.as_deref().is_some_and(|n| n.contains("HTTP 413")), "{:?}", r.note);
    assert_eq!(fake.live()[2].content, "Photo of Sofia, too large");
    assert_eq!(fake.live()[2].attachment_description, None);

    assert!(matches!(ch.delete(&post).await.outcome, Outcome::Sent(_)));
    assert!(matches!(ch.delete(&post).await.outcome, Outcome::Sent(_)), "already gone counts as deleted");
    assert_eq!(fake.live().len(), 2);
    assert!(ch.verify().await.into_result().expect("verify").contains("RCSO Alerts"));
}

#[tokio::test]
async fn throttle_errors_a_deleted_webhook_and_lost_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, fake) = discord::start().await;
    let ch = channel(&Fake::url(&server.url), dir.path(), Duration::from_millis(400));
    fake.common.fault("execute", Fake::throttle(1.5));
    let alert = job(3, "Road closed.");
    assert!(
        matches!(ch.send(&request(&alert, None, &[])).await.outcome, Outcome::RetryAfter(d, _) if d.as_secs() == 2)
    );
    sent(&ch.send(&request(&alert, None, &[])).await.outcome);
    match ch.send(&request(&job(4, &"z".repeat(2001)), None, &[])).await.outcome {
        Outcome::Permanent(m) => assert!(m.contains("Invalid Form Body"), "{m}"),
        other => panic!("{other:?}"),
    }
    // A deleted webhook (404 Unknown Webhook) pauses the channel rather than being
    // retried message by message.
    let gone = channel(&format!("{}/api/webhooks/1/deleted", server.url), dir.path(), Duration::from_secs(5));
    assert!(
        matches!(gone.send(&request(&alert, None, &[])).await.outcome, Outcome::Credentials(m) if m.contains("Unknown Webhook"))
    );

    fake.common.fault("execute", Fault::AfterWork(Duration::from_secs(2)));
    let req = request(&alert, None, &[]);
    assert!(matches!(ch.send(&req).await.outcome, Outcome::Unknown(_)));
    assert_eq!(ch.resolve(&req).await, Resolution::CannotTell, "webhooks have no idempotency");
}
