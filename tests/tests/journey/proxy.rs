//! A round-robin HTTP/1.1 reverse proxy on loopback: the journey's stand-in for
//! the load balancer in front of several `pls serve` instances (README,
//! "Operating several servers"). A test tool, not a product part: no TLS, no
//! health checks, whole requests and answers held in memory.
//!
//! Every request, not every connection, goes to the next instance in turn (the
//! browser keeps its connections open, so alternating per connection would let
//! one instance serve nearly everything). Pages and form posts take turns on
//! one counter and `/static/` files on another, so a page load with its
//! stylesheet and scripts cannot put every page on the same instance. Each
//! request goes to its instance over a new connection with `Connection: close`;
//! the answer goes back on the browser's connection, which stays open.
//!
//! Per instance it counts the pages it answered, those that carried the
//! session cookie, and those of them answered "log in first" (a session the
//! instance did not know).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What one instance answered through the proxy.
#[derive(Debug, Default)]
struct Counts {
    pages: AtomicU64,
    with_session: AtomicU64,
    to_login: AtomicU64,
    statics: AtomicU64,
}

/// A snapshot of one instance's counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Served {
    /// Requests other than `/static/` files.
    pub pages: u64,
    /// Of them, those with the `pls_session` cookie.
    pub with_session: u64,
    /// Of those, the ones answered "log in first" (a redirect to `/login?next=`):
    /// a session the instance did not know.
    pub to_login: u64,
    /// `/static/` files.
    pub statics: u64,
}

struct Shared {
    backends: Vec<SocketAddr>,
    next_page: AtomicUsize,
    next_static: AtomicUsize,
    counts: Vec<Counts>,
}

/// The running proxy; it stops when dropped.
pub struct Proxy {
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    /// Listens on `addr` (a loopback address) and forwards to `backends` in turn.
    pub async fn start(addr: SocketAddr, backends: Vec<SocketAddr>) -> Proxy {
        let listener = TcpListener::bind(addr).await.expect("proxy listens");
        let shared = Arc::new(Shared {
            counts: backends.iter().map(|_| Counts::default()).collect(),
            backends,
            next_page: AtomicUsize::new(0),
            next_static: AtomicUsize::new(0),
        });
        let accepting = Arc::clone(&shared);
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let shared = Arc::clone(&accepting);
                tokio::spawn(async move {
                    // A broken connection ends only itself (the browser retries
                    // or the journey's own assertion says what went wrong).
                    let _ = serve(conn, &shared).await;
                });
            }
        });
        Proxy { shared, task }
    }

    /// What each instance answered so far, in the order of the backends.
    pub fn served(&self) -> Vec<Served> {
        self.shared
            .counts
            .iter()
            .map(|c| Served {
                pages: c.pages.load(Ordering::SeqCst),
                with_session: c.with_session.load(Ordering::SeqCst),
                to_login: c.to_login.load(Ordering::SeqCst),
                statics: c.statics.load(Ordering::SeqCst),
            })
            .collect()
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The value of header `name` (lower case) in a request or response head.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

/// The head without its hop-by-hop connection headers.
fn end_to_end(head: &str) -> Vec<&str> {
    head.split("\r\n")
        .filter(|l| !l.is_empty())
        .filter(|l| {
            let name = l.split(':').next().unwrap_or_default().trim();
            !["connection", "keep-alive", "proxy-connection"]
                .iter()
                .any(|h| name.eq_ignore_ascii_case(h))
        })
        .collect()
}

/// Reads more of `conn` into `buf`; false at the end of the stream.
async fn fill(conn: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    let mut chunk = [0u8; 16 * 1024];
    let n = conn.read(&mut chunk).await?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n > 0)
}

async fn serve(mut browser: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let mut buf = Vec::new();
    loop {
        let head_len = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            if !fill(&mut browser, &mut buf).await? {
                return Ok(());
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_len]).into_owned();
        // Browsers send form bodies with a length, never chunked.
        let body_len: usize = header(&head, "content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < head_len + body_len {
            if !fill(&mut browser, &mut buf).await? {
                return Ok(());
            }
        }
        let body: Vec<u8> = buf.drain(..head_len + body_len).skip(head_len).collect();
        let request_line = head.split("\r\n").next().unwrap_or_default();
        let is_head = request_line.starts_with("HEAD ");
        let path = request_line.split(' ').nth(1).unwrap_or_default();
        let is_static = path.starts_with("/static/");
        let turn = if is_static {
            &shared.next_static
        } else {
            &shared.next_page
        };
        let i = turn.fetch_add(1, Ordering::SeqCst) % shared.backends.len();
        let with_session = header(&head, "cookie").is_some_and(|c| c.contains("pls_session="));

        let mut upstream = end_to_end(&head).join("\r\n");
        upstream.push_str("\r\nConnection: close\r\n\r\n");
        let mut instance = TcpStream::connect(shared.backends[i]).await?;
        instance.write_all(upstream.as_bytes()).await?;
        instance.write_all(&body).await?;
        let mut answer = Vec::new();
        instance.read_to_end(&mut answer).await?;
        let Some(answer_head_len) = find(&answer, b"\r\n\r\n").map(|i| i + 4) else {
            return Ok(()); // no answer: the browser sees the connection close
        };
        let answer_head = String::from_utf8_lossy(&answer[..answer_head_len]).into_owned();
        let answer_body = &answer[answer_head_len..];
        let status = answer_head.split(' ').nth(1).unwrap_or_default();

        let c = &shared.counts[i];
        if is_static {
            c.statics.fetch_add(1, Ordering::SeqCst);
        } else {
            c.pages.fetch_add(1, Ordering::SeqCst);
            if with_session {
                c.with_session.fetch_add(1, Ordering::SeqCst);
                // "Log in first": what a page answers to a session it does not know.
                let to_login = status.starts_with('3')
                    && header(&answer_head, "location").is_some_and(|l| l.contains("/login?next="));
                if to_login {
                    c.to_login.fetch_add(1, Ordering::SeqCst);
                }
            }
        }

        // The instance ended its answer by closing; the browser's connection
        // stays open, so the answer needs a length unless it is chunked.
        let mut back = end_to_end(&answer_head).join("\r\n");
        let framed = header(&answer_head, "content-length").is_some()
            || header(&answer_head, "transfer-encoding").is_some();
        if !framed && !is_head && status != "204" && status != "304" {
            back.push_str(&format!("\r\nContent-Length: {}", answer_body.len()));
        }
        back.push_str("\r\n\r\n");
        browser.write_all(back.as_bytes()).await?;
        browser.write_all(answer_body).await?;
    }
}
