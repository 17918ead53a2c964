use std::sync::atomic::Ordering;
use std::time::Duration;

use bullhorn::channel::{Channel, Outcome, PostRef, Resolution};
use bullhorn::config::{BlueskySettings, ChannelConfig, ChannelKind};
use secrecy::SecretString;

use crate::support::pds::Pds;
use crate::support::platforms::bluesky::{self, Fake, HANDLE, PASSWORD};
use crate::support::platforms::{Fault, context, job, png, request};

fn channel(url: &str, identifier: &str, password: &str, dir: &std::path::Path, timeout: Duration) -> Channel {
    let s = BlueskySettings {
        base_url: url.parse().expect("url"),
        identifier: identifier.to_owned(),
        app_password: SecretString::from(password),
    };
    Channel::build(&ChannelConfig::new("bsky", ChannelKind::Bluesky(s)), &context(dir, timeout))
}

fn sent(o: &Outcome) -> PostRef {
    match o {
        Outcome::Sent(p) => p.clone(),
        other => panic!("not sent: {other:?}"),
    }
}

/// Everything against the reference PDS, which validates each record against the real
/// lexicons (one PDS for the lot: it takes seconds to start).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_pds_accepts_posts_facets_threads_images_and_deletes() {
    let pds = Pds::start(false);
    let dir = tempfile::tempdir().expect("tempdir");
    let ch = channel(&pds.url, &pds.handle, &pds.password, dir.path(), Duration::from_secs(10));
    assert!(ch.verify().await.into_result().expect("verify").contains(&pds.handle));

    // A post with a link and a hashtag: both become facets at UTF-8 byte offsets.
    let text = "🚨 AMBER ALERT: Niña Sofía, 6. Details https://sheriff.example/amber/1 #AmberAlert";
    let alert = job(1, text);
    let req = request(&alert, None, &[]);
    assert_eq!(ch.resolve(&req).await, Resolution::NotPosted, "nothing under this record key yet");
    let post = sent(&ch.send(&req).await.outcome);
    let uri = post.id.clone().expect("uri");
    assert!(uri.starts_with(&format!("at://{}/app.bsky.feed.post/", pds.did)), "{uri}");
    assert_eq!(
        post.url,
        Some(format!("https://bsky.app/profile/{}/post/{}", pds.handle, uri.rsplit('/').next().unwrap_or("")))
    );
    let record = pds.record(&uri).await.expect("record exists");
    assert_eq!(record["text"], text);
    assert_eq!(record["langs"], serde_json::json!(["en-US"]));
    let facets = record["facets"].as_array().expect("facets");
    assert_eq!(facets.len(), 2);
    let start = usize::try_from(facets[0]["index"]["byteStart"].as_u64().expect("start")).expect("usize");
    assert_eq!(&text[start..start + "https://sheriff.example/amber/1".len()], "https://sheriff.example/amber/1");

    // The same request again (a retry after a lost answer): the PDS refuses the duplicate
    // record key, and the lookup finds the post, so it is not posted twice.
    let again = ch.send(&req).await;
    assert!(matches!(again.outcome, Outcome::Unknown(_)), "{again:?}");
    assert_eq!(ch.resolve(&req).await, Resolution::Posted(post.clone()));

    // A reply, and a reply to the reply: both name the thread's root.
    let update = job(2, "UPDATE: vehicle found, child still missing.");
    let reply = sent(&ch.send(&request(&update, Some(&post), &[])).await.outcome);
    let second = job(3, "UPDATE 2: child found safe.");
    let mut req2 = request(&second, Some(&reply), &[]);
    req2.root = Some(&post);
    let reply2 = sent(&ch.send(&req2).await.outcome);
    let r2 = pds.record(reply2.id.as_deref().expect("uri")).await.expect("reply record");
    assert_eq!(r2["reply"]["root"]["uri"], uri);
    assert_eq!(r2["reply"]["parent"]["uri"], reply.id.clone().expect("uri"));

    // An image goes up as a blob and is embedded with its alt text.
    let media = [png()];
    let with_image = sent(&ch.send(&request(&job(4, "Photo of the child"), None, &media)).await.outcome);
    let r4 = pds.record(with_image.id.as_deref().expect("uri")).await.expect("record");
    assert_eq!(r4["embed"]["$type"], "app.bsky.embed.images");
    assert_eq!(r4["embed"]["images"][0]["alt"], "Photo of Sofia Ramirez, 6");

    // Over 300 graphemes is refused by the lexicon, for good.
    match ch.send(&request(&job(5, &"a".repeat(301)), None, &[])).await.outcome {
        Outcome::Permanent(m) => assert!(m.contains("grapheme"), "{m}"),
        other => panic!("{other:?}"),
    }

    // Delete: the record is gone.
    assert!(matches!(ch.delete(&post).await.outcome, Outcome::Sent(_)));
    assert!(pds.record(&uri).await.is_none());

    // A wrong app password is a credentials problem.
    let other_dir = tempfile::tempdir().expect("tempdir");
    let bad = channel(&pds.url, &pds.handle, "wrong-password", other_dir.path(), Duration::from_secs(10));
    assert!(matches!(bad.send(&request(&job(6, "x"), None, &[])).await.outcome, Outcome::Credentials(_)));
}

#[tokio::test]
async fn the_session_is_kept_across_restarts_and_refreshed_when_it_expires() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, fake) = bluesky::start().await;
    let ch = channel(&server.url, HANDLE, PASSWORD, dir.path(), Duration::from_secs(5));
    sent(&ch.send(&request(&job(1, "one"), None, &[])).await.outcome);
    sent(&ch.send(&request(&job(2, "two"), None, &[])).await.outcome);
    assert_eq!(fake.logins.load(Ordering::SeqCst), 1, "one login, not one per post");

    // A new channel (a restart or a reload) uses the saved session.
    let ch = channel(&server.url, HANDLE, PASSWORD, dir.path(), Duration::from_secs(5));
    sent(&ch.send(&request(&job(3, "three"), None, &[])).await.outcome);
    assert_eq!(fake.logins.load(Ordering::SeqCst), 1, "the saved session is reused");

    // The access token expires: one refresh, and the post goes through.
    fake.expired.store(true, Ordering::SeqCst);
    sent(&ch.send(&request(&job(4, "four"), None, &[])).await.outcome);
    assert_eq!(fake.refreshes.load(Ordering::SeqCst), 1);
    assert_eq!(fake.logins.load(Ordering::SeqCst), 1);
    assert_eq!(fake.posts().len(), 4);
    let saved = std::fs::read_to_string(dir.path().join("tokens/bsky.session.json")).expect("saved session");
    assert!(!saved.contains(PASSWORD), "the app password is never written to the state directory");
}

#[tokio::test]
async fn a_throttle_waits_for_the_reset_and_a_timeout_is_resolved_by_record_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, fake) = bluesky::start().await;
    let ch = channel(&server.url, HANDLE, PASSWORD, dir.path(), Duration::from_millis(400));
    fake.common.fault("createRecord", Fake::throttle_in(90));
    let alert = job(7, "Shelter in place");
    match ch.send(&request(&alert, None, &[])).await.outcome {
        Outcome::RetryAfter(d, m) => {
            assert!((85..=91).contains(&d.as_secs()), "{d:?}");
            assert!(m.contains("RateLimitExceeded"), "{m}");
        }
        other => panic!("{other:?}"),
    }

    fake.common.fault("createRecord", Fault::AfterWork(Duration::from_secs(2)));
    let req = request(&alert, None, &[]);
    assert!(matches!(ch.send(&req).await.outcome, Outcome::Unknown(_)));
    let found = match ch.resolve(&req).await {
        Resolution::Posted(p) => p,
        other => panic!("{other:?}"),
    };
    assert_eq!(fake.posts().len(), 1, "posted once");
    assert!(found.id.as_deref().is_some_and(|u| u.starts_with("at://")));
}
