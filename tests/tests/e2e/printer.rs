//! The printer module (`devices::printer`) against the shared fake Zebra printer
//! (`floorhand_tests::fake_printer`) on a real TCP socket and on a real serial pty (the
//! shared pty pair): faults are never counted as printed and the job is retried after
//! recovery; a label the printer took but still holds in its buffer is confirmed, never
//! sent again, also after a restart; a stop ends the writer thread after its attempt.

use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::Duration;

use floorhand::devices::printer::{
    self, Fault, JobReport, PrintJob, Printer, PrinterConfig, PrinterView, QueuedJob, Transport,
};
use floorhand_protocol::oms::PrinterState;
use floorhand_tests::fake_printer::{FakePrinter, Mode};
use floorhand_tests::pty::PtyPair;

fn config(transport: Transport) -> PrinterConfig {
    PrinterConfig {
        transport,
        timeout: Duration::from_millis(400),
        retry_every: Duration::from_millis(30),
        poll_every: Duration::from_millis(200),
    }
}

/// The writer thread as the station runs it, with its stop flag.
struct Worker {
    jobs: mpsc::Sender<QueuedJob>,
    reports: Receiver<JobReport>,
    state: tokio::sync::watch::Receiver<PrinterView>,
    stop: Arc<AtomicBool>,
    done: Receiver<()>,
}

fn start_worker(cfg: PrinterConfig) -> Worker {
    let (jobs_tx, jobs_rx) = mpsc::channel();
    let (reports_tx, reports_rx) = mpsc::channel();
    let (state_tx, state_rx) = tokio::sync::watch::channel(PrinterView {
        state: PrinterState::Offline,
        fault: None,
    });
    let stop = Arc::new(AtomicBool::new(false));
    let (done_tx, done) = mpsc::channel();
    let flag = stop.clone();
    thread::spawn(move || {
        printer::run_until(Printer::new(cfg), jobs_rx, reports_tx, state_tx, &flag);
        let _ = done_tx.send(());
    });
    Worker {
        jobs: jobs_tx,
        reports: reports_rx,
        state: state_rx,
        stop,
        done,
    }
}

impl Worker {
    fn send(&self, id: u64) {
        self.jobs.send(job(id).into()).unwrap();
    }

    fn next_report(&self) -> JobReport {
        // A hang guard, not a speed check.
        self.reports
            .recv_timeout(Duration::from_secs(20))
            .expect("a report from the printer worker")
    }

    /// Sets the stop flag and waits for the thread to return.
    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.done
            .recv_timeout(Duration::from_secs(20))
            .expect("the writer thread returns after a stop");
    }
}

fn job(id: u64) -> PrintJob {
    PrintJob {
        job_id: id,
        zpl: format!("^XA^CI28^FO10,10^FH^FDjob {id}^FS^XZ").into_bytes(),
    }
}

/// The scenario every transport must pass: printed when ready; paper out and head open
/// are faults, not printed, and the job prints once the printer recovers.
fn faults_are_not_printed_and_retried_after_recovery(fake: &FakePrinter, w: &Worker) {
    w.send(1);
    assert_eq!(w.next_report(), JobReport::Printed { job_id: 1 });
    assert_eq!(fake.jobs(), vec![job(1).zpl]);
    assert_eq!(w.state.borrow().state, PrinterState::Ready);

    fake.set_mode(Mode::PaperOut);
    w.send(2);
    assert_eq!(
        w.next_report(),
        JobReport::Failed {
            job_id: 2,
            fault: Fault::PaperOut
        }
    );
    assert_eq!(w.state.borrow().state, PrinterState::PaperOut);
    assert_eq!(
        fake.jobs().len(),
        1,
        "no job is sent to a printer with a fault"
    );
    fake.set_mode(Mode::Ready);
    assert_eq!(w.next_report(), JobReport::Printed { job_id: 2 });
    assert_eq!(fake.jobs(), vec![job(1).zpl, job(2).zpl]);

    fake.set_mode(Mode::HeadOpen);
    w.send(3);
    assert_eq!(
        w.next_report(),
        JobReport::Failed {
            job_id: 3,
            fault: Fault::NoAnswer
        }
    );
    assert_eq!(w.state.borrow().state, PrinterState::Offline);
    assert_eq!(fake.jobs().len(), 2);
    fake.set_mode(Mode::Ready);
    assert_eq!(w.next_report(), JobReport::Printed { job_id: 3 });
    assert_eq!(fake.jobs(), vec![job(1).zpl, job(2).zpl, job(3).zpl]);
}

#[test]
fn tcp_printer_faults_are_not_printed_and_jobs_retry_after_recovery() {
    let fake = FakePrinter::start();
    let w = start_worker(config(Transport::Tcp(fake.addr().to_string())));
    faults_are_not_printed_and_retried_after_recovery(&fake, &w);
    w.stop();
}

#[test]
fn serial_printer_faults_are_not_printed_and_jobs_retry_after_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let pty = PtyPair::new(dir.path());
    let fake = FakePrinter::on_serial(&pty.b);
    let w = start_worker(config(Transport::Serial {
        path: pty.a.to_string_lossy().into_owned(),
        baud: 9600,
    }));
    faults_are_not_printed_and_retried_after_recovery(&fake, &w);
    w.stop();
}

#[test]
fn a_printer_that_is_off_is_offline_and_gets_the_job_once_it_is_on() {
    let fake = FakePrinter::start();
    fake.switch_off();
    let w = start_worker(config(Transport::Tcp(fake.addr().to_string())));
    w.send(7);
    match w.next_report() {
        JobReport::Failed {
            job_id: 7,
            fault: Fault::Unreachable(why),
        } => assert!(why.contains(fake.addr()), "{why}"),
        other => panic!("expected unreachable, got {other:?}"),
    }
    assert_eq!(w.state.borrow().state, PrinterState::Offline);
    fake.switch_on();
    assert_eq!(w.next_report(), JobReport::Printed { job_id: 7 });
    assert_eq!(fake.jobs(), vec![job(7).zpl]);
    w.stop();
}

#[test]
fn a_label_still_in_the_printers_buffer_is_confirmed_and_never_sent_again_even_after_a_restart() {
    let fake = FakePrinter::start();
    let cfg = config(Transport::Tcp(fake.addr().to_string()));
    fake.set_mode(Mode::Buffered(1));
    let w = start_worker(cfg.clone());
    w.send(1);
    assert_eq!(w.next_report(), JobReport::Sent { job_id: 1 });
    // A fault comes up while the label is in the buffer: reported, and still not resent.
    fake.set_mode(Mode::PaperOut);
    assert_eq!(
        w.next_report(),
        JobReport::Failed {
            job_id: 1,
            fault: Fault::PaperOut
        }
    );
    assert_eq!(fake.jobs().len(), 1);
    w.stop();

    // The station restarts; the store hands the job over as sent (`print_jobs.sent_at`).
    let w = start_worker(cfg);
    w.jobs
        .send(QueuedJob {
            job: job(1),
            sent: true,
        })
        .unwrap();
    assert_eq!(
        w.next_report(),
        JobReport::Failed {
            job_id: 1,
            fault: Fault::PaperOut
        }
    );
    fake.set_mode(Mode::Ready);
    assert_eq!(w.next_report(), JobReport::Printed { job_id: 1 });
    assert_eq!(
        fake.jobs(),
        vec![job(1).zpl],
        "one label, never a duplicate"
    );
    // The next job is sent as usual.
    w.send(2);
    assert_eq!(w.next_report(), JobReport::Printed { job_id: 2 });
    assert_eq!(fake.jobs().len(), 2);
    w.stop();
}

#[test]
fn a_stop_ends_the_writer_while_it_retries_a_faulted_job() {
    let fake = FakePrinter::start();
    fake.set_mode(Mode::HeadOpen);
    let w = start_worker(config(Transport::Tcp(fake.addr().to_string())));
    w.send(1);
    assert!(matches!(
        w.next_report(),
        JobReport::Failed { job_id: 1, .. }
    ));
    // The job is still being retried; the stop ends the thread all the same.
    w.stop();
    assert!(fake.jobs().is_empty());
}

#[test]
fn a_missing_serial_port_is_reported_by_name() {
    let mut p = Printer::new(config(Transport::Serial {
        path: "/dev/floorhand-no-such-port".into(),
        baud: 9600,
    }));
    match p.status() {
        Err(Fault::Unreachable(why)) => {
            assert!(why.contains("/dev/floorhand-no-such-port"), "{why}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_garbage_answer_is_a_fault_not_a_crash() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            use std::io::{Read, Write};
            let mut b = [0u8; 3];
            let _ = s.read_exact(&mut b);
            let _ = s.write_all(b"\x02x\x03\x02y\x03\x02z\x03");
            thread::sleep(Duration::from_millis(500));
        }
    });
    let mut p = Printer::new(config(Transport::Tcp(addr.to_string())));
    assert!(matches!(p.status(), Err(Fault::BadStatus(_))));
    let _ = TcpStream::connect(addr);
}
