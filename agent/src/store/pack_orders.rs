//! Pack orders as the OMS sent them, with their totes and lines: stored, looked up by
//! order or tote, closed when shipped.

use floorhand_protocol::oms::{Capture, GtinPack, PackLine, PackOrder};
use rusqlite::{Connection, OptionalExtension, params};

use super::codec::{decode_address, decode_gtins, encode_address, encode_gtins};
use super::{Db, StoreError, sql};

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
    pub fn pack_order(&self, order_id_or_tote: &str) -> Result<Option<PackOrder>, StoreError> {
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
            lines.push(PackLine {
                order_line: r.get(0)?,
                gtins: decode_gtins(&gtins)?
                    .into_iter()
                    .map(|g| GtinPack {
                        gtin: g.gtin,
                        pack_qty: g.pack_qty,
                    })
                    .collect(),
                sku: r.get(2)?,
                description: r.get(3)?,
                qty: r.get(4)?,
                capture: Capture {
                    lot: r.get(5)?,
                    serial: r.get(6)?,
                    expiry: r.get(7)?,
                },
                unit_weight_g: r.get(8)?,
            });
        }
        Ok(Some(PackOrder {
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
