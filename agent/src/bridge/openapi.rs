//! The OpenAPI 3 document of the bridge's HTTP API (`GET /openapi.json`). Written by hand
//! beside the routes; `http.rs`'s test checks it names exactly the routes served, and the
//! end-to-end test calls every one.

use serde_json::{Value, json};

fn error_responses(extra: &[(&str, &str)]) -> Value {
    let mut r = json!({
        "400": { "description": "Bad input; `field` names what is wrong.", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
        "401": { "description": "Missing or wrong bearer token.", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
    });
    for (code, what) in extra {
        r[*code] = json!({ "description": what, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } });
    }
    r
}

fn ok(description: &str, schema: Value) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": schema } } })
}

fn path_param(name: &str, description: &str, schema: Value) -> Value {
    json!({ "name": name, "in": "path", "required": true, "description": description, "schema": schema })
}

/// The document.
pub fn document() -> Value {
    let id = json!({ "type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$" });
    let site = path_param("site", "Site id.", id.clone());
    let device = path_param("device", "Device id.", id);
    let after = json!({ "name": "after", "in": "query", "required": false,
        "description": "Cursor of the last event consumed (`next` of the previous page); none or `0` for the start.",
        "schema": { "type": "string" } });
    let mut events_ok = ok(
        "Events after the cursor, oldest first, and the cursor to ask from next.",
        json!({ "type": "object", "required": ["events", "next"], "properties": {
            "events": { "type": "array", "items": { "$ref": "#/components/schemas/Event" } },
            "next": { "type": "string" } } }),
    );
    events_ok["description"] = "Events after the cursor, oldest first, and `next`, the cursor to ask from next. Store `next` in the same transaction as the events to consume each exactly once.".into();
    let mut events_responses = error_responses(&[]);
    events_responses["200"] = events_ok;
    let mut post_responses = error_responses(&[
        ("404", "The device has never been heard from."),
        ("413", "The body is over `http.max_body_bytes`."),
        (
            "422",
            "The Idempotency-Key was used for a different message.",
        ),
    ]);
    post_responses["202"] = ok(
        "Committed: the bridge sends it until the device applies it.",
        json!({ "$ref": "#/components/schemas/MessageState" }),
    );
    let mut state_responses = error_responses(&[("404", "No such message.")]);
    state_responses["200"] = ok(
        "The message's state.",
        json!({ "$ref": "#/components/schemas/MessageState" }),
    );
    let mut devices_responses = error_responses(&[]);
    devices_responses["200"] = ok(
        "Every device the bridge has heard from.",
        json!({ "type": "object", "properties": { "devices": { "type": "array", "items": { "$ref": "#/components/schemas/Device" } } } }),
    );
    let mut stream_responses = error_responses(&[]);
    stream_responses["200"] = json!({ "description": "Server-Sent Events: `event: event`, `id:` the cursor, `data:` one Event as JSON. Reconnect with `Last-Event-ID`.", "content": { "text/event-stream": { "schema": { "type": "string" } } } });
    let mut metrics_responses = error_responses(&[]);
    metrics_responses["200"] = json!({ "description": "Prometheus text format.", "content": { "text/plain": { "schema": { "type": "string" } } } });
    let mut floor_responses = error_responses(&[]);
    floor_responses["200"] = ok(
        "The floor view: devices (state online, offline or alert, with why), waves, pack stations, people, exceptions, kpis, charts (SVG), now and version.",
        json!({ "type": "object" }),
    );
    let mut floor_stream_responses = error_responses(&[]);
    floor_stream_responses["200"] = json!({ "description": "Server-Sent Events: `event: floor`, `data:` the floor view as GET /v1/floor answers it, now and at each change.", "content": { "text/event-stream": { "schema": { "type": "string" } } } });
    let mut kpis_responses = error_responses(&[]);
    kpis_responses["200"] = ok(
        "Picks per minute of each site over the last 60 minutes (`minute`: Unix seconds of its start; a pick is a Picked or a ShortPicked with units), and picks in the last 15 minutes: the chart's numbers.",
        json!({ "type": "object", "properties": { "at": { "type": "integer" }, "minutes": { "type": "integer" }, "sites": { "type": "array", "items": { "type": "object" } } } }),
    );
    let mut openapi_responses = error_responses(&[]);
    openapi_responses["200"] = ok("This document.", json!({ "type": "object" }));
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Floorhand bridge",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The OMS's durable half of the Floorhand contract, as JSON over HTTP. Every route but /healthz needs `Authorization: Bearer TOKEN`. Errors are `{\"error\": ..., \"field\": ...}`."
        },
        "security": [ { "bearer": [] } ],
        "paths": {
            "/healthz": { "get": {
                "summary": "Liveness; needs no token.",
                "security": [],
                "responses": { "200": ok("The bridge serves requests.", json!({ "type": "object", "properties": { "ok": { "type": "boolean" }, "broker_connected": { "type": "boolean" } } })) }
            } },
            "/": { "get": {
                "summary": "The supervisor's floor view (HTML); it asks for the token and keeps it in a cookie, which GET routes accept as well as the header.",
                "security": [],
                "responses": { "200": { "description": "The page.", "content": { "text/html": { "schema": { "type": "string" } } } } }
            } },
            "/v1/floor": { "get": { "summary": "The floor view as JSON.", "responses": floor_responses } },
            "/v1/floor/stream": { "get": { "summary": "The floor view as Server-Sent Events.", "responses": floor_stream_responses } },
            "/v1/kpis": { "get": { "summary": "Picks per minute per site.", "responses": kpis_responses } },
            "/metrics": { "get": { "summary": "Counters and gauges for Prometheus.", "responses": metrics_responses } },
            "/openapi.json": { "get": { "summary": "This document.", "responses": openapi_responses } },
            "/v1/devices": { "get": { "summary": "Devices with presence, backlog and unacknowledged down messages.", "responses": devices_responses } },
            "/v1/devices/{site}/{device}/messages": { "post": {
                "summary": "Queue one down message for a device.",
                "description": "The body is one down message in the protocol's JSON form, as `floorhand oms push` reads it: a bare wave (`task_count` and `digest` may be left out), or `{\"OrderCancelled\": {...}}`, `{\"TasksRevoked\": {...}}`, `{\"PackOrder\": {...}}`, `{\"ConfigUpdate\": {...}}`. Answered once durable. `dseq` is the message's stable number for the device.",
                "parameters": [ site.clone(), device.clone(), { "name": "Idempotency-Key", "in": "header", "required": false, "description": "A retried request with the same key and body gets the same dseq and queues nothing.", "schema": { "type": "string", "maxLength": 255 } } ],
                "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object" } } } },
                "responses": post_responses
            } },
            "/v1/devices/{site}/{device}/messages/{dseq}": { "get": {
                "summary": "A down message's state.",
                "parameters": [ site, device, path_param("dseq", "The number POST answered.", json!({ "type": "integer", "minimum": 1 })) ],
                "responses": state_responses
            } },
            "/v1/events": { "get": {
                "summary": "Events after a cursor (long poll).",
                "parameters": [ after,
                    { "name": "limit", "in": "query", "required": false, "description": "At most this many events (default and maximum: http.max_events).", "schema": { "type": "integer", "minimum": 1 } },
                    { "name": "wait", "in": "query", "required": false, "description": "Seconds to wait for an event when there is none (at most http.max_wait_s).", "schema": { "type": "integer", "minimum": 0 } } ],
                "responses": events_responses
            } },
            "/v1/events/stream": { "get": {
                "summary": "Events as Server-Sent Events, from `after` or `Last-Event-ID`.",
                "parameters": [
                    { "name": "after", "in": "query", "required": false, "description": "Cursor to start after.", "schema": { "type": "string" } },
                    { "name": "Last-Event-ID", "in": "header", "required": false, "description": "The last `id:` received; wins over `after`.", "schema": { "type": "string" } } ],
                "responses": stream_responses
            } }
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "Error": { "type": "object", "required": ["error"], "properties": {
                    "error": { "type": "string" }, "field": { "type": "string" } } },
                "MessageState": { "type": "object", "required": ["dseq", "state"], "properties": {
                    "dseq": { "type": "integer" },
                    "state": { "type": "string", "enum": ["queued", "sent", "applied", "rejected"] },
                    "reason": { "type": "string", "description": "The device's reason, when rejected." } } },
                "Event": { "type": "object", "required": ["cursor", "site", "device", "incarnation", "seq", "at", "operator", "kind"],
                    "description": "An event; the fields of its kind (task_id, qty, order_id, ...) follow `kind`. Unique on (site, device, incarnation, seq).",
                    "additionalProperties": true,
                    "properties": {
                        "cursor": { "type": "string" }, "site": { "type": "string" }, "device": { "type": "string" },
                        "incarnation": { "type": "string", "description": "The device database's id, 16 hex digits." },
                        "seq": { "type": "integer" }, "at": { "type": "integer", "description": "Unix seconds." },
                        "operator": { "type": "integer" },
                        "kind": { "type": "string", "example": "Picked" } } },
                "Device": { "type": "object", "additionalProperties": true, "properties": {
                    "site": { "type": "string" }, "device": { "type": "string" }, "online": { "type": "boolean" },
                    "session": { "type": "integer" }, "incarnation": { "type": "string" },
                    "last_seen": { "type": "integer", "nullable": true },
                    "last_birth": { "type": "object", "nullable": true },
                    "last_death": { "type": "integer", "nullable": true },
                    "last_status": { "type": "object", "nullable": true },
                    "event_backlog": { "type": "integer" }, "events_acked_through": { "type": "integer" },
                    "down_unacked": { "type": "integer" },
                    "printer": { "type": "string", "nullable": true },
                    "storage_alarm_pct": { "type": "integer", "nullable": true } } }
            }
        }
    })
}
