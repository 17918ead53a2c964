//! bullhorn's image work, pure and synchronous: decode an image safely, turn it upright,
//! strip everything but the pixels, fit it to a platform's limits, and draw text cards.
//!
//! A crate of its own so the generic `image` code is compiled optimised even in test
//! builds (the workspace sets `opt-level = 3` for it); the daemon calls it from
//! `spawn_blocking`.

pub mod card;
mod fit;
pub mod testing;

pub use fit::{Processed, Spec, WORK_SIDE, decode, dimensions, encode_jpeg, fit, image_mime, whole, working_copy};
pub use image::{DynamicImage, Rgb, RgbImage};
