//! Secrets in the config: given inline (usually through a `BULLHORN__...` environment
//! override) or as a file (systemd `LoadCredential`, a mounted secret), never both. The
//! value lives in a [`SecretString`], whose `Debug` prints `[REDACTED]`; reading it is an
//! explicit `expose_secret()`.

use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};

/// The inline value or the file's contents; `Ok(None)` when neither is given.
pub(super) fn resolve(inline: Option<SecretString>, file: Option<&Path>) -> Result<Option<SecretString>, String> {
    match (inline, file) {
        (Some(_), Some(_)) => Err("give the secret inline or as a file, not both".to_owned()),
        (Some(s), None) if s.expose_secret().is_empty() => Err("the secret is empty".to_owned()),
        (Some(s), None) => Ok(Some(s)),
        (None, Some(f)) => read_secret(f).map(Some),
        (None, None) => Ok(None),
    }
}

/// Read a secret file, trimming the trailing newline editors add. A path starting with
/// `${CREDENTIALS_DIRECTORY}` is resolved against systemd's credentials directory; outside
/// the service (`bullhorn check` or `status` run by an administrator) against
/// `$BULLHORN_CREDENTIALS_DIR`, else `/etc/bullhorn/credentials`, where the unit's
/// `LoadCredential=` lines read them from.
pub fn read_secret(path: &Path) -> Result<SecretString, String> {
    let path = expand_credentials_dir(path);
    let text =
        std::fs::read_to_string(&path).map_err(|e| format!("cannot read secret file {}: {e}", path.display()))?;
    let value = text.trim_end_matches(['\r', '\n']);
    if value.is_empty() {
        return Err(format!("secret file {} is empty", path.display()));
    }
    Ok(SecretString::from(value))
}

/// Create `path` (it must not exist) readable by its owner only, holding `text`: a secret
/// bullhorn makes itself (the admin token, the link key) in the state directory.
pub fn write_secret(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

/// Where the packaged unit's `LoadCredential=` lines read secrets from.
pub const INSTALLED_CREDENTIALS: &str = "/etc/bullhorn/credentials";

fn expand_credentials_dir(path: &Path) -> PathBuf {
    const VAR: &str = "${CREDENTIALS_DIRECTORY}";
    match path.to_str().and_then(|s| s.strip_prefix(VAR)) {
        Some(rest) => {
            let dir = std::env::var_os("CREDENTIALS_DIRECTORY")
                .or_else(|| std::env::var_os("BULLHORN_CREDENTIALS_DIR"))
                .filter(|d| !d.is_empty())
                .map_or_else(|| PathBuf::from(INSTALLED_CREDENTIALS), PathBuf::from);
            dir.join(rest.trim_start_matches('/'))
        }
        None => path.to_path_buf(),
    }
}

/// A URL that may carry a credential in its path or query (Slack, Discord and Teams
/// webhook URLs do). `Debug` and `Display` show only the scheme, host and port.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(reqwest::Url);

impl SecretUrl {
    pub fn new(url: reqwest::Url) -> Self {
        SecretUrl(url)
    }

    /// The full URL, for making the request.
    pub fn expose(&self) -> &reqwest::Url {
        &self.0
    }
}

impl std::fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.port() {
            Some(p) => write!(f, "{}://{}:{p}/**REDACTED**", self.0.scheme(), self.0.host_str().unwrap_or("")),
            None => write!(f, "{}://{}/**REDACTED**", self.0.scheme(), self.0.host_str().unwrap_or("")),
        }
    }
}

impl std::fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretUrl({self})")
    }
}
