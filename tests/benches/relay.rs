//! Peer relay benchmark: time from new grants on the server to every daemon of
//! a site holding its own, for N = 3, 10 and 50 daemons, all in this process on
//! loopback (a real `pls` and real daemons with their QUIC peer endpoints).
//!
//! The site: daemon 0 reaches the server; daemons 1..N have a server address
//! nobody answers on (their direct attempt times out after 100 ms, then they go
//! through daemon 0, their only peer). A round: the server upgrades every
//! license of the site (N new grants), every daemon checks at once (as their
//! daily timers would), and the clock runs until each holds its new grant.
//!
//! A second kind of round (issue 16): new grants again, but only daemon 0
//! checks (its daily check); the others hear `ServerReached` from it and check
//! through it at once. The time until every daemon holds its new grant.
//!
//! Run: `cargo bench -p e2e --bench relay` (prints tables for BENCHMARKS.md).
//! `RELAY_BENCH_SIZES=50` (comma-separated) and `RELAY_BENCH_ROUNDS=7` choose
//! the site sizes and the rounds per kind; `RELAY_BENCH_GAP_MS` the pause
//! before each round (default 1500; above 10000 no peer connection is
//! kept from the round before, as on a site whose checks are a day
//! apart: `daemon`'s `LINK_KEPT`); `RELAY_BENCH_HOSTS=threads` gives
//! each daemon a runtime thread of its own (see [`own_threads`]). Each round also prints the
//! process's CPU time (user + system, all threads) against its wall time: near
//! 2x wall on this 2-core machine means work to cut, far below means waiting.

use daemon::config::{CertPin, DongleBackend, PeerEntry};
use daemon::peer::PeerIdentity;
use daemon::socket::SocketClient;
use keys::{
    Entitlements, LicenseData, LicenseNumber, LicenseType, Protection, SimClock, TrustedKeys,
    UnixTime,
};
use portal::admin::{AdminEnvelope, AdminRequest};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

const T0: UnixTime = UnixTime(1_800_000_000);
const ROUNDS: usize = 7;

struct Site {
    admin: portal::admin::AdminContext,
    licenses: Vec<LicenseNumber>,
    sockets: Vec<PathBuf>,
    stops: Vec<tokio::sync::oneshot::Sender<()>>,
}

fn admin(ctx: &portal::admin::AdminContext, request: AdminRequest) -> Value {
    portal::admin::execute(
        ctx,
        AdminEnvelope {
            idempotency_key: None,
            operator: "bench".into(),
            request,
        },
    )
    .unwrap_or_else(|e| panic!("admin: {e}"))
    .data
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

async fn call(socket: &Path, request: Value) -> Value {
    let mut c = SocketClient::connect(socket).await.expect("connect");
    c.call(&request).await.expect("call")
}

async fn site(dir: &Path, n: usize) -> Site {
    let clock = SimClock::at(T0);
    let mut config = portal::config::Config {
        data_dir: dir.join("pls"),
        ..Default::default()
    };
    config.quic.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.http.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.metrics.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.quic.activations_per_source_per_minute = 100_000;
    let server = portal::Server::bind(config, Arc::new(clock.clone()))
        .await
        .expect("server");
    let addr = server.quic_addr();
    let public = server.identity().public_key();
    let fp = server.identity().cert_fingerprint();
    let ctx = server.admin_context();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = server
            .run(async move {
                let _ = rx.await;
            })
            .await;
    });
    let mut pin = [0u8; 32];
    for (i, b) in pin.iter_mut().enumerate() {
        *b = u8::from_str_radix(&fp[2 * i..2 * i + 2], 16).expect("hex");
    }

    let ids: Vec<PeerIdentity> = (0..n)
        .map(|i| PeerIdentity::load_or_create(&dir.join(format!("d{i}"))).expect("identity"))
        .collect();
    let ports: Vec<u16> = (0..n).map(|_| free_udp_port()).collect();
    let relay_port = ports[0];
    let mut site = Site {
        admin: ctx,
        licenses: Vec::new(),
        sockets: Vec::new(),
        stops: vec![tx],
    };
    for i in 0..n {
        let data = dir.join(format!("d{i}"));
        let mut c = daemon::Config::with_defaults(&data);
        c.server = if i == 0 {
            addr.to_string()
        } else {
            // Nobody answers here: these hosts have no uplink.
            format!("127.0.0.1:{}", free_udp_port())
        };
        c.server_name = Some("localhost".into());
        c.cert_pin = Some(CertPin(pin));
        c.trusted_keys = TrustedKeys::with([public]);
        c.socket_path = data.join("licd.sock");
        c.tick = Duration::from_secs(3600);
        c.check_attempts = 1;
        // The relay keeps the default 15 s per attempt; the hosts without an
        // uplink give up their direct attempt after 100 ms, so the table shows
        // the relay path and not their timeout.
        if i > 0 {
            c.attempt_timeout = Duration::from_millis(100);
        }
        c.dongle = DongleBackend::Simulated {
            file: data.join("NO-DONGLE"),
        };
        c.test_hardware_id = Some(keys::HardwareId::from_bytes([(i + 1) as u8; 16]));
        c.peer_listen = Some(SocketAddr::from(([127, 0, 0, 1], ports[i])));
        if i == 0 {
            c.peers = ids[1..]
                .iter()
                .zip(&ports[1..])
                .map(|(p, port)| PeerEntry {
                    address: format!("127.0.0.1:{port}"),
                    public_key: p.public(),
                })
                .collect();
        } else {
            c.peers = vec![PeerEntry {
                address: format!("127.0.0.1:{relay_port}"),
                public_key: ids[0].public(),
            }];
        }
        let (stx, srx) = tokio::sync::oneshot::channel::<()>();
        let run = daemon::run(c.clone(), Arc::new(clock.clone()), async move {
            let _ = srx.await;
        });
        if own_threads() {
            // As `promos-licd run` does on each host: a runtime of one thread.
            std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("daemon runtime")
                    .block_on(run)
            });
        } else {
            tokio::spawn(run);
        }
        site.stops.push(stx);
        // A daemon that failed to start (a peer port taken since it was
        // picked) would leave this loop waiting for ever.
        let waiting = Instant::now();
        while SocketClient::connect(&c.socket_path).await.is_err() {
            assert!(
                waiting.elapsed() < Duration::from_secs(60),
                "daemon {i} did not open its socket within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let data = admin(
            &site.admin,
            AdminRequest::CreateLicense {
                license_type: LicenseType::Standard,
                protection: Protection::SoftDongle,
                entitlements: Entitlements::standard_base(),
                licensee: serde_json::from_value(json!({
                    "company": "Bench AG", "first_name": "B", "last_name": "B",
                    "street": "S 1", "postcode": "3000", "city": "Bern", "state": "BE",
                    "country": "CH", "email": "b@bench.example", "phone": "+41 31 000 00 00"
                }))
                .expect("licensee"),
                license_data: LicenseData {
                    name: "Bench AG".into(),
                    postcode: "3000".into(),
                    city: "Bern".into(),
                },
                account_email: None,
                paid: true,
            },
        );
        let number: LicenseNumber =
            serde_json::from_value(data["license"]["number"].clone()).expect("number");
        let token = data["token"].as_str().expect("token").to_owned();
        let v = call(
            &c.socket_path,
            json!({"cmd": "activate", "license_number": number.as_str(), "token": token, "server": addr.to_string()}),
        )
        .await;
        assert_eq!(v["ok"], json!(true), "activation: {v}");
        site.licenses.push(number);
        site.sockets.push(c.socket_path.clone());
    }
    site
}

/// `RELAY_BENCH_HOSTS=threads`: each daemon runs on a one-thread runtime of
/// its own, as `promos-licd run` does on its host, so a daemon waiting for its
/// disk (the state is fsynced before an answer) holds up only itself. The
/// default (`shared`) runs all daemons and the server on the bench's runtime
/// of 2 workers, as the figures in BENCHMARKS.md before issue 16 were taken.
fn own_threads() -> bool {
    std::env::var("RELAY_BENCH_HOSTS").is_ok_and(|v| v == "threads")
}

/// One round: new grants for every license, every daemon checks (or, with
/// `relay_only`, only daemon 0); the time until all hold their new grant.
async fn round(site: &Site, relay_only: bool) -> Duration {
    let mut want = Vec::new();
    for n in &site.licenses {
        let mut adds = Entitlements::none();
        adds.pwa_users = 1;
        admin(
            &site.admin,
            AdminRequest::Upgrade {
                number: n.clone(),
                adds,
                paid: true,
            },
        );
        let show = admin(&site.admin, AdminRequest::Show { number: n.clone() });
        want.push(
            show["license"]["current_grant"]
                .as_u64()
                .expect("current grant"),
        );
    }
    let start = Instant::now();
    let mut checks = tokio::task::JoinSet::new();
    let checking = if relay_only { 1 } else { site.sockets.len() };
    for s in &site.sockets[..checking] {
        let s = s.clone();
        checks.spawn(async move { call(&s, json!({"cmd": "check_now"})).await });
    }
    while let Some(r) = checks.join_next().await {
        let _ = r.expect("check");
    }
    // A daemon that holds its new grant keeps it (serials only grow), so
    // each poll asks only from the first daemon still waiting on: polling
    // up to 50 sockets every 2 ms (from daemon 0 each time) took CPU from the
    // daemons being measured.
    let mut holding = 0;
    loop {
        while holding < site.sockets.len() {
            let v = call(&site.sockets[holding], json!({"cmd": "status"})).await;
            if v["status"]["grant_serial"].as_u64() != Some(want[holding]) {
                break;
            }
            holding += 1;
        }
        if holding == site.sockets.len() {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "grants never arrived"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// User + system CPU time of this process (all threads) so far, from
/// `/proc/self/stat` (fields 14 and 15, in clock ticks of 1/100 s: USER_HZ is
/// 100 on Linux whatever the kernel's HZ).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The command name (field 2) may contain spaces: count after its ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|x| x.parse().ok())
        .collect();
    Duration::from_millis(f.iter().sum::<u64>() * 10)
}

/// One round, timed, with the CPU time it took (printed).
async fn timed_round(site: &Site, relay_only: bool) -> Duration {
    let cpu = cpu_time();
    let wall = round(site, relay_only).await;
    let used = cpu_time().saturating_sub(cpu);
    println!(
        "  round ({}): wall {:.0} ms, cpu {:.0} ms ({:.2} cores)",
        if relay_only {
            "relay checks"
        } else {
            "all check"
        },
        wall.as_secs_f64() * 1000.0,
        used.as_secs_f64() * 1000.0,
        used.as_secs_f64() / wall.as_secs_f64().max(1e-9)
    );
    wall
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs one quick round.
    let quick = !std::env::args().any(|a| a == "--bench");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let sizes: Vec<usize> = match std::env::var("RELAY_BENCH_SIZES") {
        Ok(v) => v
            .split(',')
            .map(|n| n.trim().parse().expect("RELAY_BENCH_SIZES: numbers"))
            .collect(),
        Err(_) if quick => vec![3],
        Err(_) => vec![3, 10, 50],
    };
    let rounds = match std::env::var("RELAY_BENCH_ROUNDS") {
        Ok(v) => v.trim().parse().expect("RELAY_BENCH_ROUNDS: a number"),
        Err(_) if quick => 1,
        Err(_) => ROUNDS,
    };
    let mut rows = Vec::new();
    let mut pushed_rows = Vec::new();
    for &n in &sizes {
        let dir = tempfile::tempdir().expect("tempdir");
        let times = rt.block_on(async {
            let site = site(dir.path(), n).await;
            // Rounds 1.5 s apart: a day's checks in a few seconds would run
            // into the peers' rate limit (30 requests, then 1 a second; a
            // round costs a peer up to 4), and a daemon checks through a
            // reporting peer at most once a second.
            let gap = Duration::from_millis(match std::env::var("RELAY_BENCH_GAP_MS") {
                Ok(v) => v.trim().parse().expect("RELAY_BENCH_GAP_MS: a number"),
                Err(_) => 1500,
            });
            let mut times = Vec::new();
            for _ in 0..rounds {
                tokio::time::sleep(gap).await;
                times.push(timed_round(&site, false).await);
            }
            let mut pushed = Vec::new();
            for _ in 0..rounds {
                tokio::time::sleep(gap).await;
                pushed.push(timed_round(&site, true).await);
            }
            for s in site.stops {
                let _ = s.send(());
            }
            (times, pushed)
        });
        let (times, pushed) = times;
        let m = median(times.clone());
        let p = median(pushed.clone());
        println!("N = {n}: median {m:?} over {rounds} rounds ({times:?})");
        println!("N = {n}, only the relay checks: median {p:?} ({pushed:?})");
        rows.push((n, m));
        pushed_rows.push((n, p, pushed));
    }
    let base = rows[0].1.as_secs_f64();
    println!("\n| daemons | median, new grants on the server -> all holding theirs | ratio to N = {} | per daemon |", rows[0].0);
    println!("| --- | --- | --- | --- |");
    for (n, m) in rows {
        println!(
            "| {n} | {:.0} ms | {:.2} | {:.1} ms |",
            m.as_secs_f64() * 1000.0,
            m.as_secs_f64() / base,
            m.as_secs_f64() * 1000.0 / n as f64
        );
    }
    println!(
        "\n| daemons | median, only the relay checks -> all holding their new grant | min..max |"
    );
    println!("| --- | --- | --- |");
    for (n, m, all) in pushed_rows {
        let (lo, hi) = (
            all.iter().min().copied().unwrap_or_default(),
            all.iter().max().copied().unwrap_or_default(),
        );
        println!(
            "| {n} | {:.0} ms | {:.0}..{:.0} ms |",
            m.as_secs_f64() * 1000.0,
            lo.as_secs_f64() * 1000.0,
            hi.as_secs_f64() * 1000.0
        );
    }
}
