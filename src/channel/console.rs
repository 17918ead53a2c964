//! The console channel: each post printed to standard output, for trials, drills and
//! watching a daemon in a terminal. It cannot fail in a way worth retrying differently
//! and keeps no record, so an unknown outcome cannot be resolved (it is printed again).

use tokio::io::AsyncWriteExt as _;

use super::{Api, Verified};
use super::{Outcome, PostRef, Request, Response};
use crate::platform::Platform;

#[derive(Debug)]
pub struct Console {
    name: String,
}

impl Console {
    pub fn new(name: &str) -> Self {
        Console { name: name.to_owned() }
    }
}

impl Api for Console {
    const PLATFORM: Platform = Platform::Console;

    async fn verify(&self) -> Verified {
        Verified::Unchecked("local; nothing to check".to_owned())
    }

    async fn send(&self, req: &Request<'_>) -> Response {
        let post = req.post;
        let mut out = format!(
            "==== bullhorn [{}] {} {} · {} · {} {} ====\n",
            self.name,
            post.priority.as_str().to_uppercase(),
            post.kind.as_str(),
            post.event.event_type,
            post.event.incident,
            post.event.revision.map(|r| format!("r{r}")).unwrap_or_default(),
        );
        if let Some(parent) = req.reply_to.and_then(|p| p.id.as_deref()) {
            out.push_str(&format!("(in reply to {parent})\n"));
        }
        if post.parts.is_empty() {
            out.push_str(post.text);
            out.push_str("\n\n");
        } else {
            for part in post.parts {
                out.push_str(part);
                out.push_str("\n  ┄┄\n");
            }
            out.push('\n');
        }
        let mut stdout = tokio::io::stdout();
        let result = async {
            stdout.write_all(out.as_bytes()).await?;
            stdout.flush().await
        }
        .await;
        match result {
            Ok(()) => Outcome::Sent(PostRef::id(format!("console:{}", post.delivery_id))).into(),
            Err(e) => Outcome::Retry(format!("cannot write to stdout: {e}")).into(),
        }
    }
}
