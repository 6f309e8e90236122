//! A RabbitMQ node with its MQTT plugin, started for one test as its own node on free
//! ports (Debian's rabbitmq-server, installed by scripts/setup; docs/dev/field-notes.md,
//! "RabbitMQ").

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::mosquitto::free_port;

/// A running RabbitMQ node.
pub struct RabbitMq {
    child: Option<Child>,
    node: String,
    /// Its MQTT port (127.0.0.1).
    pub mqtt_port: u16,
    dist_port: u16,
    dir: PathBuf,
}

/// Debian's server script, run directly: `/usr/sbin/rabbitmq-server` would switch to the
/// `rabbitmq` user, who cannot write the test's temp dir.
const SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";
const CTL: &str = "/usr/lib/rabbitmq/bin/rabbitmqctl";

impl RabbitMq {
    /// Starts a node with data under `dir`; waits (up to 60 s) until MQTT accepts.
    pub fn start(dir: &Path) -> RabbitMq {
        assert!(
            Path::new(SERVER).exists(),
            "rabbitmq-server is not installed: run scripts/setup"
        );
        for d in ["mnesia", "log"] {
            std::fs::create_dir_all(dir.join(d)).expect("rabbitmq dirs");
        }
        let (amqp, mqtt, dist) = (free_port(), free_port(), free_port());
        std::fs::write(
            dir.join("rabbitmq.conf"),
            format!(
                "listeners.tcp.default = {amqp}\nmqtt.listeners.tcp.default = {mqtt}\n\
                 mqtt.allow_anonymous = true\nloopback_users = none\n"
            ),
        )
        .expect("rabbitmq.conf");
        std::fs::write(dir.join("enabled_plugins"), "[rabbitmq_mqtt].\n").expect("plugins");
        let mut r = RabbitMq {
            child: None,
            node: format!("floorhand-test-{mqtt}@localhost"),
            mqtt_port: mqtt,
            dist_port: dist,
            dir: dir.to_path_buf(),
        };
        r.launch();
        r
    }

    /// Starts the node and waits (up to 60 s) until its MQTT listener accepts.
    fn launch(&mut self) {
        let dir = &self.dir;
        let child = Command::new(SERVER)
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.join("log"))
            .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .stdin(Stdio::null())
            .stdout(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join("out.log"))
                    .expect("out.log"),
            )
            .stderr(Stdio::null())
            .spawn()
            .expect("start rabbitmq-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", self.mqtt_port)).is_err() {
            if let Some(Ok(Some(st))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("rabbitmq-server exited with {st}: {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "RabbitMQ's MQTT listener did not open within 60 s: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills the node with SIGKILL (a crash: no clean stop, only what its message store
    /// had on disk survives) and starts it again on the same ports and data.
    pub fn crash_and_restart(&mut self) {
        // The server script runs the Erlang VM as its child: kill the VM, named by its node.
        let _ = Command::new("pkill")
            .args(["-KILL", "-f", &self.node])
            .status();
        self.shutdown();
        self.launch();
    }

    fn shutdown(&mut self) {
        let _ = Command::new(CTL)
            .args(["-n", &self.node, "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // The node is gone only when its listener is: a restart must cut every client.
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.mqtt_port)).is_ok() {
            assert!(
                Instant::now() < deadline,
                "RabbitMQ still listens 30 s after it was stopped"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `mqtt://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.mqtt_port)
    }

    /// The node's console output, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("out.log")).unwrap_or_default()
    }
}

impl Drop for RabbitMq {
    fn drop(&mut self) {
        self.shutdown();
    }
}
