//! A minimal HTTP/1.1 client over `std::net::TcpStream` for the bridge tests: one request
//! per connection (`Connection: close`), content-length and chunked bodies, and a reader
//! of Server-Sent Events. No new dependency for the tests.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// An answer.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A client of one server, with a bearer token (or none).
#[derive(Debug, Clone)]
pub struct Client {
    /// Server address.
    pub addr: SocketAddr,
    /// Sent as `Authorization: Bearer ...` when set.
    pub token: Option<String>,
    /// Read and write timeout.
    pub timeout: Duration,
}

/// A status, the headers, and the connection positioned at the body.
type Head = (u16, Vec<(String, String)>, BufReader<TcpStream>);

fn head_and_stream(
    c: &Client,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Head> {
    let mut s = TcpStream::connect_timeout(&c.addr, c.timeout)?;
    s.set_read_timeout(Some(c.timeout))?;
    s.set_write_timeout(Some(c.timeout))?;
    // Headers and body go in two writes: without this the body waits on Nagle's algorithm
    // and the server's delayed ACK (about 40 ms a request).
    s.set_nodelay(true)?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
        c.addr,
        body.len()
    );
    if let Some(t) = &c.token {
        req += &format!("Authorization: Bearer {t}\r\n");
    }
    for (n, v) in headers {
        req += &format!("{n}: {v}\r\n");
    }
    req += "\r\n";
    s.write_all(req.as_bytes())?;
    // A server may answer (413) before reading a large body and close: the answer is
    // still there to read.
    let _ = s.write_all(body);
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut hs = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((n, v)) = l.split_once(':') {
            hs.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    Ok((status, hs, r))
}

fn chunked(hs: &[(String, String)]) -> bool {
    hs.iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"))
}

/// Reads one chunk of a chunked body; `None` at its end.
fn read_chunk(r: &mut BufReader<TcpStream>) -> std::io::Result<Option<Vec<u8>>> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
        .map_err(|_| std::io::Error::other(format!("bad chunk size {line:?}")))?;
    let mut data = vec![0; size];
    r.read_exact(&mut data)?;
    let mut crlf = [0; 2];
    r.read_exact(&mut crlf)?;
    Ok((size > 0).then_some(data))
}

impl Client {
    /// A client of `addr` with `token`.
    pub fn new(addr: SocketAddr, token: Option<&str>) -> Client {
        Client {
            addr,
            token: token.map(str::to_string),
            timeout: Duration::from_secs(30),
        }
    }

    /// Sends one request and reads the whole answer.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Response> {
        let (status, headers, mut r) = head_and_stream(self, method, path, headers, body)?;
        let mut out = Vec::new();
        let length = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse::<usize>().ok());
        if chunked(&headers) {
            while let Some(c) = read_chunk(&mut r)? {
                out.extend(c);
            }
        } else if let Some(n) = length {
            // Some servers (chromedriver) keep the socket open after the body despite
            // `Connection: close`.
            out.resize(n, 0);
            r.read_exact(&mut out)?;
        } else {
            r.read_to_end(&mut out)?;
        }
        Ok(Response {
            status,
            headers,
            body: out,
        })
    }

    /// GET.
    pub fn get(&self, path: &str) -> std::io::Result<Response> {
        self.request("GET", path, &[], b"")
    }

    /// POST a JSON body, with extra headers.
    pub fn post(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> std::io::Result<Response> {
        let mut h = vec![("Content-Type", "application/json")];
        h.extend_from_slice(headers);
        self.request("POST", path, &h, body.as_bytes())
    }

    /// Opens a Server-Sent Events stream.
    pub fn sse(&self, path: &str, headers: &[(&str, &str)]) -> std::io::Result<SseStream> {
        let mut h = vec![("Accept", "text/event-stream")];
        h.extend_from_slice(headers);
        let (status, headers, r) = head_and_stream(self, "GET", path, &h, b"")?;
        if status != 200 {
            return Err(std::io::Error::other(format!("stream answered {status}")));
        }
        Ok(SseStream {
            chunked: chunked(&headers),
            r,
            buf: String::new(),
        })
    }
}

/// One Server-Sent Event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sse {
    /// `id:`
    pub id: Option<String>,
    /// `event:`
    pub event: Option<String>,
    /// `data:` lines joined.
    pub data: String,
}

/// An open event stream; dropping it hangs up.
pub struct SseStream {
    chunked: bool,
    r: BufReader<TcpStream>,
    buf: String,
}

impl SseStream {
    /// The next event (comments and keep-alives skipped); an error on a read timeout or
    /// when the server ends the stream.
    pub fn next_event(&mut self) -> std::io::Result<Sse> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut ev = Sse {
                    id: None,
                    event: None,
                    data: String::new(),
                };
                let mut any = false;
                for line in block.lines() {
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match field {
                        "id" => ev.id = Some(value.to_string()),
                        "event" => ev.event = Some(value.to_string()),
                        "data" => {
                            if !ev.data.is_empty() {
                                ev.data.push('\n');
                            }
                            ev.data.push_str(value);
                        }
                        _ => continue,
                    }
                    any = true;
                }
                if any {
                    return Ok(ev);
                }
                continue;
            }
            let more = if self.chunked {
                read_chunk(&mut self.r)?.ok_or_else(|| std::io::Error::other("the stream ended"))?
            } else {
                let mut b = vec![0; 4096];
                let n = self.r.read(&mut b)?;
                if n == 0 {
                    return Err(std::io::Error::other("the stream ended"));
                }
                b.truncate(n);
                b
            };
            self.buf.push_str(&String::from_utf8_lossy(&more));
        }
    }
}
