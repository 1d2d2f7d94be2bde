//! The short load run of issue 9 (the 10-minute soak is the same binary, see
//! README "Load and soak"): `pls-load` starts one real `pls serve`, drives 1,000
//! simulated daemons over QUIC and 32 portal users over HTTP against it for 60 s
//! (each daemon activates, then checks 30 s later),
//! stops it and checks the store. Here we assert its verdict and that the
//! counts are what that much load must produce.

use e2e::report::{class, ok};
use serde_json::Value;
use std::process::Command;

const DAEMONS: u64 = 1000;
const USERS: u64 = 32;

#[test]
fn a_thousand_daemons_and_32_users_for_a_minute_lose_nothing() {
    let pls = e2e::binary("portal", "pls");
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("report.json");
    let out = Command::new(env!("CARGO_BIN_EXE_pls-load"))
        .arg("--pls")
        .arg(&pls)
        .args(["--daemons", &DAEMONS.to_string()])
        .args(["--users", &USERS.to_string()])
        .args(["--duration", "60s", "--check-interval", "30s"])
        .arg("--data-dir")
        .arg(dir.path().join("run"))
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run pls-load");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("JSON report")).expect("JSON");
    assert!(out.status.success(), "pls-load failed:\n{stdout}");
    assert_eq!(report["passed"], true);
    assert_eq!(report["errors"], 0, "errors: {stdout}");
    assert_eq!(report["lost"], 0, "lost: {stdout}");
    assert_eq!(report["server_stop"], "exited 0 after SIGTERM");
    // The server's metrics counted at least every answer the daemons acknowledged.
    assert_eq!(report["server_metrics_consistent"], true, "{stdout}");
    assert_eq!(report["server_metrics"]["activate"]["served"], DAEMONS);

    // Every daemon activated once; (nearly) every one checked 30 s later (the
    // last ones are due just before the end); pls-load verified each of them.
    assert_eq!(ok(&report, "activate"), DAEMONS);
    let checks = ok(&report, "check");
    assert!(
        (DAEMONS * 9 / 10..=DAEMONS).contains(&checks),
        "{checks} checks"
    );
    assert_eq!(report["verified"]["activations"], DAEMONS);
    assert_eq!(report["verified"]["check-ins"], checks);
    // Every user logged in once, quoted, and every second quote was ordered.
    assert_eq!(ok(&report, "login"), USERS);
    let quotes = report["verified"]["quotes"].as_u64().expect("quotes");
    let orders = report["verified"]["orders"].as_u64().expect("orders");
    assert!(quotes >= USERS, "{quotes} quotes");
    assert!(
        orders >= USERS / 2 && orders <= quotes,
        "{orders} orders of {quotes} quotes"
    );
    assert!(ok(&report, "price") >= 3 * USERS);
    assert!(ok(&report, "page") >= 3 * USERS);
    // Latencies and the server's samples are there and plausible.
    for name in [
        "activate", "check", "login", "page", "price", "quote", "order",
    ] {
        let c = class(&report, name);
        let (p50, p99) = (
            c["p50_ms"].as_f64().unwrap_or(0.0),
            c["p99_ms"].as_f64().unwrap_or(0.0),
        );
        assert!(p50 > 0.0 && p50 <= p99, "{name}: p50 {p50} p99 {p99}");
    }
    let samples = report["samples"].as_array().expect("samples");
    assert!(samples.len() >= 5, "{} samples", samples.len());
    assert!(samples
        .iter()
        .all(|s| s["rss_kib"].as_u64().unwrap_or(0) > 1024));
}
