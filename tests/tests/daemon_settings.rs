//! The portal's daemon settings download activates a daemon unchanged (issue
//! 17): a real license server (QUIC and HTTP on loopback), its customer logs in
//! over real HTTP and downloads `promos-licd.toml` from the license page; that
//! file, byte for byte, is the configuration of a real `promos-licd run`
//! process; the site then enters only the token (`promos-licd activate` with
//! `PROMOS_LICD_TOKEN`, as the README says) and the daemon is licensed.

// The load harness's small HTTP client with a cookie jar (not every helper of
// it is used here).
#[allow(dead_code)]
#[path = "../src/bin/pls-load/http.rs"]
mod http;

use e2e::binary;
use keys::{Entitlements, LicenseData, LicenseType, Protection, SystemClock};
use portal::domain::{Actor, Licensee, MutationKind, NewAccount, NewLicense};
use portal::store::NewMutation;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const EMAIL: &str = "site@muster.example";
const PASSWORD: &str = "correct-horse-42";
const HARDWARE_ID: &str = "5e775e775e775e775e775e775e775e77";

/// A child that is killed when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A verified customer account owning one paid soft-dongle license: (number, token).
fn seed(server: &portal::Server) -> (keys::LicenseNumber, String) {
    let store = server.store();
    let key = &server.identity().key;
    let now = keys::Clock::now(&SystemClock);
    let actor = Actor::Admin("e2e".into());
    let account = store
        .create_account(
            NewAccount {
                email: EMAIL.into(),
                password_hash: Some(portal::web::password::hash(PASSWORD)),
                company: "Muster AG".into(),
                first_name: "Hans".into(),
                last_name: "Muster".into(),
            },
            &Actor::System,
            now,
        )
        .expect("account");
    store
        .update_account(account.id, &Actor::System, now, "verified", |a| {
            a.email_verified = true
        })
        .expect("verified");
    let license = store
        .create_license(
            NewLicense {
                account: Some(account.id),
                license_type: LicenseType::Standard,
                protection: Protection::SoftDongle,
                licensee: Licensee {
                    company: "Muster AG".into(),
                    first_name: "Hans".into(),
                    last_name: "Muster".into(),
                    street: "Bahnhofstrasse 1".into(),
                    postcode: "3000".into(),
                    city: "Bern".into(),
                    state: "BE".into(),
                    country: "CH".into(),
                    email: EMAIL.into(),
                    phone: "+41 31 000 00 00".into(),
                },
                license_data: LicenseData {
                    name: "Muster AG".into(),
                    postcode: "3000".into(),
                    city: "Bern".into(),
                },
            },
            &actor,
            now,
        )
        .expect("license");
    let m = store
        .add_mutation(
            &license.number,
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
        .activate_mutation(&license.number, m.number, key, &actor, now)
        .expect("paid");
    (license.number, license.token.expose().to_owned())
}

/// Logs in as the customer and downloads the license's `promos-licd.toml`.
async fn download(http: SocketAddr, number: &keys::LicenseNumber) -> String {
    let mut b = http::Browser::new(http);
    let page = b.get("/login").await.expect("GET /login");
    let csrf = page.csrf().expect("the login form's CSRF token");
    let r = b
        .post(
            "/login",
            &[
                ("csrf".to_owned(), csrf),
                ("email".to_owned(), EMAIL.to_owned()),
                ("password".to_owned(), PASSWORD.to_owned()),
            ],
        )
        .await
        .expect("POST /login");
    assert_eq!(
        (r.status, r.header("location")),
        (303, Some("/licenses")),
        "login"
    );
    let page = b
        .get(&format!("/licenses/{number}"))
        .await
        .expect("license page");
    assert!(
        page.body
            .contains(&format!("href=\"/licenses/{number}/promos-licd.toml\"")),
        "the license page offers the download"
    );
    let file = b
        .get(&format!("/licenses/{number}/promos-licd.toml"))
        .await
        .expect("download");
    assert_eq!(file.status, 200, "{}", file.body);
    assert_eq!(
        file.header("content-disposition"),
        Some("attachment; filename=\"promos-licd.toml\"")
    );
    file.body
}

/// `promos-licd` with the downloaded configuration and what this test host
/// adds in the environment (where state and socket live, a test hardware ID).
/// `PROMOS_LICD_BENCH_BIN` (as in the daemon's socket bench) runs another
/// build, e.g. a release binary, for the idle RSS this test prints.
fn licd(dir: &Path, config: &Path) -> Command {
    let bin = std::env::var_os("PROMOS_LICD_BENCH_BIN")
        .map(Into::into)
        .unwrap_or_else(|| binary("daemon", "promos-licd"));
    let mut c = Command::new(bin);
    c.arg("--config")
        .arg(config)
        .env("PROMOS_LICD_DATA_DIR", dir.join("licd"))
        .env("PROMOS_LICD_SOCKET", dir.join("licd.sock"))
        .env("PROMOS_LICD_TEST_HARDWARE_ID", HARDWARE_ID)
        .env("PROMOS_LICD_LOG", "warn")
        .env_remove("PROMOS_LICD_TOKEN")
        .env_remove("PROMOS_LICD_CONFIG")
        .env_remove("PROMOS_LICD_SERVER")
        .env_remove("PROMOS_LICD_LICENSE_NUMBER");
    c
}

fn status(dir: &Path, config: &Path) -> serde_json::Value {
    let out = licd(dir, config)
        .args(["status", "--json"])
        .output()
        .expect("promos-licd status");
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("json")["status"].clone()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_portals_daemon_settings_download_activates_a_daemon_unchanged() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let mut config = portal::config::Config {
        data_dir: dir.join("pls"),
        ..Default::default()
    };
    // The name the daemons reach the server by (here: loopback).
    config.quic.server_names = vec!["127.0.0.1".into()];
    config.quic.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.http.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.metrics.enabled = false;
    let server = portal::Server::bind(config, Arc::new(SystemClock))
        .await
        .expect("the license server starts");
    let (number, token) = seed(&server);
    let http = server.http_addr();
    let quic = server.quic_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let pls = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));

    let file = download(http, &number).await;
    assert!(!file.contains(&token), "the download never holds the token");
    // The daemon's own parser reads it as it is.
    let parsed =
        daemon::Config::from_toml(&file, &Default::default()).expect("a daemon configuration");
    assert_eq!(parsed.server, quic.to_string());
    assert_eq!(parsed.license_number.as_ref(), Some(&number));
    assert!(parsed.cert_pin.is_some() && !parsed.trusted_keys.is_empty());

    let config = dir.join("promos-licd.toml");
    std::fs::write(&config, &file).expect("write the configuration");
    // At debug level, to show that not even then the token is logged.
    let log = dir.join("licd.log");
    let child = licd(dir, &config)
        .arg("run")
        .env("PROMOS_LICD_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("promos-licd run");
    let daemon = Running(child);
    let end = Instant::now() + Duration::from_secs(30);
    while !dir.join("licd.sock").exists() {
        assert!(Instant::now() < end, "the daemon's socket never came up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status(dir, &config)["state"], "not_activated");

    // The site enters the number and the token, nothing else.
    let out = licd(dir, &config)
        .args(["activate", "--license", number.as_str()])
        .env("PROMOS_LICD_TOKEN", &token)
        .output()
        .expect("promos-licd activate");
    assert!(
        out.status.success(),
        "activation failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    let s = status(dir, &config);
    assert_eq!(
        (&s["state"], &s["licensed"], &s["license_number"]),
        (
            &serde_json::json!("licensed"),
            &serde_json::json!(true),
            &serde_json::json!(number.as_str())
        ),
        "{s}"
    );
    // Idle after the activation (its QUIC client done): the footprint of a
    // soft-dongle host, printed for BENCHMARKS.md (`-- --nocapture`).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let proc_status =
        std::fs::read_to_string(format!("/proc/{}/status", daemon.0.id())).expect("/proc status");
    let field = |name: &str| {
        proc_status
            .lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
            .unwrap_or_else(|| panic!("{name} in /proc status"))
    };
    eprintln!(
        "soft-dongle daemon idle after activation: VmRSS {} (anonymous {}, file-backed {}; {} threads)",
        field("VmRSS:"),
        field("RssAnon:"),
        field("RssFile:"),
        field("Threads:")
    );
    // The configuration is still the downloaded file, byte for byte.
    assert_eq!(std::fs::read_to_string(&config).expect("read"), file);
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(&token) && !stderr(&out).contains(&token),
        "activate never prints the token"
    );
    drop(daemon);
    let logged = std::fs::read_to_string(&log).expect("daemon log");
    assert!(
        logged.contains("DEBUG") || logged.contains("debug"),
        "the daemon logged at debug level"
    );
    assert!(!logged.contains(&token), "the token is never logged");

    let _ = stop.send(());
    pls.await
        .expect("join")
        .expect("the server stopped cleanly");
}
