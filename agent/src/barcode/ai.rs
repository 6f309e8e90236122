//! The table of GS1 Application Identifiers Floorhand understands: data syntax, whether an
//! FNC1 separator must follow, check digits, and the required/excluded AI rules.
//!
//! Sources: GS1 General Specifications (release 24), section 3 (AI definitions), figure
//! 5.10.1-2 (the AI prefixes with a predefined length, which need no FNC1 after them) and
//! section 4.14 (mandatory associations and invalid pairs), as written in the `req=` and
//! `ex=` attributes of gs1/gs1-syntax-dictionary, from memory of that file. Where we were
//! not sure of a rule (the AIs 400-427) we check none rather than refuse good labels.

/// How an AI's data is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    /// Exactly this many digits, the last a mod-10 check digit.
    NCheck(usize),
    /// Up to this many digits.
    NVar(usize),
    /// Exactly this many digits (no check digit).
    N(usize),
    /// Up to this many characters of the GS1 AI encodable set 82.
    X(usize),
    /// YYMMDD; DD may be 00 for "end of month".
    Date,
    /// Six digits with the number of implied decimals given by the AI's last digit.
    Measure,
    /// ISO 3166 numeric country code, three digits.
    Country,
    /// Country code then up to this many characters of set 82 (AI 421).
    CountryX(usize),
    /// One to five country codes, 3 to 15 digits (AIs 423, 425).
    Countries,
    /// YYMMDDHHMM (AI 7003).
    DateTime,
    /// YYMMDDHH, optionally MM and SS (AI 8008).
    ProdTime,
    /// A zero, a 13-digit GRAI with check digit, then up to 16 characters of set 82 (AI 8003).
    Grai,
}

/// One Application Identifier.
#[derive(Debug, PartialEq, Eq)]
pub struct AiDef {
    /// The AI digits; for the measures, the three-digit prefix of `310n` etc.
    pub code: &'static str,
    /// The GS1 data title.
    pub title: &'static str,
    /// The data's syntax.
    pub syntax: Syntax,
    /// Whether the AI's prefix has a predefined length (figure 5.10.1-2), so that no FNC1
    /// follows it. Every other AI ends at an FNC1 (GS) or at the end of the data.
    pub fixed: bool,
    /// Each inner list names AIs of which at least one must be scanned for the same item.
    pub requires: &'static [&'static [&'static str]],
    /// AIs that must not be scanned for the same item.
    pub excludes: &'static [&'static str],
    /// For measures: the unit.
    pub unit: &'static str,
}

const TRADE: &[&str] = &["01", "02", "8006", "8026"];
const GTIN_OR_CONTENT: &[&str] = &["01", "02"];
const LOGISTIC: &[&str] = &["00", "01"];

macro_rules! ai {
    ($code:literal, $title:literal, $syntax:expr, fixed) => {
        ai!($code, $title, $syntax, true, &[], &[])
    };
    ($code:literal, $title:literal, $syntax:expr) => {
        ai!($code, $title, $syntax, false, &[], &[])
    };
    ($code:literal, $title:literal, $syntax:expr, $fixed:expr, $req:expr, $ex:expr) => {
        AiDef {
            code: $code,
            title: $title,
            syntax: $syntax,
            fixed: $fixed,
            requires: $req,
            excludes: $ex,
            unit: "",
        }
    };
}

macro_rules! measure {
    ($code:literal, $title:literal, $unit:literal, $req:expr) => {
        AiDef {
            code: $code,
            title: $title,
            syntax: Syntax::Measure,
            fixed: true,
            requires: &[$req],
            excludes: &[],
            unit: $unit,
        }
    };
}

use Syntax::*;

/// The AIs, in code order. Codes are prefix-free, as GS1 assigns them.
pub static TABLE: &[AiDef] = &[
    ai!("00", "SSCC", NCheck(18), fixed),
    ai!("01", "GTIN", NCheck(14), true, &[], &["02", "37", "255"]),
    ai!("02", "CONTENT", NCheck(14), true, &[&["37"]], &["01"]),
    ai!("10", "BATCH/LOT", X(20), false, &[TRADE], &[]),
    ai!("11", "PROD DATE", Date, true, &[TRADE], &[]),
    ai!("12", "DUE DATE", Date, true, &[&["8020"]], &[]),
    ai!("13", "PACK DATE", Date, true, &[TRADE], &[]),
    ai!("15", "BEST BEFORE or BEST BY", Date, true, &[TRADE], &[]),
    ai!("16", "SELL BY", Date, true, &[TRADE], &[]),
    ai!("17", "USE BY or EXPIRY", Date, true, &[TRADE], &[]),
    ai!("20", "VARIANT", N(2), true, &[TRADE], &[]),
    ai!("21", "SERIAL", X(20), false, &[&["01", "8006"]], &["235"]),
    ai!("22", "CPV", X(20), false, &[&["01"]], &[]),
    ai!(
        "30",
        "VAR. COUNT",
        NVar(8),
        false,
        &[GTIN_OR_CONTENT],
        &["37"]
    ),
    measure!("310", "NET WEIGHT (kg)", "kg", GTIN_OR_CONTENT),
    measure!("311", "LENGTH (m)", "m", GTIN_OR_CONTENT),
    measure!("312", "WIDTH (m)", "m", GTIN_OR_CONTENT),
    measure!("313", "HEIGHT (m)", "m", GTIN_OR_CONTENT),
    measure!("314", "AREA (m2)", "m2", GTIN_OR_CONTENT),
    measure!("315", "NET VOLUME (l)", "l", GTIN_OR_CONTENT),
    measure!("316", "NET VOLUME (m3)", "m3", GTIN_OR_CONTENT),
    measure!("320", "NET WEIGHT (lb)", "lb", GTIN_OR_CONTENT),
    measure!("321", "LENGTH (in)", "in", GTIN_OR_CONTENT),
    measure!("322", "LENGTH (ft)", "ft", GTIN_OR_CONTENT),
    measure!("323", "LENGTH (yd)", "yd", GTIN_OR_CONTENT),
    measure!("324", "WIDTH (in)", "in", GTIN_OR_CONTENT),
    measure!("325", "WIDTH (ft)", "ft", GTIN_OR_CONTENT),
    measure!("326", "WIDTH (yd)", "yd", GTIN_OR_CONTENT),
    measure!("327", "HEIGHT (in)", "in", GTIN_OR_CONTENT),
    measure!("328", "HEIGHT (ft)", "ft", GTIN_OR_CONTENT),
    measure!("329", "HEIGHT (yd)", "yd", GTIN_OR_CONTENT),
    measure!("330", "GROSS WEIGHT (kg)", "kg", LOGISTIC),
    measure!("331", "LENGTH (m), log", "m", LOGISTIC),
    measure!("332", "WIDTH (m), log", "m", LOGISTIC),
    measure!("333", "HEIGHT (m), log", "m", LOGISTIC),
    measure!("334", "AREA (m2), log", "m2", LOGISTIC),
    measure!("335", "VOLUME (l), log", "l", LOGISTIC),
    measure!("336", "VOLUME (m3), log", "m3", LOGISTIC),
    measure!("337", "KG PER m2", "kg/m2", GTIN_OR_CONTENT),
    measure!("340", "GROSS WEIGHT (lb)", "lb", LOGISTIC),
    measure!("341", "LENGTH (in), log", "in", LOGISTIC),
    measure!("342", "LENGTH (ft), log", "ft", LOGISTIC),
    measure!("343", "LENGTH (yd), log", "yd", LOGISTIC),
    measure!("344", "WIDTH (in), log", "in", LOGISTIC),
    measure!("345", "WIDTH (ft), log", "ft", LOGISTIC),
    measure!("346", "WIDTH (yd), log", "yd", LOGISTIC),
    measure!("347", "HEIGHT (in), log", "in", LOGISTIC),
    measure!("348", "HEIGHT (ft), log", "ft", LOGISTIC),
    measure!("349", "HEIGHT (yd), log", "yd", LOGISTIC),
    measure!("350", "AREA (in2)", "in2", GTIN_OR_CONTENT),
    measure!("351", "AREA (ft2)", "ft2", GTIN_OR_CONTENT),
    measure!("352", "AREA (yd2)", "yd2", GTIN_OR_CONTENT),
    measure!("353", "AREA (in2), log", "in2", LOGISTIC),
    measure!("354", "AREA (ft2), log", "ft2", LOGISTIC),
    measure!("355", "AREA (yd2), log", "yd2", LOGISTIC),
    measure!("356", "NET WEIGHT (t oz)", "t oz", GTIN_OR_CONTENT),
    measure!("357", "NET VOLUME (oz)", "oz", GTIN_OR_CONTENT),
    measure!("360", "NET VOLUME (qt)", "qt", GTIN_OR_CONTENT),
    measure!("361", "NET VOLUME (gal)", "gal", GTIN_OR_CONTENT),
    measure!("362", "VOLUME (qt), log", "qt", LOGISTIC),
    measure!("363", "VOLUME (gal), log", "gal", LOGISTIC),
    measure!("364", "VOLUME (in3)", "in3", GTIN_OR_CONTENT),
    measure!("365", "VOLUME (ft3)", "ft3", GTIN_OR_CONTENT),
    measure!("366", "VOLUME (yd3)", "yd3", GTIN_OR_CONTENT),
    measure!("367", "VOLUME (in3), log", "in3", LOGISTIC),
    measure!("368", "VOLUME (ft3), log", "ft3", LOGISTIC),
    measure!("369", "VOLUME (yd3), log", "yd3", LOGISTIC),
    ai!("37", "COUNT", NVar(8), false, &[&["02", "8026"]], &["01"]),
    ai!("400", "ORDER NUMBER", X(30)),
    ai!("401", "GINC", X(30)),
    ai!("402", "GSIN", NCheck(17)),
    ai!("403", "ROUTE", X(30)),
    ai!("410", "SHIP TO LOC", NCheck(13), fixed),
    ai!("411", "BILL TO", NCheck(13), fixed),
    ai!("412", "PURCHASE FROM", NCheck(13), fixed),
    ai!("413", "SHIP FOR LOC", NCheck(13), fixed),
    ai!("414", "LOC No.", NCheck(13), fixed),
    ai!("415", "PAY TO", NCheck(13), fixed),
    ai!("416", "PROD/SERV LOC", NCheck(13), fixed),
    ai!("417", "PARTY", NCheck(13), fixed),
    ai!("420", "SHIP TO POST", X(20)),
    ai!("421", "SHIP TO POST", CountryX(9)),
    ai!("422", "ORIGIN", Country),
    ai!("423", "COUNTRY - INITIAL PROCESS", Countries),
    ai!("424", "COUNTRY - PROCESS", Country),
    ai!("425", "COUNTRY - DISASSEMBLY", Countries),
    ai!("426", "COUNTRY - FULL PROCESS", Country),
    ai!("427", "ORIGIN SUBDIVISION", X(3)),
    ai!(
        "7003",
        "EXPIRY TIME",
        DateTime,
        false,
        &[GTIN_OR_CONTENT],
        &[]
    ),
    ai!("8003", "GRAI", Grai),
    ai!("8004", "GIAI", X(30)),
    ai!("8008", "PROD TIME", ProdTime, false, &[TRADE], &[]),
    ai!("90", "INTERNAL", X(30)),
    ai!("91", "INTERNAL", X(90)),
    ai!("92", "INTERNAL", X(90)),
    ai!("93", "INTERNAL", X(90)),
    ai!("94", "INTERNAL", X(90)),
    ai!("95", "INTERNAL", X(90)),
    ai!("96", "INTERNAL", X(90)),
    ai!("97", "INTERNAL", X(90)),
    ai!("98", "INTERNAL", X(90)),
    ai!("99", "INTERNAL", X(90)),
];

/// Finds the AI at the start of `s`: returns its definition and its full code (four digits
/// for the measures, whose last digit is the number of decimals, 0 to 5).
pub fn lookup(s: &str) -> Option<(&'static AiDef, &str)> {
    let def = TABLE.iter().find(|d| s.starts_with(d.code))?;
    if def.syntax == Syntax::Measure {
        let n = *s.as_bytes().get(3)?;
        if !(b'0'..=b'5').contains(&n) {
            return None;
        }
        return Some((def, &s[..4]));
    }
    Some((def, def.code))
}

/// Finds an AI by its exact code (`"17"`, `"3103"`).
pub fn by_code(code: &str) -> Option<&'static AiDef> {
    match lookup(code) {
        Some((def, c)) if c == code => Some(def),
        _ => None,
    }
}

/// Whether `c` is in the GS1 AI encodable character set 82 (General Specifications
/// figure 7.11-1).
pub fn is_cset82(c: u8) -> bool {
    matches!(c,
        b'!' | b'"' | b'%' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b'-' | b'.'
        | b'/' | b'0'..=b'9' | b':' | b';' | b'<' | b'=' | b'>' | b'?' | b'A'..=b'Z' | b'_'
        | b'a'..=b'z')
}

/// The fixed data length of an AI whose prefix has a predefined length, else `None`.
pub fn fixed_len(def: &AiDef) -> Option<usize> {
    if !def.fixed {
        return None;
    }
    Some(match def.syntax {
        Syntax::NCheck(n) | Syntax::N(n) => n,
        Syntax::Date | Syntax::Measure => 6,
        _ => return None,
    })
}
