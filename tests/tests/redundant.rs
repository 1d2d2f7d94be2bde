//! Redundant license servers (issue 15): two real `pls serve` processes on one
//! PostgreSQL database (a throwaway cluster this test starts), 200 simulated
//! daemons and 8 portal users spread over both by `pls-load`. The first server
//! is SIGKILLed in the middle: daemons fail over to the other (each tries the
//! server that answered last, then the next, as `promos-licd` does with a
//! server list), users go on at the other server with their session cookie
//! (as behind a load balancer), and afterwards every acknowledged activation,
//! check-in, quote and order is in the database and no email went out twice.

use serde_json::Value;
use std::process::Command;

const DAEMONS: u64 = 200;
const USERS: u64 = 8;

fn class<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["classes"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["class"] == name))
        .unwrap_or_else(|| panic!("no {name} in the report"))
}

#[test]
fn two_servers_on_one_database_lose_nothing_when_one_is_killed() {
    let url = portal::store::throwaway::shared()
        .create_database()
        .expect("a database in the throwaway cluster");
    let pls = e2e::binary("portal", "pls");
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("report.json");
    let out = Command::new(env!("CARGO_BIN_EXE_pls-load"))
        .arg("--pls")
        .arg(&pls)
        .args(["--instances", "2", "--database-url", &url])
        .args(["--daemons", &DAEMONS.to_string()])
        .args(["--users", &USERS.to_string()])
        .args(["--duration", "30s", "--check-interval", "10s"])
        .args(["--kill-after", "15s"])
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
    assert_eq!(report["instances"], 2);
    // The survivor stopped cleanly; the killed one was not asked.
    assert_eq!(report["server_stop"], "exited 0 after SIGTERM");
    // Every daemon activated exactly once, on whichever server; the checks
    // after the kill all went to the survivor.
    assert_eq!(class(&report, "activate")["ok"], DAEMONS);
    assert!(class(&report, "check")["ok"].as_u64().expect("checks") >= DAEMONS);
    // The users who started on the killed server went on at the other one with
    // the same session (a lost session would have failed their next page).
    assert_eq!(report["users_moved"], USERS / 2, "{stdout}");
    assert!(class(&report, "order")["ok"].as_u64().expect("orders") > 0);
    assert_eq!(report["emails_duplicated"], 0, "{stdout}");
    assert!(
        report["emails_sent"].as_u64().expect("emails") > 0,
        "{stdout}"
    );
}
