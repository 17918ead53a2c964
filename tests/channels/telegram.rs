use std::time::Duration;

use bullhorn::channel::{Channel, Outcome, PostRef, Resolution};
use bullhorn::config::{ChannelConfig, ChannelKind, TelegramSettings};
use secrecy::SecretString;

use crate::support::platforms::telegram::{self, CHAT, Fake, TOKEN};
use crate::support::platforms::{Fault, context, job, png, request};

fn channel(url: &str, token: &str, dir: &std::path::Path, timeout: Duration) -> Channel {
    let s = TelegramSettings {
        base_url: url.parse().expect("url"),
        bot_token: SecretString::from(token),
        chat_id: CHAT.to_owned(),
        silent: false,
    };
    Channel::build(&ChannelConfig::new("tg", ChannelKind::Telegram(s)), &context(dir, timeout))
}

fn sent(o: &Outcome) -> PostRef {
    match o {
        Outcome::Sent(p) => p.clone(),
        other => panic!("not sent: {other:?}"),
    }
}

#[tokio::test]
async fn messages_replies_photos_and_deletes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, fake) = telegram::start().await;
    let ch = channel(&server.url, TOKEN, dir.path(), Duration::from_secs(5));
    let post = sent(&ch.send(&request(&job(1, "AMBER ALERT: Sofia Ramirez, 6."), None, &[])).await.outcome);
    assert_eq!(
        post.url.as_deref(),
        Some(format!("https://t.me/rcso_alerts/{}", post.id.clone().unwrap_or_default()).as_str())
    );
    sent(&ch.send(&request(&job(2, "UPDATE: vehicle found."), Some(&post), &[])).await.outcome);
    let live = fake.live();
    assert_eq!(live[1].reply_to.map(|i| i.to_string()), post.id, "the update replies to the alert");

    // A photo carries the text as its caption; a text too long for a caption goes alone.
    let media = [png()];
    sent(&ch.send(&request(&job(3, "Photo of Sofia"), None, &media)).await.outcome);
    assert!(fake.live()[2].photo);
    let long = "x".repeat(1500);
    let r = ch.send(&request(&job(4, &long), None, &media)).await;
    sent(&r.outcome);
    assert!(!fake.live()[3].photo);
    assert!(r.note.as_deref().is_some_and(|n| n.contains("caption")), "{:?}", r.note);

    assert!(matches!(ch.delete(&post).await.outcome, Outcome::Sent(_)));
    assert!(matches!(ch.delete(&post).await.outcome, Outcome::Sent(_)), "already gone counts as deleted");
    assert_eq!(fake.live().len(), 3);
    assert!(ch.verify().await.into_result().expect("verify").contains("@rcso_alerts_bot"));
}

#[tokio::test]
async fn throttle_errors_and_the_documented_lack_of_duplicate_protection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, fake) = telegram::start().await;
    let ch = channel(&server.url, TOKEN, dir.path(), Duration::from_millis(400));
    fake.common.fault("sendMessage", Fake::throttle(35));
    let alert = job(5, "Shelter in place.");
    assert!(
        matches!(ch.send(&request(&alert, None, &[])).await.outcome, Outcome::RetryAfter(d, m) if d.as_secs() == 35 && m.contains("retry after"))
    );
    sent(&ch.send(&request(&alert, None, &[])).await.outcome);

    match ch.send(&request(&job(6, &"y".repeat(4097)), None, &[])).await.outcome {
        Outcome::Permanent(m) => assert!(m.contains("too long"), "{m}"),
        other => panic!("{other:?}"),
    }
    let bad = channel(&server.url, "7101234567:wrong", dir.path(), Duration::from_secs(5));
    assert!(
        matches!(bad.send(&request(&alert, None, &[])).await.outcome, Outcome::Credentials(m) if m.contains("Unauthorized"))
    );

    // A lost answer: Telegram cannot say whether it went out, so a resend may duplicate.
    fake.common.fault("sendMessage", Fault::AfterWork(Duration::from_secs(2)));
    let req = request(&alert, None, &[]);
    assert!(matches!(ch.send(&req).await.outcome, Outcome::Unknown(_)));
    assert_eq!(ch.resolve(&req).await, Resolution::CannotTell);
}
