//! Bluesky (AT Protocol): `com.atproto.repo.createRecord` of an `app.bsky.feed.post` on
//! the account's PDS.
//!
//! Sessions: one `createSession` with the app password, then the access JWT until it
//! expires and `refreshSession` with the refresh JWT. The session is kept in the state
//! directory: the PDS allows 30 logins per 5 minutes, so never one per post or per start.
//!
//! Duplicate protection: the record key is a TID derived from the delivery (its creation
//! time and key, plus the step), the same on every try. After a timeout, a crash or a
//! 500 (which is what the PDS answers to a second record with the same key),
//! `getRecord` on that key says whether the post exists.
//!
//! Text goes out with link and hashtag facets (UTF-8 byte offsets) so they are clickable;
//! replies name the thread's root and parent; a cancellation can delete the original;
//! images are uploaded as blobs (at most 4, 1,000,000 bytes each).

use std::fmt;
use std::time::Duration;

use secrecy::ExposeSecret as _;
use serde::{Deserialize, Serialize};

use super::http::{Reply, exchange};
use super::state::StateFile;
use super::{Api, Verified};
use super::{Context, Image, Outcome, PostRef, Request, Resolution, Response};
use crate::config::BlueskySettings;
use crate::platform::Platform;
use crate::render::facets::{Feature, facets};

const POST: &str = "app.bsky.feed.post";
/// The lexicon's limit on one image.
const MAX_IMAGE_BYTES: usize = 1_000_000;

#[derive(Clone, Serialize, Deserialize)]
struct Session {
    identifier: String,
    did: String,
    handle: String,
    access_jwt: String,
    refresh_jwt: String,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session").field("did", &self.did).field("handle", &self.handle).finish_non_exhaustive()
    }
}

#[derive(Debug)]
pub struct Bluesky {
    s: BlueskySettings,
    http: reqwest::Client,
    timeout: Duration,
    state: StateFile,
    session: tokio::sync::Mutex<Option<Session>>,
}

/// A record reference: what replies and embeds point at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StrongRef {
    pub uri: String,
    pub cid: String,
}

/// What a post keeps in [`PostRef::data`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct PostData {
    cid: String,
    /// The thread's root, when the post is a reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    root: Option<StrongRef>,
}

fn strong_ref(p: &PostRef) -> Option<(StrongRef, Option<StrongRef>)> {
    let data: PostData = serde_json::from_str(p.data.as_deref()?).ok()?;
    Some((StrongRef { uri: p.id.clone()?, cid: data.cid }, data.root))
}

/// The record key of an `at://` URI.
fn rkey_of(uri: &str) -> Option<&str> {
    uri.rsplit('/').next().filter(|k| !k.is_empty())
}

/// A TID (timestamp identifier) for `micros` since the epoch and a 10-bit clock id:
/// 13 characters of base32-sortable.
pub fn tid(micros: u64, clock_id: u16) -> String {
    const ALPHABET: &[u8; 32] = b"234567abcdefghijklmnopqrstuvwxyz";
    let v = ((micros & 0x001F_FFFF_FFFF_FFFF) << 10) | u64::from(clock_id & 0x3FF);
    (0..13).rev().map(|i| ALPHABET[((v >> (i * 5)) & 31) as usize] as char).collect()
}

/// The record key for a request: the same on every try of the same step. The delivery's
/// creation time in microseconds, plus up to 999 µs and a 10-bit clock id taken from a
/// hash of its key, so deliveries made in the same millisecond (one per language) get
/// different keys (a collision is about one in a million).
fn rkey(req: &Request<'_>) -> String {
    let hash = crate::digest::sha256_hex(req.post.key.as_bytes());
    let h = u64::from_str_radix(&hash[..12], 16).unwrap_or(0);
    let micros = u64::try_from(req.post.created_at).unwrap_or(0) * 1000 + h % 1000 + req.step as u64;
    let clock = u16::try_from((h / 1000) & 0x3FF).unwrap_or(0);
    tid(micros, clock)
}

/// The error name of an XRPC error body (`{"error":"ExpiredToken","message":...}`).
fn xrpc_error(r: &Reply) -> (String, String) {
    let v = r.json().unwrap_or_default();
    (
        v["error"].as_str().unwrap_or("").to_owned(),
        v["message"].as_str().map_or_else(|| super::http::snippet(&r.body, 200), str::to_owned),
    )
}

impl Bluesky {
    pub fn new(name: &str, s: BlueskySettings, ctx: &Context) -> Self {
        Bluesky {
            s,
            http: ctx.http.clone(),
            timeout: ctx.timeout,
            state: StateFile::new(&ctx.state_dir, name, "session"),
            session: tokio::sync::Mutex::new(None),
        }
    }

    fn xrpc(&self, method: &str) -> reqwest::Url {
        super::join_url(&self.s.base_url, &format!("xrpc/{method}"))
    }

    /// The current session: in memory, else saved, else a new login.
    async fn session(&self) -> Result<Session, Outcome> {
        let mut current = self.session.lock().await;
        if let Some(s) = current.as_ref() {
            return Ok(s.clone());
        }
        if let Some(saved) = self.state.load::<Session>().filter(|s| s.identifier == self.s.identifier) {
            *current = Some(saved.clone());
            return Ok(saved);
        }
        let s = self.login().await?;
        *current = Some(s.clone());
        Ok(s)
    }

    async fn login(&self) -> Result<Session, Outcome> {
        let body = serde_json::json!({
            "identifier": self.s.identifier,
            "password": self.s.app_password.expose_secret(),
        });
        let r =
            exchange(self.http.post(self.xrpc("com.atproto.server.createSession")).timeout(self.timeout).json(&body))
                .await
                .map_err(|o| match o {
                    Outcome::Unknown(m) => Outcome::Unavailable(format!("login failed: {m}")),
                    other => other,
                })?;
        self.adopt(&r, "login")
    }

    async fn refresh(&self, old: &Session) -> Result<Session, Outcome> {
        let req = self
            .http
            .post(self.xrpc("com.atproto.server.refreshSession"))
            .timeout(self.timeout)
            .bearer_auth(&old.refresh_jwt);
        match exchange(req).await {
            Ok(r) if r.ok() => self.adopt(&r, "session refresh"),
            // The refresh token has expired or was revoked: log in again.
            Ok(r) if matches!(r.status, 400 | 401) => self.login().await,
            Ok(r) => Err(classify_error(&r, jiff::Timestamp::now())),
            Err(o) => Err(o),
        }
    }

    /// Take the session a createSession or refreshSession answered, and save it.
    fn adopt(&self, r: &Reply, what: &str) -> Result<Session, Outcome> {
        if !r.ok() {
            let (error, message) = xrpc_error(r);
            return Err(match r.status {
                401 | 400 if error == "AuthenticationRequired" || error == "AccountTakedown" || r.status == 401 => {
                    Outcome::Credentials(format!("{what} refused: {error}: {message}"))
                }
                _ => classify_error(r, jiff::Timestamp::now()),
            });
        }
        let v = r.json().unwrap_or_default();
        let field = |k: &str| v[k].as_str().map(str::to_owned);
        let (Some(did), Some(handle), Some(access_jwt), Some(refresh_jwt)) =
            (field("did"), field("handle"), field("accessJwt"), field("refreshJwt"))
        else {
            return Err(Outcome::Unavailable(format!("{what} answered without a session")));
        };
        let s = Session { identifier: self.s.identifier.clone(), did, handle, access_jwt, refresh_jwt };
        if let Err(e) = self.state.save(&s) {
            tracing::warn!(error = %e, "cannot save the Bluesky session; the next start logs in again");
        }
        Ok(s)
    }

    /// Run `call` with the session; on an expired or refused access token, refresh (or log
    /// in) once and run it again.
    async fn authed<F, Fut>(&self, call: F) -> Result<(Reply, Session), Outcome>
    where
        F: Fn(Session) -> Fut,
        Fut: Future<Output = Result<Reply, Outcome>>,
    {
        let session = self.session().await?;
        let r = call(session.clone()).await?;
        let (error, _) = xrpc_error(&r);
        if !(matches!(r.status, 400 | 401) && matches!(error.as_str(), "ExpiredToken" | "InvalidToken")) {
            return Ok((r, session));
        }
        let session = self.refresh(&session).await?;
        *self.session.lock().await = Some(session.clone());
        Ok((call(session.clone()).await?, session))
    }

    /// Upload the images as blobs; the embed of those that made it, and what went wrong.
    async fn images(&self, media: &[Image]) -> (Option<serde_json::Value>, Option<String>) {
        let mut images = Vec::new();
        let mut problems = Vec::new();
        for m in media.iter().take(4) {
            if m.bytes.len() > MAX_IMAGE_BYTES {
                problems.push(format!("image of {} bytes is over Bluesky's {MAX_IMAGE_BYTES}", m.bytes.len()));
                continue;
            }
            let result = self
                .authed(|s| {
                    let r = self
                        .http
                        .post(self.xrpc("com.atproto.repo.uploadBlob"))
                        .timeout(self.timeout)
                        .bearer_auth(&s.access_jwt)
                        .header(reqwest::header::CONTENT_TYPE, &m.mime)
                        .body(m.bytes.clone());
                    exchange(r)
                })
                .await;
            match result {
                Ok((r, _)) if r.ok() => match r.json().map(|v| v["blob"].clone()).filter(|b| !b.is_null()) {
                    Some(blob) => images.push(serde_json::json!({ "image": blob, "alt": m.alt })),
                    None => problems.push("uploadBlob answered without a blob".to_owned()),
                },
                Ok((r, _)) => problems.push(format!("image upload refused: {}", r.detail())),
                Err(o) => problems.push(format!("image upload failed: {o:?}")),
            }
        }
        let embed =
            (!images.is_empty()).then(|| serde_json::json!({ "$type": "app.bsky.embed.images", "images": images }));
        let note = (!problems.is_empty()).then(|| format!("posted without an image: {}", problems.join("; ")));
        (embed, note)
    }

    async fn whoami(&self) -> Result<String, String> {
        let result = self
            .authed(|s| {
                exchange(
                    self.http
                        .get(self.xrpc("com.atproto.server.getSession"))
                        .timeout(self.timeout)
                        .bearer_auth(&s.access_jwt),
                )
            })
            .await;
        match result {
            Ok((r, _)) if r.ok() => {
                let v = r.json().unwrap_or_default();
                Ok(format!("posts as @{} ({})", v["handle"].as_str().unwrap_or("?"), v["did"].as_str().unwrap_or("?")))
            }
            Ok((r, _)) => Err(r.detail()),
            Err(o) => Err(format!("{o:?}")),
        }
    }
}

impl Api for Bluesky {
    const PLATFORM: Platform = Platform::Bluesky;
    const READS_BACK: bool = true;

    async fn send(&self, req: &Request<'_>) -> Response {
        let (embed, note) = self.images(req.media).await;
        let rkey = rkey(req);
        let mut record = serde_json::json!({
            "$type": POST,
            "text": req.text,
            "createdAt": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        });
        if !req.post.language.is_empty() {
            record["langs"] = serde_json::json!([req.post.language]);
        }
        let facets = lexicon_facets(req.text);
        if !facets.is_empty() {
            record["facets"] = facets.into();
        }
        let mut root_of_new = None;
        if let Some((parent, parent_root)) = req.reply_to.and_then(strong_ref) {
            let root = req.root.and_then(strong_ref).map_or_else(|| parent_root.clone(), |(r, rr)| rr.or(Some(r)));
            let root = root.unwrap_or_else(|| parent.clone());
            record["reply"] = serde_json::json!({ "root": root, "parent": parent });
            root_of_new = Some(root);
        }
        if let Some(e) = embed {
            record["embed"] = e;
        }
        let result = self
            .authed(|s| {
                let body = serde_json::json!({ "repo": s.did, "collection": POST, "rkey": rkey, "record": record });
                let r = self
                    .http
                    .post(self.xrpc("com.atproto.repo.createRecord"))
                    .timeout(self.timeout)
                    .bearer_auth(&s.access_jwt)
                    .json(&body);
                exchange(r)
            })
            .await;
        let (r, session) = match result {
            Ok(x) => x,
            Err(o) => return Response::from(o).with_note(note),
        };
        let outcome = if r.ok() {
            let v = r.json().unwrap_or_default();
            match (v["uri"].as_str(), v["cid"].as_str()) {
                (Some(uri), Some(cid)) => Outcome::Sent(post_ref(uri, cid, root_of_new, &session.handle)),
                _ => Outcome::Unknown(format!("HTTP {} without a record uri", r.status)),
            }
        } else {
            classify_error(&r, jiff::Timestamp::now())
        };
        Response::new(outcome, r.status).with_note(note)
    }

    /// Look the record key up: the post exists or it does not.
    async fn read_back(&self, req: &Request<'_>) -> Resolution {
        let rkey = rkey(req);
        let result = self
            .authed(|s| {
                let r = self
                    .http
                    .get(self.xrpc("com.atproto.repo.getRecord"))
                    .timeout(self.timeout)
                    .bearer_auth(&s.access_jwt)
                    .query(&[("repo", s.did.as_str()), ("collection", POST), ("rkey", rkey.as_str())]);
                exchange(r)
            })
            .await;
        match result {
            Ok((r, session)) if r.ok() => {
                let v = r.json().unwrap_or_default();
                match (v["uri"].as_str(), v["cid"].as_str()) {
                    // Another record under the same key (a collision) is not this post.
                    _ if v["value"]["text"].as_str() != Some(req.text) => Resolution::CannotTell,
                    (Some(uri), Some(cid)) => {
                        let root = v["value"]["reply"]["root"].clone();
                        let root = serde_json::from_value::<StrongRef>(root).ok();
                        Resolution::Posted(post_ref(uri, cid, root, &session.handle))
                    }
                    _ => Resolution::CannotTell,
                }
            }
            Ok((r, _)) if r.status == 400 && xrpc_error(&r).0 == "RecordNotFound" => Resolution::NotPosted,
            _ => Resolution::CannotTell,
        }
    }

    async fn delete(&self, post: &PostRef) -> Response {
        let Some(rkey) = post.id.as_deref().and_then(rkey_of).map(str::to_owned) else {
            return Outcome::Sent(PostRef::default()).into();
        };
        let result = self
            .authed(|s| {
                let body = serde_json::json!({ "repo": s.did, "collection": POST, "rkey": rkey });
                let r = self
                    .http
                    .post(self.xrpc("com.atproto.repo.deleteRecord"))
                    .timeout(self.timeout)
                    .bearer_auth(&s.access_jwt)
                    .json(&body);
                exchange(r)
            })
            .await;
        match result {
            Ok((r, _)) if r.ok() => Response::new(Outcome::Sent(post.clone()), r.status),
            Ok((r, _)) => Response::new(classify_error(&r, jiff::Timestamp::now()), r.status),
            Err(o) => o.into(),
        }
    }

    async fn verify(&self) -> Verified {
        self.whoami().await.into()
    }
}

fn post_ref(uri: &str, cid: &str, root: Option<StrongRef>, handle: &str) -> PostRef {
    let data = PostData { cid: cid.to_owned(), root };
    PostRef {
        id: Some(uri.to_owned()),
        url: rkey_of(uri).map(|k| format!("https://bsky.app/profile/{handle}/post/{k}")),
        data: serde_json::to_string(&data).ok(),
    }
}

/// Link and hashtag facets in the lexicon's shape.
fn lexicon_facets(text: &str) -> Vec<serde_json::Value> {
    facets(text)
        .into_iter()
        .map(|f| {
            let feature = match f.feature {
                Feature::Link { uri } => serde_json::json!({ "$type": "app.bsky.richtext.facet#link", "uri": uri }),
                Feature::Tag { tag } => serde_json::json!({ "$type": "app.bsky.richtext.facet#tag", "tag": tag }),
            };
            serde_json::json!({
                "index": { "byteStart": f.byte_start, "byteEnd": f.byte_end },
                "features": [feature],
            })
        })
        .collect()
}

/// What an XRPC error means.
pub fn classify_error(r: &Reply, now: jiff::Timestamp) -> Outcome {
    let (error, message) = xrpc_error(r);
    let detail = format!("HTTP {}: {error}: {message}", r.status);
    match r.status {
        429 => match r.header("ratelimit-reset").and_then(|v| v.trim().parse::<i64>().ok()) {
            Some(reset) => {
                let wait = u64::try_from(reset - now.as_second()).unwrap_or(0);
                Outcome::RetryAfter(Duration::from_secs(wait), detail)
            }
            None => Outcome::Unavailable(detail),
        },
        401 => Outcome::Credentials(detail),
        400 if matches!(error.as_str(), "ExpiredToken" | "InvalidToken" | "AuthMissing") => {
            Outcome::Credentials(detail)
        }
        // A second record with the same key answers 500 today: it may well exist.
        500 => Outcome::Unknown(detail),
        502..=504 => Outcome::Unavailable(detail),
        _ => Outcome::Permanent(detail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tids_are_13_sortable_characters() {
        let a = tid(1_795_000_000_000_000, 0);
        let b = tid(1_795_000_000_000_001, 0);
        assert_eq!(a.len(), 13);
        assert!(a < b, "later sorts after");
        assert!("234567abcdefghij".contains(a.chars().next().unwrap_or('z')), "the top bit is zero");
        assert_eq!(tid(0, 0), "2222222222222");
    }

    #[test]
    fn record_keys_differ_between_deliveries_of_the_same_millisecond_and_between_steps() {
        use crate::channel::tests::{post, request};
        let mut keys = std::collections::HashSet::new();
        let saved = std::collections::BTreeMap::new();
        for lang in ["en", "es", "vi", "zh"] {
            let key = format!("bh_k_{lang}");
            for step in 0..3 {
                let req = request(post(&key, "t"), &saved, step);
                assert!(keys.insert(rkey(&req)), "{lang} {step}");
                assert_eq!(rkey(&req), rkey(&request(post(&key, "t"), &saved, step)), "stable");
            }
        }
    }

    #[test]
    fn facets_use_the_lexicon_shape() {
        let f = lexicon_facets("Niña 🚨 https://sheriff.example/a #AmberAlert");
        assert_eq!(f.len(), 2);
        assert_eq!(f[0]["index"]["byteStart"], "Niña 🚨 ".len());
        assert_eq!(f[0]["features"][0]["$type"], "app.bsky.richtext.facet#link");
        assert_eq!(f[1]["features"][0]["tag"], "AmberAlert");
    }
}
