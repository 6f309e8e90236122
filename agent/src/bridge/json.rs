//! The HTTP API's JSON forms, written by hand from store rows and protocol types, so that
//! nothing renamed in the store changes the API. Ids that use all 64 bits (incarnations)
//! and cursors are strings: JavaScript's numbers hold only 53 bits.

use floorhand_protocol::oms::{Birth, Status};
use serde_json::{Map, Value, json};

use crate::store::oms_store::{DeviceRow, DownState, StoredEvent};

/// The opaque cursor of the event at `position` in the store of incarnation `store`:
/// fixed width, so it grows as a string as well as a position.
pub fn cursor(store: u64, position: u64) -> String {
    format!("{store:016x}-{position:016x}")
}

/// Reads a cursor given back by a client: empty or `0` is the start; one of another
/// store (a replaced bridge database) is refused, as its positions mean nothing here.
pub fn parse_cursor(text: &str, store: u64) -> Result<u64, String> {
    let text = text.trim();
    if text.is_empty() || text == "0" {
        return Ok(0);
    }
    let (inc, pos) = text
        .split_once('-')
        .ok_or_else(|| format!("{text:?} is not a cursor this bridge gave out"))?;
    let inc = u64::from_str_radix(inc, 16)
        .map_err(|_| format!("{text:?} is not a cursor this bridge gave out"))?;
    let pos = u64::from_str_radix(pos, 16)
        .map_err(|_| format!("{text:?} is not a cursor this bridge gave out"))?;
    if inc != store {
        return Err(format!(
            "{text:?} is a cursor of another bridge store ({inc:016x}; this one is \
             {store:016x}): start again without a cursor"
        ));
    }
    Ok(pos)
}

/// An incarnation as the API writes it.
pub fn incarnation(inc: u64) -> String {
    format!("{inc:016x}")
}

/// One event: where it is and who sent it, then `kind` (the variant's name) and the
/// variant's own fields.
pub fn event(store: u64, e: &StoredEvent) -> Value {
    let mut o = Map::new();
    o.insert("cursor".into(), cursor(store, e.cursor).into());
    o.insert("site".into(), e.site.clone().into());
    o.insert("device".into(), e.device.clone().into());
    o.insert("incarnation".into(), incarnation(e.incarnation).into());
    o.insert("seq".into(), e.event.seq.into());
    o.insert("at".into(), e.event.at.into());
    o.insert("operator".into(), e.event.operator.into());
    // Serde writes a unit variant as "Name" and the others as {"Name": {fields}}.
    match serde_json::to_value(&e.event.kind) {
        Ok(Value::String(kind)) => {
            o.insert("kind".into(), kind.into());
        }
        Ok(Value::Object(m)) => {
            for (kind, fields) in m {
                o.insert("kind".into(), kind.into());
                match fields {
                    Value::Object(f) => o.extend(f),
                    other => {
                        o.insert("value".into(), other);
                    }
                }
            }
        }
        _ => {
            o.insert("kind".into(), "Unknown".into());
        }
    }
    Value::Object(o)
}

/// A down message's state.
pub fn down_state(dseq: u64, state: &DownState) -> Value {
    let (name, reason) = match state {
        DownState::Queued => ("queued", None),
        DownState::Sent => ("sent", None),
        DownState::Applied => ("applied", None),
        DownState::Rejected { detail } => ("rejected", Some(detail.as_str())),
    };
    let mut v = json!({ "dseq": dseq, "state": name });
    if let Some(r) = reason {
        v["reason"] = r.into();
    }
    v
}

fn at(secs: u64) -> Value {
    if secs == 0 { Value::Null } else { secs.into() }
}

/// One device for `GET /v1/devices`.
pub fn device(d: &DeviceRow) -> Value {
    let birth: Option<Birth> = d
        .birth
        .as_deref()
        .and_then(|b| serde_json::from_str(b).ok());
    let status: Option<Status> = d
        .status
        .as_deref()
        .and_then(|s| serde_json::from_str(s).ok());
    json!({
        "site": d.site,
        "device": d.device,
        "online": d.online,
        "session": d.session,
        "incarnation": incarnation(d.incarnation),
        "last_seen": at(d.last_seen),
        "last_birth": birth.map(|b| json!({
            "at": at(d.birth_at),
            "software": b.software,
            "protocol": b.protocol,
            "open_waves": b.waves.len(),
            "open_pack_orders": b.pack_orders.len(),
            "outbox_high_seq": b.outbox_high_seq,
            "outbox_acked_seq": b.outbox_acked_seq,
        })),
        "last_death": at(d.death_at),
        "last_status": status.as_ref().map(|s| json!({
            "at": at(d.status_at),
            "backlog": s.backlog,
            "oldest_unacked_s": s.oldest_unacked_s,
            "print_queue": s.print_queue,
            "storage_bytes": s.storage_bytes,
            "storage_pct": s.storage_pct,
        })),
        "event_backlog": d.high_seen.saturating_sub(d.through),
        "events_acked_through": d.through,
        "down_unacked": d.down_unacked,
        "printer": status.as_ref().and_then(|s| serde_json::to_value(s.printer).ok()),
        "storage_alarm_pct": d.storage_alarm_pct,
    })
}

/// An error body: what is wrong and, where one is at fault, the field.
pub fn error(message: &str, field: Option<&str>) -> Value {
    match field {
        Some(f) => json!({ "error": message, "field": f }),
        None => json!({ "error": message }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use floorhand_protocol::oms::{Event, EventKind, Picked};

    #[test]
    fn a_cursor_reads_back_and_one_of_another_store_is_refused() {
        let c = cursor(0xabc, 42);
        assert_eq!(parse_cursor(&c, 0xabc), Ok(42));
        assert!(cursor(0xabc, 9) < cursor(0xabc, 10), "grows as a string");
        assert_eq!(parse_cursor("", 0xabc), Ok(0));
        assert_eq!(parse_cursor("0", 0xabc), Ok(0));
        assert!(parse_cursor(&c, 0xabd).unwrap_err().contains("another"));
        assert!(parse_cursor("nope", 1).is_err());
        assert!(parse_cursor("1-zz", 1).is_err());
    }

    #[test]
    fn an_event_has_its_kind_and_fields_at_the_top() {
        let e = StoredEvent {
            cursor: 7,
            site: "s1".into(),
            device: "d1".into(),
            incarnation: u64::MAX,
            event: Event {
                seq: 3,
                at: 1_795_300_000,
                operator: 12,
                kind: EventKind::Picked(Picked {
                    task_id: 10,
                    qty: 2,
                    lot: Some("L1".into()),
                    serial: None,
                    expiry: None,
                    tote: None,
                }),
            },
        };
        let v = event(1, &e);
        assert_eq!(v["kind"], "Picked");
        assert_eq!(v["task_id"], 10);
        assert_eq!(v["lot"], "L1");
        assert_eq!(v["incarnation"], "ffffffffffffffff");
        assert_eq!(v["cursor"], cursor(1, 7));
        let mut e2 = e.clone();
        e2.event.kind = EventKind::LoggedIn;
        assert_eq!(event(1, &e2)["kind"], "LoggedIn");
    }
}
