use std::time::Duration;

use bullhorn::channel::{Channel, Outcome, Resolution};
use bullhorn::config::{ChannelConfig, ChannelKind, SmsSender, SmsSettings};
use secrecy::SecretString;

use crate::support::platforms::twilio::{self, AUTH_TOKEN, FROM, OPTED_OUT, SID};
use crate::support::platforms::{Fault, context, job, png, request};

fn channel(url: &str, token: &str, to: &[&str], dir: &std::path::Path, timeout: Duration) -> Channel {
    batched(url, token, to, dir, timeout, 1)
}

/// A channel sending to `concurrency` numbers at once (no quota).
fn batched(
    url: &str,
    token: &str,
    to: &[&str],
    dir: &std::path::Path,
    timeout: Duration,
    concurrency: usize,
) -> Channel {
    let s = SmsSettings {
        base_url: url.parse().expect("url"),
        account_sid: SID.to_owned(),
        auth_user: SID.to_owned(),
        auth_secret: SecretString::from(token),
        sender: SmsSender::From(FROM.to_owned()),
        to: to.iter().map(|t| (*t).to_owned()).collect(),
    };
    let mut cfg = ChannelConfig::new("sms", ChannelKind::Sms(s));
    cfg.quota = None;
    cfg.concurrency = concurrency;
    Channel::build(&cfg, &context(dir, timeout))
}

#[tokio::test]
async fn numbers_go_in_batches_and_a_retry_sends_only_to_those_not_reached() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, fake) = twilio::start().await;
    let to = ["+15555550101", "+15555550102", OPTED_OUT, "+15555550104", "+15555550105", "+15555550106"];
    let ch = batched(&server.url, AUTH_TOKEN, &to, dir.path(), Duration::from_millis(400), 4);
    assert_eq!(ch.caps().targets, 2, "6 numbers in batches of 4");
    let none = std::collections::BTreeMap::new();
    assert_eq!((ch.messages(0, &none), ch.messages(1, &none)), (4, 2), "each batch counts its messages");
    // A delivery begun with batches of 2 keeps them after a reload to 4.
    let begun = std::collections::BTreeMap::from([("batch:0".to_owned(), "2".to_owned())]);
    assert_eq!(ch.caps_for(&begun).targets, 3);
    assert_eq!(ch.messages(2, &begun), 2);
    let alert = job(7, "AMBER ALERT: Sofia Ramirez, 6. Call 911.");

    // The first batch: one number's request fails, one number opted out.
    fake.common.fault("create", Fault::respond(500, &[], r#"{"code":20500,"message":"Internal Server Error"}"#));
    let req = request(&alert, None, &[]);
    let first = ch.send(&req).await;
    assert!(matches!(first.outcome, Outcome::Unknown(_)), "the batch is not done: {first:?}");
    // Whichever request met the failure, the others were answered at once.
    let reached = fake.messages.lock().expect("m").len();
    assert!((2..=3).contains(&reached), "{reached} of four reached at once (one failed, one opted out)");

    // Tried again: only the number that failed is sent to; the opted-out one is skipped.
    let again = ch.send(&req).await;
    match &again.outcome {
        Outcome::Sent(p) => assert!(p.id.as_deref().is_some_and(|s| s.starts_with("SM"))),
        other => panic!("{other:?}"),
    }
    assert!(again.note.as_deref().is_some_and(|n| n.contains(OPTED_OUT) && n.contains("21610")), "{again:?}");
    let mut got: Vec<String> = fake.messages.lock().expect("m").iter().map(|m| m.to.clone()).collect();
    got.sort();
    assert_eq!(got, ["+15555550101", "+15555550102", "+15555550104"], "each reached once");

    // The second batch.
    let mut req = request(&alert, None, &[]);
    req.target = 1;
    req.step = 1;
    assert!(matches!(ch.send(&req).await.outcome, Outcome::Sent(_)));
    assert_eq!(fake.messages.lock().expect("m").len(), 5);

    // A batch whose answers were lost: the look-up finds every number reached.
    let update = job(8, "UPDATE: child found safe.");
    let req = request(&update, None, &[]);
    assert_eq!(ch.resolve(&req).await, Resolution::NotPosted);
    for _ in 0..4 {
        fake.common.fault("create", Fault::AfterWork(Duration::from_secs(2)));
    }
    assert!(matches!(ch.send(&req).await.outcome, Outcome::Unknown(_)));
    // Three are found; the opted-out number is not (it was refused), so not all went.
    assert_eq!(ch.resolve(&req).await, Resolution::NotPosted);
    let before = fake.messages.lock().expect("m").len();
    assert_eq!(before, 8, "the three reached numbers got the update");
    let last = ch.send(&req).await;
    assert!(matches!(last.outcome, Outcome::Sent(_)), "{last:?}");
    assert_eq!(fake.messages.lock().expect("m").len(), before, "none sent twice: only the opted-out number was tried");
}

#[tokio::test]
async fn one_message_per_recipient_with_lost_answers_found_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, fake) = twilio::start().await;
    let to = ["+15555550101", "+15555550102"];
    let ch = channel(&server.url, AUTH_TOKEN, &to, dir.path(), Duration::from_millis(400));
    assert_eq!(ch.caps().targets, 2);
    let alert = job(1, "AMBER ALERT: Sofia Ramirez, 6. Call 911.");
    let media = [png()];
    for target in 0..2 {
        let mut req = request(&alert, None, &media);
        req.target = target;
        match ch.send(&req).await.outcome {
            Outcome::Sent(p) => assert!(p.id.as_deref().is_some_and(|s| s.starts_with("SM"))),
            other => panic!("{other:?}"),
        }
    }
    let sent: Vec<(String, Option<String>)> =
        fake.messages.lock().expect("m").iter().map(|m| (m.to.clone(), m.media.clone())).collect();
    assert_eq!(sent[0].0, to[0]);
    assert_eq!(sent[1].0, to[1]);
    assert_eq!(sent[0].1.as_deref(), Some("https://media.sheriff.example/amber/sofia.png"), "MMS by URL");
    assert!(ch.verify().await.into_result().expect("verify").contains("RCSO Alerts"));

    // A lost answer: today's messages to that number show whether it went out.
    let update = job(2, "UPDATE: child found safe.");
    let mut req = request(&update, None, &[]);
    req.target = 1;
    assert_eq!(ch.resolve(&req).await, Resolution::NotPosted);
    fake.common.fault("create", Fault::AfterWork(Duration::from_secs(2)));
    assert!(matches!(ch.send(&req).await.outcome, Outcome::Unknown(_)));
    assert!(matches!(ch.resolve(&req).await, Resolution::Posted(p) if p.id.is_some()));
}

#[tokio::test]
async fn errors_are_twilios() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, fake) = twilio::start().await;
    let ch = channel(&server.url, AUTH_TOKEN, &[OPTED_OUT], dir.path(), Duration::from_secs(5));
    let alert = job(3, "Road closed.");
    match ch.send(&request(&alert, None, &[])).await.outcome {
        Outcome::Permanent(m) => assert!(m.contains("21610") && m.contains(OPTED_OUT), "{m}"),
        other => panic!("{other:?}"),
    }
    let ch = channel(&server.url, AUTH_TOKEN, &["+15555550101"], dir.path(), Duration::from_secs(5));
    fake.common.fault("create", Fault::respond(429, &[], r#"{"code":20429,"message":"Too Many Requests","more_info":"https://www.twilio.com/docs/errors/20429","status":429}"#));
    assert!(matches!(ch.send(&request(&alert, None, &[])).await.outcome, Outcome::RetryAfter(..)));
    assert!(matches!(ch.send(&request(&alert, None, &[])).await.outcome, Outcome::Sent(_)));
    let bad = channel(&server.url, "wrong", &["+15555550101"], dir.path(), Duration::from_secs(5));
    assert!(
        matches!(bad.send(&request(&alert, None, &[])).await.outcome, Outcome::Credentials(m) if m.contains("20003"))
    );
}
