//! Column codecs: values the schema keeps in one TEXT column (a task's GTINs, an
//! address), written and read back only here.

use floorhand_protocol::oms::{Address, GtinPack};

use super::{Gtin, StoreError};

/// Encodes a task's GTINs in one column: `gtin*qty` joined by `,` (GTINs are digits).
pub(super) fn encode_gtins(gtins: &[GtinPack]) -> String {
    let mut s = String::with_capacity(gtins.len() * 18);
    for (i, g) in gtins.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&g.gtin);
        s.push('*');
        s.push_str(&g.pack_qty.to_string());
    }
    s
}

/// The inverse of [`encode_gtins`].
pub(super) fn decode_gtins(s: &str) -> Result<Vec<Gtin>, StoreError> {
    if s.is_empty() {
        return Ok(Vec::new());
    }
    s.split(',')
        .map(|part| {
            let (gtin, qty) = part
                .rsplit_once('*')
                .ok_or_else(|| StoreError::Corrupt(format!("gtin list {s:?}")))?;
            let pack_qty = qty
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("gtin list {s:?}")))?;
            Ok(Gtin {
                gtin: gtin.to_string(),
                pack_qty,
            })
        })
        .collect()
}

/// Field separator inside a stored address (ASCII unit separator); street lines go last.
const SEP: char = '\u{1f}';

/// Encodes an address in one column, its fields joined by [`SEP`].
pub(super) fn encode_address(a: &Address) -> String {
    let mut fields = vec![
        a.name.as_str(),
        &a.company,
        &a.city,
        &a.region,
        &a.postal_code,
        &a.country,
    ];
    fields.extend(a.lines.iter().map(String::as_str));
    fields.join(&SEP.to_string())
}

/// The inverse of [`encode_address`].
pub(super) fn decode_address(s: &str) -> Result<Address, StoreError> {
    let mut it = s.split(SEP).map(str::to_string);
    let mut next = || {
        it.next()
            .ok_or_else(|| StoreError::Corrupt(format!("address {s:?}")))
    };
    let (name, company, city, region, postal_code, country) =
        (next()?, next()?, next()?, next()?, next()?, next()?);
    Ok(Address {
        name,
        company,
        city,
        region,
        postal_code,
        country,
        lines: it.collect(),
    })
}
