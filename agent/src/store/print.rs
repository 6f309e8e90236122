//! Pack station support: pack orders with their totes and lines, the SSCC serial counter,
//! and the label print queue.

use floorhand_protocol::oms::{Capture, EventKind, GtinPack, PackLine, PackOrder};
use rusqlite::{Connection, OptionalExtension, params};

use super::codec::{decode_address, decode_gtins, encode_address, encode_gtins};
use super::meta::{SSCC_SERIAL, meta_next};
use super::{Db, StoreError, sql, unsql};

/// A label waiting for (or done with) the printer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrintJob {
    /// Job id, never reused.
    pub job_id: u64,
    /// SSCC of the carton.
    pub sscc: String,
    /// The label, ZPL bytes.
    pub zpl: Vec<u8>,
    /// Unix seconds it was queued.
    pub created: u64,
    /// The printer already took it (still in its buffer at the last look): confirm it,
    /// never send it again.
    pub sent: bool,
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

    /// The next SSCC serial reference: one more than the last, committed before it is
    /// returned, so a label number never repeats, even across restarts.
    pub fn next_sscc_serial(&mut self) -> Result<u64, StoreError> {
        self.write(0, |t, _| meta_next(&t.tx, SSCC_SERIAL))
    }

    /// Queues a label; returns its job id.
    pub fn enqueue_print(&mut self, now: u64, sscc: &str, zpl: &[u8]) -> Result<u64, StoreError> {
        self.write(now, |t, _| {
            let id: i64 =
                t.tx.prepare_cached(
                    "INSERT INTO print_jobs (sscc, zpl, created, state)
                     VALUES (?1, ?2, ?3, 'pending') RETURNING job_id",
                )?
                .query_row(params![sscc, zpl, sql(now)], |r| r.get(0))?;
            Ok(unsql(id))
        })
    }

    /// Jobs not yet printed, oldest first.
    pub fn pending_prints(&self) -> Result<Vec<PrintJob>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT job_id, sscc, zpl, created, sent_at IS NOT NULL FROM print_jobs
             WHERE state = 'pending' ORDER BY job_id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(PrintJob {
                job_id: unsql(r.get(0)?),
                sscc: r.get(1)?,
                zpl: r.get(2)?,
                created: unsql(r.get(3)?),
                sent: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// The printer took job `job_id` and holds it in its buffer: it stays queued until
    /// printed, but is never sent to the printer again (after a restart it is only
    /// confirmed). No event: `LabelPrinted` follows when it is printed.
    pub fn print_sent(&mut self, now: u64, job_id: u64) -> Result<(), StoreError> {
        self.write(now, |t, _| {
            t.tx.prepare_cached(
                "UPDATE print_jobs SET sent_at = coalesce(sent_at, ?2)
                 WHERE job_id = ?1 AND state = 'pending'",
            )?
            .execute(params![sql(job_id), sql(now)])?;
            Ok(())
        })
    }

    /// The printer took the label and reported no fault.
    pub fn mark_printed(&mut self, job_id: u64, now: u64) -> Result<(), StoreError> {
        self.finish_print(job_id, now, "printed", None)
    }

    /// The label could not be printed; `fault` says what the printer or transport said.
    pub fn mark_print_failed(
        &mut self,
        job_id: u64,
        now: u64,
        fault: &str,
    ) -> Result<(), StoreError> {
        self.finish_print(job_id, now, "failed", Some(fault))
    }

    fn finish_print(
        &mut self,
        job_id: u64,
        now: u64,
        state: &str,
        fault: Option<&str>,
    ) -> Result<(), StoreError> {
        self.write(now, |t, _| {
            let n =
                t.tx.prepare_cached(
                    "UPDATE print_jobs SET state = ?2, fault = ?3, done_at = ?4 WHERE job_id = ?1",
                )?
                .execute(params![sql(job_id), state, fault, sql(now)])?;
            if n == 0 {
                return Err(StoreError::NotFound {
                    what: "print job",
                    id: job_id.to_string(),
                });
            }
            Ok(())
        })
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

    /// A new print job with the latest label stored for the carton `sscc`.
    pub fn reprint(&mut self, now: u64, sscc: &str) -> Result<u64, StoreError> {
        self.write(now, |t, _| {
            let id: Option<i64> =
                t.tx.prepare_cached(
                    "INSERT INTO print_jobs (sscc, zpl, created, state)
                     SELECT sscc, zpl, ?2, 'pending' FROM print_jobs WHERE sscc = ?1
                     ORDER BY job_id DESC LIMIT 1
                     RETURNING job_id",
                )?
                .query_row(params![sscc, sql(now)], |r| r.get(0))
                .optional()?;
            id.map(unsql).ok_or_else(|| StoreError::NotFound {
                what: "label for carton",
                id: sscc.to_string(),
            })
        })
    }

    /// The printer took job `job_id` and reported no fault: the job is done and a
    /// `LabelPrinted` event is written, in one transaction. A job already printed is
    /// left alone (`None`), so a repeated report never makes a second event.
    pub fn print_done(
        &mut self,
        now: u64,
        operator: u32,
        job_id: u64,
    ) -> Result<Option<u64>, StoreError> {
        self.write(now, |t, _| {
            let sscc: Option<String> =
                t.tx.prepare_cached(
                    "UPDATE print_jobs SET state = 'printed', fault = NULL, done_at = ?2
                     WHERE job_id = ?1 AND state = 'pending' RETURNING sscc",
                )?
                .query_row(params![sql(job_id), sql(now)], |r| r.get(0))
                .optional()?;
            let Some(sscc) = sscc else { return Ok(None) };
            t.event(operator, EventKind::LabelPrinted { sscc, job_id })
                .map(Some)
        })
    }

    /// The printer could not print job `job_id` (yet): the job stays queued with the
    /// fault's `kind` (e.g. `Offline`, `PaperOut`) noted, and a `PrintFailed` event with
    /// the `fault` text is written only when the kind differs from the one already noted,
    /// so a fault is reported once, across restarts too (an unreachable printer's message
    /// changes from "closed the connection" to "connection refused"; it is one fault).
    pub fn print_fault(
        &mut self,
        now: u64,
        operator: u32,
        job_id: u64,
        kind: &str,
        fault: &str,
    ) -> Result<Option<u64>, StoreError> {
        self.write(now, |t, _| {
            let sscc: Option<String> =
                t.tx.prepare_cached(
                    "UPDATE print_jobs SET fault = ?2
                     WHERE job_id = ?1 AND state = 'pending' AND fault IS NOT ?2
                     RETURNING sscc",
                )?
                .query_row(params![sql(job_id), kind], |r| r.get(0))
                .optional()?;
            let Some(sscc) = sscc else { return Ok(None) };
            t.event(
                operator,
                EventKind::PrintFailed {
                    sscc,
                    job_id,
                    fault: fault.to_string(),
                },
            )
            .map(Some)
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
