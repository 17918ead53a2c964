//! Platforms: where a channel posts, and what bullhorn knows of each, in one place.
//!
//! A *profile* is one platform's row: its length limit and how it counts it, its
//! documented posting rate, what markup an event's value must be escaped for and whether
//! `@name` notifies someone, the images it takes, and what its API can do (reply in a
//! thread, delete a post, say whether a timed-out request posted). [`Platform::profile`]
//! is one exhaustive `match`, so a new platform does not compile until its row is filled
//! in; everything else that differs by platform reads the row instead of matching on the
//! platform again. A leaf: it imports nothing of the crate.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

pub use bullhorn_imaging::Spec;
use serde::{Deserialize, Deserializer, Serialize};

/// Declares [`Platform`] and its list together, so the list cannot miss one.
macro_rules! platforms {
    ($($(#[$doc:meta])* $variant:ident = $name:literal,)*) => {
        /// Where a channel posts. Each channel kind maps to one.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "lowercase")]
        pub enum Platform {
            $($(#[$doc])* $variant,)*
        }

        impl Platform {
            /// Every platform, in declaration order.
            pub const ALL: &[Platform] = &[$(Platform::$variant,)*];

            /// The name used in `kind = "..."`, template file names and metrics.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Platform::$variant => $name,)*
                }
            }
        }
    };
}

platforms! {
    X = "x",
    Mastodon = "mastodon",
    Bluesky = "bluesky",
    Facebook = "facebook",
    Instagram = "instagram",
    Threads = "threads",
    Telegram = "telegram",
    Discord = "discord",
    Slack = "slack",
    Teams = "teams",
    Nextdoor = "nextdoor",
    Sms = "sms",
    /// Mail over SMTP: the press desk, partner agencies, staff.
    Email = "email",
    /// Any HTTP receiver, signed with Standard Webhooks.
    Webhook = "webhook",
    /// Standard output: for trying bullhorn out.
    Console = "console",
    /// Lines appended to a local file: for exercises and audits.
    File = "file",
}

/// How a platform counts the length of a post (the counting itself is in
/// `render::length`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// X's weighted length (twitter-text): URLs 23, CJK and emoji 2.
    XWeighted,
    /// Grapheme clusters, each http(s) URL 23 (Mastodon).
    GraphemesUrls23,
    /// Grapheme clusters, and at most 3,000 UTF-8 bytes as well (Bluesky).
    GraphemesAndBytes,
    /// Characters, an emoji counting as its UTF-8 bytes (Threads).
    CharsEmojiBytes,
    /// UTF-16 code units (Telegram).
    Utf16,
    /// UTF-8 bytes (a whole request body bounds it).
    Bytes,
    /// Characters, and the GSM-7 or UCS-2 segments the message is billed as.
    SmsChars,
    /// Unicode scalar values.
    Chars,
}

impl Count {
    /// The unit, for messages ("281/280 weighted characters").
    pub fn unit(self) -> &'static str {
        match self {
            Count::XWeighted => "weighted characters",
            Count::GraphemesUrls23 | Count::GraphemesAndBytes => "graphemes",
            Count::Utf16 => "UTF-16 units",
            Count::Bytes => "bytes",
            Count::CharsEmojiBytes | Count::SmsChars | Count::Chars => "characters",
        }
    }
}

/// What an event's value must be escaped for (`render::escape`), beyond mentions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Markup {
    /// Plain text: nothing is interpreted.
    Plain,
    /// Discord Markdown, masked links and `<@id>` mentions.
    Discord,
    /// Slack's `<!channel>` and `<url|label>` (sent with `mrkdwn` off).
    Slack,
    /// Teams: Markdown and HTML entities.
    Teams,
}

/// What the platform can say about a request whose answer was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// Its API can be asked whether the post exists (the channel reads it back).
    ReadBack,
    /// It drops a repeat of the same request (an idempotency key): send again.
    Deduplicated,
    /// Neither: sending again may post twice.
    CannotTell,
}

/// One platform's row. See the module documentation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    /// The limit on one post, counted by `count`; `None` for none.
    pub limit: Option<usize>,
    pub count: Count,
    /// The documented posting limit, applied unless a channel sets `rate`. Where a
    /// platform documents none, a conservative one.
    pub rate: Option<Rate>,
    pub markup: Markup,
    /// `@name` notifies or tags someone, so event values have it neutralised.
    pub mentions: bool,
    /// The images it takes; `None` for none.
    pub image: Option<Spec>,
    /// A post must carry an image (a text card is made when the alert has none).
    pub needs_image: bool,
    /// A post can reply to another, so updates thread under the alert and long texts
    /// become threads.
    pub replies: bool,
    /// A post can be deleted (a cancellation may delete the original).
    pub delete: bool,
    pub recovery: Recovery,
    /// Writes locally, not to anyone: shadow mode still writes to it.
    pub local: bool,
    /// How many deliveries may be in flight at once unless a channel sets `concurrency`:
    /// 1 where the platform needs one request at a time (its own ordering, or limits
    /// on concurrent writes to one account). Deliveries of one incident never overlap.
    pub concurrency: usize,
}

const MB: usize = 1_000_000;

const fn per(limit: u32, secs: u64) -> Option<Rate> {
    Some(Rate { limit, window: Duration::from_secs(secs) })
}

impl Platform {
    /// The platform with this name, as written in `kind = "..."`.
    pub fn parse(s: &str) -> Option<Platform> {
        Platform::ALL.iter().copied().find(|p| p.as_str() == s)
    }

    /// This platform's row.
    pub fn profile(self) -> Profile {
        let local = Profile {
            limit: None,
            count: Count::Chars,
            rate: None,
            markup: Markup::Plain,
            mentions: false,
            image: None,
            needs_image: false,
            replies: false,
            delete: false,
            recovery: Recovery::CannotTell,
            local: true,
            concurrency: 1,
        };
        let social = Profile { mentions: true, replies: true, delete: true, recovery: Recovery::ReadBack, ..local };
        let social = Profile { local: false, ..social };
        match self {
            Platform::X => Profile {
                limit: Some(280),
                count: Count::XWeighted,
                // 100 posts per 15 minutes per user (POST /2/tweets).
                rate: per(100, 15 * 60),
                image: Some(Spec::new(5 * MB, 4096)),
                ..social
            },
            Platform::Mastodon => Profile {
                limit: Some(500),
                count: Count::GraphemesUrls23,
                // The statuses family: 300 per 3 hours per account.
                rate: per(300, 3 * 3600),
                // Mastodon resizes anything above 8.3 megapixels; instances set their own size.
                image: Some(Spec { max_pixels: Some(3840 * 2160), ..Spec::new(8 * MB, 4096) }),
                // `Idempotency-Key`: a repeat within an hour returns the first post.
                recovery: Recovery::Deduplicated,
                ..social
            },
            Platform::Bluesky => Profile {
                limit: Some(300),
                count: Count::GraphemesAndBytes,
                // 5,000 write points an hour at 3 a post is 1,666 posts; keep some for deletes.
                rate: per(1_500, 3600),
                // Facets, not text, make mentions.
                mentions: false,
                // The lexicon's blob limit for an image embed.
                image: Some(Spec::new(MB, 2000)),
                ..social
            },
            Platform::Facebook => Profile {
                limit: Some(63_206),
                count: Count::Chars,
                // Undocumented (it depends on the Page's audience).
                rate: per(200, 3600),
                image: Some(Spec::new(4 * MB, 2048)),
                ..social
            },
            Platform::Instagram => Profile {
                limit: Some(2_200),
                count: Count::Chars,
                // content_publishing_limit: 50 published posts per 24 hours.
                rate: per(50, 24 * 3600),
                image: Some(Spec {
                    min_width: Some(320),
                    max_width: Some(1440),
                    aspect: Some((0.8, 1.91)),
                    by_url: true,
                    ..Spec::new(8 * MB, 1440)
                }),
                needs_image: true,
                // Updates are comments; the API cannot delete a post.
                delete: false,
                ..social
            },
            Platform::Threads => Profile {
                limit: Some(500),
                count: Count::CharsEmojiBytes,
                // 250 API-published posts per 24 hours.
                rate: per(250, 24 * 3600),
                image: Some(Spec {
                    min_width: Some(320),
                    max_width: Some(1440),
                    aspect: Some((0.1, 10.0)),
                    by_url: true,
                    ..Spec::new(8 * MB, 1440)
                }),
                ..social
            },
            Platform::Telegram => Profile {
                limit: Some(4_096),
                count: Count::Utf16,
                // 20 messages a minute to one group or channel.
                rate: per(20, 60),
                // sendPhoto: 10 MB, width + height at most 10,000, ratio at most 20.
                image: Some(Spec { aspect: Some((0.05, 20.0)), ..Spec::new(10 * MB, 4096) }),
                // No idempotency key and no way to read back what was posted.
                recovery: Recovery::CannotTell,
                // Bots may send about 30 messages a second overall.
                concurrency: 4,
                ..social
            },
            Platform::Discord => Profile {
                limit: Some(2_000),
                count: Count::Chars,
                // About 30 messages a minute per channel through a webhook.
                rate: per(30, 60),
                markup: Markup::Discord,
                // A webhook file upload (10 MiB without a boosted server).
                image: Some(Spec::new(8 * MB, 4096)),
                recovery: Recovery::CannotTell,
                concurrency: 4,
                ..social
            },
            Platform::Slack => Profile {
                limit: Some(40_000),
                count: Count::Chars,
                // One message a second to a channel.
                rate: per(1, 1),
                markup: Markup::Slack,
                // Attachments show an image from a public URL.
                image: Some(Spec { by_url: true, ..Spec::new(5 * MB, 2048) }),
                recovery: Recovery::CannotTell,
                ..social
            },
            Platform::Teams => Profile {
                // The whole Adaptive Card message must stay under ~28 KB; leave room for the card.
                limit: Some(24_000),
                count: Count::Bytes,
                // More than 4 requests a second is throttled.
                rate: per(4, 1),
                markup: Markup::Teams,
                // An Adaptive Card shows an image from a public URL.
                image: Some(Spec { by_url: true, ..Spec::new(5 * MB, 2048) }),
                // A Workflows webhook returns no message id to delete.
                delete: false,
                recovery: Recovery::CannotTell,
                ..social
            },
            Platform::Nextdoor => Profile {
                limit: Some(8_192),
                count: Count::Bytes,
                // Unpublished.
                rate: per(30, 3600),
                // media_attachments: public URLs, images up to 10 MB.
                image: Some(Spec { by_url: true, ..Spec::new(5 * MB, 2048) }),
                // One post of up to 8,192 characters; no reply or delete to rely on.
                replies: false,
                delete: false,
                recovery: Recovery::CannotTell,
                ..social
            },
            Platform::Sms => Profile {
                limit: Some(1_600),
                count: Count::SmsChars,
                // A long-code sender sends about one segment a second.
                rate: per(1, 1),
                mentions: false,
                // MMS (US/Canada): Twilio takes 5 MB, but carriers pass about 600 KB untouched.
                image: Some(Spec { by_url: true, ..Spec::new(600_000, 1600) }),
                // Long texts go as several messages, in order.
                replies: true,
                delete: false,
                // Recipients at once: Twilio queues each sender's messages at its own
                // throughput, and answers 20429 beyond an account's concurrent requests.
                concurrency: 8,
                ..social
            },
            Platform::Email => Profile {
                // Microsoft 365 takes 30 messages a minute from one mailbox (and 10,000
                // recipients a day); Google Workspace 2,000 a day. Relays set their own.
                rate: per(30, 60),
                // An attachment: mail servers commonly refuse messages above 10 to 25 MB.
                image: Some(Spec::new(5 * MB, 2048)),
                // Updates carry In-Reply-To and References, so mail clients thread them.
                replies: true,
                // Sent mail cannot be unsent, and SMTP cannot say whether a message whose
                // answer was lost went out (receivers may drop a repeat of its Message-ID).
                delete: false,
                recovery: Recovery::CannotTell,
                local: false,
                // Connections at once; each request is its own SMTP session.
                concurrency: 4,
                ..local
            },
            Platform::Webhook => Profile {
                local: false,
                // The receiver deduplicates on `webhook-id`, which stays the same on a resend.
                recovery: Recovery::Deduplicated,
                concurrency: 8,
                ..local
            },
            // Stdout keeps no record to look in.
            Platform::Console => local,
            // The file is read back for the delivery's key.
            // Lines of requests in flight together are written with one fsync.
            Platform::File => Profile { recovery: Recovery::ReadBack, concurrency: 64, ..local },
        }
    }

    /// The images this platform takes, with a channel's own size limit (a Mastodon
    /// instance's) in place of the platform's.
    pub fn image_spec(self, max_bytes: Option<usize>) -> Option<Spec> {
        self.profile().image.map(|s| Spec { max_bytes: max_bytes.unwrap_or(s.max_bytes), ..s })
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A quota: at most `limit` requests in any window of `window` (`rate = "300/3h"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub limit: u32,
    pub window: Duration,
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (n, w) =
            s.split_once('/').ok_or_else(|| format!("invalid rate {s:?}: write COUNT/WINDOW, e.g. \"300/3h\""))?;
        let limit: u32 = n.trim().parse().map_err(|_| format!("invalid rate {s:?}: {n:?} is not a count"))?;
        let w = w.trim();
        // "20/m" reads naturally; humantime wants a number in front.
        let w = if w.starts_with(|c: char| c.is_ascii_digit()) { w.to_owned() } else { format!("1{w}") };
        let window = humantime::parse_duration(&w).map_err(|e| format!("invalid rate {s:?}: window: {e}"))?;
        if limit == 0 || window.is_zero() {
            return Err(format!("invalid rate {s:?}: count and window must be above zero"));
        }
        Ok(Rate { limit, window })
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use bullhorn_imaging::testing::{exif_of, photo_with_gps};
    use bullhorn_imaging::{DynamicImage, Rgb, RgbImage, decode, dimensions, fit};

    use super::*;

    #[test]
    fn names_round_trip_and_the_list_is_complete() {
        assert_eq!(Platform::ALL.len(), 16);
        for &p in Platform::ALL {
            assert_eq!(Platform::parse(p.as_str()), Some(p));
            assert_eq!(serde_json::to_value(p).expect("json"), p.as_str());
        }
        assert_eq!(Platform::parse("twitter"), None);
    }

    #[test]
    fn rate_parses_count_and_window() {
        assert_eq!("300/3h".parse::<Rate>(), Ok(Rate { limit: 300, window: Duration::from_secs(3 * 3600) }));
        assert_eq!("20/m".parse::<Rate>(), Ok(Rate { limit: 20, window: Duration::from_secs(60) }));
        assert_eq!("50 / 24h".parse::<Rate>(), Ok(Rate { limit: 50, window: Duration::from_secs(86400) }));
        assert!("300".parse::<Rate>().is_err());
        assert!("0/1h".parse::<Rate>().is_err());
        assert!("x/1h".parse::<Rate>().is_err());
        assert!("5/soon".parse::<Rate>().is_err());
    }

    #[test]
    fn rows_agree_with_themselves() {
        for &p in Platform::ALL {
            let row = p.profile();
            assert_eq!(row.local, matches!(p, Platform::Console | Platform::File), "{p}");
            assert_eq!(row.rate.is_some(), !matches!(p, Platform::Console | Platform::File | Platform::Webhook), "{p}");
            assert!(!row.needs_image || row.image.is_some(), "{p}: needs an image it cannot take");
            assert!(!row.delete || row.replies, "{p}: deletes but cannot reply");
        }
    }

    #[test]
    fn every_platform_gets_a_stripped_image_within_its_limits() {
        let input = photo_with_gps(640, 480);
        assert!(bullhorn_imaging::testing::has_gps(&input), "the input carries GPS");
        // Noise, so it does not compress to nothing; too wide for Instagram, too many
        // bytes for Bluesky.
        let mut seed = 1u32;
        let wide = DynamicImage::ImageRgb8(RgbImage::from_fn(4000, 700, |_, _| {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let n = seed.to_le_bytes()[2];
            Rgb([n, n.wrapping_mul(3), n.wrapping_mul(7)])
        }));
        let photo = decode(&input).expect("decode");
        for &p in Platform::ALL {
            let Some(s) = p.image_spec(None) else { continue };
            for img in [&photo, &wide] {
                let out = fit(img, &s).expect("fit");
                assert_eq!(exif_of(&out.bytes), None, "{p}: no EXIF");
                assert!(out.bytes.len() <= s.max_bytes, "{p}: {} bytes", out.bytes.len());
                assert_eq!(dimensions(&out.bytes), Some((out.width, out.height)), "{p}");
                assert!(out.width.max(out.height) <= s.max_side, "{p}: {}x{}", out.width, out.height);
                if let Some(mw) = s.max_width {
                    assert!(out.width <= mw && out.width >= s.min_width.unwrap_or(0), "{p}: width {}", out.width);
                }
                if let Some((lo, hi)) = s.aspect {
                    let r = out.width as f32 / out.height as f32;
                    assert!(r >= lo - 0.01 && r <= hi + 0.01, "{p}: ratio {r}");
                }
            }
        }
        let spec = Platform::Mastodon.image_spec(Some(200_000)).expect("spec");
        let small_instance = fit(&wide, &spec).expect("fit");
        assert!(small_instance.bytes.len() <= 200_000, "an instance's own limit");
        assert_eq!(Platform::Webhook.image_spec(None), None, "a webhook takes no image");
    }
}
