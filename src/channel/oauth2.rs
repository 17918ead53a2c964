//! OAuth 2.0 user tokens kept fresh with a refresh token (X, Nextdoor).
//!
//! The refresh token in the config is a seed: the first refresh spends it and the
//! platform returns a new one (X's are single-use), which is saved in the state directory
//! before the new access token is used. From then on the saved chain is used for as long
//! as the config still gives the same seed; an administrator who re-authorizes puts the
//! new refresh token in the config and the chain starts again from it.

use std::fmt;
use std::time::Duration;

use secrecy::ExposeSecret as _;
use serde::{Deserialize, Serialize};

use super::http::{Reply, exchange, retry_after_header};
use super::state::StateFile;
use super::{Context, Outcome};
use crate::config::OAuth2Settings;

/// Refresh this long before the access token expires.
const EARLY: i64 = 60;

#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Tokens {
    access_token: Option<String>,
    /// Unix seconds.
    expires_at: Option<i64>,
    refresh_token: Option<String>,
    /// SHA-256 of the config's refresh token this chain started from.
    seed: Option<String>,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens").field("expires_at", &self.expires_at).finish_non_exhaustive()
    }
}

impl Tokens {
    fn usable(&self, now: i64) -> Option<&str> {
        let token = self.access_token.as_deref()?;
        self.expires_at.is_none_or(|at| at - EARLY > now).then_some(token)
    }
}

#[derive(Debug)]
pub struct OAuth2 {
    settings: OAuth2Settings,
    state: StateFile,
    http: reqwest::Client,
    timeout: Duration,
    current: tokio::sync::Mutex<Option<Tokens>>,
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

impl OAuth2 {
    pub fn new(channel: &str, settings: OAuth2Settings, ctx: &Context) -> Self {
        OAuth2 {
            settings,
            state: StateFile::new(&ctx.state_dir, channel, "oauth2"),
            http: ctx.http.clone(),
            timeout: ctx.timeout,
            current: tokio::sync::Mutex::new(None),
        }
    }

    fn seed(&self) -> Option<String> {
        self.settings.refresh_token.as_ref().map(|t| crate::digest::sha256_hex(t.expose_secret().as_bytes()))
    }

    /// What to start from: the saved chain if it grew from the config's seed, else the
    /// config's own tokens.
    fn initial(&self) -> Tokens {
        let seed = self.seed();
        match self.state.load::<Tokens>() {
            Some(saved) if saved.seed == seed => saved,
            _ => Tokens {
                access_token: self.settings.access_token.as_ref().map(|t| t.expose_secret().to_owned()),
                expires_at: None,
                refresh_token: self.settings.refresh_token.as_ref().map(|t| t.expose_secret().to_owned()),
                seed,
            },
        }
    }

    /// An access token to use now, refreshed first if it has expired.
    pub async fn token(&self) -> Result<String, Outcome> {
        let mut current = self.current.lock().await;
        let tokens = current.get_or_insert_with(|| self.initial());
        if let Some(t) = tokens.usable(now()) {
            return Ok(t.to_owned());
        }
        self.refresh(tokens).await
    }

    /// `used` was refused: refresh, unless it was already replaced.
    pub async fn refused(&self, used: &str) -> Result<String, Outcome> {
        let mut current = self.current.lock().await;
        let tokens = current.get_or_insert_with(|| self.initial());
        if let Some(t) = tokens.access_token.as_deref().filter(|t| *t != used) {
            return Ok(t.to_owned());
        }
        tokens.expires_at = Some(0);
        self.refresh(tokens).await
    }

    async fn refresh(&self, tokens: &mut Tokens) -> Result<String, Outcome> {
        let state = self.state.clone();
        let lock = tokio::task::spawn_blocking(move || state.lock())
            .await
            .map_err(|e| Outcome::Unavailable(format!("cannot lock the token file: {e}")))?
            .map_err(Outcome::Unavailable)?;
        // Another process (a `check --online`) may have refreshed meanwhile: its refresh
        // token is the live one now (ours is spent), whether or not its access token is.
        if let Some(saved) = self.state.load::<Tokens>()
            && saved.seed == tokens.seed
            && saved.refresh_token != tokens.refresh_token
        {
            *tokens = saved;
            if let Some(t) = tokens.usable(now()) {
                return Ok(t.to_owned());
            }
        }
        let Some(refresh_token) = tokens.refresh_token.clone() else {
            return Err(Outcome::Credentials(
                "the access token was refused or expired and there is no refresh token; authorize again".to_owned(),
            ));
        };
        let mut form = vec![
            ("grant_type", "refresh_token".to_owned()),
            ("refresh_token", refresh_token),
            ("client_id", self.settings.client_id.clone()),
        ];
        let mut req = self.http.post(self.settings.token_url.clone()).timeout(self.timeout);
        if let Some(secret) = &self.settings.client_secret {
            req = req.basic_auth(&self.settings.client_id, Some(secret.expose_secret()));
            form.retain(|(k, _)| *k != "client_id");
        }
        let reply = match exchange(req.form(&form)).await {
            Ok(r) => r,
            // Whether the refresh token was spent is unknown; if it was, the next try is
            // refused and says so.
            Err(Outcome::Unknown(m) | Outcome::Unavailable(m) | Outcome::Retry(m)) => {
                return Err(Outcome::Unavailable(format!("token refresh failed: {m}")));
            }
            Err(other) => return Err(other),
        };
        let fresh = parse(&reply);
        // A new refresh token replaces the spent one before anything else, even if the rest
        // of the answer is unusable.
        if let Some(r) = reply.json().and_then(|v| v["refresh_token"].as_str().map(str::to_owned)) {
            tokens.refresh_token = Some(r);
        }
        let fresh = match fresh {
            Ok(f) => f,
            Err(o) => {
                self.save(tokens);
                return Err(o);
            }
        };
        tokens.access_token = Some(fresh.access_token);
        tokens.expires_at = fresh.expires_in.map(|s| now() + s);
        self.save(tokens);
        drop(lock);
        Ok(tokens.access_token.clone().unwrap_or_default())
    }

    /// Save the tokens, trying twice: the old refresh token is already spent.
    fn save(&self, tokens: &Tokens) {
        let result = self.state.save(tokens).or_else(|_| self.state.save(tokens));
        if let Err(e) = result {
            // The alert goes out with the new token; after a restart the old refresh token
            // is refused and someone has to authorize again.
            tracing::error!(error = %e, "cannot save the refreshed OAuth token; it will be lost on restart");
        }
    }
}

struct Fresh {
    access_token: String,
    expires_in: Option<i64>,
}

fn parse(reply: &Reply) -> Result<Fresh, Outcome> {
    match reply.status {
        200..=299 => {
            let v = reply.json().unwrap_or_default();
            let access_token = v["access_token"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| Outcome::Unavailable("token refresh answered without an access token".to_owned()))?;
            // A number, or (some servers) a string of one.
            let expires_in = v["expires_in"].as_i64().or_else(|| v["expires_in"].as_str().and_then(|s| s.parse().ok()));
            Ok(Fresh { access_token, expires_in })
        }
        429 => Err(match retry_after_header(&reply.headers, jiff::Timestamp::now()) {
            Some(d) => Outcome::RetryAfter(d, format!("token refresh throttled: {}", reply.detail())),
            None => Outcome::Unavailable(format!("token refresh throttled: {}", reply.detail())),
        }),
        400 | 401 | 403 => {
            // The body names the problem (`invalid_grant`), never the token.
            let error = reply
                .json()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
                .unwrap_or_else(|| reply.detail());
            Err(Outcome::Credentials(format!(
                "the refresh token was refused ({error}); authorize again and put the new refresh token in the config"
            )))
        }
        _ => Err(Outcome::Unavailable(format!("token refresh failed: {}", reply.detail()))),
    }
}
