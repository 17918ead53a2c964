//! Threads (Meta): a container (`POST /{user-id}/threads`, `media_type` TEXT or IMAGE,
//! `reply_to_id` for a reply), then `POST /{user-id}/threads_publish`. Deleting is
//! `DELETE /{thread-id}`.
//!
//! Duplicate protection as on Instagram ([`TwoStep`]): the container id is saved before
//! publishing; a retry or a restart asks the container first (`status` PUBLISHED means
//! done; the post is then found among the account's latest by its text) and otherwise
//! publishes it.

use super::graph::{Graph, GraphError, TwoStep, classify_error};
use super::{Api, Verified};
use super::{Context, Outcome, PostRef, Request, Resolution, Response};
use crate::config::MetaSettings;
use crate::platform::Platform;

const TWO_STEP: TwoStep = TwoStep {
    product: "Threads",
    edge: "threads",
    publish: "threads_publish",
    status_field: "status",
    text_field: "text",
};

#[derive(Debug)]
pub struct Threads {
    g: Graph,
}

impl Threads {
    pub fn new(s: MetaSettings, ctx: &Context) -> Self {
        Threads { g: Graph::new(s, ctx) }
    }

    fn user(&self) -> &str {
        &self.g.s.account_id
    }

    /// Make the container (an image one when there is an image at a public URL) and save
    /// its id before publishing.
    async fn create(&self, req: &Request<'_>, note: &mut Option<String>) -> Result<String, Response> {
        let image = req.media.iter().find(|m| m.url.is_some());
        if image.is_none() && !req.media.is_empty() {
            *note =
                Some("posted without an image: Threads fetches images from a public URL, and it has none".to_owned());
        }
        let path = format!("{}/threads", self.user());
        let mut params: Vec<(&str, &str)> = vec![("text", req.text)];
        match image {
            Some(m) => {
                params.push(("media_type", "IMAGE"));
                params.push(("image_url", m.url.as_deref().unwrap_or_default()));
                params.push(("alt_text", &m.alt));
            }
            None => params.push(("media_type", "TEXT")),
        }
        if let Some(parent) = req.reply_to.and_then(|p| p.id.as_deref()) {
            params.push(("reply_to_id", parent));
        }
        let mut reply = self.g.call(reqwest::Method::POST, &path, &params).await.map_err(Response::from)?;
        // The post replied to is gone: post on its own.
        if GraphError::of(&reply).is_some_and(|e| e.missing()) && req.reply_to.is_some() {
            params.retain(|(k, _)| *k != "reply_to_id");
            reply = self.g.call(reqwest::Method::POST, &path, &params).await.map_err(Response::from)?;
        }
        self.g.created(TWO_STEP, req, &reply, image.is_some()).await
    }

    async fn whoami(&self) -> Result<String, String> {
        let r = self
            .g
            .call(reqwest::Method::GET, "me", &[("fields", "id,username")])
            .await
            .map_err(|o| format!("{o:?}"))?;
        if !r.ok() {
            return Err(r.detail());
        }
        let v = r.json().unwrap_or_default();
        Ok(format!("posts as @{} ({})", v["username"].as_str().unwrap_or("?"), v["id"].as_str().unwrap_or("?")))
    }
}

impl Api for Threads {
    const PLATFORM: Platform = Platform::Threads;
    const READS_BACK: bool = true;

    async fn send(&self, req: &Request<'_>) -> Response {
        let mut note = None;
        let container = match self.g.saved_container(TWO_STEP, req).await {
            Ok(Some(c)) => c,
            Ok(None) => match self.create(req, &mut note).await {
                Ok(c) => c,
                Err(r) => return r.with_note(note),
            },
            Err(r) => return r,
        };
        self.g.publish(TWO_STEP, &container).await.with_note(note)
    }

    async fn read_back(&self, req: &Request<'_>) -> Resolution {
        self.g.resolve_container(TWO_STEP, req).await
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
