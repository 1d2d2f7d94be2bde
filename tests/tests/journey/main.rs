//! The whole journey (issue 7): real `pls serve` and `promos-licd` processes on
//! loopback, the portal driven in headless Chromium through chromedriver.
//!
//! 1. Register, verify through the outbox email, log in.
//! 2. The manual's worked order: the live total shows 7.150,00 €, the summary,
//!    "Get quote", the quote email, ordering through its link.
//! 3. The admin marks it paid; the license page shows the services and the token.
//! 4. Daemon A activates with number and token; its socket reports exactly the
//!    ordered entitlements; the portal shows "running" and A's hardware ID.
//! 5. The runtime stops; the portal offers the upgrade; SAIA PCD goes up; the
//!    admin activates it; A receives the new grant at its next check.
//! 6. Reset in the portal; daemon B activates; A is refused at its next check and
//!    its socket says why.
//! 7. An engineering license: free, active without payment; daemon C activates
//!    it online and, after `runtime_started`, reports the stop 24 hours later.
//! 8. A hard-dongle license: the admin enters the dongle serial, the customer
//!    downloads the file, daemon D with the SIMULATED dongle (a file) runs
//!    licensed; the dongle is removed and the stop is scheduled an hour later.
//!
//! Issue 19 after step 6: the offline check by file. B writes a request file
//! (`promos-licd offline request`), the customer chooses it in the license's
//! "Offline-Prüfung" form, downloads the answer file, and B applies it
//! (`promos-licd offline apply`). At the end the customer logs out and the old
//! session id is refused everywhere.
//!
//! Two runs of the same steps: one `pls serve` on SQLite, and (issue 15) two
//! `pls serve` on one database of a throwaway PostgreSQL cluster behind a
//! round-robin proxy in the test (`proxy.rs`, the stand-in for a load
//! balancer) that sends every page request to the other instance than the one
//! before; the daemons get both QUIC addresses, in a different order for every
//! other daemon. That run asserts that both instances answered a real share of
//! the pages with the session cookie and never said "log in first".
//!
//! Issue 18 on the way: the empty license list leads to ordering; one driver
//! over its maximum keeps the other prices and the valid total; the upgrade form
//! shows totals; the token is hidden again and has a copy button; the admin
//! lands on the administration and confirms "mark paid" before it happens; the
//! order form, the license page, the upgrade form and the quote list fit a
//! 390 px window (and 1280 px) without scrolling sideways.
//!
//! Screenshots of the key pages go to `<target>/tmp/journey-screenshots/`
//! (`journey-screenshots-two-servers/` for the second run); the
//! test fails on any browser console error. The daemons' hardware IDs come from
//! the test-only override `PROMOS_LICD_TEST_HARDWARE_ID`; their dongle backend
//! is the simulated one.

mod proxy;
mod webdriver;

use e2e::{free_tcp_port, free_udp_port};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use webdriver::{Driver, Session};

const PW: &str = "journey-password-42";
const ADMIN_PW: &str = "journey-admin-pw-42";
const HOST_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const HOST_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const HOST_C: &str = "cccccccccccccccccccccccccccccccc";
const HOST_D: &str = "dddddddddddddddddddddddddddddddd";

/// GET over plain HTTP/1.1: the body of a 200 answer.
async fn http_get(addr: (&str, u16), path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).await.expect("send");
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.expect("read");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a whole response");
    assert!(head.starts_with("HTTP/1.1 200"), "{path}: {head}");
    body.to_owned()
}

/// GET `path` on a server instance with session cookie `session`: the
/// response's head.
async fn http_head(port: u16, path: &str, session: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nCookie: pls_session={session}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(request.as_bytes()).await.expect("send");
    let mut raw = vec![];
    s.read_to_end(&mut raw).await.expect("read");
    let raw = String::from_utf8_lossy(&raw);
    raw.split_once("\r\n\r\n")
        .map_or(raw.as_ref(), |(head, _)| head)
        .to_owned()
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// A child process killed when the test ends, however it ends.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The newest `.eml` in the outboxes (one per server instance: whichever
/// instance takes a queued email sends it) whose text contains `needle`, with
/// quoted-printable soft breaks and `=3D` undone.
async fn mail_containing(outboxes: &[PathBuf], needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut found: Vec<(SystemTime, String)> = outboxes
            .iter()
            .flat_map(std::fs::read_dir)
            .flatten()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
            .filter_map(|e| {
                let raw = std::fs::read_to_string(e.path()).ok()?;
                let text = raw
                    .replace("=\r\n", "")
                    .replace("=\n", "")
                    .replace("=3D", "=");
                let at = e.metadata().ok()?.modified().ok()?;
                text.contains(needle).then_some((at, text))
            })
            .collect();
        found.sort();
        if let Some((_, text)) = found.pop() {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "no email containing {needle:?} in {outboxes:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The first `http://...` link in `text` that contains `part`.
fn link(text: &str, part: &str) -> String {
    text.split(|c: char| c.is_whitespace() || c == '"' || c == '<' || c == '>')
        .find(|w| w.starts_with("http://") && w.contains(part))
        .unwrap_or_else(|| panic!("no link with {part:?}"))
        .to_owned()
}

/// One JSON-lines connection to a daemon's socket.
struct Sock {
    lines: BufReader<tokio::net::unix::OwnedReadHalf>,
    write: tokio::net::unix::OwnedWriteHalf,
}

impl Sock {
    async fn open(path: &Path) -> Sock {
        let deadline = Instant::now() + Duration::from_secs(30);
        let stream = loop {
            match UnixStream::connect(path).await {
                Ok(s) => break s,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(e) => panic!("daemon socket {}: {e}", path.display()),
            }
        };
        let (r, w) = stream.into_split();
        Sock {
            lines: BufReader::new(r),
            write: w,
        }
    }

    async fn ask(&mut self, req: Value) -> Value {
        self.write
            .write_all(format!("{req}\n").as_bytes())
            .await
            .expect("socket write");
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(60), self.lines.read_line(&mut line))
                .await
                .expect("socket answer in time")
                .expect("socket read");
            assert!(n > 0, "daemon closed the socket");
            let v: Value = serde_json::from_str(&line).expect("JSON line");
            if v.get("event").is_none() {
                return v;
            }
        }
    }
}

/// A `promos-licd run` process.
struct Daemon {
    socket: PathBuf,
    _proc: Proc,
}

struct Site<'a> {
    licd: &'a Path,
    dir: &'a Path,
    /// The servers' QUIC addresses (one per instance).
    quic: &'a [SocketAddr],
    pls_data: &'a Path,
}

impl Site<'_> {
    /// `promos-licd` with the environment of daemon `name`: its server list
    /// starts at a different instance for every other daemon (so with two
    /// instances both answer daemons), its own data directory and socket.
    fn licd(&self, name: &str, hwid: &str) -> Command {
        let home = self.dir.join(name);
        std::fs::create_dir_all(&home).expect("daemon dir");
        let public =
            std::fs::read_to_string(self.pls_data.join("signing.pub")).expect("public key");
        let mut servers: Vec<String> = self.quic.iter().map(|a| a.to_string()).collect();
        let first = usize::from(name.as_bytes()[0]) % servers.len();
        servers.rotate_left(first);
        let mut cmd = Command::new(self.licd);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PROMOS_LICD_SERVER", servers.join(","))
            .env("PROMOS_LICD_SERVER_NAME", "localhost")
            .env(
                "PROMOS_LICD_SERVER_CERT_DER",
                self.pls_data.join("quic-cert.der"),
            )
            .env("PROMOS_LICD_TRUSTED_KEYS", public.trim())
            .env("PROMOS_LICD_DATA_DIR", home.join("data"))
            .env("PROMOS_LICD_SOCKET", home.join("licd.sock"))
            .env("PROMOS_LICD_TEST_HARDWARE_ID", hwid)
            .env("PROMOS_LICD_DONGLE_BACKEND", "simulated")
            .env("PROMOS_LICD_SIMULATED_DONGLE_FILE", home.join("dongle"))
            .env("PROMOS_LICD_TICK_SECS", "1")
            .env("PROMOS_LICD_LOG", "info");
        cmd
    }

    fn daemon(&self, name: &str, hwid: &str, extra: &[(&str, String)]) -> Daemon {
        let home = self.dir.join(name);
        let socket = home.join("licd.sock");
        let mut cmd = self.licd(name, hwid);
        cmd.arg("run")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(home.join("licd.log")).expect("log"));
        for (k, v) in extra {
            cmd.env(k, v);
        }
        Daemon {
            socket,
            _proc: Proc(cmd.spawn().expect("promos-licd")),
        }
    }
}

impl Daemon {
    async fn status(&self) -> Value {
        let mut s = Sock::open(&self.socket).await;
        let v = s.ask(json!({"cmd": "status"})).await;
        v["status"].clone()
    }

    async fn check_now(&self) -> Value {
        let mut s = Sock::open(&self.socket).await;
        let v = s.ask(json!({"cmd": "check_now"})).await;
        v["status"].clone()
    }

    /// Waits up to 30 s for `pred` to hold on the status.
    async fn wait_for(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let s = self.status().await;
            if pred(&s) {
                return s;
            }
            assert!(Instant::now() < deadline, "daemon never became {what}: {s}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

struct Journey {
    base: String,
    outboxes: Vec<PathBuf>,
    shots: PathBuf,
}

impl Journey {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn shot(&self, s: &Session, name: &str) {
        s.screenshot(&self.shots.join(format!("{name}.png"))).await;
    }

    /// Logs in; customers land on their licenses, admins on the administration.
    async fn login(&self, s: &mut Session, email: &str, pw: &str, lands: &str) {
        s.goto(&self.url("/login")).await;
        s.fill("input[name=email]", email).await;
        s.fill("input[name=password]", pw).await;
        s.click_nav("form[action='/login'] button[type=submit]")
            .await;
        assert!(
            s.url().await.ends_with(lands),
            "logged in, on {lands}: {}",
            s.url().await
        );
    }

    /// Shows the current page 1280 and 390 px wide (scrolled to the first of
    /// `visible`), saves a screenshot of each
    /// (`<name>-<width>.png`), and fails if the page is wider than the window
    /// (it would scroll sideways) or one of `visible` (CSS selectors) is missing or
    /// reaches past the window's edge.
    async fn fits(&self, s: &Session, name: &str, visible: &[&str]) {
        let selectors = serde_json::to_string(visible).expect("json");
        for width in [1280, 390] {
            s.viewport(Some((width, 900))).await;
            let script = format!(
                "var done = arguments[0]; var sels = {selectors};
                 var first = sels.length ? document.querySelector(sels[0]) : null;
                 if (first) {{ first.scrollIntoView({{block: 'center'}}); }}
                 requestAnimationFrame(function () {{ requestAnimationFrame(function () {{
                   var d = document.documentElement;
                   var out = {{scroll: d.scrollWidth, client: d.clientWidth, inner: window.innerWidth, bad: []}};
                   sels.forEach(function (sel) {{
                     var els = document.querySelectorAll(sel);
                     if (!els.length) {{ out.bad.push(sel + ' is missing'); }}
                     els.forEach(function (el) {{
                       var r = el.getBoundingClientRect();
                       if (r.right > d.clientWidth + 0.5 || r.left < -0.5) {{
                         out.bad.push(sel + ' spans ' + r.left + '..' + r.right);
                       }}
                     }});
                   }});
                   done(out);
                 }}); }});"
            );
            let out = s.exec_async(&script).await;
            self.shot(s, &format!("{name}-{width}")).await;
            let (scroll, client, inner) = (
                out["scroll"].as_f64().expect("scrollWidth"),
                out["client"].as_f64().expect("clientWidth"),
                out["inner"].as_f64().expect("innerWidth"),
            );
            assert!(
                scroll <= client && scroll <= inner,
                "{name} at {width} px scrolls sideways: the page is {scroll} px wide in a {inner} px window"
            );
            assert_eq!(out["bad"], json!([]), "{name} at {width} px");
        }
        s.viewport(None).await;
    }

    /// "Als bezahlt markieren" in the administration: the question page, then
    /// the confirmed result.
    async fn mark_paid(&self, a: &mut Session, number: &str, n: u32, shot: Option<&str>) {
        a.goto(&self.url("/admin")).await;
        let path = format!("/admin/orders/{number}/{n}/paid");
        a.click_nav(&format!("a[href='{path}']")).await;
        assert!(a.url().await.ends_with(&path), "{}", a.url().await);
        assert!(a.source().await.contains("Als bezahlt markieren?"));
        if let Some(name) = shot {
            self.fits(a, name, &["#confirm-paid", "#cancel-paid"]).await;
        }
        a.click_nav("#confirm-paid").await;
        let text = a.text("#paid-text").await;
        assert!(
            text.contains(&format!("{number}#{n} ist bezahlt und freigeschaltet")),
            "{text}"
        );
    }

    /// Fills the licensee and license data of the order form.
    async fn master_data(&self, s: &Session, name: &str) {
        for (field, value) in [
            ("company", "MST System Solutions GmbH"),
            ("street", "Josef-Bautz-Str."),
            ("postcode", "63457"),
            ("city", "Hanau"),
            ("state", "Hessen"),
            ("phone", "015127551103"),
            ("data_name", name),
            ("data_postcode", "63457"),
            ("data_city", "Hanau"),
        ] {
            s.fill(&format!("#f-{field}"), value).await;
        }
        set_select(s, "f-country", "DE").await;
    }

    /// Summary, "Get quote", the quote email, and ordering through its link.
    /// Returns the license number.
    async fn quote_and_order(&self, s: &mut Session, shot: Option<&str>) -> String {
        s.click_nav("#next").await;
        if let Some(name) = shot {
            self.shot(s, &format!("{name}-summary")).await;
        }
        s.click_nav("#get-quote").await;
        let notice = s.text("#created").await;
        let id = notice
            .split_whitespace()
            .find(|w| w.contains('#'))
            .expect("quote number in the notice")
            .to_owned();
        let number = id.split('#').next().expect("number").to_owned();
        let mail = mail_containing(&self.outboxes, &format!("{id}.")).await;
        let order_link = link(&mail, &format!("/quotes/{number}/1"));
        s.goto(&order_link).await;
        s.click_nav("#order").await;
        number
    }
}

/// Chooses `value` in the select `#id` the way a user does (with its change event).
async fn set_select(s: &Session, id: &str, value: &str) -> Value {
    let script = format!(
        "var sel = document.getElementById('{id}'); sel.value = '{value}'; \
         sel.dispatchEvent(new Event('change', {{bubbles: true}})); arguments[0](true);"
    );
    s.exec_async(&script).await
}

/// Which license servers the journey runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Servers {
    /// One `pls serve` on its own SQLite store.
    One,
    /// Two `pls serve` on one database of a throwaway PostgreSQL cluster, the
    /// browsers behind the round-robin proxy (every page request goes to the
    /// other instance than the one before), the daemons with both QUIC
    /// addresses (issue 15).
    TwoOnPostgres,
}

/// The running license servers.
struct Pls {
    _procs: Vec<Proc>,
    http_ports: Vec<u16>,
    data_dirs: Vec<PathBuf>,
    logs: Vec<PathBuf>,
    metrics_ports: Vec<u16>,
    quic: Vec<SocketAddr>,
    database_url: Option<String>,
    /// The round-robin proxy in front of two instances.
    proxy: Option<proxy::Proxy>,
    base: String,
}

impl Pls {
    async fn start(servers: Servers, bin: &Path, dir: &Path) -> Pls {
        let n = match servers {
            Servers::One => 1,
            Servers::TwoOnPostgres => 2,
        };
        // The cluster's client blocks: off the runtime.
        let database_url = (servers == Servers::TwoOnPostgres).then(|| {
            std::thread::spawn(|| {
                portal::store::throwaway::shared()
                    .create_database()
                    .expect("a database in the throwaway PostgreSQL cluster")
            })
            .join()
            .expect("database")
        });
        let http_ports: Vec<u16> = (0..n).map(|_| free_tcp_port()).collect();
        let public_port = if n == 1 {
            http_ports[0]
        } else {
            free_tcp_port()
        };
        let base = format!("http://127.0.0.1:{public_port}");
        let data_dirs: Vec<PathBuf> = (0..n)
            .map(|i| match i {
                0 => dir.join("pls"),
                i => dir.join(format!("pls-{i}")),
            })
            .collect();
        if n > 1 {
            // Every instance signs with the same key and shows the same
            // certificate (README, "Operating several servers").
            let mut config = portal::config::Config {
                data_dir: data_dirs[0].clone(),
                ..portal::config::Config::default()
            };
            config.database.url = database_url.clone();
            std::thread::spawn(move || {
                portal::identity::Identity::load_or_create(&config).expect("key and certificate")
            })
            .join()
            .expect("identity");
            for d in &data_dirs[1..] {
                std::fs::create_dir_all(d).expect("instance data dir");
                for f in [
                    "signing.key",
                    "signing.pub",
                    "quic-cert.der",
                    "quic-key.der",
                ] {
                    std::fs::copy(data_dirs[0].join(f), d.join(f)).expect("key file");
                }
            }
        }
        let mut pls = Pls {
            _procs: vec![],
            logs: (0..n)
                .map(|i| match i {
                    0 => dir.join("pls.log"),
                    i => dir.join(format!("pls-{i}.log")),
                })
                .collect(),
            metrics_ports: (0..n).map(|_| free_tcp_port()).collect(),
            quic: (0..n)
                .map(|_| SocketAddr::from(([127, 0, 0, 1], free_udp_port())))
                .collect(),
            data_dirs,
            database_url,
            http_ports: http_ports.clone(),
            proxy: None,
            base,
        };
        for (i, http_port) in http_ports.iter().enumerate() {
            let mut cmd = Command::new(bin);
            cmd.arg("serve")
                .env("PLS_DATA_DIR", &pls.data_dirs[i])
                .env("PLS_HTTP_LISTEN", format!("127.0.0.1:{http_port}"))
                .env("PLS_PUBLIC_URL", &pls.base)
                .env("PLS_QUIC_LISTEN", pls.quic[i].to_string())
                .env(
                    "PLS_METRICS_LISTEN",
                    format!("127.0.0.1:{}", pls.metrics_ports[i]),
                )
                // Debug level for our own crates: more lines that must not hold a secret.
                .env("PLS_LOG", "info,portal=debug")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&pls.logs[i]).expect("log"));
            if let Some(url) = &pls.database_url {
                cmd.env("PLS_DATABASE_URL", url);
            }
            pls._procs.push(Proc(cmd.spawn().expect("pls serve")));
            let deadline = Instant::now() + Duration::from_secs(30);
            while std::net::TcpStream::connect(("127.0.0.1", *http_port)).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "pls {i} did not start: {}",
                    std::fs::read_to_string(&pls.logs[i]).unwrap_or_default()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        if n > 1 {
            let backends = http_ports
                .iter()
                .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
                .collect();
            pls.proxy = Some(
                proxy::Proxy::start(SocketAddr::from(([127, 0, 0, 1], public_port)), backends)
                    .await,
            );
        }
        pls
    }

    /// The environment of `pls admin` (the first instance's files, the database).
    fn admin_env(&self, cmd: &mut Command) {
        cmd.env("PLS_DATA_DIR", &self.data_dirs[0])
            .env("PLS_PUBLIC_URL", &self.base);
        if let Some(url) = &self.database_url {
            cmd.env("PLS_DATABASE_URL", url);
        }
    }

    /// Series `series` of each instance's `/metrics` (0 where it is missing).
    async fn metric(&self, series: &str) -> Vec<f64> {
        let mut values = vec![];
        for port in &self.metrics_ports {
            let metrics = http_get(("127.0.0.1", *port), "/metrics").await;
            values.push(
                metrics
                    .lines()
                    .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
                    .unwrap_or(0.0),
            );
        }
        values
    }
}

/// Runs one journey; two never at once (each drives a browser and its own
/// servers, and together they would crowd a 2-core CI machine past the
/// journey's time limits).
fn run(servers: Servers) {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // The journey is one long async function; its future is too large for the
    // default test thread's stack, so it runs boxed on a thread with more.
    let t = std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(move || {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(Box::pin(journey(servers)))
        })
        .expect("journey thread");
    if let Err(panic) = t.join() {
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn the_whole_journey_in_a_real_browser() {
    run(Servers::One);
}

/// Issue 15: the same journey with two instances on one PostgreSQL database,
/// every page request of the browsers going to the other instance than the one
/// before.
#[test]
fn the_whole_journey_with_requests_alternating_between_two_servers() {
    run(Servers::TwoOnPostgres);
}

async fn journey(servers: Servers) {
    let pls_bin = e2e::binary("portal", "pls");
    let licd = e2e::binary("daemon", "promos-licd");
    let dir = tempfile::tempdir().expect("tempdir");
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(match servers {
        Servers::One => "journey-screenshots",
        Servers::TwoOnPostgres => "journey-screenshots-two-servers",
    });
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots).expect("screenshot dir");

    // The license server(s), real processes.
    let pls = Pls::start(servers, &pls_bin, dir.path()).await;
    let j = Journey {
        base: pls.base.clone(),
        outboxes: pls.data_dirs.iter().map(|d| d.join("outbox")).collect(),
        shots: shots.clone(),
    };
    let site = Site {
        licd: &licd,
        dir: dir.path(),
        quic: &pls.quic,
        pls_data: &pls.data_dirs[0],
    };

    let driver = Driver::start(free_tcp_port(), &dir.path().join("chromedriver.log")).await;
    let mut c = driver.session(&dir.path().join("profile-customer")).await;

    // 1. Register, verify, log in.
    c.goto(&j.url("/register")).await;
    for (field, value) in [
        ("email", "christoph@journey.example"),
        ("password", PW),
        ("password2", PW),
        ("company", "MST System Solutions GmbH"),
        ("first_name", "Christoph"),
        ("last_name", "Müller"),
    ] {
        c.fill(
            &format!("form[action='/register'] input[name={field}]"),
            value,
        )
        .await;
    }
    j.shot(&c, "01-register").await;
    c.click_nav("form[action='/register'] button[type=submit]")
        .await;
    let mail = mail_containing(&j.outboxes, "/verify?token=").await;
    c.goto(&link(&mail, "/verify?token=")).await;
    j.login(&mut c, "christoph@journey.example", PW, "/licenses")
        .await;

    // 2. The worked order; the live total; quote; email; order. No license yet:
    // the list leads to ordering.
    c.click_nav("#order-first").await;
    c.click_nav("#choose-standard").await;
    j.master_data(&c, "Christoph Müller").await;
    c.fill("#f-driver_modbus", "10000").await;
    c.fill("#f-driver_saia_pcd", "6000").await;
    set_select(&c, "f-pwa_users", "5").await;
    let total = c.wait_text("#total", "7.150,00 €").await;
    assert_eq!(
        total, "7.150,00 €",
        "the live total (order.js + /api/price)"
    );
    let saia = c.wait_text("#price-saia_pcd", "750,00 €").await;
    assert_eq!(saia, "750,00 €");
    j.shot(&c, "02-order-form").await;
    // One driver over its maximum: its own error at once, every other price and
    // the total of the valid rows stay.
    c.fill("#f-driver_mbus", "2001").await;
    assert_eq!(
        c.wait_text("#err-driver_mbus", "MBus: Höchstens 2.000 Devices.")
            .await,
        "MBus: Höchstens 2.000 Devices."
    );
    assert_eq!(c.text("#price-mbus").await, "–");
    assert_eq!(c.text("#price-saia_pcd").await, "750,00 €");
    assert_eq!(c.text("#price-modbus").await, "6.000,00 €");
    assert_eq!(c.text("#total").await, "7.150,00 €");
    assert_eq!(
        c.text("#total-partial").await,
        "(ohne die Zeilen mit Fehlern)"
    );
    j.shot(&c, "02-order-form-row-error").await;
    c.fill("#f-driver_mbus", "1").await;
    c.wait_text("#err-driver_mbus", "").await;
    assert_eq!(c.text("#total-partial").await, "", "the note goes again");
    // The cost details open, the form fits a phone.
    c.exec_async(
        "document.querySelector('#comp-saia_pcd').closest('details').open = true; arguments[0](true);",
    )
    .await;
    j.fits(
        &c,
        "02-order-form",
        &[
            "#price-saia_pcd",
            "#price-knx",
            "#comp-saia_pcd",
            "#total",
            "#next",
        ],
    )
    .await;
    c.click_nav("#next").await;
    let summary = c.source().await;
    for expected in [
        "7.150,00 €",
        "Umsatzsteuer 19%",
        "1.358,50 €",
        "8.508,50 €",
        "SAIA PCD: 5.000 Datenpunkte",
    ] {
        assert!(summary.contains(expected), "summary lacks {expected}");
    }
    j.shot(&c, "03-summary").await;
    c.click_nav("#get-quote").await;
    j.shot(&c, "04-quotes").await;
    let notice = c.text("#created").await;
    let id = notice
        .split_whitespace()
        .find(|w| w.contains('#'))
        .expect("quote id")
        .to_owned();
    let number = id.split('#').next().expect("number").to_owned();
    let mail = mail_containing(&j.outboxes, &format!("{id}.")).await;
    assert!(mail.contains("8.508,50"), "the quote email lists the gross");
    c.goto(&link(&mail, &format!("/quotes/{number}/1"))).await;
    c.click_nav("#order").await;
    assert!(c
        .source()
        .await
        .contains("Vielen Dank für Ihre Bestellung!"));
    assert_eq!(c.text("#status").await, "stopped");
    j.shot(&c, "05-ordered").await;
    // The ordered quote stays in "Meine Angebote", marked, linked to its license.
    c.goto(&j.url("/quotes")).await;
    assert!(c.source().await.contains(&id));
    assert!(
        c.exists(&format!("a.to-license[href='/licenses/{number}']"))
            .await
    );
    j.fits(&c, "05-quotes-ordered", &[]).await;

    // 3. The admin marks it paid.
    let out = {
        let mut cmd = Command::new(&pls_bin);
        cmd.args(["admin", "create-admin", "vendor@journey.example"]);
        pls.admin_env(&mut cmd);
        cmd.output().expect("pls admin create-admin")
    };
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut a = driver.session(&dir.path().join("profile-admin")).await;
    a.goto(&link(&text, "/password/reset?token=")).await;
    a.fill("input[name=password]", ADMIN_PW).await;
    a.fill("input[name=password2]", ADMIN_PW).await;
    a.click_nav("form[action='/password/reset'] button[type=submit]")
        .await;
    j.login(&mut a, "vendor@journey.example", ADMIN_PW, "/admin")
        .await;
    j.shot(&a, "06-admin-orders").await;
    j.mark_paid(&mut a, &number, 1, Some("06-admin-confirm-paid"))
        .await;
    c.goto(&j.url(&format!("/licenses/{number}"))).await;
    let page = c.source().await;
    assert!(page.contains("6.100 Datenpunkte") && page.contains("10.010 Datenpunkte"));
    c.click_nav("#show-token").await;
    let token = c.text("#token").await;
    assert_eq!(token.len(), 32, "token shown");
    // With JavaScript the copy button shows; "Token verbergen" hides it again.
    let copy = c
        .exec_async("arguments[0](!document.getElementById('copy-token').hidden);")
        .await;
    assert_eq!(copy, json!(true), "license.js shows the copy button");
    c.click("#copy-token").await;
    c.click_nav("#hide-token").await;
    assert!(!c.exists("#token").await, "token hidden again");

    // 4. Daemon A activates; its socket reports exactly the order; the portal
    // shows it running.
    let lic = |n: &str, t: &str| {
        vec![
            ("PROMOS_LICD_LICENSE_NUMBER", n.to_owned()),
            ("PROMOS_LICD_TOKEN", t.to_owned()),
        ]
    };
    let da = site.daemon("a", HOST_A, &lic(&number, &token));
    let st = da.wait_for("licensed", |s| s["licensed"] == true).await;
    let e = &st["entitlements"];
    assert_eq!(e["drivers"]["saia_pcd"], 6100);
    assert_eq!(e["drivers"]["modbus"], 10010);
    assert_eq!(e["drivers"]["mbus"], 1);
    assert_eq!(
        (e["ge_users"].clone(), e["pwa_users"].clone()),
        (json!(1), json!(5))
    );
    assert_eq!(e["malm"], json!([]));
    let mut runtime = Sock::open(&da.socket).await;
    let r = runtime.ask(json!({"cmd": "runtime_started"})).await;
    assert_eq!(r["ok"], true, "{r}");
    da.check_now().await;
    c.goto(&j.url(&format!("/licenses/{number}"))).await;
    assert_eq!(c.text("#status").await, "running");
    assert_eq!(c.text("#bound").await, HOST_A);
    assert!(!c.exists("#upgrade").await, "no upgrade while running");
    j.shot(&c, "07-license-running").await;
    // Date, hardware ID and token fit a phone.
    c.goto(&j.url(&format!("/licenses/{number}?token=show")))
        .await;
    j.fits(
        &c,
        "07-license-running",
        &[
            "#bound",
            "#last-seen",
            "#token",
            "#hide-token",
            "#licensee",
            "#status",
        ],
    )
    .await;
    // The daemon's settings (server, key, pin, number, the shown token) fit too.
    j.fits(
        &c,
        "07-daemon-settings",
        &[
            "#daemon-settings",
            "#daemon-server",
            "#daemon-keys",
            "#daemon-pin",
            "#daemon-token",
            "#daemon-download",
        ],
    )
    .await;

    // 5. Stopped: upgrade SAIA PCD; the admin activates; A gets the new grant.
    let r = runtime.ask(json!({"cmd": "runtime_stopped"})).await;
    assert_eq!(r["ok"], true);
    let serial_before = da.check_now().await["grant_serial"]
        .as_u64()
        .expect("serial");
    c.goto(&j.url(&format!("/licenses/{number}"))).await;
    c.click_nav("#upgrade").await;
    // The inputs are the totals the license holds; the pWA users it has cost
    // nothing more.
    let value = |id: &str| format!("arguments[0](document.getElementById('{id}').value);");
    assert_eq!(
        c.exec_async(&value("f-driver_saia_pcd")).await,
        json!("6100")
    );
    assert_eq!(
        c.exec_async(&value("f-driver_bacnet_ip")).await,
        json!("10")
    );
    let form = c.source().await;
    assert!(form.contains("5 gleichzeitige Benutzer (Bereits enthalten)"));
    assert!(!form.contains("vorausgefüllten Datenpunkte sind kostenlos"));
    c.fill("#f-driver_saia_pcd", "16100").await;
    assert_eq!(
        c.wait_text("#total", "800,00 €").await,
        "800,00 €",
        "only what is added costs"
    );
    j.fits(
        &c,
        "08-upgrade-form",
        &["#price-saia_pcd", "#total", "#next"],
    )
    .await;
    c.click_nav("#next").await;
    let summary = c.source().await;
    if !summary.contains("Vorher: 6.100 Nachher: 16.100 Datenpunkte") {
        j.shot(&c, "08-upgrade-summary-failed").await;
        let main = summary.split("<main>").nth(1).unwrap_or(&summary);
        panic!(
            "upgrade summary at {}:\n{}",
            c.url().await,
            &main[..main.len().min(3000)]
        );
    }
    j.shot(&c, "08-upgrade-summary").await;
    c.click_nav("#order-now").await;
    j.mark_paid(&mut a, &number, 2, None).await;
    // The next check brings the new grant. (A check already in flight when the
    // order was activated may still answer with the old one: then the one after.)
    let mut st = da.check_now().await;
    for _ in 0..3 {
        if st["grant_serial"].as_u64() > Some(serial_before) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        st = da.check_now().await;
    }
    assert!(
        st["grant_serial"].as_u64() > Some(serial_before),
        "a new grant: {st}"
    );
    assert_eq!(st["entitlements"]["drivers"]["saia_pcd"], 16100);

    // 6. Reset; B activates; A is refused at its next check and says why.
    c.goto(&j.url(&format!("/licenses/{number}/reset"))).await;
    c.click_nav("#reset-now").await;
    assert!(c.source().await.contains("zurückgesetzt"));
    let db = site.daemon("b", HOST_B, &lic(&number, &token));
    db.wait_for("licensed", |s| s["licensed"] == true).await;
    let st = da.check_now().await;
    assert_eq!(st["licensed"], false, "{st}");
    assert_eq!(st["reason"]["code"], "license_was_reset", "{st}");
    c.goto(&j.url(&format!("/licenses/{number}"))).await;
    assert_eq!(c.text("#bound").await, HOST_B);

    // 6b. The offline check by file (issue 19): B writes a request file with
    // `promos-licd offline request`; the customer uploads it on the license
    // page ("Offline-Prüfung"), downloads the answer file, and B applies it
    // with `promos-licd offline apply`.
    let request_file = dir.path().join("b-offline-request.txt");
    let out = site
        .licd("b", HOST_B)
        .args(["offline", "request", "--out"])
        .arg(&request_file)
        .output()
        .expect("promos-licd offline request");
    assert!(
        out.status.success(),
        "offline request: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let request_text = std::fs::read_to_string(&request_file).expect("request file");
    assert!(request_text.contains("Kind: check"), "{request_text}");
    c.goto(&j.url(&format!("/licenses/{number}"))).await;
    c.click_nav(&format!("a[href='/licenses/{number}/offline']"))
        .await;
    c.choose_file("#offline-file", &request_file).await;
    // license.js reads the chosen file into the text field.
    let deadline = Instant::now() + Duration::from_secs(10);
    while c
        .exec_async("arguments[0](document.getElementById('offline-request').value);")
        .await
        != json!(request_text)
    {
        assert!(
            Instant::now() < deadline,
            "the chosen file never filled the field"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    j.shot(&c, "12-offline-request").await;
    c.click_nav("#offline-submit").await;
    let outcome = c.text("#offline-outcome").await;
    assert!(
        outcome.starts_with("Die Prüfung war erfolgreich."),
        "{outcome}"
    );
    j.shot(&c, "12-offline-answer").await;
    // The download: the link's file (a `data:` URL; the page's content
    // security policy lets no script fetch it, so it is decoded here).
    let download = c
        .exec_async(
            "var a = document.getElementById('offline-download'); \
             arguments[0]([a.getAttribute('download'), a.href]);",
        )
        .await;
    assert_eq!(
        download[0],
        json!(format!("promos-offline-answer-{number}.txt"))
    );
    let href = download[1].as_str().expect("download link");
    let answer_bytes = {
        use base64::Engine as _;
        let b64 = href
            .strip_prefix("data:text/plain;charset=utf-8;base64,")
            .unwrap_or_else(|| panic!("a data: link: {href}"));
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("base64")
    };
    let answer_text = std::str::from_utf8(&answer_bytes).expect("text");
    assert_eq!(
        answer_text.trim_end(),
        c.text("#offline-answer").await.trim_end(),
        "the file is the answer shown"
    );
    let answer = wire::offline::read_answer(answer_text).expect("a valid answer file");
    assert_eq!(answer.hardware_id.to_string(), HOST_B);
    assert_eq!(answer.license_number.to_string(), number);
    assert!(
        matches!(answer.response, wire::Response::Checked { .. }),
        "{:?}",
        answer.response
    );
    let answer_file = dir.path().join("b-offline-answer.txt");
    std::fs::write(&answer_file, answer_text).expect("answer file");
    let out = site
        .licd("b", HOST_B)
        .args(["offline", "apply"])
        .arg(&answer_file)
        .output()
        .expect("promos-licd offline apply");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "offline apply: {said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("the license check succeeded")
            || said.contains("die Lizenzprüfung war erfolgreich"),
        "{said}"
    );
    assert_eq!(db.status().await["licensed"], true);

    // 7. Engineering: free, active at once, 24 hours per start.
    c.goto(&j.url("/quote/engineering")).await;
    j.master_data(&c, "Engineering PC").await;
    let eng = j.quote_and_order(&mut c, Some("09-engineering")).await;
    assert!(
        c.source().await.contains("Ihre Lizenz ist freigeschaltet"),
        "active without payment"
    );
    c.click_nav("#show-token").await;
    let eng_token = c.text("#token").await;
    let dc = site.daemon("c", HOST_C, &lic(&eng, &eng_token));
    dc.wait_for("licensed", |s| s["licensed"] == true).await;
    let mut eng_runtime = Sock::open(&dc.socket).await;
    let started = now_secs();
    let r = eng_runtime.ask(json!({"cmd": "runtime_started"})).await;
    let stop_at = r["status"]["stop_at"]
        .as_i64()
        .expect("engineering runs have a stop time");
    assert!(
        (stop_at - (started + 24 * 3600)).abs() <= 60,
        "stop 24 h after the start: {r}"
    );

    // 8. Hard dongle: serial, download, simulated dongle, removal.
    c.goto(&j.url("/quote/standard")).await;
    c.click("input[name=protection][value=hard_dongle]").await;
    j.master_data(&c, "Dongle PC").await;
    let hard = j.quote_and_order(&mut c, None).await;
    j.mark_paid(&mut a, &hard, 1, None).await;
    a.goto(&j.url(&format!("/admin/licenses/{hard}"))).await;
    a.fill("input[name=serial]", "JOURNEY-DONGLE-7").await;
    a.click_nav("#save-dongle").await;
    j.shot(&a, "10-admin-license").await;
    c.goto(&j.url(&format!("/licenses/{hard}"))).await;
    j.shot(&c, "11-hard-dongle-license").await;
    let file = c
        .exec_async(&format!(
            "var done = arguments[0]; fetch('/licenses/{hard}/download').then(function (r) {{ return r.text(); }}).then(done);"
        ))
        .await;
    let file = file.as_str().expect("license file text");
    let project = dir.path().join("d-project");
    std::fs::create_dir_all(project.join("lic")).expect("lic dir");
    std::fs::write(project.join("lic/promos.json"), file).expect("promos.json");
    std::fs::create_dir_all(dir.path().join("d")).expect("d");
    std::fs::write(dir.path().join("d/dongle"), "JOURNEY-DONGLE-7").expect("dongle plugged in");
    let d_metrics_port = free_tcp_port();
    let dd = site.daemon(
        "d",
        HOST_D,
        &[
            ("PROMOS_LICD_PROJECT_DIR", project.display().to_string()),
            (
                "PROMOS_LICD_METRICS_LISTEN",
                format!("127.0.0.1:{d_metrics_port}"),
            ),
        ],
    );
    dd.wait_for("licensed", |s| s["licensed"] == true).await;
    let removed = now_secs();
    std::fs::remove_file(dir.path().join("d/dongle")).expect("dongle removed");
    let st = dd
        .wait_for("dongle_removed", |s| s["state"] == "dongle_removed")
        .await;
    let stop_at = st["stop_at"].as_i64().expect("stop scheduled");
    assert!(
        (stop_at - (removed + 3600)).abs() <= 60,
        "stop an hour after removal: {st}"
    );

    // No console errors in either browser.
    c.collect_console().await;
    a.collect_console().await;
    assert!(
        c.console_errors.is_empty(),
        "customer browser console: {:?}",
        c.console_errors
    );
    assert!(
        a.console_errors.is_empty(),
        "admin browser console: {:?}",
        a.console_errors
    );
    // The session ids the browsers hold: they must not be logged either.
    let sessions: Vec<String> = [c.cookie("pls_session").await, a.cookie("pls_session").await]
        .into_iter()
        .map(|id| id.expect("both browsers are logged in"))
        .collect();
    // Two instances: each answered a real share of the pages, most of them
    // with the session cookie, and none of those said "log in first" (the
    // session lived on across every switch: it is in the database).
    if let Some(proxy) = &pls.proxy {
        let served = proxy.served();
        eprintln!("served through the proxy, per instance: {served:?}");
        let pages: u64 = served.iter().map(|s| s.pages).sum();
        for (i, s) in served.iter().enumerate() {
            assert!(
                s.pages * 10 >= pages * 4,
                "instance {i} answered {} of {pages} pages: {served:?}",
                s.pages
            );
            assert!(s.with_session >= 20, "instance {i}: {served:?}");
            assert_eq!(s.to_login, 0, "instance {i} lost a session: {served:?}");
        }
    }
    // Every instance knows the customer's session (asked directly, without
    // the proxy) ...
    for port in &pls.http_ports {
        let head = http_head(*port, "/licenses", &sessions[0]).await;
        assert!(
            head.starts_with("HTTP/1.1 200"),
            "instance on {port}: {head}"
        );
    }
    // ... until the customer logs out: then the license list asks to log in
    // again, in the browser and on every instance for the old session id.
    c.goto(&j.url("/licenses")).await;
    c.click_nav("form[action='/logout'] button[type=submit]")
        .await;
    c.goto(&j.url("/licenses")).await;
    assert!(
        c.url().await.contains("/login?next="),
        "logged out, yet on {}",
        c.url().await
    );
    j.shot(&c, "13-logged-out").await;
    for port in &pls.http_ports {
        let head = http_head(*port, "/licenses", &sessions[0]).await;
        assert!(
            head.starts_with("HTTP/1.1 303") && head.contains("/login?next="),
            "instance on {port} after the logout: {head}"
        );
    }
    c.close().await;
    a.close().await;

    // The server's metrics saw the journey: activations, checks, the reset's
    // refusal, portal pages by route (counters summed over the instances;
    // the license count is each instance's view of the one database).
    for (series, at_least) in [
        (
            "pls_daemon_requests_total{kind=\"activate\",outcome=\"ok\"}",
            3.0,
        ),
        (
            "pls_daemon_requests_total{kind=\"check\",outcome=\"ok\"}",
            1.0,
        ),
        ("pls_refusals_total{reason=\"license_was_reset\"}", 1.0),
        (
            "pls_http_requests_total{method=\"GET\",route=\"/quote\",status=\"200\"}",
            1.0,
        ),
        (
            "pls_http_requests_total{method=\"POST\",route=\"/login\",status=\"303\"}",
            2.0,
        ),
    ] {
        let v = pls.metric(series).await.iter().sum::<f64>();
        assert!(
            v >= at_least,
            "{series} = {v}, expected at least {at_least}"
        );
    }
    for v in pls.metric("pls_licenses").await {
        assert!(v >= 2.0, "pls_licenses = {v}, expected at least 2");
    }
    // The daemon with the pulled dongle shows its forced stop in its metrics.
    let d_metrics = http_get(("127.0.0.1", d_metrics_port), "/metrics").await;
    assert!(
        d_metrics
            .lines()
            .any(|l| l == "promos_licd_state{state=\"dongle_removed\"} 1"),
        "{d_metrics}"
    );
    assert!(
        d_metrics.contains("promos_licd_seconds_until_stop "),
        "{d_metrics}"
    );

    // No secret of the journey in any log: license tokens, passwords, session ids.
    drop(da);
    drop(dd);
    for log in pls.logs.iter().cloned().chain([
        dir.path().join("a/licd.log"),
        dir.path().join("b/licd.log"),
        dir.path().join("c/licd.log"),
        dir.path().join("d/licd.log"),
    ]) {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            !text.is_empty() || !pls.logs.contains(&log),
            "{} is empty",
            log.display()
        );
        let secrets = [token.as_str(), eng_token.as_str(), PW, ADMIN_PW]
            .into_iter()
            .chain(sessions.iter().map(String::as_str));
        for secret in secrets {
            assert!(
                !text.contains(secret),
                "{} contains a secret",
                log.display()
            );
        }
    }
    eprintln!("screenshots: {}", shots.display());
    let n = std::fs::read_dir(&shots).map(|d| d.count()).unwrap_or(0);
    assert!(n >= 10, "screenshots saved");
    drop(db);
    drop(dc);
}
