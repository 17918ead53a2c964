//! Instagram (Graph API content publishing): an image container
//! (`POST /{ig-user-id}/media` with the image's public URL and the caption), then
//! `POST /{ig-user-id}/media_publish`. Updates are comments on the original
//! (`POST /{media-id}/comments`). The API cannot delete a post, and has no text-only
//! post: a delivery without an image is refused with the reason.
//!
//! Duplicate protection ([`TwoStep`], shared with Threads): the container id is saved
//! before publishing, so a retry or a restart publishes that container instead of making
//! a second one, and asks it first (`status_code` PUBLISHED means done; the post is then
//! found by its caption).

use super::graph::{Graph, TwoStep, classify_error, find_by_text};
use super::http::id_field;
use super::{Api, Verified};
use super::{Context, Outcome, PostRef, Request, Resolution, Response};
use crate::config::MetaSettings;
use crate::platform::Platform;

const TWO_STEP: TwoStep = TwoStep {
    product: "Instagram",
    edge: "media",
    publish: "media_publish",
    status_field: "status_code",
    text_field: "caption",
};

#[derive(Debug)]
pub struct Instagram {
    g: Graph,
}

impl Instagram {
    pub fn new(s: MetaSettings, ctx: &Context) -> Self {
        Instagram { g: Graph::new(s, ctx) }
    }

    fn user(&self) -> &str {
        &self.g.s.account_id
    }

    /// Make the image container and save its id before anything else.
    async fn create(&self, req: &Request<'_>) -> Result<String, Response> {
        let Some(image) = req.media.iter().find(|m| m.url.is_some()) else {
            return Err(Outcome::Permanent(
                "Instagram posts need an image at a public URL, and this delivery has none".to_owned(),
            )
            .into());
        };
        let url = image.url.as_deref().unwrap_or_default();
        let path = format!("{}/media", self.user());
        let params = [("image_url", url), ("caption", req.text), ("alt_text", image.alt.as_str())];
        let reply = self.g.call(reqwest::Method::POST, &path, &params).await.map_err(Response::from)?;
        self.g.created(TWO_STEP, req, &reply, true).await
    }

    async fn comment(&self, parent: &str, req: &Request<'_>) -> Response {
        match self.g.call(reqwest::Method::POST, &format!("{parent}/comments"), &[("message", req.text)]).await {
            Ok(r) if r.ok() => {
                let outcome = match r.json().and_then(|v| id_field(&v, "id")) {
                    Some(id) => {
                        Outcome::Sent(PostRef { url: req.reply_to.and_then(|p| p.url.clone()), ..PostRef::id(id) })
                    }
                    None => Outcome::Unknown("comment answer without an id".to_owned()),
                };
                Response::new(outcome, r.status)
            }
            Ok(r) => Response::new(classify_error(&r, true), r.status),
            Err(o) => o.into(),
        }
    }

    async fn whoami(&self) -> Result<String, String> {
        let r = self
            .g
            .call(reqwest::Method::GET, self.user(), &[("fields", "id,username")])
            .await
            .map_err(|o| format!("{o:?}"))?;
        if !r.ok() {
            return Err(r.detail());
        }
        let v = r.json().unwrap_or_default();
        Ok(format!("posts as @{} ({})", v["username"].as_str().unwrap_or("?"), self.user()))
    }
}

impl Api for Instagram {
    const PLATFORM: Platform = Platform::Instagram;
    const READS_BACK: bool = true;

    async fn send(&self, req: &Request<'_>) -> Response {
        if let Some(parent) = req.reply_to.and_then(|p| p.id.as_deref()) {
            return self.comment(parent, req).await;
        }
        let container = match self.g.saved_container(TWO_STEP, req).await {
            Ok(Some(c)) => c,
            Ok(None) => match self.create(req).await {
                Ok(c) => c,
                Err(r) => return r,
            },
            Err(r) => return r,
        };
        self.g.publish(TWO_STEP, &container).await
    }

    /// A post exists once its container is published; a comment is looked for.
    async fn read_back(&self, req: &Request<'_>) -> Resolution {
        if let Some(parent) = req.reply_to.and_then(|p| p.id.as_deref()) {
            let path = format!("{parent}/comments");
            return match self.g.call(reqwest::Method::GET, &path, &[("fields", "id,text,timestamp")]).await {
                Ok(r) if r.ok() => {
                    match r.json().and_then(|v| find_by_text(&v, "text", req.text, req.post.created_at - 120_000)) {
                        Some(c) => Resolution::Posted(PostRef::id(id_field(&c, "id").unwrap_or_default())),
                        None => Resolution::NotPosted,
                    }
                }
                _ => Resolution::CannotTell,
            };
        }
        self.g.resolve_container(TWO_STEP, req).await
    }

    async fn verify(&self) -> Verified {
        self.whoami().await.into()
    }
}
