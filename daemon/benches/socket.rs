//! Measures the daemon as a process: time from start to socket ready, idle RSS,
//! and the local socket's `status` round trip (p50/p99, requests per second)
//! with 1 and 32 clients. Run with `cargo bench -p daemon --bench socket`;
//! prints a Markdown table for BENCHMARKS.md.
//!
//! The daemon runs the real binary (`promos-licd run`) with a hard-dongle
//! license and the SIMULATED dongle, so `status` carries a full license.

use daemon::socket::SocketClient;
use keys::grant::GRANT_FORMAT;
use keys::{
    Binding, Entitlements, LicenseData, LicenseGrant, LicenseNumber, LicenseType, Protection,
    Signed, SigningKeyPair, TrustedKeys, UnixTime,
};
use serde_json::json;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ROUNDS_ONE: usize = 20_000;
const CLIENTS: usize = 32;
const ROUNDS_EACH: usize = 1_000;
const STARTS: usize = 5;

fn setup(dir: &Path) -> String {
    let k = SigningKeyPair::from_seed(&[11u8; 32]);
    let g = LicenseGrant {
        format: GRANT_FORMAT,
        license_number: LicenseNumber::from_body(192_190_001).expect("n"),
        license_type: LicenseType::Standard,
        protection: Protection::HardDongle,
        license_data: LicenseData {
            name: "Bench AG".into(),
            postcode: "3000".into(),
            city: "Bern".into(),
        },
        binding: Binding::DongleSerial("DG-0001".parse().expect("serial")),
        entitlements: Entitlements::engineering(),
        issued_at: UnixTime(1_800_000_000),
        valid_until: None,
        serial: 1,
        key_id: k.key_id(),
    };
    let v = TrustedKeys::with([k.public()])
        .verify(&Signed::sign(&g, &k))
        .expect("verify");
    std::fs::create_dir_all(dir.join("project/lic")).expect("lic");
    std::fs::write(dir.join("project/lic/promos.json"), keys::file::render(&v)).expect("license");
    std::fs::write(dir.join("SIMULATED-DONGLE"), "DG-0001").expect("dongle");
    k.public().to_string()
}

fn spawn(dir: &Path, public: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_promos-licd"))
        .arg("run")
        .env_clear()
        .env("PROMOS_LICD_DATA_DIR", dir.join("data"))
        .env("PROMOS_LICD_SOCKET", dir.join("licd.sock"))
        .env("PROMOS_LICD_PROJECT_DIR", dir.join("project"))
        .env("PROMOS_LICD_TRUSTED_KEYS", public)
        .env("PROMOS_LICD_DONGLE_BACKEND", "simulated")
        .env(
            "PROMOS_LICD_SIMULATED_DONGLE_FILE",
            dir.join("SIMULATED-DONGLE"),
        )
        .env(
            "PROMOS_LICD_TEST_HARDWARE_ID",
            "0123456789abcdef0123456789abcdef",
        )
        .env("PROMOS_LICD_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn promos-licd")
}

fn wait_ready(sock: &Path) -> Duration {
    let t = Instant::now();
    while std::os::unix::net::UnixStream::connect(sock).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "daemon never became ready"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
    t.elapsed()
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

async fn rounds(sock: &Path, n: usize) -> Vec<Duration> {
    let mut c = SocketClient::connect(sock).await.expect("connect");
    let req = json!({"cmd": "status"});
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let v = c.call(&req).await.expect("status");
        lat.push(t.elapsed());
        assert_eq!(v["ok"], json!(true));
    }
    lat
}

fn main() {
    // `cargo test --benches` runs this with --bench absent; keep it quick then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let dir = tempfile::tempdir().expect("tempdir");
    let public = setup(dir.path());
    let sock = dir.path().join("licd.sock");

    let mut starts = Vec::new();
    for _ in 0..if quick { 1 } else { STARTS } {
        let child = spawn(dir.path(), &public);
        starts.push(wait_ready(&sock));
        stop(child);
        while sock.exists() {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    starts.sort();

    let child = spawn(dir.path(), &public);
    wait_ready(&sock);
    std::thread::sleep(Duration::from_secs(if quick { 0 } else { 3 }));
    let idle_rss = rss_kib(child.id());

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (one, one_secs, many, many_secs) = rt.block_on(async {
        let n1 = if quick { 100 } else { ROUNDS_ONE };
        let t = Instant::now();
        let mut one = rounds(&sock, n1).await;
        let one_secs = t.elapsed().as_secs_f64();
        let each = if quick { 10 } else { ROUNDS_EACH };
        let t = Instant::now();
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let sock = sock.clone();
                tokio::spawn(async move { rounds(&sock, each).await })
            })
            .collect();
        let mut many = Vec::new();
        for task in tasks {
            many.extend(task.await.expect("join"));
        }
        let many_secs = t.elapsed().as_secs_f64();
        one.sort();
        many.sort();
        (one, one_secs, many, many_secs)
    });
    let busy_rss = rss_kib(child.id());
    stop(child);

    let ms = |d: Duration| format!("{:.3} ms", d.as_secs_f64() * 1e3);
    println!("| measurement | result |");
    println!("| --- | --- |");
    println!(
        "| start to socket ready (median of {}, min..max) | {} ({}..{}) |",
        starts.len(),
        ms(pct(&starts, 0.5)),
        ms(starts[0]),
        ms(starts[starts.len() - 1])
    );
    println!("| idle RSS after start | {} KiB |", idle_rss);
    println!("| RSS after the socket runs below | {} KiB |", busy_rss);
    println!(
        "| `status`, 1 client, {} sequential round trips | p50 {}, p99 {}, {:.0} req/s |",
        one.len(),
        ms(pct(&one, 0.5)),
        ms(pct(&one, 0.99)),
        one.len() as f64 / one_secs
    );
    println!(
        "| `status`, {CLIENTS} clients x {} round trips | p50 {}, p99 {}, {:.0} req/s |",
        many.len() / CLIENTS,
        ms(pct(&many, 0.5)),
        ms(pct(&many, 0.99)),
        many.len() as f64 / many_secs
    );
}
