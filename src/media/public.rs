//! The public media store, for platforms that fetch an image by URL (Instagram, Threads,
//! Nextdoor): a directory the agency's web server serves, or an S3-compatible bucket
//! (signed with SigV4 by `rusty-s3`, sent with our own HTTP client). Names are random, so
//! a published photo cannot be found by guessing; a cleanup task removes them after
//! `keep`.

use std::time::Duration;

use bytes::Bytes;
use rusty_s3::S3Action as _;
use secrecy::ExposeSecret as _;

use crate::config::{PublicConfig, PublicTarget};

/// How long a signed S3 request stays valid.
const SIGNED_FOR: Duration = Duration::from_secs(300);

#[derive(Debug, Clone)]
pub struct PublicStore {
    cfg: PublicConfig,
    http: reqwest::Client,
}

impl PublicStore {
    pub fn new(cfg: PublicConfig, http: reqwest::Client) -> PublicStore {
        PublicStore { cfg, http }
    }

    pub fn keep(&self) -> Duration {
        self.cfg.keep
    }

    fn bucket(&self) -> Result<Option<(rusty_s3::Bucket, rusty_s3::Credentials)>, String> {
        let PublicTarget::S3 { endpoint, bucket, region, access_key, secret_key, path_style } = &self.cfg.target else {
            return Ok(None);
        };
        let style = if *path_style { rusty_s3::UrlStyle::Path } else { rusty_s3::UrlStyle::VirtualHost };
        let b = rusty_s3::Bucket::new(endpoint.clone(), style, bucket.clone(), region.clone())
            .map_err(|e| format!("S3 bucket: {e}"))?;
        Ok(Some((b, rusty_s3::Credentials::new(access_key.clone(), secret_key.expose_secret().to_owned()))))
    }

    /// Publish `bytes` as `name`; returns its public URL.
    pub async fn publish(&self, name: &str, bytes: Bytes, mime: &str) -> Result<String, String> {
        match &self.cfg.target {
            PublicTarget::Dir(dir) => {
                let (dir, name2) = (dir.clone(), name.to_owned());
                tokio::task::spawn_blocking(move || write_public(&dir, &name2, &bytes))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| format!("cannot write to the public media directory: {e}"))?;
            }
            PublicTarget::S3 { .. } => {
                let (bucket, creds) = self.bucket()?.ok_or("no bucket")?;
                let url = rusty_s3::actions::PutObject::new(&bucket, Some(&creds), name).sign(SIGNED_FOR);
                let r = self
                    .http
                    .put(url)
                    .header(reqwest::header::CONTENT_TYPE, mime)
                    .body(bytes)
                    .timeout(Duration::from_secs(60))
                    .send()
                    .await
                    .map_err(|e| format!("S3 upload failed: {}", crate::channel::http::error_text(&e)))?;
                if !r.status().is_success() {
                    let status = r.status();
                    let body = r.text().await.unwrap_or_default();
                    return Err(format!("S3 upload: HTTP {status}: {}", body.chars().take(200).collect::<String>()));
                }
            }
        }
        Ok(format!("{}/{name}", self.cfg.base_url))
    }

    /// Remove `name` (already gone counts as removed).
    pub async fn remove(&self, name: &str) -> Result<(), String> {
        match &self.cfg.target {
            PublicTarget::Dir(dir) => match std::fs::remove_file(dir.join(name)) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e.to_string()),
            },
            PublicTarget::S3 { .. } => {
                let (bucket, creds) = self.bucket()?.ok_or("no bucket")?;
                let url = rusty_s3::actions::DeleteObject::new(&bucket, Some(&creds), name).sign(SIGNED_FOR);
                let r = self
                    .http
                    .delete(url)
                    .timeout(Duration::from_secs(60))
                    .send()
                    .await
                    .map_err(|e| format!("S3 delete failed: {}", crate::channel::http::error_text(&e)))?;
                if r.status().is_success() || r.status().as_u16() == 404 {
                    Ok(())
                } else {
                    Err(format!("S3 delete: HTTP {}", r.status()))
                }
            }
        }
    }
}

/// Write atomically (a temporary name, then rename) and world-readable: the web server
/// reads it, and it is public anyway.
fn write_public(dir: &std::path::Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o644).open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))?;
    std::fs::rename(&tmp, dir.join(name))
}
