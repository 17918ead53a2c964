//! Threads (Meta): a container (`POST /{user-id}/threads`, `media_type` TEXT or IMAGE,
//! `reply_to_id` for a reply), then `POST /{user-id}/threads_publish`. Deleting is
//! `DELETE /{thread-id}`.
//!
//! Duplicate protection as on Instagram: the container id is saved before publishing; a
//! retry or a restart asks the container first (`status` PUBLISHED means done; the post
//! is then found among the account's latest by its text) and otherwise publishes it.

use std::time::Duration;

use super::graph::{Graph, GraphError, classify_error, find_by_text};
use super::http::id_field;
use super::{Context, Outcome, PostRef, Request, Resolution, Response};
use crate::config::MetaSettings;

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

    pub async fn send(&self, req: &Request<'_>) -> Response {
        let mut note = None;
        let container = match req.scratch.get("container") {
            Some(c) => match self.status(c).await {
                Ok(s) if s == "PUBLISHED" => {
                    return match self.find(req).await {
                        Resolution::Posted(p) => Outcome::Sent(p).into(),
                        // Published, the container says; only its id could not be found.
                        _ => Response::from(Outcome::Sent(PostRef::default())).with_note(Some(
                            "published, but the post was not found among the latest to record its id".to_owned(),
                        )),
                    };
                }
                Ok(s) if s == "IN_PROGRESS" => return Outcome::Retry("Threads is still processing".to_owned()).into(),
                Ok(s) if s == "FINISHED" => c.to_owned(),
                Ok(_) => match self.create(req, &mut note).await {
                    Ok(c) => c,
                    Err(r) => return r.with_note(note),
                },
                Err(o) => return o.into(),
            },
            None => match self.create(req, &mut note).await {
                Ok(c) => c,
                Err(r) => return r.with_note(note),
            },
        };
        let path = format!("{}/threads_publish", self.user());
        let reply = match self.g.call(reqwest::Method::POST, &path, &[("creation_id", &container)]).await {
            Ok(r) => r,
            Err(o) => return Response::from(o).with_note(note),
        };
        if !reply.ok() {
            return Response::new(classify_error(&reply, true), reply.status).with_note(note);
        }
        let outcome = match reply.json().and_then(|v| id_field(&v, "id")) {
            Some(id) => Outcome::Sent(PostRef { url: self.permalink(&id).await, ..PostRef::id(id) }),
            None => Outcome::Unknown(format!("HTTP {} without a thread id", reply.status)),
        };
        Response::new(outcome, reply.status).with_note(note)
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
        if !reply.ok() {
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
        if image.is_some() {
            for _ in 0..10 {
                match self.status(&id).await.as_deref() {
                    Ok("IN_PROGRESS") => tokio::time::sleep(Duration::from_millis(500)).await,
                    _ => return Ok(id),
                }
            }
            // Saved: the next try publishes this container once it is ready.
            return Err(Outcome::Retry("Threads is still processing the image".to_owned()).into());
        }
        Ok(id)
    }

    async fn status(&self, container: &str) -> Result<String, Outcome> {
        let r = self.g.call(reqwest::Method::GET, container, &[("fields", "status,error_message")]).await?;
        if !r.ok() {
            return Err(classify_error(&r, false));
        }
        Ok(r.json().and_then(|v| v["status"].as_str().map(str::to_owned)).unwrap_or_default())
    }

    async fn permalink(&self, id: &str) -> Option<String> {
        let r = self.g.call(reqwest::Method::GET, id, &[("fields", "permalink")]).await.ok()?;
        r.json()?["permalink"].as_str().map(str::to_owned)
    }

    /// The published post with this delivery's text, among the account's latest.
    async fn find(&self, req: &Request<'_>) -> Resolution {
        let path = format!("{}/threads", self.user());
        let params = [("fields", "id,text,permalink,timestamp"), ("limit", "10")];
        match self.g.call(reqwest::Method::GET, &path, &params).await {
            Ok(r) if r.ok() => {
                match r.json().and_then(|v| find_by_text(&v, "text", req.text, req.job.created_at - 120_000)) {
                    Some(t) => Resolution::Posted(PostRef {
                        url: t["permalink"].as_str().map(str::to_owned),
                        ..PostRef::id(id_field(&t, "id").unwrap_or_default())
                    }),
                    None => Resolution::NotPosted,
                }
            }
            _ => Resolution::CannotTell,
        }
    }

    pub async fn resolve(&self, req: &Request<'_>) -> Resolution {
        match req.scratch.get("container") {
            None => Resolution::NotPosted,
            Some(c) => match self.status(c).await.as_deref() {
                Ok("PUBLISHED") => self.find(req).await,
                Ok(_) => Resolution::NotPosted,
                Err(_) => Resolution::CannotTell,
            },
        }
    }

    pub async fn delete(&self, post: &PostRef) -> Response {
        let Some(id) = &post.id else { return Outcome::Sent(PostRef::default()).into() };
        match self.g.call(reqwest::Method::DELETE, id, &[]).await {
            Ok(r) if r.ok() || GraphError::of(&r).is_some_and(|e| e.missing()) => {
                Response::new(Outcome::Sent(post.clone()), r.status)
            }
            Ok(r) => Response::new(classify_error(&r, false), r.status),
            Err(o) => o.into(),
        }
    }

    pub async fn verify(&self) -> Result<String, String> {
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
