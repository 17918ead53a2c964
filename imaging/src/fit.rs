//! Decode (with limits against decompression bombs), turn upright by the EXIF orientation,
//! fit to a platform's limits, re-encode as JPEG.
//!
//! Re-encoding writes a bare JFIF: no EXIF, GPS, maker notes or comments survive it, so
//! where a photo was taken never leaves the building with it. Nothing is cropped (a
//! child's face must not be cut off): an aspect ratio a platform refuses is padded.

use std::io::Cursor;

use image::imageops::FilterType;
use image::{DynamicImage, ImageDecoder as _, ImageReader, Limits, Rgb, RgbImage};

/// What a platform takes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spec {
    pub max_bytes: usize,
    /// Longest side.
    pub max_side: u32,
    pub max_pixels: Option<u64>,
    /// Instagram and Threads want widths within a range.
    pub min_width: Option<u32>,
    pub max_width: Option<u32>,
    /// Width / height bounds; outside them the image is padded.
    pub aspect: Option<(f32, f32)>,
    /// The platform fetches the image from a public URL instead of an upload.
    pub by_url: bool,
}

impl Spec {
    /// At most `max_bytes`, at most `max_side` pixels on the longest side, nothing else.
    pub const fn new(max_bytes: usize, max_side: u32) -> Spec {
        Spec { max_bytes, max_side, max_pixels: None, min_width: None, max_width: None, aspect: None, by_url: false }
    }
}

/// `v` rounded to a whole pixel count (saturating).
pub fn whole(v: f64) -> u32 {
    #[expect(clippy::cast_possible_truncation, reason = "clamped to the u32 range first")]
    let n = v.round().clamp(0.0, f64::from(u32::MAX)) as u32;
    n
}

/// An image ready for a platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Processed {
    pub bytes: Vec<u8>,
    pub mime: &'static str,
    pub width: u32,
    pub height: u32,
}

/// The image formats taken, by their signature (never by a name or a header).
pub fn image_mime(bytes: &[u8]) -> Option<&'static str> {
    match image::guess_format(bytes).ok()? {
        image::ImageFormat::Jpeg => Some("image/jpeg"),
        image::ImageFormat::Png => Some("image/png"),
        image::ImageFormat::WebP => Some("image/webp"),
        image::ImageFormat::Gif => Some("image/gif"),
        _ => None,
    }
}

/// Decode `bytes` (JPEG, PNG, WebP, GIF: the first frame) and turn it upright.
pub fn decode(bytes: &[u8]) -> Result<DynamicImage, String> {
    if image_mime(bytes).is_none() {
        return Err("not JPEG, PNG, WebP or GIF".to_owned());
    }
    let mut reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| e.to_string())?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(16_384);
    limits.max_image_height = Some(16_384);
    limits.max_alloc = Some(512 * 1024 * 1024);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(|e| format!("cannot decode the image: {e}"))?;
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| format!("cannot decode the image: {e}"))?;
    img.apply_orientation(orientation);
    Ok(img)
}

/// Transparent parts on white, as every platform shows them.
fn flatten(img: &DynamicImage) -> RgbImage {
    if !img.color().has_alpha() {
        return img.to_rgb8();
    }
    let rgba = img.to_rgba8();
    let (w, h) = rgba.dimensions();
    let over = |c: u8, a: u16| u8::try_from((u16::from(c) * a + 255 * (255 - a)) / 255).unwrap_or(u8::MAX);
    let raw: Vec<u8> = rgba
        .as_raw()
        .chunks_exact(4)
        .flat_map(|p| {
            let a = u16::from(p[3]);
            [over(p[0], a), over(p[1], a), over(p[2], a)]
        })
        .collect();
    RgbImage::from_raw(w, h, raw).unwrap_or_else(|| img.to_rgb8())
}

/// `img` padded (centred, white) to the nearest width/height ratio within `bounds`.
fn pad_to_aspect(img: RgbImage, (min, max): (f32, f32)) -> RgbImage {
    let (w, h) = img.dimensions();
    let ratio = w as f32 / h.max(1) as f32;
    let (nw, nh) = if ratio < min {
        (whole((f64::from(h) * f64::from(min)).ceil()), h)
    } else if ratio > max {
        (w, whole((f64::from(w) / f64::from(max)).ceil()))
    } else {
        return img;
    };
    let mut out = RgbImage::from_pixel(nw, nh, Rgb([255, 255, 255]));
    image::imageops::overlay(&mut out, &img, i64::from((nw - w) / 2), i64::from((nh - h) / 2));
    out
}

/// The longest side of a working copy: no platform takes more.
pub const WORK_SIDE: u32 = 4096;

/// The image every platform's version is made from: decoded once (with the limits of
/// [`decode`]), turned upright, flattened, scaled down to [`WORK_SIDE`] at most and
/// encoded as a high-quality JPEG without metadata. A huge original (an 11k × 11k PNG
/// that compresses to little) is decoded this once, not once per platform.
pub fn working_copy(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let img = decode(bytes)?;
    let mut rgb = flatten(&img);
    drop(img);
    let (w, h) = rgb.dimensions();
    if w.max(h) > WORK_SIDE {
        let scale = f64::from(WORK_SIDE) / f64::from(w.max(h));
        let (nw, nh) = (whole(f64::from(w) * scale).max(1), whole(f64::from(h) * scale).max(1));
        rgb = image::imageops::resize(&rgb, nw, nh, FilterType::Triangle);
    }
    encode_jpeg(&rgb, 92)
}

/// `img` as a baseline JPEG (JFIF, no metadata) at `quality` (1–100).
pub fn encode_jpeg(img: &RgbImage, quality: u8) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .encode_image(img)
        .map_err(|e| format!("cannot encode JPEG: {e}"))?;
    Ok(out)
}

/// `img` fitted to `spec`: padded to its aspect range, scaled to its dimensions, and
/// encoded as JPEG at the best quality that fits its size limit (scaling down further
/// when even a low quality does not fit).
pub fn fit(img: &DynamicImage, spec: &Spec) -> Result<Processed, String> {
    let mut rgb = flatten(img);
    if let Some(bounds) = spec.aspect {
        rgb = pad_to_aspect(rgb, bounds);
    }
    let (w, h) = rgb.dimensions();
    let (wf, hf) = (f64::from(w), f64::from(h));
    let mut scale = 1.0_f64.min(f64::from(spec.max_side) / wf.max(hf));
    if let Some(mw) = spec.max_width {
        scale = scale.min(f64::from(mw) / wf);
    }
    if let Some(px) = spec.max_pixels {
        scale = scale.min((px as f64 / (wf * hf)).sqrt());
    }
    if let Some(min) = spec.min_width
        && wf * scale < f64::from(min)
    {
        scale = f64::from(min) / wf;
    }
    for _ in 0..8 {
        let nw = whole(wf * scale).max(1);
        let nh = whole(hf * scale).max(1);
        let sized = if (nw, nh) == (w, h) {
            rgb.clone()
        } else {
            image::imageops::resize(&rgb, nw, nh, FilterType::CatmullRom)
        };
        let mut smallest = usize::MAX;
        for quality in [88, 78, 68] {
            let bytes = encode_jpeg(&sized, quality)?;
            if bytes.len() <= spec.max_bytes {
                return Ok(Processed { bytes, mime: "image/jpeg", width: nw, height: nh });
            }
            smallest = bytes.len();
        }
        if spec.min_width.is_some_and(|m| nw <= m) {
            break;
        }
        // Bytes go roughly with the pixel count: aim a little under the limit.
        let want = (spec.max_bytes as f64 / smallest as f64).sqrt() * 0.9;
        scale *= want.clamp(0.25, 0.8);
        if let Some(min) = spec.min_width {
            scale = scale.max(f64::from(min) / wf);
        }
    }
    Err(format!("cannot fit the image under {} bytes", spec.max_bytes))
}

/// The dimensions of an encoded image, from its header (and only if it is an image
/// at all).
pub fn dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
    image_mime(bytes)?;
    ImageReader::new(Cursor::new(bytes)).with_guessed_format().ok()?.into_dimensions().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{exif_of, photo_with_gps};

    const MB: usize = 1_000_000;

    #[test]
    fn gps_goes_in_and_never_comes_out() {
        let input = photo_with_gps(640, 480);
        assert!(exif_of(&input).is_some_and(|e| e.windows(2).any(|w| w == [0x25, 0x88])), "the input carries GPS");
        let img = decode(&input).expect("decode");
        assert_eq!((img.width(), img.height()), (480, 640), "turned upright by the EXIF orientation");
        let out = fit(&img, &Spec::new(MB, 2000)).expect("fit");
        assert_eq!(exif_of(&out.bytes), None, "no EXIF");
        assert!(!out.bytes.windows(4).any(|w| w == b"Exif"));
    }

    #[test]
    fn limits_are_met_by_padding_scaling_and_quality() {
        // Noise, so it does not compress to nothing; far too wide for a 0.8..1.91 ratio.
        let mut seed = 1u32;
        let big = DynamicImage::ImageRgb8(RgbImage::from_fn(4000, 800, |_, _| {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let n = seed.to_le_bytes()[2];
            Rgb([n, n.wrapping_mul(3), n.wrapping_mul(7)])
        }));
        let ig =
            Spec { min_width: Some(320), max_width: Some(1440), aspect: Some((0.8, 1.91)), ..Spec::new(8 * MB, 1440) };
        let out = fit(&big, &ig).expect("fit");
        assert_eq!(dimensions(&out.bytes), Some((out.width, out.height)));
        let r = out.width as f32 / out.height as f32;
        assert!(out.width <= 1440 && (1.89..=1.92).contains(&r), "{}x{} ({r})", out.width, out.height);
        let small = fit(&big, &Spec::new(200_000, 4096)).expect("fit");
        assert!(small.bytes.len() <= 200_000, "{} bytes", small.bytes.len());
        assert!(small.width < 4000, "scaled down to fit: {}", small.width);
        let tiny = DynamicImage::ImageRgb8(RgbImage::from_pixel(100, 100, Rgb([10, 20, 30])));
        let widened = fit(&tiny, &ig).expect("fit");
        assert_eq!((widened.width, widened.height), (320, 320), "widened to the minimum width");
        assert!(fit(&big, &Spec { min_width: Some(1000), ..Spec::new(1000, 4096) }).is_err(), "impossible");
    }

    #[test]
    fn transparency_is_flattened_and_bombs_are_refused() {
        let rgba = image::RgbaImage::from_pixel(10, 10, image::Rgba([0, 0, 0, 0]));
        let mut png = Vec::new();
        DynamicImage::ImageRgba8(rgba).write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png).expect("png");
        let out = fit(&decode(&png).expect("decode"), &Spec::new(MB, 100)).expect("fit");
        let back = image::load_from_memory(&out.bytes).expect("jpeg").to_rgb8();
        assert!(back.get_pixel(5, 5).0.iter().all(|c| *c > 240), "transparent is white");
        // A PNG header claiming 100000 x 100000 pixels.
        let mut bomb = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        bomb.extend_from_slice(&100_000u32.to_be_bytes());
        bomb.extend_from_slice(&100_000u32.to_be_bytes());
        bomb.extend_from_slice(&[8, 2, 0, 0, 0, 0, 0, 0, 0]);
        assert!(decode(&bomb).is_err());
        assert!(decode(b"not an image").is_err());
        assert!(decode(b"<svg xmlns='http://www.w3.org/2000/svg'/>").is_err());
    }

    #[test]
    fn only_image_signatures_pass() {
        assert_eq!(image_mime(b"\xff\xd8\xff\xe0\0\x10JFIF\0"), Some("image/jpeg"));
        assert_eq!(image_mime(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), Some("image/png"));
        assert_eq!(image_mime(b"GIF89a...."), Some("image/gif"));
        assert_eq!(image_mime(b"<svg xmlns=..."), None);
        assert_eq!(image_mime(b"%PDF-1.7"), None);
    }
}
