//! Snapshots of the answers and events a hard-dongle daemon cannot give in
//! `daemon/tests/daemon.rs` (a soft-dongle status, a check that succeeded,
//! a refused activation, a new grant), and the README's tables against the types.

use super::*;
use crate::service::CheckOutcome;
use keys::Driver;

/// Compares `line` with `daemon/tests/snapshots/<name>.json` (the same files
/// and the same `PROMOS_LICD_UPDATE_SNAPSHOTS=1` as the socket test).
fn snapshot(name: &str, line: &[u8]) {
    let line = std::str::from_utf8(line)
        .expect("utf-8")
        .trim_end_matches('\n');
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(format!("{name}.json"));
    if std::env::var_os("PROMOS_LICD_UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, format!("{line}\n")).expect("write snapshot");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; PROMOS_LICD_UPDATE_SNAPSHOTS=1 creates it",
            path.display()
        )
    });
    assert_eq!(
        line,
        expected.trim_end_matches('\n'),
        "{name} changed (PROMOS_LICD_UPDATE_SNAPSHOTS=1 rewrites it)"
    );
}

fn text(de: &str, en: &str) -> Text {
    Text {
        de: de.into(),
        en: en.into(),
    }
}

/// A soft-dongle host 12 days after its last check: warning, stop scheduled,
/// every optional field filled.
pub(crate) fn example_status() -> Status {
    let mut e = keys::Entitlements::standard_base();
    e.drivers.insert(Driver::Modbus, 10_010);
    e.malm.insert(MalmModule::Email);
    e.pwa_users = 5;
    let warning = text(
        "Der Lizenzserver ist nicht erreichbar (letzte Prüfung 2026-11-29T10:00:00Z). ProMoS wird am 2026-12-29T10:00:00Z beendet, wenn bis dahin keine Verbindung zustande kommt.",
        "The license server is not available (last check 2026-11-29T10:00:00Z). ProMoS will be stopped at 2026-12-29T10:00:00Z unless a connection succeeds before then.",
    );
    Status {
        diagnosis: vec![text("Diagnose", "diagnosis")],
        entitlements: Some((&e).into()),
        grant_serial: Some(3),
        hardware_id: "502c649d1171ad2e8705074ce97791db".into(),
        last_check: Some("2026-11-29T10:00:00Z".into()),
        last_check_failure: Some("timed out".into()),
        last_check_unix: Some(1_795_946_400),
        license_data: Some(LicenseDataView {
            city: "Bern".into(),
            name: "Muster AG".into(),
            postcode: "3000".into(),
        }),
        license_number: Some("1921900012".into()),
        license_type: Some(LicenseType::Standard),
        licensed: true,
        now: "2026-12-11T10:00:00Z".into(),
        protection: Some(Protection::SoftDongle),
        reason: Reason {
            code: "server_unreachable",
            de: warning.de.clone(),
            en: warning.en.clone(),
        },
        runtime: Runtime::Running,
        seats: SeatsView {
            ge: SeatCount { limit: 1, used: 0 },
            pwa: SeatCount { limit: 5, used: 2 },
        },
        seconds_until_stop: Some(18 * 86_400),
        server: "license.promosnt.com:4433".into(),
        servers: vec!["license.promosnt.com:4433".into()],
        state: Phase::ServerUnreachable,
        stop_at: Some(1_798_538_400),
        stop_at_text: Some("2026-12-29T10:00:00Z".into()),
        storage: Storage {
            ok: false,
            problems: Vec::new(),
            recovering_license: None,
            write_error: Some("No space left on device".into()),
        },
        valid_until: Some("2029-11-29T10:00:00Z".into()),
        warning: Some(warning),
    }
}

/// One of each event.
fn example_events() -> Vec<Event> {
    vec![
        Event::WarningBegins {
            warning: text("Warnung", "warning"),
        },
        Event::StopScheduled {
            at: UnixTime(1_767_225_600),
            at_text: "2026-01-01T00:00:00Z".into(),
        },
        Event::NewGrant { serial: 4 },
        Event::LicenseEnded {
            reason_code: "license_was_reset".into(),
            reason: text("zurückgesetzt", "reset"),
        },
        Event::LicenseRestored,
        Event::StopCancelled,
    ]
}

#[test]
fn answers_only_a_licensed_soft_dongle_host_gives_match_their_snapshots() {
    let status = StatusJson::new(&example_status());
    snapshot(
        "status_soft_dongle_unreachable",
        &Answer::status(status.clone())
            .with_id(Some(Value::from(1)))
            .to_line(),
    );
    snapshot(
        "check_now_succeeded",
        &Answer::Check {
            check: CheckOutcome::Succeeded,
            id: None,
            ok: true,
            status,
        }
        .to_line(),
    );
    snapshot(
        "activate_refused",
        &Answer::activation_refused(
            "license_was_reset",
            "The license was reset.",
            "Die Lizenz wurde zurückgesetzt.",
        )
        .with_id(Some(Value::from("a")))
        .to_line(),
    );
    snapshot(
        "activate_failed",
        &Answer::error(
            ErrorCode::ActivationFailed,
            "license server not reachable: timed out",
        )
        .to_line(),
    );
}

#[test]
fn every_event_matches_its_snapshot_with_sorted_keys() {
    for e in example_events() {
        let line = e.to_line();
        snapshot(&format!("event_example_{}", e.name()), &line);
        let v: Value = serde_json::from_slice(&line).expect("json");
        assert_eq!(v["event"], e.name(), "name() is the serde name");
    }
}

/// What serde writes for a struct follows the declaration order; the protocol
/// promises sorted keys. Checked on the serialized text of everything here.
#[test]
fn every_object_of_every_answer_has_its_keys_sorted() {
    let status = StatusJson::new(&example_status());
    let lines: Vec<Vec<u8>> = vec![
        Answer::status(status.clone()).to_line(),
        Answer::Check {
            check: CheckOutcome::Failed,
            id: Some(Value::from(1)),
            ok: true,
            status,
        }
        .to_line(),
        Answer::SeatAcquired {
            held: 1,
            id: Some(Value::from(1)),
            limit: 2,
            ok: true,
            program: Program::Ge,
            used: 1,
        }
        .to_line(),
        Answer::activation_refused("expired", "en", "de")
            .with_id(Some(Value::from(1)))
            .to_line(),
    ];
    for line in lines {
        // serde_json's map is sorted: parsing and writing again sorts every
        // object; the line must not change.
        let text = std::str::from_utf8(&line).expect("utf-8").trim_end();
        let v: Value = serde_json::from_str(text).expect("json");
        assert_eq!(serde_json::to_string(&v).expect("json"), text);
    }
}

/// The rows of the table in `section` of the README whose header starts with
/// `| {header} |`: each row's cells.
fn readme_table(header: &str) -> Vec<Vec<String>> {
    let readme = include_str!("../../README.md");
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Local socket protocol"))
        .expect("README has the section \"Local socket protocol\"");
    let mut lines = section
        .lines()
        .skip_while(|l| !l.starts_with(&format!("| {header} |")));
    assert!(lines.next().is_some(), "README: no table \"{header}\"");
    lines
        .skip(1) // | --- |
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            l.trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_owned())
                .collect()
        })
        .collect()
}

/// The names in backticks in `cell` (`` `at` (Unix seconds), `at_text` `` gives
/// `at`, `at_text`), leaving out the JSON examples in braces.
fn names(cell: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut parts = cell.split('`');
    parts.next();
    while let (Some(name), rest) = (parts.next(), parts.next()) {
        if !name.starts_with('{') {
            out.push(name.to_owned());
        }
        if rest.is_none() {
            break;
        }
    }
    out
}

fn keys_of(v: &Value) -> BTreeSet<String> {
    v.as_object().expect("an object").keys().cloned().collect()
}

#[test]
fn the_readme_lists_exactly_the_fields_of_status() {
    let documented: BTreeSet<String> = readme_table("status field")
        .iter()
        .map(|row| {
            let n = names(&row[0]);
            assert_eq!(n.len(), 1, "one field per row: {row:?}");
            n[0].clone()
        })
        .collect();
    let status = serde_json::to_value(example_status()).expect("json");
    assert_eq!(
        documented,
        keys_of(&status),
        "daemon/README.md's status table and protocol::Status disagree"
    );
    // The nested objects the table spells out.
    let row = |field: &str| {
        readme_table("status field")
            .into_iter()
            .find(|r| r[0] == format!("`{field}`"))
            .expect("row")[1]
            .clone()
    };
    for nested in ["storage", "license_data", "entitlements"] {
        let documented: BTreeSet<String> = names(&row(nested)).into_iter().collect();
        let actual = keys_of(&status[nested]);
        assert!(
            actual.is_subset(&documented),
            "README's `{nested}` row lacks {:?}",
            actual.difference(&documented).collect::<Vec<_>>()
        );
    }
}

#[test]
fn the_readme_lists_exactly_the_events_and_their_fields() {
    let documented: BTreeMap<String, BTreeSet<String>> = readme_table("event")
        .iter()
        .map(|row| {
            let name = names(&row[0]);
            assert_eq!(name.len(), 1, "one event per row: {row:?}");
            (name[0].clone(), names(&row[1]).into_iter().collect())
        })
        .collect();
    let actual: BTreeMap<String, BTreeSet<String>> = example_events()
        .iter()
        .map(|e| {
            let mut keys = keys_of(&serde_json::to_value(e).expect("json"));
            keys.remove("event");
            (e.name().to_owned(), keys)
        })
        .collect();
    assert_eq!(
        documented, actual,
        "daemon/README.md's event table and protocol::Event disagree"
    );
}

#[test]
fn phase_names_are_the_protocols() {
    for p in Phase::ALL {
        assert_eq!(serde_json::to_value(p).expect("json"), p.name());
    }
}
