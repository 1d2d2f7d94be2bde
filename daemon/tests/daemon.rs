//! The daemon as a whole: `daemon::run` on a temporary directory, a simulated
//! clock, a temporary socket and a SIMULATED dongle (these machines have no USB).
//! Everything here works without a license server (hard-dongle licenses).

use daemon::config::DongleBackend;
use daemon::socket::SocketClient;
use daemon::Config;
use keys::grant::GRANT_FORMAT;
use keys::{
    Binding, Entitlements, LicenseData, LicenseGrant, LicenseNumber, LicenseType, Protection,
    Signed, SigningKeyPair, SimClock, TrustedKeys, UnixTime,
};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

const T0: UnixTime = UnixTime(1_800_000_000);
/// Generous: these tests share two cores with two other engineers' builds.
const WAIT: Duration = Duration::from_secs(20);

fn key() -> SigningKeyPair {
    SigningKeyPair::from_seed(&[5u8; 32])
}

fn hard_license(pwa_users: u32) -> String {
    let k = key();
    let mut entitlements = Entitlements::standard_base();
    entitlements.pwa_users = pwa_users;
    let g = LicenseGrant {
        format: GRANT_FORMAT,
        license_number: LicenseNumber::from_body(192_190_001).expect("n"),
        license_type: LicenseType::Standard,
        protection: Protection::HardDongle,
        license_data: LicenseData {
            name: "Muster AG".into(),
            postcode: "3000".into(),
            city: "Bern".into(),
        },
        binding: Binding::DongleSerial("DG-0001".parse().expect("serial")),
        entitlements,
        issued_at: T0,
        valid_until: None,
        serial: 1,
        key_id: k.key_id(),
    };
    let verified = TrustedKeys::with([k.public()])
        .verify(&Signed::sign(&g, &k))
        .expect("verify");
    keys::file::render(&verified)
}

struct Daemon {
    dir: tempfile::TempDir,
    socket: PathBuf,
    dongle: PathBuf,
    clock: SimClock,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), daemon::service::RunError>>>,
    metrics_listen: Option<std::net::SocketAddr>,
}

impl Daemon {
    /// A hard-dongle host with its dongle plugged in.
    async fn hard(pwa_users: u32) -> Daemon {
        Self::hard_with_metrics(pwa_users, None).await
    }

    async fn hard_with_metrics(
        pwa_users: u32,
        metrics_listen: Option<std::net::SocketAddr>,
    ) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let project = dir.path().join("project");
        std::fs::create_dir_all(project.join("lic")).expect("lic");
        std::fs::write(project.join("lic/promos.json"), hard_license(pwa_users)).expect("license");
        let dongle = dir.path().join("SIMULATED-DONGLE");
        std::fs::write(&dongle, "DG-0001\n").expect("dongle");
        let mut d = Daemon {
            socket: dir.path().join("licd.sock"),
            dongle,
            dir,
            clock: SimClock::at(T0),
            stop: None,
            task: None,
            metrics_listen,
        };
        d.start().await;
        d
    }

    fn config(&self) -> Config {
        let mut c = Config::with_defaults(&self.dir.path().join("data"));
        c.socket_path = self.socket.clone();
        c.project_dir = Some(self.dir.path().join("project"));
        c.trusted_keys = TrustedKeys::with([key().public()]);
        c.tick = Duration::from_millis(20);
        c.dongle = DongleBackend::Simulated {
            file: self.dongle.clone(),
        };
        c.test_hardware_id = Some("0123456789abcdef0123456789abcdef".parse().expect("hwid"));
        c.metrics_listen = self.metrics_listen;
        c
    }

    async fn start(&mut self) {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let config = self.config();
        let clock = Arc::new(self.clock.clone());
        self.task = Some(tokio::spawn(daemon::run(config, clock, async move {
            let _ = rx.await;
        })));
        self.stop = Some(tx);
        let deadline = tokio::time::Instant::now() + WAIT;
        while SocketClient::connect(&self.socket).await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "daemon socket never came up"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.expect("join").expect("run ended cleanly");
        }
    }

    async fn client(&self) -> SocketClient {
        SocketClient::connect(&self.socket).await.expect("connect")
    }

    async fn status(&self) -> Value {
        let v = self
            .client()
            .await
            .call(&json!({"cmd": "status"}))
            .await
            .expect("status");
        assert_eq!(v["ok"], json!(true), "{v}");
        v["status"].clone()
    }

    /// Polls status until `pred` holds (the daemon sees changes at its next tick).
    async fn wait_status(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let s = self.status().await;
            if pred(&s) {
                return s;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; last status {s}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn next_event(c: &mut SocketClient, name: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let v = tokio::time::timeout(left, c.next())
            .await
            .unwrap_or_else(|_| panic!("no {name} event"))
            .expect("read");
        if v["event"] == json!(name) {
            return v;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hard_dongle_status_and_socket_permissions() {
    let mut d = Daemon::hard(3).await;
    let s = d.status().await;
    assert_eq!(s["state"], json!("licensed"), "{s}");
    assert_eq!(s["licensed"], json!(true));
    assert_eq!(s["protection"], json!("hard_dongle"));
    assert_eq!(s["license_data"]["city"], json!("Bern"));
    assert_eq!(s["entitlements"]["pwa_users"], json!(3));
    assert_eq!(s["entitlements"]["drivers"]["saia_pcd"], json!(100));
    assert_eq!(s["seconds_until_stop"], Value::Null);
    assert_eq!(s["hardware_id"], json!("0123456789abcdef0123456789abcdef"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&d.socket)
        .expect("socket")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o660);
    d.stop().await;
    assert!(!d.socket.exists(), "the socket is removed at shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seats_are_limited_under_concurrency_and_released_with_the_connection() {
    let mut d = Daemon::hard(3).await;
    // 32 clients race for 3 pWA seats.
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let mut c = d.client().await;
        tasks.push(tokio::spawn(async move {
            let v = c
                .call(&json!({"cmd": "acquire_seat", "program": "pwa"}))
                .await
                .expect("acquire");
            (v, c)
        }));
    }
    let mut winners = Vec::new();
    let mut losers = 0;
    for t in tasks {
        let (v, c) = t.await.expect("join");
        if v["ok"] == json!(true) {
            winners.push(c);
        } else {
            assert_eq!(v["error"], json!("no_seat_free"), "{v}");
            losers += 1;
        }
    }
    assert_eq!((winners.len(), losers), (3, 29));
    let seats = d
        .client()
        .await
        .call(&json!({"cmd": "seats"}))
        .await
        .expect("seats");
    assert_eq!(seats["seats"]["pwa"], json!({"used": 3, "limit": 3}));
    assert_eq!(seats["seats"]["ge"], json!({"used": 0, "limit": 1}));

    // Releasing: only what one holds.
    let mut c = d.client().await;
    let v = c
        .call(&json!({"cmd": "release_seat", "program": "pwa"}))
        .await
        .expect("release");
    assert_eq!(v["error"], json!("no_seat_held"));
    let v = winners[0]
        .call(&json!({"cmd": "release_seat", "program": "pwa", "id": 7}))
        .await
        .expect("release");
    assert_eq!(
        (v["ok"].clone(), v["id"].clone(), v["used"].clone()),
        (json!(true), json!(7), json!(2))
    );
    // A closed connection gives its seats back.
    winners.truncate(1);
    let s = d
        .wait_status("seats released", |s| s["seats"]["pwa"]["used"] == json!(0))
        .await;
    assert_eq!(s["seats"]["pwa"]["limit"], json!(3));
    // One connection may hold several seats.
    let mut c = d.client().await;
    for n in 1..=3 {
        let v = c
            .call(&json!({"cmd": "acquire_seat", "program": "pwa"}))
            .await
            .expect("acquire");
        assert_eq!(v["held"], json!(n), "{v}");
    }
    let v = c
        .call(&json!({"cmd": "acquire_seat", "program": "pwa"}))
        .await
        .expect("acquire");
    assert_eq!(v["error"], json!("no_seat_free"));
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_an_error_line_and_the_connection_stays_usable() {
    let mut d = Daemon::hard(1).await;
    let mut c = d.client().await;
    let cases = [
        ("hello", "bad_request"),
        ("{\"cmd\":\"fly\"}", "bad_request"),
        (
            "{\"cmd\":\"acquire_seat\",\"program\":\"excel\"}",
            "bad_request",
        ),
        ("{\"cmd\":\"status\",\"extra\":1}", "bad_request"),
        ("[1,2,3]", "bad_request"),
        (
            "{\"cmd\":\"activate\",\"license_number\":\"123\",\"token\":\"x\"}",
            "bad_license_number",
        ),
    ];
    for (line, code) in cases {
        c.send_line(line).await.expect("send");
        let v = c.next().await.expect("answer");
        assert_eq!(
            (v["ok"].clone(), v["error"].clone()),
            (json!(false), json!(code)),
            "{line}: {v}"
        );
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    c.send_line("").await.expect("blank lines are skipped");
    let v = c
        .call(&json!({"cmd": "hwid", "id": "x1"}))
        .await
        .expect("hwid");
    assert_eq!(
        v,
        json!({"ok": true, "id": "x1", "hardware_id": "0123456789abcdef0123456789abcdef"})
    );
    // A line over 64 KiB closes the connection with an error; others are unaffected.
    let long = "x".repeat(70 * 1024);
    // The daemon may close before it has read everything: a broken pipe is fine.
    let _ = c.send_line(&long).await;
    assert_eq!(
        c.next().await.expect("answer")["error"],
        json!("line_too_long")
    );
    assert_eq!(d.status().await["licensed"], json!(true));
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dongle_removed_subscribers_hear_warning_stop_and_end() {
    let mut d = Daemon::hard(1).await;
    let mut sub = d.client().await;
    assert_eq!(
        sub.call(&json!({"cmd": "subscribe"}))
            .await
            .expect("subscribe")["subscribed"],
        json!(true)
    );
    let mut rt = d.client().await;
    let v = rt
        .call(&json!({"cmd": "runtime_started"}))
        .await
        .expect("started");
    assert_eq!(v["status"]["runtime"], json!("running"), "{v}");
    // Another connection cannot claim the run.
    let v = d
        .client()
        .await
        .call(&json!({"cmd": "runtime_started"}))
        .await
        .expect("second");
    assert_eq!(v["error"], json!("runtime_already_running"));

    std::fs::remove_file(&d.dongle).expect("unplug");
    let w = next_event(&mut sub, "warning_begins").await;
    assert!(
        w["warning"]["de"].as_str().expect("de").contains("DG-0001"),
        "{w}"
    );
    let stop = next_event(&mut sub, "stop_scheduled").await;
    assert_eq!(stop["at"], json!(T0.plus_secs(3600).secs()), "{stop}");
    let s = d.status().await;
    assert_eq!(
        (s["state"].clone(), s["seconds_until_stop"].clone()),
        (json!("dongle_removed"), json!(3600))
    );

    // Back in time: normal.
    std::fs::write(&d.dongle, "DG-0001").expect("plug");
    next_event(&mut sub, "stop_cancelled").await;
    d.wait_status("licensed again", |s| s["state"] == json!("licensed"))
        .await;

    // Removed for good: one hour later the license ends.
    std::fs::remove_file(&d.dongle).expect("unplug");
    d.wait_status("grace", |s| s["state"] == json!("dongle_removed"))
        .await;
    d.clock.advance_secs(3601);
    let end = next_event(&mut sub, "license_ended").await;
    assert_eq!(end["reason_code"], json!("dongle_missing"), "{end}");
    let s = d.status().await;
    assert_eq!(
        (s["licensed"].clone(), s["entitlements"].clone()),
        (json!(false), Value::Null)
    );

    // The run history records the runtime; a closed runtime connection stops it.
    drop(rt);
    d.wait_status("runtime stopped", |s| s["runtime"] == json!("stopped"))
        .await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_the_high_water_mark_so_a_rolled_back_clock_gains_nothing() {
    let mut d = Daemon::hard(1).await;
    std::fs::remove_file(&d.dongle).expect("unplug");
    d.wait_status("grace", |s| s["state"] == json!("dongle_removed"))
        .await;
    d.clock.advance_secs(1800);
    d.wait_status("half an hour", |s| s["seconds_until_stop"] == json!(1800))
        .await;
    d.stop().await;
    // Clock set back a day, daemon restarted: still the same stop time.
    d.clock.set(UnixTime(T0.secs() - 86_400));
    d.start().await;
    let s = d.status().await;
    assert_eq!(s["state"], json!("dongle_removed"), "{s}");
    assert_eq!(s["stop_at"], json!(T0.plus_secs(3600).secs()));
    assert!(
        s["now"].as_str().expect("now") >= T0.plus_secs(1800).to_string().as_str(),
        "{s}"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_license_at_all_says_how_to_activate_and_doctor_findings_show() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = dir.path().join("project");
    std::fs::create_dir_all(project.join("lic")).expect("lic");
    std::fs::write(project.join("lic/1921900012.json"), "{}").expect("misnamed");
    let mut d = Daemon {
        socket: dir.path().join("licd.sock"),
        dongle: dir.path().join("SIMULATED-DONGLE"),
        dir,
        clock: SimClock::at(T0),
        stop: None,
        task: None,
        metrics_listen: None,
    };
    d.start().await;
    let s = d.status().await;
    assert_eq!(
        (s["state"].clone(), s["licensed"].clone()),
        (json!("not_activated"), json!(false))
    );
    assert_eq!(s["reason"]["code"], json!("license_file_misnamed"), "{s}");
    assert!(s["reason"]["en"]
        .as_str()
        .expect("en")
        .contains("lic/promos.json"));
    d.stop().await;
}

/// The real binary under a fake systemd: READY=1 arrives once the socket
/// answers, STOPPING=1 on SIGTERM (a separate process, so no environment of
/// this test process is touched).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_tells_systemd_it_is_ready_once_the_socket_listens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let notify_path = dir.path().join("notify");
    let listener = std::os::unix::net::UnixDatagram::bind(&notify_path).expect("bind");
    listener.set_read_timeout(Some(WAIT)).expect("timeout");
    std::fs::create_dir_all(dir.path().join("project/lic")).expect("lic");
    std::fs::write(dir.path().join("project/lic/promos.json"), hard_license(1)).expect("license");
    std::fs::write(dir.path().join("SIMULATED-DONGLE"), "DG-0001").expect("dongle");
    let socket = dir.path().join("licd.sock");
    let mut child = cli()
        .arg("run")
        .env("NOTIFY_SOCKET", &notify_path)
        .env("PROMOS_LICD_DATA_DIR", dir.path().join("data"))
        .env("PROMOS_LICD_SOCKET", &socket)
        .env("PROMOS_LICD_PROJECT_DIR", dir.path().join("project"))
        .env("PROMOS_LICD_TRUSTED_KEYS", key().public().to_string())
        .env("PROMOS_LICD_DONGLE_BACKEND", "simulated")
        .env(
            "PROMOS_LICD_SIMULATED_DONGLE_FILE",
            dir.path().join("SIMULATED-DONGLE"),
        )
        .env(
            "PROMOS_LICD_TEST_HARDWARE_ID",
            "0123456789abcdef0123456789abcdef",
        )
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let mut buf = [0u8; 64];
    let n =
        tokio::task::block_in_place(|| listener.recv(&mut buf)).expect("READY within the timeout");
    assert_eq!(&buf[..n], b"READY=1");
    // Ready means ready: the socket answers at once.
    let v = SocketClient::connect(&socket)
        .await
        .expect("connect")
        .call(&json!({"cmd": "status"}))
        .await
        .expect("status");
    assert_eq!(v["status"]["licensed"], json!(true), "{v}");
    let pid = child.id().expect("pid").to_string();
    let killed = tokio::process::Command::new("kill")
        .arg("-TERM")
        .arg(&pid)
        .status()
        .await
        .expect("kill");
    assert!(killed.success());
    let n = tokio::task::block_in_place(|| listener.recv(&mut buf)).expect("STOPPING");
    assert_eq!(&buf[..n], b"STOPPING=1");
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("exits on SIGTERM")
        .expect("wait");
    assert!(status.success(), "{status}");
    assert!(!socket.exists());
}

/// The CLI in English, whatever the machine's locale (`cli_in` for another).
fn cli() -> tokio::process::Command {
    cli_in("en_US.UTF-8")
}

/// The CLI with `LANG` set to `lang` (and no `LC_ALL`/`LC_MESSAGES` overriding it).
fn cli_in(lang: &str) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_promos-licd"));
    c.env("PROMOS_LICD_LOG", "error")
        .env("LANG", lang)
        .env_remove("LC_ALL")
        .env_remove("LC_MESSAGES");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_hwid_status_seats_and_doctor() {
    let out = cli()
        .arg("hwid")
        .env_remove("PROMOS_LICD_TEST_HARDWARE_ID")
        .output()
        .await
        .expect("hwid");
    let id = String::from_utf8(out.stdout).expect("utf8");
    let id = id.trim();
    assert!(out.status.success());
    assert!(
        id.len() == 32
            && id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{id:?}"
    );
    let again = cli()
        .arg("hwid")
        .env_remove("PROMOS_LICD_TEST_HARDWARE_ID")
        .output()
        .await
        .expect("hwid");
    assert_eq!(String::from_utf8_lossy(&again.stdout).trim(), id, "stable");
    let test_id = cli()
        .arg("hwid")
        .env(
            "PROMOS_LICD_TEST_HARDWARE_ID",
            "ABCDEF0123456789abcdef0123456789",
        )
        .output()
        .await
        .expect("hwid");
    assert_eq!(
        String::from_utf8_lossy(&test_id.stdout).trim(),
        "abcdef0123456789abcdef0123456789"
    );

    let mut d = Daemon::hard(2).await;
    let out = cli()
        .arg("status")
        .arg("--socket")
        .arg(&d.socket)
        .output()
        .await
        .expect("status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("State:       licensed"), "{text}");
    assert!(text.contains("License:     1921900"), "{text}");
    let out = cli()
        .arg("seats")
        .arg("--socket")
        .arg(&d.socket)
        .output()
        .await
        .expect("seats");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("PWA  0 of 2 in use"), "{text}");
    // A hard-dongle host needs no server: check-now answers at once with the state.
    let out = cli()
        .arg("check-now")
        .arg("--socket")
        .arg(&d.socket)
        .output()
        .await
        .expect("check-now");
    assert!(String::from_utf8_lossy(&out.stdout).contains("Licensed:    true"));
    d.stop().await;
    let out = cli()
        .arg("status")
        .arg("--socket")
        .arg(&d.socket)
        .output()
        .await
        .expect("status");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is promos-licd running?"));

    let project = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(project.path().join("lic")).expect("lic");
    std::fs::write(project.path().join("lic/promos.key"), "old").expect("key");
    let out = cli()
        .arg("doctor")
        .arg("--project")
        .arg(project.path())
        .output()
        .await
        .expect("doctor");
    assert_eq!(out.status.code(), Some(1), "findings without --fix exit 1");
    assert!(String::from_utf8_lossy(&out.stdout).contains("promos.key"));
    let out = cli()
        .arg("doctor")
        .arg("--project")
        .arg(project.path())
        .arg("--fix")
        .output()
        .await
        .expect("fix");
    assert!(out.status.success());
    assert!(!project.path().join("lic/promos.key").exists());
    let out = cli()
        .arg("doctor")
        .arg("--project")
        .arg(project.path())
        .output()
        .await
        .expect("doctor");
    assert!(out.status.success(), "clean after the fix");
}

/// `status`, `seats`, `check-now` and `doctor` speak German by the locale
/// (`LANG`, or `LC_MESSAGES`/`LC_ALL` over it); `--json` stays as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_outputs_in_german_by_the_locale() {
    let mut d = Daemon::hard(2).await;
    let run = |lang: &'static str, args: &'static [&'static str]| {
        let socket = d.socket.clone();
        async move {
            let out = cli_in(lang)
                .args(args)
                .arg("--socket")
                .arg(&socket)
                .output()
                .await
                .expect("promos-licd");
            assert!(out.status.success(), "{args:?}: {out:?}");
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
    };
    let text = run("de_CH.UTF-8", &["status"]).await;
    for part in [
        "Zustand:         lizenziert (licensed)",
        "Lizenziert:      ja",
        "Lizenz:          1921900",
        "Letzte Prüfung:",
    ] {
        assert!(
            text.contains(part),
            "no {part:?} in
{text}"
        );
    }
    let text = run("de_DE.UTF-8", &["seats"]).await;
    assert!(text.contains("PWA  0 von 2 belegt"), "{text}");
    // A hard-dongle host has nothing to check with a server (exit code 3).
    let out = cli_in("de_AT.UTF-8")
        .arg("check-now")
        .arg("--socket")
        .arg(&d.socket)
        .output()
        .await
        .expect("check-now");
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Lizenziert:      ja"), "{text}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "Prüfung: nichts zu prüfen (not_activated)\n"
    );
    // LC_MESSAGES and LC_ALL win over LANG, as POSIX orders them.
    let out = cli_in("en_US.UTF-8")
        .env("LC_MESSAGES", "de_CH.UTF-8")
        .arg("seats")
        .arg("--socket")
        .arg(&d.socket)
        .output()
        .await
        .expect("seats");
    assert!(String::from_utf8_lossy(&out.stdout).contains("von 2 belegt"));
    let out = cli_in("de_CH.UTF-8")
        .env("LC_ALL", "en_GB.UTF-8")
        .arg("seats")
        .arg("--socket")
        .arg(&d.socket)
        .output()
        .await
        .expect("seats");
    assert!(String::from_utf8_lossy(&out.stdout).contains("of 2 in use"));
    // The machine-readable output is the same in every language.
    let de: serde_json::Value =
        serde_json::from_str(&run("de_CH.UTF-8", &["status", "--json"]).await).expect("json");
    let en: serde_json::Value =
        serde_json::from_str(&run("en_US.UTF-8", &["status", "--json"]).await).expect("json");
    assert_eq!(de["status"]["state"], json!("licensed"));
    assert_eq!(
        de["status"]["reason"], en["status"]["reason"],
        "both languages' texts in both"
    );
    d.stop().await;

    let project = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(project.path().join("lic")).expect("lic");
    std::fs::write(project.path().join("lic/promos.key"), "old").expect("key");
    let out = cli_in("de_CH.UTF-8")
        .arg("doctor")
        .arg("--project")
        .arg(project.path())
        .output()
        .await
        .expect("doctor");
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("ein alter Lizenzschlüssel") && text.contains("Mit --fix erneut aufrufen"),
        "{text}"
    );
    let out = cli_in("de_CH.UTF-8")
        .arg("doctor")
        .arg("--project")
        .arg(project.path())
        .arg("--fix")
        .output()
        .await
        .expect("fix");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("behoben") && text.contains("in eine Sicherung umbenannt"),
        "{text}"
    );
    let out = cli_in("de_CH.UTF-8")
        .arg("doctor")
        .arg("--project")
        .arg(project.path())
        .output()
        .await
        .expect("doctor");
    assert!(String::from_utf8_lossy(&out.stdout).contains("Keine Probleme gefunden"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socket_belongs_to_the_configured_group() {
    let mut d = Daemon::hard(1).await;
    d.stop().await;
    let mut config = d.config();
    config.socket_group = Some("root".into());
    config.socket_mode = 0o660;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(daemon::run(
        config.clone(),
        Arc::new(d.clock.clone()),
        async move {
            let _ = rx.await;
        },
    ));
    let deadline = tokio::time::Instant::now() + WAIT;
    while SocketClient::connect(&d.socket).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "socket never came up"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(&d.socket).expect("socket").gid(),
        0,
        "group root"
    );
    let _ = tx.send(());
    task.await.expect("join").expect("ran");

    config.socket_group = Some("no-such-group-promos-test".into());
    let err = daemon::run(config, Arc::new(d.clock.clone()), async {})
        .await
        .expect_err("unknown group");
    assert!(
        err.to_string().contains("no-such-group-promos-test"),
        "{err}"
    );
}

/// A plain HTTP/1.1 GET; returns the status line and the body.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .expect("send");
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.expect("read");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a whole response");
    (
        head.lines().next().unwrap_or("").to_owned(),
        body.to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_listener_shows_state_seats_and_the_time_to_a_forced_stop() {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        l.local_addr().expect("addr")
    };
    let mut d = Daemon::hard_with_metrics(3, Some(addr)).await;
    let mut c = d.client().await;
    let v = c
        .call(&json!({"cmd": "acquire_seat", "program": "pwa"}))
        .await
        .expect("seat");
    assert_eq!(v["ok"], json!(true), "{v}");

    let (status, text) = http_get(addr, "/metrics").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    for line in [
        "promos_licd_licensed 1",
        "promos_licd_state{state=\"licensed\"} 1",
        "promos_licd_state{state=\"dongle_removed\"} 0",
        "promos_licd_seats_used{program=\"pwa\"} 1",
        "promos_licd_seats_limit{program=\"pwa\"} 3",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert!(!text.contains("promos_licd_seconds_until_stop "), "{text}");

    // Pull the (simulated) dongle: a stop one hour later is scheduled.
    std::fs::remove_file(&d.dongle).expect("unplug");
    d.wait_status("dongle removed", |s| s["state"] == json!("dongle_removed"))
        .await;
    let (_, text) = http_get(addr, "/metrics").await;
    assert!(
        text.lines()
            .any(|l| l == "promos_licd_state{state=\"dongle_removed\"} 1"),
        "{text}"
    );
    let until_stop: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("promos_licd_seconds_until_stop "))
        .expect("a stop is scheduled")
        .parse()
        .expect("number");
    assert_eq!(
        until_stop, 3600.0,
        "one hour after the dongle was last seen"
    );

    let (status, _) = http_get(addr, "/").await;
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    drop(c);
    d.stop().await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the listener closes with the daemon"
    );
}

// ---- Durability and self-healing (issue 16) ----

const HWID: &str = "0123456789abcdef0123456789abcdef";

fn soft_grant() -> Signed<LicenseGrant> {
    let k = key();
    Signed::sign(
        &LicenseGrant {
            format: GRANT_FORMAT,
            license_number: LicenseNumber::from_body(192_190_001).expect("n"),
            license_type: LicenseType::Standard,
            protection: Protection::SoftDongle,
            license_data: LicenseData {
                name: "Muster AG".into(),
                postcode: "3000".into(),
                city: "Bern".into(),
            },
            binding: Binding::HardwareId(HWID.parse().expect("hwid")),
            entitlements: Entitlements::standard_base(),
            issued_at: T0,
            valid_until: None,
            serial: 7,
            key_id: k.key_id(),
        },
        &k,
    )
}

fn soft_receipt() -> Signed<wire::CheckReceipt> {
    Signed::sign(
        &wire::CheckReceipt {
            license_number: LicenseNumber::from_body(192_190_001).expect("n"),
            hardware_id: HWID.parse().expect("hwid"),
            nonce: wire::Nonce([1; 16]),
            server_time: T0,
            next_check_due: T0.plus_secs(UnixTime::DAY),
            current_serial: 7,
        },
        &key(),
    )
}

/// A soft-dongle host whose cache holds an activated license (grant serial 7,
/// last check at T0) and whose `lic/licinfo.cfg` names it; the server is not
/// reachable (nothing listens on its port).
fn soft_host() -> tempfile::TempDir {
    online_host(soft_grant())
}

/// A host whose cache holds `grant` (online activation: soft dongle or
/// engineering), last checked at T0, as [`soft_host`].
fn online_host(grant: Signed<LicenseGrant>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let trusted = TrustedKeys::with([key().public()]);
    let cache = daemon::cache::Cache::open(&dir.path().join("data")).expect("cache");
    cache.load(&trusted, &HWID.parse().expect("hwid"));
    cache
        .save(&daemon::state::Persisted {
            grant: Some(trusted.verify(&grant).expect("grant")),
            receipt: Some(trusted.verify(&soft_receipt()).expect("receipt")),
            high_water: T0,
            ..Default::default()
        })
        .expect("save");
    drop(cache);
    daemon::licinfo::LicInfo {
        server: "127.0.0.1:9".into(),
        license_number: LicenseNumber::from_body(192_190_001).expect("n"),
        hardware_id: Some(HWID.parse().expect("hwid")),
        activated: Some(T0),
    }
    .write(&dir.path().join("project"))
    .expect("licinfo");
    dir
}

fn soft_config(dir: &std::path::Path, data_dir: &std::path::Path) -> Config {
    let mut c = Config::with_defaults(data_dir);
    c.socket_path = dir.join("licd.sock");
    c.project_dir = Some(dir.join("project"));
    c.trusted_keys = TrustedKeys::with([key().public()]);
    c.tick = Duration::from_millis(20);
    c.server = "127.0.0.1:9".into();
    c.check_attempts = 1;
    c.attempt_timeout = Duration::from_millis(300);
    c.dongle = DongleBackend::Simulated {
        file: dir.join("NO-DONGLE"),
    };
    c.test_hardware_id = Some(HWID.parse().expect("hwid"));
    c
}

/// A daemon run in this process on `config`, until the returned sender fires.
struct Running {
    socket: PathBuf,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), daemon::service::RunError>>,
}

impl Running {
    async fn start(config: Config, clock: SimClock) -> Running {
        let socket = config.socket_path.clone();
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(daemon::run(config, Arc::new(clock), async move {
            let _ = rx.await;
        }));
        let deadline = tokio::time::Instant::now() + WAIT;
        while SocketClient::connect(&socket).await.is_err() {
            assert!(!task.is_finished(), "daemon ended at start");
            assert!(
                tokio::time::Instant::now() < deadline,
                "socket never came up"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Running { socket, stop, task }
    }

    async fn call(&self, request: Value) -> Value {
        SocketClient::connect(&self.socket)
            .await
            .expect("connect")
            .call(&request)
            .await
            .expect("call")
    }

    async fn status(&self) -> Value {
        let v = self.call(json!({"cmd": "status"})).await;
        assert_eq!(v["ok"], json!(true), "{v}");
        v["status"].clone()
    }

    async fn wait_status(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let s = self.status().await;
            if pred(&s) {
                return s;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; last status {s}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.expect("join").expect("run ended cleanly");
    }
}

fn codes(status: &Value) -> Vec<String> {
    status["storage"]["problems"]
        .as_array()
        .expect("storage.problems")
        .iter()
        .map(|p| p["code"].as_str().expect("code").to_owned())
        .collect()
}

fn diagnosis_has(status: &Value, en: &str, de: &str) -> bool {
    status["diagnosis"].as_array().is_some_and(|d| {
        d.iter().any(|t| {
            t["en"].as_str().is_some_and(|s| s.contains(en))
                && t["de"].as_str().is_some_and(|s| s.contains(de))
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_or_lost_copy_shows_in_status_and_the_license_stays() {
    let dir = soft_host();
    let data = dir.path().join("data");
    let config = soft_config(dir.path(), &data);
    let clock = SimClock::at(T0.plus_secs(3600));
    let licensed = |s: &Value| s["licensed"] == json!(true) && s["grant_serial"] == json!(7);

    // Clean: no problem, licensed from the cache.
    let d = Running::start(config.clone(), clock.clone()).await;
    let s = d.status().await;
    assert!(licensed(&s), "{s}");
    assert_eq!(s["storage"]["ok"], json!(true), "{s}");
    assert!(codes(&s).is_empty());
    d.stop().await;

    // One flipped byte in the state file.
    let file = data.join(daemon::cache::STATE_FILE);
    let mut bytes = std::fs::read(&file).expect("state file");
    bytes[40] ^= 0x04;
    std::fs::write(&file, &bytes).expect("damage");
    let d = Running::start(config.clone(), clock.clone()).await;
    let s = d.status().await;
    assert!(licensed(&s), "{s}");
    assert_eq!(codes(&s), ["state_file_damaged"], "{s}");
    assert!(diagnosis_has(&s, "is damaged", "ist beschädigt"), "{s}");
    assert_eq!(s["storage"]["ok"], json!(false));
    d.stop().await;

    // The state file deleted.
    std::fs::remove_file(&file).expect("delete");
    let d = Running::start(config.clone(), clock.clone()).await;
    let s = d.status().await;
    assert!(licensed(&s), "{s}");
    assert_eq!(codes(&s), ["state_file_missing"], "{s}");
    assert!(diagnosis_has(&s, "is missing", "fehlt"), "{s}");
    d.stop().await;

    // The sled database deleted: restored from the file.
    std::fs::remove_dir_all(data.join(daemon::cache::DB_DIR)).expect("delete");
    let d = Running::start(config.clone(), clock.clone()).await;
    let s = d.status().await;
    assert!(licensed(&s), "{s}");
    assert_eq!(codes(&s), ["cache_db_lost_state"], "{s}");
    assert!(diagnosis_has(&s, "lost stored state", "verloren"), "{s}");
    d.stop().await;

    // Repaired: the next start is clean.
    let d = Running::start(config.clone(), clock.clone()).await;
    let s = d.status().await;
    assert!(licensed(&s), "{s}");
    assert!(codes(&s).is_empty(), "{s}");
    d.stop().await;

    // Both gone: not silently `not_activated`; the diagnosis says the state is
    // being fetched from the server that lic/licinfo.cfg names.
    std::fs::remove_dir_all(data.join(daemon::cache::DB_DIR)).expect("delete");
    std::fs::remove_file(&file).expect("delete");
    let d = Running::start(config.clone(), clock.clone()).await;
    let s = d.status().await;
    assert_eq!(s["state"], json!("not_activated"), "{s}");
    assert_eq!(
        s["storage"]["recovering_license"],
        json!("1921900019"),
        "{s}"
    );
    assert!(
        diagnosis_has(&s, "is being fetched from the license server", "abgeholt"),
        "{s}"
    );
    d.stop().await;
}

/// Mounts a tmpfs of `size` on `at` (we run as root) and unmounts it when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &std::path::Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).expect("mount point");
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .expect("mount");
        assert!(ok.success(), "mount -t tmpfs needs root");
        Tmpfs(at.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Fills the file system holding `dir` with one file until a write fails.
fn fill(dir: &std::path::Path) -> PathBuf {
    use std::io::Write as _;
    let path = dir.join("FILLER");
    let mut f = std::fs::File::create(&path).expect("filler");
    let block = vec![0xa5u8; 64 * 1024];
    while f.write_all(&block).and_then(|_| f.sync_all()).is_ok() {}
    // What is left is smaller than a block: fill it byte by byte.
    while f
        .write_all(&block[..512])
        .and_then(|_| f.sync_all())
        .is_ok()
    {}
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_shown_the_daemon_answers_from_memory_and_writes_again_when_space_is_back() {
    let dir = soft_host();
    let mnt = dir.path().join("mnt");
    let fs = Tmpfs::mount(&mnt, "16m");
    let data = mnt.join("data");
    copy_dir(&dir.path().join("data"), &data);
    let config = soft_config(dir.path(), &data);
    let clock = SimClock::at(T0.plus_secs(3600));
    let d = Running::start(config.clone(), clock.clone()).await;
    assert_eq!(d.status().await["storage"]["ok"], json!(true));

    let filler = fill(&mnt);
    // A change that must be saved: the runtime starts (the run is persisted).
    let mut runtime = SocketClient::connect(&d.socket).await.expect("connect");
    let v = runtime
        .call(&json!({"cmd": "runtime_started"}))
        .await
        .expect("call");
    assert_eq!(v["ok"], json!(true), "answered from memory: {v}");
    assert_eq!(v["status"]["licensed"], json!(true), "{v}");
    let s = d.status().await;
    assert!(!s["storage"]["write_error"].is_null(), "{s}");
    assert!(
        diagnosis_has(&s, "cannot be saved", "kann nicht gespeichert werden"),
        "{s}"
    );
    assert_eq!(s["runtime"], json!("running"));

    // Space is back: the next tick writes, without a restart.
    std::fs::remove_file(&filler).expect("free space");
    let s = d
        .wait_status("the state written again", |s| {
            s["storage"]["write_error"].is_null()
        })
        .await;
    assert_eq!(s["storage"]["ok"], json!(true), "{s}");
    drop(runtime);
    // The run is on disk in both copies (a restart in this boot continues it).
    let run_on_disk = std::fs::read_to_string(data.join(daemon::cache::STATE_FILE))
        .expect("state file")
        .contains("\"open_run\":{");
    d.stop().await;
    assert!(run_on_disk, "the open run was written once space was back");
    // Both copies agree: a restart finds no damage.
    let d = Running::start(config, clock).await;
    let s = d.status().await;
    assert!(codes(&s).is_empty() && s["licensed"] == json!(true), "{s}");
    d.stop().await;
    drop(fs);
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from)
        .expect("list")
        .filter_map(|e| e.ok())
    {
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).expect("copy");
        }
    }
}

/// Starts the real `promos-licd run` on the soft host in `dir` and waits for its socket.
async fn spawn_binary(dir: &std::path::Path) -> tokio::process::Child {
    let socket = dir.join("licd.sock");
    let child = cli()
        .arg("run")
        .env("PROMOS_LICD_DATA_DIR", dir.join("data"))
        .env("PROMOS_LICD_SOCKET", &socket)
        .env("PROMOS_LICD_PROJECT_DIR", dir.join("project"))
        .env("PROMOS_LICD_TRUSTED_KEYS", key().public().to_string())
        .env("PROMOS_LICD_SERVER", "127.0.0.1:9")
        .env("PROMOS_LICD_DONGLE_BACKEND", "simulated")
        .env("PROMOS_LICD_SIMULATED_DONGLE_FILE", dir.join("NO-DONGLE"))
        .env("PROMOS_LICD_TEST_HARDWARE_ID", HWID)
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let deadline = tokio::time::Instant::now() + WAIT;
    // A socket file of the killed daemon may still be there: wait for an answer.
    while SocketClient::connect(&socket).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "socket never came up"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child
}

/// Power cut right after the answer: SIGKILL, and the state on disk is the
/// acknowledged one. 200 rounds, alternating a run's start and its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_right_after_runtime_started_or_stopped_keeps_the_acknowledged_run() {
    // About 20 s per 100 rounds here (mostly the debug binary's start).
    const ROUNDS: usize = 200;
    let dir = soft_host();
    let trusted = TrustedKeys::with([key().public()]);
    let hwid: keys::HardwareId = HWID.parse().expect("hwid");
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    for round in 0..ROUNDS {
        let mut child = spawn_binary(dir.path()).await;
        let mut c = SocketClient::connect(&dir.path().join("licd.sock"))
            .await
            .expect("connect");
        let start = c
            .call(&json!({"cmd": "runtime_started"}))
            .await
            .expect("call");
        assert_eq!(start["ok"], json!(true), "round {round}: {start}");
        let running = round % 2 == 0;
        if !running {
            let stop = c
                .call(&json!({"cmd": "runtime_stopped"}))
                .await
                .expect("call");
            assert_eq!(stop["ok"], json!(true), "round {round}: {stop}");
        }
        child.start_kill().expect("SIGKILL");
        child.wait().await.expect("wait");
        drop(c);
        let cache = daemon::cache::Cache::open(&dir.path().join("data")).expect("open");
        let (p, _) = cache.load(&trusted, &hwid);
        assert!(
            cache.problems().is_empty(),
            "round {round}: {:?}",
            cache.problems()
        );
        assert_eq!(p.grant.map(|g| g.serial), Some(7), "round {round}");
        match (&p.open_run, running) {
            (Some(r), true) => assert_eq!(r.boot_id, boot.trim(), "round {round}"),
            (None, false) => {}
            (other, _) => {
                panic!("round {round}: runtime running={running} acknowledged, on disk {other:?}")
            }
        }
    }
}

// ---- The socket protocol as a visible diff (issue 16) ----

/// Compares `line` with `daemon/tests/snapshots/<name>.json`; with
/// `PROMOS_LICD_UPDATE_SNAPSHOTS=1` it writes the file instead (then review
/// the diff: every change there is a change clients see).
fn snapshot(name: &str, line: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(format!("{name}.json"));
    if std::env::var_os("PROMOS_LICD_UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().expect("dir")).expect("snapshots dir");
        std::fs::write(&path, format!("{line}\n")).expect("write snapshot");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with PROMOS_LICD_UPDATE_SNAPSHOTS=1 to create it",
            path.display()
        )
    });
    assert_eq!(
        line,
        expected.trim_end_matches('\n'),
        "the answer {name} changed (PROMOS_LICD_UPDATE_SNAPSHOTS=1 rewrites {})",
        path.display()
    );
}

/// Sends `request` (a raw line) and snapshots the answer line.
async fn answer_snapshot(c: &mut SocketClient, name: &str, request: &str) -> Value {
    c.send_line(request).await.expect("send");
    let line = c.next_line().await.expect("answer");
    snapshot(name, &line);
    serde_json::from_str(&line).expect("an answer is JSON")
}

async fn event_snapshot(c: &mut SocketClient, name: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let line = tokio::time::timeout(left, c.next_line())
            .await
            .unwrap_or_else(|_| panic!("no {name} event"))
            .expect("read");
        let v: Value = serde_json::from_str(&line).expect("an event is JSON");
        if v["event"] == json!(name) {
            snapshot(&format!("event_{name}"), &line);
            return;
        }
    }
}

/// Every answer and event a hard-dongle host gives, byte for byte, as the
/// runtime sees them on the socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_socket_answer_and_event_matches_its_snapshot() {
    let mut d = Daemon::hard(2).await;
    // The wall clock ahead of the daemon's monotonic anchor: `now` in the
    // answers stays the same however long the test takes.
    d.clock.set(T0.plus_secs(1000));
    d.wait_status("the clock moved", |s| {
        s["now"] == json!(T0.plus_secs(1000).to_string())
    })
    .await;
    let mut c = d.client().await;
    answer_snapshot(&mut c, "hwid", r#"{"cmd":"hwid","id":1}"#).await;
    answer_snapshot(&mut c, "status_hard_dongle", r#"{"cmd":"status"}"#).await;
    answer_snapshot(&mut c, "seats", r#"{"cmd":"seats","id":"s"}"#).await;
    answer_snapshot(
        &mut c,
        "acquire_seat",
        r#"{"cmd":"acquire_seat","program":"pwa","id":2}"#,
    )
    .await;
    answer_snapshot(
        &mut c,
        "acquire_seat_ge",
        r#"{"cmd":"acquire_seat","program":"ge"}"#,
    )
    .await;
    answer_snapshot(
        &mut c,
        "acquire_seat_none_free",
        r#"{"cmd":"acquire_seat","program":"ge","id":3}"#,
    )
    .await;
    answer_snapshot(
        &mut c,
        "release_seat",
        r#"{"cmd":"release_seat","program":"pwa"}"#,
    )
    .await;
    answer_snapshot(
        &mut c,
        "release_seat_none_held",
        r#"{"cmd":"release_seat","program":"pwa","id":4}"#,
    )
    .await;
    answer_snapshot(
        &mut c,
        "runtime_started",
        r#"{"cmd":"runtime_started","id":5}"#,
    )
    .await;
    let mut other = d.client().await;
    answer_snapshot(
        &mut other,
        "runtime_already_running",
        r#"{"cmd":"runtime_started"}"#,
    )
    .await;
    answer_snapshot(
        &mut other,
        "runtime_stopped_not_here",
        r#"{"cmd":"runtime_stopped"}"#,
    )
    .await;
    answer_snapshot(
        &mut c,
        "runtime_stopped",
        r#"{"cmd":"runtime_stopped","id":6}"#,
    )
    .await;
    answer_snapshot(
        &mut c,
        "check_now_not_activated",
        r#"{"cmd":"check_now","id":7}"#,
    )
    .await;
    answer_snapshot(
        &mut c,
        "activate_bad_license_number",
        r#"{"cmd":"activate","license_number":"12","token":"t"}"#,
    )
    .await;
    answer_snapshot(&mut c, "bad_request_not_json", "hello").await;
    answer_snapshot(&mut c, "bad_request_not_an_object", "[1]").await;
    answer_snapshot(
        &mut c,
        "bad_request_unknown_cmd",
        r#"{"cmd":"fly","id":[1,"a"]}"#,
    )
    .await;
    answer_snapshot(&mut c, "subscribe", r#"{"cmd":"subscribe","id":8}"#).await;

    std::fs::remove_file(&d.dongle).expect("unplug");
    event_snapshot(&mut c, "warning_begins").await;
    event_snapshot(&mut c, "stop_scheduled").await;
    std::fs::write(&d.dongle, "DG-0001").expect("plug");
    event_snapshot(&mut c, "stop_cancelled").await;
    d.wait_status("licensed again", |s| s["state"] == json!("licensed"))
        .await;
    std::fs::remove_file(&d.dongle).expect("unplug");
    d.wait_status("grace", |s| s["state"] == json!("dongle_removed"))
        .await;
    d.clock.advance_secs(3601);
    event_snapshot(&mut c, "license_ended").await;
    answer_snapshot(
        &mut c,
        "status_dongle_missing",
        r#"{"cmd":"status","id":9}"#,
    )
    .await;
    std::fs::write(&d.dongle, "DG-0001").expect("plug");
    event_snapshot(&mut c, "license_restored").await;

    let mut long = d.client().await;
    // The daemon may close before it has read all of it.
    let _ = long
        .send_line(&"x".repeat(daemon::socket::MAX_LINE + 10))
        .await;
    snapshot("line_too_long", &long.next_line().await.expect("answer"));
    d.stop().await;
}

// ---- Timers from the state machine: stops on time, not at the next tick ----

/// A wall clock on tokio's (paused) time: `base` plus the tokio time since
/// `start`. With `start_paused` tokio jumps to the next timer whenever
/// everything waits, so these tests walk hours in milliseconds, and the
/// daemon sees time pass only by sleeping, exactly as in the field.
#[derive(Debug)]
struct TokioClock {
    base: UnixTime,
    start: tokio::time::Instant,
}

impl keys::Clock for TokioClock {
    fn now(&self) -> UnixTime {
        self.base.plus_secs(self.start.elapsed().as_secs())
    }
}

impl TokioClock {
    /// The tokio instant at which the wall clock reads `t`.
    fn instant_of(&self, t: UnixTime) -> tokio::time::Instant {
        self.start + Duration::from_secs(t.since(self.base))
    }
}

/// Starts `daemon::run` on `config` with `clock`; the stop sender and task.
async fn start_on(
    config: Config,
    clock: Arc<dyn keys::Clock>,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), daemon::service::RunError>>,
) {
    let socket = config.socket_path.clone();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(daemon::run(config, clock, async move {
        let _ = rx.await;
    }));
    while SocketClient::connect(&socket).await.is_err() {
        assert!(!task.is_finished(), "daemon ended at start");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (stop, task)
}

/// Waits (on tokio time, at most a day) for event `name`; returns it and when it came.
async fn event_at(c: &mut SocketClient, name: &str) -> (Value, tokio::time::Instant) {
    loop {
        let v = tokio::time::timeout(Duration::from_secs(86_400), c.next())
            .await
            .unwrap_or_else(|_| panic!("no {name} event within a day"))
            .expect("read");
        if v["event"] == json!(name) {
            return (v, tokio::time::Instant::now());
        }
    }
}

/// How late `came` is after the moment the wall clock reads `at` (panics if early).
fn lateness(clock: &TokioClock, at: &Value, came: tokio::time::Instant) -> Duration {
    let at = UnixTime(at.as_u64().expect("unix seconds"));
    let due = clock.instant_of(at);
    assert!(came >= due, "stopped {:?} early", due - came);
    came - due
}

#[tokio::test(start_paused = true)]
async fn the_dongle_hour_ends_within_a_second_with_the_default_tick() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = dir.path().join("project");
    std::fs::create_dir_all(project.join("lic")).expect("lic");
    std::fs::write(project.join("lic/promos.json"), hard_license(1)).expect("license");
    let dongle = dir.path().join("SIMULATED-DONGLE");
    std::fs::write(&dongle, "DG-0001\n").expect("dongle");
    let mut c = Config::with_defaults(&dir.path().join("data"));
    c.socket_path = dir.path().join("licd.sock");
    c.project_dir = Some(project);
    c.trusted_keys = TrustedKeys::with([key().public()]);
    assert_eq!(c.tick, Duration::from_secs(30), "the default tick");
    c.dongle = DongleBackend::Simulated {
        file: dongle.clone(),
    };
    c.test_hardware_id = Some(HWID.parse().expect("hwid"));
    let clock = Arc::new(TokioClock {
        base: T0,
        start: tokio::time::Instant::now(),
    });
    let (stop, task) = start_on(c.clone(), clock.clone()).await;
    let mut sub = SocketClient::connect(&c.socket_path)
        .await
        .expect("connect");
    assert_eq!(
        sub.call(&json!({"cmd": "subscribe"}))
            .await
            .expect("subscribe")["ok"],
        json!(true)
    );
    // Twice. The dongle hour counts from the scan that last saw the dongle,
    // so it ends on the scan grid: this one would be on time with the old
    // tick-only loop as well; the grace-period test below is the one the
    // old loop fails (17 s late).
    for round in 0..2 {
        tokio::time::sleep(Duration::from_secs(17 + round * 7)).await;
        std::fs::remove_file(&dongle).expect("unplug");
        let (scheduled, _) = event_at(&mut sub, "stop_scheduled").await;
        let (ended, came) = event_at(&mut sub, "license_ended").await;
        assert_eq!(ended["reason_code"], json!("dongle_missing"), "{ended}");
        let late = lateness(&clock, &scheduled["at"], came);
        assert!(
            late <= Duration::from_secs(1),
            "the dongle hour ended {late:?} late"
        );
        std::fs::write(&dongle, "DG-0001").expect("plug");
        event_at(&mut sub, "license_restored").await;
    }
    let _ = stop.send(());
    task.await.expect("join").expect("clean stop");
}

#[tokio::test(start_paused = true)]
async fn the_end_of_the_grace_periods_and_of_a_one_hour_run_come_within_a_second() {
    let dir = soft_host();
    let mut c = soft_config(dir.path(), &dir.path().join("data"));
    c.tick = Duration::from_secs(30);
    // The last check was at T0: the grace periods end at T0 + 30 days.
    let grace_end = T0.plus_days(30);
    let clock = Arc::new(TokioClock {
        base: UnixTime(grace_end.0 - 2 * 3600 - 13),
        start: tokio::time::Instant::now(),
    });
    let (stop, task) = start_on(c.clone(), clock.clone()).await;
    let mut sub = SocketClient::connect(&c.socket_path)
        .await
        .expect("connect");
    assert_eq!(
        sub.call(&json!({"cmd": "subscribe"}))
            .await
            .expect("subscribe")["ok"],
        json!(true)
    );
    let mut rt = SocketClient::connect(&c.socket_path)
        .await
        .expect("connect");
    let v = rt
        .call(&json!({"cmd": "runtime_started"}))
        .await
        .expect("start");
    assert_eq!(v["status"]["state"], json!("server_unreachable"), "{v}");
    assert_eq!(v["status"]["stop_at"], json!(grace_end.secs()), "{v}");
    let (ended, came) = event_at(&mut sub, "license_ended").await;
    assert_eq!(
        ended["reason_code"],
        json!("server_unreachable_stop"),
        "{ended}"
    );
    let late = lateness(&clock, &json!(grace_end.secs()), came);
    assert!(
        late <= Duration::from_secs(1),
        "the grace periods ended {late:?} late"
    );

    // The runtime stops and starts again: 1 hour, on time too.
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(
        rt.call(&json!({"cmd": "runtime_stopped"}))
            .await
            .expect("stop")["ok"],
        json!(true)
    );
    let v = rt
        .call(&json!({"cmd": "runtime_started"}))
        .await
        .expect("start");
    assert_eq!(v["status"]["state"], json!("offline_start_hour"), "{v}");
    let at = v["status"]["stop_at"].clone();
    let (ended, came) = event_at(&mut sub, "license_ended").await;
    assert_eq!(
        ended["reason_code"],
        json!("server_unreachable_stop"),
        "{ended}"
    );
    let late = lateness(&clock, &at, came);
    assert!(
        late <= Duration::from_secs(1),
        "the 1-hour run ended {late:?} late"
    );
    let _ = stop.send(());
    task.await.expect("join").expect("clean stop");
}

#[tokio::test(start_paused = true)]
async fn an_engineering_run_ends_within_a_second_of_its_24_hours() {
    let k = key();
    let grant = Signed::sign(
        &LicenseGrant {
            format: GRANT_FORMAT,
            license_number: LicenseNumber::from_body(192_190_001).expect("n"),
            license_type: LicenseType::Engineering,
            protection: Protection::Engineering,
            license_data: LicenseData {
                name: "Muster AG".into(),
                postcode: "3000".into(),
                city: "Bern".into(),
            },
            binding: Binding::HardwareId(HWID.parse().expect("hwid")),
            entitlements: Entitlements::engineering(),
            issued_at: T0,
            valid_until: Some(T0.plus_days(3 * 365)),
            serial: 7,
            key_id: k.key_id(),
        },
        &k,
    );
    let dir = online_host(grant);
    let mut c = soft_config(dir.path(), &dir.path().join("data"));
    // An hour: the stop does not wait for a tick at all (and 24 simulated
    // hours of 30 s scans, each written to disk, take real seconds).
    c.tick = Duration::from_secs(3600);
    let clock = Arc::new(TokioClock {
        base: T0.plus_secs(3600),
        start: tokio::time::Instant::now(),
    });
    let (stop, task) = start_on(c.clone(), clock.clone()).await;
    let mut sub = SocketClient::connect(&c.socket_path)
        .await
        .expect("connect");
    assert_eq!(
        sub.call(&json!({"cmd": "subscribe"}))
            .await
            .expect("subscribe")["ok"],
        json!(true)
    );
    // Not on the minute: the run's end falls between two ticks.
    tokio::time::sleep(Duration::from_millis(13_700)).await;
    let mut rt = SocketClient::connect(&c.socket_path)
        .await
        .expect("connect");
    let before = keys::Clock::now(clock.as_ref());
    let v = rt
        .call(&json!({"cmd": "runtime_started"}))
        .await
        .expect("start");
    assert_eq!(v["status"]["state"], json!("licensed"), "{v}");
    let at = v["status"]["stop_at"].clone();
    let run = at.as_u64().expect("stop_at") - before.0;
    assert!(
        (24 * 3600..=24 * 3600 + 1).contains(&run),
        "24 hours from the start: {run} s"
    );
    let (ended, came) = event_at(&mut sub, "license_ended").await;
    assert_eq!(
        ended["reason_code"],
        json!("engineering_run_over"),
        "{ended}"
    );
    let late = lateness(&clock, &at, came);
    assert!(
        late <= Duration::from_secs(1),
        "the 24-hour run ended {late:?} late"
    );
    let _ = stop.send(());
    task.await.expect("join").expect("clean stop");
}

// ---- Checks and activation by file (issue 19) ----

/// `promos-licd offline request` / `offline apply` as a person on a plant host
/// without internet uses them: the messages in the locale's language, the
/// failures too, the exit codes (0 done, 2 answer refused with nothing
/// changed, 1 the file could not be read or written), and the socket answers
/// behind them as snapshots (the request file's text holds a random nonce and
/// is shown as `<file>`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_offline_request_and_apply_say_what_happened_in_the_locales_language() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Running::start(
        soft_config(dir.path(), &dir.path().join("data")),
        SimClock::at(T0),
    )
    .await;
    let number = LicenseNumber::from_body(192_190_001).expect("n");
    let cli_run = |lang: &'static str, args: Vec<String>| {
        let socket = d.socket.clone();
        async move {
            cli_in(lang)
                .args(&args)
                .arg("--socket")
                .arg(&socket)
                .output()
                .await
                .expect("promos-licd")
        }
    };
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let offline = |lang: &'static str, args: &[&str]| {
        let args = std::iter::once("offline").chain(args.iter().copied());
        cli_run(lang, args.map(str::to_owned).collect())
    };

    // Not activated and no number: the socket says how, and so does the CLI.
    let v = d.call(json!({"cmd": "offline_request", "id": 1})).await;
    snapshot("offline_request_no_license", &v.to_string());
    let out = offline("en_US.UTF-8", &["request"]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("request file not written: this host holds no license")
            && stderr.contains("--license NUMBER"),
        "{stderr}"
    );
    let out = offline("de_CH.UTF-8", &["request"]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("Anfragedatei nicht geschrieben: dieser Computer hat keine Lizenz")
            && stderr.contains("--license NUMMER"),
        "{stderr}"
    );
    // A number that is none, and a place the file cannot go: said in German too.
    let out = offline("de_DE.UTF-8", &["request", "--license", "12345"]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        text(&out.stderr).contains("Anfragedatei nicht geschrieben: die Lizenznummer ist ungültig"),
        "{out:?}"
    );
    let nowhere = dir
        .path()
        .join("no-such-dir/anfrage.txt")
        .display()
        .to_string();
    let out = offline(
        "de_DE.UTF-8",
        &["request", "--license", number.as_str(), "--out", &nowhere],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        text(&out.stderr).contains(&format!(
            "die Anfragedatei {nowhere} kann nicht geschrieben werden"
        )),
        "{out:?}"
    );

    // An activation request, written where asked, in German.
    let file = dir.path().join("anfrage.txt");
    let out = offline(
        "de_CH.UTF-8",
        &[
            "request",
            "--license",
            number.as_str(),
            "--out",
            &file.display().to_string(),
        ],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with(&format!("Anfragedatei geschrieben: {}\n", file.display()))
            && stdout.contains("\"Offline-Prüfung\"")
            && stdout.contains("promos-licd offline apply DATEI"),
        "{stdout}"
    );
    let request = wire::offline::read_request(&std::fs::read_to_string(&file).expect("file"))
        .expect("a request file");
    assert_eq!(request.kind(), "activation");
    assert_eq!(request.license_number(), &number);
    // The socket answer behind it (the text masked: its nonce is random).
    let mut v = d
        .call(json!({"cmd": "offline_request", "id": 2, "license_number": number.to_string()}))
        .await;
    assert!(v["file"]
        .as_str()
        .is_some_and(|f| f.contains("Kind: activation")));
    v["file"] = json!("<file>");
    snapshot("offline_request", &v.to_string());

    // The server's answer to the first request (signed as the server signs it).
    let receipt = Signed::sign(
        &wire::CheckReceipt {
            license_number: number.clone(),
            hardware_id: HWID.parse().expect("hwid"),
            nonce: request.nonce(),
            server_time: T0,
            next_check_due: T0.plus_secs(UnixTime::DAY),
            current_serial: 7,
        },
        &key(),
    );
    let answer = wire::offline::write_answer(
        &request,
        &wire::Response::Activated {
            grant: soft_grant(),
            receipt,
        },
    )
    .expect("answer");
    let answer_file = dir.path().join("antwort.txt");
    std::fs::write(&answer_file, &answer).expect("write");
    let answer_path = answer_file.display().to_string();
    let apply = |lang: &'static str| offline(lang, &["apply", &answer_path]);
    let out = apply("en_GB.UTF-8").await;
    assert!(out.status.success(), "{out:?}");
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("Answer file applied: this computer is activated.\n"),
        "{stdout}"
    );
    assert!(stdout.contains("licensed"), "{stdout}");
    // The same answer again: exit code 2, nothing changed, the reason named.
    let out = apply("de_DE.UTF-8").await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("Antwortdatei nicht übernommen, nichts wurde geändert: auf diese Antwort wartet dieser Rechner nicht: sie wurde schon übernommen"),
        "{stderr}"
    );
    let out = apply("en_US.UTF-8").await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        text(&out.stderr).starts_with("Answer file not applied, nothing was changed: this answer answers no request file this host is waiting for"),
        "{out:?}"
    );
    let v = d
        .call(json!({"cmd": "offline_apply", "id": 3, "file": answer}))
        .await;
    snapshot("offline_apply_not_waiting", &v.to_string());
    // Not an answer file at all; and no file.
    let v = d
        .call(json!({"cmd": "offline_apply", "id": 4, "file": "hello"}))
        .await;
    snapshot("offline_apply_bad_file", &v.to_string());
    let none = dir.path().join("none.txt").display().to_string();
    let out = offline("en_US.UTF-8", &["apply", &none]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        text(&out.stderr).contains("reading the answer file"),
        "{out:?}"
    );
    let out = offline("de_CH.UTF-8", &["apply", &none]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        text(&out.stderr).contains(&format!(
            "die Antwortdatei {none} kann nicht gelesen werden"
        )),
        "{out:?}"
    );
    assert_eq!(d.status().await["state"], json!("licensed"));
    d.stop().await;
}
