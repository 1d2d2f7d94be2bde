//! Measures the daemon as a process: time from start to socket ready, idle RSS,
//! and the local socket's `status` round trip (p50/p99, requests per second)
//! with 1 and 32 clients. Run with `cargo bench -p daemon --bench socket`;
//! prints a Markdown table for BENCHMARKS.md.
//!
//! The daemon runs the real binary (`promos-licd run`) with a hard-dongle
//! license and the SIMULATED dongle, so `status` carries a full license.
//!
//! The ceiling, in the same run and with the same client: a bare echo server
//! (this bench re-started as a separate process with `--echo-server`, a
//! tokio runtime like the daemon's) that answers every line with the
//! daemon's own `status` answer, byte for byte, without looking at it. The
//! ratios to it say what the daemon adds to moving a line of that size
//! through a Unix socket.

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
/// Alternations of daemon and echo; rates are their medians, latencies pooled.
const ROUNDS: usize = 5;

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

/// The daemon binary: this build's, or `PROMOS_LICD_BENCH_BIN` (to measure
/// an older build with the same client and ceiling).
fn binary() -> std::path::PathBuf {
    std::env::var_os("PROMOS_LICD_BENCH_BIN")
        .map(Into::into)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_promos-licd").into())
}

fn spawn(dir: &Path, public: &str) -> Child {
    Command::new(binary())
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

/// The echo server: answers each line on `sock` with `answer`, as it is.
fn echo_server(sock: &Path, answer: Vec<u8>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async move {
        let listener = tokio::net::UnixListener::bind(sock).expect("bind echo socket");
        let answer = std::sync::Arc::new(answer);
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let answer = answer.clone();
            tokio::spawn(async move {
                let (r, mut w) = stream.into_split();
                let mut r = tokio::io::BufReader::new(r);
                let mut line = Vec::new();
                loop {
                    line.clear();
                    match r.read_until(b'\n', &mut line).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    if w.write_all(&answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
}

/// Latencies and requests per second of `clients` clients doing `each`
/// `status` round trips at once.
async fn load(sock: &Path, clients: usize, each: usize) -> (Vec<Duration>, f64) {
    let t = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let sock = sock.to_path_buf();
            tokio::spawn(async move { rounds(&sock, each).await })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("join"));
    }
    let rate = all.len() as f64 / t.elapsed().as_secs_f64();
    all.sort();
    (all, rate)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--echo-server") {
        let sock = Path::new(&args[i + 1]);
        let answer = std::fs::read(&args[i + 2]).expect("answer file");
        echo_server(sock, answer);
        return;
    }
    // `cargo test --benches` runs this with --bench absent; keep it quick then.
    let quick = !args.iter().any(|a| a == "--bench");
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
    // The daemon's status answer, for the echo server to send back.
    let answer = rt.block_on(async {
        let mut c = SocketClient::connect(&sock).await.expect("connect");
        c.send_line(r#"{"cmd":"status"}"#).await.expect("send");
        let mut line = c.next_line().await.expect("status").into_bytes();
        line.push(b'\n');
        line
    });
    let answer_file = dir.path().join("answer.json");
    std::fs::write(&answer_file, &answer).expect("answer file");
    let echo_sock = dir.path().join("echo.sock");
    let mut echo = Command::new(std::env::current_exe().expect("bench binary"))
        .arg("--echo-server")
        .arg(&echo_sock)
        .arg(&answer_file)
        .spawn()
        .expect("spawn echo server");
    wait_ready(&echo_sock);

    let n1 = if quick { 100 } else { ROUNDS_ONE };
    let each = if quick { 10 } else { ROUNDS_EACH };
    // Daemon and echo alternate, ROUNDS times each, so both see the same
    // machine (it is shared: single runs vary by 2x).
    let mut runs: Vec<[(Vec<Duration>, f64); 2]> = Vec::new();
    for _ in 0..if quick { 1 } else { ROUNDS } {
        for target in [&sock, &echo_sock] {
            let r = rt
                .block_on(async { [load(target, 1, n1).await, load(target, CLIENTS, each).await] });
            runs.push(r);
        }
    }
    let busy_rss = rss_kib(child.id());
    stop(child);
    let _ = echo.kill();
    let _ = echo.wait();
    let merge = |pick: usize, which: usize| {
        let mut lat = Vec::new();
        let mut rates = Vec::new();
        for r in runs.iter().skip(pick).step_by(2) {
            lat.extend(r[which].0.iter().copied());
            rates.push(r[which].1);
        }
        lat.sort();
        rates.sort_by(f64::total_cmp);
        (lat, rates[rates.len() / 2])
    };
    let (one, one_rate) = merge(0, 0);
    let (many, many_rate) = merge(0, 1);
    let (echo_one, echo_one_rate) = merge(1, 0);
    let (echo_many, echo_many_rate) = merge(1, 1);
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
    let row = |what: &str, lat: &[Duration], rate: f64, echo: &[Duration], echo_rate: f64| {
        println!(
            "| {what} | p50 {}, p99 {}, {:.0} req/s | p50 {}, p99 {}, {:.0} req/s | {:.2} | {:.2} |",
            ms(pct(lat, 0.5)),
            ms(pct(lat, 0.99)),
            rate,
            ms(pct(echo, 0.5)),
            ms(pct(echo, 0.99)),
            echo_rate,
            rate / echo_rate,
            pct(lat, 0.99).as_secs_f64() / pct(echo, 0.99).as_secs_f64(),
        );
    };
    println!();
    println!(
        "| `status` ({} bytes) | daemon | echo (ceiling) | throughput ratio | p99 ratio |",
        answer.len()
    );
    println!("| --- | --- | --- | --- | --- |");
    row(
        &format!("1 client x {n1} round trips (x{ROUNDS})"),
        &one,
        one_rate,
        &echo_one,
        echo_one_rate,
    );
    row(
        &format!("{CLIENTS} clients x {each} round trips (x{ROUNDS})"),
        &many,
        many_rate,
        &echo_many,
        echo_many_rate,
    );
}
