//! Test fixtures (used by bullhorn's own tests too): a photo carrying EXIF GPS
//! coordinates, and a way to read back what EXIF an image carries.

use std::io::Cursor;

use image::{ImageDecoder as _, ImageReader, Rgb, RgbImage};

/// A JPEG photo (noise, so it does not compress to nothing) with an EXIF block carrying
/// GPS coordinates and orientation 6 (rotate 90° clockwise to view).
pub fn photo_with_gps(w: u32, h: u32) -> Vec<u8> {
    let mut seed = 7u32;
    let img = RgbImage::from_fn(w, h, |x, y| {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let n = seed.to_le_bytes()[2];
        Rgb([x.to_le_bytes()[0] ^ n, y.to_le_bytes()[0], n])
    });
    let jpeg = crate::encode_jpeg(&img, 95).unwrap_or_default();
    insert_exif(&jpeg, &exif_with_gps())
}

/// A PNG of `w` × `h` pixels of one colour: tiny as a file, huge once decoded (the
/// shape of a decompression bomb within the limits).
pub fn flat_png(w: u32, h: u32) -> Vec<u8> {
    let img = RgbImage::from_pixel(w, h, Rgb([200, 30, 30]));
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap_or_default();
    out
}

/// A little-endian TIFF with IFD0 {Orientation = 6, GPSInfo → IFD} and a GPS IFD
/// {GPSLatitudeRef = N, GPSLatitude = 27/1, 48/1, 0/1}.
pub fn exif_with_gps() -> Vec<u8> {
    let mut t: Vec<u8> = b"II\x2a\x00\x08\x00\x00\x00".to_vec();
    // IFD0 at 8: 2 entries.
    t.extend_from_slice(&2u16.to_le_bytes());
    t.extend_from_slice(&[0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0]); // Orientation SHORT 6
    t.extend_from_slice(&[0x25, 0x88, 4, 0, 1, 0, 0, 0, 38, 0, 0, 0]); // GPSInfo LONG -> 38
    t.extend_from_slice(&0u32.to_le_bytes());
    // GPS IFD at 38: 2 entries.
    t.extend_from_slice(&2u16.to_le_bytes());
    t.extend_from_slice(&[0x01, 0x00, 2, 0, 2, 0, 0, 0, b'N', 0, 0, 0]); // GPSLatitudeRef "N"
    t.extend_from_slice(&[0x02, 0x00, 5, 0, 3, 0, 0, 0, 68, 0, 0, 0]); // GPSLatitude RATIONAL x3 -> 68
    t.extend_from_slice(&0u32.to_le_bytes());
    for (n, d) in [(27u32, 1u32), (48, 1), (0, 1)] {
        t.extend_from_slice(&n.to_le_bytes());
        t.extend_from_slice(&d.to_le_bytes());
    }
    t
}

/// `jpeg` with an APP1 Exif segment after SOI.
pub fn insert_exif(jpeg: &[u8], tiff: &[u8]) -> Vec<u8> {
    let mut out = jpeg.get(..2).unwrap_or_default().to_vec();
    out.extend_from_slice(&[0xff, 0xe1]);
    let len = u16::try_from(tiff.len() + 8).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(b"Exif\0\0");
    out.extend_from_slice(tiff);
    out.extend_from_slice(jpeg.get(2..).unwrap_or_default());
    out
}

/// The EXIF block an encoded image carries, if any.
pub fn exif_of(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut d = ImageReader::new(Cursor::new(bytes)).with_guessed_format().ok()?.into_decoder().ok()?;
    d.exif_metadata().ok().flatten()
}

/// Whether the EXIF an image carries has a GPS block (tag 0x8825).
pub fn has_gps(bytes: &[u8]) -> bool {
    exif_of(bytes).is_some_and(|e| e.windows(2).any(|w| w == [0x25, 0x88] || w == [0x88, 0x25]))
}
