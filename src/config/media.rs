//! `[media]`: which origins images may be fetched from, the limits of the media pipeline,
//! and `[media.public]`, where images are published for platforms that fetch them.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

use super::file::*;
use super::*;

/// Images (`[media]`).
#[derive(Debug, Clone)]
pub struct MediaConfig {
    pub allow: Vec<Origin>,
    pub allow_private: Vec<ipnet::IpNet>,
    pub max_bytes: usize,
    pub timeout: Duration,
    pub critical_wait: Duration,
    pub wait: Duration,
    pub public: Option<PublicConfig>,
}

pub(super) fn validate(m: MediaFile, errors: &mut Errors) -> MediaConfig {
    let mut allow = Vec::new();
    for (i, origin) in m.allow.iter().enumerate() {
        match Origin::parse(origin) {
            Ok(o) => allow.push(o),
            Err(e) => errors.push(format!("media.allow[{i}]"), e),
        }
    }
    let mut allow_private = Vec::new();
    for (i, net) in m.allow_private.iter().enumerate() {
        // A bare address is a network of one.
        let parsed = net.parse::<ipnet::IpNet>().or_else(|_| net.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
        match parsed {
            Ok(n) => allow_private.push(n),
            Err(_) => errors
                .push(format!("media.allow_private[{i}]"), format!("{net:?} is not a network like \"10.20.0.0/16\"")),
        }
    }
    if m.max_bytes == 0 {
        errors.push("media.max_bytes", "must be above zero");
    }
    if m.timeout.0.is_zero() {
        errors.push("media.timeout", "must be above zero");
    }
    let public = m.public.and_then(|p| validate_public(p, errors));
    MediaConfig {
        allow,
        allow_private,
        max_bytes: m.max_bytes,
        timeout: m.timeout.0,
        critical_wait: m.critical_wait.0,
        wait: m.wait.0,
        public,
    }
}

/// Where images are published for platforms that take them by URL.
#[derive(Debug, Clone)]
pub struct PublicConfig {
    pub target: PublicTarget,
    /// No trailing slash.
    pub base_url: String,
    pub keep: Duration,
}

#[derive(Debug, Clone)]
pub enum PublicTarget {
    Dir(PathBuf),
    S3 {
        endpoint: reqwest::Url,
        bucket: String,
        region: String,
        access_key: String,
        secret_key: SecretString,
        path_style: bool,
    },
}

pub(super) fn validate_public(p: PublicFile, errors: &mut Errors) -> Option<PublicConfig> {
    let base_url = match reqwest::Url::parse(&p.base_url) {
        Ok(u) if matches!(u.scheme(), "https" | "http") => u.as_str().trim_end_matches('/').to_owned(),
        _ => {
            errors.push("media.public.base_url", "must be the http(s) URL the images are served at");
            return None;
        }
    };
    let target = match (p.dir, p.s3_endpoint) {
        (Some(dir), None) => PublicTarget::Dir(dir),
        (None, Some(endpoint)) => {
            let endpoint = match reqwest::Url::parse(&endpoint) {
                Ok(u) if matches!(u.scheme(), "https" | "http") => u,
                _ => {
                    errors.push("media.public.s3_endpoint", "must be an http(s) URL");
                    return None;
                }
            };
            let secret_key = match secret::resolve(p.secret_key, p.secret_key_file.as_deref()) {
                Ok(Some(s)) => s,
                Ok(None) => {
                    errors.push("media.public.secret_key_file", "an S3 store needs secret_key_file (or secret_key)");
                    return None;
                }
                Err(e) => {
                    errors.push("media.public.secret_key_file", e);
                    return None;
                }
            };
            let (Some(bucket), Some(access_key)) = (p.bucket, p.access_key) else {
                errors.push("media.public", "an S3 store needs bucket and access_key");
                return None;
            };
            PublicTarget::S3 {
                endpoint,
                bucket,
                region: p.region.unwrap_or_else(|| "us-east-1".to_owned()),
                access_key,
                secret_key,
                path_style: p.path_style,
            }
        }
        _ => {
            errors.push("media.public", "give either dir (served by your web server) or s3_endpoint and bucket");
            return None;
        }
    };
    Some(PublicConfig { target, base_url, keep: p.keep.0 })
}

/// An allowed origin: `https://photos.sheriff.example`, `https://*.ncmec.org`,
/// `http://10.20.1.5:8080`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub scheme: String,
    /// Lowercase; a leading `*.` matches any subdomain (not the domain itself).
    pub host: String,
    /// `None`: the scheme's default port.
    pub port: Option<u16>,
}

impl Origin {
    pub fn parse(s: &str) -> Result<Origin, String> {
        let bad = |why: &str| format!("{s:?}: {why} (write an origin like \"https://photos.agency.example\")");
        let (scheme, rest) = s.split_once("://").ok_or_else(|| bad("no scheme"))?;
        if !matches!(scheme, "https" | "http") {
            return Err(bad("only https:// (or http:// for an internal server)"));
        }
        let rest = rest.trim_end_matches('/');
        if rest.contains('/') || rest.contains('@') || rest.contains('?') {
            return Err(bad("an origin has no path, user or query"));
        }
        let (wild, rest) = match rest.strip_prefix("*.") {
            Some(r) => (true, r),
            None => (false, rest),
        };
        let url = reqwest::Url::parse(&format!("{scheme}://{rest}/")).map_err(|e| bad(&e.to_string()))?;
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_ascii_lowercase(),
            Some(url::Host::Ipv4(a)) if !wild => a.to_string(),
            Some(url::Host::Ipv6(a)) if !wild => a.to_string(),
            _ => return Err(bad("no host, or a wildcard on an address")),
        };
        let host = if wild { format!("*.{host}") } else { host };
        Ok(Origin { scheme: scheme.to_owned(), host, port: url.port() })
    }

    pub fn matches(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        let host_ok = match self.host.strip_prefix("*.") {
            Some(suffix) => {
                host.len() > suffix.len() && host.ends_with(suffix) && host[..host.len() - suffix.len()].ends_with('.')
            }
            None => host == self.host,
        };
        self.scheme == scheme && host_ok && self.port == port
    }
}
