//! A small keep-alive HTTP/1.1 client with a cookie jar: one connection per
//! simulated portal user, requests one after another, like one browser tab.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// No answer within this time counts as an error.
const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The CSRF token of the first form on the page.
    pub fn csrf(&self) -> Option<String> {
        between(&self.body, "name=\"csrf\" value=\"", "\"")
    }
}

pub fn between(s: &str, start: &str, end: &str) -> Option<String> {
    let i = s.find(start)? + start.len();
    let j = s[i..].find(end)? + i;
    Some(s[i..j].to_owned())
}

/// One user's browser: a cookie jar and one keep-alive connection.
///
/// With several addresses (`--instances`) it stands for the browser behind a
/// load balancer with retries: a request whose server is gone (refused, reset,
/// closed without an answer) is sent once more to the next address, with the
/// same cookies, so the session must be valid on every server.
#[derive(Debug)]
pub struct Browser {
    addrs: Vec<SocketAddr>,
    current: usize,
    conn: Option<TcpStream>,
    cookies: BTreeMap<String, String>,
    buf: Vec<u8>,
}

impl Browser {
    pub fn new(addr: SocketAddr) -> Self {
        Self::with_fallbacks(vec![addr])
    }

    /// A browser that starts at `addrs[0]` and moves on when a server is gone.
    pub fn with_fallbacks(addrs: Vec<SocketAddr>) -> Self {
        Browser {
            addrs,
            current: 0,
            conn: None,
            cookies: BTreeMap::new(),
            buf: Vec::with_capacity(64 * 1024),
        }
    }

    pub async fn get(&mut self, path: &str) -> Result<Reply, String> {
        self.request("GET", path, "").await
    }

    pub async fn post(&mut self, path: &str, fields: &[(String, String)]) -> Result<Reply, String> {
        let body: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
            .collect();
        self.request("POST", path, &body.join("&")).await
    }

    async fn request(&mut self, method: &str, path: &str, body: &str) -> Result<Reply, String> {
        match self.request_once(method, path, body).await {
            Err(e) if self.addrs.len() > 1 && !e.starts_with("timeout") => {
                self.current = (self.current + 1) % self.addrs.len();
                self.request_once(method, path, body)
                    .await
                    .map_err(|again| format!("{e}; again at the next server: {again}"))
            }
            other => other,
        }
    }

    /// Failed over to another server at least once.
    pub fn moved(&self) -> bool {
        self.current != 0
    }

    async fn request_once(
        &mut self,
        method: &str,
        path: &str,
        body: &str,
    ) -> Result<Reply, String> {
        match tokio::time::timeout(TIMEOUT, self.exchange(method, path, body)).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => {
                self.conn = None;
                Err(e)
            }
            Err(_) => {
                self.conn = None;
                Err("timeout (30 s)".into())
            }
        }
    }

    async fn exchange(&mut self, method: &str, path: &str, body: &str) -> Result<Reply, String> {
        let addr = self.addrs[self.current];
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n");
        if !self.cookies.is_empty() {
            let c: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            req.push_str(&format!("Cookie: {}\r\n", c.join("; ")));
        }
        if method == "POST" {
            req.push_str(&format!(
                "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        req.push_str("\r\n");
        req.push_str(body);
        if self.conn.is_none() {
            let s = TcpStream::connect(addr)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let _ = s.set_nodelay(true);
            self.conn = Some(s);
        }
        let stream = self.conn.as_mut().ok_or("no connection")?;
        stream
            .write_all(req.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        self.buf.clear();
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            read_more(stream, &mut self.buf).await?;
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).to_string();
        let mut lines = head.lines();
        let status: u16 = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or("no status line")?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| {
                l.split_once(':')
                    .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            })
            .collect();
        let value = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.to_ascii_lowercase())
        };
        let close = value("connection").is_some_and(|v| v.contains("close"));
        let body = if let Some(len) = value("content-length") {
            let len: usize = len.parse().map_err(|_| "bad content-length")?;
            while self.buf.len() < head_end + len {
                read_more(stream, &mut self.buf).await?;
            }
            self.buf[head_end..head_end + len].to_vec()
        } else if value("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            dechunk(stream, &mut self.buf, head_end).await?
        } else {
            return Err("answer without length".into());
        };
        if close {
            self.conn = None;
        }
        let reply = Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&body).to_string(),
        };
        for (k, v) in &reply.headers {
            if !k.eq_ignore_ascii_case("set-cookie") {
                continue;
            }
            let pair = v.split(';').next().unwrap_or("");
            if let Some((name, val)) = pair.split_once('=') {
                if val.is_empty() || v.contains("Max-Age=0") {
                    self.cookies.remove(name);
                } else {
                    self.cookies.insert(name.to_owned(), val.to_owned());
                }
            }
        }
        Ok(reply)
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(), String> {
    let mut chunk = [0u8; 32 * 1024];
    let n = stream
        .read(&mut chunk)
        .await
        .map_err(|e| format!("read: {e}"))?;
    if n == 0 {
        return Err("connection closed by the server".into());
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

async fn dechunk(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    start: usize,
) -> Result<Vec<u8>, String> {
    let mut out = vec![];
    let mut at = start;
    loop {
        let line_end = loop {
            if let Some(i) = find(&buf[at..], b"\r\n") {
                break at + i;
            }
            read_more(stream, buf).await?;
        };
        let size_text = String::from_utf8_lossy(&buf[at..line_end]).to_string();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| "bad chunk size")?;
        let data = line_end + 2;
        while buf.len() < data + size + 2 {
            read_more(stream, buf).await?;
        }
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[data..data + size]);
        at = data + size + 2;
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

pub fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Every hidden field of a form page, in order, HTML entities undone; each name
/// once (the menu's logout form repeats the page's `csrf`, and a browser sends
/// only the submitted form's fields).
pub fn hidden_fields(page: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = vec![];
    let mut rest = page;
    let marker = "<input type=\"hidden\" name=\"";
    while let Some(i) = rest.find(marker) {
        rest = &rest[i + marker.len()..];
        let name = rest[..rest.find('"').unwrap_or(0)].to_owned();
        let value = between(rest, "value=\"", "\"").unwrap_or_default();
        if !out.iter().any(|(n, _)| *n == name) {
            out.push((name, unescape(&value)));
        }
    }
    out
}

fn unescape(s: &str) -> String {
    s.replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}
