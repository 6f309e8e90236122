//! The bridge's HTTP API (axum): routes, the bearer token, body limits, and errors as JSON
//! that name the field at fault. `openapi.rs` documents the same routes; a test checks
//! that the two agree.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, FailedToBufferBody, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use floorhand_protocol::envelope::{EncodeError, LimitError};
use futures_util::Stream;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::json;
use crate::store::oms_store::{OmsStore, Queued, StoredEvent};
use crate::sync::oms::{OmsError, parse_down};

// The state every handler shares is defined in `bridge/mod.rs`, so the dashboard's handlers
// and this router can both name it without importing each other.
pub use super::{AppState, Limits};

/// An error answer: a status and `{"error": ..., "field": ...}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    field: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>, field: Option<&str>) -> Self {
        ApiError {
            status,
            message: message.into(),
            field: field.map(str::to_string),
        }
    }

    fn bad(field: &str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, message, Some(field))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!("bridge: {}: {}", self.status, self.message);
        } else {
            tracing::warn!(
                "bridge: refused ({}): {}{}",
                self.status.as_u16(),
                self.field
                    .as_deref()
                    .map(|f| format!("{f}: "))
                    .unwrap_or_default(),
                self.message
            );
        }
        let mut r = (
            self.status,
            axum::Json(json::error(&self.message, self.field.as_deref())),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string(), None)
}

/// Every route as (method, path in OpenAPI form). The router is built from this list and
/// `openapi.rs` must document exactly these (a test checks).
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/"),
    ("GET", "/healthz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/v1/devices"),
    ("POST", "/v1/devices/{site}/{device}/messages"),
    ("GET", "/v1/devices/{site}/{device}/messages/{dseq}"),
    ("GET", "/v1/events"),
    ("GET", "/v1/events/stream"),
    ("GET", "/v1/floor"),
    ("GET", "/v1/floor/stream"),
    ("GET", "/v1/kpis"),
];

/// Routes served without the token: the page holds no data, and asks for the token.
const OPEN: &[&str] = &["/", "/healthz"];

fn handler(method: &str, path: &str) -> MethodRouter<AppState> {
    match (method, path) {
        ("GET", "/healthz") => get(healthz),
        ("GET", "/metrics") => get(metrics),
        ("GET", "/openapi.json") => get(openapi),
        ("GET", "/v1/devices") => get(devices),
        ("POST", "/v1/devices/{site}/{device}/messages") => post(post_message),
        ("GET", "/v1/devices/{site}/{device}/messages/{dseq}") => get(message_state),
        ("GET", "/v1/events") => get(events),
        ("GET", "/v1/events/stream") => get(stream),
        ("GET", "/") => get(super::dashboard::page),
        ("GET", "/v1/floor") => get(super::dashboard::floor),
        ("GET", "/v1/floor/stream") => get(super::dashboard::stream),
        ("GET", "/v1/kpis") => get(super::dashboard::kpis),
        // Unreachable for the entries of ROUTES; a new entry without a handler is
        // caught by the route test.
        _ => get(no_route),
    }
}

/// `{site}` (OpenAPI) to `:site` (axum 0.7).
fn axum_path(path: &str) -> String {
    path.split('/')
        .map(
            |seg| match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => format!(":{name}"),
                None => seg.to_string(),
            },
        )
        .collect::<Vec<_>>()
        .join("/")
}

/// The router and the routes it serves.
pub fn router(state: AppState) -> (Router, Vec<(&'static str, &'static str)>) {
    let mut open = Router::new();
    let mut guarded = Router::new();
    let mut served = Vec::new();
    for &(method, path) in ROUTES {
        let r = handler(method, path);
        if OPEN.contains(&path) {
            open = open.route(&axum_path(path), r);
        } else {
            guarded = guarded.route(&axum_path(path), r);
        }
        served.push((method, path));
    }
    let guarded = guarded
        .method_not_allowed_fallback(wrong_method)
        .route_layer(middleware::from_fn_with_state(state.clone(), auth));
    let app = open
        .method_not_allowed_fallback(wrong_method)
        .merge(guarded)
        .fallback(no_route)
        // Bodies are read by handlers through `Bytes`, which refuses more than this.
        .layer(DefaultBodyLimit::max(state.limits.max_body_bytes))
        .with_state(state);
    (app, served)
}

async fn no_route(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no such route: {method} {}", uri.path()),
        None,
    )
}

async fn wrong_method(method: Method, uri: axum::http::Uri) -> ApiError {
    let allowed: Vec<&str> = ROUTES
        .iter()
        .filter(|(_, p)| axum_path(p) == uri.path() || matches_path(p, uri.path()))
        .map(|(m, _)| *m)
        .collect();
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{method} is not served on {} (use {})",
            uri.path(),
            allowed.join(", ")
        ),
        Some("method"),
    )
}

/// Whether `path` fits the OpenAPI path `pattern` (`{name}` matches one segment).
fn matches_path(pattern: &str, path: &str) -> bool {
    let (p, q): (Vec<&str>, Vec<&str>) = (pattern.split('/').collect(), path.split('/').collect());
    p.len() == q.len()
        && p.iter()
            .zip(&q)
            .all(|(a, b)| a == b || (a.starts_with('{') && a.ends_with('}') && !b.is_empty()))
}

/// Compares without an early exit, so the time taken says nothing about the token.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token of the floor view's cookie, on a GET (the browser's `EventSource` cannot
/// send a header); never for a write, so another site cannot make one with it.
fn cookie_token(req: &Request) -> Option<&str> {
    if req.method() != Method::GET {
        return None;
    }
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix("floorhand_token="))
}

async fn auth(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| cookie_token(&req));
    match given {
        Some(t) if same(t.trim().as_bytes(), st.token.as_bytes()) => next.run(req).await,
        Some(_) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "wrong bearer token",
            Some("Authorization"),
        )
        .into_response(),
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing bearer token: send `Authorization: Bearer TOKEN` (the token file's first line)",
            Some("Authorization"),
        )
        .into_response(),
    }
}

async fn healthz(State(st): State<AppState>) -> axum::Json<Value> {
    axum::Json(json!({ "ok": true, "broker_connected": st.session.is_connected() }))
}

async fn openapi() -> axum::Json<Value> {
    axum::Json(super::openapi::document())
}

/// Runs `f` on the read handle, off the async runtime.
async fn read<T: Send + 'static>(
    st: &AppState,
    f: impl FnOnce(&dyn OmsStore) -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    let reader = st.reader.clone();
    tokio::task::spawn_blocking(move || {
        let db = reader.lock().unwrap_or_else(|e| e.into_inner());
        f(db.as_ref())
    })
    .await
    .map_err(unavailable)?
    .map_err(unavailable)
}

async fn devices(State(st): State<AppState>) -> Result<axum::Json<Value>, ApiError> {
    let rows = read(&st, |db| db.devices()).await?;
    Ok(axum::Json(
        json!({ "devices": rows.iter().map(json::device).collect::<Vec<_>>() }),
    ))
}

async fn metrics(State(st): State<AppState>) -> Result<Response, ApiError> {
    let t = read(&st, |db| db.totals()).await?;
    let c = st.session.counters();
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        out += &format!(
            "# HELP floorhand_bridge_{name} {help}\n# TYPE floorhand_bridge_{name} {kind}\n\
             floorhand_bridge_{name} {value}\n"
        );
    };
    let counters = [
        ("events_in_total", "Events stored the first time.", c.events),
        (
            "event_duplicates_total",
            "Events received again (acknowledged again, not stored).",
            c.duplicates,
        ),
        (
            "acks_sent_total",
            "Acks of events sent to devices.",
            c.acks_sent,
        ),
        ("invalid_total", "Invalid messages received.", c.invalid),
        (
            "down_published_total",
            "Down messages published, re-sends included.",
            c.down_published,
        ),
        (
            "down_resent_total",
            "Down messages published again.",
            c.down_resent,
        ),
        (
            "down_acked_total",
            "Down messages the devices acknowledged.",
            c.down_acked,
        ),
        (
            "down_commits_total",
            "Transactions that queued down messages (pushes waiting together share one).",
            c.down_commits,
        ),
    ];
    for (name, help, v) in counters {
        metric(name, "counter", help, v);
    }
    let gauges = [
        ("events_stored", "Events in the store.", t.events),
        (
            "down_queue_depth",
            "Down messages not yet acknowledged.",
            t.down_pending,
        ),
        ("devices_online", "Devices online.", t.devices_online),
        ("devices", "Devices known.", t.devices),
        ("alarms", "Alarms raised.", t.alarms),
        (
            "broker_connected",
            "1 while connected to the broker.",
            u64::from(st.session.is_connected()),
        ),
    ];
    for (name, help, v) in gauges {
        metric(name, "gauge", help, v);
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        out,
    )
        .into_response())
}

/// Checks the `{site}` and `{device}` of a path.
fn ids(path: Result<Path<Vec<String>>, PathRejection>) -> Result<Vec<String>, ApiError> {
    let Path(parts) = path.map_err(|e| ApiError::bad("path", e.body_text()))?;
    for (name, id) in ["site", "device"].iter().zip(&parts) {
        if !floorhand_protocol::topics::valid_id(id) {
            return Err(ApiError::bad(
                name,
                format!(
                    "{id:?} is not a valid {name} id: use {}",
                    floorhand_protocol::topics::ID_CHARS
                ),
            ));
        }
    }
    Ok(parts)
}

const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

async fn post_message(
    State(st): State<AppState>,
    path: Result<Path<Vec<String>>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let parts = ids(path)?;
    let (site, device) = (&parts[0], &parts[1]);
    let key = match headers.get(IDEMPOTENCY_KEY) {
        None => None,
        Some(v) => {
            let k = v.to_str().ok().filter(|k| {
                (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic())
            });
            Some(
                k.ok_or_else(|| {
                    ApiError::bad(IDEMPOTENCY_KEY, "use 1 to 255 visible ASCII characters")
                })?
                .to_string(),
            )
        }
    };
    let body = body.map_err(|e| match e {
        BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(_)) => {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the body is over {} bytes (http.max_body_bytes)",
                    st.limits.max_body_bytes
                ),
                Some("body"),
            )
        }
        other => ApiError::bad("body", other.body_text()),
    })?;
    let text = std::str::from_utf8(&body).map_err(|e| ApiError::bad("body", e.to_string()))?;
    let down = parse_down(text).map_err(|e| ApiError::bad(&e.field, e.message))?;
    let queued = st
        .session
        .push_keyed(site, device, down, key)
        .await
        .map_err(|e| match e {
            OmsError::Encode(EncodeError::Limit(
                LimitError::TooMany { what, .. } | LimitError::TooLong { what, .. },
            )) => ApiError::bad(what, format!("over a protocol limit: {e}")),
            OmsError::Encode(_) | OmsError::Input(_) | OmsError::BadId(_) => {
                ApiError::bad("body", e.to_string())
            }
            other => unavailable(other),
        })?;
    let (dseq, replayed) = match queued {
        Queued::New(n) => (n, false),
        Queued::Again(n) => (n, true),
        Queued::KeyReused(n) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("this key was used for a different message (dseq {n})"),
                Some(IDEMPOTENCY_KEY),
            ));
        }
        Queued::UnknownDevice => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!(
                    "device {site}/{device} has never been heard from: a device is known \
                     once it has connected to the broker while the bridge was running"
                ),
                Some("device"),
            ));
        }
    };
    let state = if replayed {
        st.session
            .state(Some(site), device, dseq)
            .await
            .map_err(unavailable)?
            .unwrap_or(crate::store::oms_store::DownState::Queued)
    } else {
        crate::store::oms_store::DownState::Queued
    };
    let mut r = (
        StatusCode::ACCEPTED,
        axum::Json(json::down_state(dseq, &state)),
    )
        .into_response();
    if replayed {
        r.headers_mut()
            .insert("Idempotent-Replayed", HeaderValue::from_static("true"));
    }
    Ok(r)
}

async fn message_state(
    State(st): State<AppState>,
    path: Result<Path<Vec<String>>, PathRejection>,
) -> Result<axum::Json<Value>, ApiError> {
    let parts = ids(path)?;
    let dseq: u64 = parts[2]
        .parse()
        .map_err(|_| ApiError::bad("dseq", format!("{:?} is not a number", parts[2])))?;
    match st
        .session
        .state(Some(&parts[0]), &parts[1], dseq)
        .await
        .map_err(unavailable)?
    {
        Some(s) => Ok(axum::Json(json::down_state(dseq, &s))),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no message {dseq} for {}/{}", parts[0], parts[1]),
            Some("dseq"),
        )),
    }
}

/// Reads query parameters, refusing any not in `allowed`.
fn params(
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
    allowed: &[&str],
) -> Result<HashMap<String, String>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad("query", e.body_text()))?;
    if let Some(k) = q.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ApiError::bad(
            k,
            format!("unknown query parameter (use {})", allowed.join(", ")),
        ));
    }
    Ok(q)
}

fn number(q: &HashMap<String, String>, key: &str, default: u64, max: u64) -> Result<u64, ApiError> {
    match q.get(key) {
        None => Ok(default),
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|n| *n <= max)
            .ok_or_else(|| ApiError::bad(key, format!("{v:?}: use a whole number, 0 to {max}"))),
    }
}

async fn events_after(
    st: &AppState,
    after: u64,
    limit: usize,
) -> Result<Vec<StoredEvent>, ApiError> {
    read(st, move |db| db.events_after(after, limit)).await
}

/// Waits until a commit may have added events (or `until`, or the bridge stops). Wakes
/// at least every second: events can also arrive through another bridge on a shared
/// store, or become contiguous there, and this session hears of neither.
async fn wait_for_events(
    st: &AppState,
    latest: &mut watch::Receiver<u64>,
    until: tokio::time::Instant,
) {
    let until = until.min(tokio::time::Instant::now() + Duration::from_secs(1));
    let mut stopping = st.stopping.clone();
    if *stopping.borrow_and_update() {
        return;
    }
    tokio::select! {
        r = latest.changed() => {
            if r.is_err() {
                // The session has ended: nothing will wake us; wait out the time.
                tokio::time::sleep_until(until).await;
            }
        }
        _ = tokio::time::sleep_until(until) => {}
        _ = stopping.changed() => {}
    }
}

async fn events(
    State(st): State<AppState>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<axum::Json<Value>, ApiError> {
    let q = params(q, &["after", "limit", "wait"])?;
    let after = json::parse_cursor(q.get("after").map_or("", |s| s), st.incarnation)
        .map_err(|e| ApiError::bad("after", e))?;
    let max = st.limits.max_events as u64;
    let limit = number(&q, "limit", max, max)?;
    if limit == 0 {
        return Err(ApiError::bad("limit", format!("0: use 1 to {max}")));
    }
    let limit = limit as usize;
    let wait = number(&q, "wait", 0, st.limits.max_wait.as_secs())?;
    let until = tokio::time::Instant::now() + Duration::from_secs(wait);
    let mut latest = st.latest.clone();
    loop {
        latest.borrow_and_update();
        let evs = events_after(&st, after, limit).await?;
        let done = !evs.is_empty() || tokio::time::Instant::now() >= until || *st.stopping.borrow();
        if done {
            let next = evs.last().map_or(after, |e| e.cursor);
            return Ok(axum::Json(json!({
                "events": evs.iter().map(|e| json::event(st.incarnation, e)).collect::<Vec<_>>(),
                "next": json::cursor(st.incarnation, next),
            })));
        }
        wait_for_events(&st, &mut latest, until).await;
    }
}

async fn stream(
    State(st): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let q = params(q, &["after"])?;
    // The browser's EventSource sends Last-Event-ID on a reconnect; it wins over `after`.
    let (field, text) = match headers.get("Last-Event-ID") {
        Some(v) => ("Last-Event-ID", v.to_str().unwrap_or("?").to_string()),
        None => ("after", q.get("after").cloned().unwrap_or_default()),
    };
    let after = json::parse_cursor(&text, st.incarnation).map_err(|e| ApiError::bad(field, e))?;
    let latest = st.latest.clone();
    let start = (st, after, VecDeque::<StoredEvent>::new(), latest);
    let s =
        futures_util::stream::unfold(start, |(st, mut after, mut buf, mut latest)| async move {
            loop {
                if let Some(e) = buf.pop_front() {
                    let ev = SseEvent::default()
                        .id(json::cursor(st.incarnation, e.cursor))
                        .event("event")
                        .data(json::event(st.incarnation, &e).to_string());
                    return Some((Ok(ev), (st, after, buf, latest)));
                }
                if *st.stopping.borrow() {
                    return None;
                }
                latest.borrow_and_update();
                match events_after(&st, after, 256).await {
                    Ok(evs) if !evs.is_empty() => {
                        after = evs.last().map_or(after, |e| e.cursor);
                        buf.extend(evs);
                    }
                    Ok(_) => {
                        let until = tokio::time::Instant::now() + Duration::from_secs(30);
                        wait_for_events(&st, &mut latest, until).await;
                    }
                    Err(e) => {
                        tracing::warn!("bridge: event stream: {}", e.message);
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
    Ok(Sse::new(s).keep_alive(KeepAlive::default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented_and_nothing_else_is() {
        let doc = super::super::openapi::document();
        let mut documented = Vec::new();
        for (path, ops) in doc["paths"].as_object().unwrap() {
            for method in ops.as_object().unwrap().keys() {
                documented.push((method.to_uppercase(), path.clone()));
            }
        }
        documented.sort();
        let mut routes: Vec<(String, String)> = ROUTES
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        routes.sort();
        assert_eq!(documented, routes);
    }

    #[test]
    fn openapi_paths_become_axum_paths() {
        assert_eq!(
            axum_path("/v1/devices/{site}/{device}/messages/{dseq}"),
            "/v1/devices/:site/:device/messages/:dseq"
        );
        assert_eq!(axum_path("/healthz"), "/healthz");
    }

    #[test]
    fn a_path_fits_its_pattern_segment_by_segment() {
        let p = "/v1/devices/{site}/{device}/messages";
        assert!(matches_path(p, "/v1/devices/s1/d1/messages"));
        assert!(!matches_path(p, "/v1/devices/s1/messages"));
        assert!(!matches_path(p, "/v1/devices/s1//messages"));
        assert!(matches_path("/healthz", "/healthz"));
    }

    #[test]
    fn the_floor_view_s_cookie_stands_for_the_token_on_reads_only() {
        let req = |method: Method, cookie: &str| {
            Request::builder()
                .method(method)
                .uri("/v1/floor")
                .header(header::COOKIE, cookie)
                .body(axum::body::Body::empty())
                .unwrap()
        };
        let r = req(Method::GET, "a=1; floorhand_token=abc; b=2");
        assert_eq!(cookie_token(&r), Some("abc"));
        assert_eq!(cookie_token(&req(Method::GET, "a=1")), None);
        let post = req(Method::POST, "floorhand_token=abc");
        assert_eq!(cookie_token(&post), None, "never for a write");
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
        assert!(!same(b"", b"a"));
    }
}
