//! The scale reader (`devices::scale`) over a real pseudo-terminal pair (the shared one): a
//! fake scale writes its continuous output, and only settled, stable weights come out,
//! in grams; garbage and overload lines are skipped; an unplugged scale is reported and
//! read again when it is back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use floorhand::devices::scale::{self, ScaleConfig, ScaleEvent};
use floorhand_tests::station_support::ScannerWire;

fn next(rx: &mpsc::Receiver<ScaleEvent>) -> ScaleEvent {
    // A hang guard so a broken reader fails the test instead of hanging it.
    rx.recv_timeout(Duration::from_secs(20))
        .expect("a scale event")
}

#[test]
fn a_fake_scale_on_a_pty_delivers_each_stable_weight_once_in_grams() {
    let dir = tempfile::tempdir().unwrap();
    let mut wire = ScannerWire::new(&dir.path().join("scale"));
    let config = ScaleConfig {
        port: wire.port.clone(),
        baud: 9600,
        reopen_ms: 50,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let reader = {
        let stop = stop.clone();
        std::thread::spawn(move || scale::run(&config, &stop, |ev| tx.send(ev).is_ok()))
    };
    // A pty drops what is written before the reader has opened its end: say a weight
    // until it comes out, so the reader is known to be listening.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        wire.send(b"ST,GS,+  0.100kg\r\n");
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(ev) => {
                assert_eq!(ev, ScaleEvent::Weight(100), "the handshake weight");
                break;
            }
            Err(_) => assert!(
                std::time::Instant::now() < deadline,
                "the reader never opened its port"
            ),
        }
    }
    wire.send(
        b"US,GS,+  0.480kg\r\n\
          US,GS,+  1.246kg\r\n\
          \x00\xff garbage \x01\r\n\
          ST,GS,+  1.250kg\r\n\
          ST,GS,+  1.250kg\r\n\
          ST,GS,+  1.250kg\r\n\
          OL,GS,+ 99.999kg\r\n\
          ST,GS,- 0.005kg\r\n\
          US,GS,+  1.100lb\r\n\
          ST,GS,+  2.50lb\r\n\
          ST,GS,+  2.50lb\r\n",
    );
    assert_eq!(
        next(&rx),
        ScaleEvent::Weight(1250),
        "the first stable weight"
    );
    assert_eq!(
        next(&rx),
        ScaleEvent::Weight(1134),
        "2.5 lb, once: repeats of a settled weight are not news"
    );

    wire.unplug();
    assert!(matches!(next(&rx), ScaleEvent::Disconnected(_)));
    wire.plug_in();
    assert_eq!(next(&rx), ScaleEvent::Reconnected);
    // After a reconnect the weight on the pan is delivered again, even if unchanged.
    wire.send(b"ST,GS,+  2.50lb\r\n");
    assert_eq!(next(&rx), ScaleEvent::Weight(1134));

    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    assert!(
        rx.try_recv().is_err(),
        "nothing else came out: the garbage, overload and negative lines were skipped"
    );
}
