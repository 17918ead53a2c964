//! Channel state kept in the state directory: OAuth tokens a platform refreshes (X's
//! refresh tokens are single-use, so the current one must survive a restart) and cached
//! sessions (Bluesky allows 30 logins per 5 minutes, so never one per post or per start).
//!
//! One JSON file per channel and purpose under `<state_dir>/tokens/`, mode 0600, written
//! to a temporary file, synced and renamed into place, so a crash leaves the old or the
//! new file, never half of one. Whoever refreshes holds an exclusive lock on a sibling
//! `.lock` file, so a `bullhorn check --online` beside the daemon cannot spend the same
//! refresh token twice.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
}

/// Held while a token is being refreshed; dropping it releases the lock.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

impl StateFile {
    /// `<state_dir>/tokens/<channel>.<purpose>.json`
    pub fn new(state_dir: &Path, channel: &str, purpose: &str) -> Self {
        StateFile { path: state_dir.join("tokens").join(format!("{channel}.{purpose}.json")) }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved value; `None` when there is none or it cannot be read (it is then
    /// replaced on the next save).
    pub fn load<T: DeserializeOwned>(&self) -> Option<T> {
        let text = std::fs::read_to_string(&self.path).ok()?;
        match serde_json::from_str(&text) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "ignoring an unreadable state file");
                None
            }
        }
    }

    /// Replace the saved value, durably.
    pub fn save<T: Serialize>(&self, value: &T) -> Result<(), String> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let fail = |what: &str, e: std::io::Error| format!("cannot {what} {}: {e}", self.path.display());
        std::fs::create_dir_all(dir).map_err(|e| fail("create the directory of", e))?;
        let bytes = serde_json::to_vec_pretty(value).map_err(|e| format!("cannot encode state: {e}"))?;
        let tmp = self.path.with_extension("json.tmp");
        let mut options = OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut f = options.open(&tmp).map_err(|e| fail("write", e))?;
        f.write_all(&bytes).and_then(|()| f.sync_all()).map_err(|e| fail("write", e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| fail("replace", e))?;
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Take the exclusive lock for refreshing (blocking; run it off the async threads).
    pub fn lock(&self) -> Result<Lock, String> {
        let path = self.path.with_extension("lock");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        f.lock().map_err(|e| format!("cannot lock {}: {e}", path.display()))?;
        Ok(Lock { _file: f })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_atomically_privately_and_reloads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateFile::new(dir.path(), "x", "oauth2");
        assert_eq!(state.load::<serde_json::Value>(), None);
        state.save(&serde_json::json!({ "refresh_token": "r1" })).expect("save");
        state.save(&serde_json::json!({ "refresh_token": "r2" })).expect("save");
        assert_eq!(state.load::<serde_json::Value>(), Some(serde_json::json!({ "refresh_token": "r2" })));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(state.path()).expect("meta").permissions().mode();
            assert_eq!(mode & 0o077, 0, "only the owner may read tokens");
        }
        let _lock = state.lock().expect("lock");
        std::fs::write(state.path(), "{not json").expect("write");
        assert_eq!(state.load::<serde_json::Value>(), None, "a broken file is ignored, not fatal");
    }
}
