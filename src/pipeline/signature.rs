//! Signed input: a subscription with `require_signature = true` takes only events that
//! carry an HMAC-SHA256 of their payload under the subscription's key. Pure.
//!
//! Where the signature is:
//!
//! - an MQTT 5 user property `signature` on the PUBLISH, over the payload's bytes as
//!   published; or
//! - a JSON envelope, for MQTT 3.1.1 publishers and tools that cannot set properties:
//!   `{"payload": "<the event document, as a string>", "signature": "..."}`, over the
//!   UTF-8 bytes of that string. The event inside is decoded as the subscription's format
//!   (CAP XML, EIDO or native JSON alike).
//!
//! The signature is hex (`sha256=` prefix optional, as in GitHub's webhook header) or
//! standard base64, and is compared in constant time. There is no timestamp window:
//! a broker legitimately holds messages through an outage, and a replayed message is
//! stopped by the store's dedupe key like any redelivery.

use bytes::Bytes;
use hmac::{Hmac, Mac};
use secrecy::ExposeSecret as _;
use sha2::Sha256;

use crate::config::PublisherKey;
use crate::event::{Reject, RejectKind};

/// The MQTT 5 user property that carries the signature.
pub const PROPERTY: &str = "signature";

/// The event bytes of a correctly signed message, or why it is refused.
pub fn verify(key: &PublisherKey, payload: &Bytes, user_properties: &[(String, String)]) -> Result<Bytes, Reject> {
    if let Some((_, sig)) = user_properties.iter().find(|(k, _)| k.eq_ignore_ascii_case(PROPERTY)) {
        return check(key, payload, sig).map(|()| payload.clone());
    }
    if let Some((inner, sig)) = envelope(payload) {
        return check(key, inner.as_bytes(), &sig).map(|()| Bytes::from(inner));
    }
    Err(Reject::new(
        RejectKind::Unsigned,
        format!(
            "this subscription requires a signature: an MQTT 5 user property {PROPERTY:?} or a JSON envelope {{\"payload\": ..., \"signature\": ...}}"
        ),
    ))
}

/// `{"payload": "...", "signature": "..."}` and nothing else.
fn envelope(payload: &[u8]) -> Option<(String, String)> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Envelope {
        payload: String,
        signature: String,
    }
    let trimmed = payload.trim_ascii_start();
    if !trimmed.starts_with(b"{") {
        return None;
    }
    serde_json::from_slice::<Envelope>(trimmed).ok().map(|e| (e.payload, e.signature))
}

fn check(key: &PublisherKey, message: &[u8], signature: &str) -> Result<(), Reject> {
    let bad = |why: &str| Reject::new(RejectKind::BadSignature, format!("signature {why}"));
    let given = decode(signature).ok_or_else(|| bad("is not hex or base64 of an HMAC-SHA256"))?;
    let mut mac = mac(key);
    mac.update(message);
    mac.verify_slice(&given).map_err(|_| bad("does not match the payload under this subscription's key"))
}

fn mac(key: &PublisherKey) -> Hmac<Sha256> {
    // HMAC takes a key of any length.
    Hmac::<Sha256>::new_from_slice(key.0.expose_secret().as_bytes()).expect("HMAC takes a key of any length")
}

/// Hex (optionally `sha256=`-prefixed) or standard base64.
fn decode(signature: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let s = signature.trim();
    let s = s.strip_prefix("sha256=").unwrap_or(s);
    if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return (0..32).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()).collect();
    }
    base64::engine::general_purpose::STANDARD.decode(s).ok().filter(|b| b.len() == 32)
}

/// The signature of `message` under `key`, as `sha256=<hex>`: what `bullhorn send` adds
/// and what a publisher computes.
pub fn sign(key: &PublisherKey, message: &[u8]) -> String {
    let mut mac = mac(key);
    mac.update(message);
    let mut out = String::from("sha256=");
    for b in mac.finalize().into_bytes() {
        use std::fmt::Write as _;
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// A JSON envelope carrying `message` and its signature.
pub fn envelope_for(key: &PublisherKey, message: &str) -> String {
    serde_json::json!({ "payload": message, "signature": sign(key, message.as_bytes()) }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn key(k: &str) -> PublisherKey {
        PublisherKey(SecretString::from(k))
    }

    #[test]
    fn a_known_vector_verifies_in_each_encoding() {
        // RFC 4231 test case 2.
        let k = key("Jefe");
        let msg = Bytes::from_static(b"what do ya want for nothing?");
        let hex = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        assert_eq!(sign(&k, &msg), format!("sha256={hex}"));
        for sig in [hex.to_owned(), format!("sha256={hex}"), "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM=".to_owned()]
        {
            let props = vec![("signature".to_owned(), sig.clone())];
            assert_eq!(verify(&k, &msg, &props).map_err(|r| r.reason), Ok(msg.clone()), "{sig}");
        }
    }

    #[test]
    fn unsigned_wrong_key_and_tampered_are_refused() {
        let k = key("right key");
        let msg = Bytes::from_static(br#"{"id":"1","type":"missing_child"}"#);
        assert_eq!(verify(&k, &msg, &[]).map_err(|r| r.kind), Err(RejectKind::Unsigned));
        let wrong = vec![("signature".to_owned(), sign(&key("wrong key"), &msg))];
        assert_eq!(verify(&k, &msg, &wrong).map_err(|r| r.kind), Err(RejectKind::BadSignature));
        let tampered = Bytes::from_static(br#"{"id":"2","type":"missing_child"}"#);
        let sig = vec![("signature".to_owned(), sign(&k, &msg))];
        assert_eq!(verify(&k, &tampered, &sig).map_err(|r| r.kind), Err(RejectKind::BadSignature));
        let garbage = vec![("signature".to_owned(), "not a signature".to_owned())];
        assert_eq!(verify(&k, &msg, &garbage).map_err(|r| r.kind), Err(RejectKind::BadSignature));
    }

    #[test]
    fn an_envelope_carries_any_format() {
        let k = key("cad-key");
        let cap = "<alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\"/>";
        let env = Bytes::from(envelope_for(&k, cap));
        assert_eq!(verify(&k, &env, &[]).map_err(|r| r.reason), Ok(Bytes::from(cap)));
        let forged = Bytes::from(envelope_for(&key("other"), cap));
        assert_eq!(verify(&k, &forged, &[]).map_err(|r| r.kind), Err(RejectKind::BadSignature));
        // A plain event that happens to be JSON is not an envelope.
        let plain = Bytes::from_static(br#"{"payload":"x","signature":"y","extra":1}"#);
        assert_eq!(verify(&k, &plain, &[]).map_err(|r| r.kind), Err(RejectKind::Unsigned));
    }
}
