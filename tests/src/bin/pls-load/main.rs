//! `pls-load`: the load and soak harness (issue 9).
//!
//! Starts ONE real `pls serve` process on a fresh data directory with loopback
//! ports, seeds it (licenses for the simulated daemons, accounts for the
//! simulated portal users) through the portal library before the server opens
//! the store, then for `--duration`:
//!
//! - `--daemons` simulated daemons, each with its own license, token and hardware
//!   ID, speak the real wire protocol over real QUIC through the daemon's own
//!   client (`daemon::client::ServerClient`, one new connection per request as
//!   `promos-licd` does, pinned to the server certificate). The daemons share
//!   `--endpoints` client UDP sockets (a real site has one per host; sharing
//!   them keeps 1,000 daemons within the process's file limit and changes
//!   nothing for the server, which sees one connection per request either way).
//!   Each activates with its token at its start offset (spread evenly over the
//!   first check interval), then checks every `--check-interval`. Every
//!   signed reply is verified with the server's public key and must be bound to
//!   the daemon's license, hardware ID and nonce. A daemon reports its check
//!   counter in the `ge` seat field, so the store's last check-in record tells
//!   exactly which check it was.
//! - `--users` simulated portal users over real HTTP (one keep-alive connection
//!   and cookie jar each) log in with the CSRF token of the form, then loop:
//!   license list, order form, three live prices, summary, "get quote", and
//!   every second round order the quote and open the license page, with
//!   `--think` between requests.
//!
//! Meanwhile it samples the server's RSS and CPU from `/proc/<pid>` every
//! `--sample-every`. At the end it stops `pls` with SIGTERM (it must exit 0),
//! opens the store with the portal library and verifies that every
//! acknowledged activation, check-in, quote and order is there. The report
//! (Markdown tables; `--json FILE` for machines) gives per operation class the
//! count, throughput, p50/p99 latency and errors with reasons, and the time
//! series. Exit status 1 on any error or loss.

mod http;

use clap::Parser;
use daemon::client::{RequestError, ServerClient};
use daemon::config::CertPin;
use e2e::{free_tcp_port, free_udp_port};
use http::{between, hidden_fields, Browser};
use keys::{
    Binding, Entitlements, HardwareId, LicenseData, LicenseNumber, LicenseType, Protection,
    TrustedKeys, UnixTime,
};
use portal::config::Config;
use portal::domain::{
    AccountId, Actor, Licensee, MutationKind, MutationState, NewAccount, NewLicense,
};
use portal::identity::Identity;
use portal::store::NewMutation;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wire::{Activate, Check, Nonce, Request, Response, RuntimeState, Seats, Token};

const PASSWORD: &str = "load-password-42";
/// A request to the server that takes longer than this counts as an error (the
/// daemon's own attempt timeout).
const DAEMON_TIMEOUT: Duration = daemon::client::ATTEMPT_TIMEOUT;

#[derive(Parser, Debug)]
#[command(
    name = "pls-load",
    about = "Load and soak harness: many daemons over QUIC and portal users over HTTP against one `pls serve`"
)]
struct Args {
    /// Simulated daemons (each its own license and hardware ID).
    #[arg(long, default_value_t = 1000)]
    daemons: usize,
    /// Simulated portal users.
    #[arg(long, default_value_t = 32)]
    users: usize,
    /// How long the load runs (e.g. 60s, 10m).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    duration: Duration,
    /// Time between two checks of one daemon (a real daemon: a day).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    check_interval: Duration,
    /// A portal user's pause between two requests.
    #[arg(long, default_value = "200ms", value_parser = parse_duration)]
    think: Duration,
    /// Client UDP sockets the daemons share.
    #[arg(long, default_value_t = 16)]
    endpoints: usize,
    /// How often the server's RSS and CPU are sampled.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    sample_every: Duration,
    /// The `pls` binary to start.
    #[arg(long, env = "PLS_LOAD_PLS")]
    pls: PathBuf,
    /// Where the server's data (and its log, `pls.log`) go; kept afterwards.
    /// Default: a temporary directory, removed at the end.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Run the servers on this PostgreSQL database (`postgres://…`) instead of
    /// SQLite in the first server's data directory.
    #[arg(long, env = "PLS_LOAD_DATABASE_URL")]
    database_url: Option<String>,
    /// `pls serve` processes on the one database (more than one needs
    /// `--database-url`), each with the same key and certificate. Daemons and
    /// users are spread over them and fail over to the next one.
    #[arg(long, default_value_t = 1)]
    instances: usize,
    /// SIGKILL the first server this long after the start (needs two or more).
    #[arg(long, value_parser = parse_duration)]
    kill_after: Option<Duration>,
    /// A file that something outside the harness writes just before it
    /// disrupts the service (a database failover): the time as Unix
    /// milliseconds. Read at the end; the report then says, for daemon requests
    /// and portal requests, how long from then on requests failed or waited
    /// until the first one sent after it succeeded.
    #[arg(long)]
    disruption_file: Option<PathBuf>,
}

/// Runs `f` on a thread of its own: the store's PostgreSQL client blocks and
/// must not run inside the harness's async runtime.
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| s.spawn(f).join().expect("store thread"))
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: f64 = n.parse().map_err(|_| format!("not a duration: {s:?}"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("unknown unit in {s:?} (ms, s, m, h)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

// ----- measurements --------------------------------------------------------------

/// Operation classes, in report order.
const CLASSES: [&str; 7] = [
    "activate", "check", "login", "page", "price", "quote", "order",
];

#[derive(Debug, Default)]
struct Class {
    /// Latency of each successful operation, microseconds.
    lat_us: Vec<u64>,
    errors: BTreeMap<String, u64>,
}

#[derive(Debug, Default)]
struct Stats(Mutex<BTreeMap<&'static str, Class>>, Mutex<Vec<Outcome>>);

/// One request's end, for the timeline around a disruption.
#[derive(Clone, Copy, Debug)]
struct Outcome {
    daemon: bool,
    end: Instant,
    /// When a request that succeeded was sent; `None`: it failed.
    sent_if_ok: Option<Instant>,
}

fn is_daemon_class(class: &str) -> bool {
    matches!(class, "activate" | "check")
}

impl Stats {
    fn ok(&self, class: &'static str, took: Duration) {
        let now = Instant::now();
        self.timeline(Outcome {
            daemon: is_daemon_class(class),
            end: now,
            sent_if_ok: Some(now - took),
        });
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(class)
            .or_default()
            .lat_us
            .push(took.as_micros() as u64);
    }

    fn err(&self, class: &'static str, reason: impl Into<String>) {
        self.timeline(Outcome {
            daemon: is_daemon_class(class),
            end: Instant::now(),
            sent_if_ok: None,
        });
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry(class)
            .or_default()
            .errors
            .entry(reason.into())
            .or_default() += 1;
    }

    fn timeline(&self, o: Outcome) {
        self.1.lock().unwrap_or_else(|p| p.into_inner()).push(o);
    }

    /// How daemon requests and portal requests fared after `at`: the time to
    /// the first success of a request sent at or after `at` (the gap), the
    /// failures after `at`, the last failure's end, and the longest a request
    /// that was under way at `at` or sent before the first success waited for
    /// its successful answer.
    fn disruption(&self, at: Instant) -> Value {
        let timeline = self.1.lock().unwrap_or_else(|p| p.into_inner());
        let ms = |d: Duration| (d.as_secs_f64() * 10_000.0).round() / 10.0;
        let side = |daemon: bool| {
            let mine = timeline
                .iter()
                .filter(|o| o.daemon == daemon && o.end >= at);
            let first_ok = mine
                .clone()
                .filter(|o| o.sent_if_ok.is_some_and(|s| s >= at))
                .map(|o| o.end)
                .min();
            let failed: Vec<Instant> = mine
                .clone()
                .filter(|o| o.sent_if_ok.is_none())
                .map(|o| o.end)
                .collect();
            let longest_wait = mine
                .filter_map(|o| {
                    let sent = o.sent_if_ok?;
                    (first_ok.is_none_or(|f| sent <= f)).then(|| o.end - sent)
                })
                .max();
            json!({
                "first_ok_after_ms": first_ok.map(|t| ms(t - at)),
                "failed": failed.len(),
                "last_failure_after_ms": failed.iter().max().map(|t| ms(*t - at)),
                "longest_successful_wait_ms": longest_wait.map(ms),
            })
        };
        json!({"daemon": side(true), "portal": side(false)})
    }

    /// Successful operations so far: daemon requests and portal requests.
    fn counts(&self) -> (u64, u64) {
        let m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = |c: &str| m.get(c).map_or(0, |c| c.lat_us.len() as u64);
        (
            n("activate") + n("check"),
            ["login", "page", "price", "quote", "order"]
                .iter()
                .map(|c| n(c))
                .sum(),
        )
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

// ----- the server process ----------------------------------------------------------

/// The `pls serve` child; killed if the harness ends early.
struct Server {
    child: Option<Child>,
}

impl Server {
    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    /// SIGTERM, then wait up to 60 s. Ok(true) if it exited 0.
    fn stop(&mut self) -> Result<bool, String> {
        let Some(mut child) = self.child.take() else {
            return Err("already stopped".into());
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Ok(status.success()),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err("pls did not stop within 60 s of SIGTERM; killed".into());
                }
                Err(e) => return Err(format!("waiting for pls: {e}")),
            }
        }
    }
}

impl Server {
    /// Collects a killed server's exit.
    fn reap(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }
}

/// One started `pls serve` and where it listens.
struct Running {
    server: Server,
    http: SocketAddr,
    quic: SocketAddr,
    metrics: SocketAddr,
    log: PathBuf,
}

/// Starts server `i` on `data` (its key and certificate already there) and
/// waits until it answers HTTP.
async fn start_server(args: &Args, i: usize, data: &Path, base: &Path) -> Result<Running, String> {
    let metrics = SocketAddr::from(([127, 0, 0, 1], free_tcp_port()));
    let quic = SocketAddr::from(([127, 0, 0, 1], free_udp_port()));
    let http = SocketAddr::from(([127, 0, 0, 1], free_tcp_port()));
    let log_path = base.join(if i == 0 {
        "pls.log".to_owned()
    } else {
        format!("pls-{i}.log")
    });
    let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(&args.pls);
    cmd.arg("serve")
        .env("PLS_DATA_DIR", data)
        .env("PLS_HTTP_LISTEN", http.to_string())
        .env("PLS_PUBLIC_URL", format!("http://{http}"))
        .env("PLS_QUIC_LISTEN", quic.to_string())
        .env("PLS_METRICS_LISTEN", metrics.to_string())
        // Every simulated daemon comes from 127.0.0.1.
        .env("PLS_QUIC_MAX_CONNECTIONS_PER_SOURCE", "100000")
        .env("PLS_QUIC_ACTIVATIONS_PER_SOURCE_PER_MINUTE", "100000")
        .env("PLS_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log);
    if let Some(url) = &args.database_url {
        cmd.env("PLS_DATABASE_URL", url);
    }
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", args.pls.display()))?;
    let server = Server { child: Some(child) };
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(http).is_err() {
        if Instant::now() > deadline {
            return Err(format!(
                "pls {i} did not start: {}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(Running {
        server,
        http,
        quic,
        metrics,
        log: log_path,
    })
}

/// The emails in the servers' file outboxes: how many, and how many are a
/// second copy of another (the same message apart from `Message-ID` and `Date`).
struct MailCount {
    sent: usize,
    duplicated: usize,
}

fn count_emails(data_dirs: &[PathBuf]) -> MailCount {
    let mut seen = std::collections::BTreeSet::new();
    let mut count = MailCount {
        sent: 0,
        duplicated: 0,
    };
    for dir in data_dirs {
        let Ok(entries) = std::fs::read_dir(dir.join("outbox")) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(text) = std::fs::read_to_string(e.path()) else {
                continue;
            };
            let content: String = text
                .lines()
                .filter(|l| !l.starts_with("Message-ID:") && !l.starts_with("Date:"))
                .collect::<Vec<_>>()
                .join("\n");
            count.sent += 1;
            if !seen.insert(content) {
                count.duplicated += 1;
            }
        }
    }
    count
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// CPU ticks (user + system) and RSS in KiB of a process.
fn proc_sample(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 here.
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())?;
    Some((ticks, rss))
}

fn clock_ticks_per_sec() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100)
}

#[derive(Debug, Clone)]
struct Sample {
    at_secs: f64,
    rss_kib: u64,
    /// CPU of the server since the previous sample, in % of one core.
    cpu_pct: f64,
    daemon_ops_per_sec: f64,
    portal_ops_per_sec: f64,
    /// The machine's 1-minute load average (other work on the same cores).
    load_avg: f64,
}

fn load_avg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

// ----- seeding ---------------------------------------------------------------------

/// A simulated daemon's identity.
#[derive(Debug, Clone)]
struct Host {
    number: LicenseNumber,
    token: String,
    hardware_id: HardwareId,
}

#[derive(Debug, Clone)]
struct User {
    email: String,
    account: AccountId,
}

fn hardware_id(i: usize) -> HardwareId {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&(i as u64).to_be_bytes());
    b[8..].copy_from_slice(b"pls-load");
    HardwareId::from_bytes(b)
}

/// Licenses created, ordered and paid (soft dongle, not yet bound) and verified
/// customer accounts, written straight into the store before `pls` opens it.
fn seed(
    config: &Config,
    identity: &Identity,
    daemons: usize,
    users: usize,
) -> (Vec<Host>, Vec<User>) {
    let store = config.open_store().expect("open the store to seed it");
    store.set_flush_each_write(false);
    let actor = Actor::Admin("pls-load".into());
    let now = keys::Clock::now(&keys::SystemClock);
    let mut hosts = Vec::with_capacity(daemons);
    for i in 0..daemons {
        let l = store
            .create_license(
                NewLicense {
                    account: None,
                    license_type: LicenseType::Standard,
                    protection: Protection::SoftDongle,
                    licensee: Licensee {
                        company: format!("Load Site {i} AG"),
                        first_name: "Lena".into(),
                        last_name: "Last".into(),
                        street: "Bahnhofstrasse 1".into(),
                        postcode: "3123".into(),
                        city: "Belp".into(),
                        state: "BE".into(),
                        country: "CH".into(),
                        email: format!("site{i}@load.example"),
                        phone: "+41 31 000 00 00".into(),
                    },
                    license_data: LicenseData {
                        name: format!("Load site {i}"),
                        postcode: "3123".into(),
                        city: "Belp".into(),
                    },
                },
                &actor,
                now,
            )
            .expect("seed license");
        let m = store
            .add_mutation(
                &l.number,
                NewMutation {
                    kind: MutationKind::New,
                    adds: Entitlements::standard_base(),
                    price_net: None,
                    priced: None,
                    remarks: String::new(),
                },
                true,
                &identity.key,
                &actor,
                now,
            )
            .expect("seed order");
        store
            .activate_mutation(&l.number, m.number, &identity.key, &actor, now)
            .expect("seed payment");
        hosts.push(Host {
            number: l.number.clone(),
            token: l.token.expose().to_owned(),
            hardware_id: hardware_id(i),
        });
    }
    // One argon2 hash for all users: the same password, and seeding stays fast.
    let hash = portal::web::password::hash(PASSWORD);
    let mut accounts = Vec::with_capacity(users);
    for u in 0..users {
        let email = format!("user{u}@load.example");
        let a = store
            .create_account(
                NewAccount {
                    email: email.clone(),
                    password_hash: Some(hash.clone()),
                    company: format!("Load Customer {u} GmbH"),
                    first_name: "Uli".into(),
                    last_name: format!("User{u}"),
                },
                &Actor::System,
                now,
            )
            .expect("seed account");
        store
            .update_account(a.id, &Actor::System, now, "verified", |a| {
                a.email_verified = true
            })
            .expect("seed verification");
        accounts.push(User {
            email,
            account: a.id,
        });
    }
    store.flush().expect("flush the seeded store");
    (hosts, accounts)
}

// ----- simulated daemons -----------------------------------------------------------

/// What one simulated daemon had acknowledged by the server.
#[derive(Debug, Default, Clone)]
struct DaemonRecord {
    activated: bool,
    /// Check counter of the last check sent / the last one answered with a receipt.
    last_sent: u32,
    last_acked: u32,
    /// `server_time` of the last receipt.
    last_acked_at: Option<UnixTime>,
}

struct DaemonCtx {
    /// One client per server, the daemon's first choice first.
    clients: Vec<ServerClient>,
    /// The server that answered last: the next request starts there.
    current: std::sync::atomic::AtomicUsize,
    trusted: Arc<TrustedKeys>,
    stats: Arc<Stats>,
    interval: Duration,
    end: Instant,
}

fn request_error(e: &RequestError) -> String {
    match e {
        RequestError::Connect { message, .. } => format!("connect: {message}"),
        other => other.to_string(),
    }
}

/// One request as `promos-licd` sends it with several servers configured: to
/// the server that answered last, and on no answer (or "unavailable") to the
/// next, each once.
async fn send(ctx: &DaemonCtx, req: &Request) -> Result<Response, String> {
    use std::sync::atomic::Ordering;
    let n = ctx.clients.len();
    let first = ctx.current.load(Ordering::Relaxed);
    let mut errors = vec![];
    for k in 0..n {
        let i = (first + k) % n;
        match tokio::time::timeout(DAEMON_TIMEOUT, ctx.clients[i].once(req)).await {
            Ok(Ok(Response::Error(wire::ErrorReply::Unavailable))) if k + 1 < n => {
                errors.push("unavailable".to_owned())
            }
            Ok(Ok(r)) => {
                ctx.current.store(i, Ordering::Relaxed);
                return Ok(r);
            }
            Ok(Err(e)) => errors.push(request_error(&e)),
            Err(_) => errors.push(format!("no answer within {} s", DAEMON_TIMEOUT.as_secs())),
        }
    }
    Err(errors.join("; then "))
}

/// Why an answer is not what a daemon may accept.
fn other_answer(ctx: &DaemonCtx, r: &Response) -> String {
    match r {
        Response::Refused(s) => match ctx.trusted.verify(s) {
            Ok(v) => format!("refused: {}", v.reason.key()),
            Err(e) => format!("refusal with a bad signature: {e}"),
        },
        Response::Error(e) => format!("server error reply: {e:?}"),
        other => format!("unexpected answer: {}", variant(other)),
    }
}

fn variant(r: &Response) -> &'static str {
    match r {
        Response::Hello { .. } => "Hello",
        Response::Activated { .. } => "Activated",
        Response::Checked { .. } => "Checked",
        Response::CheckedCompact { .. } => "CheckedCompact",
        Response::Deactivated { .. } => "Deactivated",
        Response::Refused(_) => "Refused",
        Response::Error(_) => "Error",
        Response::Relayed(_) => "Relayed",
    }
}

async fn run_daemon(
    host: Host,
    offset: Duration,
    start: Instant,
    ctx: Arc<DaemonCtx>,
) -> DaemonRecord {
    let mut rec = DaemonRecord::default();
    let mut next = start + offset;
    let mut held: Option<u64> = None;
    loop {
        tokio::time::sleep_until(next.into()).await;
        if Instant::now() >= ctx.end {
            return rec;
        }
        next += ctx.interval;
        let nonce = Nonce::random();
        let t = Instant::now();
        match held {
            None => {
                let req = Request::Activate(Activate {
                    license_number: host.number.clone(),
                    token: Token(host.token.clone()),
                    hardware_id: host.hardware_id.clone(),
                    daemon_version: "pls-load/0.1.0".into(),
                    nonce,
                });
                match send(&ctx, &req).await {
                    Ok(Response::Activated { grant, receipt }) => {
                        let took = t.elapsed();
                        let grant = ctx.trusted.verify(&grant);
                        let receipt = ctx.trusted.verify(&receipt);
                        match (grant, receipt) {
                            (Ok(g), Ok(r))
                                if g.license_number == host.number
                                    && g.binding
                                        == Binding::HardwareId(host.hardware_id.clone())
                                    && r.nonce == nonce
                                    && r.hardware_id == host.hardware_id =>
                            {
                                held = Some(g.serial);
                                rec.activated = true;
                                rec.last_acked_at = Some(r.server_time);
                                ctx.stats.ok("activate", took);
                            }
                            (Err(e), _) | (_, Err(e)) => {
                                ctx.stats.err("activate", format!("bad signature: {e}"))
                            }
                            _ => ctx
                                .stats
                                .err("activate", "grant or receipt not for this host and request"),
                        }
                    }
                    Ok(other) => ctx.stats.err("activate", other_answer(&ctx, &other)),
                    Err(e) => ctx.stats.err("activate", e),
                }
            }
            Some(serial) => {
                let seq = rec.last_sent + 1;
                rec.last_sent = seq;
                let req = Request::Check(Check {
                    license_number: host.number.clone(),
                    hardware_id: host.hardware_id.clone(),
                    grant_serial: Some(serial),
                    runtime: RuntimeState::Running,
                    // The check counter rides in the seat field; the store's
                    // check-in record then says which check it last saw.
                    seats: Seats { ge: seq, pwa: 1 },
                    daemon_version: "pls-load/0.1.0".into(),
                    nonce,
                });
                match send(&ctx, &req).await {
                    Ok(Response::Checked { receipt, grant }) => {
                        let took = t.elapsed();
                        match ctx.trusted.verify(&receipt) {
                            Ok(r)
                                if r.nonce == nonce
                                    && r.hardware_id == host.hardware_id
                                    && r.license_number == host.number =>
                            {
                                if r.current_serial != serial || grant.is_some() {
                                    ctx.stats.err(
                                        "check",
                                        "the license's grant changed (nobody changes it here)",
                                    );
                                } else {
                                    rec.last_acked = seq;
                                    rec.last_acked_at = Some(r.server_time);
                                    ctx.stats.ok("check", took);
                                }
                            }
                            Ok(_) => ctx
                                .stats
                                .err("check", "receipt not for this host and request"),
                            Err(e) => ctx.stats.err("check", format!("bad signature: {e}")),
                        }
                    }
                    Ok(other) => ctx.stats.err("check", other_answer(&ctx, &other)),
                    Err(e) => ctx.stats.err("check", e),
                }
            }
        }
        // Behind schedule: go on at once, but never in a burst of missed checks.
        let now = Instant::now();
        if next < now {
            next = now;
        }
    }
}

// ----- simulated portal users ----------------------------------------------------

#[derive(Debug, Default)]
struct UserRecord {
    /// Acknowledged quotes and orders: (license number, mutation number).
    quotes: Vec<(String, u32)>,
    orders: Vec<(String, u32)>,
    /// Went on at another server (same cookies) after its own was gone.
    moved: bool,
    /// Times the server had forgotten the user's session after a failed round.
    sessions_lost: u64,
}

/// The manual's worked order with a user-specific company and Modbus size.
fn order_fields(csrf: &str, user: usize, round: usize) -> Vec<(String, String)> {
    let modbus = (1000 + 500 * (round % 10)).to_string();
    let company = format!("Load Customer {user} GmbH");
    [
        ("csrf", csrf),
        ("protection", "soft_dongle"),
        ("company", &company),
        ("first_name", "Uli"),
        ("last_name", "User"),
        ("street", "Josef-Bautz-Str."),
        ("postcode", "63457"),
        ("city", "Hanau"),
        ("state", "Hessen"),
        ("country", "DE"),
        ("email", "uli@load.example"),
        ("phone", "015127551103"),
        ("data_name", "Load site"),
        ("data_postcode", "63457"),
        ("data_city", "Hanau"),
        ("driver_bacnet_ip", "10"),
        ("driver_modbus", &modbus),
        ("driver_mbus", "1"),
        ("driver_saia_pcd", "6000"),
        ("driver_beckhoff_ads", "100"),
        ("driver_iec60870", "1"),
        ("driver_opc_da", "10"),
        ("driver_mqtt", "10"),
        ("driver_snmp", "1"),
        ("driver_espa", "1"),
        ("driver_email", "10"),
        ("driver_knx", "10"),
        ("ge_users", "1"),
        ("pwa_users", "5"),
        ("remarks", ""),
        ("step", "next"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

struct UserCtx {
    stats: Arc<Stats>,
    think: Duration,
    end: Instant,
    /// Users start spread evenly over this time (the first check interval).
    ramp: Duration,
    users: usize,
}

/// One request, timed and checked; `None` (and an error recorded) unless the
/// status is `want`.
async fn timed(
    ctx: &UserCtx,
    b: &mut Browser,
    class: &'static str,
    what: &str,
    want: u16,
    post: Option<&[(String, String)]>,
) -> Option<http::Reply> {
    tokio::time::sleep(ctx.think).await;
    if Instant::now() >= ctx.end {
        return None; // the run is over: the round ends here, nothing counted
    }
    let t = Instant::now();
    let r = match post {
        Some(fields) => b.post(what, fields).await,
        None => b.get(what).await,
    };
    let took = t.elapsed();
    let method = if post.is_some() { "POST" } else { "GET" };
    // Numbers vary per request; the reason names the route.
    let route: String = what
        .split('?')
        .next()
        .unwrap_or(what)
        .split('/')
        .map(|seg| {
            if seg.chars().all(|c| c.is_ascii_digit()) && !seg.is_empty() {
                "N"
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/");
    match r {
        Ok(r) if r.status == want => {
            ctx.stats.ok(class, took);
            Some(r)
        }
        Ok(r) => {
            ctx.stats.err(
                class,
                format!("{method} {route}: status {} (want {want})", r.status),
            );
            None
        }
        Err(e) => {
            ctx.stats.err(class, format!("{method} {route}: {e}"));
            None
        }
    }
}

async fn login(ctx: &UserCtx, b: &mut Browser, email: &str) -> bool {
    let Some(page) = timed(ctx, b, "page", "/login", 200, None).await else {
        return false;
    };
    let Some(csrf) = page.csrf() else {
        ctx.stats.err("page", "GET /login: no CSRF token");
        return false;
    };
    let fields = vec![
        ("csrf".to_owned(), csrf),
        ("email".to_owned(), email.to_owned()),
        ("password".to_owned(), PASSWORD.to_owned()),
    ];
    match timed(ctx, b, "login", "/login", 303, Some(&fields)).await {
        Some(r) if r.header("location") == Some("/licenses") => true,
        Some(r) => {
            ctx.stats.err(
                "login",
                format!("POST /login: to {:?}, not /licenses", r.header("location")),
            );
            false
        }
        None => false,
    }
}

/// Where a user stands with the portal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Session {
    /// Not logged in (at the start): log in.
    Out,
    /// Logged in: browse.
    In,
    /// A round failed (the server or its database away for a moment): the
    /// session is still there unless the server says otherwise.
    Unsure,
}

/// After a failed round: is the user still logged in? `GET /licenses` answers
/// the list (yes) or a redirect to the login page (the session is gone: an
/// error, sessions live in the database and must survive a failover); `None`
/// while the portal does not answer either (try again later).
async fn still_logged_in(ctx: &UserCtx, b: &mut Browser) -> Option<bool> {
    tokio::time::sleep(ctx.think).await;
    if Instant::now() >= ctx.end {
        return None;
    }
    let t = Instant::now();
    match b.get("/licenses").await {
        Ok(r) if r.status == 200 => {
            ctx.stats.ok("page", t.elapsed());
            Some(true)
        }
        Ok(r)
            if r.status == 303
                && r.header("location")
                    .is_some_and(|l| l.starts_with("/login")) =>
        {
            ctx.stats
                .err("page", "GET /licenses: to /login, the session is gone");
            Some(false)
        }
        Ok(r) => {
            ctx.stats.err(
                "page",
                format!("GET /licenses: status {} (want 200)", r.status),
            );
            None
        }
        Err(e) => {
            ctx.stats.err("page", format!("GET /licenses: {e}"));
            None
        }
    }
}

async fn run_user(u: usize, user: User, addrs: Vec<SocketAddr>, ctx: Arc<UserCtx>) -> UserRecord {
    let mut rec = UserRecord::default();
    let mut b = Browser::with_fallbacks(addrs);
    tokio::time::sleep(ctx.ramp.mul_f64(u as f64 / ctx.users.max(1) as f64)).await;
    let mut session = Session::Out;
    let mut round = 0usize;
    while Instant::now() < ctx.end {
        session = match session {
            Session::Out if login(&ctx, &mut b, &user.email).await => Session::In,
            Session::Out => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                Session::Out
            }
            Session::In => {
                round += 1;
                match user_round(u, round, &ctx, &mut b, &mut rec).await {
                    Some(()) => Session::In,
                    None => Session::Unsure,
                }
            }
            Session::Unsure => match still_logged_in(&ctx, &mut b).await {
                Some(true) => Session::In,
                Some(false) => {
                    rec.sessions_lost += 1;
                    Session::Out
                }
                None => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    Session::Unsure
                }
            },
        };
    }
    rec.moved = b.moved();
    rec
}

/// One round of browsing, pricing, quoting and (every second round) ordering.
async fn user_round(
    u: usize,
    round: usize,
    ctx: &UserCtx,
    b: &mut Browser,
    rec: &mut UserRecord,
) -> Option<()> {
    let list = timed(ctx, b, "page", "/licenses", 200, None).await?;
    if !list.body.contains("</html>") {
        ctx.stats.err("page", "GET /licenses: incomplete page");
    }
    let form = timed(ctx, b, "page", "/quote/standard", 200, None).await?;
    let Some(csrf) = form.csrf() else {
        ctx.stats.err("page", "GET /quote/standard: no CSRF token");
        return None;
    };
    // Typing in the form: the live total.
    for step in 1..=3 {
        let path = format!(
            "/api/price?kind=standard&driver_modbus={}&driver_saia_pcd=6000&pwa_users=5&ge_users=1&country=DE",
            1000 * step + 100 * (round % 9)
        );
        if let Some(r) = timed(ctx, b, "price", &path, 200, None).await {
            let ok = serde_json::from_str::<Value>(&r.body)
                .ok()
                .is_some_and(|v| v["ok"] == true && v["gross"].is_string());
            if !ok {
                ctx.stats
                    .err("price", "GET /api/price: no total in the answer");
            }
        }
    }
    let summary = timed(
        ctx,
        b,
        "quote",
        "/quote/standard",
        200,
        Some(&order_fields(&csrf, u, round)),
    )
    .await?;
    let mut hidden = hidden_fields(&summary.body);
    if hidden.is_empty() {
        ctx.stats
            .err("quote", "POST /quote/standard (next): no summary form");
        return None;
    }
    hidden.push(("step".into(), "quote".into()));
    let done = timed(ctx, b, "quote", "/quote/standard", 303, Some(&hidden)).await?;
    let created = done
        .header("location")
        .and_then(|l| l.split("created=").nth(1))
        .map(str::to_owned);
    let Some((number, n)) = created.as_deref().and_then(|c| {
        let (num, n) = c.split_once('/')?;
        Some((num.to_owned(), n.parse::<u32>().ok()?))
    }) else {
        ctx.stats.err(
            "quote",
            "POST /quote/standard (quote): no created quote in the redirect",
        );
        return None;
    };
    rec.quotes.push((number.clone(), n));
    if round % 2 == 1 || Instant::now() >= ctx.end {
        return Some(());
    }
    let page = timed(ctx, b, "page", &format!("/quotes/{number}/{n}"), 200, None).await?;
    let Some(csrf) = page.csrf() else {
        ctx.stats.err("page", "GET /quotes/N/N: no CSRF token");
        return None;
    };
    let fields = vec![("csrf".to_owned(), csrf)];
    let ordered = timed(
        ctx,
        b,
        "order",
        &format!("/quotes/{number}/{n}/order"),
        303,
        Some(&fields),
    )
    .await?;
    let location = ordered.header("location").unwrap_or_default().to_owned();
    if location != format!("/licenses/{number}?ordered={n}") {
        ctx.stats
            .err("order", format!("POST /quotes/N/N/order: to {location:?}"));
        return None;
    }
    rec.orders.push((number.clone(), n));
    let license = timed(ctx, b, "page", &location, 200, None).await?;
    if !license.body.contains(&number)
        || between(&license.body, "<td id=\"status\">", "<").is_none()
    {
        ctx.stats
            .err("page", "GET /licenses/N: not the ordered license");
    }
    Some(())
}

// ----- verification --------------------------------------------------------------

#[derive(Debug, Default)]
struct Verification {
    checked: BTreeMap<&'static str, u64>,
    lost: BTreeMap<String, u64>,
    examples: Vec<String>,
}

impl Verification {
    fn ok(&mut self, what: &'static str) {
        *self.checked.entry(what).or_default() += 1;
    }

    fn lost(&mut self, what: &str, example: String) {
        *self.lost.entry(what.to_owned()).or_default() += 1;
        if self.examples.len() < 20 {
            self.examples.push(example);
        }
    }
}

fn verify_store(
    config: &Config,
    hosts: &[Host],
    daemons: &[DaemonRecord],
    users: &[User],
    records: &[UserRecord],
) -> Result<Verification, String> {
    let store = config
        .open_store()
        .map_err(|e| format!("cannot open the store after the run: {e}"))?;
    let mut v = Verification::default();
    for (h, d) in hosts.iter().zip(daemons) {
        let license = store
            .license(&h.number)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("seeded license {} missing", h.number))?;
        if d.activated {
            if license.binding == Some(Binding::HardwareId(h.hardware_id.clone()))
                && license.current_grant.is_some()
            {
                v.ok("activations");
            } else {
                v.lost(
                    "activation",
                    format!("{}: binding {:?}", h.number, license.binding),
                );
            }
        }
        if d.last_acked > 0 {
            match store.last_check_in(&h.number).map_err(|e| e.to_string())? {
                // The server signs the receipt with the time it records: the
                // stored check-in is the acknowledged one or a later one.
                Some(c)
                    if c.hardware_id == h.hardware_id
                        && c.ge_seats >= d.last_acked
                        && c.ge_seats <= d.last_sent
                        && d.last_acked_at.is_none_or(|t| c.at >= t) =>
                {
                    v.ok("check-ins")
                }
                Some(c) => v.lost(
                    "check-in",
                    format!(
                        "{}: stored check {} at {}, acknowledged check {} (sent {})",
                        h.number,
                        c.ge_seats,
                        c.at.secs(),
                        d.last_acked,
                        d.last_sent
                    ),
                ),
                None => v.lost("check-in", format!("{}: no check-in record", h.number)),
            }
        }
    }
    for (u, r) in users.iter().zip(records) {
        for (kind, list) in [("quote", &r.quotes), ("order", &r.orders)] {
            for (number, n) in list {
                let parsed: LicenseNumber = number
                    .parse()
                    .map_err(|e| format!("license number {number}: {e}"))?;
                let owner = store
                    .license(&parsed)
                    .map_err(|e| e.to_string())?
                    .and_then(|l| l.account);
                let m = store.mutation(&parsed, *n).map_err(|e| e.to_string())?;
                let state_ok = |s: MutationState| match kind {
                    "quote" => matches!(
                        s,
                        MutationState::Quote | MutationState::Ordered | MutationState::Activated
                    ),
                    _ => matches!(s, MutationState::Ordered | MutationState::Activated),
                };
                match m {
                    Some(m) if owner == Some(u.account) && state_ok(m.state) => {
                        v.ok(if kind == "quote" { "quotes" } else { "orders" })
                    }
                    Some(m) => v.lost(
                        kind,
                        format!("{number}#{n}: state {:?}, owner {owner:?}", m.state),
                    ),
                    None => v.lost(kind, format!("{number}#{n}: not in the store")),
                }
            }
        }
    }
    Ok(v)
}

// ----- main ------------------------------------------------------------------------

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("pls-load: {e}");
            ExitCode::from(2)
        }
    }
}

/// The instant of a wall-clock time given as Unix milliseconds.
fn instant_of_unix_ms(ms: u64) -> Instant {
    let at = std::time::UNIX_EPOCH + Duration::from_millis(ms);
    let now = Instant::now();
    match at.duration_since(std::time::SystemTime::now()) {
        Ok(ahead) => now + ahead,
        Err(past) => now.checked_sub(past.duration()).unwrap_or(now),
    }
}

async fn run(args: Args) -> Result<bool, String> {
    let temp;
    let base = match &args.data_dir {
        Some(d) => {
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
            d.clone()
        }
        None => {
            temp = tempfile::tempdir().map_err(|e| e.to_string())?;
            temp.path().to_path_buf()
        }
    };
    let data = base.join("pls-data");
    if data.exists() {
        return Err(format!(
            "{} exists; give an empty --data-dir",
            data.display()
        ));
    }
    let instances = args.instances.max(1);
    if instances > 1 && args.database_url.is_none() {
        return Err("--instances above 1 need --database-url (one PostgreSQL for all)".into());
    }
    if args.kill_after.is_some() && instances < 2 {
        return Err("--kill-after needs --instances 2 or more".into());
    }
    let mut config = Config {
        data_dir: data.clone(),
        ..Config::default()
    };
    config.database.url = args.database_url.clone();
    let identity = Identity::load_or_create(&config).map_err(|e| e.to_string())?;
    // Every server signs with the same key and shows the same certificate
    // (README, "Operating several servers").
    let data_dirs: Vec<PathBuf> = (0..instances)
        .map(|i| {
            if i == 0 {
                data.clone()
            } else {
                base.join(format!("pls-data-{i}"))
            }
        })
        .collect();
    for dir in &data_dirs[1..] {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for f in [
            "signing.key",
            "signing.pub",
            "quic-cert.der",
            "quic-key.der",
        ] {
            std::fs::copy(data.join(f), dir.join(f)).map_err(|e| format!("copy {f}: {e}"))?;
        }
    }
    let seed_start = Instant::now();
    let (hosts, users) = off_runtime(|| seed(&config, &identity, args.daemons, args.users));
    eprintln!(
        "seeded {} licenses and {} accounts in {:.1} s",
        hosts.len(),
        users.len(),
        seed_start.elapsed().as_secs_f64()
    );

    let mut servers = Vec::with_capacity(instances);
    for (i, dir) in data_dirs.iter().enumerate() {
        servers.push(start_server(&args, i, dir, &base).await?);
    }
    let pid = servers.last().map_or(0, |s| s.server.pid());
    let log_path = servers[0].log.clone();
    let http_addrs: Vec<SocketAddr> = servers.iter().map(|s| s.http).collect();
    let quic_addrs: Vec<SocketAddr> = servers.iter().map(|s| s.quic).collect();

    let trusted = Arc::new(TrustedKeys::with([identity.key.public()]));
    let pin = CertPin(daemon::client::sha256(&identity.cert_der));
    let stats = Arc::new(Stats::default());
    let start = Instant::now();
    let end = start + args.duration;
    eprintln!(
        "load: {} daemons (check every {:?}), {} users, for {:?}; pls pid {pid}, log {}",
        args.daemons,
        args.check_interval,
        args.users,
        args.duration,
        log_path.display()
    );

    // Sampler of the server's RSS and CPU.
    let ticks_per_sec = clock_ticks_per_sec() as f64;
    let sampler = {
        let stats = Arc::clone(&stats);
        let every = args.sample_every;
        tokio::spawn(async move {
            let mut out = vec![];
            let mut prev = (Instant::now(), proc_sample(pid).map_or(0, |s| s.0), (0, 0));
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some((ticks, rss)) = proc_sample(pid) else {
                    break;
                };
                let now = Instant::now();
                let counts = stats.counts();
                let dt = now.duration_since(prev.0).as_secs_f64();
                out.push(Sample {
                    at_secs: now.duration_since(start).as_secs_f64(),
                    rss_kib: rss,
                    cpu_pct: (ticks - prev.1) as f64 / ticks_per_sec / dt * 100.0,
                    daemon_ops_per_sec: (counts.0 - prev.2 .0) as f64 / dt,
                    portal_ops_per_sec: (counts.1 - prev.2 .1) as f64 / dt,
                    load_avg: load_avg(),
                });
                prev = (now, ticks, counts);
                if now >= end {
                    break;
                }
            }
            out
        })
    };

    // Per endpoint, a client for each server.
    let clients: Vec<Vec<ServerClient>> = (0..args.endpoints.max(1))
        .map(|_| {
            quic_addrs
                .iter()
                .map(|q| {
                    ServerClient::new(&q.to_string(), "localhost", Some(&pin))
                        .and_then(ServerClient::with_shared_socket)
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let mut daemon_tasks = Vec::with_capacity(hosts.len());
    for (i, h) in hosts.iter().enumerate() {
        let ctx = Arc::new(DaemonCtx {
            clients: clients[i % clients.len()].clone(),
            // Spread over the servers: daemon i starts with server i mod n.
            current: std::sync::atomic::AtomicUsize::new(i % instances),
            trusted: Arc::clone(&trusted),
            stats: Arc::clone(&stats),
            interval: args.check_interval,
            end,
        });
        let offset = args
            .check_interval
            .mul_f64(i as f64 / hosts.len().max(1) as f64);
        daemon_tasks.push(tokio::spawn(run_daemon(h.clone(), offset, start, ctx)));
    }
    let user_ctx = Arc::new(UserCtx {
        stats: Arc::clone(&stats),
        think: args.think,
        end,
        ramp: args.check_interval,
        users: users.len(),
    });
    let mut user_tasks = Vec::with_capacity(users.len());
    for (u, user) in users.iter().enumerate() {
        let mut addrs = http_addrs.clone();
        addrs.rotate_left(u % instances);
        user_tasks.push(tokio::spawn(run_user(
            u,
            user.clone(),
            addrs,
            Arc::clone(&user_ctx),
        )));
    }
    // A machine lost in the middle of the run: SIGKILL, no goodbye.
    let killer = args.kill_after.map(|after| {
        let victim = servers[0].server.pid();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let _ = Command::new("kill")
                .args(["-KILL", &victim.to_string()])
                .status();
            eprintln!("SIGKILLed server 0 (pid {victim}) after {after:?}");
        })
    });
    let mut daemon_records = Vec::with_capacity(hosts.len());
    for t in daemon_tasks {
        daemon_records.push(t.await.map_err(|e| format!("daemon task: {e}"))?);
    }
    let mut user_records = Vec::with_capacity(users.len());
    for t in user_tasks {
        user_records.push(t.await.map_err(|e| format!("user task: {e}"))?);
    }
    let wall = start.elapsed();
    if let Some(k) = killer {
        k.await.map_err(|e| format!("killer task: {e}"))?;
    }
    let samples = sampler.await.unwrap_or_default();
    let peak_rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0);
    let cpu_total: f64 = servers
        .iter()
        .filter_map(|s| proc_sample(s.server.pid()))
        .map(|s| s.0 as f64 / ticks_per_sec)
        .sum();

    // The server's own count of what it answered, from its metrics: at least what
    // the daemons had acknowledged (more if an answer was lost on the way).
    // (Metrics are per server; a killed server's are gone with it.)
    let mut scrapes = Vec::with_capacity(servers.len());
    for s in &servers {
        scrapes.push(
            http::Browser::new(s.metrics)
                .get("/metrics")
                .await
                .map(|r| r.body)
                .unwrap_or_default(),
        );
    }
    let served = |kind: &str| {
        let series = format!("pls_daemon_requests_total{{kind=\"{kind}\",outcome=\"ok\"}} ");
        scrapes
            .iter()
            .map(|scrape| {
                scrape
                    .lines()
                    .find_map(|l| l.strip_prefix(series.as_str())?.parse::<f64>().ok())
                    .unwrap_or(0.0) as u64
            })
            .sum::<u64>()
    };
    let acknowledged = |class: &str| {
        let classes = stats.0.lock().unwrap_or_else(|p| p.into_inner());
        classes.get(class).map_or(0, |c| c.lat_us.len() as u64)
    };
    let metrics_counts = json!({
        "activate": {"served": served("activate"), "acknowledged": acknowledged("activate")},
        "check": {"served": served("check"), "acknowledged": acknowledged("check")},
    });
    let metrics_ok = (args.kill_after.is_some()
        || ["activate", "check"].iter().all(|k| {
            metrics_counts[k]["served"].as_u64() >= metrics_counts[k]["acknowledged"].as_u64()
        }))
        && acknowledged("check") > 0;

    eprintln!("load done after {:.1} s; stopping pls", wall.as_secs_f64());
    let mut stopped = Ok(true);
    for (i, s) in servers.iter_mut().enumerate() {
        if i == 0 && args.kill_after.is_some() {
            s.server.reap();
            continue;
        }
        let r = s.server.stop();
        // The first failure is the one reported.
        if matches!(stopped, Ok(true)) {
            stopped = r;
        }
    }
    let mut log_text = String::new();
    for s in &servers {
        log_text.push_str(&std::fs::read_to_string(&s.log).unwrap_or_default());
    }
    let log_text = strip_ansi(&log_text);
    let problems: Vec<&str> = log_text
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    let verification =
        off_runtime(|| verify_store(&config, &hosts, &daemon_records, &users, &user_records))?;
    let mail = count_emails(&data_dirs);
    let queued = off_runtime(|| config.open_store().ok()?.mail_queue_len().ok());

    // ----- report -----
    let classes = stats.0.lock().unwrap_or_else(|p| p.into_inner());
    let mut error_total = 0u64;
    let mut rows = vec![];
    for name in CLASSES {
        let Some(c) = classes.get(name) else { continue };
        let mut lat = c.lat_us.clone();
        lat.sort_unstable();
        let errors: u64 = c.errors.values().sum();
        error_total += errors;
        rows.push(json!({
            "class": name,
            "ok": lat.len(),
            "per_sec": lat.len() as f64 / wall.as_secs_f64(),
            "p50_ms": percentile(&lat, 0.5) as f64 / 1000.0,
            "p99_ms": percentile(&lat, 0.99) as f64 / 1000.0,
            "max_ms": lat.last().copied().unwrap_or(0) as f64 / 1000.0,
            "errors": errors,
            "error_reasons": c.errors,
        }));
    }
    let lost_total: u64 = verification.lost.values().sum();
    let (stop_ok, stop_msg) = match &stopped {
        Ok(true) => (true, "exited 0 after SIGTERM".to_owned()),
        Ok(false) => (false, "exited with an error after SIGTERM".to_owned()),
        Err(e) => (false, e.clone()),
    };
    let sessions_lost: u64 = user_records.iter().map(|r| r.sessions_lost).sum();
    let disruption = match &args.disruption_file {
        Some(f) => match std::fs::read_to_string(f) {
            Ok(text) => Some(instant_of_unix_ms(text.trim().parse().map_err(|_| {
                format!("{}: not Unix milliseconds: {text:?}", f.display())
            })?)),
            Err(e) => {
                eprintln!("no disruption recorded ({}: {e})", f.display());
                None
            }
        },
        None => None,
    };
    let disruption_report = disruption.map(|at| stats.disruption(at));
    let passed =
        error_total == 0 && lost_total == 0 && stop_ok && metrics_ok && mail.duplicated == 0;
    let report = json!({
        "daemons": args.daemons,
        "users": args.users,
        "duration_secs": args.duration.as_secs_f64(),
        "wall_secs": wall.as_secs_f64(),
        "check_interval_secs": args.check_interval.as_secs_f64(),
        "think_ms": args.think.as_secs_f64() * 1000.0,
        "endpoints": args.endpoints,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "classes": rows,
        "errors": error_total,
        "verified": verification.checked,
        "lost": lost_total,
        "lost_by_kind": verification.lost,
        "lost_examples": verification.examples,
        "server_stop": stop_msg,
        "instances": instances,
        "killed_after_secs": args.kill_after.map(|d| d.as_secs_f64()),
        "users_moved": user_records.iter().filter(|r| r.moved).count(),
        "sessions_lost": sessions_lost,
        "disruption": disruption_report,
        "emails_sent": mail.sent,
        "emails_duplicated": mail.duplicated,
        "emails_still_queued": queued,
        "server_metrics": metrics_counts,
        "server_metrics_consistent": metrics_ok,
        "server_log_warnings": problems.len(),
        "server_log_first_warnings": problems.iter().take(10).collect::<Vec<_>>(),
        "server_cpu_secs": cpu_total,
        "server_peak_rss_kib": peak_rss,
        "samples": samples.iter().map(|s| json!({
            "at_secs": s.at_secs, "rss_kib": s.rss_kib, "cpu_pct": s.cpu_pct,
            "daemon_ops_per_sec": s.daemon_ops_per_sec, "portal_ops_per_sec": s.portal_ops_per_sec,
            "load_avg": s.load_avg,
        })).collect::<Vec<_>>(),
        "passed": passed,
    });
    print_report(&report);
    if let Some(path) = &args.json {
        std::fs::write(
            path,
            serde_json::to_string_pretty(&report).unwrap_or_default(),
        )
        .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(passed)
}

/// The log without terminal colour codes.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn print_report(r: &Value) {
    let f = |v: &Value| v.as_f64().unwrap_or(0.0);
    println!(
        "## pls-load: {} daemons (check every {} s), {} users (think {} ms), {:.0} s on {} cores\n",
        r["daemons"],
        r["check_interval_secs"],
        r["users"],
        r["think_ms"],
        f(&r["wall_secs"]),
        r["cores"]
    );
    println!("| class | ok | per second | p50 | p99 | max | errors |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for c in r["classes"].as_array().into_iter().flatten() {
        println!(
            "| {} | {} | {:.1} | {:.1} ms | {:.1} ms | {:.1} ms | {} |",
            c["class"].as_str().unwrap_or(""),
            c["ok"],
            f(&c["per_sec"]),
            f(&c["p50_ms"]),
            f(&c["p99_ms"]),
            f(&c["max_ms"]),
            c["errors"]
        );
    }
    for c in r["classes"].as_array().into_iter().flatten() {
        for (reason, n) in c["error_reasons"].as_object().into_iter().flatten() {
            println!(
                "- error, {}: {reason} ({n}x)",
                c["class"].as_str().unwrap_or("")
            );
        }
    }
    println!(
        "\nServer: {}; {} warning/error lines in its log; {:.1} s of CPU; peak RSS {:.1} MiB.",
        r["server_stop"].as_str().unwrap_or(""),
        r["server_log_warnings"],
        f(&r["server_cpu_secs"]),
        f(&r["server_peak_rss_kib"]) / 1024.0
    );
    for l in r["server_log_first_warnings"]
        .as_array()
        .into_iter()
        .flatten()
    {
        println!("    {}", l.as_str().unwrap_or(""));
    }
    if r["instances"].as_u64().unwrap_or(1) > 1 {
        let killed = match r["killed_after_secs"].as_f64() {
            Some(s) => format!("the first SIGKILLed after {s} s"),
            None => "none killed".to_owned(),
        };
        println!(
            "Servers: {} on one database, {killed}; users moved to another server: {}.",
            r["instances"], r["users_moved"]
        );
    }
    println!(
        "Portal sessions lost (a user logged out by the server): {}.",
        r["sessions_lost"]
    );
    if r["disruption"].is_object() {
        for (side, what) in [("daemon", "daemon requests"), ("portal", "portal requests")] {
            let d = &r["disruption"][side];
            println!(
                "Disruption, {what}: first success of one sent after it {} ms later; {} failed after it, the last {} ms after it; the longest successful wait {} ms.",
                d["first_ok_after_ms"], d["failed"], d["last_failure_after_ms"], d["longest_successful_wait_ms"]
            );
        }
    }
    println!(
        "Emails: {} in the outboxes, {} of them a second copy; {} still queued.",
        r["emails_sent"], r["emails_duplicated"], r["emails_still_queued"]
    );
    println!(
        "Verified in the store after the stop: {}; lost: {}.",
        r["verified"], r["lost"]
    );
    println!(
        "Server metrics (answered ok / acknowledged by the daemons): activate {} / {}, check {} / {}.",
        r["server_metrics"]["activate"]["served"],
        r["server_metrics"]["activate"]["acknowledged"],
        r["server_metrics"]["check"]["served"],
        r["server_metrics"]["check"]["acknowledged"],
    );
    for e in r["lost_examples"].as_array().into_iter().flatten() {
        println!("- lost: {}", e.as_str().unwrap_or(""));
    }
    println!("\n| t (s) | server RSS | server CPU (% of one core) | daemon requests/s | portal requests/s | machine load |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: |");
    for s in r["samples"].as_array().into_iter().flatten() {
        println!(
            "| {:.0} | {:.1} MiB | {:.0} % | {:.1} | {:.1} | {:.1} |",
            f(&s["at_secs"]),
            f(&s["rss_kib"]) / 1024.0,
            f(&s["cpu_pct"]),
            f(&s["daemon_ops_per_sec"]),
            f(&s["portal_ops_per_sec"]),
            f(&s["load_avg"])
        );
    }
    println!(
        "\n{}",
        if r["passed"] == true {
            "PASSED: no errors, nothing lost."
        } else {
            "FAILED"
        }
    );
}
