//! `floorhand bridge` as an OMS uses it: the real binary, a stock Mosquitto, two agent
//! links at two sites, and HTTP through a plain TCP client. Events are consumed by cursor
//! (long poll and Server-Sent Events), down messages pushed over HTTP; the bridge is
//! killed with SIGKILL again and again, and bad input is refused with the store unchanged.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use floorhand_protocol::oms::Down;
use floorhand_tests::http::{Client, Response};
use floorhand_tests::mosquitto::{Mosquitto, Options, free_port};
use floorhand_tests::sync_support::*;
use floorhand_tests::workspace_bin;
use serde_json::Value;

/// A running `floorhand bridge` process.
pub(crate) struct Bridge {
    pub(crate) child: Child,
    pub(crate) client: Client,
}

/// Writes the bridge's config in `dir`: its store and token there, HTTP on `port`.
pub(crate) fn write_config(dir: &Path, broker: &str, port: u16, max_body: u64) -> PathBuf {
    write_config_on(dir, Backend::Sqlite, broker, port, max_body)
}

/// Where a bridge under test keeps its store.
#[derive(Clone, Copy)]
pub(crate) enum Backend<'a> {
    /// `bridge.db` in the test's directory.
    Sqlite,
    /// This PostgreSQL server.
    Postgres(&'a Postgres),
}

/// Like [`write_config`], on `backend`.
pub(crate) fn write_config_on(
    dir: &Path,
    backend: Backend<'_>,
    broker: &str,
    port: u16,
    max_body: u64,
) -> PathBuf {
    let path = dir.join("bridge.toml");
    let store = match backend {
        Backend::Sqlite => "[store]\npath = \"bridge.db\"\n".to_string(),
        Backend::Postgres(pg) => format!(
            "[store]\nbackend = \"postgres\"\nurl = \"{}\"\npool_size = 2\n",
            pg.url()
        ),
    };
    std::fs::write(
        &path,
        format!(
            "{store}\
             [broker]\nurl = \"{broker}\"\nconnect_timeout_s = 1\nkeep_alive_s = 5\n\
             [mqtt]\nclient_id = \"bridge-test\"\n\
             [http]\nlisten = \"127.0.0.1:{port}\"\ntoken_file = \"bridge.token\"\n\
             max_body_bytes = {max_body}\nmax_wait_s = 5\nmax_events = 500\n"
        ),
    )
    .unwrap();
    path
}

impl Bridge {
    /// Starts the bridge with `config` and waits until it answers `/healthz` and is
    /// connected to the broker.
    pub(crate) fn start(config: &Path) -> Bridge {
        let dir = config.parent().unwrap();
        let text = std::fs::read_to_string(config).unwrap();
        let port: u16 = text
            .split("listen = \"127.0.0.1:")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .and_then(|p| p.parse().ok())
            .expect("port in the config");
        let child = spawn_bridge(config);
        let addr = format!("127.0.0.1:{port}").parse().unwrap();
        // Owned by the value from here on, so a failed start kills it too (Drop).
        let mut bridge = Bridge {
            child,
            client: Client::new(addr, None),
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut open = Client::new(addr, None);
        open.timeout = Duration::from_secs(2);
        loop {
            if let Ok(r) = open.get("/healthz")
                && r.json()["broker_connected"] == true
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the bridge did not come up: {}",
                std::fs::read_to_string(dir.join("bridge.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let token = std::fs::read_to_string(dir.join("bridge.token")).unwrap();
        bridge.client.token = Some(token.trim().to_string());
        bridge
    }

    /// SIGKILL: no chance to finish anything.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, and the exit status.
    pub(crate) fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        exit_within(&mut self.child, Duration::from_secs(10)).expect("the bridge ignored SIGTERM")
    }
}

/// `floorhand bridge --config CONFIG`, its log appended to `bridge.log` beside the config.
fn spawn_bridge(config: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(config.parent().unwrap().join("bridge.log"))
        .unwrap();
    Command::new(workspace_bin("floorhand"))
        .args(["bridge", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// The child's exit status, if it exits within `limit`.
fn exit_within(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// The PostgreSQL rig is shared with the agent's OMS store rules, which cannot depend on
// this crate.
#[path = "../../../agent/tests/support/postgres.rs"]
mod postgres;
pub(crate) use postgres::Postgres;

/// Two agents: `d1` at `site1` and `d2` at `site2`.
async fn two_agents(dir: &Path, url: &str) -> (TestAgent, TestAgent) {
    let d1 = TestAgent::start_in(dir, "d1", url).await;
    let mut c2 = test_sync_config("d2", test_broker(url));
    c2.site = "site2".into();
    let d2 = TestAgent::start(&dir.join("d2.db"), c2).await;
    (d1, d2)
}

/// Waits (off the runtime) until the bridge lists `n` devices online.
async fn devices_online(client: &Client, n: usize) -> Value {
    let c = client.clone();
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let r = c.get("/v1/devices").unwrap();
            assert_eq!(r.status, 200, "{}", r.text());
            let v = r.json();
            let online = v["devices"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["online"] == true)
                .count();
            if online >= n {
                return v;
            }
            assert!(Instant::now() < deadline, "devices never online: {v}");
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .unwrap()
}

fn messages_path(site: &str, device: &str) -> String {
    format!("/v1/devices/{site}/{device}/messages")
}

/// POSTs `down` and returns the answer.
pub(crate) fn push(
    c: &Client,
    site: &str,
    device: &str,
    down: &Down,
    key: Option<&str>,
) -> Response {
    let body = serde_json::to_string(down).unwrap();
    let h: Vec<(&str, &str)> = key.map(|k| ("Idempotency-Key", k)).into_iter().collect();
    c.post(&messages_path(site, device), &h, &body).unwrap()
}

/// Waits until message `dseq` of the device is in `state`.
pub(crate) fn wait_state(c: &Client, site: &str, device: &str, dseq: u64, state: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = c
            .get(&format!("{}/{dseq}", messages_path(site, device)))
            .unwrap();
        let v = r.json();
        if v["state"] == state {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "message {dseq} of {site}/{device} never {state}: {}",
            r.text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// (site, device, incarnation, seq) of an event.
type Key = (String, String, String, u64);

fn key_of(e: &Value) -> Key {
    (
        e["site"].as_str().unwrap().to_string(),
        e["device"].as_str().unwrap().to_string(),
        e["incarnation"].as_str().unwrap().to_string(),
        e["seq"].as_u64().unwrap(),
    )
}

/// Consumes by long poll from `after` until `n` events arrived; returns them and the
/// last cursor.
fn consume(c: &Client, mut after: String, n: usize) -> (Vec<Value>, String) {
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} events arrived",
            got.len()
        );
        let r = c
            .get(&format!("/v1/events?after={after}&limit=200&wait=2"))
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        got.extend(v["events"].as_array().unwrap().iter().cloned());
        after = v["next"].as_str().unwrap().to_string();
    }
    (got, after)
}

/// Each device's events are seqs 1..=high exactly once, and nothing else arrived.
fn assert_exactly_once(events: &[Value], highs: &[(&str, &str, u64)]) {
    let mut seen = BTreeMap::<Key, usize>::new();
    for e in events {
        *seen.entry(key_of(e)).or_default() += 1;
    }
    let dups: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        dups.is_empty(),
        "delivered twice: {:?}",
        &dups[..dups.len().min(5)]
    );
    for &(site, device, high) in highs {
        let seqs: Vec<u64> = seen
            .keys()
            .filter(|k| k.0 == site && k.1 == device)
            .map(|k| k.3)
            .collect();
        assert_eq!(
            seqs,
            (1..=high).collect::<Vec<_>>(),
            "{site}/{device}: each seq once"
        );
    }
    let total: u64 = highs.iter().map(|h| h.2).sum();
    assert_eq!(events.len() as u64, total, "nothing but these events");
}

/// How many tasks the agent holds open.
async fn open_tasks(agent: &TestAgent) -> usize {
    agent
        .store
        .call(|db| db.open_tasks().map(|t| t.len()))
        .await
        .unwrap()
        .unwrap()
}

/// The highest down seq the agent applied.
async fn applied_through(agent: &TestAgent) -> u64 {
    agent
        .store
        .call(|db| db.down_point())
        .await
        .unwrap()
        .unwrap()
        .through
}

async fn high_seq(agent: &TestAgent) -> u64 {
    agent.store.call(|db| db.high_seq()).await.unwrap()
}

fn pack_order() -> Down {
    floorhand_protocol::examples::down()
        .into_iter()
        .map(|(_, env)| env.body.body)
        .find(|d| matches!(d, Down::PackOrder(_)))
        .expect("a pack order example")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waves_cancellations_and_pack_orders_pushed_over_http_apply_and_events_arrive_once_by_cursor()
 {
    shift(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgresql_pushed_messages_apply_and_events_arrive_once_by_long_poll_and_stream() {
    let pg = Postgres::start();
    shift(Backend::Postgres(&pg)).await;
}

/// A PostgreSQL server that takes TCP over TLS only: the bridge reaches it with
/// `[store] ca_file`, the CA that signed the server's certificate. A server certificate
/// of another CA, or no TLS at all, stops the bridge at its start with an error that
/// says why, before it serves anything.
#[test]
fn on_a_tls_only_postgresql_the_bridge_connects_with_its_ca_and_refuses_another_ca() {
    let dir = tempfile::tempdir().unwrap();
    // The server's certificate names the address the bridge dials, as an IP SAN.
    let pki = crate::sync::make_pki_for(&dir.path().join("pki"), "127.0.0.1");
    let other = crate::sync::make_pki_for(&dir.path().join("other-pki"), "127.0.0.1");
    let pg = Postgres::start_tls_only(&pki.server_cert, &pki.server_key);
    let broker = Mosquitto::start(&dir.path().join("broker"), Options::default());
    let config_with = |name: &str, ca: Option<&Path>, extra: &str| {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        let port = free_port();
        let config = write_config_on(&d, Backend::Postgres(&pg), &broker.url(), port, 1 << 20);
        if let Some(ca) = ca {
            let text = std::fs::read_to_string(&config).unwrap().replace(
                "pool_size = 2\n",
                &format!("pool_size = 2\nca_file = \"{}\"\n{extra}", ca.display()),
            );
            std::fs::write(&config, text).unwrap();
        }
        config
    };

    let bridge = Bridge::start(&config_with("right-ca", Some(&pki.ca), ""));
    // Up means its schema was made over TLS; a read goes through the pool too.
    let r = bridge.client.get("/v1/events?limit=1").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(bridge.stop().success(), "the bridge stops cleanly");

    // A client certificate that cannot be read is named by its key, before any connect.
    let no_client_cert = "cert_file = \"/nonexistent/c.pem\"\nkey_file = \"/nonexistent/c.key\"\n";
    for (name, ca, extra, why) in [
        (
            "other-ca",
            Some(other.ca.as_path()),
            "",
            "invalid peer certificate",
        ),
        ("plain", None, "", "no encryption"),
        (
            "client-cert",
            Some(pki.ca.as_path()),
            no_client_cert,
            "store.cert_file",
        ),
    ] {
        let config = config_with(name, ca, extra);
        let log_path = config.parent().unwrap().join("bridge.log");
        let mut child = spawn_bridge(&config);
        let Some(status) = exit_within(&mut child, Duration::from_secs(30)) else {
            let _ = child.kill();
            panic!(
                "{name}: the bridge kept running: {}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        };
        let log = std::fs::read_to_string(&log_path).unwrap();
        assert!(!status.success(), "{name}: exit {status}: {log}");
        assert!(log.contains(why), "{name}: the error says {why:?}: {log}");
        eprintln!("{name}: {}", log.trim());
    }
}

/// A shift through the bridge on `backend`: pushes, long polls, streams, presence.
async fn shift(backend: Backend<'_>) {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(&dir.path().join("broker"), Options::default());
    let config = write_config_on(dir.path(), backend, &broker.url(), free_port(), 16 << 20);
    let bridge = Bridge::start(&config);
    let log = std::fs::read_to_string(dir.path().join("bridge.log")).unwrap();
    assert!(
        log.contains("wrote a new API token to") && log.contains("bridge.token"),
        "the first start names the token file: {log}"
    );
    let c = bridge.client.clone();
    let (d1, d2) = two_agents(dir.path(), &broker.url()).await;
    let devices = devices_online(&c, 2).await;
    assert_eq!(devices["devices"][0]["site"], "site1", "{devices}");
    assert_eq!(devices["devices"][1]["site"], "site2", "{devices}");

    // Down: waves and a cancellation to d1, a pack order to d2, by HTTP.
    let c2 = c.clone();
    let states = tokio::task::spawn_blocking(move || {
        let wave_json = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/wave.json"),
        )
        .unwrap();
        let r = c2
            .post(&messages_path("site1", "d1"), &[], &wave_json)
            .unwrap();
        assert_eq!(r.status, 202, "{}", r.text());
        assert_eq!(r.json()["dseq"], 1);
        assert_eq!(r.json()["state"], "queued");
        let mut nos = vec![("site1", "d1", 1)];
        for w in 1..=5 {
            let r = push(&c2, "site1", "d1", &one_task_wave(w), None);
            assert_eq!(r.status, 202, "{}", r.text());
            nos.push(("site1", "d1", r.json()["dseq"].as_u64().unwrap()));
        }
        let cancel = Down::OrderCancelled {
            order_id: "SO-3".into(),
        };
        let r = push(&c2, "site1", "d1", &cancel, None);
        nos.push(("site1", "d1", r.json()["dseq"].as_u64().unwrap()));
        let r = push(&c2, "site2", "d2", &pack_order(), Some("po-1"));
        assert_eq!(r.status, 202, "{}", r.text());
        nos.push(("site2", "d2", r.json()["dseq"].as_u64().unwrap()));
        // The same key again: the same number, nothing queued twice.
        let again = push(&c2, "site2", "d2", &pack_order(), Some("po-1"));
        assert_eq!(again.status, 202, "{}", again.text());
        assert_eq!(again.json()["dseq"], 1);
        assert_eq!(again.header("Idempotent-Replayed"), Some("true"));
        assert_eq!(
            nos.iter().map(|n| n.2).collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5, 6, 7, 1]
        );
        nos.into_iter()
            .map(|(s, d, n)| wait_state(&c2, s, d, n, "applied"))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert_eq!(states.len(), 8);
    // The agents hold what was sent: d1 the example wave's 2 tasks and 5 one-task waves
    // less the cancelled order's; d2 one pack order, applied once.
    let open = open_tasks(&d1).await;
    assert_eq!(open, 2 + 5 - 1);
    assert_eq!(applied_through(&d1).await, 7);
    assert_eq!(applied_through(&d2).await, 1);
    let order = d2
        .store
        .call(|db| db.pack_order("SO-10042"))
        .await
        .unwrap()
        .unwrap();
    assert!(order.is_some(), "the pack order is on d2");

    // Up: events from both devices, consumed by long poll in pages.
    d1.queue_events(700).await;
    d2.queue_events(300).await;
    let (h1, h2) = (high_seq(&d1).await, high_seq(&d2).await);
    let c3 = c.clone();
    let total = (h1 + h2) as usize;
    let (polled, _) = tokio::task::spawn_blocking(move || consume(&c3, String::new(), total))
        .await
        .unwrap();
    assert_exactly_once(&polled, &[("site1", "d1", h1), ("site2", "d2", h2)]);
    let first = &polled[0];
    for field in ["cursor", "at", "operator", "kind"] {
        assert!(first.get(field).is_some(), "{field} in {first}");
    }
    let cursors: Vec<&str> = polled
        .iter()
        .map(|e| e["cursor"].as_str().unwrap())
        .collect();
    assert!(cursors.windows(2).all(|w| w[0] < w[1]), "cursors grow");
    // Nothing more: a long poll waits, then answers empty with the same cursor.
    let last = cursors.last().unwrap().to_string();
    let c4 = c.clone();
    let (empty, waited) = tokio::task::spawn_blocking(move || {
        let t = Instant::now();
        let r = c4.get(&format!("/v1/events?after={last}&wait=1")).unwrap();
        (r.json(), t.elapsed())
    })
    .await
    .unwrap();
    assert_eq!(empty["events"].as_array().unwrap().len(), 0);
    assert_eq!(empty["next"], cursors.last().unwrap().to_string());
    assert!(waited >= Duration::from_millis(900), "{waited:?}");
    // The agents' outboxes are empty: every event was acknowledged after its commit.
    for a in [&d1, &d2] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while a.backlog().await > 0 {
            assert!(tokio::time::Instant::now() < deadline, "backlog not acked");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // SSE: the same events, in the same order; a reconnect with Last-Event-ID resumes
    // right after the last one received.
    let c5 = c.clone();
    let polled2 = polled.clone();
    tokio::task::spawn_blocking(move || {
        let mut s = c5.sse("/v1/events/stream", &[]).unwrap();
        let mut streamed = Vec::new();
        for _ in 0..400 {
            let ev = s.next_event().unwrap();
            assert_eq!(ev.event.as_deref(), Some("event"));
            let v: Value = serde_json::from_str(&ev.data).unwrap();
            assert_eq!(ev.id.as_deref(), v["cursor"].as_str());
            streamed.push(v);
        }
        drop(s);
        let last_id = streamed.last().unwrap()["cursor"]
            .as_str()
            .unwrap()
            .to_string();
        let mut s = c5
            .sse("/v1/events/stream", &[("Last-Event-ID", &last_id)])
            .unwrap();
        while streamed.len() < polled2.len() {
            let ev = s.next_event().unwrap();
            streamed.push(serde_json::from_str(&ev.data).unwrap());
        }
        assert_eq!(
            streamed, polled2,
            "the stream serves what the long poll served"
        );
    })
    .await
    .unwrap();

    // A new event reaches an open stream and a waiting long poll at once.
    let c6 = c.clone();
    let last = polled.last().unwrap()["cursor"]
        .as_str()
        .unwrap()
        .to_string();
    let waiter = tokio::task::spawn_blocking(move || {
        let mut s = c6
            .sse("/v1/events/stream", &[("Last-Event-ID", &last)])
            .unwrap();
        let polled = c6.get(&format!("/v1/events?after={last}&wait=5")).unwrap();
        let ev = s.next_event().unwrap();
        (polled.json(), ev)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    d2.queue_events(1).await;
    let (polled_new, streamed_new) = waiter.await.unwrap();
    assert_eq!(polled_new["events"][0]["seq"], h2 + 1, "{polled_new}");
    assert_eq!(polled_new["events"][0]["device"], "d2");
    assert_eq!(
        streamed_new.id.as_deref(),
        polled_new["events"][0]["cursor"].as_str()
    );

    // /v1/devices tells presence and what is unacknowledged; /metrics counts.
    let devices = devices_online(&c, 2).await;
    let d = &devices["devices"][0];
    assert_eq!(d["down_unacked"], 0, "{d}");
    assert_eq!(d["event_backlog"], 0, "{d}");
    assert_eq!(d["events_acked_through"], h1, "{d}");
    assert!(d["last_birth"]["at"].as_u64().unwrap() > 0, "{d}");
    let c7 = c.clone();
    let metrics = tokio::task::spawn_blocking(move || c7.get("/metrics").unwrap().text())
        .await
        .unwrap();
    assert!(
        metrics.contains(&format!("floorhand_bridge_events_in_total {}", h1 + h2 + 1)),
        "{metrics}"
    );
    assert!(
        metrics.contains("floorhand_bridge_down_queue_depth 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("floorhand_bridge_devices_online 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("floorhand_bridge_down_acked_total 8"),
        "{metrics}"
    );

    // Concurrent clients, each sending its message twice with one key: one number per
    // message, applied once (pushes waiting together share one commit).
    let c9 = c.clone();
    let mut nos = tokio::task::spawn_blocking(move || {
        let threads: Vec<_> = (0..16)
            .map(|i| {
                let c = c9.clone();
                std::thread::spawn(move || {
                    let cancel = Down::OrderCancelled {
                        order_id: format!("SO-9{i}"),
                    };
                    let key = format!("concurrent-{i}");
                    let first = push(&c, "site2", "d2", &cancel, Some(&key));
                    let again = push(&c, "site2", "d2", &cancel, Some(&key));
                    assert_eq!(first.status, 202, "{}", first.text());
                    assert_eq!(first.json()["dseq"], again.json()["dseq"]);
                    first.json()["dseq"].as_u64().unwrap()
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect::<Vec<u64>>()
    })
    .await
    .unwrap();
    nos.sort();
    assert_eq!(nos, (2..=17).collect::<Vec<u64>>());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while applied_through(&d2).await < 17 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "concurrent pushes not applied"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(applied_through(&d2).await, 17);

    // d1 stops cleanly: its death shows.
    d1.stop().await;
    let c8 = c.clone();
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let v = c8.get("/v1/devices").unwrap().json();
            let d = &v["devices"][0];
            if d["online"] == false {
                assert!(d["last_death"].as_u64().unwrap() > 0, "{d}");
                break;
            }
            assert!(Instant::now() < deadline, "d1 never offline: {v}");
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .unwrap();
    assert!(bridge.stop().success(), "SIGTERM ends the bridge with 0");
    d2.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bridge_killed_twenty_times_delivers_each_event_once_by_cursor_and_applies_each_accepted_message_once()
 {
    kills(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgresql_the_bridge_killed_twenty_times_delivers_each_event_once_and_applies_each_message_once()
 {
    let pg = Postgres::start();
    kills(Backend::Postgres(&pg)).await;
}

/// The bridge on `backend` killed with SIGKILL 20 times during a drain and a push.
async fn kills(backend: Backend<'_>) {
    const ROUNDS: u64 = 20;
    const WAVES: u64 = 60;
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(&dir.path().join("broker"), Options::default());
    let config = write_config_on(dir.path(), backend, &broker.url(), free_port(), 1 << 20);
    let mut bridge = Bridge::start(&config);
    let c = bridge.client.clone();
    let (d1, d2) = two_agents(dir.path(), &broker.url()).await;
    devices_online(&c, 2).await;
    d1.queue_events(1500).await;
    d2.queue_events(1500).await;

    // The OMS: a consumer that keeps its cursor with the events it took (in memory here:
    // it is never killed), and dedupes nothing; and a pusher that retries each message
    // with its Idempotency-Key until it is accepted.
    let done = Arc::new(AtomicBool::new(false));
    let consumed = Arc::new(Mutex::new((Vec::<Value>::new(), String::new())));
    let consumer = {
        let (c, done, consumed) = (c.clone(), done.clone(), consumed.clone());
        std::thread::spawn(move || {
            let mut c = c;
            c.timeout = Duration::from_secs(10);
            let mut errors = 0u32;
            while !done.load(Ordering::SeqCst) {
                let after = consumed.lock().unwrap().1.clone();
                match c.get(&format!("/v1/events?after={after}&limit=300&wait=1")) {
                    Ok(r) if r.status == 200 => {
                        let v = r.json();
                        let mut g = consumed.lock().unwrap();
                        g.0.extend(v["events"].as_array().unwrap().iter().cloned());
                        g.1 = v["next"].as_str().unwrap().to_string();
                    }
                    Ok(r) => panic!("the events API answered {}: {}", r.status, r.text()),
                    Err(_) => {
                        // The bridge is down (killed): ask again with the same cursor.
                        errors += 1;
                        std::thread::sleep(Duration::from_millis(30));
                    }
                }
            }
            errors
        })
    };
    let pusher = {
        let c = c.clone();
        std::thread::spawn(move || {
            let mut accepted = BTreeMap::<(String, u64), u64>::new();
            let mut attempts = 0u32;
            for w in 1..=WAVES {
                let (site, device) = if w % 2 == 1 {
                    ("site1", "d1")
                } else {
                    ("site2", "d2")
                };
                let down = if w % 10 == 0 {
                    Down::OrderCancelled {
                        order_id: format!("SO-{}", w - 2),
                    }
                } else {
                    one_task_wave(w)
                };
                let key = format!("oms-msg-{w}");
                loop {
                    attempts += 1;
                    let body = serde_json::to_string(&down).unwrap();
                    match c.post(
                        &messages_path(site, device),
                        &[("Idempotency-Key", &key)],
                        &body,
                    ) {
                        Ok(r) if r.status == 202 => {
                            accepted.insert(
                                (device.to_string(), w),
                                r.json()["dseq"].as_u64().unwrap(),
                            );
                            break;
                        }
                        Ok(r) => panic!("POST answered {}: {}", r.status, r.text()),
                        Err(_) => std::thread::sleep(Duration::from_millis(30)),
                    }
                }
                std::thread::sleep(Duration::from_millis(40));
            }
            (accepted, attempts)
        })
    };

    for round in 0..ROUNDS {
        tokio::time::sleep(Duration::from_millis(150 + 20 * round)).await;
        // More events keep arriving while the bridge dies and comes back.
        d1.queue_events(50).await;
        d2.queue_events(50).await;
        bridge.kill(); // SIGKILL, anywhere between receipt, commit, ack and answer
        bridge = Bridge::start(&config);
    }
    let (accepted, attempts) = tokio::task::spawn_blocking(move || pusher.join().unwrap())
        .await
        .unwrap();
    let (h1, h2) = (high_seq(&d1).await, high_seq(&d2).await);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let n = consumed.lock().unwrap().0.len() as u64;
        let b = d1.backlog().await + d2.backlog().await;
        let p1 = applied_through(&d1).await;
        let p2 = applied_through(&d2).await;
        if n >= h1 + h2 && b == 0 && p1 + p2 >= WAVES {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "after the kills: {n} of {} events consumed, backlog {b}, {} of {WAVES} messages applied",
            h1 + h2,
            p1 + p2
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A little longer: anything delivered twice would show now.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    done.store(true, Ordering::SeqCst);
    let errors = tokio::task::spawn_blocking(move || consumer.join().unwrap())
        .await
        .unwrap();
    let events = consumed.lock().unwrap().0.clone();
    assert_exactly_once(&events, &[("site1", "d1", h1), ("site2", "d2", h2)]);
    assert!(
        !events.iter().any(|e| e["kind"] == "Rejected"),
        "no message was refused (a second copy of a wave would be)"
    );
    // Every accepted message has its own number, 1..=n per device, and each was applied
    // once: the agent's applied point is exactly the count.
    for (device, site) in [("d1", "site1"), ("d2", "site2")] {
        let nos: BTreeSet<u64> = accepted
            .iter()
            .filter(|((d, _), _)| d == device)
            .map(|(_, n)| *n)
            .collect();
        let n = WAVES / 2;
        assert_eq!(nos, (1..=n).collect(), "{device}: one number per message");
        let agent = if device == "d1" { &d1 } else { &d2 };
        assert_eq!(applied_through(agent).await, n, "{device}: applied through");
        let c = bridge.client.clone();
        let site = site.to_string();
        let device = device.to_string();
        tokio::task::spawn_blocking(move || {
            for no in 1..=n {
                wait_state(&c, &site, &device, no, "applied");
            }
        })
        .await
        .unwrap();
    }
    eprintln!(
        "{} events consumed once over {ROUNDS} kills ({errors} failed polls), \
         {WAVES} messages accepted in {attempts} POSTs",
        events.len()
    );
    d1.stop().await;
    d2.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_oversized_bodies_bad_json_unknown_devices_and_protocol_limits_are_refused_and_change_nothing()
 {
    bad_input(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgresql_bad_input_is_refused_with_a_json_error_and_changes_nothing() {
    let pg = Postgres::start();
    bad_input(Backend::Postgres(&pg)).await;
}

/// Bad requests to a bridge on `backend`, each checked against the store itself.
async fn bad_input(backend: Backend<'_>) {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(&dir.path().join("broker"), Options::default());
    let config = write_config_on(dir.path(), backend, &broker.url(), free_port(), 64 * 1024);
    let bridge = Bridge::start(&config);
    let c = bridge.client.clone();
    let d1 = TestAgent::start_in(dir.path(), "d1", &broker.url()).await;
    devices_online(&c, 1).await;
    let store_path = dir.path().join("bridge.db");
    let pg_url = match backend {
        Backend::Sqlite => None,
        Backend::Postgres(pg) => Some(pg.url()),
    };
    tokio::task::spawn_blocking(move || {
        use floorhand::store::oms_store::OmsStore;
        let snapshot = || {
            let db: Box<dyn OmsStore> = match &pg_url {
                None => Box::new(floorhand::store::oms_db::OmsDb::open(&store_path).unwrap()),
                Some(url) => {
                    Box::new(floorhand::store::oms_pg::PgStore::open(url, None, 1, None).unwrap())
                }
            };
            let t = db.totals().unwrap();
            // Devices too: a request for an unknown device must not make it known.
            (
                (t.down_pending, t.events, t.devices, t.alarms),
                db.down_stream("site1", "d1").unwrap().high,
            )
        };
        let before = snapshot();
        let path = messages_path("site1", "d1");
        let wave = serde_json::to_string(&one_task_wave(1)).unwrap();
        let check = |r: Response, status: u16, field: &str, what: &str| {
            assert_eq!(r.status, status, "{what}: {}", r.text());
            let v = r.json();
            assert!(
                v["error"].as_str().is_some_and(|e| !e.is_empty()),
                "{what}: {v}"
            );
            assert_eq!(v["field"], field, "{what}: {v}");
            assert_eq!(snapshot(), before, "{what}: the store changed");
        };
        // Tokens.
        let none = Client::new(c.addr, None);
        check(
            none.post(&path, &[], &wave).unwrap(),
            401,
            "Authorization",
            "no token",
        );
        let wrong = Client::new(c.addr, Some("not-the-token-at-all"));
        check(
            wrong.post(&path, &[], &wave).unwrap(),
            401,
            "Authorization",
            "wrong token",
        );
        for p in [
            "/v1/events",
            "/v1/devices",
            "/metrics",
            "/openapi.json",
            "/v1/events/stream",
        ] {
            let r = wrong.get(p).unwrap();
            assert_eq!(r.status, 401, "{p}");
            assert_eq!(r.header("www-authenticate"), Some("Bearer"), "{p}");
        }
        assert_eq!(
            none.get("/healthz").unwrap().status,
            200,
            "healthz needs no token"
        );
        // Size.
        let big = format!(
            "{{\"OrderCancelled\": {{\"order_id\": \"{}\"}}}}",
            "x".repeat(70 * 1024)
        );
        check(
            c.post(&path, &[], &big).unwrap(),
            413,
            "body",
            "oversized body",
        );
        // Malformed JSON, with the field named.
        check(
            c.post(&path, &[], "{\"wave_id\": 1, ").unwrap(),
            400,
            "body",
            "not JSON",
        );
        let mut v: Value = serde_json::from_str(&wave).unwrap();
        v["WaveAssigned"]["tasks"][0]["qty"] = "three".into();
        check(
            c.post(&path, &[], &v.to_string()).unwrap(),
            400,
            "WaveAssigned.tasks[0].qty",
            "wrong type",
        );
        let mut v: Value = serde_json::from_str(&wave).unwrap();
        v["WaveAssigned"]
            .as_object_mut()
            .unwrap()
            .remove("priority");
        check(
            c.post(&path, &[], &v.to_string()).unwrap(),
            400,
            "WaveAssigned.priority",
            "missing field",
        );
        check(
            c.post(&path, &[], "{\"Frobnicate\": {}}").unwrap(),
            400,
            "body",
            "unknown message",
        );
        check(
            c.post(&path, &[], "\"ResyncRequest\"").unwrap(),
            400,
            "body",
            "a control message",
        );
        // Ids and devices.
        check(
            c.post(&messages_path("site1", "d9"), &[], &wave).unwrap(),
            404,
            "device",
            "unknown device",
        );
        check(
            c.post(&messages_path("site2", "d1"), &[], &wave).unwrap(),
            404,
            "device",
            "known at another site only",
        );
        check(
            c.post(&messages_path("site1", "d%2E1"), &[], &wave)
                .unwrap(),
            400,
            "device",
            "bad device id",
        );
        check(
            c.get(&format!("{path}/x")).unwrap(),
            400,
            "dseq",
            "bad dseq",
        );
        check(
            c.get(&format!("{path}/99")).unwrap(),
            404,
            "dseq",
            "no such message",
        );
        // Protocol limits.
        let long = Down::OrderCancelled {
            order_id: "x".repeat(1000),
        };
        let r = c
            .post(&path, &[], &serde_json::to_string(&long).unwrap())
            .unwrap();
        check(r, 400, "order_id", "a text over the limit");
        let mut gtins = one_task_wave(3);
        if let Down::WaveAssigned(w) = &mut gtins {
            let g = w.tasks[0].gtins[0].clone();
            w.tasks[0].gtins = vec![g; 17];
        }
        let r = c
            .post(&path, &[], &serde_json::to_string(&gtins).unwrap())
            .unwrap();
        check(r, 400, "gtins", "too many GTINs on a task");
        // Query parameters.
        check(
            c.get("/v1/events?after=zz").unwrap(),
            400,
            "after",
            "bad cursor",
        );
        check(
            c.get("/v1/events?after=0000000000000001-0000000000000001")
                .unwrap(),
            400,
            "after",
            "another store's cursor",
        );
        check(
            c.get("/v1/events?limit=abc").unwrap(),
            400,
            "limit",
            "bad limit",
        );
        check(
            c.get("/v1/events?limit=0").unwrap(),
            400,
            "limit",
            "a limit of 0",
        );
        check(
            c.get("/v1/events?wait=3600").unwrap(),
            400,
            "wait",
            "wait over max_wait_s",
        );
        check(
            c.get("/v1/events?colour=red").unwrap(),
            400,
            "colour",
            "unknown parameter",
        );
        let r = c.request("DELETE", "/v1/devices", &[], b"").unwrap();
        assert_eq!(r.status, 405, "{}", r.text());
        assert_eq!(r.json()["field"], "method", "{}", r.text());
        assert!(r.text().contains("use GET"), "{}", r.text());
        let r = c.get(&path).unwrap();
        assert_eq!(r.status, 405, "{}", r.text());
        assert!(r.text().contains("use POST"), "{}", r.text());
        let r = c.get("/v1/nothing").unwrap();
        assert_eq!(r.status, 404, "{}", r.text());
        assert!(
            r.json()["error"]
                .as_str()
                .unwrap()
                .contains("no such route")
        );
        // An Idempotency-Key reused for another message.
        let r = c.post(&path, &[("Idempotency-Key", "k1")], &wave).unwrap();
        assert_eq!(r.status, 202, "{}", r.text());
        let after_one = snapshot();
        let other = serde_json::to_string(&one_task_wave(5)).unwrap();
        let r = c.post(&path, &[("Idempotency-Key", "k1")], &other).unwrap();
        assert_eq!(r.status, 422, "{}", r.text());
        assert_eq!(r.json()["field"], "Idempotency-Key");
        // The first message may be applied meanwhile; no second one is numbered.
        assert_eq!(snapshot().1, after_one.1, "a reused key queues nothing");
        // Every documented route is served (the unit test checks the list is the router's).
        let doc = c.get("/openapi.json").unwrap().json();
        for (p, ops) in doc["paths"].as_object().unwrap() {
            let p = p
                .replace("{site}", "site1")
                .replace("{device}", "d1")
                .replace("{dseq}", "1");
            for method in ops.as_object().unwrap().keys() {
                let r = if method == "get" && p.ends_with("/stream") {
                    c.sse(&p, &[]).map(|_| None).unwrap()
                } else {
                    Some(
                        c.request(&method.to_uppercase(), &p, &[], wave.as_bytes())
                            .unwrap(),
                    )
                };
                if let Some(r) = r {
                    assert!(
                        r.status != 405 && !r.text().contains("no such route"),
                        "{method} {p}: {} {}",
                        r.status,
                        r.text()
                    );
                }
            }
        }
        // Still serving.
        assert_eq!(c.get("/healthz").unwrap().status, 200);
    })
    .await
    .unwrap();
    d1.stop().await;
    drop(bridge);
}

/// Runs `examples/oms-client.py` with `args`; returns its stdout lines as JSON.
fn python_client(args: &[&str]) -> Vec<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/oms-client.py");
    let out = Command::new("python3")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "oms-client.py {args:?}: {err}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_example_client_pushes_a_wave_and_consumes_events_by_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(&dir.path().join("broker"), Options::default());
    let config = write_config(dir.path(), &broker.url(), free_port(), 16 << 20);
    let bridge = Bridge::start(&config);
    let d1 = TestAgent::start_in(dir.path(), "d1", &broker.url()).await;
    devices_online(&bridge.client, 1).await;
    let url = format!("http://{}", bridge.client.addr);
    let token = dir.path().join("bridge.token");
    let cursor = dir.path().join("oms.cursor");
    let wave = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/wave.json");
    let common = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "--url",
            &url,
            "--token-file",
            token.to_str().unwrap(),
            "--site",
            "site1",
            "--device",
            "d1",
            "--cursor-file",
            cursor.to_str().unwrap(),
            "--timeout",
            "30",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let run = |extra: Vec<String>| async move {
        tokio::task::spawn_blocking(move || {
            python_client(&extra.iter().map(String::as_str).collect::<Vec<_>>())
        })
        .await
        .unwrap()
    };
    // Push: the script returns once the device applied the wave.
    let printed = run(common(&["--wave", wave.to_str().unwrap()])).await;
    assert!(printed.is_empty());
    let open = open_tasks(&d1).await;
    assert_eq!(open, 2, "the example wave's tasks are on the device");
    // Consume, then consume again from the stored cursor: nothing repeats.
    d1.queue_events(5).await;
    let first = run(common(&["--events", "5"])).await;
    d1.queue_events(3).await;
    let second = run(common(&["--events", "3"])).await;
    let seqs: Vec<u64> = first
        .iter()
        .chain(&second)
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=8).collect::<Vec<_>>());
    assert!(
        first
            .iter()
            .all(|e| e["device"] == "d1" && e["kind"] == "Skipped")
    );
    d1.stop().await;
}

/// The counter `name` in a bridge's `/metrics`.
fn metric(c: &Client, name: &str) -> u64 {
    let text = c.get("/metrics").unwrap().text();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("floorhand_bridge_{name} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_bridges_on_postgresql_share_the_devices_and_one_killed_mid_drain_loses_nothing() {
    const PER_BRIDGE: u64 = 10;
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(&dir.path().join("broker"), Options::default());
    let start = |name: &str| {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        let config = write_config_on(
            &d,
            Backend::Postgres(&pg),
            &broker.url(),
            free_port(),
            1 << 20,
        );
        let text = std::fs::read_to_string(&config).unwrap().replace(
            "client_id = \"bridge-test\"",
            &format!("client_id = \"{name}\"\nshared_group = \"bridges\""),
        );
        std::fs::write(&config, text).unwrap();
        Bridge::start(&config)
    };
    let a = start("bridge-a");
    let b = start("bridge-b");
    let (ca, cb) = (a.client.clone(), b.client.clone());
    let (d1, d2) = two_agents(dir.path(), &broker.url()).await;
    devices_online(&cb, 2).await;
    d1.queue_events(1500).await;
    d2.queue_events(1500).await;

    // Messages go in through both bridges; B's consumer reads everything by cursor.
    let push_through = |c: Client, first: u64| {
        std::thread::spawn(move || {
            let mut nos = Vec::new();
            for w in first..first + 2 * PER_BRIDGE {
                let (site, device) = if w % 2 == 1 {
                    ("site1", "d1")
                } else {
                    ("site2", "d2")
                };
                let r = push(&c, site, device, &one_task_wave(w), Some(&format!("w{w}")));
                assert_eq!(r.status, 202, "{}", r.text());
                nos.push((device, r.json()["dseq"].as_u64().unwrap()));
            }
            nos
        })
    };
    let through_a = tokio::task::spawn_blocking({
        let ca = ca.clone();
        move || push_through(ca, 1).join().unwrap()
    })
    .await
    .unwrap();
    // Both bridges store events: the broker hands each message to one of them.
    let (cb2, ca2) = (cb.clone(), ca.clone());
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        while metric(&ca2, "events_in_total") == 0 || metric(&cb2, "events_in_total") == 0 {
            assert!(Instant::now() < deadline, "one bridge stored nothing");
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await
    .unwrap();
    a.kill(); // mid-drain, holding claims and a share of the subscription
    let through_b = tokio::task::spawn_blocking({
        let cb = cb.clone();
        move || push_through(cb, 1 + 2 * PER_BRIDGE).join().unwrap()
    })
    .await
    .unwrap();
    let (h1, h2) = (high_seq(&d1).await, high_seq(&d2).await);
    let c = cb.clone();
    let events =
        tokio::task::spawn_blocking(move || consume(&c, String::new(), (h1 + h2) as usize).0)
            .await
            .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let c = cb.clone();
    let last = events.last().unwrap()["cursor"]
        .as_str()
        .unwrap()
        .to_string();
    let more = tokio::task::spawn_blocking(move || {
        c.get(&format!("/v1/events?after={last}")).unwrap().json()
    })
    .await
    .unwrap();
    assert_eq!(
        more["events"].as_array().unwrap().len(),
        0,
        "nothing twice: {more}"
    );
    assert_exactly_once(&events, &[("site1", "d1", h1), ("site2", "d2", h2)]);
    for a in [&d1, &d2] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while a.backlog().await > 0 {
            assert!(tokio::time::Instant::now() < deadline, "backlog not acked");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Every message, accepted by either bridge, applied once: numbers 1..=n per device.
    let mut nos: Vec<(&str, u64)> = through_a.into_iter().chain(through_b).collect();
    nos.sort();
    let want: Vec<(&str, u64)> = (1..=2 * PER_BRIDGE)
        .map(|n| ("d1", n))
        .chain((1..=2 * PER_BRIDGE).map(|n| ("d2", n)))
        .collect();
    assert_eq!(nos, want);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while applied_through(&d1).await < 2 * PER_BRIDGE || applied_through(&d2).await < 2 * PER_BRIDGE
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "messages not applied after the kill"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(applied_through(&d1).await, 2 * PER_BRIDGE);
    assert_eq!(open_tasks(&d1).await as u64, 2 * PER_BRIDGE);
    assert_eq!(open_tasks(&d2).await as u64, 2 * PER_BRIDGE);
    let c = cb.clone();
    tokio::task::spawn_blocking(move || {
        for n in 1..=2 * PER_BRIDGE {
            wait_state(&c, "site1", "d1", n, "applied");
            wait_state(&c, "site2", "d2", n, "applied");
        }
    })
    .await
    .unwrap();
    d1.stop().await;
    d2.stop().await;
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_pushed_while_the_broker_is_down_is_accepted_at_once_and_applied_when_it_returns()
{
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Mosquitto::start(&dir.path().join("broker"), Options::default());
    let config = write_config(dir.path(), &broker.url(), free_port(), 16 << 20);
    let bridge = Bridge::start(&config);
    let c = bridge.client.clone();
    let d1 = TestAgent::start_in(dir.path(), "d1", &broker.url()).await;
    devices_online(&c, 1).await;
    broker.stop();
    let c2 = c.clone();
    let (took, dseq) = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        while c2.get("/healthz").unwrap().json()["broker_connected"] == true {
            assert!(
                Instant::now() < deadline,
                "the bridge never noticed the broker left"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // Past the first reconnect attempts: the session is in its backoff.
        std::thread::sleep(Duration::from_millis(1500));
        let t = Instant::now();
        let r = push(&c2, "site1", "d1", &one_task_wave(1), Some("offline-1"));
        assert_eq!(r.status, 202, "{}", r.text());
        let dseq = r.json()["dseq"].as_u64().unwrap();
        let state = c2
            .get(&format!("{}/{dseq}", messages_path("site1", "d1")))
            .unwrap()
            .json();
        assert_eq!(state["state"], "queued", "{state}");
        (t.elapsed(), dseq)
    })
    .await
    .unwrap();
    assert!(
        took < Duration::from_secs(1),
        "a push waited {took:?} for the broker"
    );
    broker.start_again();
    let c3 = c.clone();
    tokio::task::spawn_blocking(move || wait_state(&c3, "site1", "d1", dseq, "applied"))
        .await
        .unwrap();
    assert_eq!(open_tasks(&d1).await, 1);
    d1.stop().await;
    // SIGTERM with the broker gone again: the bridge stops promptly, exit 0.
    broker.stop();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let t = Instant::now();
    assert!(bridge.stop().success());
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "stopping took {:?}",
        t.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_whose_group_commit_fails_gets_a_json_503_and_queues_nothing_and_numbers_stay_gapless()
 {
    const CLIENTS: usize = 12;
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(&dir.path().join("broker"), Options::default());
    let config = write_config(dir.path(), &broker.url(), free_port(), 1 << 20);
    let bridge = Bridge::start(&config);
    let c = bridge.client.clone();
    let d1 = TestAgent::start_in(dir.path(), "d1", &broker.url()).await;
    devices_online(&c, 1).await;
    // Every insert of a message holding "POISON" fails inside its transaction, as a full
    // disk would: the whole group that holds it must fail, whoever else is in it.
    floorhand::store::oms_db::fail_down_inserts_containing(&dir.path().join("bridge.db"), "POISON")
        .unwrap();
    let order = |i: usize| {
        if i == CLIENTS / 2 {
            "POISON".to_string()
        } else {
            format!("SO-{i}")
        }
    };
    // Concurrent clients: some of them share the poisoned message's commit.
    let barrier = Arc::new(std::sync::Barrier::new(CLIENTS));
    let answers: Vec<(usize, u16, Value)> = (0..CLIENTS)
        .map(|i| {
            let (c, barrier, id) = (c.clone(), barrier.clone(), order(i));
            std::thread::spawn(move || {
                let down = Down::OrderCancelled {
                    order_id: id.clone(),
                };
                barrier.wait();
                let r = push(&c, "site1", "d1", &down, Some(&id));
                (i, r.status, r.json())
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    let mut accepted = BTreeMap::new();
    for (i, status, body) in &answers {
        match status {
            202 => {
                accepted.insert(body["dseq"].as_u64().unwrap(), order(*i));
            }
            503 => assert!(
                body["error"].as_str().unwrap().contains("insert refused"),
                "{}: {body}",
                order(*i)
            ),
            other => panic!("{}: {other} {body}", order(*i)),
        }
        if *i == CLIENTS / 2 {
            assert_eq!(*status, 503, "the poisoned message was accepted: {body}");
        }
    }
    // What was answered 202 is stored under numbers 1..=n; a failed group used none.
    let n = accepted.len() as u64;
    assert_eq!(
        accepted.keys().copied().collect::<Vec<_>>(),
        (1..=n).collect::<Vec<_>>()
    );
    // Retried with their keys, the refused ones (but the poisoned one) are accepted now,
    // the accepted ones get their first numbers again; nothing was half-queued.
    let c2 = c.clone();
    let retried = tokio::task::spawn_blocking(move || {
        (0..CLIENTS)
            .filter(|&i| i != CLIENTS / 2)
            .map(|i| {
                let id = order(i);
                let r = push(
                    &c2,
                    "site1",
                    "d1",
                    &Down::OrderCancelled {
                        order_id: id.clone(),
                    },
                    Some(&id),
                );
                assert_eq!(r.status, 202, "{id}: {}", r.text());
                (r.json()["dseq"].as_u64().unwrap(), id)
            })
            .collect::<BTreeMap<u64, String>>()
    })
    .await
    .unwrap();
    assert_eq!(
        retried.keys().copied().collect::<Vec<_>>(),
        (1..=(CLIENTS as u64 - 1)).collect::<Vec<_>>(),
        "one number per message, no gap"
    );
    for (dseq, id) in &accepted {
        assert_eq!(retried.get(dseq), Some(id), "{id} kept its number");
    }
    // Each is applied once by the device.
    let c3 = c.clone();
    tokio::task::spawn_blocking(move || {
        wait_state(&c3, "site1", "d1", CLIENTS as u64 - 1, "applied")
    })
    .await
    .unwrap();
    assert_eq!(applied_through(&d1).await, CLIENTS as u64 - 1);
    d1.stop().await;
}
