//! A real headless browser for the tests: Debian's `chromium` driven through
//! `chromedriver` (package `chromium-driver`, installed by scripts/setup) with the W3C
//! WebDriver protocol, plain JSON over HTTP on a free local port. A few commands are all
//! the tests need (open a page, set a cookie, run a script, take a screenshot), so they are
//! spoken here over the tests' own HTTP client rather than through a WebDriver crate.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::http::Client;
use crate::mosquitto::free_port;

/// A running `chromedriver`; killed on drop.
pub struct Driver {
    child: Child,
    client: Client,
}

impl Driver {
    /// Starts `chromedriver` on a free port and waits until it is ready.
    pub fn start(log: &Path) -> Driver {
        let port = free_port();
        let log_path = log.to_path_buf();
        let log = std::fs::File::create(log).unwrap();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("chromedriver (Debian package chromium-driver: run scripts/setup)");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut client = Client::new(addr, None);
        // Ten Chromiums starting at once on a busy machine can take a while each.
        client.timeout = Duration::from_secs(120);
        let driver = Driver { child, client };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = driver.client.get("/status")
                && r.json()["value"]["ready"] == true
            {
                return driver;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver never became ready: {}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Opens a new headless Chromium of its own (profile in `profile`).
    pub fn browser(&self, profile: &Path, width: u32, height: u32) -> Browser {
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                // docs/dev/field-notes.md, "PostgreSQL and Chromium in tests": as root, Chromium
                // runs only without its sandbox.
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--no-first-run",
                         format!("--window-size={width},{height}"),
                         format!("--user-data-dir={}", profile.display())],
            }
        } } });
        let r = self
            .client
            .post("/session", &[], &caps.to_string())
            .expect("chromedriver answers");
        let v = r.json();
        let id = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_string();
        Browser {
            client: self.client.clone(),
            id,
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser session; closed on drop.
pub struct Browser {
    client: Client,
    id: String,
}

impl Browser {
    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let path = format!("/session/{}{path}", self.id);
        let body = if method == "GET" {
            String::new()
        } else {
            body.to_string()
        };
        let r = self
            .client
            .request(
                method,
                &path,
                &[("Content-Type", "application/json")],
                body.as_bytes(),
            )
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let v = r.json();
        assert_eq!(r.status, 200, "{method} {path}: {v}");
        v["value"].clone()
    }

    /// Navigates and waits for the page's load event.
    pub fn goto(&self, url: &str) {
        self.call("POST", "/url", json!({ "url": url }));
    }

    /// Sets a cookie for the current page's site.
    pub fn add_cookie(&self, name: &str, value: &str) {
        self.call(
            "POST",
            "/cookie",
            json!({ "cookie": { "name": name, "value": value, "path": "/", "sameSite": "Strict" } }),
        );
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its value.
    pub fn eval(&self, script: &str, args: Value) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            json!({ "script": script, "args": args }),
        )
    }

    /// Waits until `script` returns something other than null or false, and returns it.
    pub fn wait_for(&self, what: &str, timeout: Duration, script: &str) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.eval(script, json!([]));
            if !v.is_null() && v != Value::Bool(false) {
                return v;
            }
            assert!(Instant::now() < deadline, "the page never showed {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A PNG of the window.
    pub fn screenshot(&self) -> Vec<u8> {
        let v = self.call("GET", "/screenshot", Value::Null);
        base64_decode(v.as_str().expect("a base64 string"))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self
            .client
            .request("DELETE", &format!("/session/{}", self.id), &[], b"");
    }
}

/// Standard base64 (RFC 4648, with padding), as WebDriver sends screenshots.
pub fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c:?}"),
        }
    };
    let bytes: Vec<u8> = text
        .bytes()
        .filter(|b| !b.is_ascii_whitespace() && *b != b'=')
        .collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= value(c) << (18 - 6 * i);
        }
        let take = chunk.len() * 6 / 8;
        out.extend_from_slice(&n.to_be_bytes()[1..1 + take]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_with_and_without_padding() {
        assert_eq!(base64_decode("TWFu"), b"Man");
        assert_eq!(base64_decode("TWE="), b"Ma");
        assert_eq!(base64_decode("TQ=="), b"M");
        assert_eq!(base64_decode("iVBORw0KGgo="), b"\x89PNG\r\n\x1a\n");
    }
}
