use std::time::Duration;

use bullhorn::channel::{Channel, Outcome, PostRef, Resolution};
use bullhorn::config::{ChannelConfig, ChannelKind, OAuth2Settings, XAuth, XSettings};
use secrecy::SecretString;

use crate::support::platforms::x::{self, ACCESS_SECRET, ACCESS_TOKEN, CLIENT_ID, CONSUMER_KEY, CONSUMER_SECRET, Fake};
use crate::support::platforms::{Fault, context, job, png, request};

fn oauth1(secret: &str) -> XAuth {
    XAuth::OAuth1 {
        consumer_key: SecretString::from(CONSUMER_KEY),
        consumer_secret: SecretString::from(CONSUMER_SECRET),
        access_token: SecretString::from(ACCESS_TOKEN),
        access_token_secret: SecretString::from(secret),
    }
}

fn channel(url: &str, auth: XAuth, dir: &std::path::Path, timeout: Duration) -> Channel {
    let s = XSettings { base_url: url.parse().expect("url"), username: Some("RuizSheriff".to_owned()), auth };
    Channel::build(&ChannelConfig::new("x", ChannelKind::X(s)), &context(dir, timeout))
}

fn sent(o: &Outcome) -> PostRef {
    match o {
        Outcome::Sent(p) => p.clone(),
        other => panic!("not sent: {other:?}"),
    }
}

#[tokio::test]
async fn signed_posts_replies_media_and_deletes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, fake) = x::start().await;
    let ch = channel(&server.url, oauth1(ACCESS_SECRET), dir.path(), Duration::from_secs(5));

    let alert = job(1, "AMBER ALERT: Sofia Ramirez, 6. Call 911. https://sheriff.example/amber/1 #AmberAlert");
    let post = sent(&ch.send(&request(&alert, None, &[])).await.outcome);
    let id = post.id.clone().expect("id");
    assert_eq!(post.url, Some(format!("https://x.com/RuizSheriff/status/{id}")));
    let hit = &fake.common.hits_to("POST", "/2/tweets")[0];
    assert!(hit.header("authorization").is_some_and(|h| h.starts_with("OAuth ") && h.contains("oauth_signature=")));
    assert_eq!(hit.json()["text"], alert.text);

    let update = job(2, "UPDATE: the vehicle was found.");
    let reply = sent(&ch.send(&request(&update, Some(&post), &[])).await.outcome);
    assert_eq!(fake.live()[1].reply_to.as_deref(), Some(id.as_str()));

    let media = [png()];
    sent(&ch.send(&request(&job(3, "Photo of Sofia"), None, &media)).await.outcome);
    let tweet = fake.live().pop().expect("tweet");
    assert_eq!(tweet.media.len(), 1);
    let alt = fake.media.lock().expect("media").get(&tweet.media[0]).cloned().flatten();
    assert_eq!(alt.as_deref(), Some("Photo of Sofia Ramirez, 6"));

    fake.common
        .fault("media", Fault::respond(400, &[], r#"{"title":"Invalid Request","detail":"bad image","status":400}"#));
    let r = ch.send(&request(&job(4, "Photo of Sofia, upload fails"), None, &media)).await;
    sent(&r.outcome);
    assert!(r.note.as_deref().is_some_and(|n| n.contains("without an image")), "{:?}", r.note);

    assert!(matches!(ch.delete(&reply).await.outcome, Outcome::Sent(_)));
    assert!(matches!(ch.delete(&reply).await.outcome, Outcome::Sent(_)), "already gone counts as deleted");
    assert_eq!(fake.live().len(), 3);
    assert!(ch.verify().await.into_result().expect("verify").contains("@RuizSheriff"));
}

#[tokio::test]
async fn throttles_wait_for_the_reset_and_errors_are_classified() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, fake) = x::start().await;
    let ch = channel(&server.url, oauth1(ACCESS_SECRET), dir.path(), Duration::from_secs(5));
    fake.common.fault("tweets", Fake::throttle_in(600));
    let alert = job(5, "Shelter in place now.");
    match ch.send(&request(&alert, None, &[])).await.outcome {
        Outcome::RetryAfter(d, _) => assert!((595..=601).contains(&d.as_secs()), "{d:?}"),
        other => panic!("{other:?}"),
    }
    sent(&ch.send(&request(&alert, None, &[])).await.outcome);

    match ch.send(&request(&job(6, &"long ".repeat(60)), None, &[])).await.outcome {
        Outcome::Permanent(m) => assert!(m.contains("403"), "{m}"),
        other => panic!("{other:?}"),
    }
    let bad = channel(&server.url, oauth1("not-the-secret"), dir.path(), Duration::from_secs(5));
    assert!(matches!(bad.send(&request(&job(7, "x"), None, &[])).await.outcome, Outcome::Credentials(_)));
}

#[tokio::test]
async fn a_lost_answer_is_found_on_the_timeline_and_never_posted_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, fake) = x::start().await;
    let ch = channel(&server.url, oauth1(ACCESS_SECRET), dir.path(), Duration::from_millis(400));
    let alert = job(8, "Evacuate Zone B now & go to Central HS <north entrance> https://sheriff.example/evac");
    let req = request(&alert, None, &[]);
    assert_eq!(ch.resolve(&req).await, Resolution::NotPosted);

    fake.common.fault("tweets", Fault::AfterWork(Duration::from_secs(2)));
    assert!(matches!(ch.send(&req).await.outcome, Outcome::Unknown(_)));
    let found = match ch.resolve(&req).await {
        Resolution::Posted(p) => p,
        other => panic!("{other:?}"),
    };
    assert_eq!(found.id, fake.live()[0].id.clone().into());
    // Sending again anyway meets the duplicate-content 403, which also finds it.
    assert_eq!(sent(&ch.send(&req).await.outcome).id, found.id);
    assert_eq!(fake.live().len(), 1, "posted once");
    let lookup = &fake.common.hits_to("GET", "/tweets")[0];
    assert_eq!(lookup.query_map().get("max_results").map(String::as_str), Some("20"), "a signed query");
}

#[tokio::test]
async fn oauth2_tokens_are_refreshed_once_and_the_new_refresh_token_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, fake) = x::start().await;
    let auth = || {
        XAuth::OAuth2(OAuth2Settings {
            token_url: format!("{}/2/oauth2/token", server.url).parse().expect("url"),
            client_id: CLIENT_ID.to_owned(),
            client_secret: None,
            refresh_token: Some(SecretString::from("refresh-0")),
            access_token: None,
        })
    };
    let ch = channel(&server.url, auth(), dir.path(), Duration::from_secs(5));
    sent(&ch.send(&request(&job(1, "first"), None, &[])).await.outcome);
    sent(&ch.send(&request(&job(2, "second"), None, &[])).await.outcome);
    assert_eq!(fake.refreshes.load(std::sync::atomic::Ordering::SeqCst), 1, "the token is reused until it expires");
    let saved = std::fs::read_to_string(dir.path().join("tokens/x.oauth2.json")).expect("saved");
    assert!(!saved.contains("refresh-0"), "the spent refresh token was replaced");

    // A restart: the config still says refresh-0 (spent); the saved chain is used.
    let ch = channel(&server.url, auth(), dir.path(), Duration::from_secs(5));
    sent(&ch.send(&request(&job(3, "third"), None, &[])).await.outcome);
    assert_eq!(fake.refreshes.load(std::sync::atomic::Ordering::SeqCst), 1);

    // The platform revokes the access token: one refresh, then the post goes through.
    fake.oauth2.lock().expect("oauth2").0 = "revoked".to_owned();
    sent(&ch.send(&request(&job(4, "fourth"), None, &[])).await.outcome);
    assert_eq!(fake.refreshes.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert_eq!(fake.live().len(), 4);
    let bearer = fake.common.hits_to("POST", "/2/tweets").last().and_then(|h| h.bearer().map(str::to_owned));
    assert_eq!(bearer, Some(fake.oauth2.lock().expect("oauth2").0.clone()));
}
