//! Instagram (Graph API content publishing): an image container
//! (`POST /{ig-user-id}/media` with the image's public URL and the caption), then
//! `POST /{ig-user-id}/media_publish`. Updates are comments on the original
//! (`POST /{media-id}/comments`). The API cannot delete a post, and has no text-only
//! post: a delivery without an image is refused with the reason.
//!
//! Duplicate protection: the container id is saved before publishing, so a retry or a
//! restart publishes that container instead of making a second one, and asks it first
//! (`status_code` PUBLISHED means done; the post is then found by its caption).

use std::time::Duration;

use super::graph::{Graph, classify_error, find_by_text};
use super::http::id_field;
use super::{Context, Outcome, PostRef, Request, Resolution, Response};
use crate::config::MetaSettings;

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

    pub async fn send(&self, req: &Request<'_>) -> Response {
        if let Some(parent) = req.reply_to.and_then(|p| p.id.as_deref()) {
            return self.comment(parent, req).await;
        }
        let container = match req.scratch.get("container") {
            Some(c) => match self.container_status(c).await {
                Ok(status) if status == "PUBLISHED" => {
                    return match self.find(req).await {
                        Resolution::Posted(p) => Outcome::Sent(p).into(),
                        // Published, the container says; only its id could not be found.
                        _ => Response::from(Outcome::Sent(PostRef::default())).with_note(Some(
                            "published, but the post was not found among the latest to record its id".to_owned(),
                        )),
                    };
                }
                // Still processing: try the publish again later.
                Ok(status) if status == "IN_PROGRESS" => {
                    return Outcome::Retry("Instagram is still processing the image".to_owned()).into();
                }
                Ok(status) if status == "FINISHED" => c.to_owned(),
                // Expired (after 24 hours) or failed: make a new one.
                Ok(_) => match self.create(req).await {
                    Ok(c) => c,
                    Err(r) => return r,
                },
                Err(o) => return o.into(),
            },
            None => match self.create(req).await {
                Ok(c) => c,
                Err(r) => return r,
            },
        };
        let path = format!("{}/media_publish", self.user());
        let reply = match self.g.call(reqwest::Method::POST, &path, &[("creation_id", &container)]).await {
            Ok(r) => r,
            Err(o) => return o.into(),
        };
        if !reply.ok() {
            return Response::new(classify_error(&reply, true), reply.status);
        }
        let id = reply.json().and_then(|v| id_field(&v, "id"));
        let outcome = match id {
            Some(id) => Outcome::Sent(PostRef { url: self.permalink(&id).await, ..PostRef::id(id) }),
            None => Outcome::Unknown(format!("HTTP {} without a media id", reply.status)),
        };
        Response::new(outcome, reply.status)
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
        if !reply.ok() {
            // Nothing is posted until the publish step: a failed container is safe to retry.
            let outcome = match classify_error(&reply, false) {
                Outcome::Unknown(m) => Outcome::Retry(m),
                o => o,
            };
            return Err(Response::new(outcome, reply.status));
        }
        let id = reply
            .json()
            .and_then(|v| id_field(&v, "id"))
            .ok_or_else(|| Response::from(Outcome::Retry("container answer without an id".to_owned())))?;
        req.scratch
            .save("container", &id)
            .await
            .map_err(|e| Response::from(Outcome::Retry(format!("cannot save the container id: {e}"))))?;
        if self.wait_finished(&id).await {
            Ok(id)
        } else {
            // Saved: the next try publishes this container once it is ready.
            Err(Outcome::Retry("Instagram is still processing the image".to_owned()).into())
        }
    }

    /// Give Instagram a few seconds to fetch and process the image; whether it is ready.
    async fn wait_finished(&self, container: &str) -> bool {
        for _ in 0..10 {
            match self.container_status(container).await.as_deref() {
                Ok("IN_PROGRESS") => tokio::time::sleep(Duration::from_millis(500)).await,
                _ => return true,
            }
        }
        false
    }

    async fn container_status(&self, container: &str) -> Result<String, Outcome> {
        let r = self.g.call(reqwest::Method::GET, container, &[("fields", "status_code")]).await?;
        if !r.ok() {
            return Err(classify_error(&r, false));
        }
        Ok(r.json().and_then(|v| v["status_code"].as_str().map(str::to_owned)).unwrap_or_default())
    }

    async fn permalink(&self, id: &str) -> Option<String> {
        let r = self.g.call(reqwest::Method::GET, id, &[("fields", "permalink")]).await.ok()?;
        r.json()?["permalink"].as_str().map(str::to_owned)
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

    /// The published post with this delivery's caption, among the account's latest.
    async fn find(&self, req: &Request<'_>) -> Resolution {
        let path = format!("{}/media", self.user());
        let params = [("fields", "id,caption,permalink,timestamp"), ("limit", "10")];
        match self.g.call(reqwest::Method::GET, &path, &params).await {
            Ok(r) if r.ok() => {
                match r.json().and_then(|v| find_by_text(&v, "caption", req.text, req.job.created_at - 120_000)) {
                    Some(m) => Resolution::Posted(PostRef {
                        url: m["permalink"].as_str().map(str::to_owned),
                        ..PostRef::id(id_field(&m, "id").unwrap_or_default())
                    }),
                    None => Resolution::NotPosted,
                }
            }
            _ => Resolution::CannotTell,
        }
    }

    /// A post exists once its container is published; a comment is looked for.
    pub async fn resolve(&self, req: &Request<'_>) -> Resolution {
        if let Some(parent) = req.reply_to.and_then(|p| p.id.as_deref()) {
            let path = format!("{parent}/comments");
            return match self.g.call(reqwest::Method::GET, &path, &[("fields", "id,text,timestamp")]).await {
                Ok(r) if r.ok() => {
                    match r.json().and_then(|v| find_by_text(&v, "text", req.text, req.job.created_at - 120_000)) {
                        Some(c) => Resolution::Posted(PostRef::id(id_field(&c, "id").unwrap_or_default())),
                        None => Resolution::NotPosted,
                    }
                }
                _ => Resolution::CannotTell,
            };
        }
        match req.scratch.get("container") {
            // No container yet: nothing can have been published.
            None => Resolution::NotPosted,
            Some(c) => match self.container_status(c).await.as_deref() {
                Ok("PUBLISHED") => self.find(req).await,
                Ok(_) => Resolution::NotPosted,
                Err(_) => Resolution::CannotTell,
            },
        }
    }

    pub async fn verify(&self) -> Result<String, String> {
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
