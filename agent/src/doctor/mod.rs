//! `floorhand doctor`: checks a station before a shift (configuration, credentials,
//! database, free disk, broker, devices) and prints a pass/fail list a technician can act
//! on. Every check runs even when an earlier one failed, unless it needs what failed.

use std::path::{Path, PathBuf};

use crate::config::{Checkup, Config};
use crate::store::{Db, SCHEMA_VERSION, StoreError};
use crate::sync::mqtt::BrokerSettings;
use crate::sync::probe::{ProbeError, probe};

pub mod devices;

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked: `config`, `broker`, `database`, or a device's config key.
    pub name: String,
    /// What was found (pass) or what is wrong and what to do (fail).
    pub outcome: Result<String, Problem>,
}

/// A failed check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What is wrong.
    pub what: String,
    /// What to do about it.
    pub fix: String,
}

impl Check {
    /// A passed check.
    pub fn pass(name: &str, found: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            outcome: Ok(found.into()),
        }
    }

    /// A failed check.
    pub fn fail(name: &str, what: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            outcome: Err(Problem {
                what: what.into(),
                fix: fix.into(),
            }),
        }
    }
}

/// The whole list.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The checks in the order they ran.
    pub checks: Vec<Check>,
}

impl Report {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.outcome.is_ok())
    }

    /// The report for a person: one line per check, the fix indented under a failure,
    /// and a verdict.
    pub fn render(&self) -> String {
        let width = self.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        let mut out = String::new();
        for c in &self.checks {
            match &c.outcome {
                Ok(found) => out += &format!("PASS  {:width$}  {found}\n", c.name),
                Err(p) => {
                    out += &format!("FAIL  {:width$}  {}\n", c.name, p.what);
                    out += &format!("      {:width$}  -> {}\n", "", p.fix);
                }
            }
        }
        let failed = self.checks.iter().filter(|c| c.outcome.is_err()).count();
        if failed == 0 {
            out += &format!("all {} checks passed: ready\n", self.checks.len());
        } else {
            out += &format!(
                "{failed} of {} checks failed: not ready\n",
                self.checks.len()
            );
        }
        out
    }
}

/// Runs every check for the configuration at `path`, on the settings the config works
/// out for it ([`Checkup`]: what `floorhand run` would take, and every device section).
pub async fn run(path: &Path) -> Report {
    let mut report = Report::default();
    let checkup = match Config::load_checkup(path) {
        Ok(c) => {
            report.checks.push(Check::pass(
                "config",
                format!("{}: device {} at site {}", path.display(), c.device, c.site),
            ));
            c
        }
        Err(e) => {
            report.checks.push(Check::fail(
                "config",
                e.to_string(),
                "fix that key (every key is explained in /usr/share/doc/floorhand/examples/floorhand.toml \
                 or examples/floorhand.toml)",
            ));
            return report;
        }
    };
    report.checks.extend(database_checks(&checkup));
    match &checkup.broker {
        Ok(settings) => report
            .checks
            .push(broker_check(&checkup.device, settings).await),
        Err(e) => report.checks.push(Check::fail(
            "broker",
            e.to_string(),
            "make the password file readable by user floorhand, or set the variable in the \
             service's environment",
        )),
    }
    report
        .checks
        .extend(devices::checks(&checkup.devices).await);
    report
}

/// The database's directory (writable), the file (integrity, schema) and free disk.
fn database_checks(checkup: &Checkup) -> Vec<Check> {
    let path = &checkup.database;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut checks = Vec::new();
    if path.is_dir() {
        checks.push(Check::fail(
            "database",
            format!(
                "`database.path` {} is a directory, not a database file",
                path.display()
            ),
            format!(
                "set database.path to a file inside it, e.g. {}",
                path.join("floorhand.db").display()
            ),
        ));
        return checks;
    }
    if let Err(e) = probe_writable(&dir) {
        checks.push(Check::fail(
            "database",
            format!("cannot write in {}: {e}", dir.display()),
            format!(
                "create {} and let the agent's user write there (the package uses \
                 /var/lib/floorhand, owned by user floorhand)",
                dir.display()
            ),
        ));
        return checks;
    }
    checks.push(match Db::open_read_only(path) {
        Ok(db) => match (db.integrity_check(), db.schema_version()) {
            (Ok(found), Ok(v)) if found == ["ok"] => Check::pass(
                "database",
                format!("{}: integrity ok, schema v{v}", path.display()),
            ),
            (Err(e), _) | (_, Err(e)) => Check::fail(
                "database",
                format!("{}: {e}", path.display()),
                "check the file's owner and permissions",
            ),
            (Ok(found), Ok(_)) => Check::fail(
                "database",
                format!(
                    "{}: integrity check failed: {}",
                    path.display(),
                    found.join("; ")
                ),
                "stop the agent, move the file aside and let the OMS resend the waves; \
                 unacknowledged events in it are lost",
            ),
        },
        Err(StoreError::NoDatabase(_)) => Check::pass(
            "database",
            format!(
                "{} does not exist yet; `floorhand run` creates it",
                path.display()
            ),
        ),
        Err(StoreError::SchemaTooOld { found, .. }) => Check::pass(
            "database",
            format!(
                "{}: schema v{found}; `floorhand run` upgrades it to v{SCHEMA_VERSION}",
                path.display()
            ),
        ),
        Err(e) => Check::fail(
            "database",
            format!("{}: {e}", path.display()),
            "install the floorhand version that wrote this file, or move the file aside",
        ),
    });
    const MIB: u64 = 1024 * 1024;
    let need = checkup.store.max_bytes;
    checks.push(match free_bytes(&dir) {
        Ok(free) if free >= need => Check::pass(
            "disk",
            format!(
                "{} MiB free for the database (database.max_mb = {})",
                free / MIB,
                need / MIB
            ),
        ),
        Ok(free) => Check::fail(
            "disk",
            format!(
                "only {} MiB free on the database's filesystem, less than database.max_mb = {}",
                free / MIB,
                need / MIB
            ),
            "free space on that filesystem or lower database.max_mb",
        ),
        Err(e) => Check::fail(
            "disk",
            format!("cannot read free space of {}: {e}", dir.display()),
            "check that the database directory is on a mounted filesystem",
        ),
    });
    checks
}

/// Creates and removes a file in `dir`, the only sure test that the agent can write there.
fn probe_writable(dir: &Path) -> std::io::Result<()> {
    let probe = dir.join(format!(".floorhand-doctor-{}", std::process::id()));
    std::fs::write(&probe, b"")?;
    std::fs::remove_file(&probe)
}

/// Bytes available to unprivileged users on the filesystem holding `dir`.
fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(|_| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "path contains a NUL byte")
    })?;
    // SAFETY: `statvfs` is plain data, for which all-zero bytes are a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` a writable statvfs that outlives
    // the call.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)] // the field types differ between targets
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// Connects to the broker with the configured URL, TLS and credentials, under its own
/// client id (`<device>-doctor`, clean session) so a running agent is not disturbed.
async fn broker_check(device: &str, settings: &BrokerSettings) -> Check {
    let e = match probe(&format!("{device}-doctor"), settings).await {
        Ok(()) => {
            let who = match &settings.username {
                Some(u) => format!(" as {u}"),
                None => String::new(),
            };
            return Check::pass("broker", format!("connected to {}{who}", settings.url));
        }
        Err(e) => e,
    };
    let fix = match &e {
        ProbeError::Settings(_) => {
            return Check::fail(
                "broker",
                e.to_string(),
                "fix broker.url, broker.ca_file, broker.cert_file or broker.key_file",
            );
        }
        ProbeError::Refused(_) => {
            "check broker.username and the password (file or variable) against the \
             broker's password file and ACL"
        }
        ProbeError::Tls(_) => "check broker.ca_file, the client certificate and the broker's name",
        ProbeError::Unreachable(_) => {
            "check broker.url (host and port), the network, and that the broker runs"
        }
        ProbeError::Timeout(_) => {
            "check broker.url, firewalls between the station and the broker, and that the \
             broker runs"
        }
    };
    Check::fail("broker", format!("{}: {e}", settings.url), fix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_path_that_is_a_directory_fails_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "device = \"d1\"\nsite = \"s1\"\n[broker]\nurl = \"mqtt://127.0.0.1:1\"\n\
             [database]\npath = {:?}\n",
            dir.path().display().to_string()
        );
        let cfg = Config::parse(Path::new("f.toml"), &text).unwrap();
        let checks = database_checks(&cfg.checkup(Path::new("f.toml")).unwrap());
        assert_eq!(checks.len(), 1, "{checks:?}");
        let problem = checks[0].outcome.clone().unwrap_err();
        assert!(
            problem.what.contains("`database.path`") && problem.what.contains("is a directory"),
            "{problem:?}"
        );
        assert!(problem.fix.contains("floorhand.db"), "{problem:?}");
    }

    #[test]
    fn the_report_puts_the_fix_under_a_failure_and_gives_a_verdict() {
        let r = Report {
            checks: vec![
                Check::pass("config", "f.toml: device d1 at site s1"),
                Check::fail("broker", "mqtt://h:1: refused", "start the broker"),
            ],
        };
        assert!(!r.passed());
        assert_eq!(
            r.render(),
            "PASS  config  f.toml: device d1 at site s1\n\
             FAIL  broker  mqtt://h:1: refused\n\
             \x20             -> start the broker\n\
             1 of 2 checks failed: not ready\n"
        );
    }
}
