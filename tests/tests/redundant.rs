//! Redundant license servers (issue 15): two real `pls serve` processes on one
//! PostgreSQL database (a throwaway cluster this test starts), 200 simulated
//! daemons and 8 portal users spread over both by `pls-load`. The first server
//! is SIGKILLed in the middle: daemons fail over to the other (each tries the
//! server that answered last, then the next, as `promos-licd` does with a
//! server list), users go on at the other server with their session cookie
//! (as behind a load balancer), and afterwards every acknowledged activation,
//! check-in, quote and order is in the database and no email went out twice.

use e2e::report::ok;
use serde_json::Value;
use std::process::Command;

const DAEMONS: u64 = 200;
const USERS: u64 = 8;

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
    assert_eq!(ok(&report, "activate"), DAEMONS);
    assert!(ok(&report, "check") >= DAEMONS);
    // The users who started on the killed server went on at the other one with
    // the same session (a lost session would have failed their next page).
    assert_eq!(report["users_moved"], USERS / 2, "{stdout}");
    assert!(ok(&report, "order") > 0);
    assert_eq!(report["emails_duplicated"], 0, "{stdout}");
    assert!(
        report["emails_sent"].as_u64().expect("emails") > 0,
        "{stdout}"
    );
}

/// Database failover: the servers' URL names a primary and its synchronous
/// standby (`target_session_attrs=read-write`). The primary is killed in the
/// middle of the load and the standby promoted; both servers reconnect to it.
/// Requests during the switch may fail, but only with "try again" (daemons: an
/// unsigned "unavailable"; portal: 503), never with a wrong answer (a 404 for a
/// page that exists, a login page for a live session); afterwards daemons and
/// users go on, users with the session they had (sessions live in the
/// database), and nothing acknowledged is lost.
#[test]
fn a_promoted_standby_takes_over_and_nothing_acknowledged_is_lost() {
    use portal::store::throwaway::Cluster;
    use std::io::BufRead;
    const DAEMONS: u64 = 100;
    const USERS: u64 = 4;
    let (primary, standby) = Cluster::start_replicated().expect("primary and standby");
    let name = primary.create_database_named().expect("database");
    let url = Cluster::failover_url(&[&primary, &standby], &name);
    let pls = e2e::binary("portal", "pls");
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("report.json");
    let disruption = dir.path().join("disruption");
    let mut run = Command::new(env!("CARGO_BIN_EXE_pls-load"))
        .arg("--pls")
        .arg(&pls)
        .args(["--instances", "2", "--database-url", &url])
        .args(["--daemons", &DAEMONS.to_string()])
        .args(["--users", &USERS.to_string()])
        .args(["--duration", "30s", "--check-interval", "5s"])
        .arg("--data-dir")
        .arg(dir.path().join("run"))
        .arg("--json")
        .arg(&json)
        .arg("--disruption-file")
        .arg(&disruption)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start pls-load");
    // Wait for the load to run (after the seeding and the servers' start),
    // passing its progress on.
    let stderr = run.stderr.take().expect("stderr");
    let (started, load_runs) = std::sync::mpsc::channel();
    let progress = std::thread::spawn(move || {
        let mut lines = vec![];
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.starts_with("load: ") {
                let _ = started.send(());
            }
            lines.push(line);
        }
        lines.join("\n")
    });
    let ran = load_runs.recv().is_ok();
    if ran {
        // Every daemon has activated and every user is in a round.
        std::thread::sleep(std::time::Duration::from_secs(10));
        // Crash the primary, promote the standby.
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis();
        std::fs::write(&disruption, now_ms.to_string()).expect("disruption file");
        let switch = std::time::Instant::now();
        primary.kill().expect("kill the primary");
        standby.promote().expect("promote the standby");
        eprintln!(
            "primary killed and standby promoted in {:?}",
            switch.elapsed()
        );
    }
    let out = run.wait_with_output().expect("pls-load");
    let stderr = progress.join().expect("stderr reader");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}\n{stderr}");
    assert!(ran, "the load never started");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("JSON report")).expect("JSON");
    assert_eq!(report["lost"], 0, "lost: {stdout}");
    assert_eq!(report["server_stop"], "exited 0 after SIGTERM", "{stdout}");
    // Every failure was a "try again", none a wrong or broken answer.
    for c in report["classes"].as_array().expect("classes") {
        for reason in c["error_reasons"].as_object().expect("reasons").keys() {
            assert!(
                reason.contains("Unavailable") || reason.contains("status 503"),
                "{}: {reason}\n{stdout}",
                c["class"]
            );
        }
    }
    // Every user logged in once: the sessions outlived the failover.
    assert_eq!(report["sessions_lost"], 0, "{stdout}");
    assert_eq!(ok(&report, "login"), USERS, "{stdout}");
    // Daemons and users went on after the switch.
    for side in ["daemon", "portal"] {
        assert!(
            report["disruption"][side]["first_ok_after_ms"].is_number(),
            "no {side} request succeeded after the failover: {stdout}"
        );
    }
    assert_eq!(ok(&report, "activate"), DAEMONS, "{stdout}");
    assert!(ok(&report, "check") >= DAEMONS, "{stdout}");
    assert!(ok(&report, "order") > 0, "{stdout}");
    assert_eq!(report["emails_duplicated"], 0, "{stdout}");
}
