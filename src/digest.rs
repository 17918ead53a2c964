//! Digests and randomness, for every layer: the SHA-256 that names stored values (token
//! hashes, mapped ids, idempotency material) and the random tokens and nonces bullhorn
//! makes itself. A leaf: it imports nothing of the crate.

use base64::Engine as _;
use sha2::{Digest as _, Sha256};

/// SHA-256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut s = String::with_capacity(64);
    for b in digest {
        use std::fmt::Write as _;
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// `N` random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], String> {
    let mut bytes = [0u8; N];
    getrandom::getrandom(&mut bytes).map_err(|e| format!("no randomness from the operating system: {e}"))?;
    Ok(bytes)
}

/// 32 random bytes, base64url: an admin token, a one-time link's secret, a file name
/// nobody can guess.
pub fn random_token() -> Result<String, String> {
    random_bytes::<32>().map(|b| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
}

/// 16 random bytes, base64url: unique, but not a secret on its own.
pub fn random_nonce() -> Result<String, String> {
    random_bytes::<16>().map(|b| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_is_lowercase_hex_of_the_bytes() {
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn tokens_and_nonces_are_url_safe_and_differ() {
        let (a, b) = (random_token().expect("random"), random_token().expect("random"));
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_eq!(random_nonce().expect("random").len(), 22);
    }
}
