//! A tiny HTTP/1.1 client with a cookie jar, for driving the portal over a real
//! socket in tests, and helpers to read emails from the file outbox.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug, Clone)]
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
    pub fn set_cookies(&self) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .map(|(_, v)| v.as_str())
            .collect()
    }
    /// The CSRF token of the first form on the page.
    pub fn csrf(&self) -> String {
        between(&self.body, "name=\"csrf\" value=\"", "\"").unwrap_or_default()
    }
}

pub fn between(s: &str, start: &str, end: &str) -> Option<String> {
    let i = s.find(start)? + start.len();
    let j = s[i..].find(end)? + i;
    Some(s[i..j].to_owned())
}

/// A browser: one cookie jar, one client address.
#[derive(Debug, Clone)]
pub struct Browser {
    pub addr: SocketAddr,
    pub cookies: HashMap<String, String>,
    pub accept_language: Option<String>,
}

impl Browser {
    pub fn new(addr: SocketAddr) -> Self {
        Browser {
            addr,
            cookies: HashMap::new(),
            accept_language: None,
        }
    }

    pub async fn get(&mut self, path: &str) -> Reply {
        self.request("GET", path, None).await
    }

    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Reply {
        let body: String = fields
            .iter()
            .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        self.request("POST", path, Some(body)).await
    }

    pub async fn request(&mut self, method: &str, path: &str, body: Option<String>) -> Reply {
        let mut stream = TcpStream::connect(self.addr).await.expect("connect");
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.addr
        );
        if !self.cookies.is_empty() {
            let c: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            req.push_str(&format!("Cookie: {}\r\n", c.join("; ")));
        }
        if let Some(al) = &self.accept_language {
            req.push_str(&format!("Accept-Language: {al}\r\n"));
        }
        let body = body.unwrap_or_default();
        if method == "POST" {
            req.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        req.push_str(&body);
        stream.write_all(req.as_bytes()).await.expect("write");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.expect("read");
        let text = String::from_utf8_lossy(&raw).to_string();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let mut lines = head.lines();
        let status: u16 = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| {
                l.split_once(':')
                    .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            })
            .collect();
        let chunked = headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
        let body = if chunked {
            dechunk(body)
        } else {
            body.to_owned()
        };
        let reply = Reply {
            status,
            headers,
            body,
        };
        for c in reply.set_cookies() {
            let pair = c.split(';').next().unwrap_or("");
            if let Some((k, v)) = pair.split_once('=') {
                if v.is_empty() || c.contains("Max-Age=0") {
                    self.cookies.remove(k);
                } else {
                    self.cookies.insert(k.to_owned(), v.to_owned());
                }
            }
        }
        reply
    }
}

fn dechunk(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].strip_prefix("\r\n").unwrap_or(&after[n..]);
    }
    out
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

/// A decoded email from the outbox.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    /// The text/plain part, decoded.
    pub text: String,
    /// The text/html part, decoded.
    pub html: String,
}

fn decode_qp(s: &str) -> String {
    let s = s.replace("=\r\n", "").replace("=\n", "");
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 3 <= bytes.len() {
            if let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).to_string()
}

fn decode_header_word(v: &str) -> String {
    // RFC 2047 as lettre writes non-ASCII subjects: whitespace between two encoded
    // words is dropped, elsewhere kept.
    let mut out = String::new();
    let mut prev_encoded = false;
    for word in v.split_whitespace() {
        let lower = word.to_ascii_lowercase();
        let decoded = if lower.starts_with("=?utf-8?b?") && word.ends_with("?=") {
            use base64::Engine;
            let b = base64::engine::general_purpose::STANDARD
                .decode(&word[10..word.len() - 2])
                .unwrap_or_default();
            Some(String::from_utf8_lossy(&b).to_string())
        } else if lower.starts_with("=?utf-8?q?") && word.ends_with("?=") {
            Some(decode_qp(&word[10..word.len() - 2].replace('_', " ")))
        } else {
            None
        };
        let encoded = decoded.is_some();
        if !(out.is_empty() || encoded && prev_encoded) {
            out.push(' ');
        }
        out.push_str(&decoded.unwrap_or_else(|| word.to_owned()));
        prev_encoded = encoded;
    }
    out
}

/// Parses one `.eml` file as lettre writes it.
pub fn parse_eml(raw: &str) -> Mail {
    let raw = raw.replace("\r\n", "\n");
    let (head, body) = raw.split_once("\n\n").unwrap_or((&raw, ""));
    // Unfold continuation lines.
    let head = head.replace("\n ", " ").replace("\n\t", " ");
    let hv = |name: &str| {
        head.lines()
            .find_map(|l| {
                l.split_once(':')
                    .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_default()
    };
    let to = hv("To");
    let subject = decode_header_word(&hv("Subject"));
    let mut text = String::new();
    let mut html = String::new();
    // Walk the MIME parts: each starts with headers, a blank line, then content.
    for part in body.split("\n--") {
        let Some((ph, pb)) = part.split_once("\n\n") else {
            continue;
        };
        let ph_l = ph.to_ascii_lowercase();
        if !ph_l.contains("content-type: text/") {
            continue;
        }
        let decoded = if ph_l.contains("content-transfer-encoding: base64") {
            use base64::Engine;
            let joined: String = pb.lines().take_while(|l| !l.starts_with("--")).collect();
            String::from_utf8_lossy(
                &base64::engine::general_purpose::STANDARD
                    .decode(joined.trim())
                    .unwrap_or_default(),
            )
            .to_string()
        } else if ph_l.contains("quoted-printable") {
            decode_qp(pb)
        } else {
            pb.to_owned()
        };
        if ph_l.contains("content-type: text/html") {
            html.push_str(&decoded);
        } else {
            text.push_str(&decoded);
        }
    }
    Mail {
        to,
        subject,
        text,
        html,
    }
}

/// Every email in the outbox, oldest first (by file modification time).
pub fn outbox(dir: &Path) -> Vec<Mail> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
                .collect()
        })
        .unwrap_or_default();
    files.sort_by_key(|e| e.metadata().and_then(|m| m.modified()).ok());
    files
        .iter()
        .map(|e| parse_eml(&std::fs::read_to_string(e.path()).unwrap_or_default()))
        .collect()
}
