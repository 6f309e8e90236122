//! The one Mosquitto launcher of the tests, the demo and the bench: a real broker with its
//! own config, port and data directory, at Mosquitto's default limits; killed on drop.
//! Persistence, TLS, password files, an ACL and extra config lines are options.

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    try_free_port().expect("a free port")
}

/// A free TCP port on 127.0.0.1, or why there is none.
/// Stops a child the caller started: SIGTERM by its pid, then SIGKILL once `grace` has
/// passed without it exiting.
pub fn stop_child(child: &mut Child, grace: Duration) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + grace;
    while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

pub fn try_free_port() -> std::io::Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
}

/// TLS files for a broker listener.
#[derive(Debug, Clone)]
pub struct BrokerTls {
    /// CA certificate (PEM).
    pub ca: PathBuf,
    /// Broker certificate (PEM).
    pub cert: PathBuf,
    /// Broker key (PEM).
    pub key: PathBuf,
    /// Require client certificates signed by the CA.
    pub require_client_cert: bool,
}

/// How to run the broker.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Keep sessions and queued messages across restarts (saved on a clean stop).
    pub persistence: bool,
    /// Serve TLS instead of plain MQTT.
    pub tls: Option<BrokerTls>,
    /// `(user, password)` pairs; anonymous access is refused when set.
    pub users: Vec<(String, String)>,
    /// An ACL file (`acl_file`), such as the shipped `packaging/mosquitto/floorhand.acl`.
    pub acl_file: Option<PathBuf>,
    /// Listen on this port (a broker's return after an outage); a free one when `None`.
    pub port: Option<u16>,
    /// More config lines, appended as they are (only a baseline raises a limit).
    pub extra_conf: String,
}

/// A running Mosquitto.
pub struct Mosquitto {
    child: Option<Child>,
    /// Port it listens on (127.0.0.1).
    pub port: u16,
    dir: PathBuf,
    conf: PathBuf,
    tls: bool,
}

/// Where `mosquitto` is: Debian installs it in /usr/sbin, which a user's PATH may lack.
fn mosquitto_bin() -> PathBuf {
    for p in [
        "/usr/sbin/mosquitto",
        "/usr/bin/mosquitto",
        "/usr/local/sbin/mosquitto",
    ] {
        if Path::new(p).exists() {
            return p.into();
        }
    }
    "mosquitto".into()
}

fn failed(what: String) -> std::io::Error {
    std::io::Error::other(what)
}

impl Mosquitto {
    /// Starts a broker with `opts`, data under `dir`; panics if it cannot (for tests).
    pub fn start(dir: &Path, opts: Options) -> Mosquitto {
        Mosquitto::try_start(dir, opts).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts a broker with `opts`, data under `dir`, once it listens (within 10 s).
    pub fn try_start(dir: &Path, opts: Options) -> std::io::Result<Mosquitto> {
        let port = match opts.port {
            Some(p) => p,
            None => try_free_port()?,
        };
        std::fs::create_dir_all(dir)?;
        let conf = dir.join("mosquitto.conf");
        let mut c = String::new();
        c += &format!("listener {port} 127.0.0.1\n");
        // Running as root, Mosquitto would drop to user `mosquitto`, who cannot write
        // the test's directory.
        c += "user root\n";
        c += &format!("persistence {}\n", opts.persistence);
        c += &format!("persistence_location {}/\n", dir.display());
        c += &format!("log_dest file {}/mosquitto.log\n", dir.display());
        c += "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n";
        // Stock limits (max_queued_messages 1000, max_inflight_messages 20): the
        // channel's windows must keep every queue below them, and a test that raised them
        // would hide the drops users hit.
        if opts.users.is_empty() {
            c += "allow_anonymous true\n";
        } else {
            let pw = dir.join("passwd");
            let mut f = std::fs::File::create(&pw)?;
            for (u, p) in &opts.users {
                writeln!(f, "{u}:{p}")?;
            }
            drop(f);
            let st = Command::new("mosquitto_passwd")
                .arg("-U")
                .arg(&pw)
                .status()
                .map_err(|e| failed(format!("mosquitto_passwd (package mosquitto): {e}")))?;
            if !st.success() {
                return Err(failed("mosquitto_passwd -U failed".into()));
            }
            c += &format!("allow_anonymous false\npassword_file {}\n", pw.display());
        }
        if let Some(acl) = &opts.acl_file {
            c += &format!("acl_file {}\n", acl.display());
        }
        if let Some(t) = &opts.tls {
            c += &format!(
                "cafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate {}\n",
                t.ca.display(),
                t.cert.display(),
                t.key.display(),
                t.require_client_cert
            );
        }
        c += &opts.extra_conf;
        std::fs::write(&conf, c)?;
        let mut m = Mosquitto {
            child: None,
            port,
            dir: dir.to_path_buf(),
            conf,
            tls: opts.tls.is_some(),
        };
        m.try_spawn()?;
        Ok(m)
    }

    fn spawn(&mut self) {
        self.try_spawn().unwrap_or_else(|e| panic!("{e}"));
    }

    fn try_spawn(&mut self) -> std::io::Result<()> {
        let child = Command::new(mosquitto_bin())
            .arg("-c")
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                failed(format!(
                    "starting mosquitto: {e} (is it installed? scripts/setup installs it)"
                ))
            })?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(Ok(Some(st))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.child = None;
                return Err(failed(format!(
                    "mosquitto exited with {st}; log: {}",
                    self.log()
                )));
            }
            if Instant::now() >= deadline {
                return Err(failed(format!(
                    "mosquitto did not listen on {} within 10 s",
                    self.port
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// `mqtt://127.0.0.1:PORT` (or `mqtts://localhost:PORT` with TLS).
    pub fn url(&self) -> String {
        if self.tls {
            format!("mqtts://localhost:{}", self.port)
        } else {
            format!("mqtt://127.0.0.1:{}", self.port)
        }
    }

    /// The broker's log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default()
    }

    /// Stops the broker cleanly (SIGTERM: with persistence on, it saves its state).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_child(&mut c, Duration::from_secs(10));
        }
    }

    /// Kills the broker at once (SIGKILL): nothing is saved.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the broker again on the same port with the same config.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Starts a stopped broker again on the same port.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "broker is running");
        self.spawn();
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
    }
}
