//! How a channel's worker tells what became of a delivery: one log line and one count per
//! attempt or closing. ERROR only where someone must act (a dead letter, refused
//! credentials); a platform that is down or throttling is a WARN, its queue kept.

use std::time::Duration;

use super::Next;
use super::worker::Worker;
use crate::channel::Outcome;
use crate::store::{AttemptEnd, AttemptResult, Closing, Job};

impl Worker {
    /// Log and count how an attempt of `job` (one of `steps` steps) ended.
    pub(super) fn report(&self, job: &Job, steps: usize, outcome: &Outcome, result: &AttemptResult, next: &Next) {
        let step_of = || format!("{}/{steps}", job.progress.done + 1);
        let (name, id) = (self.name(), job.delivery_id);
        let metrics = &self.io.metrics;
        let pause = || humantime::format_duration(next_delay(next));
        match (outcome, &result.end) {
            (_, AttemptEnd::Step { .. }) => {
                tracing::debug!(channel = %name, delivery = id, step = %step_of(), "step done")
            }
            (_, AttemptEnd::Sent { post, .. }) => {
                metrics.delivery(name, "sent");
                tracing::info!(
                    channel = %name, delivery = id, event_type = %job.event_type, kind = job.kind.as_str(),
                    priority = job.priority.as_str(), post_id = post.id.as_deref().unwrap_or(""),
                    note = result.note.as_deref().unwrap_or(""), "posted"
                );
            }
            (_, AttemptEnd::Dead { .. }) => {
                metrics.delivery(name, "dead");
                tracing::error!(
                    channel = %name, delivery = id, event_type = %job.event_type, reason = %result.detail,
                    "delivery failed for good and was dead-lettered; check the channel's configuration"
                );
            }
            (Outcome::Credentials(_), _) => {
                metrics.delivery(name, outcome.label());
                tracing::error!(
                    channel = %name, delivery = id, pause = %pause(), detail = %result.detail,
                    "the platform refused the channel's credentials; its queue waits until they are fixed (then reload)"
                );
            }
            (Outcome::Unavailable(_), _) => {
                metrics.delivery(name, outcome.label());
                tracing::warn!(
                    channel = %name, delivery = id, pause = %pause(), in_a_row = self.pace.unavailable,
                    detail = %result.detail, "platform unavailable; the channel backs off, its queue kept in order"
                );
            }
            (_, _) if matches!(next, Next::Pause(_)) => {
                metrics.delivery(name, outcome.label());
                tracing::warn!(
                    channel = %name, delivery = id, pause = %pause(), detail = %result.detail,
                    "platform asked to slow down; channel paused"
                );
            }
            (_, _) => {
                metrics.delivery(name, outcome.label());
                tracing::warn!(
                    channel = %name, delivery = id, attempt = job.attempts + 1, retry_in = %pause(),
                    detail = %result.detail, "delivery failed; will retry"
                );
            }
        }
    }

    /// Log and count a delivery closed without being sent.
    pub(super) fn report_closed(&self, delivery_id: i64, closing: Closing, reason: &str) {
        tracing::info!(channel = %self.name(), delivery = delivery_id, %reason, "closed without sending");
        self.io.metrics.delivery(self.name(), closing.as_str());
    }
}

fn next_delay(next: &Next) -> Duration {
    match next {
        Next::Done => Duration::ZERO,
        Next::Retry(d) | Next::Pause(d) => *d,
    }
}
