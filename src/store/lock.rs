//! One daemon per store, and a store restored from a backup noticed before it posts.
//!
//! - **The lock**: `<store>.lock` beside the store file, locked exclusively (`flock`) by
//!   the daemon for as long as its writer runs, with its process id written in it. A
//!   second daemon on the same file would resend the first one's requests in flight (it
//!   sees their attempts as unfinished), so it refuses to start and names the holder. The
//!   kernel drops the lock when the process dies, so a crash leaves nothing to clean up.
//! - **The mark**: `STATE_DIR/store-mark`, the newest event and attempt the writer
//!   committed, rewritten (atomically, at most once a second) as it commits. A store whose
//!   newest rows are older than the mark was put back from a backup: everything sent
//!   since the backup would be sent again. The daemon then starts paused and says so.
//!   The mark is written after the commit it describes, so a crash leaves it behind the
//!   store, never ahead of it.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};

use super::StoreError;

/// The store's lock, held until dropped.
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

impl StoreLock {
    /// Lock the store at `store`, or say which process holds it.
    pub fn acquire(store: &Path) -> Result<StoreLock, StoreError> {
        let path = lock_path(store);
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(|e| {
                StoreError::Open { path: path.clone(), message: format!("cannot open the lock file: {e}") }
            })?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let who = if holder.is_empty() { "another process".to_owned() } else { holder.to_owned() };
                return Err(StoreError::Locked(format!(
                    "the store {} is in use by {who} (lock file {}): only one bullhorn may run on a store; stop the other one first",
                    store.display(),
                    path.display()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(StoreError::Open { path, message: format!("cannot lock the store: {e}") });
            }
        }
        // Who holds it, for the next one to be told. Not needed for the lock itself.
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = write!(file, "bullhorn process {} since {}", std::process::id(), jiff::Timestamp::now());
        Ok(StoreLock { _file: file })
    }
}

fn lock_path(store: &Path) -> PathBuf {
    let mut name = store.file_name().map(std::ffi::OsStr::to_os_string).unwrap_or_default();
    name.push(".lock");
    store.with_file_name(name)
}

/// The newest rows of a store as last seen, kept in the state directory.
#[derive(Debug, Clone)]
pub struct Mark {
    path: PathBuf,
    store: String,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct MarkFile {
    store: String,
    events: i64,
    attempts: i64,
    at: String,
}

/// The newest event and attempt ids of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Newest {
    pub events: i64,
    pub attempts: i64,
}

impl Mark {
    pub fn new(state_dir: &Path, store: &Path) -> Mark {
        let store = std::path::absolute(store).unwrap_or_else(|_| store.to_path_buf());
        Mark { path: state_dir.join("store-mark"), store: store.display().to_string() }
    }

    /// Why the store looks restored from a backup (its newest rows are older than the
    /// mark), or `None`.
    pub fn restored(&self, newest: Newest) -> Option<String> {
        let text = std::fs::read_to_string(&self.path).ok()?;
        let mark: MarkFile = serde_json::from_str(&text).ok()?;
        if mark.store != self.store {
            return None;
        }
        (newest.events < mark.events || newest.attempts < mark.attempts).then(|| {
            format!(
                "the store's newest event is #{} and newest attempt #{}, but on {} this machine had seen event #{} and attempt #{} ({}): it looks restored from a backup, and what was posted since the backup would be posted again",
                newest.events,
                newest.attempts,
                mark.at,
                mark.events,
                mark.attempts,
                self.path.display()
            )
        })
    }

    /// Record `newest` (atomically: a temporary file renamed over the mark).
    pub fn write(&self, newest: Newest) {
        let mark = MarkFile {
            store: self.store.clone(),
            events: newest.events,
            attempts: newest.attempts,
            at: jiff::Timestamp::now().to_string(),
        };
        let Ok(text) = serde_json::to_string(&mark) else { return };
        let tmp = self.path.with_extension("tmp");
        let written = std::fs::create_dir_all(self.path.parent().unwrap_or(Path::new(".")))
            .and_then(|()| std::fs::write(&tmp, text))
            .and_then(|()| std::fs::rename(&tmp, &self.path));
        if let Err(e) = written {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot write the store mark");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_names_the_holder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = dir.path().join("bullhorn.db");
        let held = StoreLock::acquire(&store).expect("first");
        let err = StoreLock::acquire(&store).expect_err("second");
        let text = err.to_string();
        assert!(text.contains(&format!("bullhorn process {}", std::process::id())), "{text}");
        assert!(text.contains("only one bullhorn"), "{text}");
        drop(held);
        StoreLock::acquire(&store).expect("free again once dropped");
    }

    #[test]
    fn a_store_older_than_its_mark_is_noticed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mark = Mark::new(dir.path(), &dir.path().join("bullhorn.db"));
        assert_eq!(mark.restored(Newest { events: 0, attempts: 0 }), None, "no mark yet");
        mark.write(Newest { events: 10, attempts: 7 });
        assert_eq!(mark.restored(Newest { events: 10, attempts: 7 }), None);
        assert_eq!(mark.restored(Newest { events: 12, attempts: 9 }), None, "newer is normal");
        let why = mark.restored(Newest { events: 10, attempts: 5 }).expect("older attempts");
        assert!(why.contains("restored from a backup"), "{why}");
        assert!(mark.restored(Newest { events: 3, attempts: 7 }).is_some(), "older events");
        let other = Mark::new(dir.path(), &dir.path().join("other.db"));
        assert_eq!(other.restored(Newest::default()), None, "another store's mark says nothing of this one");
    }
}
