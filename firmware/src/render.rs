//! Draws a [`View`] onto any embedded-graphics `DrawTarget`: a display driver on the board,
//! a framebuffer in the host runner, a `MockDisplay` in tests. One code path for all.
//!
//! Invariants, checked by the tests with `MockDisplay`:
//! - Every pixel of the profile's screen is drawn exactly once per frame (no clear first,
//!   so no flicker and no stale pixels), and nothing is drawn outside it.
//! - Text that does not fit is cut and ends in [`CUT`], so a person sees that text is
//!   missing; a larger font falls back to a smaller one before text is cut.
//!
//! A screen is a stack of full-width rows. Each row fills its rectangle completely: the
//! text cells with their background, the rest with the row's background colour.

use core::fmt::Write;

use embedded_graphics::mono_font::iso_8859_1::{FONT_6X10, FONT_7X13, FONT_7X13_BOLD, FONT_10X20};
use embedded_graphics::mono_font::{MonoFont, MonoTextStyleBuilder};
use embedded_graphics::pixelcolor::{BinaryColor, Gray4, Rgb565};
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::Rectangle;
use embedded_graphics::text::{Baseline, Text};
use floorhand_protocol::link::{Display, Level, MenuReason, ScanTarget, Screen};
use heapless::{String, Vec};

use crate::core::View;

/// The mark that ends text cut to fit.
pub const CUT: char = '>';

/// A display the terminal knows how to lay out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// 128x64 monochrome, SSD1306 class.
    Mono128x64,
    /// 320x240 colour, ILI9341 class.
    Color320x240,
}

impl Profile {
    /// Every profile, for tests and tools.
    pub const ALL: [Profile; 2] = [Profile::Mono128x64, Profile::Color320x240];

    /// The profile for a display as the protocol names it; `None` for no display.
    pub fn for_display(display: Display) -> Option<Profile> {
        match display {
            Display::None => None,
            Display::Mono128x64 => Some(Profile::Mono128x64),
            Display::Color320x240 => Some(Profile::Color320x240),
        }
    }

    /// The display as the protocol names it.
    pub fn display(self) -> Display {
        match self {
            Profile::Mono128x64 => Display::Mono128x64,
            Profile::Color320x240 => Display::Color320x240,
        }
    }

    /// Screen size in pixels.
    pub fn size(self) -> Size {
        match self {
            Profile::Mono128x64 => Size::new(128, 64),
            Profile::Color320x240 => Size::new(320, 240),
        }
    }

    /// A short name for file names: `mono128x64`, `color320x240`.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Mono128x64 => "mono128x64",
            Profile::Color320x240 => "color320x240",
        }
    }

    fn metrics(self) -> Metrics {
        match self {
            Profile::Mono128x64 => Metrics {
                pad: 2,
                gap: 0,
                header: (&FONT_6X10, 10),
                body: (&FONT_6X10, 10),
                big: &[(&FONT_10X20, 1), (&FONT_7X13_BOLD, 1), (&FONT_6X10, 1)],
                big_h: 20,
                mid: (&FONT_7X13_BOLD, 14),
                footer: None,
                bar_h: 0,
            },
            Profile::Color320x240 => Metrics {
                pad: 6,
                gap: 8,
                header: (&FONT_10X20, 28),
                body: (&FONT_10X20, 22),
                big: &[(&FONT_10X20, 3), (&FONT_10X20, 2), (&FONT_10X20, 1)],
                big_h: 60,
                mid: (&FONT_10X20, 30),
                footer: Some((&FONT_7X13, 18)),
                bar_h: 8,
            },
        }
    }
}

/// Fonts and row heights of a profile.
struct Metrics {
    /// Left and right margin of text, in pixels.
    pad: u32,
    /// Space between blocks of rows.
    gap: u32,
    /// Header font and row height.
    header: (&'static MonoFont<'static>, u32),
    /// Body text font and row height.
    body: (&'static MonoFont<'static>, u32),
    /// Large text candidates, largest first, with their scale factor.
    big: &'static [(&'static MonoFont<'static>, u32)],
    /// Height of a large row.
    big_h: u32,
    /// A emphasised body line (quantities).
    mid: (&'static MonoFont<'static>, u32),
    /// Key hints at the bottom, if the screen has room.
    footer: Option<(&'static MonoFont<'static>, u32)>,
    /// Progress bar height, 0 for none.
    bar_h: u32,
}

/// What a piece of the screen is, which decides its colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Ordinary text.
    Body,
    /// The one thing to look at: the location, the value typed.
    Accent,
    /// The title bar.
    Header,
    /// A title bar coloured by severity.
    Level(Level),
    /// Key hints.
    Muted,
    /// The highlighted menu entry.
    Selected,
    /// The done part of a progress bar.
    BarDone,
    /// The rest of a progress bar.
    BarTodo,
}

/// Colours of a display type: foreground and background for every role.
pub trait Palette: PixelColor {
    /// `(foreground, background)` of `role`.
    fn colors(role: Role) -> (Self, Self);
}

impl Palette for BinaryColor {
    fn colors(role: Role) -> (Self, Self) {
        use BinaryColor::{Off, On};
        match role {
            Role::Body | Role::Accent | Role::Muted | Role::Level(Level::Info | Level::Ok) => {
                (On, Off)
            }
            Role::Header | Role::Level(_) | Role::Selected | Role::BarDone => (Off, On),
            Role::BarTodo => (On, Off),
        }
    }
}

/// The mono profile on a grey-scale panel (the SSD0323's 4-bit grey): on is full white,
/// off is black, so the picture is the mono one pixel for pixel.
impl Palette for Gray4 {
    fn colors(role: Role) -> (Self, Self) {
        let grey = |c: BinaryColor| match c {
            BinaryColor::On => Gray4::WHITE,
            BinaryColor::Off => Gray4::BLACK,
        };
        let (fg, bg) = BinaryColor::colors(role);
        (grey(fg), grey(bg))
    }
}

const fn rgb(r: u8, g: u8, b: u8) -> Rgb565 {
    Rgb565::new(r >> 3, g >> 2, b >> 3)
}

impl Palette for Rgb565 {
    fn colors(role: Role) -> (Self, Self) {
        let black = rgb(0, 0, 0);
        let white = rgb(255, 255, 255);
        match role {
            Role::Body => (white, black),
            Role::Accent => (rgb(255, 214, 0), black),
            Role::Header | Role::Level(Level::Info) => (white, rgb(30, 80, 160)),
            Role::Level(Level::Ok) => (white, rgb(0, 130, 60)),
            Role::Level(Level::Warning) => (black, rgb(255, 170, 0)),
            Role::Level(Level::Error) => (white, rgb(200, 20, 20)),
            Role::Muted => (rgb(180, 180, 180), rgb(40, 40, 40)),
            Role::Selected => (black, white),
            Role::BarDone => (black, rgb(0, 170, 80)),
            Role::BarTodo => (black, rgb(60, 60, 60)),
        }
    }
}

/// Draws `view` for `profile` onto `target`, every pixel of the profile's screen once.
pub fn draw<D>(view: &View, profile: Profile, target: &mut D) -> Result<(), D::Error>
where
    D: DrawTarget,
    D::Color: Palette,
{
    let m = profile.metrics();
    let mut c = Canvas {
        target,
        size: profile.size(),
        y: 0,
        m: &m,
    };
    match view {
        View::Connecting => {
            c.header("FLOORHAND", "", Role::Header)?;
            c.gap()?;
            c.paragraph("Connecting to the agent...", Role::Body, 3)?;
            c.finish(Some("Waiting for the agent"))
        }
        View::VersionMismatch { agent } => {
            c.header("VERSION MISMATCH", "", Role::Level(Level::Error))?;
            c.gap()?;
            let mut text: String<96> = String::new();
            let _ = write!(
                text,
                "Agent speaks protocol v{agent}, this terminal v{}. Update one of them.",
                floorhand_protocol::PROTOCOL_VERSION
            );
            c.paragraph(&text, Role::Body, 5)?;
            c.finish(Some("Keys are ignored"))
        }
        View::LinkLost => {
            c.header("LINK LOST", "", Role::Level(Level::Error))?;
            c.gap()?;
            c.paragraph("No answer from the agent. Reconnecting...", Role::Body, 4)?;
            c.finish(Some("Keys are ignored until it answers"))
        }
        View::Screen(screen) => draw_screen(&mut c, screen),
    }
}

fn draw_screen<D>(c: &mut Canvas<'_, D>, screen: &Screen) -> Result<(), D::Error>
where
    D: DrawTarget,
    D::Color: Palette,
{
    let mut s: String<64> = String::new();
    match screen {
        Screen::Pick(p) => {
            let _ = write!(s, "{}/{}", p.done, p.total);
            c.header("PICK", &s, Role::Header)?;
            c.bar(p.done, p.total)?;
            c.gap()?;
            c.big(&p.location, Role::Accent)?;
            c.gap()?;
            c.paragraph(&p.item, Role::Body, 2)?;
            s.clear();
            let _ = write!(s, "Qty {}", p.qty);
            c.mid(&s, Role::Accent)?;
            c.finish(Some("Enter: picked  F1: short"))
        }
        Screen::Scan { target, hint } => {
            c.header("SCAN", "", Role::Header)?;
            c.gap()?;
            let _ = write!(s, "Scan {}", scan_label(*target));
            c.big(&s, Role::Accent)?;
            c.gap()?;
            c.paragraph(hint, Role::Body, 2)?;
            c.finish(Some("Scan, or Back"))
        }
        Screen::Quantity { prompt, value, max } => {
            c.header("QUANTITY", "", Role::Header)?;
            c.paragraph(prompt, Role::Body, 1)?;
            let _ = write!(s, "{value}");
            c.big(&s, Role::Accent)?;
            s.clear();
            let _ = write!(s, "max {max}");
            c.paragraph(&s, Role::Body, 1)?;
            c.finish(Some("0-9, Clear, Enter"))
        }
        Screen::Reasons { options, selected } => {
            c.header("SHORT PICK", "reason?", Role::Header)?;
            c.menu(options, usize::from(*selected))?;
            c.finish(Some("Up/Down or 1-6, Enter"))
        }
        Screen::Message { level, text } => {
            c.header(level_title(*level), "", Role::Level(*level))?;
            c.gap()?;
            c.paragraph(text, Role::Body, 6)?;
            c.finish(Some("Enter: OK"))
        }
        Screen::Offline { backlog, since_s } => {
            c.header("OFFLINE", "", Role::Level(Level::Warning))?;
            c.gap()?;
            c.paragraph("Keep working; the agent sends it all later.", Role::Body, 2)?;
            let _ = write!(s, "{backlog} queued");
            c.mid(&s, Role::Accent)?;
            s.clear();
            let _ = write!(s, "for ");
            let _ = write_duration(&mut s, *since_s);
            c.paragraph(&s, Role::Body, 1)?;
            c.finish(None)
        }
        Screen::WaveDone { picked, short } => {
            c.header("WAVE DONE", "", Role::Level(Level::Ok))?;
            c.gap()?;
            c.big("Done", Role::Accent)?;
            c.gap()?;
            let _ = write!(s, "{picked} picked, {short} short");
            c.paragraph(&s, Role::Body, 2)?;
            c.finish(Some("Enter: next wave"))
        }
    }
}

fn write_duration(s: &mut String<64>, secs: u32) -> core::fmt::Result {
    let (h, m, sec) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        write!(s, "{h}h{m:02}m")
    } else if m > 0 {
        write!(s, "{m}m{sec:02}s")
    } else {
        write!(s, "{sec}s")
    }
}

fn scan_label(t: ScanTarget) -> &'static str {
    match t {
        ScanTarget::Badge => "badge",
        ScanTarget::Location => "location",
        ScanTarget::Item => "item",
        ScanTarget::Tote => "tote",
        ScanTarget::Lot => "lot",
        ScanTarget::Serial => "serial",
        ScanTarget::Expiry => "expiry",
        ScanTarget::Order => "order",
        ScanTarget::Carton => "carton",
    }
}

fn level_title(l: Level) -> &'static str {
    match l {
        Level::Info => "INFO",
        Level::Ok => "OK",
        Level::Warning => "WARNING",
        Level::Error => "ERROR",
    }
}

/// The label the terminal shows for a short-pick reason.
pub fn reason_label(r: MenuReason) -> &'static str {
    match r {
        MenuReason::LocationEmpty => "Location empty",
        MenuReason::Damaged => "Damaged",
        MenuReason::WrongItem => "Wrong item",
        MenuReason::NotEnough => "Not enough",
    }
}

/// One line of text, at most this many bytes after cutting.
type Line = String<128>;

/// Copies at most `cols` characters of `text`; if more were there, the last one shown is
/// [`CUT`]. A `…` already put there by the protocol's `fit` also becomes [`CUT`], because
/// the fonts have no ellipsis.
pub fn clip(text: &str, cols: usize) -> Line {
    let mut out = Line::new();
    let n = text.chars().count();
    let cut = n > cols;
    let keep = if cut { cols.saturating_sub(1) } else { n };
    for ch in text.chars().take(keep) {
        let _ = out.push(if ch == '…' { CUT } else { ch });
    }
    if cut && cols > 0 {
        let _ = out.push(CUT);
    }
    out
}

/// Breaks `text` at spaces into at most `max_lines` lines of at most `cols` characters.
/// Words longer than a line are split; text beyond the last line is cut with [`CUT`].
pub fn wrap(text: &str, cols: usize, max_lines: usize) -> Vec<Line, 8> {
    let mut lines: Vec<Line, 8> = Vec::new();
    let max_lines = max_lines.min(8);
    if cols == 0 || max_lines == 0 {
        return lines;
    }
    let mut cur = Line::new();
    let mut cur_n = 0usize;
    let mut overflow = false;
    'words: for word in text.split(' ').filter(|w| !w.is_empty()) {
        let mut rest = word;
        while !rest.is_empty() {
            let wn = rest.chars().count();
            let room = if cur_n == 0 {
                cols
            } else {
                cols.saturating_sub(cur_n + 1)
            };
            if wn <= room || (cur_n == 0 && wn > cols) {
                // Fits, or is too long for any line: take what fits of it.
                let take = wn.min(room);
                if cur_n > 0 {
                    let _ = cur.push(' ');
                    cur_n += 1;
                }
                let split = rest.char_indices().nth(take).map_or(rest.len(), |(i, _)| i);
                let _ = cur.push_str(&rest[..split]);
                cur_n += take;
                rest = &rest[split..];
                if rest.is_empty() {
                    continue;
                }
            }
            // The line is full: start the next one.
            if lines.len() + 1 == max_lines {
                // No line left: show what fits of the rest on this one, marked as cut.
                let offset = rest.as_ptr() as usize - text.as_ptr() as usize;
                let mut joined: String<256> = String::new();
                let _ = joined.push_str(&cur);
                let _ = joined.push(' ');
                for ch in text[offset..].chars() {
                    if joined.push(ch).is_err() {
                        break;
                    }
                }
                cur = clip(&joined, cols);
                overflow = true;
                break 'words;
            }
            let _ = lines.push(core::mem::take(&mut cur));
            cur_n = 0;
        }
    }
    if cur_n > 0 || overflow {
        let _ = lines.push(cur);
    }
    for l in lines.iter_mut() {
        let c = clip(l, cols);
        *l = c;
    }
    lines
}

/// Draws rows from the top down; every row fills its whole rectangle.
struct Canvas<'a, D> {
    target: &'a mut D,
    size: Size,
    y: u32,
    m: &'a Metrics,
}

impl<D> Canvas<'_, D>
where
    D: DrawTarget,
    D::Color: Palette,
{
    /// Takes the next `h` rows of pixels (fewer at the bottom of the screen).
    fn take(&mut self, h: u32) -> Rectangle {
        let h = h.min(self.size.height - self.y);
        let r = Rectangle::new(Point::new(0, self.y as i32), Size::new(self.size.width, h));
        self.y += h;
        r
    }

    fn fill(&mut self, r: Rectangle, role: Role) -> Result<(), D::Error> {
        if r.size.width > 0 && r.size.height > 0 {
            self.target.fill_solid(&r, D::Color::colors(role).1)?;
        }
        Ok(())
    }

    fn cols(&self, font: &MonoFont<'_>, scale: u32) -> usize {
        let w = self.size.width.saturating_sub(2 * self.m.pad);
        (w / (font.character_size.width * scale).max(1)) as usize
    }

    /// A row of height `h` with texts at the left and right edge (either may be empty).
    /// The right text wins when both do not fit.
    fn line(
        &mut self,
        h: u32,
        font: &MonoFont<'_>,
        scale: u32,
        left: &str,
        right: &str,
        role: Role,
    ) -> Result<(), D::Error> {
        let row = self.take(h);
        let cw = font.character_size.width * scale;
        let ch = font.character_size.height * scale;
        if row.size.height < ch {
            // Not even one line of this font fits in what is left of the screen.
            return self.fill(row, role);
        }
        let cols = self.cols(font, scale);
        let right = clip(right, cols);
        let rn = right.chars().count();
        let left_cols = if rn == 0 {
            cols
        } else {
            cols.saturating_sub(rn + 1)
        };
        let left = clip(left, left_cols);
        let ln = left.chars().count();
        let ty = row.top_left.y + ((row.size.height - ch) / 2) as i32;
        let pad = self.m.pad as i32;
        let lx = pad;
        let rx = self.size.width as i32 - pad - (rn as u32 * cw) as i32;
        let y0 = row.top_left.y;
        let w = self.size.width;
        // Strips above and below the text cells.
        self.fill(
            Rectangle::new(row.top_left, Size::new(w, (ty - y0) as u32)),
            role,
        )?;
        let below = ty + ch as i32;
        self.fill(
            Rectangle::new(
                Point::new(0, below),
                Size::new(w, (row.top_left.y + row.size.height as i32 - below) as u32),
            ),
            role,
        )?;
        // The text band: gaps and text cells, left to right.
        let mut x = 0i32;
        for (tx, text, n) in [(lx, &left, ln), (rx, &right, rn)] {
            if n == 0 {
                continue;
            }
            self.fill(
                Rectangle::new(Point::new(x, ty), Size::new((tx - x) as u32, ch)),
                role,
            )?;
            self.text(text, font, scale, Point::new(tx, ty), role)?;
            x = tx + (n as u32 * cw) as i32;
        }
        self.fill(
            Rectangle::new(Point::new(x, ty), Size::new((w as i32 - x) as u32, ch)),
            role,
        )
    }

    fn text(
        &mut self,
        text: &str,
        font: &MonoFont<'_>,
        scale: u32,
        at: Point,
        role: Role,
    ) -> Result<(), D::Error> {
        let (fg, bg) = D::Color::colors(role);
        let style = MonoTextStyleBuilder::new()
            .font(font)
            .text_color(fg)
            .background_color(bg)
            .build();
        if scale == 1 {
            Text::with_baseline(text, at, style, Baseline::Top).draw(self.target)?;
        } else {
            let mut scaled = Scaled {
                parent: &mut *self.target,
                origin: at,
                scale,
            };
            Text::with_baseline(text, Point::zero(), style, Baseline::Top).draw(&mut scaled)?;
        }
        Ok(())
    }

    fn header(&mut self, left: &str, right: &str, role: Role) -> Result<(), D::Error> {
        let (font, h) = self.m.header;
        self.line(h, font, 1, left, right, role)
    }

    fn gap(&mut self) -> Result<(), D::Error> {
        let r = self.take(self.m.gap);
        self.fill(r, Role::Body)
    }

    /// One line in the largest font it fits in, cut in the smallest if none.
    fn big(&mut self, text: &str, role: Role) -> Result<(), D::Error> {
        let n = text.chars().count();
        let fonts = self.m.big;
        let (font, scale) = fonts
            .iter()
            .copied()
            .find(|(f, s)| n <= self.cols(f, *s) && f.character_size.height * s <= self.m.big_h)
            .or(fonts.last().copied())
            .unwrap_or((&FONT_6X10, 1));
        self.line(self.m.big_h, font, scale, text, "", role)
    }

    fn mid(&mut self, text: &str, role: Role) -> Result<(), D::Error> {
        let (font, h) = self.m.mid;
        self.line(h, font, 1, text, "", role)
    }

    fn paragraph(&mut self, text: &str, role: Role, max_lines: usize) -> Result<(), D::Error> {
        let (font, h) = self.m.body;
        let reserved = self.m.footer.map_or(0, |(_, fh)| fh);
        let room = self.size.height.saturating_sub(self.y + reserved) / h;
        let lines = wrap(
            text,
            self.cols(font, 1),
            max_lines.min(room as usize).max(1),
        );
        for l in &lines {
            self.line(h, font, 1, l, "", role)?;
        }
        Ok(())
    }

    fn bar(&mut self, done: u16, total: u16) -> Result<(), D::Error> {
        let r = self.take(self.m.bar_h);
        let w = r.size.width;
        let done_w = if total == 0 {
            0
        } else {
            (u32::from(done.min(total)) * w / u32::from(total)).min(w)
        };
        self.fill(
            Rectangle::new(r.top_left, Size::new(done_w, r.size.height)),
            Role::BarDone,
        )?;
        self.fill(
            Rectangle::new(
                r.top_left + Point::new(done_w as i32, 0),
                Size::new(w - done_w, r.size.height),
            ),
            Role::BarTodo,
        )
    }

    /// A menu of reasons, numbered from 1, scrolled so the selected one is visible.
    fn menu(&mut self, options: &[MenuReason], selected: usize) -> Result<(), D::Error> {
        let (font, h) = self.m.body;
        let reserved = self.m.footer.map_or(0, |(_, fh)| fh);
        let room = (self.size.height.saturating_sub(self.y + reserved) / h).max(1) as usize;
        let first = if selected < options.len() && selected >= room {
            selected + 1 - room
        } else {
            0
        };
        let mut s: String<64> = String::new();
        for (i, r) in options.iter().enumerate().skip(first).take(room) {
            s.clear();
            let _ = write!(s, "{} {}", i + 1, reason_label(*r));
            let role = if i == selected {
                Role::Selected
            } else {
                Role::Body
            };
            self.line(h, font, 1, &s, "", role)?;
        }
        Ok(())
    }

    /// Fills what is left, with the key hints at the bottom if the profile has room.
    fn finish(&mut self, hint: Option<&str>) -> Result<(), D::Error> {
        let footer = match (self.m.footer, hint) {
            (Some(f), Some(text)) => Some((f, text)),
            _ => None,
        };
        let fh = footer.map_or(0, |((_, h), _)| h);
        let rest = self.take(self.size.height.saturating_sub(self.y + fh));
        self.fill(rest, Role::Body)?;
        if let Some(((font, h), text)) = footer {
            self.line(h, font, 1, text, "", Role::Muted)?;
        }
        Ok(())
    }
}

/// Draws every pixel as a `scale` x `scale` block at `origin`: large text from the
/// built-in fonts, each block filled once.
struct Scaled<'a, D> {
    parent: &'a mut D,
    origin: Point,
    scale: u32,
}

impl<D: DrawTarget> OriginDimensions for Scaled<'_, D> {
    fn size(&self) -> Size {
        let s = self.parent.bounding_box().size;
        Size::new(s.width / self.scale, s.height / self.scale)
    }
}

impl<D: DrawTarget> DrawTarget for Scaled<'_, D> {
    type Color = D::Color;
    type Error = D::Error;

    fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Self::Error>
    where
        I: IntoIterator<Item = Pixel<Self::Color>>,
    {
        let s = self.scale as i32;
        for Pixel(p, c) in pixels {
            let at = self.origin + Point::new(p.x * s, p.y * s);
            self.parent
                .fill_solid(&Rectangle::new(at, Size::new_equal(self.scale)), c)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_wrap(text: &str, cols: usize, max: usize, expected: &[&str]) {
        let got = wrap(text, cols, max);
        let got: Vec<&str, 8> = got.iter().map(|l| l.as_str()).collect();
        assert_eq!(got.as_slice(), expected, "wrap({text:?}, {cols}, {max})");
    }

    #[test]
    fn short_text_is_kept_whole() {
        assert_eq!(clip("A-12", 5).as_str(), "A-12");
        assert_eq!(clip("A-12-", 5).as_str(), "A-12-");
    }

    #[test]
    fn long_text_is_cut_with_a_visible_mark() {
        assert_eq!(clip("A-12-03-B", 5).as_str(), "A-12>");
        assert_eq!(clip("Hex bolt…", 20).as_str(), "Hex bolt>");
        assert_eq!(clip("abc", 0).as_str(), "");
    }

    #[test]
    fn wrapping_breaks_at_spaces_and_marks_text_beyond_the_last_line() {
        check_wrap("Hex bolt M8x40, zinc", 21, 2, &["Hex bolt M8x40, zinc"]);
        check_wrap("Hex bolt M8x40, zinc", 10, 2, &["Hex bolt", "M8x40, zi>"]);
        check_wrap(
            "Hex bolt M8x40, zinc",
            10,
            3,
            &["Hex bolt", "M8x40,", "zinc"],
        );
        check_wrap("ABCDEFGHIJKLMNOP", 6, 3, &["ABCDEF", "GHIJKL", "MNOP"]);
        check_wrap("ABCDEFGHIJKLMNOP", 6, 2, &["ABCDEF", "GHIJK>"]);
        check_wrap("one two", 3, 1, &["on>"]);
        check_wrap("", 10, 2, &[]);
        check_wrap("   ", 10, 2, &[]);
    }
}
