//! Every view on both display profiles: PNG snapshots under `firmware/snapshots/`
//! compared pixel by pixel (regenerate with `FLOORHAND_BLESS=1`), and a `MockDisplay`
//! check that each frame draws every pixel of the screen exactly once and nothing outside.

use std::path::PathBuf;

use embedded_graphics::mock_display::MockDisplay;
use embedded_graphics::pixelcolor::{BinaryColor, Rgb565, Rgb888};
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::Rectangle;
use floorhand_firmware::core::View;
use floorhand_firmware::render::{self, Palette, Profile};
use floorhand_firmware::sim::framebuffer::{Framebuffer, decode_png};
use floorhand_protocol::link::{
    Level, MenuReason, PickPrompt, ScanTarget, Screen, ToTerminal, fit,
};
use floorhand_protocol::{PROTOCOL_VERSION, examples};

/// Every view worth a picture: the terminal's own, every example screen of the protocol,
/// and screens with every field at its longest or largest.
fn views() -> Vec<(String, View)> {
    let mut v = vec![
        ("connecting".to_string(), View::Connecting),
        (
            "version-mismatch".to_string(),
            View::VersionMismatch {
                agent: PROTOCOL_VERSION + 1,
            },
        ),
        ("link-lost".to_string(), View::LinkLost),
    ];
    for (name, env) in examples::to_terminal() {
        if let ToTerminal::Show(screen) = env.body {
            let name = name.trim_start_matches("Show/").to_ascii_lowercase();
            v.push((name, View::Screen(screen)));
        }
    }
    let longest = [
        Screen::Pick(PickPrompt {
            location: fit("WW-99-99-WW-9999"),
            item: fit("Stainless hex bolt M12x160 DIN93"),
            qty: u16::MAX,
            done: u16::MAX - 1,
            total: u16::MAX,
        }),
        Screen::Scan {
            target: ScanTarget::Location,
            hint: fit("Expected location WW-99-99-WW-99"),
        },
        Screen::Quantity {
            prompt: fit("Units of lot L2025-0042-A"),
            value: u32::MAX,
            max: u32::MAX,
        },
        Screen::Reasons {
            options: heapless::Vec::from_slice(&[
                MenuReason::LocationEmpty,
                MenuReason::Damaged,
                MenuReason::WrongItem,
                MenuReason::NotEnough,
                MenuReason::Damaged,
                MenuReason::LocationEmpty,
            ])
            .unwrap(),
            selected: 5,
        },
        Screen::Message {
            level: Level::Warning,
            text: fit("Tote T-000123456789 is full: take a new one and scan it"),
        },
        Screen::Offline {
            backlog: u32::MAX,
            since_s: u32::MAX,
        },
        Screen::WaveDone {
            picked: u16::MAX,
            short: u16::MAX,
        },
    ];
    for screen in longest {
        let name = match &screen {
            Screen::Pick(_) => "pick",
            Screen::Scan { .. } => "scan",
            Screen::Quantity { .. } => "quantity",
            Screen::Reasons { .. } => "reasons",
            Screen::Message { .. } => "message",
            Screen::Offline { .. } => "offline",
            Screen::WaveDone { .. } => "wavedone",
        };
        v.push((format!("{name}-longest"), View::Screen(screen)));
    }
    v
}

fn snapshot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("snapshots")
}

fn render_png<C>(view: &View, profile: Profile) -> Framebuffer<C>
where
    C: PixelColor + Default + Into<Rgb888> + Palette,
{
    let mut fb = Framebuffer::<C>::new(profile.size());
    let Ok(()) = render::draw(view, profile, &mut fb);
    fb
}

/// Compares (or with `FLOORHAND_BLESS=1` writes) one snapshot; returns a complaint.
fn check_snapshot<C>(name: &str, view: &View, profile: Profile) -> Option<String>
where
    C: PixelColor + Default + Into<Rgb888> + Palette,
{
    let fb = render_png::<C>(view, profile);
    let path = snapshot_dir().join(format!("{}-{name}.png", profile.name()));
    if std::env::var_os("FLOORHAND_BLESS").is_some() {
        std::fs::create_dir_all(snapshot_dir()).unwrap();
        std::fs::write(&path, fb.png()).unwrap();
        return None;
    }
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => return Some(format!("{}: {e}", path.display())),
    };
    let want = match decode_png(&bytes) {
        Ok(i) => i,
        Err(e) => return Some(format!("{}: {e}", path.display())),
    };
    let size = profile.size();
    if (want.width, want.height) != (size.width, size.height) {
        return Some(format!(
            "{}: {}x{}, expected {}x{}",
            path.display(),
            want.width,
            want.height,
            size.width,
            size.height
        ));
    }
    let got = fb.to_rgb8();
    let diff: Vec<usize> = (0..got.len() / 3)
        .filter(|i| got[i * 3..i * 3 + 3] != want.rgb[i * 3..i * 3 + 3])
        .collect();
    let first = diff.first()?;
    Some(format!(
        "{}: {} pixels differ, first at ({}, {})",
        path.display(),
        diff.len(),
        *first as u32 % size.width,
        *first as u32 / size.width
    ))
}

#[test]
fn every_view_on_both_profiles_matches_its_png_snapshot() {
    let mut complaints = Vec::new();
    for (name, view) in views() {
        complaints.extend(check_snapshot::<BinaryColor>(
            &name,
            &view,
            Profile::Mono128x64,
        ));
        complaints.extend(check_snapshot::<Rgb565>(
            &name,
            &view,
            Profile::Color320x240,
        ));
    }
    assert!(
        complaints.is_empty(),
        "snapshots differ (look at the PNGs; if the change is wanted, rerun with \
         FLOORHAND_BLESS=1 and commit them):\n{}",
        complaints.join("\n")
    );
}

#[test]
fn every_view_has_a_committed_snapshot_and_no_snapshot_is_stale() {
    let mut expected: Vec<String> = views()
        .iter()
        .flat_map(|(name, _)| Profile::ALL.map(|p| format!("{}-{name}.png", p.name())))
        .collect();
    expected.sort();
    let mut found: Vec<String> = std::fs::read_dir(snapshot_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".png"))
        .collect();
    found.sort();
    assert_eq!(found, expected);
}

/// A screen-sized draw target made of 64x64 `MockDisplay` tiles, so each pixel is checked
/// by a `MockDisplay`: drawing one twice panics. A pixel outside the screen goes to the
/// first tile at its own coordinates, which are outside that tile too: that panics as well.
struct Tiles<C: PixelColor> {
    size: Size,
    tiles: Vec<MockDisplay<C>>,
}

const TILE: u32 = 64;

impl<C: PixelColor> Tiles<C> {
    fn new(size: Size) -> Self {
        let n = size.width.div_ceil(TILE) * size.height.div_ceil(TILE);
        Tiles {
            size,
            tiles: (0..n).map(|_| MockDisplay::new()).collect(),
        }
    }

    fn tile_of(&self, p: Point) -> Option<(usize, Point)> {
        let (w, h) = (self.size.width as i32, self.size.height as i32);
        if p.x < 0 || p.y < 0 || p.x >= w || p.y >= h {
            return None;
        }
        let t = TILE as i32;
        let per_row = self.size.width.div_ceil(TILE) as i32;
        let i = (p.y / t) * per_row + p.x / t;
        Some((i as usize, Point::new(p.x % t, p.y % t)))
    }

    /// Pixels of the screen that were never drawn.
    fn undrawn(&self) -> Vec<Point> {
        Rectangle::new(Point::zero(), self.size)
            .points()
            .filter(|&p| {
                let (i, local) = self.tile_of(p).unwrap();
                self.tiles[i].get_pixel(local).is_none()
            })
            .collect()
    }
}

impl<C: PixelColor> OriginDimensions for Tiles<C> {
    fn size(&self) -> Size {
        self.size
    }
}

impl<C: PixelColor> DrawTarget for Tiles<C> {
    type Color = C;
    type Error = core::convert::Infallible;

    fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Self::Error>
    where
        I: IntoIterator<Item = Pixel<C>>,
    {
        for Pixel(p, c) in pixels {
            match self.tile_of(p) {
                Some((i, local)) => self.tiles[i].draw_pixel(local, c),
                None => self.tiles[0].draw_pixel(p, c),
            }
        }
        Ok(())
    }
}

fn check_coverage<C: PixelColor + Palette>(name: &str, view: &View, profile: Profile) {
    let mut tiles = Tiles::<C>::new(profile.size());
    let Ok(()) = render::draw(view, profile, &mut tiles);
    let undrawn = tiles.undrawn();
    assert!(
        undrawn.is_empty(),
        "{name} on {}: {} pixels never drawn, first {:?}",
        profile.name(),
        undrawn.len(),
        undrawn[0]
    );
}

#[test]
fn every_view_draws_each_pixel_of_the_screen_exactly_once_and_nothing_outside() {
    for (name, view) in views() {
        check_coverage::<BinaryColor>(&name, &view, Profile::Mono128x64);
        check_coverage::<Rgb565>(&name, &view, Profile::Color320x240);
    }
}

#[test]
#[should_panic(expected = "tried to draw pixel twice")]
fn the_tiled_mock_catches_a_pixel_drawn_twice() {
    let mut tiles = Tiles::<BinaryColor>::new(Profile::Mono128x64.size());
    let p = Point::new(100, 40);
    let _ = tiles.draw_iter([Pixel(p, BinaryColor::On), Pixel(p, BinaryColor::Off)]);
}

#[test]
#[should_panic(expected = "outside the display area")]
fn the_tiled_mock_catches_a_pixel_off_the_screen() {
    let mut tiles = Tiles::<Rgb565>::new(Profile::Color320x240.size());
    let _ = tiles.draw_iter([Pixel(Point::new(320, 10), Rgb565::RED)]);
}

#[test]
fn a_pick_prompt_on_the_mono_display_shows_the_location_in_the_large_font() {
    // The 10x20 font's first row of the location starts below the 10-pixel header: the
    // large font is used when the location fits.
    let view = views()
        .into_iter()
        .find(|(n, _)| n == "pick")
        .map(|(_, v)| v)
        .unwrap();
    let fb = render_png::<BinaryColor>(&view, Profile::Mono128x64);
    let lit_rows: Vec<i32> = (10..30)
        .filter(|&y| (0..128).any(|x| fb.pixel(Point::new(x, y)) == Some(BinaryColor::On)))
        .collect();
    assert!(lit_rows.len() >= 12, "location rows lit: {lit_rows:?}");
}
