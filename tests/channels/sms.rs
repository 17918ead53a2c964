use std::time::Duration;

use bullhorn::channel::{Channel, Outcome, Resolution};
use bullhorn::config::{ChannelConfig, ChannelKind, SmsSender, SmsSettings};
use secrecy::SecretString;

use crate::support::platforms::twilio::{self, AUTH_TOKEN, FROM, OPTED_OUT, SID};
use crate::support::platforms::{Fault, context, job, png, request};

fn channel(url: &str, token: &str, to: &[&str], dir: &std::path::Path, timeout: Duration) -> Channel {
    let s = SmsSettings {
        base_url: url.parse().expect("url"),
        account_sid: SID.to_owned(),
        auth_user: SID.to_owned(),
        auth_secret: SecretString::from(token),
        sender: SmsSender::From(FROM.to_owned()),
        to: to.iter().map(|t| (*t).to_owned()).collect(),
    };
    Channel::build(&ChannelConfig::new("sms", ChannelKind::Sms(s)), &context(dir, timeout))
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
