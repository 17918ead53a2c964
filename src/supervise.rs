//! Tasks whose failure must stop the daemon. A panic in a long-running task (ingest, a
//! channel worker, the store writer) would otherwise leave the process up and looking
//! healthy while it does nothing. Instead the panic is logged at ERROR and `failed` is
//! triggered; `app::run` then stops everything in order and returns an error, so the
//! service manager restarts bullhorn, which resumes from the store and the broker.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt as _;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Spawn `fut`; if it panics, log it and trigger `failed`.
pub fn spawn<F>(name: String, failed: CancellationToken, fut: F) -> JoinHandle<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(panic) = AssertUnwindSafe(fut).catch_unwind().await {
            tracing::error!(task = %name, panic = %message(panic.as_ref()), "task failed; stopping bullhorn so it is restarted");
            failed.cancel();
        }
    })
}

/// The text of a panic payload.
pub fn message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}
