//! Web portal benchmark (`cargo bench -p portal --bench web`), issue 6.
//!
//! Over real HTTP on loopback, 32 concurrent clients, each on its own keep-alive
//! connection, against the portal serving a store that holds 10,000 licenses:
//! - `GET /api/price` (the live total of the order form, the manual's worked
//!   order), anonymous;
//! - `GET /admin/licenses` (an admin's license list, first page, and a search),
//!   logged in as an admin.
//!
//! Before the HTTP runs (issue 9, kept for issue 14's SQL store): the admin
//! search at the store, one thread, the schema-1 way (text pre-filter over every
//! record) against the FTS5 trigram index, on the same data.
//!
//! Prints p50/p99 latency and throughput per endpoint as a Markdown table for
//! BENCHMARKS.md. The portal runs in this process on a multi-threaded runtime;
//! the clients share it, as they would share the machine.

use keys::{LicenseData, LicenseType, Protection, SigningKeyPair, SystemClock};
use portal::domain::{AccountId, Actor, License, Licensee, NewAccount, NewLicense};
use portal::mail::Mailer;
use portal::store::Store;
use portal::web::{self, password, HttpConfig, Web};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Licenses in the store: `PLS_BENCH_LICENSES` (default 10,000; BENCHMARKS.md
/// also has 100,000).
fn licenses_wanted() -> usize {
    std::env::var("PLS_BENCH_LICENSES")
        .ok()
        .and_then(|v| v.replace(['_', ','], "").parse().ok())
        .unwrap_or(10_000)
}

/// The engine: `PLS_BENCH_ENGINE=postgres` runs on a throwaway PostgreSQL
/// cluster (`portal::store::throwaway`), otherwise SQLite in a temporary
/// directory.
fn postgres_wanted() -> bool {
    std::env::var("PLS_BENCH_ENGINE").is_ok_and(|v| v.eq_ignore_ascii_case("postgres"))
}

const CLIENTS: usize = 32;

/// A minimal keep-alive HTTP/1.1 client: one connection, sequential requests.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    cookie: String,
}

impl Conn {
    async fn open(addr: SocketAddr, cookie: &str) -> Conn {
        Conn {
            stream: TcpStream::connect(addr).await.expect("connect"),
            buf: Vec::with_capacity(64 * 1024),
            cookie: cookie.to_owned(),
        }
    }

    /// Sends one request and reads the whole response; returns status and body length.
    async fn request(&mut self, method: &str, path: &str, body: &str) -> (u16, String, String) {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: bench\r\n");
        if !self.cookie.is_empty() {
            req.push_str(&format!("Cookie: {}\r\n", self.cookie));
        }
        if method == "POST" {
            req.push_str(&format!(
                "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        req.push_str("\r\n");
        req.push_str(body);
        self.stream.write_all(req.as_bytes()).await.expect("write");
        self.buf.clear();
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = self.stream.read(&mut chunk).await.expect("read");
            assert!(n > 0, "connection closed");
            self.buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).to_string();
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .expect("content-length");
        while self.buf.len() < head_end + len {
            let mut chunk = [0u8; 64 * 1024];
            let n = self.stream.read(&mut chunk).await.expect("read");
            assert!(n > 0, "connection closed");
            self.buf.extend_from_slice(&chunk[..n]);
        }
        let body = String::from_utf8_lossy(&self.buf[head_end..head_end + len]).to_string();
        (status, head, body)
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Runs `CLIENTS` clients, each sending `per_client` GETs of `path`; every answer
/// must be 200 and contain `expect`.
async fn load(
    addr: SocketAddr,
    cookie: &str,
    path: &str,
    expect: &str,
    per_client: usize,
) -> (Duration, Duration, f64) {
    // Warm-up: one request per connection, all at once (so the server's pools
    // reach the concurrency measured below).
    let warm: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (cookie, path, expect) = (cookie.to_owned(), path.to_owned(), expect.to_owned());
            tokio::spawn(async move {
                let mut c = Conn::open(addr, &cookie).await;
                let (status, _, body) = c.request("GET", &path, "").await;
                assert_eq!(status, 200, "{path}: {body}");
                assert!(body.contains(&expect), "{path} lacks {expect:?}");
                c
            })
        })
        .collect();
    let mut conns = vec![];
    for w in warm {
        conns.push(w.await.expect("warm-up"));
    }
    let start = Instant::now();
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|mut c| {
            let path = path.to_owned();
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(per_client);
                for _ in 0..per_client {
                    let t = Instant::now();
                    let (status, _, _) = c.request("GET", &path, "").await;
                    lat.push(t.elapsed());
                    assert_eq!(status, 200);
                }
                lat
            })
        })
        .collect();
    let mut all = vec![];
    for t in tasks {
        all.extend(t.await.expect("client"));
    }
    let wall = start.elapsed();
    all.sort();
    let rate = all.len() as f64 / wall.as_secs_f64();
    (percentile(&all, 0.5), percentile(&all, 0.99), rate)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// The schema-1 admin search (as `web::admin::licenses` did it before issue 9):
/// text pre-filter over every stored record, the licenses of customers whose
/// email matches, then the field check.
fn schema1_search(store: &Store, q: &str) -> Vec<License> {
    let emails: HashMap<AccountId, String> = store
        .accounts()
        .expect("accounts")
        .into_iter()
        .map(|a| (a.id, a.email))
        .collect();
    let mut found = store.licenses_containing(q).expect("scan");
    for (id, email) in &emails {
        if email.to_lowercase().contains(q) {
            found.extend(store.licenses_of_account(*id).expect("of account"));
        }
    }
    found.sort_by(|a, b| a.number.as_str().cmp(b.number.as_str()));
    found.dedup_by(|a, b| a.number == b.number);
    found.retain(|l| {
        let email = l
            .account
            .and_then(|a| emails.get(&a).cloned())
            .unwrap_or_default();
        portal::search::matches(l, &email, q)
    });
    found
}

/// Median of `runs` timings of `f`, and its last result.
fn median_of<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut times = vec![];
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        last = Some(f());
        times.push(t.elapsed());
    }
    times.sort();
    (times[runs / 2], last.expect("runs > 0"))
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    #[allow(non_snake_case)]
    let LICENSES = licenses_wanted();
    // The store is filled and searched here, on the main thread: store calls
    // block and never run on the runtime's async workers.
    {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(if postgres_wanted() {
            Store::temporary_postgres().expect("PostgreSQL store")
        } else {
            Store::open(&dir.path().join(portal::store::DB_FILE)).expect("store")
        });
        eprintln!("engine: {:?}", store.engine());
        let clock = Arc::new(SystemClock);
        let now = keys::Clock::now(&*clock);
        let t = Instant::now();
        store.set_flush_each_write(false);
        let admin = store
            .create_account(
                NewAccount {
                    email: "vendor@bench.example".into(),
                    password_hash: Some(password::hash("bench-password-1")),
                    company: "MST".into(),
                    first_name: "Vera".into(),
                    last_name: "Vendor".into(),
                },
                &Actor::System,
                now,
            )
            .expect("admin");
        store
            .set_admin(admin.id, true, &Actor::System, now)
            .expect("admin");
        store
            .update_account(admin.id, &Actor::System, now, "verified", |a| {
                a.email_verified = true
            })
            .expect("verified");
        for i in 0..LICENSES {
            store
                .create_license(
                    NewLicense {
                        account: Some(admin.id),
                        license_type: LicenseType::Standard,
                        protection: Protection::SoftDongle,
                        licensee: Licensee {
                            company: format!("Company {i}"),
                            first_name: "Max".into(),
                            last_name: format!("Muster{i}"),
                            city: "Hanau".into(),
                            country: "DE".into(),
                            ..Licensee::default()
                        },
                        license_data: LicenseData {
                            name: format!("Site {i}"),
                            postcode: "63457".into(),
                            city: "Hanau".into(),
                        },
                    },
                    &Actor::System,
                    now,
                )
                .expect("license");
        }
        eprintln!(
            "{LICENSES} licenses created in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        store.flush().expect("flush");
        println!(
            "store on disk: {:.1} MiB for {LICENSES} licenses, {:.2} KiB per license ({:?})",
            store.size_on_disk() as f64 / (1024.0 * 1024.0),
            store.size_on_disk() as f64 / 1024.0 / LICENSES as f64,
            store.engine()
        );

        println!();
        println!("| store search, one thread, {LICENSES} licenses | found | schema 1 (scan), median | index, median | ratio |");
        println!("| --- | --- | --- | --- | --- |");
        for q in ["muster4711", "site 47", "hanau"] {
            let (old, a) = median_of(21, || schema1_search(&store, q).len());
            let (new, b) = median_of(21, || store.search_licenses(q).expect("search").len());
            assert_eq!(a, b, "{q}: same answer");
            println!(
                "| `{q}` | {a} | {} | {} | {:.1}x |",
                ms(old),
                ms(new),
                old.as_secs_f64() / new.as_secs_f64()
            );
        }
        let (page_time, n) = median_of(21, || {
            store
                .licenses_page_with_emails(0, portal::web::admin::PAGE_SIZE)
                .expect("page")
                .len()
        });
        let (count_time, _) = median_of(21, || store.license_count().expect("count"));
        println!(
            "| admin list page at the store ({n} licenses decoded) | {} | license count | {} |",
            ms(page_time),
            ms(count_time)
        );
        println!();
        let mailer = Arc::new(
            Mailer::new(
                &store,
                "PLS <pls@bench.example>",
                None,
                dir.path().join("outbox"),
                clock.clone(),
            )
            .expect("mailer"),
        );
        let cfg = HttpConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            ..HttpConfig::default()
        };
        let key = Arc::new(SigningKeyPair::generate());
        let web = Arc::new(Web::new(store, clock, mailer, cfg, key).expect("web"));
        rt.block_on(serve_and_load(web, LICENSES));
        drop(dir);
    }
}

async fn serve_and_load(web: Arc<Web>, licenses: usize) {
    #[allow(non_snake_case)]
    let LICENSES = licenses;
    {
        let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (addr, _task) = web::serve(web, async move {
            let _ = stopped.await;
        })
        .expect("serve");

        // Log in as the admin: the login form's anonymous cookie and CSRF token.
        let mut c = Conn::open(addr, "").await;
        let (_, head, body) = c.request("GET", "/login", "").await;
        let anon = head
            .lines()
            .find_map(|l| l.strip_prefix("set-cookie: "))
            .and_then(|v| v.split(';').next())
            .expect("anon cookie")
            .to_owned();
        let csrf = body
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .expect("csrf")
            .to_owned();
        let mut c = Conn::open(addr, &anon).await;
        let (status, head, _) = c
            .request(
                "POST",
                "/login",
                &format!("csrf={csrf}&email=vendor%40bench.example&password=bench-password-1"),
            )
            .await;
        assert_eq!(status, 303, "login");
        let session = head
            .lines()
            .filter_map(|l| l.strip_prefix("set-cookie: "))
            .find(|v| v.starts_with("pls_session="))
            .and_then(|v| v.split(';').next())
            .expect("session cookie")
            .to_owned();

        let price = "/api/price?kind=standard&driver_modbus=10000&driver_saia_pcd=6000&pwa_users=5&ge_users=1&country=DE";
        let cases = [
            ("GET /api/price (worked order)", "", price, "7.150,00", 300),
            (
                "GET /admin/licenses (page 1)",
                session.as_str(),
                "/admin/licenses",
                "Site ",
                300,
            ),
            (
                "GET /admin/licenses?q=muster4711",
                session.as_str(),
                "/admin/licenses?q=muster4711",
                "Site 4711",
                300,
            ),
        ];
        println!("| endpoint ({CLIENTS} concurrent clients, {LICENSES} licenses) | requests | p50 | p99 | requests/s |");
        println!("| --- | --- | --- | --- | --- |");
        for (name, cookie, path, expect, per_client) in cases {
            let (p50, p99, rate) = load(addr, cookie, path, expect, per_client).await;
            println!(
                "| {name} | {} | {} | {} | {rate:.0} |",
                per_client * CLIENTS,
                ms(p50),
                ms(p99)
            );
        }
    }
}
