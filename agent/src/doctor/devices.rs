//! Device checks for `floorhand doctor`: one [`Check`] per configured scanner, printer
//! and terminal port (open it; for the printer, query its status).
//!
//! This is the extension point for the device sections of the configuration: each
//! configured device adds its checks here, named after its config key (`scanner`,
//! `printer`, `terminal`), with a fix a technician can act on. With no device sections
//! configured there is nothing to check.
//!
//! Ports are opened by the same functions the agent uses (`devices::open_serial`,
//! `scanner::probe`, `terminal::open`, `printer::Printer::status`), so a pass means the
//! agent can open them too. Each check runs on its own thread under a deadline: a device
//! that blocks (a name that does not resolve, a driver that hangs) fails its check instead
//! of hanging the doctor. The checks run at the same time; the report keeps config order.

use std::time::Duration;

use super::Check;
use crate::config::DeviceSections;
use crate::devices::PortError;
use crate::devices::printer::{Fault, Printer, PrinterConfig, Transport};
use crate::devices::scanner::{self, Source};
use crate::devices::terminal::{self, TerminalConfig, TerminalError};

/// Extra time a check gets beyond its own timeouts before it is declared hung.
const GRACE: Duration = Duration::from_secs(5);

/// The checks for every device section, in config order.
pub async fn checks(devices: &DeviceSections) -> Vec<Check> {
    let mut running = Vec::new();
    if let Some(s) = &devices.scanner {
        let (source, key) = (s.settings.source.clone(), s.port_key);
        running.push(start("scanner", GRACE, move || {
            probe_check("scanner", key, &source)
        }));
    }
    if let Some(p) = &devices.printer {
        // Connect, write and answer each get the printer's timeout.
        let limit = p.settings.timeout * 3 + GRACE;
        let (p, key) = (p.settings.clone(), p.port_key);
        running.push(start("printer", limit, move || printer_check(p, key)));
    }
    if let Some(t) = &devices.terminal {
        let (t, key) = (t.settings.clone(), t.port_key);
        running.push(start("terminal", GRACE, move || terminal_check(&t, key)));
    }
    if let Some(s) = &devices.scale {
        // The scale's reader opens its port through the scanner's code: the same open here.
        let source = Source::Serial {
            path: s.settings.port.clone(),
            baud: s.settings.baud,
        };
        let key = s.port_key;
        running.push(start("scale", GRACE, move || {
            probe_check("scale", key, &source)
        }));
    }
    let mut out = Vec::new();
    for r in running {
        out.push(r.finish().await);
    }
    out
}

/// A check running on its own thread.
struct Running {
    name: &'static str,
    limit: Duration,
    result: tokio::sync::oneshot::Receiver<Check>,
}

fn start(
    name: &'static str,
    limit: Duration,
    check: impl FnOnce() -> Check + Send + 'static,
) -> Running {
    let (tx, rx) = tokio::sync::oneshot::channel();
    // A plain thread, not spawn_blocking: a hung check must not keep the runtime (and so
    // the process) from exiting.
    // If the thread cannot start, the sender is dropped with the closure and `finish`
    // reports a check without a result.
    let _ = std::thread::Builder::new()
        .name(format!("doctor-{name}"))
        .spawn(move || {
            let _ = tx.send(check());
        });
    Running {
        name,
        limit,
        result: rx,
    }
}

impl Running {
    async fn finish(self) -> Check {
        match tokio::time::timeout(self.limit, self.result).await {
            Ok(Ok(check)) => check,
            Ok(Err(_)) => Check::fail(
                self.name,
                "the check stopped without a result",
                "run the doctor again; if it repeats, report it with the output above",
            ),
            Err(_) => Check::fail(
                self.name,
                format!("no result within {}s", self.limit.as_secs()),
                format!(
                    "the {} hangs: unplug it and plug it in again, check its cable, and for a \
                     network printer that its host name resolves",
                    self.name
                ),
            ),
        }
    }
}

/// Opens the scanner's or the scale's source as its reader would. `key`: the config key
/// that names the port, for the fix.
fn probe_check(device: &str, key: &str, source: &Source) -> Check {
    match scanner::probe(source) {
        Ok(found) => Check::pass(device, found),
        Err(e) => Check::fail(device, e.to_string(), port_fix(&e, device, key)),
    }
}

fn terminal_check(t: &TerminalConfig, key: &str) -> Check {
    match terminal::open(t) {
        Ok(_port) => Check::pass(
            "terminal",
            format!("serial port {} opened at {} baud", t.path, t.baud),
        ),
        Err(TerminalError::Open { source, .. }) => Check::fail(
            "terminal",
            source.to_string(),
            port_fix(&source, "terminal", key),
        ),
        Err(e) => Check::fail(
            "terminal",
            e.to_string(),
            port_fix(
                &PortError::Other {
                    path: t.path.clone(),
                    message: e.to_string(),
                },
                "terminal",
                key,
            ),
        ),
    }
}

fn printer_check(cfg: PrinterConfig, key: &str) -> Check {
    let name = cfg.transport.name().to_string();
    let timeout_ms = cfg.timeout.as_millis();
    // A serial port is opened once on its own first, to tell a missing port from a
    // forbidden or busy one; the status query below opens it again.
    if let Transport::Serial { path, baud } = &cfg.transport
        && let Err(e) = crate::devices::open_serial(path, *baud, cfg.timeout)
    {
        return Check::fail("printer", e.to_string(), port_fix(&e, "printer", key));
    }
    let tcp = matches!(cfg.transport, Transport::Tcp(_));
    match Printer::new(cfg).status() {
        Ok(status) => match status.fault() {
            None => Check::pass(
                "printer",
                format!(
                    "{name}: ready ({} labels waiting in its buffer)",
                    status.labels_pending()
                ),
            ),
            Some(fault) => Check::fail(
                "printer",
                format!("{name}: {fault}"),
                fault_fix(&fault, tcp),
            ),
        },
        Err(Fault::NoAnswer) => Check::fail(
            "printer",
            format!(
                "{name}: no answer to ~HS within {timeout_ms} ms (head open or out of labels?)"
            ),
            fault_fix(&Fault::NoAnswer, tcp),
        ),
        Err(fault) => Check::fail("printer", fault.to_string(), fault_fix(&fault, tcp)),
    }
}

/// What to do about a port that would not open. `device` names it for people, `key` is
/// the config key that holds its path.
fn port_fix(e: &PortError, device: &str, key: &str) -> String {
    match e {
        PortError::Missing { .. } => format!(
            "plug the {device} in and check its cable; check that {key} names it and that \
             the udev rule (/etc/udev/rules.d/99-floorhand.rules) creates \
             /dev/floorhand-{device} (`ls -l /dev/floorhand-*`)"
        ),
        PortError::PermissionDenied { path } => format!(
            "add the floorhand user to dialout (`sudo usermod -aG dialout floorhand`), make \
             the udev rule set GROUP=\"dialout\" for {path}, and run the doctor as that user \
             (`sudo -u floorhand floorhand doctor ...`)"
        ),
        PortError::Busy { path } => format!(
            "another program holds {path}: stop the agent first (`sudo systemctl stop \
             floorhand`), or find the program with `fuser -v {path}`"
        ),
        PortError::Other { path, .. } => format!(
            "check that {path} is the {device}'s serial port ({key}) and that the udev rule \
             points /dev/floorhand-{device} at it"
        ),
    }
}

/// What to do about a printer fault. `tcp`: the printer is on the network, not a cable.
fn fault_fix(fault: &Fault, tcp: bool) -> String {
    let link = if tcp {
        "check printer.tcp (host:9100), that the printer is switched on and on this network \
         (ping it), and that nothing blocks port 9100"
    } else {
        "check the cable, printer.baud against the printer's own setting, and that the udev \
         rule points /dev/floorhand-printer at the printer"
    };
    match fault {
        Fault::PaperOut => "load labels (and check the media sensor sees them)".into(),
        Fault::HeadOpen => "close the print head".into(),
        Fault::RibbonOut => "load a ribbon (or set the printer to direct thermal labels)".into(),
        Fault::Paused => "press PAUSE on the printer to resume printing".into(),
        Fault::BufferFull => {
            "wait for the printer to finish its jobs, or switch it off and on to clear them".into()
        }
        Fault::UnderTemperature => "let the print head warm up; if it stays cold, service the \
                                    printer"
            .into(),
        Fault::OverTemperature => {
            "let the print head cool down; lower the print darkness or speed".into()
        }
        Fault::NoAnswer => format!(
            "close the print head and load labels (a Zebra says nothing while either is \
             wrong); if it still says nothing, {link}"
        ),
        Fault::Unreachable(_) => link.to_string(),
        Fault::BadStatus(_) => format!("the device answered, but not as a ZPL printer: {link}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(fault: Fault, tcp: bool, expected: &str) {
        let fix = fault_fix(&fault, tcp);
        assert!(fix.contains(expected), "{fault:?}: {fix:?}");
    }

    #[test]
    fn each_printer_fault_has_its_own_fix() {
        check(Fault::PaperOut, false, "load labels");
        check(Fault::HeadOpen, false, "close the print head");
        check(Fault::RibbonOut, false, "load a ribbon");
        check(Fault::Paused, false, "press PAUSE");
        check(Fault::BufferFull, false, "finish its jobs");
        check(Fault::UnderTemperature, false, "warm up");
        check(Fault::OverTemperature, false, "cool down");
        check(Fault::NoAnswer, false, "close the print head");
        check(Fault::NoAnswer, false, "/dev/floorhand-printer");
        check(Fault::NoAnswer, true, "printer.tcp");
        check(Fault::Unreachable("x".into()), true, "ping it");
        check(Fault::BadStatus("x".into()), false, "printer.baud");
    }

    #[test]
    fn each_port_problem_has_its_own_fix() {
        let path = || "/dev/floorhand-printer".to_string();
        let cases = [
            (PortError::Missing { path: path() }, "99-floorhand.rules"),
            (PortError::PermissionDenied { path: path() }, "dialout"),
            (PortError::Busy { path: path() }, "systemctl stop floorhand"),
            (
                PortError::Other {
                    path: path(),
                    message: "not a tty".into(),
                },
                "printer.serial",
            ),
        ];
        for (e, expected) in cases {
            let fix = port_fix(&e, "printer", "printer.serial");
            assert!(fix.contains(expected), "{e:?}: {fix:?}");
        }
    }

    #[test]
    fn os_errors_are_sorted_by_what_to_do() {
        use std::io::{Error, ErrorKind};
        let sort = |kind| PortError::from_io("/dev/x", &Error::from(kind));
        assert!(matches!(
            sort(ErrorKind::NotFound),
            PortError::Missing { .. }
        ));
        assert!(matches!(
            sort(ErrorKind::PermissionDenied),
            PortError::PermissionDenied { .. }
        ));
        assert!(matches!(
            sort(ErrorKind::ResourceBusy),
            PortError::Busy { .. }
        ));
        assert!(matches!(sort(ErrorKind::Other), PortError::Other { .. }));
    }
}
