//! Pack orders as the OMS sent them, with their totes and lines: stored, looked up by
//! order or tote (as the store's [`PackOrderRow`], which the pack station converts to
//! `pack::Order` at its edge, as it converts [`super::TaskRow`] to `pick::PickTask`),
//! closed when shipped.

use floorhand_protocol::oms::{Address, PackOrder};
use rusqlite::{Connection, OptionalExtension, params};

use super::codec::{decode_address, decode_gtins, encode_address, encode_gtins};
use super::{CaptureFlags, Db, Gtin, StoreError, sql};

/// A pack order as the store keeps it. The addresses stay in the contract's form: the
/// label prints them field by field, and `pack::Order` keeps them so too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackOrderRow {
    /// Order id.
    pub order_id: String,
    /// Totes that hold the order's items (scanning one finds the order).
    pub totes: Vec<String>,
    /// The lines to pack, in the OMS's order.
    pub lines: Vec<PackLineRow>,
    /// Sender.
    pub ship_from: Address,
    /// Recipient.
    pub ship_to: Address,
    /// Carrier, e.g. `DHL`.
    pub carrier: String,
    /// Carrier service.
    pub service: String,
    /// Carrier tracking number.
    pub tracking: String,
}

/// A line of a [`PackOrderRow`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackLineRow {
    /// Line of the order.
    pub order_line: u32,
    /// GTINs the item may be scanned by.
    pub gtins: Vec<Gtin>,
    /// Item number.
    pub sku: String,
    /// Description.
    pub description: String,
    /// Units to pack.
    pub qty: u32,
    /// What to capture per unit.
    pub capture: CaptureFlags,
    /// Expected weight of one unit in grams, 0 if unknown.
    pub unit_weight_g: u32,
}

impl From<&PackOrder> for PackOrderRow {
    /// What the store keeps of `order` (and [`Db::pack_order`] reads back).
    fn from(order: &PackOrder) -> PackOrderRow {
        PackOrderRow {
            order_id: order.order_id.clone(),
            totes: order.totes.clone(),
            lines: order
                .lines
                .iter()
                .map(|l| PackLineRow {
                    order_line: l.order_line,
                    gtins: l
                        .gtins
                        .iter()
                        .map(|g| Gtin {
                            gtin: g.gtin.clone(),
                            pack_qty: g.pack_qty,
                        })
                        .collect(),
                    sku: l.sku.clone(),
                    description: l.description.clone(),
                    qty: l.qty,
                    capture: CaptureFlags {
                        lot: l.capture.lot,
                        serial: l.capture.serial,
                        expiry: l.capture.expiry,
                    },
                    unit_weight_g: l.unit_weight_g,
                })
                .collect(),
            ship_from: order.ship_from.clone(),
            ship_to: order.ship_to.clone(),
            carrier: order.carrier.clone(),
            service: order.service.clone(),
            tracking: order.tracking.clone(),
        }
    }
}

/// Stores a pack order, replacing an earlier copy with its totes and lines.
pub(super) fn insert_pack_order(
    conn: &Connection,
    order: &PackOrder,
    now: u64,
) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM pack_orders WHERE order_id = ?1")?
        .execute([&order.order_id])?;
    conn.prepare_cached(
        "INSERT INTO pack_orders (order_id, carrier, service, tracking, ship_from, ship_to,
            status, received_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'open', ?7, ?7)",
    )?
    .execute(params![
        order.order_id,
        order.carrier,
        order.service,
        order.tracking,
        encode_address(&order.ship_from),
        encode_address(&order.ship_to),
        sql(now)
    ])?;
    let mut tote = conn.prepare_cached(
        "INSERT INTO pack_totes (tote, order_id) VALUES (?1, ?2)
         ON CONFLICT (tote) DO UPDATE SET order_id = excluded.order_id",
    )?;
    for t in &order.totes {
        tote.execute(params![t, order.order_id])?;
    }
    let mut line = conn.prepare_cached(
        "INSERT INTO pack_lines (order_id, line_no, order_line, gtins, sku, description, qty,
            capture_lot, capture_serial, capture_expiry, unit_weight_g)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?;
    for (i, l) in order.lines.iter().enumerate() {
        line.execute(params![
            order.order_id,
            i as i64,
            l.order_line,
            encode_gtins(&l.gtins),
            l.sku,
            l.description,
            l.qty,
            l.capture.lot,
            l.capture.serial,
            l.capture.expiry,
            l.unit_weight_g
        ])?;
    }
    Ok(())
}

impl Db {
    /// The open pack order with this order id, or the one the tote with this code belongs
    /// to. A shipped or cancelled order is never served for packing again: `None`.
    pub fn pack_order(&self, order_id_or_tote: &str) -> Result<Option<PackOrderRow>, StoreError> {
        type Head = (String, String, String, String, String, String);
        let head: Option<Head> = self
            .conn
            .prepare_cached(
                "SELECT order_id, carrier, service, tracking, ship_from, ship_to
                 FROM pack_orders
                 WHERE (order_id = ?1
                    OR order_id = (SELECT order_id FROM pack_totes WHERE tote = ?1))
                   AND status = 'open'
                 ORDER BY order_id = ?1 DESC LIMIT 1",
            )?
            .query_row([order_id_or_tote], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })
            .optional()?;
        let Some((order_id, carrier, service, tracking, from, to)) = head else {
            return Ok(None);
        };
        let totes = {
            let mut stmt = self
                .conn
                .prepare_cached("SELECT tote FROM pack_totes WHERE order_id = ?1 ORDER BY tote")?;
            let rows = stmt.query_map([&order_id], |r| r.get(0))?;
            rows.collect::<Result<Vec<String>, _>>()?
        };
        let mut lines = Vec::new();
        let mut stmt = self.conn.prepare_cached(
            "SELECT order_line, gtins, sku, description, qty, capture_lot, capture_serial,
                capture_expiry, unit_weight_g
             FROM pack_lines WHERE order_id = ?1 ORDER BY line_no",
        )?;
        let mut rows = stmt.query([&order_id])?;
        while let Some(r) = rows.next()? {
            let gtins: String = r.get(1)?;
            lines.push(PackLineRow {
                order_line: r.get(0)?,
                gtins: decode_gtins(&gtins)?,
                sku: r.get(2)?,
                description: r.get(3)?,
                qty: r.get(4)?,
                capture: CaptureFlags {
                    lot: r.get(5)?,
                    serial: r.get(6)?,
                    expiry: r.get(7)?,
                },
                unit_weight_g: r.get(8)?,
            });
        }
        Ok(Some(PackOrderRow {
            order_id,
            totes,
            lines,
            ship_from: decode_address(&from)?,
            ship_to: decode_address(&to)?,
            carrier,
            service,
            tracking,
        }))
    }

    /// Marks a pack order shipped, so the retention purge may delete it.
    pub fn close_pack_order(&mut self, now: u64, order_id: &str) -> Result<(), StoreError> {
        self.write(now, |t, _| {
            let n =
                t.tx.prepare_cached(
                    "UPDATE pack_orders SET status = 'done', updated_at = ?2 WHERE order_id = ?1",
                )?
                .execute(params![order_id, sql(now)])?;
            if n == 0 {
                return Err(StoreError::NotFound {
                    what: "pack order",
                    id: order_id.to_string(),
                });
            }
            Ok(())
        })
    }
}
