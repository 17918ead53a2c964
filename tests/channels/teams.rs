use std::time::Duration;

use bullhorn::channel::{Channel, Outcome, Resolution};
use bullhorn::config::{ChannelConfig, ChannelKind, SecretUrl, TeamsSettings};

use crate::support::platforms::teams::{self, Fake};
use crate::support::platforms::{Fault, context, job, png, request};

#[tokio::test]
async fn posts_adaptive_cards_and_handles_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, fake) = teams::start().await;
    let build = |url: String, timeout| {
        let s = TeamsSettings { webhook_url: SecretUrl::new(url.parse().expect("url")) };
        Channel::build(&ChannelConfig::new("teams", ChannelKind::Teams(s)), &context(dir.path(), timeout))
    };
    let ch = build(Fake::url(&server.url), Duration::from_millis(400));
    let media = [png()];
    let r = ch.send(&request(&job(1, "AMBER ALERT: Sofia Ramirez, 6."), None, &media)).await;
    assert!(matches!(r.outcome, Outcome::Sent(_)), "{r:?}");
    assert_eq!(r.http_status, Some(202));
    let card = fake.cards.lock().expect("cards")[0].clone();
    assert_eq!(card["body"][0]["text"], "AMBER ALERT: Sofia Ramirez, 6.");
    assert_eq!(card["body"][1]["altText"], "Photo of Sofia Ramirez, 6");
    assert!(!ch.caps().delete);

    fake.common.fault("post", Fault::respond(429, &[("retry-after", "10")], ""));
    assert!(
        matches!(ch.send(&request(&job(2, "x"), None, &[])).await.outcome, Outcome::RetryAfter(d, _) if d.as_secs() == 10)
    );
    let big = "w".repeat(30_000);
    assert!(
        matches!(ch.send(&request(&job(3, &big), None, &[])).await.outcome, Outcome::Permanent(m) if m.contains("413"))
    );
    let wrong = build(format!("{}{}?sig=nope", server.url, teams::PATH), Duration::from_secs(5));
    assert!(matches!(wrong.send(&request(&job(4, "x"), None, &[])).await.outcome, Outcome::Credentials(_)));

    fake.common.fault("post", Fault::AfterWork(Duration::from_secs(2)));
    let j = job(5, "Evacuate.");
    let req = request(&j, None, &[]);
    assert!(matches!(ch.send(&req).await.outcome, Outcome::Unknown(_)));
    assert_eq!(ch.resolve(&req).await, Resolution::CannotTell, "a flow run returns no id to look for");
}
