//! The console channel: each post printed to standard output, for trials, drills and
//! watching a daemon in a terminal. It cannot fail in a way worth retrying differently
//! and keeps no record, so an unknown outcome cannot be resolved (it is printed again).

use tokio::io::AsyncWriteExt as _;

use super::{Outcome, PostRef, Request, Response};

#[derive(Debug)]
pub struct Console {
    name: String,
}

impl Console {
    pub fn new(name: &str) -> Self {
        Console { name: name.to_owned() }
    }

    pub async fn send(&self, req: &Request<'_>) -> Response {
        let job = req.job;
        let mut out = format!(
            "==== bullhorn [{}] {} {} · {} · {} {} ====\n",
            self.name,
            job.priority.as_str().to_uppercase(),
            job.kind.as_str(),
            job.event_type,
            job.incident_key,
            job.revision.map(|r| format!("r{r}")).unwrap_or_default(),
        );
        if let Some(parent) = req.reply_to.and_then(|p| p.id.as_deref()) {
            out.push_str(&format!("(in reply to {parent})\n"));
        }
        if job.parts.is_empty() {
            out.push_str(&job.text);
            out.push_str("\n\n");
        } else {
            for part in &job.parts {
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
            Ok(()) => Outcome::Sent(PostRef::id(format!("console:{}", job.delivery_id))).into(),
            Err(e) => Outcome::Retry(format!("cannot write to stdout: {e}")).into(),
        }
    }
}
