//! Sync with the OMS over a real Mosquitto: exactly once, in order, through outages,
//! link faults, TLS, bad credentials and bad input.

use std::time::Duration;

use floorhand::sync::agent::LinkState;
use floorhand_protocol::envelope::encode_to_vec;
use floorhand_protocol::limits::WINDOW;
use floorhand_protocol::oms::{Down, DownMsg, EventKind, RejectReason, Wave, wave_digest};
use floorhand_protocol::{Envelope, examples};
use floorhand_tests::mosquitto::{BrokerTls, Mosquitto, Options};
use floorhand_tests::proxy::{FaultProxy, Mode};
use floorhand_tests::sync_support::*;
use floorhand_tests::wire_tap::WireTap;

fn wave(wave_id: u64, version: u32, n: u64) -> Wave {
    let tasks: Vec<_> = (1..=n)
        .map(|i| examples::task(wave_id * 1000 + i, &format!("A-{i:02}"), i as u32))
        .collect();
    Wave {
        wave_id,
        version,
        priority: 1,
        cutoff: 0,
        task_count: tasks.len() as u32,
        digest: wave_digest(&tasks),
        tasks,
    }
}

async fn open_tasks(agent: &TestAgent) -> usize {
    agent
        .store
        .call(|db| db.open_tasks().map(|t| t.len()))
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_flow_up_are_acked_and_deleted_and_a_wave_delivered_twice_applies_once() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(&dir.path().join("broker"), Options::default());
    let (oms, inbox) = start_oms(&broker.url(), "oms-basic");
    let tap = WireTap::start(broker.port);
    let agent = TestAgent::start_in(dir.path(), "d1", &broker.url()).await;
    wait_until(Duration::from_secs(10), "link up", || agent.is_up()).await;
    agent.queue_events(50).await;
    wait_until(Duration::from_secs(20), "50 events acked", || {
        oms.ack_point("d1") == 50
    })
    .await;
    agent.wait_drained(Duration::from_secs(10)).await;
    assert_all_in_order(&tap, "d1", 50).await;
    assert_oms_got_each_once(&inbox, "d1", 50).await;
    assert!(inbox.births() >= 1, "a birth is published after connect");

    // A wave, then the same down seq delivered again (as a broker redelivers): the copy is
    // a duplicate, changes nothing, and is acknowledged again.
    let no = oms
        .send("d1", Down::WaveAssigned(wave(7, 1, 5)))
        .await
        .unwrap();
    let stats = agent.sync.stats.clone();
    wait_until(Duration::from_secs(10), "wave applied", || {
        stats.borrow().applied >= 1
    })
    .await;
    let me = agent.store.call(|db| db.incarnation()).await.unwrap();
    let copy = Envelope::new(
        1,
        DownMsg {
            oms_incarnation: oms.incarnation(),
            to_incarnation: me,
            body: Down::WaveAssigned(wave(7, 1, 5)),
        },
    );
    oms.send_envelope("d1", &copy).await.unwrap();
    wait_until(Duration::from_secs(10), "the copy handled", || {
        stats.borrow().duplicates == 1
    })
    .await;
    assert_eq!(open_tasks(&agent).await, 5);
    // The agent's DownAck reaches the OMS side's store.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let st = oms.state(None, "d1", no).await.unwrap();
        if st == Some(floorhand::sync::oms::DownState::Applied) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "message {no}: {st:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    agent.stop().await;
}

async fn drain_through_outage(persistence: bool) {
    const N: u64 = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Mosquitto::start(
        &dir.path().join("broker"),
        Options {
            persistence,
            ..Options::default()
        },
    );
    let (oms, inbox) = start_oms(&broker.url(), "oms-outage");
    let tap = WireTap::start(broker.port);
    let agent = TestAgent::start_in(dir.path(), "d1", &broker.url()).await;
    agent.queue_events(N).await;
    wait_until(
        Duration::from_secs(60),
        "a third of the events received",
        || inbox.events().len() as u64 >= N / 3,
    )
    .await;
    if persistence {
        broker.stop(); // SIGTERM: the broker saves sessions and queues
    } else {
        broker.kill(); // SIGKILL: everything in the broker is gone
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!agent.is_up(), "the agent noticed the outage");
    broker.start_again();
    wait_until(Duration::from_secs(120), "every event acked", || {
        oms.ack_point("d1") == N
    })
    .await;
    assert_oms_got_each_once(&inbox, "d1", N).await;
    agent.wait_drained(Duration::from_secs(10)).await;
    let c = oms.counters();
    assert_eq!(c.events, N, "each event processed once by the OMS");
    // On the wire: one outage re-sends what was in flight at the cut, and what the OMS
    // missed while it reconnected: a few windows at most, each a re-send the agent counted.
    let stats = agent.sync.stats.borrow().clone();
    let bound = stats.resent.min(4 * WINDOW as u64);
    // Only the tap's copies are counted, not its completeness: the tap (QoS 0) gets nothing
    // while mosquitto_sub waits a second to reconnect. A copy the broker itself delivers
    // again under the same packet id would be counted apart (`redelivered`).
    let t = tap.tally("d1");
    assert!(t.changed.is_empty(), "seqs re-sent with other bytes");
    assert!(t.seqs().iter().all(|s| (1..=N).contains(s)));
    if !persistence {
        assert_eq!(t.redelivered, 0, "a killed broker kept the tap's session");
    }
    assert!(
        t.duplicates <= bound,
        "{} duplicates on the wire, at most {bound} ({} re-sent by the agent, {} connects, \
         {} redelivered to the tap by the broker); seqs with copies: {:?}",
        t.duplicates,
        stats.resent,
        stats.connects,
        t.redelivered,
        tap.copies("d1")
            .iter()
            .filter(|(_, c)| **c > 1)
            .take(10)
            .collect::<Vec<_>>()
    );
    eprintln!(
        "outage (persistence {persistence}): {} events, {} publishes on the wire ({} duplicates, \
         {} redelivered to the tap), {} re-sent by the agent, {} duplicates dropped by the OMS, \
         {} connects",
        c.events,
        t.publishes,
        t.duplicates,
        t.redelivered,
        stats.resent,
        c.duplicates,
        stats.connects
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_events_survive_a_broker_restart_with_persistence() {
    drain_through_outage(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_events_survive_a_broker_killed_without_persistence() {
    drain_through_outage(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_through_twenty_cuts_stalls_and_black_holes() {
    // Twenty rounds. Each queues a batch while the link is deaf (the OMS's acks are held),
    // waits until the batch is on the wire, then faults the link with the batch in
    // flight: published, perhaps delivered, not acknowledged.
    const ROUNDS: u64 = 20;
    const BATCH: u64 = 150;
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(&dir.path().join("broker"), Options::default());
    let upstream = format!("127.0.0.1:{}", broker.port).parse().unwrap();
    let proxy = FaultProxy::start(upstream).expect("start the fault proxy");
    let (oms, inbox) = start_oms(&broker.url(), "oms-faults");
    let tap = WireTap::start(broker.port);
    let agent = TestAgent::start_in(dir.path(), "d1", &proxy.url()).await;
    wait_until(Duration::from_secs(10), "link up", || agent.is_up()).await;
    let mut unacked_at_fault = Vec::new();
    let (mut queued, mut void) = (0u64, 0u64);
    while (unacked_at_fault.len() as u64) < ROUNDS {
        let i = unacked_at_fault.len() as u64;
        assert!(
            void <= ROUNDS,
            "{void} rounds void: the agent kept dropping its link while deaf"
        );
        // The last round's batch is through first: deaf before the agent is connected
        // would hold its ConnAck, and acks still held would keep its window shut.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !agent.is_up() || agent.backlog().await > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "round {i}: the last batch was not acked within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        proxy.set_mode(Mode::Deaf);
        agent.queue_events(BATCH).await;
        let first = queued + 1;
        queued += BATCH;
        // A deaf link also holds the PINGRESP: if a keep-alive runs out while deaf (a loaded
        // machine), the agent reconnects and its ConnAck would be held for good. Let it
        // through then; the batch drains unfaulted, so the round is void and done again.
        let mut rescued = false;
        wait_until(
            Duration::from_secs(30),
            &format!("round {i}: event {first} on the wire"),
            || {
                if !agent.is_up() {
                    rescued = true;
                    proxy.set_mode(Mode::Pass);
                }
                tap.tally("d1").seqs().contains(&first)
            },
        )
        .await;
        if rescued {
            void += 1;
            eprintln!("round {i}: the agent reconnected while deaf; the round is done again");
            proxy.set_mode(Mode::Pass);
            continue;
        }
        unacked_at_fault.push(agent.backlog().await);
        match i % 3 {
            0 => {
                proxy.cut();
                proxy.set_mode(Mode::Pass);
            }
            1 => {
                proxy.set_mode(Mode::Stall);
                tokio::time::sleep(Duration::from_millis(700)).await;
                proxy.set_mode(Mode::Pass);
            }
            _ => {
                proxy.set_mode(Mode::Blackhole);
                proxy.cut();
                tokio::time::sleep(Duration::from_millis(1200)).await;
                proxy.set_mode(Mode::Pass);
            }
        }
    }
    assert!(
        unacked_at_fault.iter().all(|&n| n > 0),
        "every fault hit unacknowledged events: {unacked_at_fault:?}"
    );
    let n = queued;
    wait_until(Duration::from_secs(90), "every event acked", || {
        oms.ack_point("d1") == n
    })
    .await;
    assert_oms_got_each_once(&inbox, "d1", n).await;
    agent.wait_drained(Duration::from_secs(10)).await;
    let stats = agent.sync.stats.borrow().clone();
    // Every copy on the wire is a re-send the agent made on purpose (after a reconnect, or
    // when no ack came), and the deaf rounds make some: the faults hit a busy link.
    let t = assert_on_wire(&tap, "d1", n, stats.resent).await;
    assert!(
        t.duplicates > 0,
        "no event was re-sent: the faults missed the traffic"
    );
    assert!(
        stats.connects > ROUNDS / 3,
        "the cuts forced reconnects: {stats:?}"
    );
    eprintln!(
        "{ROUNDS} faults with {unacked_at_fault:?} unacked; {} publishes on the wire ({} duplicates), \
         {} re-sent, {} connects",
        t.publishes, t.duplicates, stats.resent, stats.connects
    );
    agent.stop().await;
}

/// A CA and a broker certificate for `localhost`, and a client certificate.
pub(crate) struct Pki {
    pub(crate) ca: std::path::PathBuf,
    pub(crate) server_cert: std::path::PathBuf,
    pub(crate) server_key: std::path::PathBuf,
    pub(crate) client_cert: std::path::PathBuf,
    pub(crate) client_key: std::path::PathBuf,
}

fn make_pki(dir: &std::path::Path) -> Pki {
    make_pki_for(dir, "localhost")
}

/// A new CA in `dir`, a server certificate for `server` (a DNS name, or an IP address,
/// which becomes an IP SAN) and a client certificate `d1`, all signed by it.
pub(crate) fn make_pki_for(dir: &std::path::Path, server: &str) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    // Every certificate needs its own subject: OpenSSL (in Mosquitto) takes a
    // certificate whose subject equals its issuer for a self-signed one.
    let params = |sans: Vec<String>, cn: &str| {
        let mut p = CertificateParams::new(sans).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p
    };
    std::fs::create_dir_all(dir).unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = params(vec![], "Floorhand test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server = params(vec![server.to_string()], server)
        .signed_by(&server_key, &issuer)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client = params(vec!["d1".to_string()], "d1")
        .signed_by(&client_key, &issuer)
        .unwrap();
    let w = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    Pki {
        ca: w("ca.pem", ca.pem()),
        server_cert: w("server.pem", server.pem()),
        server_key: w("server.key", server_key.serialize_pem()),
        client_cert: w("client.pem", client.pem()),
        client_key: w("client.key", client_key.serialize_pem()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_flow_over_tls_with_a_ca_made_for_the_test_and_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(&dir.path().join("pki"));
    let broker = Mosquitto::start(
        &dir.path().join("broker"),
        Options {
            tls: Some(BrokerTls {
                ca: pki.ca.clone(),
                cert: pki.server_cert.clone(),
                key: pki.server_key.clone(),
                require_client_cert: true,
            }),
            ..Options::default()
        },
    );
    let mut b = test_broker(&broker.url());
    b.ca_file = Some(pki.ca.clone());
    b.cert_file = Some(pki.client_cert.clone());
    b.key_file = Some(pki.client_key.clone());
    // The OMS side uses the same client certificate: the broker requires one.
    let mut oms_b = b.clone();
    oms_b.connect_timeout = Duration::from_secs(1);
    let s = floorhand::sync::oms::OmsSettings {
        broker: oms_b,
        site: "site1".into(),
        client_id: "oms-tls".into(),
        ack: floorhand::sync::oms::AckMode::Stored,
        store: std::path::PathBuf::from(":memory:"),
        clean_session: true,
    };
    let (oms, _rx) = floorhand::sync::oms::OmsSession::start(&s).unwrap();
    let agent =
        TestAgent::start(&dir.path().join("d1.db"), test_sync_config("d1", b.clone())).await;
    agent.queue_events(20).await;
    wait_until(Duration::from_secs(20), "20 events acked over TLS", || {
        oms.ack_point("d1") == 20
    })
    .await;
    agent.stop().await;

    // Without the client certificate the broker refuses the handshake: a clear error,
    // retried with backoff, never a crash.
    let mut no_cert = b.clone();
    no_cert.cert_file = None;
    no_cert.key_file = None;
    let agent = TestAgent::start(&dir.path().join("d2.db"), test_sync_config("d2", no_cert)).await;
    let error = wait_for_link_error(&agent).await;
    // rustls reports the broker's alert; the link passes it on as it is.
    assert!(error.contains("CertificateRequired"), "{error}");
    assert_eq!(agent.sync.stats.borrow().connects, 0);
    agent.stop().await;

    // A broker certificate signed by another CA than the one configured is refused: a
    // client that trusted any certificate would connect here.
    let other = make_pki(&dir.path().join("other-pki"));
    let mut wrong_ca = b.clone();
    wrong_ca.ca_file = Some(other.ca.clone());
    let agent = TestAgent::start(&dir.path().join("d3.db"), test_sync_config("d3", wrong_ca)).await;
    let error = wait_for_link_error(&agent).await;
    assert!(
        error.starts_with("TLS: ")
            && error.contains("certificate")
            && error.contains("check broker.ca_file"),
        "{error}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!agent.is_up(), "connected to a broker of another CA");
    assert_eq!(agent.sync.stats.borrow().connects, 0);
    agent.stop().await;
}

/// Waits until the link reports an error other than "connecting" and returns it.
async fn wait_for_link_error(agent: &TestAgent) -> String {
    let mut state = agent.sync.state.clone();
    let mut last = String::new();
    wait_until(
        Duration::from_secs(10),
        "a connection error",
        || match &*state.borrow_and_update() {
            LinkState::Down { error, .. } if error != "connecting" => {
                last = error.clone();
                true
            }
            LinkState::Up { .. } => panic!("the link came up"),
            _ => false,
        },
    )
    .await;
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_give_a_clear_error_and_backoff_not_a_crash_loop() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(
        &dir.path().join("broker"),
        Options {
            users: vec![("d1".into(), "right-password".into())],
            ..Options::default()
        },
    );
    let mut b = test_broker(&broker.url());
    b.username = Some("d1".into());
    b.password = Some("wrong-password".into());
    let agent =
        TestAgent::start(&dir.path().join("d1.db"), test_sync_config("d1", b.clone())).await;
    let mut state = agent.sync.state.clone();
    wait_until(Duration::from_secs(10), "a refusal is reported", || {
        matches!(&*state.borrow_and_update(), LinkState::Down { error, .. } if error.contains("refused"))
    })
    .await;
    let LinkState::Down { error, .. } = agent.sync.state.borrow().clone() else {
        panic!("link is up with a wrong password")
    };
    assert!(
        error.contains("username or password") || error.contains("not authorised"),
        "{error}"
    );
    // Still running, still trying, with growing delays (50 ms doubling to 500 ms): a
    // crash loop would make hundreds of attempts in these two seconds.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let attempts = broker.log().matches("not authorised").count()
        + broker.log().matches("bad user name or password").count();
    assert!(
        (2..40).contains(&attempts),
        "{attempts} attempts in the log"
    );
    agent.stop().await;

    // With the right password the same agent database connects.
    b.password = Some("right-password".into());
    let agent = TestAgent::start(&dir.path().join("d1.db"), test_sync_config("d1", b)).await;
    wait_until(Duration::from_secs(10), "link up", || agent.is_up()).await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_foreign_messages_are_rejected_and_reported_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(&dir.path().join("broker"), Options::default());
    let (oms, inbox) = start_oms(&broker.url(), "oms-garbage");
    let agent = TestAgent::start_in(dir.path(), "d1", &broker.url()).await;
    wait_until(Duration::from_secs(10), "link up", || agent.is_up()).await;
    oms.send("d1", Down::WaveAssigned(wave(1, 1, 3)))
        .await
        .unwrap();
    wait_until(Duration::from_secs(10), "wave applied", || {
        agent.sync.stats.borrow().applied >= 1
    })
    .await;

    // Undecodable bytes, another protocol version, an empty payload, and bytes that
    // claim to be 2 MiB of tasks.
    oms.send_raw("d1", vec![0x02, 0xff, 0xff, 0xff, 0xff])
        .await
        .unwrap();
    let mut v9 = encode_to_vec(&Envelope::new(555u64, Down::ResyncRequest));
    v9[0] = 9;
    oms.send_raw("d1", v9).await.unwrap();
    oms.send_raw("d1", vec![]).await.unwrap();
    let mut huge = encode_to_vec(&Envelope::new(556u64, ()));
    huge.extend_from_slice(&[0xff; 64]);
    oms.send_raw("d1", huge).await.unwrap();
    // A message for another device never reaches this one: it subscribes to its own topic.
    oms.send("d2", Down::WaveAssigned(wave(2, 1, 4)))
        .await
        .unwrap();

    wait_until(Duration::from_secs(10), "four rejections reported", || {
        inbox
            .kinds()
            .iter()
            .filter(|k| matches!(k, EventKind::Rejected { .. }))
            .count()
            == 4
    })
    .await;
    let kinds = inbox.kinds();
    // Another version's header means nothing in ours, and garbage has none: msg_id 0.
    assert!(kinds.iter().any(|k| matches!(
        k,
        EventKind::Rejected { msg_id: 0, reason: RejectReason::UnsupportedVersion, detail } if detail.contains("version 9")
    )), "{kinds:?}");
    assert_eq!(
        kinds
            .iter()
            .filter(|k| matches!(
                k,
                EventKind::Rejected {
                    msg_id: 0,
                    reason: RejectReason::Malformed,
                    ..
                }
            ))
            .count(),
        3,
        "{kinds:?}"
    );
    assert_eq!(open_tasks(&agent).await, 3, "state unchanged by bad input");

    // The agent is still alive and applies the next good message.
    oms.send("d1", Down::WaveAssigned(wave(3, 1, 2)))
        .await
        .unwrap();
    // (`applied` also counts the OMS's acks of the rejections, so wait for the tasks.)
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while open_tasks(&agent).await != 5 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "next wave not applied"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    agent.stop().await;
}
