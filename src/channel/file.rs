//! The file channel: each post appended as one JSON line to a file, synced to disk before
//! it counts as sent. Lines carry the delivery's idempotency key, so after a crash
//! mid-write the channel can tell whether the post made it: the one local channel with
//! exactly-once output.
//!
//! Requests in flight together share one write and one fsync (a group commit per file):
//! a line waits for the write in progress, then goes with every line that came meanwhile.

use std::collections::HashMap;
use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, PoisonError, Weak};

use tokio::sync::oneshot;

use super::{Api, Verified};
use super::{Outcome, PostRef, Request, Resolution, Response};
use crate::platform::Platform;

#[derive(Debug)]
pub struct FileChannel {
    name: String,
    path: PathBuf,
    appender: Arc<Appender>,
}

/// The lines waiting for a file's next write, and whether a write is under way. One per
/// file, whichever channels (or a channel rebuilt by a reload) write to it.
#[derive(Debug)]
struct Appender {
    path: PathBuf,
    queue: Mutex<Waiting>,
}

/// A line and who waits to hear it was written.
type WaitingLine = (Vec<u8>, oneshot::Sender<Result<(), Append>>);

#[derive(Debug, Default)]
struct Waiting {
    lines: Vec<WaitingLine>,
    writing: bool,
}

/// The write task's hold on `writing`: if the task never runs (the runtime shutting down)
/// or panics, the next line starts a writer of its own and those waiting are told.
struct Writing {
    appender: Arc<Appender>,
    done: bool,
}

impl Drop for Writing {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let lines = {
            let mut q = self.appender.queue.lock().unwrap_or_else(PoisonError::into_inner);
            q.writing = false;
            std::mem::take(&mut q.lines)
        };
        for (_, tx) in lines {
            let _ = tx.send(Err(Append::MaybeWritten(std::io::Error::other("the write task stopped"))));
        }
    }
}

/// The appenders in use, by path.
static APPENDERS: LazyLock<Mutex<HashMap<PathBuf, Weak<Appender>>>> = LazyLock::new(Mutex::default);

impl Appender {
    fn for_path(path: &Path) -> Arc<Appender> {
        let mut all = APPENDERS.lock().unwrap_or_else(PoisonError::into_inner);
        all.retain(|_, a| a.strong_count() > 0);
        if let Some(a) = all.get(path).and_then(Weak::upgrade) {
            return a;
        }
        let a = Arc::new(Appender { path: path.to_path_buf(), queue: Mutex::default() });
        all.insert(path.to_path_buf(), Arc::downgrade(&a));
        a
    }

    /// Append `bytes` (one line) with whatever else waits, and sync.
    async fn append(self: &Arc<Self>, bytes: Vec<u8>) -> Result<(), Append> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            q.lines.push((bytes, tx));
            !std::mem::replace(&mut q.writing, true)
        };
        if start {
            let guard = Writing { appender: Arc::clone(self), done: false };
            // Not cancelled with the request: the lines it took are answered.
            drop(tokio::task::spawn_blocking(move || {
                let mut guard = guard;
                guard.appender.write_all_waiting();
                guard.done = true;
                drop(guard);
            }));
        }
        rx.await.unwrap_or_else(|_| Err(Append::MaybeWritten(std::io::Error::other("the write task stopped"))))
    }

    /// Write what waits, one batch at a time, until nothing does.
    fn write_all_waiting(&self) {
        loop {
            let batch = {
                let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
                if q.lines.is_empty() {
                    q.writing = false;
                    return;
                }
                std::mem::take(&mut q.lines)
            };
            let bytes: Vec<u8> = batch.iter().flat_map(|(b, _)| b.iter().copied()).collect();
            let result = append(&self.path, &bytes);
            for (_, tx) in batch {
                let _ = tx.send(match &result {
                    Ok(()) => Ok(()),
                    Err(Append::NotWritten(e)) => Err(Append::NotWritten(std::io::Error::new(e.kind(), e.to_string()))),
                    Err(Append::MaybeWritten(e)) => {
                        Err(Append::MaybeWritten(std::io::Error::new(e.kind(), e.to_string())))
                    }
                });
            }
        }
    }
}

/// One line of the file.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Line {
    pub at: String,
    pub channel: String,
    pub key: String,
    pub delivery_id: i64,
    pub event_id: i64,
    pub incident: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub msg_type: String,
    pub kind: String,
    pub status: String,
    pub priority: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub revision: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub in_reply_to: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub language: String,
    pub text: String,
    /// A thread's parts, when the text was split.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub parts: Vec<String>,
}

impl FileChannel {
    pub fn new(name: &str, path: &Path) -> Self {
        FileChannel { name: name.to_owned(), path: path.to_path_buf(), appender: Appender::for_path(path) }
    }
}

impl Api for FileChannel {
    const PLATFORM: Platform = Platform::File;
    const READS_BACK: bool = true;

    async fn verify(&self) -> Verified {
        Verified::Unchecked("local; nothing to check".to_owned())
    }

    async fn send(&self, req: &Request<'_>) -> Response {
        let post = req.post;
        let line = Line {
            at: jiff::Timestamp::now().to_string(),
            channel: self.name.clone(),
            key: post.key.to_owned(),
            delivery_id: post.delivery_id,
            event_id: post.event.id,
            incident: post.event.incident.to_owned(),
            event_type: post.event.event_type.to_owned(),
            msg_type: post.event.msg_type.to_owned(),
            kind: post.kind.as_str().to_owned(),
            status: post.event.status.to_owned(),
            priority: post.priority.as_str().to_owned(),
            revision: post.event.revision,
            in_reply_to: req.reply_to.and_then(|p| p.id.clone()),
            language: post.language.to_owned(),
            text: post.text.to_owned(),
            parts: post.parts.to_vec(),
        };
        let mut bytes = match serde_json::to_vec(&line) {
            Ok(b) => b,
            Err(e) => return Outcome::Permanent(format!("cannot encode line: {e}")).into(),
        };
        bytes.push(b'\n');
        match self.appender.append(bytes).await {
            Ok(()) => Outcome::Sent(PostRef::id(post.key)).into(),
            Err(Append::NotWritten(e)) => Outcome::Retry(format!("cannot open {}: {e}", self.path.display())).into(),
            // Part or all of the line may be in the file: look before writing it again.
            Err(Append::MaybeWritten(e)) => {
                Outcome::Unknown(format!("append to {} failed: {e}", self.path.display())).into()
            }
        }
    }

    /// Whether a line with the delivery's key is in the file.
    async fn read_back(&self, req: &Request<'_>) -> Resolution {
        let post = &req.post;
        let path = self.path.clone();
        let key = post.key.to_owned();
        let found = tokio::task::spawn_blocking(move || contains_key(&path, &key)).await;
        match found {
            Ok(Ok(true)) => Resolution::Posted(PostRef::id(post.key)),
            Ok(Ok(false)) => Resolution::NotPosted,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => Resolution::NotPosted,
            _ => Resolution::CannotTell,
        }
    }
}

#[derive(Debug)]
enum Append {
    NotWritten(std::io::Error),
    MaybeWritten(std::io::Error),
}

fn append(path: &Path, bytes: &[u8]) -> Result<(), Append> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(Append::NotWritten)?;
    }
    let mut f =
        std::fs::OpenOptions::new().create(true).append(true).read(true).open(path).map_err(Append::NotWritten)?;
    // A line torn by a crash or a failed write must not swallow this one.
    let torn = ends_without_newline(&mut f).map_err(Append::NotWritten)?;
    let mut line = Vec::with_capacity(bytes.len() + 1);
    if torn {
        line.push(b'\n');
    }
    line.extend_from_slice(bytes);
    f.write_all(&line).map_err(Append::MaybeWritten)?;
    f.sync_data().map_err(Append::MaybeWritten)
}

fn ends_without_newline(f: &mut std::fs::File) -> std::io::Result<bool> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    if f.metadata()?.len() == 0 {
        return Ok(false);
    }
    f.seek(SeekFrom::End(-1))?;
    let mut last = [0u8; 1];
    f.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
}

fn contains_key(path: &Path, key: &str) -> std::io::Result<bool> {
    let f = std::io::BufReader::new(std::fs::File::open(path)?);
    for line in f.split(b'\n') {
        let line = line?;
        if !std::str::from_utf8(&line).is_ok_and(|s| s.contains(key)) {
            continue;
        }
        // A torn last line (crash mid-write) does not parse and does not count.
        if let Ok(l) = serde_json::from_slice::<Line>(&line)
            && l.key == key
        {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_line_does_not_swallow_the_next_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("posts.jsonl");
        std::fs::write(&path, "{\"at\":\"2026-11-21T00:00:00Z\",\"chan").expect("torn line");
        let line = br#"{"at":"x","channel":"log","key":"bh_k","delivery_id":1,"event_id":1,"incident":"json:A","type":"t","msg_type":"alert","kind":"post","status":"actual","priority":"normal","text":"hi"}"#;
        let mut bytes = line.to_vec();
        bytes.push(b'\n');
        assert!(append(&path, &bytes).is_ok());
        assert!(contains_key(&path, "bh_k").expect("read"));
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text.lines().count(), 2, "the new line starts on its own line");
        assert!(!contains_key(&path, "bh_other").expect("read"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lines_written_together_each_arrive_whole_and_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("posts.jsonl");
        let appender = Appender::for_path(&path);
        assert!(Arc::ptr_eq(&appender, &Appender::for_path(&path)), "one appender per file");
        let writes = (0..200).map(|i| {
            let a = Arc::clone(&appender);
            tokio::spawn(async move { a.append(format!("{{\"n\":{i}}}\n").into_bytes()).await })
        });
        for w in writes.collect::<Vec<_>>() {
            assert!(w.await.expect("task").is_ok());
        }
        let text = std::fs::read_to_string(&path).expect("read");
        let mut seen: Vec<i64> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("whole line")["n"].as_i64().expect("n"))
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..200).collect::<Vec<_>>());
    }
}
