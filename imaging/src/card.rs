//! Text cards: an alert's text as a picture, for Instagram (which takes no text-only
//! post) and any channel configured for it. Large type, high contrast: white on a red
//! band for the headline, white on near-black for the facts, black on yellow for the
//! agency and its phone number. Pure; the font (Noto Sans, SIL Open Font License) is
//! compiled in.

use ab_glyph::{Font as _, FontRef, PxScale, ScaleFont as _, point};
use image::{Rgb, RgbImage};

pub const SIZE: u32 = 1080;
const MARGIN: f32 = 64.0;
const RED: Rgb<u8> = Rgb([178, 16, 36]);
const INK: Rgb<u8> = Rgb([16, 16, 16]);
const WHITE: Rgb<u8> = Rgb([255, 255, 255]);
const YELLOW: Rgb<u8> = Rgb([255, 209, 0]);

fn fonts() -> Result<(FontRef<'static>, FontRef<'static>), String> {
    let bold = FontRef::try_from_slice(notosans::BOLD_TTF).map_err(|e| format!("font: {e}"))?;
    let regular = FontRef::try_from_slice(notosans::REGULAR_TTF).map_err(|e| format!("font: {e}"))?;
    Ok((bold, regular))
}

/// The width of `text` at `size`.
fn width(font: &FontRef<'_>, size: f32, text: &str) -> f32 {
    let f = font.as_scaled(PxScale::from(size));
    let mut w = 0.0;
    let mut prev = None;
    for c in text.chars() {
        let id = f.glyph_id(c);
        if let Some(p) = prev {
            w += f.kern(p, id);
        }
        w += f.h_advance(id);
        prev = Some(id);
    }
    w
}

/// `text` broken into lines no wider than `max`, at word boundaries (a word wider than a
/// line is broken where it must be).
fn wrap(font: &FontRef<'_>, size: f32, text: &str, max: f32) -> Vec<String> {
    let mut lines = Vec::new();
    for para in text.lines() {
        let mut line = String::new();
        for word in para.split_whitespace() {
            let candidate = if line.is_empty() { word.to_owned() } else { format!("{line} {word}") };
            if width(font, size, &candidate) <= max {
                line = candidate;
                continue;
            }
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
            }
            let mut piece = String::new();
            for c in word.chars() {
                piece.push(c);
                if width(font, size, &piece) > max {
                    piece.pop();
                    lines.push(std::mem::take(&mut piece));
                    piece.push(c);
                }
            }
            line = piece;
        }
        if !line.is_empty() {
            lines.push(line);
        }
    }
    lines
}

fn fill(img: &mut RgbImage, top: u32, bottom: u32, color: Rgb<u8>) {
    for y in top..bottom.min(img.height()) {
        for x in 0..img.width() {
            img.put_pixel(x, y, color);
        }
    }
}

/// Draw `text` with its baseline at `y`, from `x`, blending `color` over what is there.
fn draw(img: &mut RgbImage, font: &FontRef<'_>, size: f32, x: f32, y: f32, text: &str, color: Rgb<u8>) {
    let scale = PxScale::from(size);
    let f = font.as_scaled(scale);
    let mut caret = x;
    let mut prev = None;
    for c in text.chars() {
        let id = f.glyph_id(c);
        if let Some(p) = prev {
            caret += f.kern(p, id);
        }
        let glyph = id.with_scale_and_position(scale, point(caret, y));
        caret += f.h_advance(id);
        prev = Some(id);
        let Some(outline) = font.outline_glyph(glyph) else { continue };
        let bounds = outline.px_bounds();
        outline.draw(|gx, gy, coverage| {
            let (bx, by) = (bounds.min.x.max(0.0), bounds.min.y.max(0.0));
            let px = crate::whole(f64::from(bx)) + gx;
            let py = crate::whole(f64::from(by)) + gy;
            if px >= img.width() || py >= img.height() {
                return;
            }
            let under = img.get_pixel(px, py).0;
            let a = coverage.clamp(0.0, 1.0);
            let blend = |o: u8, n: u8| {
                let v = crate::whole(f64::from(f32::from(o) * (1.0 - a) + f32::from(n) * a));
                u8::try_from(v).unwrap_or(u8::MAX)
            };
            img.put_pixel(
                px,
                py,
                Rgb([blend(under[0], color.0[0]), blend(under[1], color.0[1]), blend(under[2], color.0[2])]),
            );
        });
    }
}

/// A square card: `title` on a red band, `body` below, `footer` on a yellow band. Type
/// shrinks until everything fits; what still does not fit is cut with an ellipsis.
pub fn render(title: &str, body: &[String], footer: &str) -> Result<RgbImage, String> {
    let (bold, regular) = fonts()?;
    let size = SIZE as f32;
    let text_width = size - 2.0 * MARGIN;
    let mut img = RgbImage::from_pixel(SIZE, SIZE, INK);

    // Footer band.
    let footer_size = 44.0;
    let footer_lines = wrap(&bold, footer_size, footer, text_width);
    let footer_h = MARGIN + footer_lines.len() as f32 * footer_size * 1.25;
    let footer_top = size - footer_h;

    // Title band, then the body in what is left, both shrinking to fit.
    let mut title_size: f32 = 92.0;
    let mut body_size: f32 = 56.0;
    let (title_lines, body_lines) = loop {
        let t = wrap(&bold, title_size, title, text_width);
        let b: Vec<String> = body.iter().flat_map(|p| wrap(&regular, body_size, p, text_width)).collect();
        let title_h = MARGIN + t.len() as f32 * title_size * 1.2 + MARGIN * 0.6;
        let body_h = b.len() as f32 * body_size * 1.35 + MARGIN;
        if title_h + body_h <= footer_top || (title_size <= 44.0 && body_size <= 28.0) {
            break (t, b);
        }
        title_size = (title_size - 4.0).max(44.0);
        body_size = (body_size - 2.0).max(28.0);
    };
    let title_h = MARGIN + title_lines.len() as f32 * title_size * 1.2 + MARGIN * 0.6;
    fill(&mut img, 0, crate::whole(f64::from(title_h.min(footer_top))), RED);
    fill(&mut img, crate::whole(f64::from(footer_top)), SIZE, YELLOW);

    let mut y = MARGIN + title_size;
    for line in &title_lines {
        if y > footer_top - MARGIN {
            break;
        }
        draw(&mut img, &bold, title_size, MARGIN, y, line, WHITE);
        y += title_size * 1.2;
    }
    let mut y = title_h + MARGIN * 0.4 + body_size;
    let last = footer_top - MARGIN * 0.5;
    for (i, line) in body_lines.iter().enumerate() {
        let next = y + body_size * 1.35;
        if next > last && i + 1 < body_lines.len() {
            draw(&mut img, &regular, body_size, MARGIN, y, "…", WHITE);
            break;
        }
        if y > last {
            break;
        }
        draw(&mut img, &regular, body_size, MARGIN, y, line, WHITE);
        y = next;
    }
    let mut y = footer_top + MARGIN * 0.5 + footer_size;
    for line in &footer_lines {
        draw(&mut img, &bold, footer_size, MARGIN, y, line, INK);
        y += footer_size * 1.25;
    }
    Ok(img)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(img: &RgbImage, area: (u32, u32, u32, u32), want: impl Fn(&Rgb<u8>) -> bool) -> f32 {
        let (x0, y0, x1, y1) = area;
        let mut n = 0;
        let mut hit = 0;
        for y in y0..y1 {
            for x in x0..x1 {
                n += 1;
                if want(img.get_pixel(x, y)) {
                    hit += 1;
                }
            }
        }
        hit as f32 / n.max(1) as f32
    }

    #[test]
    fn a_card_has_its_bands_and_readable_text() {
        let body = vec![
            "Sofia Ramirez, 6, 3 ft 8 in, brown hair, pink jacket.".to_owned(),
            "Last seen at Lakeview Park, 4:15 PM. Silver 2014 Honda Odyssey, TX NRT-4471.".to_owned(),
            "If you see her, call 911. Do not approach.".to_owned(),
        ];
        let img = render("AMBER ALERT: Sofia Ramirez, 6", &body, "Ruiz County Sheriff's Office · 361-555-0100")
            .expect("card");
        assert_eq!(img.dimensions(), (SIZE, SIZE));
        // The headline band is red with white type on it.
        assert!(share(&img, (0, 0, SIZE, 40), |p| *p == RED) > 0.9);
        let white_in_band = share(&img, (64, 60, SIZE - 64, 160), |p| p.0.iter().all(|c| *c > 200));
        assert!(white_in_band > 0.05, "the headline is drawn: {white_in_band}");
        // The footer band is yellow with dark type.
        assert!(share(&img, (0, SIZE - 10, SIZE, SIZE), |p| *p == YELLOW) > 0.9);
        let dark_in_footer = share(&img, (64, SIZE - 100, SIZE - 64, SIZE - 20), |p| p.0[0] < 100);
        assert!(dark_in_footer > 0.02, "the agency is drawn: {dark_in_footer}");
        // The body is light on dark.
        let middle = share(&img, (64, 400, SIZE - 64, 700), |p| p.0.iter().all(|c| *c > 200));
        assert!(middle > 0.005, "the facts are drawn: {middle}");
        if let Ok(path) = std::env::var("BULLHORN_CARD_PNG") {
            img.save(path).expect("save the card for a look");
        }
    }

    #[test]
    fn long_text_shrinks_and_is_cut_rather_than_overflowing() {
        let body: Vec<String> =
            (0..40).map(|i| format!("Fact number {i} about the incident, in plain words.")).collect();
        let img = render(&"A very long headline ".repeat(10), &body, "Agency").expect("card");
        assert_eq!(img.dimensions(), (SIZE, SIZE));
        assert!(share(&img, (0, SIZE - 10, SIZE, SIZE), |p| *p == YELLOW) > 0.9, "the footer is still there");
        let unbroken = wrap(&fonts().expect("fonts").0, 76.0, &"W".repeat(200), 900.0);
        assert!(unbroken.len() > 1, "a word wider than a line is broken");
    }
}
