//! `promos-licd doctor`: the manual's chapter 11 ("Possible solutions to
//! problems") as a check that can also fix what it finds.
//!
//! It finds, in a ProMoS project directory:
//!
//! 1. an old license key `lic/promos.key`;
//! 2. temporary codes: section `[ActCode]` with `CodeA`/`CodeB` in `bin/promos.ini`;
//! 3. old soft-dongle codes: `bin/promos2.ini`;
//! 4. a JSON license in `lic/` on a soft-dongle host (one with `lic/licinfo.cfg`;
//!    only `licinfo.cfg` belongs there);
//! 5. a hard-dongle license named `<number>.json` instead of `promos.json`.
//!
//! `--fix` never deletes anything: files are renamed to
//! `<name>.bak-<YYYYMMDDTHHMMSSZ>`; `promos.ini` is first copied to such a backup
//! and then rewritten without the `[ActCode]` section; a misnamed license file is
//! renamed to `promos.json` (if that name is free).

use keys::UnixTime;
use std::path::{Path, PathBuf};

/// One problem found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub kind: FindingKind,
    pub path: PathBuf,
    /// What to do, for a human.
    pub advice: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FindingKind {
    OldKeyFile,
    TemporaryCodes,
    OldSoftDongleCodes,
    JsonOnSoftDongleHost,
    MisnamedLicenseFile,
}

/// What `--fix` did with one finding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fixed {
    pub finding: Finding,
    /// The backup (or the new name, for a misnamed license file).
    pub moved_to: Option<PathBuf>,
    pub note: String,
}

/// The doctor could not read or change the project.
#[derive(Debug, thiserror::Error)]
pub enum DoctorError {
    #[error("{path} is not a ProMoS project directory (no lic/ or bin/ in it)")]
    NotAProject { path: PathBuf },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot fix {path}: {source}")]
    Fix {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Examines `project`.
pub fn examine(project: &Path) -> Result<Vec<Finding>, DoctorError> {
    let lic = project.join("lic");
    let bin = project.join("bin");
    if !lic.is_dir() && !bin.is_dir() {
        return Err(DoctorError::NotAProject {
            path: project.to_owned(),
        });
    }
    let mut findings = Vec::new();
    let key = lic.join("promos.key");
    if key.exists() {
        findings.push(Finding {
            kind: FindingKind::OldKeyFile,
            path: key,
            advice: "an old license key; remove or rename it (manual 11: existing old licenses)"
                .into(),
        });
    }
    let ini = bin.join("promos.ini");
    if ini.exists() {
        let text = std::fs::read_to_string(&ini).map_err(|source| DoctorError::Read {
            path: ini.clone(),
            source,
        })?;
        if has_act_codes(&text) {
            findings.push(Finding {
                kind: FindingKind::TemporaryCodes,
                path: ini,
                advice: "temporary codes (section [ActCode], CodeA/CodeB) must be deleted (manual 11: delete temporary licenses)".into(),
            });
        }
    }
    let ini2 = bin.join("promos2.ini");
    if ini2.exists() {
        findings.push(Finding {
            kind: FindingKind::OldSoftDongleCodes,
            path: ini2,
            advice: "old soft-dongle codes (Code C, D, E, F) must be deactivated (manual 11: old soft dongles)".into(),
        });
    }
    if lic.is_dir() {
        let soft_host = lic.join("licinfo.cfg").exists();
        let mut jsons = Vec::new();
        for entry in std::fs::read_dir(&lic).map_err(|source| DoctorError::Read {
            path: lic.clone(),
            source,
        })? {
            let entry = entry.map_err(|source| DoctorError::Read {
                path: lic.clone(),
                source,
            })?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.to_ascii_lowercase().ends_with(".json") && entry.path().is_file() {
                jsons.push(name);
            }
        }
        jsons.sort();
        for name in jsons {
            let path = lic.join(&name);
            if soft_host {
                findings.push(Finding {
                    kind: FindingKind::JsonOnSoftDongleHost,
                    path,
                    advice:
                        "a soft-dongle host must have no JSON license in lic/ (only licinfo.cfg)"
                            .into(),
                });
            } else if name != "promos.json" {
                findings.push(Finding {
                    kind: FindingKind::MisnamedLicenseFile,
                    path,
                    advice: format!(
                        "the license file must be named lic/promos.json, not lic/{name}"
                    ),
                });
            }
        }
    }
    Ok(findings)
}

fn has_act_codes(ini: &str) -> bool {
    let mut in_section = false;
    for line in ini.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            in_section = t.eq_ignore_ascii_case("[ActCode]");
        } else if in_section {
            let key = t.split('=').next().unwrap_or("").trim();
            if key.eq_ignore_ascii_case("CodeA") || key.eq_ignore_ascii_case("CodeB") {
                return true;
            }
        }
    }
    false
}

/// `ini` without the `[ActCode]` section (header and its lines).
fn without_act_codes(ini: &str) -> String {
    let mut out = String::with_capacity(ini.len());
    let mut in_section = false;
    for line in ini.split_inclusive('\n') {
        let t = line.trim();
        if t.starts_with('[') {
            in_section = t.eq_ignore_ascii_case("[ActCode]");
        }
        if !in_section {
            out.push_str(line);
        }
    }
    out
}

/// The backup name for `path` at `now`: `<name>.bak-YYYYMMDDTHHMMSSZ`.
pub fn backup_path(path: &Path, now: UnixTime) -> PathBuf {
    let (y, mo, d) = now.civil_date();
    let (h, mi, s) = now.civil_time();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut candidate = path.with_file_name(format!(
        "{name}.bak-{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z"
    ));
    let mut n = 1;
    while candidate.exists() {
        candidate = path.with_file_name(format!(
            "{name}.bak-{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z-{n}"
        ));
        n += 1;
    }
    candidate
}

/// Fixes every finding by renaming (never deleting).
pub fn fix(findings: &[Finding], now: UnixTime) -> Result<Vec<Fixed>, DoctorError> {
    let mut done = Vec::new();
    for f in findings {
        let err = |source| DoctorError::Fix {
            path: f.path.clone(),
            source,
        };
        match f.kind {
            FindingKind::TemporaryCodes => {
                let backup = backup_path(&f.path, now);
                let text = std::fs::read_to_string(&f.path).map_err(err)?;
                std::fs::copy(&f.path, &backup).map_err(err)?;
                let tmp = f.path.with_extension("ini.doctor-tmp");
                std::fs::write(&tmp, without_act_codes(&text)).map_err(err)?;
                std::fs::rename(&tmp, &f.path).map_err(err)?;
                done.push(Fixed {
                    finding: f.clone(),
                    moved_to: Some(backup),
                    note: "removed the [ActCode] section; the original is kept as the backup"
                        .into(),
                });
            }
            FindingKind::MisnamedLicenseFile => {
                let target = f.path.with_file_name("promos.json");
                if target.exists() {
                    let backup = backup_path(&f.path, now);
                    std::fs::rename(&f.path, &backup).map_err(err)?;
                    done.push(Fixed {
                        finding: f.clone(),
                        moved_to: Some(backup),
                        note:
                            "lic/promos.json already exists; the extra file was renamed to a backup"
                                .into(),
                    });
                } else {
                    std::fs::rename(&f.path, &target).map_err(err)?;
                    done.push(Fixed {
                        finding: f.clone(),
                        moved_to: Some(target),
                        note: "renamed to promos.json".into(),
                    });
                }
            }
            FindingKind::OldKeyFile
            | FindingKind::OldSoftDongleCodes
            | FindingKind::JsonOnSoftDongleHost => {
                let backup = backup_path(&f.path, now);
                std::fs::rename(&f.path, &backup).map_err(err)?;
                done.push(Fixed {
                    finding: f.clone(),
                    moved_to: Some(backup),
                    note: "renamed to a backup".into(),
                });
            }
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: UnixTime = UnixTime(1_632_840_684); // 2021-09-28T14:51:24Z

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("lic")).expect("lic");
        std::fs::create_dir_all(dir.path().join("bin")).expect("bin");
        for (p, content) in files {
            std::fs::write(dir.path().join(p), content).expect("write");
        }
        dir
    }

    fn kinds(f: &[Finding]) -> Vec<FindingKind> {
        f.iter().map(|f| f.kind).collect()
    }

    #[test]
    fn a_clean_project_has_no_findings() {
        let soft = tree(&[
            ("lic/licinfo.cfg", "[LicenseServer]\n"),
            ("bin/promos.ini", "[General]\nLang=de\n"),
        ]);
        assert_eq!(examine(soft.path()).expect("examine"), vec![]);
        let hard = tree(&[("lic/promos.json", "{}")]);
        assert_eq!(examine(hard.path()).expect("examine"), vec![]);
        let nothing = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            examine(nothing.path()),
            Err(DoctorError::NotAProject { .. })
        ));
    }

    #[test]
    fn every_chapter_11_problem_is_found_and_fixed_by_renaming() {
        let ini =
            "[General]\nLang=de\n\n[ActCode]\nCodeA=b94d0a5f\nCodeB=f6455777\n[Net]\nPort=1\n";
        let p = tree(&[
            ("lic/licinfo.cfg", "[LicenseServer]\n"),
            ("lic/promos.key", "old"),
            ("lic/1921900012.json", "{}"),
            ("bin/promos.ini", ini),
            ("bin/promos2.ini", "CodeC=1\n"),
        ]);
        let found = examine(p.path()).expect("examine");
        assert_eq!(
            kinds(&found),
            vec![
                FindingKind::OldKeyFile,
                FindingKind::TemporaryCodes,
                FindingKind::OldSoftDongleCodes,
                FindingKind::JsonOnSoftDongleHost
            ]
        );
        let fixed = fix(&found, NOW).expect("fix");
        assert_eq!(fixed.len(), 4);
        let root = p.path();
        assert!(!root.join("lic/promos.key").exists());
        assert_eq!(
            std::fs::read_to_string(root.join("lic/promos.key.bak-20210928T145124Z"))
                .expect("kept"),
            "old"
        );
        assert!(root.join("bin/promos2.ini.bak-20210928T145124Z").exists());
        assert!(root
            .join("lic/1921900012.json.bak-20210928T145124Z")
            .exists());
        assert_eq!(
            std::fs::read_to_string(root.join("bin/promos.ini")).expect("ini"),
            "[General]\nLang=de\n\n[Net]\nPort=1\n"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("bin/promos.ini.bak-20210928T145124Z"))
                .expect("backup"),
            ini
        );
        assert_eq!(examine(root).expect("again"), vec![], "fixed for good");
    }

    #[test]
    fn a_misnamed_hard_dongle_license_is_renamed_to_promos_json() {
        let p = tree(&[("lic/1921900012.json", "{\"x\":1}")]);
        let found = examine(p.path()).expect("examine");
        assert_eq!(kinds(&found), vec![FindingKind::MisnamedLicenseFile]);
        fix(&found, NOW).expect("fix");
        assert_eq!(
            std::fs::read_to_string(p.path().join("lic/promos.json")).expect("renamed"),
            "{\"x\":1}"
        );

        // With promos.json present the extra one becomes a backup, nothing is overwritten.
        let p = tree(&[
            ("lic/promos.json", "keep"),
            ("lic/1921900012.json", "extra"),
        ]);
        let found = examine(p.path()).expect("examine");
        fix(&found, NOW).expect("fix");
        assert_eq!(
            std::fs::read_to_string(p.path().join("lic/promos.json")).expect("kept"),
            "keep"
        );
        assert!(p
            .path()
            .join("lic/1921900012.json.bak-20210928T145124Z")
            .exists());
    }

    #[test]
    fn backups_never_overwrite_each_other() {
        let p = tree(&[("lic/promos.key", "one")]);
        fix(&examine(p.path()).expect("examine"), NOW).expect("fix");
        std::fs::write(p.path().join("lic/promos.key"), "two").expect("again");
        fix(&examine(p.path()).expect("examine"), NOW).expect("fix");
        assert_eq!(
            std::fs::read_to_string(p.path().join("lic/promos.key.bak-20210928T145124Z"))
                .expect("1"),
            "one"
        );
        assert_eq!(
            std::fs::read_to_string(p.path().join("lic/promos.key.bak-20210928T145124Z-1"))
                .expect("2"),
            "two"
        );
    }

    #[test]
    fn act_codes_need_the_section() {
        assert!(!has_act_codes("[Other]\nCodeA=1\n"));
        assert!(has_act_codes("[actcode]\r\ncodeb = 2\r\n"));
    }
}
