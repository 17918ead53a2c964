//! One-time approve/reject links in staff notices, never stored in a usable form.
//!
//! A link's token is HMAC-SHA256 of a random nonce under the *link key*, 32 random bytes
//! kept in the state directory (`link-key`, 0600) like the admin token. The notice text
//! in the store carries only a placeholder, `⟦link:NONCE⟧`, and the `links` table only
//! the token's SHA-256; the channel worker puts the URL in place just before the request.
//! So neither a copy of the database nor the admin API's view of a notice gives anyone a
//! working link: only the staff channel's message does.

use std::fmt;
use std::path::Path;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The file in the state dir holding the link key.
pub const KEY_FILE: &str = "link-key";

const OPEN: &str = "\u{27E6}link:";
const CLOSE: char = '\u{27E7}';

/// The key links are derived with. `Debug` shows nothing of it.
#[derive(Clone)]
pub struct LinkKey([u8; 32]);

impl fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LinkKey(**REDACTED**)")
    }
}

impl LinkKey {
    /// The key kept in `state_dir`, made (0600) the first time.
    pub fn load_or_create(state_dir: &Path) -> Result<LinkKey, String> {
        let path = state_dir.join(KEY_FILE);
        if !path.exists() {
            std::fs::create_dir_all(state_dir).map_err(|e| format!("cannot create {}: {e}", state_dir.display()))?;
            let bytes = crate::digest::random_bytes::<32>()?;
            let text = base64::engine::general_purpose::STANDARD.encode(bytes);
            crate::config::write_secret(&path, &text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
        let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| format!("{} is not a link key (base64 of 32 bytes)", path.display()))?;
        let key: [u8; 32] =
            bytes.try_into().map_err(|_| format!("{} is not a link key (base64 of 32 bytes)", path.display()))?;
        Ok(LinkKey(key))
    }

    /// A key for tests.
    pub fn fixed(bytes: [u8; 32]) -> LinkKey {
        LinkKey(bytes)
    }

    /// The token of the link with `nonce` (43 characters, base64url).
    pub fn token(&self, nonce: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(b"bullhorn link\0");
        mac.update(nonce.as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }
}

/// What stands in a stored text for the link with `nonce`.
pub fn placeholder(nonce: &str) -> String {
    format!("{OPEN}{nonce}{CLOSE}")
}

/// The link with `nonce` under `base` (the admin server's public URL).
pub fn url(key: &LinkKey, base: &str, nonce: &str) -> String {
    format!("{base}/act/{}", key.token(nonce))
}

/// Whether `text` has placeholders to expand.
pub fn has_links(text: &str) -> bool {
    text.contains(OPEN)
}

/// `text` with every placeholder replaced by its link.
pub fn expand(text: &str, key: &LinkKey, base: &str) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    let mut rest = text;
    while let Some(start) = rest.find(OPEN) {
        out.push_str(&rest[..start]);
        let after = &rest[start + OPEN.len()..];
        match after.find(CLOSE) {
            Some(end) => {
                out.push_str(&url(key, base, &after[..end]));
                rest = &after[end + CLOSE.len_utf8()..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_text_holds_no_working_link_until_expanded() {
        let key = LinkKey::fixed([7; 32]);
        let n = crate::digest::random_nonce().expect("nonce");
        let stored = format!("Approve: {}\nReject: {}", placeholder(&n), placeholder("other"));
        assert!(has_links(&stored));
        assert!(!stored.contains(&key.token(&n)), "the token is not in what is stored");
        let sent = expand(&stored, &key, "https://bh.example");
        assert_eq!(
            sent,
            format!(
                "Approve: https://bh.example/act/{}\nReject: https://bh.example/act/{}",
                key.token(&n),
                key.token("other")
            )
        );
        assert_eq!(key.token(&n).len(), 43);
        assert_ne!(key.token(&n), LinkKey::fixed([8; 32]).token(&n), "another key, another token");
        assert_eq!(expand("no links \u{27E6}link:cut", &key, "x"), "no links \u{27E6}link:cut");
        assert!(!format!("{key:?}").contains('7'));
    }

    #[test]
    fn the_key_is_kept_private_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = LinkKey::load_or_create(dir.path()).expect("create");
        let b = LinkKey::load_or_create(dir.path()).expect("load");
        assert_eq!(a.token("n"), b.token("n"));
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join(KEY_FILE)).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
