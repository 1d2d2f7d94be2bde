//! What the human CLI commands print (`status`, `seats`, `check-now`,
//! `activate`, `doctor`), in German or English by the locale: the language is
//! [`Lang`], picked as for `promos-licd setup` ([`Lang::current`]). Each
//! function renders from the socket's JSON answer (or the doctor's findings)
//! to text, so both languages are tested without a daemon. The `--json`
//! outputs are the socket's answers as they are, in no language.
//!
//! The English output keeps the state codes (`State: licensed`) that scripts
//! may look for; the German one adds the German name before the code
//! (`Zustand: lizenziert (licensed)`).

use crate::doctor::{Finding, FindingKind, Fixed};
pub use crate::setup::Lang;
use serde_json::Value;
use std::fmt::Write;
use std::path::Path;

/// One `label: value` line of the status, labels padded to one column per language.
fn line(out: &mut String, lang: Lang, label: &str, value: impl std::fmt::Display) {
    // The longest label of each language plus one space.
    let width = match lang {
        Lang::De => 17,
        Lang::En => 13,
    };
    padded(out, width, label, value);
}

fn padded(out: &mut String, width: usize, label: &str, value: impl std::fmt::Display) {
    let label = format!("{label}:");
    let _ = writeln!(out, "{label:<width$}{value}");
}

fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| "-".into(), str::to_owned)
}

/// A `{"de": ..., "en": ...}` text of the protocol in `lang`.
fn localized(lang: Lang, v: &Value) -> Option<String> {
    let key = match lang {
        Lang::De => "de",
        Lang::En => "en",
    };
    v[key].as_str().or(v["en"].as_str()).map(str::to_owned)
}

/// The German name of a state code (`status.state`).
fn state_de(code: &str) -> Option<&'static str> {
    Some(match code {
        "not_activated" => "nicht aktiviert",
        "licensed" => "lizenziert",
        "server_unreachable" => "Lizenzserver nicht erreichbar",
        "offline_start_hour" => "Start ohne Lizenzserver (1 Stunde)",
        "dongle_removed" => "Dongle entfernt",
        "stopped" => "gestoppt",
        "refused" => "vom Lizenzserver abgelehnt",
        "expired" => "abgelaufen",
        "dongle_missing" => "Dongle fehlt",
        "invalid_license_file" => "Lizenzdatei ungültig",
        "wrong_host" => "an einen anderen Rechner gebunden",
        _ => return None,
    })
}

/// `promos-licd status` (and the status part of `check-now` and `activate`).
pub fn status(lang: Lang, s: &Value) -> String {
    let mut out = String::new();
    let state = text(&s["state"]);
    let l = |de: &'static str, en: &'static str| lang.pick(de, en);
    let shown_state = match (lang, state_de(&state)) {
        (Lang::De, Some(name)) => format!("{name} ({state})"),
        _ => state,
    };
    line(&mut out, lang, l("Zustand", "State"), shown_state);
    let licensed = match (lang, s["licensed"].as_bool()) {
        (Lang::De, Some(true)) => "ja".to_owned(),
        (Lang::De, Some(false)) => "nein".to_owned(),
        _ => s["licensed"].to_string(),
    };
    line(&mut out, lang, l("Lizenziert", "Licensed"), licensed);
    line(
        &mut out,
        lang,
        l("Grund", "Reason"),
        localized(lang, &s["reason"]).unwrap_or_else(|| "-".into()),
    );
    if let Some(w) = localized(lang, &s["warning"]) {
        line(&mut out, lang, l("Warnung", "Warning"), w);
    }
    if let Some(t) = s["stop_at_text"].as_str() {
        line(
            &mut out,
            lang,
            l("Stopp um", "Stop at"),
            format!("{t} (in {} s)", s["seconds_until_stop"]),
        );
    }
    line(
        &mut out,
        lang,
        l("Lizenz", "License"),
        text(&s["license_number"]),
    );
    line(
        &mut out,
        lang,
        l("Hardware-ID", "Hardware ID"),
        text(&s["hardware_id"]),
    );
    line(
        &mut out,
        lang,
        l("Letzte Prüfung", "Last check"),
        text(&s["last_check"]),
    );
    for d in s["diagnosis"].as_array().into_iter().flatten() {
        line(
            &mut out,
            lang,
            l("Diagnose", "Diagnosis"),
            localized(lang, d).unwrap_or_else(|| "-".into()),
        );
    }
    out
}

/// `promos-licd seats`, from the socket's `{"seats": {...}}` answer.
pub fn seats(lang: Lang, v: &Value) -> String {
    let mut out = String::new();
    for p in ["ge", "pwa"] {
        let s = &v["seats"][p];
        let _ = writeln!(
            out,
            "{:<4} {}",
            p.to_uppercase(),
            match lang {
                Lang::De => format!("{} von {} belegt", s["used"], s["limit"]),
                Lang::En => format!("{} of {} in use", s["used"], s["limit"]),
            }
        );
    }
    out
}

/// The line `check-now` writes to stderr when the check did not succeed
/// (`check` is the socket's outcome code: failed, refused, not_activated).
pub fn check_failed(lang: Lang, check: Option<&str>) -> String {
    match lang {
        Lang::En => format!("check: {}", check.unwrap_or("no answer from the daemon")),
        Lang::De => format!(
            "Prüfung: {}",
            match check {
                Some("failed") => "fehlgeschlagen (failed)",
                Some("refused") => "vom Lizenzserver abgelehnt (refused)",
                Some("not_activated") => "nichts zu prüfen (not_activated)",
                Some(other) => other,
                None => "keine Antwort vom Lizenzdienst",
            }
        ),
    }
}

/// What `activate` shows before it asks the daemon.
pub fn activation(lang: Lang, server: &str, license: &str, hardware_id: &str) -> String {
    let mut out = String::new();
    let l = |de: &'static str, en: &'static str| lang.pick(de, en);
    // The longest label plus one space.
    let width = match lang {
        Lang::De => 14,
        Lang::En => 24,
    };
    padded(
        &mut out,
        width,
        l("Lizenzserver", "License server address"),
        server,
    );
    padded(
        &mut out,
        width,
        l("Lizenznummer", "License number"),
        license,
    );
    padded(
        &mut out,
        width,
        l("Hardware-ID", "Hardware ID"),
        hardware_id,
    );
    out
}

/// The line after a successful activation.
pub fn activated(lang: Lang) -> &'static str {
    lang.pick("Aktiviert.", "Activated.")
}

/// The reason in a socket answer with `ok: false`: `message_de` for German
/// where the daemon gives one, else `message`.
fn failure(lang: Lang, v: &Value) -> String {
    let message = match lang {
        Lang::De => v["message_de"].as_str().or(v["message"].as_str()),
        Lang::En => v["message"].as_str(),
    };
    match (lang, v["error"].as_str(), message) {
        // The number's own parse error, named in German around it.
        (Lang::De, Some("bad_license_number"), Some(m)) => {
            format!("die Lizenznummer ist ungültig ({m})")
        }
        (_, _, Some(m)) => m.to_owned(),
        (_, _, None) => lang.pick("unbekannter Fehler", "unknown error").to_owned(),
    }
}

/// A refused or failed activation, from the socket's answer.
pub fn activation_failed(lang: Lang, v: &Value) -> String {
    format!(
        "{}: {}",
        lang.pick("Aktivierung fehlgeschlagen", "activation failed"),
        failure(lang, v)
    )
}

/// A finding's advice in `lang` (English: the doctor's own text).
pub fn advice(lang: Lang, f: &Finding) -> String {
    if lang == Lang::En {
        return f.advice.clone();
    }
    match f.kind {
        FindingKind::OldKeyFile => "ein alter Lizenzschlüssel; bitte entfernen oder umbenennen (Handbuch 11: bestehende alte Lizenzen)".into(),
        FindingKind::TemporaryCodes => "temporäre Codes (Abschnitt [ActCode], CodeA/CodeB) müssen gelöscht werden (Handbuch 11: temporäre Lizenzen löschen)".into(),
        FindingKind::OldSoftDongleCodes => "alte SoftDongle-Codes (Code C, D, E, F) müssen deaktiviert werden (Handbuch 11: alte SoftDongles)".into(),
        FindingKind::JsonOnSoftDongleHost => "auf einem SoftDongle-Rechner darf keine JSON-Lizenz in lic/ liegen (nur licinfo.cfg)".into(),
        FindingKind::MisnamedLicenseFile => format!(
            "die Lizenzdatei muss lic/promos.json heissen, nicht lic/{}",
            f.path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()
        ),
    }
}

/// `promos-licd doctor`: the findings, or that there are none; `fix`: whether
/// they are being fixed (else the hint to run with --fix follows).
pub fn doctor(lang: Lang, project: &Path, findings: &[Finding], fix: bool) -> String {
    let mut out = String::new();
    if findings.is_empty() {
        let _ = writeln!(
            out,
            "{} {}.",
            lang.pick("Keine Probleme gefunden in", "No problems found in"),
            project.display()
        );
        return out;
    }
    for f in findings {
        let _ = writeln!(out, "{}: {}", f.path.display(), advice(lang, f));
    }
    if !fix {
        let _ = writeln!(
            out,
            "{}",
            lang.pick(
                "Mit --fix erneut aufrufen, um diese Dateien umzubenennen (es wird nichts gelöscht).",
                "Run again with --fix to rename these files (nothing is deleted)."
            )
        );
    }
    out
}

/// What `doctor --fix` did.
pub fn fixed(lang: Lang, done: &[Fixed]) -> String {
    let mut out = String::new();
    for d in done {
        let to = d
            .moved_to
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let note = match lang {
            Lang::En => d.note.clone(),
            Lang::De => match d.finding.kind {
                FindingKind::TemporaryCodes => {
                    "Abschnitt [ActCode] entfernt; das Original bleibt als Sicherung".into()
                }
                FindingKind::MisnamedLicenseFile
                    if d.moved_to
                        .as_ref()
                        .is_some_and(|p| p.file_name().is_some_and(|n| n == "promos.json")) =>
                {
                    "in promos.json umbenannt".into()
                }
                FindingKind::MisnamedLicenseFile => "lic/promos.json gibt es schon; die zusätzliche Datei wurde in eine Sicherung umbenannt".to_owned(),
                _ => "in eine Sicherung umbenannt".into(),
            },
        };
        let _ = writeln!(
            out,
            "{} {}: {note} ({to})",
            lang.pick("behoben", "fixed"),
            d.finding.path.display()
        );
    }
    out
}

/// After `offline request`: where the file is and what to do with it.
pub fn offline_request_written(lang: Lang, path: &std::path::Path) -> String {
    match lang {
        Lang::De => format!(
            "Anfragedatei geschrieben: {}\nLaden Sie sie auf der Lizenzseite im Lizenzserver unter \"Offline-Prüfung\" hoch und bringen Sie die Antwortdatei zurück: promos-licd offline apply DATEI",
            path.display()
        ),
        Lang::En => format!(
            "Request file written: {}\nUpload it on the license page of the license server under \"Offline check\" and bring the answer file back: promos-licd offline apply FILE",
            path.display()
        ),
    }
}

/// After `offline apply`: what the answer did (`activated`, `checked`, `refused`).
pub fn offline_applied(lang: Lang, applied: &str) -> String {
    match (lang, applied) {
        (Lang::De, "activated") => "Antwortdatei übernommen: dieser Computer ist aktiviert.".into(),
        (Lang::De, "checked") => "Antwortdatei übernommen: die Lizenzprüfung war erfolgreich.".into(),
        (Lang::De, "refused") => "Antwortdatei übernommen: der Lizenzserver hat die Lizenz für diesen Computer abgelehnt.".into(),
        (Lang::En, "activated") => "Answer file applied: this computer is activated.".into(),
        (Lang::En, "checked") => "Answer file applied: the license check succeeded.".into(),
        (Lang::En, "refused") => "Answer file applied: the license server refused the license for this computer.".into(),
        (Lang::De, other) => format!("Antwortdatei übernommen ({other})."),
        (Lang::En, other) => format!("Answer file applied ({other})."),
    }
}

/// `offline request` refused by the daemon, from the socket's answer.
pub fn offline_request_failed(lang: Lang, v: &Value) -> String {
    format!(
        "{}: {}",
        lang.pick("Anfragedatei nicht geschrieben", "request file not written"),
        failure(lang, v)
    )
}

/// `offline request` could not write the file where asked (the system's
/// reason follows).
pub fn offline_request_not_written(lang: Lang, path: &Path) -> String {
    match lang {
        Lang::De => format!(
            "die Anfragedatei {} kann nicht geschrieben werden",
            path.display()
        ),
        Lang::En => format!("writing {}", path.display()),
    }
}

/// `offline apply` could not read the answer file.
pub fn offline_unreadable(lang: Lang, e: &wire::offline::ReadFileError) -> String {
    use wire::offline::{FileKind, ReadFileError};
    let name = |kind: &FileKind| match kind {
        FileKind::Request => "die Anfragedatei",
        FileKind::Answer => "die Antwortdatei",
    };
    match (lang, e) {
        (Lang::En, e) => e.to_string(),
        (Lang::De, ReadFileError::Io { kind, path, source }) => format!(
            "{} {} kann nicht gelesen werden: {source}",
            name(kind),
            path.display()
        ),
        (Lang::De, ReadFileError::TooLarge { kind, path, max }) => format!(
            "{} ist grösser als {max} Bytes: das ist keine {}",
            path.display(),
            match kind {
                FileKind::Request => "Anfragedatei von promos-licd",
                FileKind::Answer => "Antwortdatei des Lizenzportals",
            }
        ),
    }
}

/// `offline apply` refused: a sentence in the user's language, then the
/// daemon's reason in it (from the socket's answer).
pub fn offline_refused(lang: Lang, v: &Value) -> String {
    let message = failure(lang, v);
    match lang {
        Lang::De => format!("Antwortdatei nicht übernommen, nichts wurde geändert: {message}"),
        Lang::En => format!("Answer file not applied, nothing was changed: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn licensed() -> Value {
        json!({
            "state": "licensed", "licensed": true,
            "reason": {"code": "licensed", "de": "Lizenziert.", "en": "Licensed."},
            "warning": null, "stop_at_text": null,
            "license_number": "1921900019", "hardware_id": "f81213acb32243aeda96bc780dfc4a30",
            "last_check": "2026-11-29T10:00:00Z",
            "diagnosis": [{"code": "x", "de": "Eine Diagnose.", "en": "A diagnosis."}]
        })
    }

    #[test]
    fn status_in_english_keeps_its_lines() {
        let t = status(Lang::En, &licensed());
        assert_eq!(
            t,
            "State:       licensed\nLicensed:    true\nReason:      Licensed.\nLicense:     1921900019\nHardware ID: f81213acb32243aeda96bc780dfc4a30\nLast check:  2026-11-29T10:00:00Z\nDiagnosis:   A diagnosis.\n"
        );
    }

    #[test]
    fn status_in_german() {
        let mut s = licensed();
        s["state"] = json!("server_unreachable");
        s["warning"] = json!({"de": "Der Lizenzserver ist nicht erreichbar.", "en": "The license server is not available."});
        s["stop_at_text"] = json!("2026-12-01T00:00:00Z");
        s["seconds_until_stop"] = json!(3600);
        let t = status(Lang::De, &s);
        assert_eq!(
            t,
            "Zustand:         Lizenzserver nicht erreichbar (server_unreachable)\nLizenziert:      ja\nGrund:           Lizenziert.\nWarnung:         Der Lizenzserver ist nicht erreichbar.\nStopp um:        2026-12-01T00:00:00Z (in 3600 s)\nLizenz:          1921900019\nHardware-ID:     f81213acb32243aeda96bc780dfc4a30\nLetzte Prüfung:  2026-11-29T10:00:00Z\nDiagnose:        Eine Diagnose.\n"
        );
        // Every state the machine has a German name.
        for phase in [
            "not_activated",
            "licensed",
            "server_unreachable",
            "offline_start_hour",
            "dongle_removed",
            "stopped",
            "refused",
            "expired",
            "dongle_missing",
            "invalid_license_file",
            "wrong_host",
        ] {
            assert!(state_de(phase).is_some(), "{phase}");
            let code = serde_json::to_value(
                serde_json::from_value::<crate::state::Phase>(json!(phase)).expect(phase),
            )
            .expect("phase");
            assert_eq!(code, json!(phase));
        }
    }

    #[test]
    fn seats_and_check_in_both_languages() {
        let v = json!({"seats": {"ge": {"used": 1, "limit": 2}, "pwa": {"used": 0, "limit": 5}}});
        assert_eq!(
            seats(Lang::En, &v),
            "GE   1 of 2 in use\nPWA  0 of 5 in use\n"
        );
        assert_eq!(
            seats(Lang::De, &v),
            "GE   1 von 2 belegt\nPWA  0 von 5 belegt\n"
        );
        assert_eq!(check_failed(Lang::En, Some("failed")), "check: failed");
        assert_eq!(
            check_failed(Lang::De, Some("failed")),
            "Prüfung: fehlgeschlagen (failed)"
        );
    }

    #[test]
    fn activation_in_both_languages() {
        assert_eq!(
            activation(Lang::En, "pls.example:4433", "1921900019", "ab"),
            "License server address: pls.example:4433\nLicense number:         1921900019\nHardware ID:            ab\n"
        );
        assert_eq!(
            activation(Lang::De, "pls.example:4433", "1921900019", "ab"),
            "Lizenzserver: pls.example:4433\nLizenznummer: 1921900019\nHardware-ID:  ab\n"
        );
        let refused =
            json!({"ok": false, "message": "wrong token", "message_de": "falsches Token"});
        assert_eq!(
            activation_failed(Lang::De, &refused),
            "Aktivierung fehlgeschlagen: falsches Token"
        );
        assert_eq!(
            activation_failed(Lang::En, &refused),
            "activation failed: wrong token"
        );
    }

    #[test]
    fn offline_failures_in_both_languages() {
        let refused = json!({"ok": false, "error": "offline_refused", "reason": "no_license",
            "message": "no license", "message_de": "keine Lizenz"});
        assert_eq!(
            offline_request_failed(Lang::En, &refused),
            "request file not written: no license"
        );
        assert_eq!(
            offline_request_failed(Lang::De, &refused),
            "Anfragedatei nicht geschrieben: keine Lizenz"
        );
        assert_eq!(
            offline_refused(Lang::De, &refused),
            "Antwortdatei nicht übernommen, nichts wurde geändert: keine Lizenz"
        );
        let bad = json!({"ok": false, "error": "bad_license_number", "message": "not 10 digits"});
        assert_eq!(
            offline_request_failed(Lang::De, &bad),
            "Anfragedatei nicht geschrieben: die Lizenznummer ist ungültig (not 10 digits)"
        );
        assert_eq!(
            offline_request_failed(Lang::En, &json!({"ok": false})),
            "request file not written: unknown error"
        );
        let missing = std::path::Path::new("/nowhere/answer.txt");
        let e = wire::offline::read_file(missing, wire::offline::FileKind::Answer)
            .expect_err("missing");
        assert!(offline_unreadable(Lang::En, &e)
            .starts_with("reading the answer file /nowhere/answer.txt: "));
        assert!(offline_unreadable(Lang::De, &e)
            .starts_with("die Antwortdatei /nowhere/answer.txt kann nicht gelesen werden: "));
        let e = wire::offline::ReadFileError::TooLarge {
            kind: wire::offline::FileKind::Answer,
            path: missing.to_owned(),
            max: 9,
        };
        assert_eq!(
            offline_unreadable(Lang::De, &e),
            "/nowhere/answer.txt ist grösser als 9 Bytes: das ist keine Antwortdatei des Lizenzportals"
        );
    }

    #[test]
    fn doctor_in_both_languages() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("lic")).expect("lic");
        std::fs::write(dir.path().join("lic/promos.key"), "old").expect("key");
        std::fs::write(dir.path().join("lic/1921900019.json"), "{}").expect("json");
        let findings = crate::doctor::examine(dir.path()).expect("examine");
        let de = doctor(Lang::De, dir.path(), &findings, false);
        assert!(de.contains("ein alter Lizenzschlüssel"), "{de}");
        assert!(
            de.contains("muss lic/promos.json heissen, nicht lic/1921900019.json"),
            "{de}"
        );
        assert!(de.contains("Mit --fix erneut aufrufen"), "{de}");
        let en = doctor(Lang::En, dir.path(), &findings, false);
        assert!(en.contains("an old license key"), "{en}");
        assert!(en.contains("Run again with --fix"), "{en}");
        assert!(doctor(Lang::De, dir.path(), &findings, true)
            .lines()
            .all(|l| !l.contains("--fix")));
        let done = crate::doctor::fix(&findings, keys::UnixTime(1_800_000_000)).expect("fix");
        let de = fixed(Lang::De, &done);
        assert!(
            de.contains("behoben") && de.contains("in promos.json umbenannt"),
            "{de}"
        );
        let en = fixed(Lang::En, &done);
        assert!(
            en.contains("fixed") && en.contains("renamed to promos.json"),
            "{en}"
        );
        assert_eq!(
            doctor(Lang::De, dir.path(), &[], false),
            format!("Keine Probleme gefunden in {}.\n", dir.path().display())
        );
    }
}
