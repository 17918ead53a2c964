use std::time::Duration;

use bullhorn::channel::{Channel, Outcome, Resolution};
use bullhorn::config::{BearerOrRefresh, ChannelConfig, ChannelKind, NextdoorSettings, OAuth2Settings};
use secrecy::SecretString;

use crate::support::platforms::nextdoor::{self, CLIENT_ID, CLIENT_SECRET};
use crate::support::platforms::{Fault, context, job, png, request};

#[tokio::test]
async fn posts_to_boundaries_with_refreshed_tokens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, fake) = nextdoor::start().await;
    let s = NextdoorSettings {
        base_url: server.url.parse().expect("url"),
        auth: BearerOrRefresh::OAuth2(OAuth2Settings {
            token_url: format!("{}/v2/token", server.url).parse().expect("url"),
            client_id: CLIENT_ID.to_owned(),
            client_secret: Some(SecretString::from(CLIENT_SECRET)),
            refresh_token: Some(SecretString::from("nd-refresh-0")),
            access_token: None,
        }),
        group_ids: vec!["g-1201".to_owned(), "g-1202".to_owned()],
    };
    let ch = Channel::build(
        &ChannelConfig::new("nd", ChannelKind::Nextdoor(s)),
        &context(dir.path(), Duration::from_millis(400)),
    );
    let media = [png()];
    let r = ch.send(&request(&job(1, "AMBER ALERT: Sofia Ramirez, 6."), None, &media)).await;
    match &r.outcome {
        Outcome::Sent(p) => assert_eq!(p.url.as_deref(), Some("https://nextdoor.com/p/Rcso1")),
        other => panic!("{other:?}"),
    }
    let post = fake.posts.lock().expect("posts")[0].clone();
    assert_eq!(post.group_ids, ["g-1201", "g-1202"]);
    assert_eq!(post.media, ["https://media.sheriff.example/amber/sofia.png"]);
    assert!(ch.verify().await.into_result().expect("verify").contains("Ruiz County"));
    assert!(!ch.caps().delete && !ch.caps().threads);

    // The token is revoked: refreshed once (client credentials as Basic auth), then posted.
    fake.tokens.lock().expect("t").0 = "revoked".to_owned();
    assert!(matches!(ch.send(&request(&job(2, "UPDATE"), None, &[])).await.outcome, Outcome::Sent(_)));
    assert_eq!(fake.posts.lock().expect("posts").len(), 2);

    fake.common.fault(
        "create",
        Fault::respond(429, &[("retry-after", "60")], r#"{"errors":[{"code":429,"message":"Too many requests"}]}"#),
    );
    assert!(
        matches!(ch.send(&request(&job(3, "x"), None, &[])).await.outcome, Outcome::RetryAfter(d, _) if d.as_secs() == 60)
    );
    assert!(
        matches!(ch.send(&request(&job(4, &"n".repeat(9000)), None, &[])).await.outcome, Outcome::Permanent(m) if m.contains("8192"))
    );
    fake.common.fault("create", Fault::AfterWork(Duration::from_secs(2)));
    let j = job(5, "Evacuate.");
    let req = request(&j, None, &[]);
    assert!(matches!(ch.send(&req).await.outcome, Outcome::Unknown(_)));
    assert_eq!(ch.resolve(&req).await, Resolution::CannotTell);
}
