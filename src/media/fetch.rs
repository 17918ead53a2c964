//! Fetching an event's image, safely. An event names a URL; a hostile or mistaken one
//! must not make the daemon connect to the agency's own network or anywhere else.
//!
//! - The URL's origin (scheme, host, port) must be on `[media] allow`: exact hosts or
//!   `*.` suffixes. Plain `http` only where an origin says so.
//! - Host names are resolved by our own resolver, which drops loopback, private,
//!   link-local, shared, documentation and other non-global addresses unless they are in
//!   `[media] allow_private`; the connection goes to an address that passed. An address
//!   written in the URL itself passes only when the allowlist names that very address.
//! - Every redirect is checked the same way (at most 3).
//! - No proxy from the environment; a size cap enforced while reading; the
//!   `Content-Type` and the bytes' own signature must both be JPEG, PNG, WebP or GIF.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ipnet::IpNet;
use reqwest::Url;

use crate::config::Origin;

/// What may be fetched: `[media] allow` and `allow_private`.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub allow: Vec<Origin>,
    pub allow_private: Vec<IpNet>,
}

/// Whether `ip` is an address on the public internet.
pub fn is_global(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            !(a.is_loopback()
                || a.is_private()
                || a.is_link_local()
                || a.is_unspecified()
                || a.is_broadcast()
                || a.is_documentation()
                || a.is_multicast()
                || o[0] == 0
                // 100.64.0.0/10 shared (carrier-grade NAT), 192.0.0.0/24, 198.18.0.0/15
                // benchmarking, 240.0.0.0/4 reserved.
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || (o[0] == 198 && (o[1] & 0xfe) == 18)
                || o[0] >= 240)
        }
        IpAddr::V6(a) => {
            if let Some(v4) = a.to_ipv4_mapped() {
                return is_global(IpAddr::V4(v4));
            }
            let s = a.segments();
            !(a.is_loopback()
                || a.is_unspecified()
                || a.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link local
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x0064 && s[1] == 0xff9b)) // NAT64: would reach IPv4 ranges
        }
    }
}

impl Policy {
    /// Whether `url` may be fetched (before any connection).
    pub fn check_url(&self, url: &Url) -> Result<(), String> {
        let scheme = url.scheme();
        if !matches!(scheme, "https" | "http") {
            return Err(format!("{scheme}:// is not fetched"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("a URL with credentials is not fetched".to_owned());
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_ascii_lowercase(),
            Some(url::Host::Ipv4(a)) => a.to_string(),
            Some(url::Host::Ipv6(a)) => a.to_string(),
            None => return Err("no host".to_owned()),
        };
        let port = url.port();
        if !self.allow.iter().any(|o| o.matches(scheme, &host, port)) {
            let origin = match port {
                Some(p) => format!("{scheme}://{host}:{p}"),
                None => format!("{scheme}://{host}"),
            };
            return Err(format!("{origin} is not on [media] allow"));
        }
        // An address written in the URL reaches no resolver: it passes because the
        // allowlist names that very address (checked above).
        Ok(())
    }

    /// Whether a host name may connect to `ip`.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), String> {
        if is_global(ip) || self.allow_private.iter().any(|n| n.contains(&ip)) {
            Ok(())
        } else {
            Err(format!("{ip} is not a public address and not in [media] allow_private"))
        }
    }
}

/// Resolves host names and keeps only the addresses the policy allows.
struct Resolver(Arc<Policy>);

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = Arc::clone(&self.0);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let ok: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| match policy.check_ip(a.ip()) {
                    Ok(()) => true,
                    Err(e) => {
                        refused = Some(e);
                        false
                    }
                })
                .collect();
            if ok.is_empty() {
                let why = refused.unwrap_or_else(|| "no address".to_owned());
                return Err(format!("{host} refused: {why}").into());
            }
            Ok(Box::new(ok.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Why a fetch gave no image.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("refused: {0}")]
    Refused(String),
    #[error("too large: over {0} bytes")]
    TooLarge(usize),
    #[error("not an image: {0}")]
    NotAnImage(String),
    #[error("fetch failed: {0}")]
    Failed(String),
}

/// An HTTP client that fetches only what the policy allows.
#[derive(Debug, Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    policy: Arc<Policy>,
    max_bytes: usize,
}

impl Fetcher {
    pub fn new(policy: Policy, max_bytes: usize, timeout: Duration) -> Result<Fetcher, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let policy = Arc::new(policy);
        let redirects = Arc::clone(&policy);
        let client = reqwest::Client::builder()
            .user_agent(concat!("bullhorn/", env!("CARGO_PKG_VERSION"), " (media)"))
            .no_proxy()
            .dns_resolver(Arc::new(Resolver(Arc::clone(&policy))))
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() >= 3 {
                    return attempt.error("more than 3 redirects");
                }
                match redirects.check_url(attempt.url()) {
                    Ok(()) => attempt.follow(),
                    Err(e) => attempt.error(format!("redirect refused: {e}")),
                }
            }))
            .connect_timeout(timeout)
            .timeout(timeout)
            .build()
            .map_err(|e| format!("cannot build the media HTTP client: {e}"))?;
        Ok(Fetcher { client, policy, max_bytes })
    }

    /// The image at `url`, with its MIME type.
    pub async fn fetch(&self, url: &str) -> Result<(Bytes, &'static str), FetchError> {
        let url = Url::parse(url).map_err(|e| FetchError::Refused(format!("not a URL: {e}")))?;
        self.policy.check_url(&url).map_err(FetchError::Refused)?;
        let resp = self.client.get(url).send().await.map_err(|e| {
            // The chain says which check refused (redirect, resolver); never the URL,
            // which could carry a token.
            let mut why = Vec::new();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                why.push(s.to_string());
                source = s.source();
            }
            let why = if why.is_empty() { "request failed".to_owned() } else { why.join(": ") };
            if why.contains("refused:") { FetchError::Refused(why) } else { FetchError::Failed(why) }
        })?;
        let status = resp.status();
        if !status.is_success() {
            return Err(FetchError::Failed(format!("HTTP {status}")));
        }
        if resp.content_length().is_some_and(|n| n > self.max_bytes as u64) {
            return Err(FetchError::TooLarge(self.max_bytes));
        }
        let declared = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
            .unwrap_or_default();
        if !matches!(declared.as_str(), "image/jpeg" | "image/png" | "image/webp" | "image/gif") {
            return Err(FetchError::NotAnImage(format!("Content-Type {declared:?}")));
        }
        let mut body = Vec::new();
        let mut resp = resp;
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| FetchError::Failed(format!("reading the body: {}", crate::channel::http::error_text(&e))))?
        {
            if body.len() + chunk.len() > self.max_bytes {
                return Err(FetchError::TooLarge(self.max_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        let mime = bullhorn_imaging::image_mime(&body)
            .ok_or_else(|| FetchError::NotAnImage("the bytes are not JPEG, PNG, WebP or GIF".to_owned()))?;
        Ok((Bytes::from(body), mime))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &[&str], private: &[&str]) -> Policy {
        Policy {
            allow: allow.iter().map(|o| Origin::parse(o).expect("origin")).collect(),
            allow_private: private.iter().map(|n| n.parse().expect("net")).collect(),
        }
    }

    fn url(s: &str) -> Url {
        Url::parse(s).expect("url")
    }

    #[test]
    fn origins_parse_and_match_exactly() {
        let p = policy(&["https://photos.sheriff.example", "https://*.ncmec.org", "http://10.20.1.5:8080"], &[]);
        assert!(p.check_url(&url("https://photos.sheriff.example/a/b.jpg?x=1")).is_ok());
        assert!(p.check_url(&url("https://PHOTOS.sheriff.example/a.jpg")).is_ok(), "hosts compare lowercase");
        assert!(p.check_url(&url("https://cdn.ncmec.org/p.jpg")).is_ok());
        assert!(p.check_url(&url("https://ncmec.org/p.jpg")).is_err(), "a wildcard needs a subdomain");
        assert!(p.check_url(&url("https://evilncmec.org/p.jpg")).is_err());
        assert!(p.check_url(&url("http://photos.sheriff.example/a.jpg")).is_err(), "https only unless said");
        assert!(p.check_url(&url("https://photos.sheriff.example:8443/a.jpg")).is_err(), "the port is part of it");
        assert!(p.check_url(&url("http://10.20.1.5:8080/p.jpg")).is_ok(), "an internal server named by address");
        assert!(p.check_url(&url("http://10.20.1.6:8080/p.jpg")).is_err());
        assert!(p.check_url(&url("https://user:pw@photos.sheriff.example/a.jpg")).is_err());
        assert!(p.check_url(&url("file:///etc/passwd")).is_err());
        for bad in ["photos.example", "ftp://x.example", "https://x.example/path", "https://*.10.0.0.1"] {
            assert!(Origin::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_public_addresses_unless_a_network_is_allowed() {
        let p = policy(&[], &["10.20.0.0/16"]);
        for ip in [
            "127.0.0.1",
            "10.0.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "64:ff9b::a00:1",
        ] {
            assert!(p.check_ip(ip.parse().expect("ip")).is_err(), "{ip}");
        }
        for ip in ["93.184.215.14", "2606:4700::1111", "10.20.3.4"] {
            assert!(p.check_ip(ip.parse().expect("ip")).is_ok(), "{ip}");
        }
    }
}
