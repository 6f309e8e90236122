//! An in-memory display: a `DrawTarget` that the renderer draws on like on a real panel,
//! saved as PNG or printed as ANSI art.

use std::convert::Infallible;
use std::io;
use std::path::Path;

use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;

/// A `width` x `height` frame of `C` pixels. Pixels drawn outside are ignored, as a
/// display driver clips them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Framebuffer<C> {
    size: Size,
    pixels: Vec<C>,
}

impl<C: PixelColor + Default> Framebuffer<C> {
    /// A frame of `size`, every pixel `C::default()` (black, or off).
    pub fn new(size: Size) -> Self {
        Framebuffer {
            size,
            pixels: vec![C::default(); (size.width * size.height) as usize],
        }
    }
}

impl<C: PixelColor + Into<Rgb888>> Framebuffer<C> {
    /// The pixel at `p`, if inside.
    pub fn pixel(&self, p: Point) -> Option<C> {
        self.index(p).map(|i| self.pixels[i])
    }

    fn index(&self, p: Point) -> Option<usize> {
        let (w, h) = (self.size.width as i32, self.size.height as i32);
        (p.x >= 0 && p.y >= 0 && p.x < w && p.y < h).then(|| (p.y * w + p.x) as usize)
    }

    /// The frame as 8-bit RGB triples, row by row.
    pub fn to_rgb8(&self) -> Vec<u8> {
        self.pixels
            .iter()
            .flat_map(|&c| {
                let c: Rgb888 = c.into();
                [c.r(), c.g(), c.b()]
            })
            .collect()
    }

    /// The frame as a PNG file's bytes.
    pub fn png(&self) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, self.size.width, self.size.height);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            // Writing into a Vec cannot fail for a frame of the declared size.
            if let Ok(mut w) = enc.write_header() {
                let _ = w.write_image_data(&self.to_rgb8());
            }
        }
        out
    }

    /// Writes the frame as a PNG file, atomically: readers never see half a file.
    pub fn save_png(&self, path: &Path) -> io::Result<()> {
        let tmp = path.with_extension("png.tmp");
        std::fs::write(&tmp, self.png())?;
        std::fs::rename(&tmp, path)
    }

    /// The frame as ANSI art: two pixel rows per text row (upper half block), every
    /// `step`-th pixel, in 24-bit colour.
    pub fn ansi(&self, step: u32) -> String {
        use std::fmt::Write;
        let step = step.max(1) as i32;
        let mut s = String::new();
        let (w, h) = (self.size.width as i32, self.size.height as i32);
        for y in (0..h).step_by(2 * step as usize) {
            // Colour codes only where the colour changes: a mono frame is mostly runs.
            let mut last = None;
            for x in (0..w).step_by(step as usize) {
                let top: Rgb888 = self
                    .pixel(Point::new(x, y))
                    .map_or(Rgb888::BLACK, Into::into);
                let bottom: Rgb888 = self
                    .pixel(Point::new(x, y + step))
                    .map_or(Rgb888::BLACK, Into::into);
                if last != Some((top, bottom)) {
                    last = Some((top, bottom));
                    let _ = write!(
                        s,
                        "\x1b[38;2;{};{};{}m\x1b[48;2;{};{};{}m",
                        top.r(),
                        top.g(),
                        top.b(),
                        bottom.r(),
                        bottom.g(),
                        bottom.b()
                    );
                }
                s.push('\u{2580}');
            }
            s.push_str("\x1b[0m\n");
        }
        s
    }
}

impl<C: PixelColor> OriginDimensions for Framebuffer<C> {
    fn size(&self) -> Size {
        self.size
    }
}

impl<C: PixelColor + Into<Rgb888>> DrawTarget for Framebuffer<C> {
    type Color = C;
    type Error = Infallible;

    fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Self::Error>
    where
        I: IntoIterator<Item = Pixel<Self::Color>>,
    {
        for Pixel(p, c) in pixels {
            if let Some(i) = self.index(p) {
                self.pixels[i] = c;
            }
        }
        Ok(())
    }
}

/// A decoded PNG: size and RGB triples, as [`Framebuffer::to_rgb8`] gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// RGB triples, row by row.
    pub rgb: Vec<u8>,
}

/// Why a PNG could not be read back.
#[derive(Debug)]
pub enum PngError {
    /// Not a readable PNG.
    Decode(png::DecodingError),
    /// A PNG, but not the 8-bit RGB that `floorhand-terminal` writes.
    Format(png::ColorType, png::BitDepth),
}

impl std::fmt::Display for PngError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PngError::Decode(e) => write!(f, "not a readable PNG: {e}"),
            PngError::Format(c, d) => write!(
                f,
                "PNG is {c:?} at {d:?} bits, expected 8-bit RGB as floorhand-terminal writes"
            ),
        }
    }
}

impl std::error::Error for PngError {}

/// Decodes an 8-bit RGB PNG, as [`Framebuffer::png`] writes them.
pub fn decode_png(bytes: &[u8]) -> Result<Image, PngError> {
    let mut reader = png::Decoder::new(bytes)
        .read_info()
        .map_err(PngError::Decode)?;
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).map_err(PngError::Decode)?;
    buf.truncate(info.buffer_size());
    if info.color_type != png::ColorType::Rgb || info.bit_depth != png::BitDepth::Eight {
        return Err(PngError::Format(info.color_type, info.bit_depth));
    }
    Ok(Image {
        width: info.width,
        height: info.height,
        rgb: buf,
    })
}

/// Draws `view` as `profile`'s display shows it, in the display's own colour type, and
/// returns the picture as RGB: what `floorhand-terminal` would save for it.
pub fn render_rgb8(view: &crate::core::View, profile: crate::render::Profile) -> Image {
    use crate::render::{Palette, Profile, draw};
    use embedded_graphics::pixelcolor::{BinaryColor, Rgb565};
    fn go<C: PixelColor + Default + Into<Rgb888> + Palette>(
        view: &crate::core::View,
        profile: Profile,
    ) -> Vec<u8> {
        let mut fb = Framebuffer::<C>::new(profile.size());
        let Ok(()) = draw(view, profile, &mut fb);
        fb.to_rgb8()
    }
    let rgb = match profile {
        Profile::Mono128x64 => go::<BinaryColor>(view, profile),
        Profile::Color320x240 => go::<Rgb565>(view, profile),
    };
    let size = profile.size();
    Image {
        width: size.width,
        height: size.height,
        rgb,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_graphics::pixelcolor::BinaryColor;

    #[test]
    fn ansi_art_has_one_text_row_per_two_pixel_rows_and_colours_only_on_change() {
        let mut fb = Framebuffer::<BinaryColor>::new(Size::new(4, 4));
        let _ = fb.draw_iter([Pixel(Point::new(3, 0), BinaryColor::On)]);
        let art = fb.ansi(1);
        assert_eq!(art.lines().count(), 2);
        let first = art.lines().next().unwrap();
        assert_eq!(first.matches('\u{2580}').count(), 4);
        // Black/black for three cells, then white over black, then the reset.
        assert_eq!(first.matches("\x1b[38;2;").count(), 2, "{first:?}");
    }

    #[test]
    fn a_png_reads_back_as_the_same_pixels() {
        let mut fb = Framebuffer::<BinaryColor>::new(Size::new(5, 3));
        let _ = fb.draw_iter([Pixel(Point::new(4, 2), BinaryColor::On)]);
        let img = decode_png(&fb.png()).unwrap();
        assert_eq!((img.width, img.height), (5, 3));
        assert_eq!(img.rgb, fb.to_rgb8());
    }

    #[test]
    fn a_file_that_is_not_a_png_is_refused_with_a_clear_error() {
        let err = decode_png(b"GIF89a").unwrap_err();
        assert!(err.to_string().contains("not a readable PNG"), "{err}");
    }
}
