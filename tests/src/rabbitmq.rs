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
        let node = format!("floorhand-test-{mqtt}@localhost");
        let child = Command::new(SERVER)
            .env("RABBITMQ_NODENAME", &node)
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.join("log"))
            .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
            .env("RABBITMQ_DIST_PORT", dist.to_string())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("out.log")).expect("out.log"))
            .stderr(Stdio::null())
            .spawn()
            .expect("start rabbitmq-server");
        let mut r = RabbitMq {
            child: Some(child),
            node,
            mqtt_port: mqtt,
            dir: dir.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", mqtt)).is_err() {
            if let Some(Ok(Some(st))) = r.child.as_mut().map(|c| c.try_wait()) {
                panic!("rabbitmq-server exited with {st}: {}", r.log());
            }
            assert!(
                Instant::now() < deadline,
                "RabbitMQ's MQTT listener did not open within 60 s: {}",
                r.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        r
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
        let _ = Command::new(CTL)
            .args(["-n", &self.node, "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
