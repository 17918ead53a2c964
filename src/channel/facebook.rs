//! Facebook Pages (Graph API): `POST /{page-id}/feed`, or `/{page-id}/photos` with an
//! image; updates as comments on the original post; delete with `DELETE /{post-id}`.
//!
//! No idempotency key exists. After a timeout or a 500 that may have published (Meta's
//! code 1 or 2), and on the duplicate-content refusal (code 368 or 506), the Page's
//! latest posts (or the original's latest comments) are read and compared with the text.

use super::graph::{Graph, GraphError, classify_error, find_by_text};
use super::http::{Reply, id_field};
use super::{Api, Verified};
use super::{Context, Outcome, PostRef, Request, Resolution, Response};
use crate::config::MetaSettings;
use crate::platform::Platform;

#[derive(Debug)]
pub struct Facebook {
    g: Graph,
}

fn post_url(id: &str) -> String {
    format!("https://www.facebook.com/{id}")
}

impl Facebook {
    pub fn new(s: MetaSettings, ctx: &Context) -> Self {
        Facebook { g: Graph::new(s, ctx) }
    }

    fn page(&self) -> &str {
        &self.g.s.account_id
    }

    async fn feed(&self, text: &str) -> Result<(Reply, Option<String>), Outcome> {
        let path = format!("{}/feed", self.page());
        self.g.call(reqwest::Method::POST, &path, &[("message", text)]).await.map(|r| (r, None))
    }

    /// A photo post, by its public URL, else uploaded. `Ok(Err(why))` when Facebook
    /// refused the photo for good (its URL, its format); `Err` for any outcome that is the
    /// post's own (throttled, credentials, unknown).
    async fn photo(&self, req: &Request<'_>, image: &super::Image) -> Result<Result<Reply, String>, Outcome> {
        let path = format!("{}/photos", self.page());
        let reply = match &image.url {
            Some(url) => {
                let params = [("url", url.as_str()), ("message", req.text), ("alt_text_custom", image.alt.as_str())];
                self.g.call(reqwest::Method::POST, &path, &params).await?
            }
            None => {
                let part = match reqwest::multipart::Part::bytes(image.bytes.to_vec())
                    .file_name("image")
                    .mime_str(&image.mime)
                {
                    Ok(p) => p,
                    Err(e) => return Ok(Err(format!("bad image type: {e}"))),
                };
                let form = reqwest::multipart::Form::new()
                    .part("source", part)
                    .text("message", req.text.to_owned())
                    .text("alt_text_custom", image.alt.clone());
                self.g.multipart(&path, form).await?
            }
        };
        if reply.ok() {
            return Ok(Ok(reply));
        }
        match classify_error(&reply, true) {
            Outcome::Permanent(m) => Ok(Err(m)),
            _ => Ok(Ok(reply)),
        }
    }

    async fn whoami(&self) -> Result<String, String> {
        let r = self
            .g
            .call(reqwest::Method::GET, self.page(), &[("fields", "id,name")])
            .await
            .map_err(|o| format!("{o:?}"))?;
        if !r.ok() {
            return Err(r.detail());
        }
        let v = r.json().unwrap_or_default();
        Ok(format!("posts to the Page {} ({})", v["name"].as_str().unwrap_or("?"), self.page()))
    }
}

impl Api for Facebook {
    const PLATFORM: Platform = Platform::Facebook;
    const READS_BACK: bool = true;

    async fn send(&self, req: &Request<'_>) -> Response {
        let mut note = None;
        let result = match req.reply_to.and_then(|p| p.id.as_deref()) {
            Some(parent) => {
                let r =
                    self.g.call(reqwest::Method::POST, &format!("{parent}/comments"), &[("message", req.text)]).await;
                match r {
                    // The original is gone: post on the Page instead.
                    Ok(r) if GraphError::of(&r).is_some_and(|e| e.missing()) => self.feed(req.text).await,
                    other => other.map(|r| (r, req.reply_to.and_then(|p| p.url.clone()))),
                }
            }
            None => match req.media.first() {
                Some(image) => match self.photo(req, image).await {
                    Ok(Ok(reply)) => Ok((reply, None)),
                    // Facebook refused the photo itself: the text goes out alone.
                    Ok(Err(why)) => {
                        note = Some(format!("posted without an image: {why}"));
                        self.feed(req.text).await
                    }
                    // Anything else (a timeout: the photo post may exist) is the outcome.
                    Err(o) => Err(o),
                },
                None => self.feed(req.text).await,
            },
        };
        let (reply, url) = match result {
            Ok(x) => x,
            Err(o) => return Response::from(o).with_note(note),
        };
        let mut outcome = if reply.ok() {
            let v = reply.json().unwrap_or_default();
            match id_field(&v, "post_id").or_else(|| id_field(&v, "id")) {
                Some(id) => {
                    let url = url.unwrap_or_else(|| post_url(&id));
                    Outcome::Sent(PostRef::id(id).with_url(url))
                }
                None => Outcome::Unknown(format!("HTTP {} without an id", reply.status)),
            }
        } else {
            classify_error(&reply, true)
        };
        if GraphError::of(&reply).is_some_and(|e| e.code == 368 || e.code == 506) {
            outcome = match self.read_back(req).await {
                Resolution::Posted(p) => Outcome::Sent(p),
                _ => outcome,
            };
        }
        Response::new(outcome, reply.status).with_note(note)
    }

    /// Look for the text among the Page's latest posts, or the original's latest comments.
    async fn read_back(&self, req: &Request<'_>) -> Resolution {
        let (path, field) = match req.reply_to.and_then(|p| p.id.as_deref()) {
            Some(parent) => (format!("{parent}/comments"), "message"),
            None => (format!("{}/feed", self.page()), "message"),
        };
        let params =
            [("fields", "id,message,permalink_url,created_time"), ("limit", "25"), ("order", "reverse_chronological")];
        match self.g.call(reqwest::Method::GET, &path, &params).await {
            Ok(r) if r.ok() => {
                match r.json().and_then(|v| find_by_text(&v, field, req.text, req.post.created_at - 120_000)) {
                    Some(found) => {
                        let id = id_field(&found, "id").unwrap_or_default();
                        let url = found["permalink_url"].as_str().map_or_else(|| post_url(&id), str::to_owned);
                        Resolution::Posted(PostRef::id(id).with_url(url))
                    }
                    None => Resolution::NotPosted,
                }
            }
            _ => Resolution::CannotTell,
        }
    }

    async fn delete(&self, post: &PostRef) -> Response {
        let Some(id) = &post.id else { return Outcome::Sent(PostRef::default()).into() };
        match self.g.call(reqwest::Method::DELETE, id, &[]).await {
            Ok(r) if r.ok() || GraphError::of(&r).is_some_and(|e| e.missing()) => {
                Response::new(Outcome::Sent(post.clone()), r.status)
            }
            Ok(r) => Response::new(classify_error(&r, false), r.status),
            Err(o) => o.into(),
        }
    }

    async fn verify(&self) -> Verified {
        self.whoami().await.into()
    }
}
