//! Table-driven tests for every barcode format and AI rule, one `check` helper per area,
//! and property tests that parsing garbage never panics.

use proptest::prelude::*;

use super::*;

/// One line per barcode: form, GTIN-14, the AIs (with decoded dates and decimals),
/// errors, notes. Readable in a failing assert.
fn summary(bc: &Barcode) -> String {
    let mut s = format!("{:?}", bc.form);
    if let Some(sym) = &bc.symbology {
        s += &format!(" {}", sym.id);
    }
    if let Some(g) = &bc.gtin {
        s += &format!(" gtin={g}");
    }
    for e in &bc.elements {
        s += &format!(" ({}){}", e.ai, e.data);
        if let Some(d) = e.date {
            s += &format!("={}", d.iso());
        }
        if let Some(d) = &e.decimal {
            s += &format!("={d}");
        }
    }
    for e in &bc.errors {
        s += &format!(" ERROR {e}");
    }
    for e in &bc.notes {
        s += &format!(" NOTE {e}");
    }
    s
}

fn check_parse(input: &[u8], expected: &str) {
    assert_eq!(
        summary(&parse(input)),
        expected,
        "input {}",
        printable(input)
    );
}

fn check_gtin(input: &str, expected: Result<&str, &str>) {
    let got = Gtin14::parse(input)
        .map(|g| g.to_string())
        .map_err(|e| e.to_string());
    let expected = expected.map(str::to_string).map_err(str::to_string);
    assert_eq!(got, expected, "{input}");
}

#[test]
fn gtins_of_every_length_normalise_to_gtin14_and_check_digits_are_verified() {
    check_gtin("9506000134352", Ok("09506000134352"));
    check_gtin("09506000134352", Ok("09506000134352"));
    check_gtin("96385074", Ok("00000096385074"));
    check_gtin("036000291452", Ok("00036000291452"));
    check_gtin("95012345678903", Ok("95012345678903"));
    check_gtin(
        "95012345678908",
        Err("at byte 0: check digit 8 should be 3"),
    );
    check_gtin("9506000134353", Err("at byte 0: check digit 3 should be 2"));
    check_gtin(
        "9506000",
        Err("at byte 0: 7 digits is not a GTIN length (8, 12, 13 or 14)"),
    );
    check_gtin("95060001343A2", Err("at byte 0: not all digits"));
}

#[test]
fn a_leading_zero_gtin14_equals_its_ean13() {
    // docs/dev/field-notes.md, "GS1 barcodes": other systems failed to match these.
    assert_eq!(
        Gtin14::parse("09506000134352"),
        Gtin14::parse("9506000134352")
    );
    assert_eq!(
        parse(b"9506000134352").gtin,
        parse(b"]C10109506000134352").gtin
    );
}

#[test]
fn upc_e_expands_to_upc_a() {
    fn check(input: &str, expected: Result<&str, &str>) {
        let got = upce_to_upca(input).map_err(|e| e.to_string());
        let expected = expected.map(str::to_string).map_err(str::to_string);
        assert_eq!(got, expected, "{input}");
    }
    // One example per zero-suppression rule (last data digit 0-2, 3, 4, 5-9).
    check("04252614", Ok("042100005264"));
    check("01234565", Ok("012345000065"));
    check("01234133", Ok("012300000413"));
    check("01234145", Ok("012340000015"));
    check("01234558", Ok("012345000058"));
    check("04252615", Err("at byte 0: check digit 5 should be 4"));
    check("24252614", Err("at byte 0: a UPC-E starts with 0 or 1"));
    check("0425261", Err("at byte 0: a UPC-E is 8 digits"));
}

#[test]
fn check_digit_uses_weights_three_one_from_the_right() {
    assert_eq!(check_digit(b"0950600013435"), Some(2));
    assert_eq!(check_digit(b"10614141123456789"), Some(7));
    assert_eq!(check_digit(b"629104150021"), Some(3));
    assert_eq!(check_digit(b"12a"), None);
}

#[test]
fn retail_symbols_parse_with_and_without_aim_identifiers() {
    check_parse(b"]E09506000134352", "Retail ]E0 gtin=09506000134352");
    check_parse(
        b"]E404252614",
        "Retail ]E4 ERROR at byte 3: check digit 4 should be 0",
    );
    check_parse(b"]E004252614", "Retail ]E0 gtin=00042100005264");
    check_parse(b"]E0042100005264", "Retail ]E0 gtin=00042100005264");
    check_parse(b"9506000134352", "Retail gtin=09506000134352");
    check_parse(b"96385074", "Retail gtin=00000096385074");
    check_parse(b"04252614", "Retail gtin=00042100005264");
    check_parse(b"036000291452", "Retail gtin=00036000291452");
    check_parse(b"]I195012345678903", "Retail ]I1 gtin=95012345678903");
    check_parse(
        b"]E09506000134353",
        "Retail ]E0 ERROR at byte 3: check digit 3 should be 2",
    );
    // Without an AIM identifier, digits with a bad check digit are just text (a tote or
    // badge number), not a broken GTIN.
    check_parse(b"12345678", "Text");
}

#[test]
fn aim_identifiers_are_recognised() {
    fn check(input: &[u8], expected: Option<(&str, &str, bool)>) {
        let got = parse(input).symbology.map(|s| (s.id, s.name, s.gs1));
        let expected = expected.map(|(i, n, g)| (i.to_string(), n, g));
        assert_eq!(got, expected, "{}", printable(input));
    }
    check(b"]C0ABC", Some(("]C0", "Code 128", false)));
    check(b"]C10109506000134352", Some(("]C1", "GS1-128", true)));
    check(b"]e00109506000134352", Some(("]e0", "GS1 DataBar", true)));
    check(b"]d1hello", Some(("]d1", "Data Matrix", false)));
    check(
        b"]d20109506000134352",
        Some(("]d2", "GS1 DataMatrix", true)),
    );
    check(
        b"]Q1https://example.com/01/09506000134352",
        Some(("]Q1", "QR Code", false)),
    );
    check(b"]Q30109506000134352", Some(("]Q3", "GS1 QR Code", true)));
    check(
        b"]E09506000134352",
        Some(("]E0", "EAN-13, UPC-A or UPC-E", false)),
    );
    check(b"]E496385074", Some(("]E4", "EAN-8", false)));
    check(b"]J0abc", Some(("]J0", "DotCode", false)));
    check(b"]J10109506000134352", Some(("]J1", "GS1 DotCode", true)));
    check(b"]Z9abc", Some(("]Z9", "unknown symbology", false)));
    check(b"]C", None);
    check(b"A-12-03", None);
}

#[test]
fn element_strings_split_fixed_and_variable_fields() {
    // Fixed-length AIs need no GS; variable ones end at GS or at the end.
    check_parse(
        b"]C10109506000134352\x1d10ABC\x1d17270630",
        "ElementString ]C1 gtin=09506000134352 (01)09506000134352 (10)ABC (17)270630=2027-06-30",
    );
    check_parse(
        b"]C1010950600013435217270630\x1d10ABC123",
        "ElementString ]C1 gtin=09506000134352 (01)09506000134352 (17)270630=2027-06-30 (10)ABC123",
    );
    check_parse(
        b"]C1010950600013435210ABC\x1d21S123",
        "ElementString ]C1 gtin=09506000134352 (01)09506000134352 (10)ABC (21)S123",
    );
    check_parse(
        b"\x1d010950600013435210ABC",
        "ElementString gtin=09506000134352 (01)09506000134352 (10)ABC",
    );
    check_parse(
        b"]d2010950600013435217270600",
        "ElementString ]d2 gtin=09506000134352 (01)09506000134352 (17)270600=2027-06-30",
    );
    check_parse(
        b"]C100106141411234567897\x1d400PO-77\x1d4109501101530003",
        "ElementString ]C1 (00)106141411234567897 (400)PO-77 (410)9501101530003",
    );
    check_parse(
        b"]C10209506000134352370012\x1d",
        "ElementString ]C1 (02)09506000134352 (37)0012",
    );
    check_parse(
        b"]C101095060001343523103001250",
        "ElementString ]C1 gtin=09506000134352 (01)09506000134352 (3103)001250=1.250",
    );
    check_parse(
        b"]C10109506000134352\x1d70032706301430",
        "ElementString ]C1 gtin=09506000134352 (01)09506000134352 (7003)2706301430=2027-06-30",
    );
    check_parse(
        b"]C10109506000134352800827063014",
        "ElementString ]C1 gtin=09506000134352 (01)09506000134352 (8008)27063014=2027-06-30",
    );
    check_parse(
        b"]C1800309501101530003SERIAL-1",
        "ElementString ]C1 (8003)09501101530003SERIAL-1",
    );
    check_parse(
        b"]C18004GIAI-42\x1d91INTERNAL",
        "ElementString ]C1 (8004)GIAI-42 (91)INTERNAL",
    );
    check_parse(
        b"]C1421276D-10115\x1d422276\x1d42327640",
        "ElementString ]C1 (421)276D-10115 (422)276 ERROR AI 423 at byte 27: must be one to five three-digit country codes",
    );
    check_parse(
        b"]C1010950600013435220011126011522CPV\x1d13260115",
        "ElementString ]C1 gtin=09506000134352 (01)09506000134352 (20)01 (11)260115=2026-01-15 (22)CPV (13)260115=2026-01-15",
    );
}

#[test]
fn element_string_errors_name_the_ai_and_the_byte() {
    check_parse(
        b"]C10109506000134353",
        "ElementString ]C1 ERROR AI 01 at byte 5: check digit 3 should be 2",
    );
    check_parse(
        b"]C1010950600013435217270632",
        "ElementString ]C1 gtin=09506000134352 (01)09506000134352 ERROR AI 17 at byte 21: day 32 is not a date",
    );
    check_parse(
        b"]C1010950600013435217271330",
        "ElementString ]C1 gtin=09506000134352 (01)09506000134352 ERROR AI 17 at byte 21: month 13 is not a month",
    );
    check_parse(
        b"]C1010950600013435217270229",
        "ElementString ]C1 gtin=09506000134352 (01)09506000134352 ERROR AI 17 at byte 21: day 29 is not a date",
    );
    check_parse(
        b"]C1010950600013435217280229",
        "ElementString ]C1 gtin=09506000134352 (01)09506000134352 (17)280229=2028-02-29",
    );
    check_parse(
        b"]C1010950600013435210ABC\xc3\xa9",
        "ElementString ]C1 gtin=09506000134352 (01)09506000134352 ERROR AI 10 at byte 24: 'é' is not allowed in GS1 data (character set 82)",
    );
    check_parse(
        b"]C1010950600013435210A~C",
        "ElementString ]C1 gtin=09506000134352 (01)09506000134352 ERROR AI 10 at byte 22: '~' is not allowed in GS1 data (character set 82)",
    );
    check_parse(
        b"]C1010950600013435210ABCDEFGHIJKLMNOPQRSTU",
        "ElementString ]C1 gtin=09506000134352 (01)09506000134352 ERROR AI 10 at byte 21: length 21, expected 1 to 20",
    );
    check_parse(
        b"]C1010950600013",
        "ElementString ]C1 ERROR AI 01 at byte 5: length 10, expected 14",
    );
    check_parse(
        b"]C101095060001343522370630",
        "ElementString ]C1 gtin=09506000134352 (01)09506000134352 ERROR at byte 19: no known AI starts with '2370'",
    );
    check_parse(
        b"]C1010950600013435210",
        "ElementString ]C1 gtin=09506000134352 (01)09506000134352 ERROR AI 10 at byte 21: no data",
    );
    check_parse(
        b"]C101095060001343523106001250",
        "ElementString ]C1 gtin=09506000134352 (01)09506000134352 ERROR at byte 19: no known AI starts with '3106'",
    );
    check_parse(
        b"]C10109506000134352\x1d70032706302500",
        "ElementString ]C1 gtin=09506000134352 (01)09506000134352 ERROR AI 7003 at byte 30: not a valid time of day",
    );
    check_parse(
        b"]C14234",
        "ElementString ]C1 ERROR AI 423 at byte 6: length 1, expected 3 to 15",
    );
    check_parse(b"]C1", "Text ]C1 ERROR at byte 3: no data");
    check_parse(
        b"]C1000106141411234567897",
        "ElementString ]C1 ERROR AI 00 at byte 5: check digit 9 should be 0 ERROR at byte 23: no known AI starts with '7'",
    );
    check_parse(
        b"]C101095060001343523922001250",
        "ElementString ]C1 gtin=09506000134352 (01)09506000134352 ERROR at byte 19: no known AI starts with '3922'",
    );
    check_parse(b"]E496385074", "Retail ]E4 gtin=00000096385074");
}

#[test]
fn required_and_excluded_ais_are_checked() {
    // 01 and 02 exclude each other; 01 excludes 37; 02 requires 37; 37 requires 02.
    check_parse(
        b"]C10109506000134352020950600013435237\x1d",
        "ElementString ]C1 gtin=09506000134352 (01)09506000134352 (02)09506000134352 ERROR AI 37 at byte 37: no data ERROR AI 01 at byte 5: cannot be used with AI 02 on the same item NOTE AI 02 at byte 21: needs AI 37 on the same item",
    );
    check_parse(
        b"]C1010950600013435237000012",
        "ElementString ]C1 gtin=09506000134352 (01)09506000134352 (37)000012 ERROR AI 01 at byte 5: cannot be used with AI 37 on the same item NOTE AI 37 at byte 21: needs AI 02 or 8026 on the same item",
    );
    check_parse(
        b"]C10209506000134352",
        "ElementString ]C1 (02)09506000134352 NOTE AI 02 at byte 5: needs AI 37 on the same item",
    );
    check_parse(
        b"]C1370012",
        "ElementString ]C1 (37)0012 NOTE AI 37 at byte 5: needs AI 02 or 8026 on the same item",
    );
    // A lot label on its own: fine, but the item needs its GTIN from another scan.
    check_parse(
        b"]C110LOT42",
        "ElementString ]C1 (10)LOT42 NOTE AI 10 at byte 5: needs AI 01 or 02 or 8006 or 8026 on the same item",
    );
    check_parse(
        b"]C121SER\x1d10LOT",
        "ElementString ]C1 (21)SER (10)LOT NOTE AI 21 at byte 5: needs AI 01 or 8006 on the same item NOTE AI 10 at byte 11: needs AI 01 or 02 or 8006 or 8026 on the same item",
    );
    // The same AI twice with different values.
    check_parse(
        b"]C1010950600013435217270630\x1d17270701",
        "ElementString ]C1 gtin=09506000134352 (01)09506000134352 (17)270630=2027-06-30 (17)270701=2027-07-01 ERROR AI 17 at byte 30: scanned twice with different values '270630' and '270701'",
    );
}

#[test]
fn rules_are_checked_over_all_scans_of_one_item() {
    let mut item = ItemData::default();
    item.add(&parse(b"]C110LOT42"));
    assert_eq!(
        item.check()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["AI 10 at byte 5: needs AI 01 or 02 or 8006 or 8026 on the same item"]
    );
    item.add(&parse(b"9506000134352"));
    assert_eq!(item.check(), []);
    item.add(&parse(b"]C110LOT43"));
    assert_eq!(
        item.conflicts()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["AI 10 at byte 5: scanned twice with different values 'LOT42' and 'LOT43'"]
    );
}

#[test]
fn a_lot_that_starts_with_10_is_not_read_as_ai_10() {
    // docs/dev/field-notes.md, "GS1 barcodes": lot "10D9T" misread as AI 10 in another system.
    check_parse(b"10D9T", "Text");
    check_parse(b"]C010D9T", "Text ]C0");
    assert_eq!(parse(b"10D9T").text, "10D9T");
}

#[test]
fn expiry_survives_parsing_in_every_form() {
    // docs/dev/field-notes.md, "GS1 barcodes": expiry dropped during parsing in another system.
    for input in [
        &b"]C10109506000134352\x1d10ABC\x1d17270630"[..],
        b"]C1010950600013435217270630\x1d10ABC",
        b"(01)09506000134352(10)ABC(17)270630",
        b"https://id.gs1.org/01/09506000134352/10/ABC?17=270630",
    ] {
        let expected = Some(Date {
            year: 2027,
            month: 6,
            day: 30,
        });
        assert_eq!(parse(input).expiry(), expected, "{}", printable(input));
    }
}

#[test]
fn bracketed_human_form_parses_like_the_element_string() {
    check_parse(
        b"(01)09506000134352(10)ABC",
        "Bracketed gtin=09506000134352 (01)09506000134352 (10)ABC",
    );
    check_parse(
        b"(01)09506000134352(17)270600(10)A(B)C",
        "Bracketed gtin=09506000134352 (01)09506000134352 (17)270600=2027-06-30 (10)A(B)C",
    );
    check_parse(
        b"(01)0950600013435(10)ABC",
        "Bracketed (10)ABC ERROR AI 01 at byte 4: length 13, expected 14 NOTE AI 10 at byte 21: needs AI 01 or 02 or 8006 or 8026 on the same item",
    );
    check_parse(b"(99)x", "Bracketed (99)x");
    check_parse(
        b"(7)09506000134352",
        "Bracketed ERROR at byte 0: the bracketed form starts with an AI in brackets, like (01)",
    );
    let without_pos = |input: &[u8]| {
        let els = parse(input).elements.into_iter();
        els.map(|e| Element { pos: 0, ..e }).collect::<Vec<_>>()
    };
    assert_eq!(
        without_pos(b"(01)09506000134352(10)ABC"),
        without_pos(b"]C1010950600013435210ABC")
    );
}

#[test]
fn digital_link_uris_parse_into_the_same_ais() {
    check_parse(
        b"https://id.gs1.org/01/09506000134352/10/L1?17=270630",
        "DigitalLink gtin=09506000134352 (01)09506000134352 (10)L1 (17)270630=2027-06-30",
    );
    check_parse(b"]Q1https://example.com/shop/01/9506000134352/10/AB%2FC/21/S%2B1?3103=001250&linkType=gs1:pip", "DigitalLink ]Q1 gtin=09506000134352 (01)09506000134352 (10)AB/C (21)S+1 (3103)001250=1.250");
    check_parse(
        b"HTTPS://id.gs1.org/00/106141411234567897",
        "DigitalLink (00)106141411234567897",
    );
    check_parse(
        b"https://id.gs1.org/01/09506000134353",
        "DigitalLink ERROR AI 01 at byte 22: check digit 3 should be 2",
    );
    check_parse(
        b"https://id.gs1.org/01/09506000134352/21/S1/10/L1",
        "DigitalLink gtin=09506000134352 (01)09506000134352 (21)S1 ERROR AI 10 at byte 43: qualifiers must follow the key in the order 22, 10, 21",
    );
    check_parse(
        b"https://id.gs1.org/01/09506000134352/17/270630",
        "DigitalLink gtin=09506000134352 (01)09506000134352 ERROR AI 17 at byte 37: is not a qualifier of AI 01 in a Digital Link path",
    );
    check_parse(
        b"https://id.gs1.org/01/09506000134352/10/A%ZZ",
        "DigitalLink gtin=09506000134352 (01)09506000134352 ERROR AI 10 at byte 41: bad percent escape (expected %XX with hex digits, giving UTF-8)",
    );
    check_parse(
        b"https://example.com/products/42",
        "DigitalLink ERROR at byte 19: no GS1 primary key (01, 00, 414, ...) in the URI path",
    );
    check_parse(
        b"https://id.gs1.org/01/09506000134352?17=271332",
        "DigitalLink gtin=09506000134352 (01)09506000134352 ERROR AI 17 at byte 40: month 13 is not a month",
    );
}

#[test]
fn control_bytes_and_bytes_that_are_not_utf8_are_refused_outside_gs1_separators() {
    // Issue 15: these parsed as valid text.
    check_parse(
        b"\xff\xfe\x00",
        "Text ERROR at byte 0: bytes that are not UTF-8 text",
    );
    check_parse(
        b"A-01-\xe9",
        "Text ERROR at byte 5: bytes that are not UTF-8 text",
    );
    check_parse(
        b"A-01\x00",
        "Text ERROR at byte 4: control character U+0000 not allowed",
    );
    check_parse(
        b"OP7\r",
        "Text ERROR at byte 3: control character U+000D not allowed",
    );
    check_parse(
        b"]C0TOTE\x1b[2J",
        "Text ]C0 ERROR at byte 7: control character U+001B not allowed",
    );
    check_parse(
        b"LOT\x7f",
        "Text ERROR at byte 3: control character U+007F not allowed",
    );
    check_parse(
        b"LOT\xc2\x85",
        "Text ERROR at byte 3: control character U+0085 not allowed",
    );
    check_parse(
        b"\x04",
        "Text ERROR at byte 0: control character U+0004 not allowed",
    );
    // UTF-8 text (ISO 646 and beyond) is text.
    check_parse("Caf\u{e9} A-01".as_bytes(), "Text");
    // The bracketed form and Digital Link are text: no GS, no control bytes.
    check_parse(
        b"(01)09506000134352\x1d(10)AB",
        "Bracketed ERROR at byte 18: control character U+001D not allowed",
    );
    check_parse(
        b"https://id.gs1.org/01/09506000134352\x00",
        "DigitalLink ERROR at byte 36: control character U+0000 not allowed",
    );
    // In a GS1 element string GS separates fields; anything else is named with its AI.
    check_parse(
        b"]C10109506000134352\x1d10AB\x1d21X",
        "ElementString ]C1 gtin=09506000134352 (01)09506000134352 (10)AB (21)X",
    );
    check_parse(
        b"]C1010950600013435210A\x00B",
        "ElementString ]C1 gtin=09506000134352 (01)09506000134352 ERROR AI 10 at byte 22: \
         '\0' is not allowed in GS1 data (character set 82)",
    );
    check_parse(
        b"]C1010950600013435210A\xffB",
        "ElementString ]C1 gtin=09506000134352 (01)09506000134352 ERROR AI 10 at byte 22: \
         bytes that are not UTF-8 text",
    );
    check_parse(
        b"]C10109506000134352\x1e",
        "ElementString ]C1 gtin=09506000134352 (01)09506000134352 ERROR at byte 19: no \
         known AI starts with '\\x1e'",
    );
}

#[test]
fn rs_and_eot_are_read_only_around_an_iso_15434_envelope_of_gs1_data() {
    check_parse(
        b"]d2[)>\x1e05\x1d0109506000134352\x1d10ABC\x1e\x04",
        "ElementString ]d2 gtin=09506000134352 (01)09506000134352 (10)ABC",
    );
    check_parse(
        b"[)>\x1e05\x1d0109506000134352\x1e\x04",
        "ElementString gtin=09506000134352 (01)09506000134352",
    );
    check_parse(
        b"]d2[)>\x1e05\x1d0109506000134352\x1d10ABC",
        "ElementString ]d2 ERROR at byte 32: the ISO/IEC 15434 envelope does not end with RS EOT",
    );
    check_parse(
        b"]d2[)>\x1e05\x1d0109506000134352\x1e\x04\x04",
        "ElementString ]d2 ERROR at byte 29: the ISO/IEC 15434 envelope does not end with RS EOT",
    );
}

#[test]
fn location_matches_by_barcode_or_check_code() {
    fn check(input: &str, expected: LocationMatch) {
        let target = LocationTarget {
            code: "A-12-03-B",
            check: 7,
        };
        assert_eq!(target.matches(input), expected, "{input}");
    }
    check("A-12-03-B", LocationMatch::Code);
    check("a1203b", LocationMatch::Code);
    check(" A 12 03 B\r", LocationMatch::Code);
    check("07", LocationMatch::CheckCode);
    check("7", LocationMatch::CheckCode);
    check("70", LocationMatch::No);
    check("007", LocationMatch::No);
    check("A-12-03-C", LocationMatch::No);
    check("", LocationMatch::No);
    let zero = LocationTarget {
        code: "B-01",
        check: 0,
    };
    assert_eq!(zero.matches("00"), LocationMatch::CheckCode);
}

proptest! {
    #[test]
    fn parsing_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let bc = parse(&bytes);
        for e in bc.errors.iter().chain(&bc.notes) {
            let _ = e.to_string();
        }
    }

    #[test]
    fn parsing_gs1_shaped_bytes_never_panics(
        prefix in prop::sample::select(vec!["]C1", "]d2", "]Q3", "", "\x1d", "]E0", "]E4"]),
        body in "[0-9A-Za-z\x1d()%/?=&.:]{0,80}",
    ) {
        let _ = parse(format!("{prefix}{body}").as_bytes());
        let _ = parse(format!("{prefix}01{body}").as_bytes());
    }

    #[test]
    fn digital_link_parsing_of_arbitrary_strings_never_panics(s in "\\PC{0,120}") {
        let _ = parse(format!("https://id.gs1.org/{s}").as_bytes());
        let _ = parse(format!("https://h/01/09506000134352/{s}?{s}").as_bytes());
    }

    #[test]
    fn every_valid_gtin13_matches_its_gtin14(body in "[0-9]{12}") {
        let d = check_digit(body.as_bytes()).unwrap_or(0);
        let ean = format!("{body}{d}");
        prop_assert_eq!(parse(ean.as_bytes()).gtin, parse(format!("]C101{:0>14}", ean).as_bytes()).gtin);
    }
}

/// What `parse` makes of each input, for the cases that mutation testing found untested.
#[test]
fn a_short_country_and_a_bad_grai_serial_are_errors_and_a_backslash_prints_escaped() {
    for (input, expected) in [
        // AI 421: an ISO country code of three digits, then the postal code.
        (
            &b"(421)12"[..],
            "Bracketed ERROR AI 421 at byte 5: must start with a three-digit ISO country code",
        ),
        (&b"(421)276D-12345"[..], "Bracketed (421)276D-12345"),
        // AI 8003: a GRAI (0, 13 digits with their check digit), then a serial of set 82.
        (
            &b"(8003)09506000134352AB#"[..],
            "Bracketed ERROR AI 8003 at byte 22: '#' is not allowed in GS1 data (character set 82)",
        ),
        (
            &b"(8003)09506000134352AB"[..],
            "Bracketed (8003)09506000134352AB",
        ),
    ] {
        check_parse(input, expected);
    }
    assert_eq!(printable(b"a\\b\x1d"), "a\\\\b\\x1d");
    // An unknown AI in a Digital Link's query is placed at its key.
    check_parse(
        b"https://id.gs1.org/01/09506000134352?9999=1",
        "DigitalLink gtin=09506000134352 (01)09506000134352 ERROR at byte 37: no known AI \
         starts with '9999'",
    );
}
