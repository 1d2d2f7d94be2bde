//! Checks and activation by file, for sites without any internet
//! (`promos-licd offline request` / `offline apply`, and answer files dropped
//! into the project's `lic/` folder).
//!
//! A request file is the check this host would send (or, not yet activated,
//! an activation without token), with the hashed facts of its hardware ID
//! (as a network check sends them), with a fresh nonce the machine keeps as an
//! open request file ([`Input::OfflineRequested`]). An answer file is the
//! server's signed response to it: verified here exactly as a network answer,
//! then taken by the state machine only for this host, only for a nonce it is
//! still waiting for (so once), and never older than what is in force
//! ([`crate::state::LicenseMachine::offline_verdict`]). Grace periods count
//! from the server time inside, so a file carried for a week gives a week less.
//! A grant an answer brings goes to the site's peers at once by the gossip
//! of [`super::peers`], as one a check brought does after the check.

use super::{Shared, DAEMON_VERSION};
use crate::licinfo::LicInfo;
use crate::state::{Input, OfflineAnswer, OfflineRefusal};
use keys::LicenseNumber;
use wire::offline::{self, OfflineActivate, OfflineFileError, OfflineRequest};
use wire::{Nonce, Response};

/// File names in `lic/` the daemon takes as answer files at its next tick:
/// `promos-offline-answer*.txt` (what the portal's download is called).
pub const ANSWER_PREFIX: &str = "promos-offline-answer";

/// Why a request file could not be written or an answer file not applied.
#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    #[error("this host holds no license and no license number was given: pass --license NUMBER (from the license page) to write an activation request")]
    NoLicense,
    #[error("this host runs on a hardware dongle and its license file: it needs no checks")]
    HardDongle,
    #[error("the answer file: {0}")]
    File(#[from] OfflineFileError),
    #[error("the answer's signature does not verify ({0}); the file was changed or comes from another license server")]
    Unverified(String),
    #[error("the answer file says license {header} and host {header_host}, the signed answer inside says {signed} and {signed_host}: the file was changed by hand")]
    Mismatch {
        header: LicenseNumber,
        header_host: keys::HardwareId,
        signed: LicenseNumber,
        signed_host: keys::HardwareId,
    },
    #[error("the license server could not answer the request ({0}); upload the request file again later")]
    ServerError(String),
    #[error("the answer file holds no answer to a check or activation")]
    Unexpected,
    #[error("{0}")]
    Refused(#[from] OfflineRefusal),
}

impl OfflineError {
    /// A stable code for the socket answer.
    pub fn code(&self) -> &'static str {
        match self {
            OfflineError::NoLicense => "no_license",
            OfflineError::HardDongle => "hard_dongle",
            OfflineError::File(_) => "bad_file",
            OfflineError::Unverified(_) => "not_verified",
            OfflineError::Mismatch { .. } => "bad_file",
            OfflineError::ServerError(_) => "server_error",
            OfflineError::Unexpected => "bad_file",
            OfflineError::Refused(OfflineRefusal::OtherHost { .. }) => "other_host",
            OfflineError::Refused(OfflineRefusal::NotWaiting) => "not_waiting",
            OfflineError::Refused(OfflineRefusal::Older { .. }) => "older_answer",
            OfflineError::Refused(OfflineRefusal::OtherLicense { .. }) => "other_license",
            OfflineError::Refused(OfflineRefusal::ClockBehind { .. }) => "clock_behind",
        }
    }

    /// The same in German, for the CLI of a German locale (the socket answer
    /// carries both, as for a refused activation).
    pub fn message_de(&self) -> String {
        match self {
            OfflineError::NoLicense => "dieser Computer hat keine Lizenz, und es wurde keine Lizenznummer angegeben: für eine Aktivierungsanfrage --license NUMMER angeben (die Nummer steht auf der Lizenzseite)".into(),
            OfflineError::HardDongle => "dieser Computer läuft mit einem Hardware-Dongle und dessen Lizenzdatei: er braucht keine Prüfungen".into(),
            OfflineError::File(e) => format!("die Antwortdatei: {}", file_error_de(e)),
            OfflineError::Unverified(e) => format!("die Signatur der Antwort ist ungültig ({e}); die Datei wurde verändert oder stammt von einem anderen Lizenzserver"),
            OfflineError::Mismatch {
                header,
                header_host,
                signed,
                signed_host,
            } => format!("die Antwortdatei nennt Lizenz {header} und Rechner {header_host}, die signierte Antwort darin {signed} und {signed_host}: die Datei wurde von Hand verändert"),
            OfflineError::ServerError(e) => format!("der Lizenzserver konnte die Anfrage nicht beantworten ({e}); laden Sie die Anfragedatei später nochmals hoch"),
            OfflineError::Unexpected => "die Antwortdatei enthält keine Antwort auf eine Prüfung oder Aktivierung".into(),
            OfflineError::Refused(r) => refusal_de(r),
        }
    }
}

fn refusal_de(r: &OfflineRefusal) -> String {
    match r {
        OfflineRefusal::OtherHost { answer, this } => format!("diese Antwort gilt für den Rechner mit der Hardware-ID {answer}, dieser Rechner hat {this}: übernehmen Sie sie auf dem Rechner, der die Anfrage geschrieben hat"),
        OfflineRefusal::NotWaiting => "auf diese Antwort wartet dieser Rechner nicht: sie wurde schon übernommen, oder die Anfrage wurde nicht auf diesem Rechner geschrieben (neue Anfrage mit `promos-licd offline request`)".into(),
        OfflineRefusal::Older { held, answer } => format!("eine neuere Antwort (Serverzeit {held}) gilt schon; diese (Serverzeit {answer}) würde die Zeit zurückdrehen und wird nicht übernommen"),
        OfflineRefusal::OtherLicense { answer, held } => format!("diese Antwort gilt für Lizenz {answer}, dieser Rechner hat Lizenz {held}"),
        OfflineRefusal::ClockBehind { answer, here } => format!("die Serverzeit der Antwort {answer} liegt mehr als 1 Stunde vor der Uhr dieses Computers {here}: stellen Sie die Uhr richtig und übernehmen Sie die Antwort nochmals"),
    }
}

fn file_error_de(e: &OfflineFileError) -> String {
    let what_de = |what: &str| {
        if what == "request" {
            "Anfrage"
        } else {
            "Antwort"
        }
    };
    match e {
        OfflineFileError::TooLarge { len, max, what } => format!("die Datei hat {len} Bytes, mehr als die {max}, die eine Offline-Datei haben kann: sie ist keine Offline-{}datei", what_de(what)),
        OfflineFileError::NoBegin { begin, what } => format!("keine Zeile \"{begin}\" gefunden: das ist keine Offline-{}datei der Version 1 (eine Anfragedatei schreibt `promos-licd offline request`, eine Antwortdatei kommt aus dem Lizenzportal)", what_de(what)),
        OfflineFileError::NoEnd { end } => format!("die Zeile \"{end}\" fehlt: die Datei wurde abgeschnitten; kopieren oder laden Sie sie nochmals herunter"),
        OfflineFileError::BadHeader { line } => format!("die Kopfzeile {line:?} ist unverständlich; die Datei wurde von Hand verändert, kopieren oder laden Sie sie nochmals herunter"),
        OfflineFileError::BadBase64(e) => format!("der codierte Block ist beschädigt ({e}); die Datei wurde verändert, kopieren oder laden Sie sie nochmals herunter"),
        OfflineFileError::Decode(e) => format!("der codierte Block lässt sich nicht decodieren ({e}); die Datei wurde verändert oder stammt von einer unverträglichen Version"),
        OfflineFileError::HeaderMismatch { field, header, block } => format!("im Kopf steht {field} {header}, im codierten Block {block}: die Datei wurde von Hand verändert, kopieren oder laden Sie sie nochmals herunter"),
        OfflineFileError::Encode(e) => format!("die Datei konnte nicht geschrieben werden: {e}"),
    }
}

/// What an applied answer did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OfflineApplied {
    /// The host now holds its first grant.
    Activated,
    /// The check succeeded (the periods restart from the answer's server time).
    Checked,
    /// The server refused this host; the license ended here.
    Refused,
}

impl Shared {
    /// Writes a request file: this host's check (or, holding no license, an
    /// activation request for `license`) with a fresh nonce, kept as an open
    /// request file. Returns the file name and text.
    pub fn offline_request(
        &self,
        license: Option<LicenseNumber>,
    ) -> Result<(String, String), OfflineError> {
        let holds_grant = self.lock().machine.grant().is_some();
        let request = match self.check_message().filter(|_| holds_grant) {
            Some(check) => OfflineRequest::Check(check),
            None => {
                if holds_grant {
                    return Err(OfflineError::HardDongle);
                }
                let number = license
                    .or_else(|| self.licinfo_license())
                    .ok_or(OfflineError::NoLicense)?;
                OfflineRequest::Activate(OfflineActivate {
                    license_number: number,
                    hardware_id: self.hardware_id.clone(),
                    daemon_version: DAEMON_VERSION.into(),
                    nonce: Nonce::random(),
                })
            }
        };
        // With the hashed hardware facts, as a network check sends them: the
        // server follows a host whose hardware changed a little by file too.
        let request = request.with_facts(&self.hardware_facts);
        let text = offline::write_request(&request)?;
        // Kept before the file is handed out: an answer to it is taken.
        self.lock().apply(Input::OfflineRequested {
            nonce: request.nonce(),
        });
        tracing::info!(license = %request.license_number(), kind = request.kind(), "request file written");
        Ok((
            offline::file_name("request", request.license_number()),
            text,
        ))
    }

    /// Applies an answer file: read whole, signatures verified, and taken only
    /// if the state machine accepts it (nothing changes otherwise).
    pub fn offline_apply(&self, text: &str) -> Result<OfflineApplied, OfflineError> {
        let file = offline::read_answer(text)?;
        if file.hardware_id != self.hardware_id {
            return Err(OfflineRefusal::OtherHost {
                answer: file.hardware_id,
                this: self.hardware_id.clone(),
            }
            .into());
        }
        let unverified = |e: keys::VerifyError| OfflineError::Unverified(e.to_string());
        let (answer, activation) = match file.response {
            Response::Activated { grant, receipt }
            | Response::Checked {
                receipt,
                grant: Some(grant),
            } => {
                let activation = self.lock().machine.grant().is_none();
                (
                    OfflineAnswer::Receipt {
                        receipt: self.trusted.verify(&receipt).map_err(unverified)?,
                        grant: Some(self.trusted.verify(&grant).map_err(unverified)?),
                    },
                    activation,
                )
            }
            Response::Checked {
                receipt,
                grant: None,
            } => (
                OfflineAnswer::Receipt {
                    receipt: self.trusted.verify(&receipt).map_err(unverified)?,
                    grant: None,
                },
                false,
            ),
            Response::Refused(r) => (
                OfflineAnswer::Refusal(self.trusted.verify(&r).map_err(unverified)?),
                false,
            ),
            Response::Error(e) => return Err(OfflineError::ServerError(format!("{e:?}"))),
            _ => return Err(OfflineError::Unexpected),
        };
        let (signed, signed_host) = match &answer {
            OfflineAnswer::Receipt { receipt, .. } => {
                (&receipt.license_number, &receipt.hardware_id)
            }
            OfflineAnswer::Refusal(r) => (&r.license_number, &r.hardware_id),
        };
        if signed != &file.license_number || signed_host != &file.hardware_id {
            return Err(OfflineError::Mismatch {
                header: file.license_number,
                header_host: file.hardware_id,
                signed: signed.clone(),
                signed_host: signed_host.clone(),
            });
        }
        let refused = matches!(answer, OfflineAnswer::Refusal(_));
        let mut inner = self.lock();
        let now = inner.now();
        inner.machine.offline_verdict(&answer, now)?;
        let held = inner.machine.grant().map(|g| g.serial);
        inner.apply(Input::OfflineAnswer(answer));
        if inner.machine.grant().map(|g| g.serial) != held {
            // A grant the network did not bring: the site's other hosts hear
            // of it by gossip as of one a check brought (an upgrade, or this
            // license moved here from another host of the site).
            if let Some(p) = &self.peers {
                p.grant_taken();
            }
        }
        let applied = if refused {
            OfflineApplied::Refused
        } else if activation && inner.machine.grant().is_some() {
            // As after a network activation: the file that finds the
            // license again if the state is lost, written before the lock
            // is released.
            if let Some(dir) = &self.config.project_dir {
                let info = LicInfo {
                    server: self.server_address(),
                    license_number: file.license_number.clone(),
                    hardware_id: Some(self.hardware_id.clone()),
                    activated: Some(now.wall),
                };
                if let Err(e) = info.write(dir) {
                    tracing::error!(error = %e, "licinfo.cfg not written");
                }
            }
            OfflineApplied::Activated
        } else {
            OfflineApplied::Checked
        };
        drop(inner);
        tracing::info!(license = %file.license_number, applied = ?applied, "answer file applied");
        Ok(applied)
    }

    /// Applies the answer files dropped into `lic/` (`promos-offline-answer*.txt`)
    /// and renames each to `<name>.applied` or, refused, `<name>.refused`
    /// (never deleted), logging why.
    pub(super) fn apply_dropped_answers(&self) {
        let Some(dir) = &self.config.project_dir else {
            return;
        };
        let lic = dir.join("lic");
        let Ok(entries) = std::fs::read_dir(&lic) else {
            return;
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(ANSWER_PREFIX) && n.ends_with(".txt"))
            .collect();
        names.sort();
        for name in names {
            let path = lic.join(&name);
            let result = match read_limited(&path) {
                Ok(text) => self.offline_apply(&text),
                Err(e) => Err(e),
            };
            let suffix = match &result {
                Ok(applied) => {
                    tracing::info!(file = %path.display(), ?applied, "answer file from lic/ applied");
                    "applied"
                }
                Err(e) => {
                    tracing::error!(file = %path.display(), code = e.code(), error = %e, "answer file from lic/ refused");
                    "refused"
                }
            };
            let to = lic.join(format!("{name}.{suffix}"));
            if let Err(e) = std::fs::rename(&path, &to) {
                tracing::error!(file = %path.display(), error = %e, "answer file not renamed; it will be read again");
            }
        }
    }
}

/// Reads a file of at most [`offline::MAX_FILE_BYTES`].
fn read_limited(path: &std::path::Path) -> Result<String, OfflineError> {
    use std::io::Read;
    let max = offline::MAX_FILE_BYTES;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(max as u64 + 1).read_to_string(&mut text))
        .map_err(|e| {
            OfflineError::File(OfflineFileError::BadHeader {
                line: format!("(not readable as text: {e})"),
            })
        })?;
    if text.len() > max {
        return Err(OfflineFileError::TooLarge {
            len: text.len(),
            max,
            what: "answer",
        }
        .into());
    }
    Ok(text)
}
