//! Closed cartons with their contents (one transaction with their events and print
//! job), and the SSCC serial counter their labels are numbered from.

use floorhand_protocol::oms::EventKind;
use rusqlite::{OptionalExtension, params};

use super::meta::{SSCC_SERIAL, meta_next};
use super::{Db, StoreError, sql, unsql};

impl Db {
    /// The next SSCC serial reference: one more than the last, committed before it is
    /// returned, so a label number never repeats, even across restarts.
    pub fn next_sscc_serial(&mut self) -> Result<u64, StoreError> {
        self.write(0, |t, _| meta_next(&t.tx, SSCC_SERIAL))
    }
    /// A closed carton, in one transaction: the carton (SSCC, order, weight, operator) and
    /// the items in it, its `CartonClosed` event, `PackVerified` when the order is complete
    /// (and the order marked done), and the label's print job. Returns the job id. The
    /// pack station's ok-beep waits for this commit. An SSCC already used for a carton is
    /// refused and nothing is written.
    pub fn close_carton(
        &mut self,
        now: u64,
        operator: u32,
        carton: &CartonClose,
        items: &[CartonItem],
    ) -> Result<u64, StoreError> {
        self.write(now, |t, _| {
            t.tx.prepare_cached(
                "INSERT INTO cartons (sscc, order_id, carton_no, weight_g, short_ship, operator,
                    closed_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                carton.sscc,
                carton.order_id,
                carton.carton_no,
                carton.weight_g,
                carton.short_ship,
                operator,
                sql(now)
            ])?;
            let mut item = t.tx.prepare_cached(
                "INSERT INTO carton_items (sscc, item_no, order_line, gtin, sku, qty, lot,
                    serial, expiry)
                 VALUES (?1, ?2, ?3, ?4,
                    coalesce((SELECT sku FROM pack_lines WHERE order_id = ?9 AND order_line = ?3
                              LIMIT 1), ''),
                    ?5, ?6, ?7, ?8)",
            )?;
            for (i, it) in items.iter().enumerate() {
                item.execute(params![
                    carton.sscc,
                    i as i64,
                    it.order_line,
                    it.gtin,
                    it.qty,
                    it.lot,
                    it.serial,
                    it.expiry,
                    carton.order_id
                ])?;
            }
            drop(item);
            t.event(
                operator,
                EventKind::CartonClosed {
                    order_id: carton.order_id.clone(),
                    carton_no: carton.carton_no,
                    sscc: carton.sscc.clone(),
                    weight_g: carton.weight_g,
                    short_ship: carton.short_ship.clone(),
                },
            )?;
            if carton.order_complete {
                t.event(
                    operator,
                    EventKind::PackVerified {
                        order_id: carton.order_id.clone(),
                    },
                )?;
            }
            if carton.order_complete || carton.short_ship.is_some() {
                t.tx.prepare_cached(
                    "UPDATE pack_orders SET status = 'done', updated_at = ?2 WHERE order_id = ?1",
                )?
                .execute(params![carton.order_id, sql(now)])?;
            }
            let id: i64 =
                t.tx.prepare_cached(
                    "INSERT INTO print_jobs (sscc, zpl, created, state)
                     VALUES (?1, ?2, ?3, 'pending') RETURNING job_id",
                )?
                .query_row(params![carton.sscc, carton.label, sql(now)], |r| r.get(0))?;
            Ok(unsql(id))
        })
    }
}

/// A carton to close with [`Db::close_carton`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CartonClose {
    /// Order.
    pub order_id: String,
    /// Carton number, from 1.
    pub carton_no: u16,
    /// The carton's SSCC.
    pub sscc: String,
    /// Weight in grams.
    pub weight_g: u32,
    /// Why the order ships incomplete, on its last carton.
    pub short_ship: Option<String>,
    /// Every line of the order is packed.
    pub order_complete: bool,
    /// The label's ZPL.
    pub label: Vec<u8>,
}

/// One scan's worth of units put into a carton, for [`Db::close_carton`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CartonItem {
    /// The order line it counts for.
    pub order_line: u32,
    /// GTIN scanned.
    pub gtin: String,
    /// Units.
    pub qty: u32,
    /// Lot, where captured.
    pub lot: Option<String>,
    /// Serial, where captured.
    pub serial: Option<String>,
    /// Expiry (YYMMDD), where captured.
    pub expiry: Option<String>,
}

/// A closed carton as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Carton {
    /// Its SSCC.
    pub sscc: String,
    /// Order.
    pub order_id: String,
    /// Carton number, from 1.
    pub carton_no: u16,
    /// Weight in grams.
    pub weight_g: u32,
    /// Why the order shipped incomplete, on its last carton.
    pub short_ship: Option<String>,
    /// Who packed it (0: nobody logged in).
    pub operator: u32,
    /// Unix seconds.
    pub closed_at: u64,
    /// What is in it, in scan order, each with its order line's SKU.
    pub items: Vec<(CartonItem, String)>,
}

impl Db {
    /// The carton with this SSCC, with its contents.
    pub fn carton(&self, sscc: &str) -> Result<Option<Carton>, StoreError> {
        let head = self
            .conn
            .prepare_cached(
                "SELECT order_id, carton_no, weight_g, short_ship, operator, closed_at
                 FROM cartons WHERE sscc = ?1",
            )?
            .query_row([sscc], |r| {
                Ok(Carton {
                    sscc: sscc.to_string(),
                    order_id: r.get(0)?,
                    carton_no: r.get(1)?,
                    weight_g: r.get(2)?,
                    short_ship: r.get(3)?,
                    operator: r.get(4)?,
                    closed_at: unsql(r.get(5)?),
                    items: Vec::new(),
                })
            })
            .optional()?;
        let Some(mut carton) = head else {
            return Ok(None);
        };
        let mut stmt = self.conn.prepare_cached(
            "SELECT order_line, gtin, qty, lot, serial, expiry, sku FROM carton_items
             WHERE sscc = ?1 ORDER BY item_no",
        )?;
        let rows = stmt.query_map([sscc], |r| {
            Ok((
                CartonItem {
                    order_line: r.get(0)?,
                    gtin: r.get(1)?,
                    qty: r.get(2)?,
                    lot: r.get(3)?,
                    serial: r.get(4)?,
                    expiry: r.get(5)?,
                },
                r.get(6)?,
            ))
        })?;
        carton.items = rows.collect::<Result<Vec<_>, _>>()?;
        Ok(Some(carton))
    }

    /// The SSCCs of an order's closed cartons, by carton number.
    pub fn cartons_of(&self, order_id: &str) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT sscc FROM cartons WHERE order_id = ?1 ORDER BY carton_no")?;
        let rows = stmt.query_map([order_id], |r| r.get(0))?;
        Ok(rows.collect::<Result<Vec<String>, _>>()?)
    }
}
