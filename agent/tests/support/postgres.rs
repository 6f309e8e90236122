//! A PostgreSQL server of the test's own, shared by the agent's OMS store rules
//! (`agent/tests/oms_store_rules.rs`) and the bridge's end-to-end tests
//! (`tests/tests/e2e/bridge.rs`, which includes this file by path): a new cluster
//! (`initdb`) in a temp dir on a free port, run as user `postgres` when the test runs as
//! root (Debian's server refuses root); stopped on drop.

use std::path::PathBuf;
use std::process::Command;

use floorhand::rigs::mosquitto::free_port;

/// A running PostgreSQL cluster, stopped on drop.
pub(crate) struct Postgres {
    dir: tempfile::TempDir,
    port: u16,
    bin: PathBuf,
}

impl Postgres {
    /// Starts a new cluster (`scripts/setup` installs the server).
    pub(crate) fn start() -> Postgres {
        Postgres::start_with(None)
    }

    /// Starts a new cluster that takes TCP connections over TLS only (`hostssl`; a plain
    /// one is rejected), with this certificate and key (PEM files).
    #[allow(dead_code)] // the bridge's TLS test
    pub(crate) fn start_tls_only(cert: &std::path::Path, key: &std::path::Path) -> Postgres {
        Postgres::start_with(Some((cert, key)))
    }

    fn start_with(tls: Option<(&std::path::Path, &std::path::Path)>) -> Postgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL is not installed: run scripts/setup")
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin"))
            .filter(|b| b.join("initdb").exists())
            .max()
            .expect("no initdb under /usr/lib/postgresql/*/bin: run scripts/setup");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let pg = Postgres { dir, port, bin };
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(pg.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        Postgres::give_to_postgres(pg.dir.path());
        let data = pg.dir.path().join("data");
        pg.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        );
        let mut opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1",
            pg.dir.path().display()
        );
        if let Some((cert, key)) = tls {
            opts.push_str(" -c ssl=on");
            // The server reads its key only if the key is its own user's and no one
            // else's (mode 0600).
            for (from, name, setting) in [
                (cert, "server.crt", "ssl_cert_file"),
                (key, "server.key", "ssl_key_file"),
            ] {
                let to = pg.dir.path().join(name);
                std::fs::copy(from, &to).unwrap();
                std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600)).unwrap();
                Postgres::give_to_postgres(&to);
                opts.push_str(&format!(" -c {setting}={}", to.display()));
            }
            // TCP over TLS only (the file keeps its owner: it is rewritten, not replaced).
            std::fs::write(
                data.join("pg_hba.conf"),
                "local all all trust\n\
                 hostssl all all 127.0.0.1/32 trust\n\
                 hostnossl all all 127.0.0.1/32 reject\n",
            )
            .unwrap();
        }
        let log = pg.dir.path().join("log");
        pg.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-o",
                &opts,
                "start",
            ],
        );
        pg
    }

    /// Makes `path` the server's user's when the test runs as root (the server runs as
    /// `postgres` then); otherwise it is the test's user's already.
    fn give_to_postgres(path: &std::path::Path) {
        if Postgres::as_root() {
            let ok = Command::new("chown").arg("postgres").arg(path).status();
            assert!(ok.unwrap().success(), "chown postgres {}", path.display());
        }
    }

    fn as_root() -> bool {
        Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
    }

    /// `tool` of the server's bin dir, as user `postgres` when the test runs as root.
    fn command(&self, tool: &str) -> Command {
        let exe = self.bin.join(tool);
        if Self::as_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let out = self.command(tool).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{tool}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The URL of the cluster's `postgres` database.
    #[allow(dead_code)] // the store rules make a database for each rule
    pub(crate) fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Creates database `name` (a new, empty store for one test) and returns its URL.
    #[allow(dead_code)] // the bridge's tests share one database per server
    pub(crate) fn database(&self, name: &str) -> String {
        let port = self.port.to_string();
        self.run(
            "createdb",
            &["-h", "127.0.0.1", "-p", &port, "-U", "postgres", name],
        );
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let args = ["-D", data.to_str().unwrap_or(""), "-m", "immediate", "stop"];
        let _ = self.command("pg_ctl").args(args).output();
    }
}
