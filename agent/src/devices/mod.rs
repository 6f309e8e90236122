//! Adapters for the hardware beside the agent: the only code that opens serial ports or
//! sockets to devices. Each submodule owns one kind of device; [`open_serial`] is how all
//! of them (and `floorhand doctor`) open a serial port.

use std::time::Duration;

pub mod printer;
pub mod scale;
pub mod scanner;
pub mod terminal;

/// Why a device's port would not open, sorted by what a technician does about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    /// No such file: unplugged, or the udev rule that makes the stable name did not match.
    #[error("{path} does not exist")]
    Missing {
        /// The port's path.
        path: String,
    },
    /// The file exists but this user may not open it (not in the `dialout` group).
    #[error("{path}: permission denied")]
    PermissionDenied {
        /// The port's path.
        path: String,
    },
    /// Another process holds the port (serial ports are opened exclusively).
    #[error("{path} is in use by another program")]
    Busy {
        /// The port's path.
        path: String,
    },
    /// Anything else, e.g. a path that is not a serial port.
    #[error("{path}: {message}")]
    Other {
        /// The port's path.
        path: String,
        /// The operating system's words.
        message: String,
    },
}

impl PortError {
    /// Sorts a serialport error for `path`. serialport reports EBUSY (TIOCEXCL) and a held
    /// lock as `NoDevice`, ENOENT and EACCES as I/O kinds.
    fn from_serial(path: &str, e: &serialport::Error) -> PortError {
        use serialport::ErrorKind as K;
        match e.kind {
            K::NoDevice => PortError::Busy { path: path.into() },
            K::Io(kind) => PortError::from_io_kind(path, kind, &e.description),
            _ => PortError::Other {
                path: path.into(),
                message: e.description.clone(),
            },
        }
    }

    /// Sorts an I/O error from opening `path`.
    pub fn from_io(path: &str, e: &std::io::Error) -> PortError {
        PortError::from_io_kind(path, e.kind(), &e.to_string())
    }

    fn from_io_kind(path: &str, kind: std::io::ErrorKind, message: &str) -> PortError {
        use std::io::ErrorKind as K;
        let path = path.to_string();
        match kind {
            K::NotFound => PortError::Missing { path },
            K::PermissionDenied => PortError::PermissionDenied { path },
            K::ResourceBusy => PortError::Busy { path },
            _ => PortError::Other {
                path,
                message: message.to_string(),
            },
        }
    }
}

/// Whether a read error only means that nothing came in time (a timeout, a signal, a
/// non-blocking source with no data): the device is still there.
pub(crate) fn nothing_yet(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::TimedOut
            | std::io::ErrorKind::WouldBlock
            | std::io::ErrorKind::Interrupted
    )
}

/// Opens the serial port at `path` with `baud` (8N1, no flow control, exclusive), reads
/// waiting at most `timeout`. Every device adapter opens its port here, so `floorhand
/// doctor` tests exactly what the agent will do.
pub fn open_serial(
    path: &str,
    baud: u32,
    timeout: Duration,
) -> Result<Box<dyn serialport::SerialPort>, PortError> {
    serialport::new(path, baud)
        .timeout(timeout)
        .open()
        .map_err(|e| PortError::from_serial(path, &e))
}
