//! Shipping labels in ZPL II: a pure module, order data in, printer bytes out.
//!
//! [`render`] fills a [`Template`] (the built-in 4x6 inch label from [`builtin`], or a
//! user's template file) with a carton's data. Invariants: every label selects UTF-8
//! (`^CI28`); every variable field goes through `^FH` hex escaping ([`escape`]), so no
//! order data can become a printer command; every field is bounded in length.
//! [`check_fits`] tells, when a pack order arrives, whether every value fits its bound:
//! one that does not is refused then, so a label never prints a cut address.

pub mod escape;
pub mod sscc;
pub mod template;

use floorhand_protocol::oms::{Address, PackOrder};

pub use sscc::{Sscc, SsccError};
pub use template::{Template, TemplateError};

/// Longest tracking number the built-in label's Code 128 fits across 4 inches.
pub const MAX_TRACKING: usize = 30;

/// Print resolution of the target printer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dpi {
    /// 203 dpi (8 dots/mm), the common desktop and industrial head.
    D203,
    /// 300 dpi (12 dots/mm).
    D300,
}

impl Dpi {
    /// Reads `203` or `300`.
    pub fn from_number(n: u16) -> Option<Dpi> {
        match n {
            203 => Some(Dpi::D203),
            300 => Some(Dpi::D300),
            _ => None,
        }
    }

    /// Dots per inch.
    pub fn dots_per_inch(self) -> u32 {
        match self {
            Dpi::D203 => 203,
            Dpi::D300 => 300,
        }
    }

    /// Dots per millimetre, as renderers take it.
    pub fn dots_per_mm(self) -> u32 {
        match self {
            Dpi::D203 => 8,
            Dpi::D300 => 12,
        }
    }

    /// `v` dots at 203 dpi, in this resolution's dots (rounded).
    fn scale(self, v: u32) -> u32 {
        (v * self.dots_per_inch() + 101) / 203
    }
}

/// Why a label could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    /// The tracking number cannot go into the Code 128 barcode as it is.
    #[error(
        "tracking number {tracking:?} cannot be printed as a barcode: {why}; correct it in the OMS"
    )]
    Tracking {
        /// The tracking number.
        tracking: String,
        /// What is wrong.
        why: &'static str,
    },
}

/// A value of a pack order that does not fit its place on the label. A cut value is a
/// wrong label (a truncated street is a misdelivered parcel), so the order is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} has {len} {unit}; the label holds at most {max}, and a value is never cut")]
pub struct FieldTooLong {
    /// The field, as its placeholder is named: `ship_to.line1`, `carrier`, ...
    pub field: String,
    /// Its length.
    pub len: usize,
    /// The most that fits.
    pub max: usize,
    /// What `len` and `max` count: `characters`, or `lines` for an address.
    pub unit: &'static str,
}

/// Address lines a label has room for (`line1` to `line4`).
const ADDRESS_LINES: usize = 4;

/// The address values with a placeholder, by key.
const ADDRESS_KEYS: &[&str] = &[
    "name",
    "company",
    "line1",
    "line2",
    "line3",
    "line4",
    "city",
    "region",
    "postal_code",
    "country",
    "city_line",
];

/// What a label prints of an order: its id, both addresses, carrier, service and tracking
/// number. A view, so the label takes the wire's `PackOrder` (when one arrives) and the
/// pack workflow's own order alike.
#[derive(Debug, Clone, Copy)]
pub struct Shipment<'a> {
    /// Order id.
    pub order_id: &'a str,
    /// Sender.
    pub ship_from: &'a Address,
    /// Recipient.
    pub ship_to: &'a Address,
    /// Carrier, e.g. `DHL`.
    pub carrier: &'a str,
    /// Carrier service.
    pub service: &'a str,
    /// Carrier tracking number, printed as Code 128.
    pub tracking: &'a str,
}

impl<'a> From<&'a PackOrder> for Shipment<'a> {
    fn from(o: &'a PackOrder) -> Shipment<'a> {
        Shipment {
            order_id: &o.order_id,
            ship_from: &o.ship_from,
            ship_to: &o.ship_to,
            carrier: &o.carrier,
            service: &o.service,
            tracking: &o.tracking,
        }
    }
}

/// Checks that every value of `order` a label may print fits its placeholder's bound
/// ([`template::PLACEHOLDERS`]), whichever template prints it: the order's fields, both
/// addresses (each line, and the composed city line), carrier, service, tracking.
pub fn check_fits(order: &Shipment<'_>) -> Result<(), FieldTooLong> {
    let fits = |field: String, value: &str| {
        let max = template::max_chars(&field).unwrap_or(usize::MAX);
        let len = value.chars().count();
        if len > max {
            return Err(FieldTooLong {
                field,
                len,
                max,
                unit: "characters",
            });
        }
        Ok(())
    };
    for (prefix, a) in [("ship_from", order.ship_from), ("ship_to", order.ship_to)] {
        if a.lines.len() > ADDRESS_LINES {
            return Err(FieldTooLong {
                field: format!("{prefix}.lines"),
                len: a.lines.len(),
                max: ADDRESS_LINES,
                unit: "lines",
            });
        }
        for key in ADDRESS_KEYS {
            fits(format!("{prefix}.{key}"), &address_value(a, key))?;
        }
    }
    for (field, value) in [
        ("carrier", order.carrier),
        ("service", order.service),
        ("order_id", order.order_id),
        ("tracking", order.tracking),
    ] {
        fits(field.to_string(), value)?;
    }
    Ok(())
}

/// One carton's label data.
#[derive(Debug, Clone, Copy)]
pub struct LabelData<'a> {
    /// The order's addresses, carrier and tracking number.
    pub order: Shipment<'a>,
    /// Carton number within the order, from 1.
    pub carton_no: u16,
    /// Cartons in the order, when known (the last carton knows it).
    pub carton_count: Option<u16>,
    /// Carton weight in grams.
    pub weight_g: u32,
    /// The carton's SSCC.
    pub sscc: &'a Sscc,
}

/// Checks that a tracking number can be a Code 128 barcode: printable ASCII without `>`
/// (ZPL's Code 128 invocation character), at most [`MAX_TRACKING`] characters. A tracking
/// number is never cut: a shortened one would scan as another parcel's.
fn check_tracking(tracking: &str) -> Result<(), LabelError> {
    let why = if tracking.len() > MAX_TRACKING {
        Some("longer than 30 characters")
    } else if !tracking.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        Some("only printable ASCII characters fit in Code 128")
    } else if tracking.contains('>') {
        Some("`>` is a Code 128 control character in ZPL")
    } else {
        None
    };
    match why {
        Some(why) => Err(LabelError::Tracking {
            tracking: tracking.to_owned(),
            why,
        }),
        None => Ok(()),
    }
}

fn address_value(a: &Address, key: &str) -> String {
    let line = |n: usize| a.lines.get(n).cloned().unwrap_or_default();
    match key {
        "name" => a.name.clone(),
        "company" => a.company.clone(),
        "line1" => line(0),
        "line2" => line(1),
        "line3" => line(2),
        "line4" => line(3),
        "city" => a.city.clone(),
        "region" => a.region.clone(),
        "postal_code" => a.postal_code.clone(),
        "country" => a.country.clone(),
        "city_line" => [a.postal_code.as_str(), a.city.as_str(), a.region.as_str()]
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// The value of placeholder `name` for `data`.
fn value(data: &LabelData<'_>, name: &str) -> String {
    let o = data.order;
    if let Some(key) = name.strip_prefix("ship_from.") {
        return address_value(o.ship_from, key);
    }
    if let Some(key) = name.strip_prefix("ship_to.") {
        return address_value(o.ship_to, key);
    }
    match name {
        "carrier" => o.carrier.to_owned(),
        "service" => o.service.to_owned(),
        "order_id" => o.order_id.to_owned(),
        "carton_no" => data.carton_no.to_string(),
        "carton_count" => data.carton_count.map(|n| n.to_string()).unwrap_or_default(),
        "carton" => match data.carton_count {
            Some(m) => format!("{} of {m}", data.carton_no),
            None => data.carton_no.to_string(),
        },
        "weight_g" => data.weight_g.to_string(),
        "weight_kg" => {
            let centi = (data.weight_g + 5) / 10;
            format!("{}.{:02} kg", centi / 100, centi % 100)
        }
        "tracking" => o.tracking.to_owned(),
        "sscc" => data.sscc.as_str().to_owned(),
        "digital_link" => data.sscc.digital_link(),
        _ => String::new(),
    }
}

/// Renders `data` with `template` into ZPL bytes.
pub fn render(template: &Template, data: &LabelData<'_>) -> Result<Vec<u8>, LabelError> {
    check_tracking(data.order.tracking)?;
    Ok(template.fill(|name| value(data, name)))
}

/// The built-in 4x6 inch label's template source at `dpi`: coordinates are laid out at
/// 203 dpi and scaled.
pub fn builtin_source(dpi: Dpi) -> String {
    let s = |v: u32| dpi.scale(v);
    // Module width of a barcode: 2 dots at 203 dpi is 3 at 300 (0.25 mm either way).
    let module = |v: u32| dpi.scale(v).max(1);
    let text = |x: u32, y: u32, h: u32, data: &str| {
        format!(
            "^FO{},{}^A0N,{h},{h}^FH^FD{data}^FS\n",
            s(x),
            s(y),
            h = s(h)
        )
    };
    // Code 128 with its human-readable line below; `mode` A is automatic, D is GS1-128.
    let code128 = |x: u32, y: u32, width: u32, h: u32, mode: char, data: &str| {
        format!(
            "^FO{},{}^BY{}^BCN,{},Y,N,N,{mode}^FH^FD{data}^FS\n",
            s(x),
            s(y),
            module(width),
            s(h)
        )
    };
    let rule = |y: u32| format!("^FO0,{}^GB{},{},{}^FS\n", s(y), s(812), s(3), s(3));
    let mut z = String::new();
    z.push_str("^XA\n^CI28\n");
    z.push_str(&format!("^PW{}\n^LL{}\n^LH0,0\n", s(812), s(1218)));
    // Text fields: x, y, height (dots at 203 dpi), data; rules between the blocks.
    const TEXT: &[(u32, u32, u32, &str)] = &[
        // Sender and carrier.
        (30, 25, 22, "FROM"),
        (30, 52, 26, "{{ship_from.name}}"),
        (30, 82, 26, "{{ship_from.company}}"),
        (30, 112, 26, "{{ship_from.line1}}"),
        (30, 142, 26, "{{ship_from.city_line}} {{ship_from.country}}"),
        (520, 30, 50, "{{carrier}}"),
        (520, 90, 28, "{{service}}"),
        // Recipient.
        (30, 200, 22, "TO"),
        (30, 228, 44, "{{ship_to.name}}"),
        (30, 278, 36, "{{ship_to.company}}"),
        (30, 320, 36, "{{ship_to.line1}}"),
        (30, 362, 36, "{{ship_to.line2}}"),
        (30, 404, 44, "{{ship_to.city_line}}"),
        (30, 454, 44, "{{ship_to.country}}"),
        // Order, carton, weight.
        (30, 530, 30, "Order {{order_id}}"),
        (30, 575, 30, "Carton {{carton}}"),
        (30, 620, 30, "Weight {{weight_kg}}"),
        (30, 705, 22, "TRACKING"),
        (30, 920, 22, "SSCC"),
    ];
    for &(x, y, h, data) in TEXT {
        z.push_str(&text(x, y, h, data));
    }
    for y in [185, 510, 690, 905] {
        z.push_str(&rule(y));
    }
    // The SSCC's GS1 Digital Link.
    z.push_str(&format!(
        "^FO{},{}^BQN,2,{}^FH^FDMA,{{{{digital_link}}}}^FS\n",
        s(640),
        s(515),
        module(5)
    ));
    // Carrier tracking number, Code 128 in automatic mode (subset C for digit runs).
    z.push_str(&code128(40, 735, 2, 110, 'A', "{{tracking}}"));
    // SSCC as GS1-128: mode D adds FNC1 after the start code (docs/dev/field-notes.md, "ZPL II").
    z.push_str(&code128(90, 955, 3, 190, 'D', "(00){{sscc}}"));
    z.push_str("^XZ\n");
    z
}

/// The built-in 4x6 inch label at `dpi`.
pub fn builtin(dpi: Dpi) -> Template {
    // The built-in source is checked by a unit test for both resolutions; a failure here
    // would be a bug in this file, not bad input.
    Template::parse(&builtin_source(dpi)).unwrap_or_else(|e| panic!("built-in label: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order() -> PackOrder {
        match floorhand_protocol::examples::down()
            .into_iter()
            .find_map(|(_, env)| match env.body.body {
                floorhand_protocol::oms::Down::PackOrder(p) => Some(*p),
                _ => None,
            }) {
            Some(p) => p,
            None => panic!("protocol examples have a PackOrder"),
        }
    }

    /// The first carton of `o`, of 1 g.
    fn first_carton<'a>(o: &'a PackOrder, sscc: &'a Sscc) -> LabelData<'a> {
        LabelData {
            order: o.into(),
            carton_no: 1,
            carton_count: None,
            weight_g: 1,
            sscc,
        }
    }

    #[test]
    fn builtin_templates_pass_their_own_checks_at_both_resolutions() {
        for dpi in [Dpi::D203, Dpi::D300] {
            Template::parse(&builtin_source(dpi)).unwrap();
        }
    }

    #[test]
    fn a_tracking_number_that_cannot_be_a_barcode_is_refused_not_cut() {
        let sscc = Sscc::build(3, "4012345", 1).unwrap();
        for bad in ["A>B", "ÄBC", "12\r3", &"9".repeat(31)] {
            let mut o = order();
            o.tracking = bad.to_owned();
            let data = first_carton(&o, &sscc);
            assert!(
                matches!(
                    render(&builtin(Dpi::D203), &data),
                    Err(LabelError::Tracking { .. })
                ),
                "{bad:?}"
            );
        }
    }

    /// `order` changed by `edit`, checked: `Ok` or the error's text.
    fn check_fit(edit: impl Fn(&mut PackOrder), expected: Result<(), &str>) {
        let mut o = order();
        edit(&mut o);
        let got = check_fits(&(&o).into()).map_err(|e| e.to_string());
        assert_eq!(got, expected.map_err(str::to_string));
    }

    #[test]
    fn a_value_longer_than_its_place_on_the_label_is_named_with_its_limit() {
        check_fit(|_| {}, Ok(()));
        check_fit(
            |o| o.ship_to.name = "N".repeat(10_000),
            Err(
                "ship_to.name has 10000 characters; the label holds at most 48, and a value \
                 is never cut",
            ),
        );
        check_fit(|o| o.ship_to.lines[0] = "S".repeat(48), Ok(()));
        check_fit(
            |o| o.ship_to.lines[0] = "S".repeat(49),
            Err(
                "ship_to.line1 has 49 characters; the label holds at most 48, and a value is \
                 never cut",
            ),
        );
        // Characters count, not bytes: 48 of them in 144 bytes of UTF-8 fit.
        check_fit(|o| o.ship_from.company = "東".repeat(48), Ok(()));
        check_fit(
            |o| o.ship_to.lines = vec![String::new(); 5],
            Err("ship_to.lines has 5 lines; the label holds at most 4, and a value is never cut"),
        );
        check_fit(
            |o| {
                o.ship_from.postal_code = "1".repeat(16);
                o.ship_from.city = "C".repeat(48);
            },
            Err(
                "ship_from.city_line has 65 characters; the label holds at most 64, and a \
                 value is never cut",
            ),
        );
        check_fit(
            |o| o.ship_to.country = "DEU".into(),
            Err(
                "ship_to.country has 3 characters; the label holds at most 2, and a value is \
                 never cut",
            ),
        );
        for (field, max) in [
            ("carrier", 24),
            ("service", 32),
            ("order_id", 40),
            ("tracking", 30),
        ] {
            let long = "X".repeat(max + 1);
            check_fit(
                |o| match field {
                    "carrier" => o.carrier = long.clone(),
                    "service" => o.service = long.clone(),
                    "order_id" => o.order_id = long.clone(),
                    _ => o.tracking = long.clone(),
                },
                Err(&format!(
                    "{field} has {} characters; the label holds at most {max}, and a value is \
                     never cut",
                    max + 1
                )),
            );
        }
    }

    #[test]
    fn an_order_that_fits_prints_every_value_whole_on_the_built_in_label() {
        let mut o = order();
        o.ship_to.name = "N".repeat(48);
        o.ship_to.company = "M".repeat(48);
        o.ship_to.lines = vec!["L".repeat(48), "K".repeat(48)];
        o.ship_to.postal_code = "1".repeat(16);
        o.ship_to.city = "C".repeat(47);
        o.ship_to.region = String::new();
        o.carrier = "R".repeat(24);
        o.service = "V".repeat(32);
        o.order_id = "O".repeat(40);
        o.tracking = "7".repeat(30);
        check_fits(&(&o).into()).unwrap();
        let sscc = Sscc::build(3, "4012345", 1).unwrap();
        let data = first_carton(&o, &sscc);
        for dpi in [Dpi::D203, Dpi::D300] {
            let zpl = String::from_utf8(render(&builtin(dpi), &data).unwrap()).unwrap();
            let city_line = format!("{} {}", o.ship_to.postal_code, o.ship_to.city);
            for whole in [
                &o.ship_to.name,
                &o.ship_to.company,
                &o.ship_to.lines[0],
                &o.ship_to.lines[1],
                &city_line,
                &o.carrier,
                &o.service,
                &o.order_id,
                &o.tracking,
            ] {
                assert!(
                    zpl.contains(&format!("{whole}^FS")),
                    "{whole} is cut: {zpl}"
                );
            }
        }
    }

    #[test]
    fn weight_prints_in_kilograms_rounded_to_ten_grams() {
        let o = order();
        let sscc = Sscc::build(3, "4012345", 1).unwrap();
        for (g, text) in [
            (1460, "1.46 kg"),
            (5, "0.01 kg"),
            (4, "0.00 kg"),
            (12_345, "12.35 kg"),
        ] {
            let data = LabelData {
                order: (&o).into(),
                carton_no: 1,
                carton_count: Some(2),
                weight_g: g,
                sscc: &sscc,
            };
            assert_eq!(value(&data, "weight_kg"), text);
            assert_eq!(value(&data, "carton"), "1 of 2");
        }
    }

    #[test]
    fn every_placeholder_reads_its_own_field() {
        let mut o = order();
        for (a, side) in [(&mut o.ship_from, "from"), (&mut o.ship_to, "to")] {
            *a = Address {
                name: format!("{side} name"),
                company: format!("{side} company"),
                lines: (1..=4).map(|n| format!("{side} line{n}")).collect(),
                city: format!("{side} city"),
                region: format!("{side} region"),
                postal_code: format!("{side} postal"),
                country: side[..2].to_uppercase(),
            };
        }
        let sscc = Sscc::build(3, "4012345", 1).unwrap();
        let data = LabelData {
            carton_count: Some(3),
            weight_g: 1234,
            ..first_carton(&o, &sscc)
        };
        for side in ["from", "to"] {
            for (key, want) in [
                ("name", format!("{side} name")),
                ("company", format!("{side} company")),
                ("line1", format!("{side} line1")),
                ("line2", format!("{side} line2")),
                ("line3", format!("{side} line3")),
                ("line4", format!("{side} line4")),
                ("city", format!("{side} city")),
                ("region", format!("{side} region")),
                ("postal_code", format!("{side} postal")),
                ("country", side[..2].to_uppercase()),
                (
                    "city_line",
                    format!("{side} postal {side} city {side} region"),
                ),
            ] {
                let name = format!("ship_{side}.{key}");
                assert_eq!(value(&data, &name), want, "{name}");
            }
        }
        for (name, want) in [
            ("carton_no", "1"),
            ("carton_count", "3"),
            ("carton", "1 of 3"),
            ("weight_g", "1234"),
            ("weight_kg", "1.23 kg"),
        ] {
            assert_eq!(value(&data, name), want, "{name}");
        }
    }
}
