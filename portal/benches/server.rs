//! License server benchmark (`cargo bench -p portal --bench server`).
//!
//! Measures, in one run:
//! - the raw Ed25519 signing rate of a check receipt (the ceiling: every check
//!   signs one receipt);
//! - checks per second over QUIC on loopback with 1, 50 and 500 concurrent
//!   clients, each on its own open connection, against a `pls serve` child process
//!   whose store holds 100,000 licenses;
//! - the server's resident memory (RSS) with those 100,000 licenses, idle and
//!   after the load;
//! - bytes on the wire for one check on an open connection.
//!
//! Prints a Markdown section for BENCHMARKS.md. Medians of 3 runs per setting.
//!
//! `PLS_BENCH_LICENSES` sets another number of licenses; `PLS_BENCH_DISK_ONLY=1`
//! stops after the fill and its disk figures (per table and index);
//! `PLS_BENCH_KEEP_DB=FILE` keeps a copy of the filled store to look into.
//!
//! Redundant servers (issue 15): `PLS_BENCH_DATABASE=postgres` stores the
//! licenses in a throwaway PostgreSQL cluster (`portal::store::throwaway`)
//! instead of SQLite; `PLS_BENCH_INSTANCES=2` (which implies PostgreSQL) starts
//! that many `pls serve` children on the one database, all with the same key
//! and certificate, and spreads the clients over them (client `c` talks to
//! instance `c % instances`). These runs print a one-line table row instead of
//! the SQLite section (no disk figures: those are SQLite's `dbstat`).

use keys::{
    Entitlements, HardwareId, LicenseData, LicenseNumber, LicenseType, Protection, Signed,
    SigningKeyPair, UnixTime,
};
use portal::config::Config;
use portal::domain::{Actor, Licensee, MutationKind, NewLicense};
use portal::identity::Identity;
use portal::quic::client;
use portal::store::{HostActivation, NewMutation};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wire::{Check, CheckReceipt, Nonce, Request, Response, RuntimeState, Seats};

/// Licenses in the store; `PLS_BENCH_LICENSES` sets another count (a quick look
/// at the disk per license needs far fewer).
fn licenses() -> usize {
    std::env::var("PLS_BENCH_LICENSES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}
const RUN: Duration = Duration::from_secs(3);
const RUNS: usize = 3;

fn host(i: usize) -> HardwareId {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&(i as u64).to_be_bytes());
    b[15] = 0x5a;
    HardwareId::from_bytes(b)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn signing_rate(key: &SigningKeyPair) -> f64 {
    let receipt = CheckReceipt {
        license_number: LicenseNumber::from_body(192_190_001).expect("number"),
        hardware_id: host(1),
        nonce: Nonce::random(),
        server_time: UnixTime(1_767_225_600),
        next_check_due: UnixTime(1_767_312_000),
        current_serial: 1,
    };
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(2) {
        for _ in 0..100 {
            std::hint::black_box(Signed::sign(std::hint::black_box(&receipt), key));
        }
        n += 100;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Fills the store: each license created, its initial order paid, and bound to
/// its own host (so every check below is a licensed check that is answered with a
/// signed receipt).
fn fill(config: &Config, key: &SigningKeyPair) -> Vec<LicenseNumber> {
    let store = config.open_store().expect("store");
    store.set_flush_each_write(false);
    let actor = Actor::Admin("bench".into());
    let now = UnixTime(1_767_225_600);
    let count = licenses();
    let mut numbers = Vec::with_capacity(count);
    for i in 0..count {
        let l = store
            .create_license(
                NewLicense {
                    account: None,
                    license_type: LicenseType::Standard,
                    protection: Protection::SoftDongle,
                    licensee: Licensee {
                        company: format!("Customer {i} AG"),
                        first_name: "Anna".into(),
                        last_name: "Muster".into(),
                        street: "Bahnhofstrasse 1".into(),
                        postcode: "3123".into(),
                        city: "Belp".into(),
                        state: "BE".into(),
                        country: "Schweiz".into(),
                        email: format!("site{i}@example.com"),
                        phone: "+41 31 000 00 00".into(),
                    },
                    license_data: LicenseData {
                        name: format!("Site {i}"),
                        postcode: "3123".into(),
                        city: "Belp".into(),
                    },
                },
                &actor,
                now,
            )
            .expect("create");
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
                key,
                &actor,
                now,
            )
            .expect("order");
        store
            .activate_mutation(&l.number, m.number, key, &actor, now)
            .expect("paid");
        let h = host(i);
        let req = HostActivation {
            license: &l.number,
            token: l.token.expose(),
            hardware_id: &h,
            daemon_version: "bench",
            from: "bench".into(),
        };
        store
            .activate_host(&req, key, now)
            .expect("store")
            .expect("activated");
        numbers.push(l.number);
    }
    store.flush().expect("flush");
    numbers
}

fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Starts `pls serve` on `data` (its key and certificate there) with QUIC on
/// `port`, on the configured database, and waits until it answers HTTP.
fn start_server(data: &Path, port: u16, database_url: Option<&str>) -> Child {
    let http = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free TCP port");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pls"));
    cmd.arg("--data-dir")
        .arg(data)
        .arg("serve")
        .env("PLS_QUIC_LISTEN", format!("127.0.0.1:{port}"))
        .env("PLS_HTTP_LISTEN", http.to_string())
        .env("PLS_QUIC_MAX_CONNECTIONS_PER_SOURCE", "2000")
        .env("PLS_METRICS_LISTEN", "off")
        .env("PLS_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    if let Some(url) = database_url {
        cmd.env("PLS_DATABASE_URL", url);
    }
    let child = cmd.spawn().expect("spawn pls serve");
    let start = Instant::now();
    while std::net::TcpStream::connect(http).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

fn check_request(number: &LicenseNumber, i: usize) -> Request {
    Request::Check(Check {
        license_number: number.clone(),
        hardware_id: host(i),
        grant_serial: Some(1),
        runtime: RuntimeState::Running,
        seats: Seats { ge: 1, pwa: 1 },
        daemon_version: "promos-licd/0.1.0".into(),
        nonce: Nonce::random(),
    })
}

/// `clients` connections, each sending checks back to back for [`RUN`];
/// connection `c` goes to `addrs[c % addrs.len()]`.
async fn throughput(
    addrs: &[std::net::SocketAddr],
    fingerprint: &str,
    numbers: &Arc<Vec<LicenseNumber>>,
    clients: usize,
) -> f64 {
    // One client endpoint (UDP socket) per 50 connections, like many hosts would have.
    let endpoints: Vec<quinn::Endpoint> = (0..clients.div_ceil(50))
        .map(|_| client::endpoint(fingerprint).expect("endpoint"))
        .collect();
    let mut conns = vec![];
    for c in 0..clients {
        conns.push(
            client::connect(&endpoints[c / 50], addrs[c % addrs.len()])
                .await
                .expect("connect"),
        );
    }
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let counting = Arc::new(AtomicBool::new(false));
    let mut tasks = vec![];
    for (c, conn) in conns.into_iter().enumerate() {
        let (done, stop, counting, numbers) = (
            done.clone(),
            stop.clone(),
            counting.clone(),
            numbers.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut i = c;
            while !stop.load(Ordering::Relaxed) {
                let idx = i % numbers.len();
                let r = client::request(&conn, &check_request(&numbers[idx], idx)).await;
                match r {
                    Ok(Response::Checked { .. }) => {
                        if counting.load(Ordering::Relaxed) {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    other => panic!("unexpected answer {other:?}"),
                }
                i += clients;
            }
            conn.close(0u32.into(), b"done");
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await; // warm-up
    counting.store(true, Ordering::SeqCst);
    let start = Instant::now();
    tokio::time::sleep(RUN).await;
    counting.store(false, Ordering::SeqCst);
    let rate = done.load(Ordering::SeqCst) as f64 / start.elapsed().as_secs_f64();
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        let _ = t.await;
    }
    rate
}

async fn wire_bytes(
    addr: std::net::SocketAddr,
    fingerprint: &str,
    number: &LicenseNumber,
) -> (u64, u64, u64, u64, usize, usize) {
    let ep = client::endpoint(fingerprint).expect("endpoint");
    let conn = client::connect(&ep, addr).await.expect("connect");
    // Warm the connection up (handshake done, first stream open).
    client::request(&conn, &check_request(number, 0))
        .await
        .expect("warm");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = conn.stats();
    let req = check_request(number, 0);
    let request_frame = wire::codec::encode_frame(&req).expect("frame").len();
    let answer = client::raw(&conn, &wire::codec::encode_frame(&req).expect("frame"))
        .await
        .expect("check");
    // Let the ACKs for the answer go out too.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = conn.stats();
    (
        after.udp_tx.bytes - before.udp_tx.bytes,
        after.udp_rx.bytes - before.udp_rx.bytes,
        after.udp_tx.datagrams - before.udp_tx.datagrams,
        after.udp_rx.datagrams - before.udp_rx.datagrams,
        request_frame,
        answer.len(),
    )
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for the list of benchmarks.
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let instances: usize = std::env::var("PLS_BENCH_INSTANCES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    let postgres = instances > 1
        || std::env::var("PLS_BENCH_DATABASE").is_ok_and(|v| v.eq_ignore_ascii_case("postgres"));
    // Dropped (stopped) at the end of `main`.
    let cluster = postgres.then(|| {
        portal::store::throwaway::Cluster::start().expect("the throwaway PostgreSQL cluster")
    });
    let mut config = Config {
        data_dir: dir.path().join("data"),
        ..Config::default()
    };
    config.database.url = cluster
        .as_ref()
        .map(|c| c.create_database().expect("a database in the cluster"));
    let identity = Identity::load_or_create(&config).expect("identity");
    let fingerprint = identity.cert_fingerprint();

    let sign_before = signing_rate(&identity.key);
    let count = licenses();
    eprintln!("signing: {sign_before:.0}/s; filling {count} licenses...");
    let fill_start = Instant::now();
    let numbers = Arc::new(fill(&config, &identity.key));
    let fill_secs = fill_start.elapsed().as_secs_f64();
    if postgres {
        eprintln!("filled in {fill_secs:.1}s");
        redundant(&config, &identity, &numbers, instances, sign_before);
        return;
    }
    // The database file and its write-ahead log.
    let disk = db_size(&config.db_path());
    eprintln!(
        "filled in {fill_secs:.1}s, {:.1} MiB on disk ({:.2} KiB per license)",
        disk as f64 / 1048576.0,
        disk as f64 / 1024.0 / count as f64
    );
    let by_table = disk_by_table(&config.db_path());
    for (name, bytes) in by_table.iter().filter(|(_, b)| *b >= count as u64) {
        eprintln!(
            "  {name}: {:.0} B per license",
            *bytes as f64 / count as f64
        );
    }

    // A copy of the filled store to look into (`sqlite3`), if asked for.
    if let Ok(keep) = std::env::var("PLS_BENCH_KEEP_DB") {
        std::fs::copy(config.db_path(), &keep).expect("copy the filled store");
        eprintln!("filled store copied to {keep}");
    }
    // Only the fill and its disk figures (a quick look at the disk per license).
    if std::env::var_os("PLS_BENCH_DISK_ONLY").is_some() {
        return;
    }

    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .expect("probe")
        .local_addr()
        .expect("addr")
        .port();
    let mut server = start_server(&config.data_dir, port, None);
    std::thread::sleep(Duration::from_secs(1));
    let (idle_rss, _) = rss_kib(server.id());
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut rows = vec![];
    for clients in [1usize, 50, 500] {
        let rates: Vec<f64> = (0..RUNS)
            .map(|_| rt.block_on(throughput(&[addr], &fingerprint, &numbers, clients)))
            .collect();
        eprintln!("{clients} clients: {rates:?}");
        rows.push((clients, median(rates)));
    }
    let (loaded_rss, peak_rss) = rss_kib(server.id());
    let bytes = rt.block_on(wire_bytes(addr, &fingerprint, &numbers[0]));
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(server.id().to_string())
        .status();
    let _ = server.wait();
    let sign_after = signing_rate(&identity.key);
    let sign = median(vec![sign_before, sign_after]);

    println!("## License server (issue 3)\n");
    println!(
        "Machine: {} cores (shared with other builds while measuring). `cargo bench -p portal --bench server`; \
         server = `pls serve` child process (release), clients in the bench process on the same host, \
         QUIC over loopback, one open connection per client, checks back to back. Medians of {RUNS} runs of {}s.\n",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        RUN.as_secs()
    );
    println!("| measurement | value |\n| --- | --- |");
    println!("| raw signing rate (one check receipt: JSON + Ed25519, one core) | {sign:.0} /s |");
    for (clients, rate) in &rows {
        println!("| checks/s over QUIC, {clients} concurrent client(s) | {rate:.0} /s ({:.1} % of one core's signing rate) |", rate / sign * 100.0);
    }
    println!(
        "| server RSS, {count} licenses stored, idle after start | {:.1} MiB |",
        idle_rss as f64 / 1024.0
    );
    println!(
        "| server RSS after the load runs (peak) | {:.1} MiB ({:.1} MiB) |",
        loaded_rss as f64 / 1024.0,
        peak_rss as f64 / 1024.0
    );
    println!("| database on disk, {count} licenses (each with mutation, grant, audit entries) | {:.1} MiB |", disk as f64 / 1048576.0);
    let per_table: Vec<String> = by_table
        .iter()
        .filter(|(_, bytes)| *bytes >= count as u64)
        .map(|(name, bytes)| format!("{name} {:.0} B", *bytes as f64 / count as f64))
        .collect();
    println!(
        "| of which per license, by table and index | {} |",
        per_table.join(", ")
    );
    println!("| bulk load of {count} licenses (create, order, pay, bind + sign grant) | {fill_secs:.1} s |");
    println!(
        "| one check on an open connection: UDP bytes client->server / server->client | {} B in {} datagram(s) / {} B in {} datagram(s) |",
        bytes.0, bytes.2, bytes.1, bytes.3
    );
    println!(
        "| of which frames (request / response incl. 4-byte length) | {} B / {} B |",
        bytes.4, bytes.5
    );
}

/// The machine's busy and total CPU time so far (`/proc/stat`, clock ticks):
/// the load of everything on it, other builds included.
fn cpu_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// CPU time (user + system, clock ticks) of process `pid` so far.
fn proc_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name in parentheses; utime and stime are
    // fields 14 and 15 of the line.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    f.get(10).copied().unwrap_or(0) + f.get(11).copied().unwrap_or(0)
}

/// Issue 15: `instances` `pls serve` children on the one PostgreSQL database of
/// `config`, the clients spread over them; prints one table row per client
/// count and the machine's load during the runs.
fn redundant(
    config: &Config,
    identity: &Identity,
    numbers: &Arc<Vec<LicenseNumber>>,
    instances: usize,
    sign_before: f64,
) {
    let url = config.database.url.as_deref().expect("PostgreSQL");
    let fingerprint = identity.cert_fingerprint();
    let mut servers = vec![];
    let mut addrs = vec![];
    for i in 0..instances {
        // Every instance signs with the same key and shows the same
        // certificate (README, "Operating several servers").
        let data = config.data_dir.with_file_name(format!("data-{i}"));
        std::fs::create_dir_all(&data).expect("instance data dir");
        for f in [
            "signing.key",
            "signing.pub",
            "quic-cert.der",
            "quic-key.der",
        ] {
            std::fs::copy(config.data_dir.join(f), data.join(f)).expect("key and certificate");
        }
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .expect("probe")
            .local_addr()
            .expect("addr")
            .port();
        servers.push(start_server(&data, port, Some(url)));
        addrs.push(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    }
    std::thread::sleep(Duration::from_secs(1));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let (busy0, total0) = cpu_ticks();
    let ours0: u64 =
        servers.iter().map(|s| proc_ticks(s.id())).sum::<u64>() + proc_ticks(std::process::id());
    let mut rows = vec![];
    for clients in [1usize, 50, 500] {
        let rates: Vec<f64> = (0..RUNS)
            .map(|_| rt.block_on(throughput(&addrs, &fingerprint, numbers, clients)))
            .collect();
        eprintln!("{clients} clients: {rates:?}");
        rows.push((clients, median(rates)));
    }
    let (busy1, total1) = cpu_ticks();
    let ours1: u64 =
        servers.iter().map(|s| proc_ticks(s.id())).sum::<u64>() + proc_ticks(std::process::id());
    let load_after = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    for s in &mut servers {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(s.id().to_string())
            .status();
        let _ = s.wait();
    }
    let sign = median(vec![sign_before, signing_rate(&identity.key)]);
    let elapsed = (total1 - total0).max(1) as f64;
    let busy = (busy1 - busy0) as f64 / elapsed * 100.0;
    // The bench's own share (servers + clients; PostgreSQL not counted) of
    // all CPU time, in percent of the machine.
    let ours = (ours1 - ours0) as f64 / elapsed * 100.0;
    let cell = |rate: f64| format!("{rate:.0} /s ({:.1} %)", rate / sign * 100.0);
    println!(
        "| instances | licenses | raw signing rate | checks/s, 1 client | checks/s, 50 clients | checks/s, 500 clients | machine CPU busy during the runs (of it this bench's servers + clients) | load average before / after |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    println!(
        "| {instances} (PostgreSQL) | {} | {sign:.0} /s | {} | {} | {} | {busy:.0} % ({ours:.0} %) | {} / {} |",
        numbers.len(),
        cell(rows[0].1),
        cell(rows[1].1),
        cell(rows[2].1),
        load_before.split_whitespace().next().unwrap_or("?"),
        load_after.split_whitespace().next().unwrap_or("?"),
    );
}

fn db_size(db: &Path) -> u64 {
    ["", "-wal"]
        .iter()
        .filter_map(|ext| {
            let mut p = db.as_os_str().to_owned();
            p.push(ext);
            std::fs::metadata(p).ok()
        })
        .map(|m| m.len())
        .sum()
}

/// Bytes per table and index of the SQLite file (its `dbstat` table), largest
/// first: where the disk per license goes.
fn disk_by_table(db: &Path) -> Vec<(String, u64)> {
    let c = rusqlite::Connection::open(db).expect("open the database");
    let mut stmt = c
        .prepare("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC")
        .expect("dbstat");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))
        .expect("dbstat rows")
        .map(|r| r.expect("row"))
        .collect()
}
