//! Each platform's image limits; the work itself is in `bullhorn-imaging`.

pub use bullhorn_imaging::{Processed, Spec, decode, fit};

use crate::render::platform::Platform;

const MB: usize = 1_000_000;

/// The limits of each platform that takes images (`None` for those that take none).
/// `max_bytes` overrides the size limit (a Mastodon instance's own).
pub fn spec(platform: Platform, max_bytes: Option<usize>) -> Option<Spec> {
    let mut s = match platform {
        Platform::X => Spec::new(5 * MB, 4096),
        // Mastodon resizes anything above 8.3 megapixels; instances set their own size.
        Platform::Mastodon => Spec { max_pixels: Some(3840 * 2160), ..Spec::new(8 * MB, 4096) },
        // The lexicon's blob limit for an image embed.
        Platform::Bluesky => Spec::new(MB, 2000),
        Platform::Facebook => Spec::new(4 * MB, 2048),
        Platform::Instagram => Spec {
            min_width: Some(320),
            max_width: Some(1440),
            aspect: Some((0.8, 1.91)),
            by_url: true,
            ..Spec::new(8 * MB, 1440)
        },
        Platform::Threads => Spec {
            min_width: Some(320),
            max_width: Some(1440),
            aspect: Some((0.1, 10.0)),
            by_url: true,
            ..Spec::new(8 * MB, 1440)
        },
        // sendPhoto: 10 MB, width + height at most 10,000, ratio at most 20.
        Platform::Telegram => Spec { aspect: Some((0.05, 20.0)), ..Spec::new(10 * MB, 4096) },
        // media_attachments: public URLs, images up to 10 MB.
        Platform::Nextdoor => Spec { by_url: true, ..Spec::new(5 * MB, 2048) },
        // A webhook file upload (10 MiB without a boosted server).
        Platform::Discord => Spec::new(8 * MB, 4096),
        // Slack attachments and Teams Adaptive Cards show an image from a public URL.
        Platform::Slack | Platform::Teams => Spec { by_url: true, ..Spec::new(5 * MB, 2048) },
        // MMS (US/Canada): Twilio takes 5 MB, but carriers pass about 600 KB untouched.
        Platform::Sms => Spec { by_url: true, ..Spec::new(600_000, 1600) },
        Platform::Webhook | Platform::Console | Platform::File => return None,
    };
    if let Some(b) = max_bytes {
        s.max_bytes = b;
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use bullhorn_imaging::testing::{exif_of, photo_with_gps};
    use bullhorn_imaging::{DynamicImage, Rgb, RgbImage, dimensions};

    use super::*;

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
        for p in Platform::ALL {
            let Some(s) = spec(p, None) else { continue };
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
        let small_instance = fit(&wide, &spec(Platform::Mastodon, Some(200_000)).expect("spec")).expect("fit");
        assert!(small_instance.bytes.len() <= 200_000, "an instance's own limit");
        assert_eq!(spec(Platform::Webhook, None), None, "a webhook takes no image");
    }
}
