//! A small W3C WebDriver client for Debian's `chromedriver` driving headless
//! `chromium`: sessions, navigation, elements, scripts, screenshots and the
//! browser console log. JSON over HTTP/1.1 on loopback, one connection per
//! command; nothing beyond what the journey test uses.

use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The running `chromedriver`.
pub struct Driver {
    addr: SocketAddr,
    child: Child,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> Value {
    match http_result(addr, method, path, body).await {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    }
}

/// One command; a WebDriver error is an `Err` with its message.
async fn http_result(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, String> {
    let mut stream = TcpStream::connect(addr)
        .await
        .expect("connect to chromedriver");
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).await.expect("write");
    // Read the head, then exactly Content-Length bytes (chromedriver may keep the
    // connection open); every command has a time limit.
    let read = async {
        let mut raw: Vec<u8> = vec![];
        let mut chunk = [0u8; 64 * 1024];
        loop {
            let n = stream.read(&mut chunk).await.expect("read");
            raw.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&raw).to_string();
            if let Some((head, rest)) = text.split_once("\r\n\r\n") {
                let lower = head.to_ascii_lowercase();
                let len = lower.lines().find_map(|l| {
                    l.strip_prefix("content-length:")
                        .and_then(|v| v.trim().parse::<usize>().ok())
                });
                let head_len = head.len() + 4;
                match len {
                    Some(len) if raw.len() >= head_len + len => {
                        return String::from_utf8_lossy(&raw[head_len..head_len + len]).to_string()
                    }
                    None if n == 0
                        || (lower.contains("chunked") && rest.ends_with("0\r\n\r\n")) =>
                    {
                        return if lower.contains("chunked") {
                            dechunk(rest)
                        } else {
                            rest.to_owned()
                        };
                    }
                    _ => {}
                }
            }
            assert!(n > 0, "chromedriver closed the connection early");
        }
    };
    let body = tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .unwrap_or_else(|_| panic!("chromedriver did not answer {method} {path} within 60 s"));
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| {
        panic!("chromedriver answered {method} {path} with non-JSON ({e}): {body}")
    });
    if let Some(err) = v["value"].get("error") {
        return Err(format!(
            "WebDriver {method} {path} failed: {err}: {}",
            v["value"]["message"]
        ));
    }
    Ok(v["value"].clone())
}

fn dechunk(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

impl Driver {
    /// Starts `chromedriver` on a free port and waits until it answers.
    pub async fn start(port: u16, log: &Path) -> Driver {
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).expect("chromedriver log"))
            .spawn()
            .expect("chromedriver (Debian package chromium-driver; scripts/setup installs it)");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(addr).await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Driver { addr, child }
    }

    /// A new headless Chromium with its own profile (cookies) in `profile`.
    pub async fn session(&self, profile: &Path) -> Session {
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                         "--disable-gpu", "--window-size=1280,1400", "--lang=de-DE",
                         format!("--user-data-dir={}", profile.display())],
                // German, the manual's language: Accept-Language picks the portal's.
                "prefs": {"intl.accept_languages": "de-DE,de"}
            },
            "goog:loggingPrefs": {"browser": "ALL"}
        }}});
        let v = http(self.addr, "POST", "/session", Some(&caps)).await;
        Session {
            addr: self.addr,
            id: v["sessionId"].as_str().expect("session id").to_owned(),
            console_errors: vec![],
        }
    }
}

/// One browser window.
pub struct Session {
    addr: SocketAddr,
    id: String,
    /// Console messages of level SEVERE seen so far.
    pub console_errors: Vec<String>,
}

/// A found element.
#[derive(Clone, Debug)]
pub struct El(String);

impl Session {
    async fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        http(
            self.addr,
            method,
            &format!("/session/{}{path}", self.id),
            body.as_ref(),
        )
        .await
    }

    pub async fn goto(&mut self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url }))).await;
        self.collect_console().await;
    }

    pub async fn url(&self) -> String {
        self.cmd("GET", "/url", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub async fn source(&self) -> String {
        self.cmd("GET", "/source", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub async fn find(&self, css: &str) -> El {
        let v = self
            .cmd(
                "POST",
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        El(v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}"))
            .to_owned())
    }

    pub async fn exists(&self, css: &str) -> bool {
        let v = self
            .cmd(
                "POST",
                "/elements",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v.as_array().is_some_and(|a| !a.is_empty())
    }

    pub async fn click(&mut self, css: &str) {
        let el = self.find(css).await;
        self.cmd("POST", &format!("/element/{}/click", el.0), Some(json!({})))
            .await;
        self.collect_console().await;
    }

    /// Clicks a link or submit button and waits until the next page has loaded
    /// (a marker set on the old document is gone and the new one is complete).
    pub async fn click_nav(&mut self, css: &str) {
        self.exec_async("window.__journeyOldPage = true; arguments[0](true);")
            .await;
        self.click(css).await;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let probe = json!({
                "script": "arguments[0](window.__journeyOldPage === undefined && document.readyState === 'complete');",
                "args": []
            });
            let path = format!("/session/{}/execute/async", self.id);
            if let Ok(Value::Bool(true)) = http_result(self.addr, "POST", &path, Some(&probe)).await
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "clicking {css} loaded no new page"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.collect_console().await;
    }

    /// Replaces the input's value by typing `text` (so the page's input events fire).
    pub async fn fill(&self, css: &str, text: &str) {
        let el = self.find(css).await;
        self.cmd("POST", &format!("/element/{}/clear", el.0), Some(json!({})))
            .await;
        self.cmd(
            "POST",
            &format!("/element/{}/value", el.0),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// Chooses `file` in the file input `css`, as a user does in the file dialog
    /// (the input's change event fires).
    pub async fn choose_file(&self, css: &str, file: &Path) {
        let el = self.find(css).await;
        self.cmd(
            "POST",
            &format!("/element/{}/value", el.0),
            Some(json!({ "text": file.display().to_string() })),
        )
        .await;
    }

    pub async fn text(&self, css: &str) -> String {
        let el = self.find(css).await;
        self.cmd("GET", &format!("/element/{}/text", el.0), None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Waits up to 10 s for `css`'s text to become `want`; returns what it was.
    pub async fn wait_text(&self, css: &str, want: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let t = self.text(css).await;
            if t == want || Instant::now() > deadline {
                return t;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs an async script; `arguments[arguments.length - 1]` is the callback.
    pub async fn exec_async(&self, script: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/async",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    /// Runs a DevTools command through chromedriver (`goog/cdp/execute`).
    pub async fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.cmd(
            "POST",
            "/goog/cdp/execute",
            Some(json!({"cmd": cmd, "params": params})),
        )
        .await
    }

    /// Makes the page `width` x `height` CSS pixels, as a phone or desktop window
    /// of that size shows it (`None`: back to the window's own size).
    pub async fn viewport(&self, size: Option<(u32, u32)>) {
        match size {
            Some((width, height)) => {
                self.cdp(
                    "Emulation.setDeviceMetricsOverride",
                    json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
                )
                .await
            }
            None => {
                self.cdp("Emulation.clearDeviceMetricsOverride", json!({}))
                    .await
            }
        };
    }

    pub async fn screenshot(&self, path: &Path) {
        use base64::Engine;
        let v = self.cmd("GET", "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("base64 screenshot"))
            .expect("base64");
        std::fs::write(path, png).expect("write screenshot");
    }

    /// Reads the browser console (chromedriver's log endpoint) and keeps the errors.
    pub async fn collect_console(&mut self) {
        let v = self
            .cmd("POST", "/se/log", Some(json!({"type": "browser"})))
            .await;
        for entry in v.as_array().into_iter().flatten() {
            let message = entry["message"].as_str().unwrap_or_default();
            // The live price's designed refusal (422 with the field errors, issue
            // 18) is logged by Chromium as a failed resource load: an answer the
            // page reads, not an error of the page. Every other one counts.
            let designed_refusal = message.contains("/api/price?")
                && message.contains("status of 422 (Unprocessable Entity)");
            if entry["level"] == "SEVERE" && !designed_refusal {
                self.console_errors.push(message.to_owned());
            }
        }
    }

    /// The value of cookie `name` for the current page's site, if it is set.
    pub async fn cookie(&self, name: &str) -> Option<String> {
        let v = self.cmd("GET", &format!("/cookie/{name}"), None).await;
        v["value"].as_str().map(str::to_owned)
    }

    pub async fn close(self) {
        let _ = self.cmd("DELETE", "", None).await;
    }
}
