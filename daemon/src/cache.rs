//! The daemon's sled cache in the data directory: the last verified grant, the
//! last receipt, the refusal that ended the license, the time high-water mark,
//! the last time the hardware dongle was seen and the run history.
//!
//! Signed documents are stored as the signed bytes the server produced and are
//! verified again on every load; anything that fails (bad signature, unknown
//! key, another host's document, garbage) is dropped and logged, never trusted
//! and never a crash. A database sled cannot open at all is moved aside to
//! `<dir>.corrupt-<unix time>` and a fresh one is created.

use crate::state::Persisted;
use keys::{
    Binding, HardwareId, LicenseGrant, Signed, SignedPayload, TrustedKeys, UnixTime, Verified,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use wire::{CheckReceipt, Refusal};

const GRANT: &str = "grant";
const RECEIPT: &str = "receipt";
const REFUSAL: &str = "refusal";
const HIGH_WATER: &str = "high_water";
const DONGLE_LAST_SEEN: &str = "dongle_last_seen";
const OPEN_RUN: &str = "open_run";
const RUNS: &str = "runs";
const PENDING: &str = "pending";
const SUPERSEDED: &str = "superseded";
/// Store and forward: frame bodies queued for the server, per peer.
const RELAY_QUEUE: &str = "relay_queue";
/// The server's answers to queued bodies, waiting for their peer to collect them.
const RELAY_ANSWERS: &str = "relay_answers";
/// The highest grant seen per license of the site (gossip).
const SITE_GRANTS: &str = "site_grants";
/// Run history kept: the newest 1,000 runs (about three years of daily restarts).
const MAX_RUNS: usize = 1_000;

/// Opening the cache failed even after moving a broken database aside.
#[derive(Debug, thiserror::Error)]
pub enum CacheOpenError {
    #[error("cannot create the data directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the license cache in {path}: {source}")]
    Open { path: PathBuf, source: sled::Error },
}

/// Writing to the cache failed (disk full, permissions). The daemon keeps
/// running from memory and logs it.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the license cache: {0}")]
pub struct CacheWriteError(#[from] sled::Error);

/// One runtime run, as recorded in the history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub started: UnixTime,
    pub stopped: Option<UnixTime>,
    /// Why it ended: `runtime_stopped`, `connection_closed`, `daemon_restart`.
    pub end: Option<String>,
}

/// What a load dropped, for the log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    pub dropped: Vec<String>,
}

/// The open cache.
#[derive(Debug, Clone)]
pub struct Cache {
    db: sled::Db,
    runs: sled::Tree,
    relay_queue: sled::Tree,
    relay_answers: sled::Tree,
    site_grants: sled::Tree,
}

impl Cache {
    /// Opens (or creates) the cache in `dir/cache.sled`.
    pub fn open(dir: &Path) -> Result<Cache, CacheOpenError> {
        std::fs::create_dir_all(dir).map_err(|source| CacheOpenError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join("cache.sled");
        let db = match sled::open(&path) {
            Ok(db) => db,
            // Another daemon holds the database: never touch it.
            Err(sled::Error::Io(e)) if e.to_string().contains("lock") => {
                return Err(CacheOpenError::Open {
                    path,
                    source: sled::Error::Io(e),
                })
            }
            Err(e) => {
                let aside = dir.join(format!("cache.sled.corrupt-{}", UnixTime::now().secs()));
                tracing::error!(error = %e, moved_to = %aside.display(), "license cache is unreadable; starting with an empty one");
                let _ = std::fs::rename(&path, &aside);
                sled::open(&path).map_err(|source| CacheOpenError::Open {
                    path: path.clone(),
                    source,
                })?
            }
        };
        let tree = |name: &str| {
            db.open_tree(name).map_err(|source| CacheOpenError::Open {
                path: path.clone(),
                source,
            })
        };
        Ok(Cache {
            runs: tree(RUNS)?,
            relay_queue: tree(RELAY_QUEUE)?,
            relay_answers: tree(RELAY_ANSWERS)?,
            site_grants: tree(SITE_GRANTS)?,
            db,
        })
    }

    /// Loads and re-verifies everything. Never fails: what does not verify is dropped.
    pub fn load(&self, trusted: &TrustedKeys, hardware_id: &HardwareId) -> (Persisted, LoadReport) {
        let mut report = LoadReport::default();
        let grant: Option<Verified<LicenseGrant>> = self.verified(GRANT, trusted, &mut report);
        let grant = grant.filter(|g| {
            let ok = g.binding == Binding::HardwareId(hardware_id.clone());
            if !ok {
                report
                    .dropped
                    .push("grant: bound to another hardware ID".into());
            }
            ok
        });
        let number = grant.as_ref().map(|g| g.license_number.clone());
        let receipt: Option<Verified<CheckReceipt>> = self.verified(RECEIPT, trusted, &mut report);
        let receipt = receipt.filter(|r| {
            let ok = &r.hardware_id == hardware_id && Some(&r.license_number) == number.as_ref();
            if !ok {
                report
                    .dropped
                    .push("receipt: for another host or license".into());
            }
            ok
        });
        let refusal: Option<Verified<Refusal>> = self.verified(REFUSAL, trusted, &mut report);
        let refusal = refusal.filter(|r| {
            let ok = &r.hardware_id == hardware_id && Some(&r.license_number) == number.as_ref();
            if !ok {
                report
                    .dropped
                    .push("refusal: for another host or license".into());
            }
            ok
        });
        let superseded: Option<Verified<LicenseGrant>> =
            self.verified(SUPERSEDED, trusted, &mut report);
        let superseded = superseded.filter(|s| Some(&s.license_number) == number.as_ref());
        let persisted = Persisted {
            pending: self
                .db
                .get(PENDING)
                .ok()
                .flatten()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default(),
            superseded,
            grant,
            receipt,
            refusal,
            high_water: self.time(HIGH_WATER, &mut report).unwrap_or(UnixTime(0)),
            dongle_last_seen: self.time(DONGLE_LAST_SEEN, &mut report),
            open_run: self
                .db
                .get(OPEN_RUN)
                .ok()
                .flatten()
                .and_then(|b| serde_json::from_slice(&b).ok()),
        };
        (persisted, report)
    }

    fn verified<T: SignedPayload>(
        &self,
        key: &str,
        trusted: &TrustedKeys,
        report: &mut LoadReport,
    ) -> Option<Verified<T>> {
        let bytes = match self.db.get(key) {
            Ok(Some(b)) => b,
            Ok(None) => return None,
            Err(e) => {
                report.dropped.push(format!("{key}: unreadable ({e})"));
                return None;
            }
        };
        let signed: Signed<T> = match serde_json::from_slice(&bytes) {
            Ok(s) => s,
            Err(e) => {
                report
                    .dropped
                    .push(format!("{key}: not a signed document ({e})"));
                return None;
            }
        };
        match trusted.verify(&signed) {
            Ok(v) => Some(v),
            Err(e) => {
                report.dropped.push(format!("{key}: {e}"));
                None
            }
        }
    }

    fn time(&self, key: &str, report: &mut LoadReport) -> Option<UnixTime> {
        match self.db.get(key) {
            Ok(Some(b)) => match <[u8; 8]>::try_from(b.as_ref()) {
                Ok(a) => Some(UnixTime(u64::from_be_bytes(a))),
                Err(_) => {
                    report.dropped.push(format!("{key}: not 8 bytes"));
                    None
                }
            },
            _ => None,
        }
    }

    /// Stores the persistent part of the state machine.
    pub fn save(&self, p: &Persisted) -> Result<(), CacheWriteError> {
        put_signed(&self.db, GRANT, p.grant.as_ref().map(|g| g.signed()))?;
        put_signed(&self.db, RECEIPT, p.receipt.as_ref().map(|r| r.signed()))?;
        put_signed(&self.db, REFUSAL, p.refusal.as_ref().map(|r| r.signed()))?;
        put_signed(
            &self.db,
            SUPERSEDED,
            p.superseded.as_ref().map(|g| g.signed()),
        )?;
        self.db
            .insert(PENDING, serde_json::to_vec(&p.pending).unwrap_or_default())?;
        self.db
            .insert(HIGH_WATER, &p.high_water.secs().to_be_bytes())?;
        match p.dongle_last_seen {
            Some(t) => self.db.insert(DONGLE_LAST_SEEN, &t.secs().to_be_bytes())?,
            None => self.db.remove(DONGLE_LAST_SEEN)?,
        };
        match &p.open_run {
            Some(r) => self
                .db
                .insert(OPEN_RUN, serde_json::to_vec(r).unwrap_or_default())?,
            None => self.db.remove(OPEN_RUN)?,
        };
        Ok(())
    }

    /// Writes buffered changes to disk.
    pub fn flush(&self) -> Result<(), CacheWriteError> {
        self.db.flush()?;
        Ok(())
    }

    /// Records the start of a run; returns its key for [`Cache::end_run`].
    pub fn start_run(&self, started: UnixTime) -> Result<u64, CacheWriteError> {
        let id = self.db.generate_id()?;
        let rec = RunRecord {
            started,
            stopped: None,
            end: None,
        };
        self.runs.insert(
            id.to_be_bytes(),
            serde_json::to_vec(&rec).unwrap_or_default(),
        )?;
        while self.runs.len() > MAX_RUNS {
            if self.runs.pop_min()?.is_none() {
                break;
            }
        }
        Ok(id)
    }

    /// Records the end of run `id`.
    pub fn end_run(&self, id: u64, stopped: UnixTime, why: &str) -> Result<(), CacheWriteError> {
        if let Some(bytes) = self.runs.get(id.to_be_bytes())? {
            if let Ok(mut rec) = serde_json::from_slice::<RunRecord>(&bytes) {
                rec.stopped = Some(stopped);
                rec.end = Some(why.to_owned());
                self.runs.insert(
                    id.to_be_bytes(),
                    serde_json::to_vec(&rec).unwrap_or_default(),
                )?;
            }
        }
        Ok(())
    }

    /// Closes runs a previous daemon process left open (it stopped or crashed).
    pub fn close_stale_runs(&self, at: UnixTime) -> Result<usize, CacheWriteError> {
        let mut n = 0;
        for item in self.runs.iter() {
            let (k, v) = item?;
            if let Ok(mut rec) = serde_json::from_slice::<RunRecord>(&v) {
                if rec.stopped.is_none() {
                    rec.stopped = Some(at);
                    rec.end = Some("daemon_restart".into());
                    self.runs
                        .insert(k, serde_json::to_vec(&rec).unwrap_or_default())?;
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    /// The store-and-forward queue (see [`crate::relay`]).
    pub fn relay_queue(&self) -> &sled::Tree {
        &self.relay_queue
    }

    /// Answers waiting for their peer (see [`crate::relay`]).
    pub fn relay_answers(&self) -> &sled::Tree {
        &self.relay_answers
    }

    /// The site's grants, highest serial per license (see [`crate::relay`]).
    pub fn site_grants(&self) -> &sled::Tree {
        &self.site_grants
    }

    /// A fresh id for queue keys (monotonic across restarts).
    pub fn generate_id(&self) -> Result<u64, CacheWriteError> {
        Ok(self.db.generate_id()?)
    }

    /// The run history, oldest first.
    pub fn runs(&self) -> Vec<RunRecord> {
        self.runs
            .iter()
            .filter_map(|r| r.ok())
            .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
            .collect()
    }
}

fn put_signed<T>(db: &sled::Db, key: &str, signed: Option<&Signed<T>>) -> Result<(), sled::Error> {
    match signed {
        Some(s) => db
            .insert(key, serde_json::to_vec(s).unwrap_or_default())
            .map(|_| ()),
        None => db.remove(key).map(|_| ()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keys::grant::GRANT_FORMAT;
    use keys::{Entitlements, LicenseData, LicenseNumber, LicenseType, Protection, SigningKeyPair};

    fn key() -> SigningKeyPair {
        SigningKeyPair::from_seed(&[3u8; 32])
    }
    fn hwid() -> HardwareId {
        "502c649d1171ad2e8705074ce97791db".parse().expect("hwid")
    }
    fn grant() -> Signed<LicenseGrant> {
        let k = key();
        Signed::sign(
            &LicenseGrant {
                format: GRANT_FORMAT,
                license_number: LicenseNumber::from_body(192_190_001).expect("n"),
                license_type: LicenseType::Standard,
                protection: Protection::SoftDongle,
                license_data: LicenseData {
                    name: "A".into(),
                    postcode: "1".into(),
                    city: "B".into(),
                },
                binding: Binding::HardwareId(hwid()),
                entitlements: Entitlements::standard_base(),
                issued_at: UnixTime(1),
                valid_until: None,
                serial: 1,
                key_id: k.key_id(),
            },
            &k,
        )
    }

    #[test]
    fn state_round_trips_and_is_verified_again_on_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let trusted = TrustedKeys::with([key().public()]);
        let cache = Cache::open(dir.path()).expect("open");
        let p = Persisted {
            grant: Some(trusted.verify(&grant()).expect("verify")),
            high_water: UnixTime(1234),
            dongle_last_seen: Some(UnixTime(99)),
            ..Persisted::default()
        };
        cache.save(&p).expect("save");
        let (back, report) = cache.load(&trusted, &hwid());
        assert_eq!(report, LoadReport::default());
        assert_eq!(back.grant.map(|g| g.serial), Some(1));
        assert_eq!(
            (back.high_water, back.dongle_last_seen),
            (UnixTime(1234), Some(UnixTime(99)))
        );

        // Another host's cache or an unknown key: dropped, not trusted.
        let (other, report) = cache.load(
            &trusted,
            &"ffffffffffffffffffffffffffffffff".parse().expect("hwid"),
        );
        assert!(other.grant.is_none());
        assert_eq!(report.dropped.len(), 1);
        let (stranger, report) = cache.load(
            &TrustedKeys::with([SigningKeyPair::generate().public()]),
            &hwid(),
        );
        assert!(stranger.grant.is_none());
        assert!(report.dropped[0].contains("does not trust"), "{report:?}");
    }

    #[test]
    fn tampered_or_garbage_entries_are_dropped_never_trusted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let trusted = TrustedKeys::with([key().public()]);
        let cache = Cache::open(dir.path()).expect("open");
        let mut text = serde_json::to_string(&grant()).expect("json");
        // Flip one payload byte inside the JSON array of numbers.
        let at = text.find("[123,").expect("payload starts with '{'") + 1;
        text.replace_range(at..at + 3, "125");
        cache.db.insert(GRANT, text.as_bytes()).expect("insert");
        cache.db.insert(RECEIPT, &b"garbage"[..]).expect("insert");
        cache.db.insert(HIGH_WATER, &b"123"[..]).expect("insert");
        let (p, report) = cache.load(&trusted, &hwid());
        assert!(p.grant.is_none() && p.receipt.is_none());
        assert_eq!(p.high_water, UnixTime(0));
        assert_eq!(report.dropped.len(), 3, "{report:?}");
    }

    #[test]
    fn an_unreadable_database_is_moved_aside_and_a_locked_one_is_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db_dir = dir.path().join("cache.sled");
        std::fs::create_dir_all(&db_dir).expect("dir");
        std::fs::write(db_dir.join("conf"), b"\xff\xfe not a sled config").expect("garbage");
        std::fs::write(db_dir.join("db"), vec![0xa5u8; 4096]).expect("garbage");
        let cache = Cache::open(dir.path()).expect("a fresh cache instead of a crash");
        let (p, _) = cache.load(&TrustedKeys::new(), &hwid());
        assert!(p.grant.is_none());
        let aside = std::fs::read_dir(dir.path())
            .expect("list")
            .filter_map(|e| e.ok())
            .any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("cache.sled.corrupt-")
            });
        assert!(aside, "the broken database is kept for inspection");
        // While open, a second open fails instead of moving the live one aside.
        assert!(matches!(
            Cache::open(dir.path()),
            Err(CacheOpenError::Open { .. })
        ));
        drop(cache);
    }

    #[test]
    fn run_history_is_kept_and_stale_runs_are_closed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = Cache::open(dir.path()).expect("open");
        let a = cache.start_run(UnixTime(10)).expect("run");
        cache
            .end_run(a, UnixTime(20), "runtime_stopped")
            .expect("end");
        cache.start_run(UnixTime(30)).expect("run");
        assert_eq!(cache.close_stale_runs(UnixTime(40)).expect("close"), 1);
        let runs = cache.runs();
        assert_eq!(runs.len(), 2);
        assert_eq!(
            runs[0],
            RunRecord {
                started: UnixTime(10),
                stopped: Some(UnixTime(20)),
                end: Some("runtime_stopped".into())
            }
        );
        assert_eq!(runs[1].end.as_deref(), Some("daemon_restart"));
    }
}
