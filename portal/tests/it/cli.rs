//! The `pls` binary: admin commands on a stopped server's data directory, the same
//! commands through the admin socket of a running server, backup and restore,
//! first-start output and clean shutdown on SIGTERM.

use crate::util::{fails, ok, pls};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const CREATE: &[&str] = &[
    "admin",
    "--json",
    "create-license",
    "--type",
    "standard",
    "--driver",
    "saia_pcd=6000",
    "--driver",
    "modbus=10000",
    "--pwa-users",
    "5",
    "--company",
    "MST System Solutions GmbH",
    "--first-name",
    "Christoph",
    "--last-name",
    "Müller",
    "--data-name",
    "Christoph Müller",
    "--data-postcode",
    "63457",
    "--data-city",
    "Hanau",
];

fn create(data: &Path, extra: &[&str]) -> (String, String) {
    let mut args = CREATE.to_vec();
    args.extend_from_slice(extra);
    let json: serde_json::Value = serde_json::from_str(&ok(&pls(data, &args))).expect("json");
    (
        json["license"]["number"]
            .as_str()
            .expect("number")
            .to_owned(),
        json["token"].as_str().expect("token").to_owned(),
    )
}

#[test]
fn admin_commands_without_a_running_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (number, token) = create(&data, &[]);
    assert_eq!(token.len(), 32);

    let show = ok(&pls(&data, &["admin", "show", &number]));
    assert!(show.contains(&token), "{show}");
    assert!(show.contains("none active"), "unpaid: {show}");
    assert!(show.contains("ordered"), "{show}");
    // mark-paid says what changed, never the token (issue 18).
    let paid = ok(&pls(&data, &["admin", "mark-paid", &number]));
    assert!(!paid.contains(&token), "{paid}");
    assert!(
        paid.contains(&format!("marked paid: {number}#1 (new), activated")),
        "{paid}"
    );
    assert!(paid.contains("SAIA PCD      0 -> 6100"), "{paid}");
    assert!(paid.contains("pWA users     0 -> 5"), "{paid}");
    assert!(paid.contains("grant:        none yet"), "{paid}");
    let show = ok(&pls(&data, &["admin", "show", &number]));
    assert!(show.contains("SAIA PCD 6100"), "{show}");
    assert!(show.contains("Modbus 10010"), "{show}");
    assert!(show.contains("pWA users 5"), "{show}");
    assert!(ok(&pls(&data, &["admin", "list"])).contains(&number));

    // Clear errors for wrong input.
    let mut typo = number.clone().into_bytes();
    typo.swap(2, 3);
    if typo != number.as_bytes() {
        let err = fails(&pls(
            &data,
            &["admin", "show", std::str::from_utf8(&typo).expect("ascii")],
        ));
        assert!(err.contains("check digit"), "{err}");
    }
    let err = fails(&pls(&data, &["admin", "show", "1234567890"]));
    assert!(
        err.contains("check digit") || err.contains("no license"),
        "{err}"
    );
    let unknown = keys::LicenseNumber::from_body(111_111_111)
        .expect("number")
        .to_string();
    assert!(fails(&pls(&data, &["admin", "reset", &unknown])).contains("there is no license"));
    assert!(fails(&pls(&data, &["admin", "reset", &number])).contains("not bound"));
    assert!(
        fails(&pls(&data, &["admin", "mark-paid", &number])).contains("no order awaiting payment")
    );
    assert!(
        fails(&pls(&data, &["admin", "set-dongle", &number, "DG-1"]))
            .contains("not a hardware-dongle")
    );
    let err = fails(&pls(&data, &[CREATE, &["--driver", "saia=5"]].concat()));
    assert!(
        err.contains("unknown driver") && err.contains("saia_pcd"),
        "{err}"
    );
    assert!(fails(&pls(&data, &["admin", "trust", "nobody@example.com"])).contains("no account"));

    // Accounts and trust: a trusted customer's order is active at once.
    ok(&pls(
        &data,
        &[
            "admin",
            "create-account",
            "info@mst.ch",
            "--company",
            "MST",
            "--first-name",
            "A",
            "--last-name",
            "B",
        ],
    ));
    ok(&pls(&data, &["admin", "trust", "info@mst.ch"]));
    let (trusted, _) = create(&data, &["--account", "info@mst.ch"]);
    assert!(ok(&pls(&data, &["admin", "show", &trusted])).contains("SAIA PCD 6100"));

    let audit = ok(&pls(&data, &["admin", "audit", &number]));
    assert!(
        audit.contains("license.created") && audit.contains("mutation.activated"),
        "{audit}"
    );
    assert!(
        !audit.contains(&token),
        "the audit trail never shows tokens"
    );
    assert!(ok(&pls(&data, &["admin", "verify"])).contains("consistent"));
    assert!(ok(&pls(&data, &["admin", "identity"])).contains("promos-ed25519-public:"));
}

#[test]
fn backup_and_restore_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (number, _) = create(&data, &["--paid"]);
    let backup = dir.path().join("pls.backup");
    let out = ok(&pls(
        &data,
        &["admin", "backup", backup.to_str().expect("path")],
    ));
    assert!(out.contains("1 licenses"), "{out}");

    // Restore into a fresh data directory (same signing key copied by the
    // operator: `verify` checks every grant against this server's key).
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).expect("mkdir");
    for f in [
        "signing.key",
        "signing.pub",
        "quic-cert.der",
        "quic-key.der",
    ] {
        std::fs::copy(data.join(f), other.join(f)).unwrap_or_else(|e| panic!("copy {f}: {e}"));
    }
    ok(&pls(
        &other,
        &["admin", "restore", backup.to_str().expect("path")],
    ));
    assert!(ok(&pls(&other, &["admin", "show", &number])).contains("SAIA PCD 6100"));
    assert!(ok(&pls(&other, &["admin", "verify"])).contains("consistent"));

    // Restoring over an existing database keeps the old one aside.
    ok(&pls(
        &data,
        &["admin", "restore", backup.to_str().expect("path")],
    ));
    let aside = std::fs::read_dir(&data)
        .expect("ls")
        .filter_map(|e| e.ok())
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("pls.sqlite3.before-restore-")
        });
    assert!(aside);

    // A damaged backup is refused before anything is written.
    let bytes = std::fs::read(&backup).expect("read");
    let mut damaged = bytes.clone();
    for b in &mut damaged[4096..8192] {
        *b ^= 0x5a;
    }
    std::fs::write(&backup, &damaged).expect("write");
    let third = dir.path().join("third");
    let err = fails(&pls(
        &third,
        &["admin", "restore", backup.to_str().expect("path")],
    ));
    assert!(err.contains("not a usable pls backup"), "{err}");
    assert!(!third.join("pls.sqlite3").exists(), "nothing written");
    std::fs::write(&backup, &bytes[..bytes.len() / 2]).expect("truncate");
    assert!(!pls(
        &third,
        &["admin", "restore", backup.to_str().expect("path")]
    )
    .status
    .success());
}

#[test]
fn serve_prints_identity_answers_admin_socket_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = Command::new(env!("CARGO_BIN_EXE_pls"))
        .arg("--data-dir")
        .arg(&data)
        .arg("serve")
        .env("PLS_QUIC_LISTEN", "127.0.0.1:0")
        .env("PLS_HTTP_LISTEN", "127.0.0.1:0")
        .env("PLS_METRICS_LISTEN", "127.0.0.1:0")
        .env("PLS_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn server");
    let socket = data.join("admin.sock");
    // Wait for the server to be up (bounded, so a broken server fails the test).
    let mut waited = 0;
    while !socket.exists() {
        assert!(waited < 600, "the server did not create its admin socket");
        std::thread::sleep(Duration::from_millis(50));
        waited += 1;
    }
    let (number, _) = create(&data, &["--paid"]);
    assert!(ok(&pls(&data, &["admin", "show", &number])).contains("SAIA PCD 6100"));
    // The running server names the port it really listens on (bound to 0 here).
    let toml = ok(&pls(&data, &["admin", "identity", "--daemon-config"]));
    let port = toml
        .lines()
        .find_map(|l| l.strip_prefix("server = \"localhost:"))
        .expect("the server line");
    assert_ne!(port.trim_end_matches('"'), "0", "{toml}");
    let backup = dir.path().join("live.backup");
    ok(&pls(
        &data,
        &["admin", "backup", backup.to_str().expect("path")],
    ));
    assert!(fails(&pls(
        &data,
        &["admin", "restore", backup.to_str().expect("path")]
    ))
    .contains("stop it"));

    let status = Command::new("kill")
        .arg("-TERM")
        .arg(server.id().to_string())
        .status()
        .expect("kill");
    assert!(status.success());
    let out = server.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "clean exit on SIGTERM: {:?}",
        out.status
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("promos-ed25519-public:"), "{stdout}");
    assert!(stdout.contains("certificate SHA-256"), "{stdout}");
    assert!(!socket.exists(), "the admin socket is removed on shutdown");

    // After the server stopped, the CLI works on the database directly.
    assert!(ok(&pls(&data, &["admin", "show", &number])).contains("SAIA PCD 6100"));
}

/// `pls` with the data directory and a server name, on a stopped server.
fn pls_named(data: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pls"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env("PLS_QUIC_LISTEN", "0.0.0.0:4433")
        .env("PLS_QUIC_SERVER_NAMES", "license.example.com,10.0.0.5")
        .env("PLS_HTTP_LISTEN", "127.0.0.1:0")
        .env("PLS_METRICS_LISTEN", "127.0.0.1:0")
        .output()
        .expect("run pls")
}

#[test]
fn identity_prints_the_daemon_configuration_without_the_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (number, token) = create(&data, &["--paid"]);
    let identity: serde_json::Value =
        serde_json::from_str(&ok(&pls_named(&data, &["admin", "--json", "identity"])))
            .expect("json");
    let notice = identity["notice"].as_str().expect("notice");
    let field = |label: &str| {
        notice
            .lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .expect(label)
            .trim()
            .to_owned()
    };
    let (key, pin) = (field("server public key:"), field("certificate SHA-256:"));

    let toml = ok(&pls_named(&data, &["admin", "identity", "--daemon-config"]));
    assert!(toml.starts_with("# promos-licd.toml"), "{toml}");
    for line in [
        "server = \"license.example.com:4433\"".to_owned(),
        "#server = \"10.0.0.5:4433\"".to_owned(),
        format!("server_cert_sha256 = \"{pin}\""),
        format!("trusted_keys = [\"{key}\"]"),
    ] {
        assert!(toml.lines().any(|l| l == line), "no {line:?} in\n{toml}");
    }
    assert!(!toml.contains("license_number"), "{toml}");

    let with = ok(&pls_named(
        &data,
        &["admin", "identity", "--daemon-config", "--license", &number],
    ));
    assert!(
        with.lines()
            .any(|l| l == format!("license_number = \"{number}\"")),
        "{with}"
    );
    assert!(!with.contains(&token), "never the token: {with}");
    assert!(with.starts_with(&toml), "the same file, plus the number");
    let json: serde_json::Value = serde_json::from_str(&ok(&pls_named(
        &data,
        &[
            "admin",
            "--json",
            "identity",
            "--daemon-config",
            "--license",
            &number,
        ],
    )))
    .expect("json");
    assert_eq!(json["toml"].as_str(), Some(with.as_str()));
    assert_eq!(json["server"], "license.example.com:4433");

    let unknown = keys::LicenseNumber::from_body(111_111_111)
        .expect("number")
        .to_string();
    let err = fails(&pls_named(
        &data,
        &[
            "admin",
            "identity",
            "--daemon-config",
            "--license",
            &unknown,
        ],
    ));
    assert!(err.contains("no license"), "{err}");
    let err = fails(&pls_named(
        &data,
        &["admin", "identity", "--license", &number],
    ));
    assert!(err.contains("--daemon-config"), "{err}");
}

#[test]
fn export_license_writes_the_portals_license_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (soft, _) = create(&data, &["--paid"]);
    let (hard, _) = create(&data, &["--paid", "--protection", "hard-dongle"]);
    let err = fails(&pls(&data, &["admin", "export-license", &soft]));
    assert!(err.contains("not a hardware-dongle license"), "{err}");
    let err = fails(&pls(&data, &["admin", "export-license", &hard]));
    assert!(
        err.contains("no dongle serial") && err.contains("pls admin set-dongle"),
        "{err}"
    );
    let unknown = keys::LicenseNumber::from_body(111_111_111)
        .expect("number")
        .to_string();
    let err = fails(&pls(&data, &["admin", "export-license", &unknown]));
    assert!(err.contains("no license"), "{err}");
    let err = fails(&pls(&data, &["admin", "export-license", "12345"]));
    assert!(
        err.contains("10 digits") || err.contains("license number"),
        "{err}"
    );

    ok(&pls(&data, &["admin", "set-dongle", &hard, "MST-4711"]));
    let out = pls(&data, &["admin", "export-license", &hard]);
    let stdout = ok(&out);
    let key = keys::PublicKey::load(&data.join("signing.pub")).expect("public key");
    let grant = keys::file::parse(stdout.as_bytes(), &keys::TrustedKeys::with([key]))
        .expect("a valid license file, byte for byte");
    assert_eq!(grant.license_number.to_string(), hard);

    // To a file: replaced atomically, the same bytes.
    let file = dir.path().join(format!("{hard}.json"));
    std::fs::write(&file, "old").expect("write");
    ok(&pls(
        &data,
        &[
            "admin",
            "export-license",
            &hard,
            file.to_str().expect("path"),
        ],
    ));
    assert_eq!(std::fs::read_to_string(&file).expect("read"), stdout);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains("tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
