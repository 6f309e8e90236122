//! The printer module against a fake Zebra printer on a real TCP socket and on a real
//! serial pty (socat): it stores the jobs it receives and answers `~HS` with a scripted
//! state; "head open" answers nothing, as real printers do.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use floorhand::devices::printer::{
    self, Fault, JobReport, PrintJob, Printer, PrinterConfig, PrinterView, Transport,
};
use floorhand_protocol::oms::PrinterState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Ready,
    PaperOut,
    /// Silent: no answer to `~HS`.
    HeadOpen,
}

/// The fake printer's script and what it received.
#[derive(Clone)]
struct Fake {
    mode: Arc<Mutex<Mode>>,
    jobs: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
}

impl Fake {
    fn new(mode: Mode) -> Fake {
        Fake {
            mode: Arc::new(Mutex::new(mode)),
            jobs: Arc::new(Mutex::new(Vec::new())),
            stop: Arc::new(AtomicBool::new(false)),
        }
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn jobs(&self) -> Vec<Vec<u8>> {
        self.jobs.lock().unwrap().clone()
    }

    /// Reads commands from `io` until stopped or closed: stores `^XA...^XZ` jobs and
    /// answers `~HS` per the script.
    fn serve(&self, io: &mut (impl Read + Write)) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        while !self.stop.load(Ordering::Relaxed) {
            match io.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
                    ) =>
                {
                    continue;
                }
                Err(_) => return,
            }
            loop {
                let start = buf
                    .iter()
                    .position(|b| !b.is_ascii_whitespace())
                    .unwrap_or(buf.len());
                buf.drain(..start);
                if buf.starts_with(b"~HS") {
                    buf.drain(..3);
                    let paper = match *self.mode.lock().unwrap() {
                        Mode::HeadOpen => continue,
                        Mode::Ready => 0,
                        Mode::PaperOut => 1,
                    };
                    let answer = format!(
                        "\x02030,{paper},0,1245,000,0,0,0,000,0,0,0\x03\r\n\
                         \x02000,0,0,0,1,2,4,0,00000000,1,000\x03\r\n\x021234,0\x03\r\n"
                    );
                    if io.write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                } else if buf.starts_with(b"^XA") {
                    let Some(end) = buf.windows(3).position(|w| w == b"^XZ") else {
                        break;
                    };
                    let job: Vec<u8> = buf.drain(..end + 3).collect();
                    self.jobs.lock().unwrap().push(job);
                } else {
                    break;
                }
            }
        }
    }
}

fn config(transport: Transport) -> PrinterConfig {
    PrinterConfig {
        transport,
        timeout: Duration::from_millis(400),
        retry_every: Duration::from_millis(30),
        poll_every: Duration::from_millis(200),
    }
}

struct Worker {
    jobs: mpsc::Sender<PrintJob>,
    reports: Receiver<JobReport>,
    state: tokio::sync::watch::Receiver<PrinterView>,
}

fn start_worker(cfg: PrinterConfig) -> Worker {
    let (jobs_tx, jobs_rx) = mpsc::channel();
    let (reports_tx, reports_rx) = mpsc::channel();
    let (state_tx, state_rx) = tokio::sync::watch::channel(PrinterView {
        state: PrinterState::Offline,
        fault: None,
    });
    thread::spawn(move || printer::run(Printer::new(cfg), jobs_rx, reports_tx, state_tx));
    Worker {
        jobs: jobs_tx,
        reports: reports_rx,
        state: state_rx,
    }
}

impl Worker {
    fn next_report(&self) -> JobReport {
        // A hang guard, not a speed check.
        self.reports
            .recv_timeout(Duration::from_secs(20))
            .expect("a report from the printer worker")
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
fn faults_are_not_printed_and_retried_after_recovery(fake: &Fake, w: &Worker) {
    w.jobs.send(job(1)).unwrap();
    assert_eq!(w.next_report(), JobReport::Printed { job_id: 1 });
    assert_eq!(fake.jobs(), vec![job(1).zpl]);
    assert_eq!(w.state.borrow().state, PrinterState::Ready);

    fake.set(Mode::PaperOut);
    w.jobs.send(job(2)).unwrap();
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
    fake.set(Mode::Ready);
    assert_eq!(w.next_report(), JobReport::Printed { job_id: 2 });
    assert_eq!(fake.jobs(), vec![job(1).zpl, job(2).zpl]);

    fake.set(Mode::HeadOpen);
    w.jobs.send(job(3)).unwrap();
    assert_eq!(
        w.next_report(),
        JobReport::Failed {
            job_id: 3,
            fault: Fault::NoAnswer
        }
    );
    assert_eq!(w.state.borrow().state, PrinterState::Offline);
    assert_eq!(fake.jobs().len(), 2);
    fake.set(Mode::Ready);
    assert_eq!(w.next_report(), JobReport::Printed { job_id: 3 });
    assert_eq!(fake.jobs(), vec![job(1).zpl, job(2).zpl, job(3).zpl]);
}

fn serve_tcp(listener: TcpListener, fake: Fake) {
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let fake = fake.clone();
            let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
            thread::spawn(move || fake.serve(&mut stream));
        }
    });
}

#[test]
fn tcp_printer_faults_are_not_printed_and_jobs_retry_after_recovery() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let fake = Fake::new(Mode::Ready);
    serve_tcp(listener, fake.clone());
    let w = start_worker(config(Transport::Tcp(addr)));
    faults_are_not_printed_and_retried_after_recovery(&fake, &w);
    fake.stop.store(true, Ordering::Relaxed);
}

#[test]
fn a_printer_that_is_not_there_is_offline_and_gets_the_job_once_it_listens() {
    // Take a free port, then close it so nothing listens there.
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let w = start_worker(config(Transport::Tcp(addr.to_string())));
    w.jobs.send(job(7)).unwrap();
    match w.next_report() {
        JobReport::Failed {
            job_id: 7,
            fault: Fault::Unreachable(why),
        } => assert!(why.contains(&addr.to_string()), "{why}"),
        other => panic!("expected unreachable, got {other:?}"),
    }
    assert_eq!(w.state.borrow().state, PrinterState::Offline);
    let fake = Fake::new(Mode::Ready);
    // The worker keeps trying this port; on loopback a connect can briefly hold it (a TCP
    // self-connect), so binding may need a few tries.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let listener = loop {
        match TcpListener::bind(addr) {
            Ok(l) => break l,
            Err(e) if std::time::Instant::now() < deadline => {
                eprintln!("bind {addr}: {e}; retrying");
                thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("bind {addr}: {e}"),
        }
    };
    serve_tcp(listener, fake.clone());
    assert_eq!(w.next_report(), JobReport::Printed { job_id: 7 });
    assert_eq!(fake.jobs(), vec![job(7).zpl]);
    fake.stop.store(true, Ordering::Relaxed);
}

struct Socat {
    child: Child,
    dir: PathBuf,
}

impl Drop for Socat {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn socat_pair(name: &str) -> (Socat, PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("floorhand-printer-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (a, b) = (dir.join("printer"), dir.join("fake"));
    let child = Command::new("socat")
        .arg(format!("pty,raw,echo=0,link={}", a.display()))
        .arg(format!("pty,raw,echo=0,link={}", b.display()))
        .spawn()
        .expect("socat runs (scripts/setup installs it)");
    let socat = Socat { child, dir };
    for _ in 0..200 {
        if a.exists() && b.exists() {
            break;
        }
        thread::sleep(Duration::from_millis(25));
    }
    assert!(a.exists() && b.exists(), "socat made no ptys");
    (socat, a, b)
}

#[test]
fn serial_printer_faults_are_not_printed_and_jobs_retry_after_recovery() {
    let (_socat, printer_end, fake_end) = socat_pair("serial");
    let fake = Fake::new(Mode::Ready);
    let mut port = serialport::new(fake_end.to_string_lossy(), 9600)
        .timeout(Duration::from_millis(50))
        .open()
        .unwrap();
    let serving = fake.clone();
    let server = thread::spawn(move || serving.serve(&mut port));
    let w = start_worker(config(Transport::Serial {
        path: printer_end.to_string_lossy().into_owned(),
        baud: 9600,
    }));
    faults_are_not_printed_and_retried_after_recovery(&fake, &w);
    fake.stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
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
