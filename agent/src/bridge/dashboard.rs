//! The supervisor's floor view: a page at `/` (HTML, CSS and a small script in the
//! binary, nothing fetched from elsewhere) fed by `GET /v1/floor/stream`, Server-Sent
//! Events of the whole view, and `GET /v1/kpis`, the picks per minute as JSON.
//!
//! One task ([`spawn`]) keeps the [`Floor`] up to date from the store: the events after its
//! cursor when the session commits, the down messages every few seconds, the devices every
//! second while someone watches. It builds the view's JSON once per change and shares it;
//! each browser's stream only sends that text when its version moves, so a watcher costs
//! one write per change, not a query.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use futures_util::Stream;
use serde_json::Value;
use tokio::sync::watch;

use super::chart;
use super::floor::{Floor, FloorSettings};
use super::http::AppState;
use crate::clock::{unix_now, unix_now_ms};
use crate::store::oms_store::OmsStore;

/// The page, served as is.
const PAGE: &str = include_str!("dashboard.html");

/// Events read per store call.
const PAGE_EVENTS: usize = 1000;
/// Down messages read per store call.
const PAGE_DOWN: usize = 200;
/// How often the devices are read while someone watches.
const DEVICES_EVERY: Duration = Duration::from_secs(1);
/// How often the down messages (waves, cancellations) are read.
const DOWN_EVERY: Duration = Duration::from_secs(3);
/// How long after the last request the view is still kept fresh with nobody watching.
const WATCHED_FOR: Duration = Duration::from_secs(10);

/// One state of the view, shared by every watcher.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Goes up by one per change.
    pub version: u64,
    /// `{"now":..,"version":..,"devices":[..],..}`.
    pub json: Arc<str>,
    /// The `GET /v1/kpis` answer.
    pub kpis: Arc<str>,
}

/// The view's handle, in the HTTP state.
#[derive(Clone)]
pub struct Live {
    snapshot: watch::Receiver<Arc<Snapshot>>,
    /// Browsers with an open stream.
    viewers: Arc<AtomicUsize>,
    /// Unix ms of the last request for the view.
    asked_ms: Arc<AtomicU64>,
}

impl Live {
    fn touch(&self) {
        self.asked_ms.store(unix_now_ms(), Ordering::Relaxed);
    }

    /// Streams open now.
    pub fn viewers(&self) -> usize {
        self.viewers.load(Ordering::Relaxed)
    }
}

type Reader = Arc<Mutex<Box<dyn OmsStore>>>;

async fn with_store<T: Send + 'static>(
    reader: &Reader,
    f: impl FnOnce(&dyn OmsStore) -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Option<T> {
    let reader = reader.clone();
    let r = tokio::task::spawn_blocking(move || {
        let db = reader.lock().unwrap_or_else(|e| e.into_inner());
        f(db.as_ref())
    })
    .await;
    match r {
        Ok(Ok(v)) => Some(v),
        Ok(Err(e)) => {
            tracing::warn!("bridge: floor view: {e}");
            None
        }
        Err(e) => {
            tracing::warn!("bridge: floor view: {e}");
            None
        }
    }
}

/// The first cursor whose event happened at or after `from` (Unix seconds), found by
/// bisection over cursors (events arrive roughly in time order), so a store of years
/// is not read from its start: O(log n) one-row reads.
fn first_cursor_since(db: &dyn OmsStore, from: u64) -> Result<u64, crate::store::StoreError> {
    let at_after = |c: u64| -> Result<Option<(u64, u64)>, crate::store::StoreError> {
        Ok(db
            .events_after(c, 1)?
            .first()
            .map(|e| (e.cursor, e.event.at)))
    };
    let Some((first, at)) = at_after(0)? else {
        return Ok(0);
    };
    if at >= from {
        return Ok(0);
    }
    // Find a cursor past which events are recent (or there are none).
    let (mut lo, mut hi) = (0, first.max(1));
    loop {
        match at_after(hi)? {
            Some((_, at)) if at < from => {
                lo = hi;
                hi = hi.saturating_mul(2);
            }
            _ => break,
        }
    }
    // Invariant: the event after `lo` is old, the event after `hi` is recent or missing;
    // at the end `hi` is the last old one's cursor (or before it, in a gap).
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        match at_after(mid)? {
            Some((_, at)) if at < from => lo = mid,
            _ => hi = mid,
        }
    }
    Ok(hi)
}

/// Starts the view's task; it ends when `stopping` turns true.
pub fn spawn(
    reader: Reader,
    mut latest: watch::Receiver<u64>,
    mut stopping: watch::Receiver<bool>,
    settings: FloorSettings,
) -> Live {
    let (tx, rx) = watch::channel(Arc::new(Snapshot::default()));
    let live = Live {
        snapshot: rx,
        viewers: Arc::new(AtomicUsize::new(0)),
        asked_ms: Arc::new(AtomicU64::new(0)),
    };
    let watched = live.clone();
    tokio::spawn(async move {
        let mut floor = Floor::new(settings);
        let from = unix_now().saturating_sub(settings.shift_s);
        let mut cursor = with_store(&reader, move |db| first_cursor_since(db, from))
            .await
            .unwrap_or(0);
        let mut down_key = (from, String::new(), String::new(), 0u64);
        let mut last_down = tokio::time::Instant::now() - DOWN_EVERY;
        let mut last_view = String::new();
        let mut version = 0u64;
        loop {
            latest.borrow_and_update();
            // Events since the cursor.
            loop {
                let after = cursor;
                let Some(evs) =
                    with_store(&reader, move |db| db.events_after(after, PAGE_EVENTS)).await
                else {
                    break;
                };
                for e in &evs {
                    floor.apply_event(e);
                }
                cursor = evs.last().map_or(cursor, |e| e.cursor);
                if evs.len() < PAGE_EVENTS {
                    break;
                }
            }
            if last_down.elapsed() >= DOWN_EVERY {
                last_down = tokio::time::Instant::now();
                loop {
                    let k = down_key.clone();
                    let Some(rows) = with_store(&reader, move |db| {
                        db.down_log_after((k.0, &k.1, &k.2, k.3), PAGE_DOWN)
                    })
                    .await
                    else {
                        break;
                    };
                    for r in &rows {
                        floor.apply_down(&r.site, &r.device, &r.body, r.created);
                    }
                    if let Some(r) = rows.last() {
                        down_key = (r.created, r.site.clone(), r.device.clone(), r.msg_no);
                    }
                    if rows.len() < PAGE_DOWN {
                        break;
                    }
                }
            }
            let now = unix_now();
            floor.prune(now);
            let asked = watched.asked_ms.load(Ordering::Relaxed);
            let watching = watched.viewers() > 0
                || unix_now_ms().saturating_sub(asked) < WATCHED_FOR.as_millis() as u64
                || version == 0;
            if watching && let Some(devices) = with_store(&reader, |db| db.devices()).await {
                let view = floor.view(now, &devices);
                let text = view.to_string();
                if text != last_view {
                    version += 1;
                    let kpis = floor.kpis(now);
                    let snap = Snapshot {
                        version,
                        json: Arc::from(page_json(now, version, view, &kpis)),
                        kpis: Arc::from(kpis.to_string()),
                    };
                    last_view = text;
                    tx.send_replace(Arc::new(snap));
                }
            }
            tokio::select! {
                _ = latest.changed() => {}
                _ = tokio::time::sleep(DEVICES_EVERY) => {}
                _ = stopping.changed() => {}
            }
            if *stopping.borrow() {
                break;
            }
        }
    });
    live
}

/// The view with the time it was made, its version, and each site's chart.
fn page_json(now: u64, version: u64, mut view: Value, kpis: &Value) -> String {
    let charts: Vec<Value> = kpis["sites"]
        .as_array()
        .map(|sites| {
            sites
                .iter()
                .map(|s| {
                    let site = s["site"].as_str().unwrap_or("");
                    let picks: Vec<u32> = s["picks_per_minute"]
                        .as_array()
                        .map(|m| {
                            m.iter()
                                .map(|p| p["picks"].as_u64().unwrap_or(0) as u32)
                                .collect()
                        })
                        .unwrap_or_default();
                    serde_json::json!({ "site": site, "svg": chart::picks_svg(site, &picks) })
                })
                .collect()
        })
        .unwrap_or_default();
    view["now"] = now.into();
    view["version"] = version.into();
    view["charts"] = charts.into();
    view.to_string()
}

/// `GET /`: the page. It holds no data; the data routes need the token.
pub async fn page() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            // Everything is in the page; nothing may come from elsewhere.
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                     img-src 'self' data:",
                ),
            ),
        ],
        Html(PAGE),
    )
        .into_response()
}

/// Waits until the task has built a view (the first takes one store round).
async fn current(live: &Live) -> Arc<Snapshot> {
    live.touch();
    let mut rx = live.snapshot.clone();
    let _ = tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|s| s.version > 0)).await;
    rx.borrow().clone()
}

fn json_response(text: Arc<str>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        text.to_string(),
    )
        .into_response()
}

/// `GET /v1/floor`: the view as JSON.
pub async fn floor(State(st): State<AppState>) -> Response {
    json_response(current(&st.floor).await.json.clone())
}

/// `GET /v1/kpis`: picks per minute per site.
pub async fn kpis(State(st): State<AppState>) -> Response {
    json_response(current(&st.floor).await.kpis.clone())
}

/// Counts a stream while it is open.
struct Viewer(Arc<AtomicUsize>);

impl Drop for Viewer {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `GET /v1/floor/stream`: the view now, then again at each change.
pub async fn stream(
    State(st): State<AppState>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let live = st.floor.clone();
    live.viewers.fetch_add(1, Ordering::Relaxed);
    let viewer = Viewer(live.viewers.clone());
    let rx = live.snapshot.clone();
    let start = (rx, 0u64, st.stopping.clone(), viewer);
    let s =
        futures_util::stream::unfold(start, |(mut rx, sent, mut stopping, viewer)| async move {
            loop {
                let snap = rx.borrow_and_update().clone();
                if snap.version > sent {
                    let ev = SseEvent::default().event("floor").data(snap.json.as_ref());
                    return Some((Ok(ev), (rx, snap.version, stopping, viewer)));
                }
                if *stopping.borrow() {
                    return None;
                }
                tokio::select! {
                    r = rx.changed() => if r.is_err() { return None },
                    _ = stopping.changed() => {}
                }
            }
        });
    Sse::new(s).keep_alive(KeepAlive::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::oms_db::OmsDb;
    use floorhand_protocol::oms::{Event, EventKind};

    #[test]
    fn the_first_cursor_of_the_shift_is_found_by_bisection() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = OmsDb::open(&dir.path().join("b.db")).unwrap();
        db.set_incarnation("s", "d", 1, None, 0).unwrap();
        let batch: Vec<_> = (1..=1000u64)
            .map(|seq| {
                (
                    "s".to_string(),
                    "d".to_string(),
                    1,
                    Event {
                        seq,
                        at: 10_000 + seq * 10,
                        operator: 0,
                        kind: EventKind::LoggedIn,
                    },
                )
            })
            .collect();
        db.store_events(&batch, 0).unwrap();
        let check = |from: u64, first_seq: Option<u64>| {
            let c = first_cursor_since(&db, from).unwrap();
            let next = db.events_after(c, 1).unwrap();
            assert_eq!(next.first().map(|e| e.event.seq), first_seq, "from {from}");
        };
        check(0, Some(1));
        check(10_010, Some(1));
        check(10_011, Some(2));
        check(15_000, Some(500));
        check(20_000, Some(1000));
        check(20_001, None);
    }

    #[test]
    fn the_page_needs_nothing_from_elsewhere() {
        for bad in ["http://", "https://", "//cdn", "@import"] {
            assert!(!PAGE.contains(bad), "{bad} in the page");
        }
        assert!(PAGE.contains("/v1/floor/stream"));
    }
}
