//! The daemon's durable license state in the data directory, kept twice: in
//! the sled cache `cache.sled` (with the run history and the relay's trees) and
//! in the small file `license-state.json`, replaced atomically (write a temp
//! file, fsync it, rename it over the old one, fsync the directory).
//!
//! Both copies hold the same snapshot of the state machine's persistent part
//! (the signed grant, receipt, refusal and superseding grant as the signed
//! bytes the server produced, the high-water mark, the open run, the open check
//! nonces, when the hard dongle was last seen) and a generation number that
//! grows by one with every write. [`Cache::save`] writes sled as one batch,
//! flushes it (fsync), then replaces the file; only then does the shell answer
//! anyone, so nothing acknowledged is lost to a crash.
//!
//! [`Cache::load`] reads both, verifies every signature again (anything that
//! fails: bad signature, unknown key, another host's document, garbage, is
//! dropped and logged, never trusted), takes the newest undamaged copy and
//! writes it back to both. A copy that is damaged, missing or behind is a
//! [`StorageProblem`]: logged at error level and shown in `status` (`diagnosis`
//! and `storage`) and in the metrics, never a silent `not_activated`. sled cuts
//! its log at a damaged entry and says so only at debug level; the generation
//! in the other copy is what reveals it. A database sled cannot open at all is
//! moved aside to `cache.sled.corrupt-<unix time>` and a fresh one is created.
//!
//! A write that fails (disk full) leaves the daemon answering from memory: the
//! failure is logged once, shown in `status`, and every later save retries, so
//! the state is written again as soon as there is space, without a restart.

use crate::state::{OpenRun, Persisted, Text};
use keys::{
    Binding, HardwareId, LicenseGrant, Signed, SignedPayload, TrustedKeys, UnixTime, Verified,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use wire::{CheckReceipt, Nonce, Refusal};

const GRANT: &str = "grant";
const RECEIPT: &str = "receipt";
const REFUSAL: &str = "refusal";
const HIGH_WATER: &str = "high_water";
const DONGLE_LAST_SEEN: &str = "dongle_last_seen";
const OPEN_RUN: &str = "open_run";
const RUNS: &str = "runs";
const PENDING: &str = "pending";
const OFFLINE_PENDING: &str = "offline_pending";
const SUPERSEDED: &str = "superseded";
/// The generation of the snapshot in sled (u64 big-endian); absent in caches
/// written before the state file existed.
const GENERATION: &str = "generation";
/// Store and forward: frame bodies queued for the server, per peer.
const RELAY_QUEUE: &str = "relay_queue";
/// The server's answers to queued bodies, waiting for their peer to collect them.
const RELAY_ANSWERS: &str = "relay_answers";
/// The highest grant seen per license of the site (gossip).
const SITE_GRANTS: &str = "site_grants";
/// Run history kept: the newest 1,000 runs (about three years of daily restarts).
const MAX_RUNS: usize = 1_000;
/// The second copy of the signed state, next to `cache.sled`.
pub const STATE_FILE: &str = "license-state.json";
/// The sled database's directory in the data directory.
pub const DB_DIR: &str = "cache.sled";
/// The state file is a few KiB; anything far larger is not ours.
const MAX_STATE_FILE: u64 = 1024 * 1024;

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
/// running from memory; the next save tries again.
#[derive(Debug, thiserror::Error)]
pub enum CacheWriteError {
    #[error("cannot write the license cache: {0}")]
    Db(#[from] sled::Error),
    #[error("cannot write {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
}

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

/// Something wrong with the stored state: a stable code (README, "The cache")
/// and the German and English text shown in `status`'s `diagnosis`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StorageProblem {
    pub code: &'static str,
    pub de: String,
    pub en: String,
}

impl StorageProblem {
    fn new(code: &'static str, de: impl Into<String>, en: impl Into<String>) -> Self {
        StorageProblem {
            code,
            de: de.into(),
            en: en.into(),
        }
    }

    /// The text for `diagnosis`.
    pub fn text(&self) -> Text {
        Text {
            de: self.de.clone(),
            en: self.en.clone(),
        }
    }
}

/// What the cache knows about its own health, for `status`.
#[derive(Debug, Default)]
struct Health {
    /// The snapshot last written to both copies (generation 0), to skip
    /// writing the same state again.
    written: Option<Vec<u8>>,
    generation: u64,
    /// Damage and loss found when the cache was opened and loaded.
    problems: Vec<StorageProblem>,
    /// The last write failed with this error (cleared by the next good write).
    write_error: Option<String>,
}

/// The persistent state as stored: signed documents as the server's signed
/// bytes, not yet verified. The same in sled (one key per field) and in the
/// state file (one JSON object).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Snapshot {
    generation: u64,
    grant: Option<Signed<LicenseGrant>>,
    receipt: Option<Signed<CheckReceipt>>,
    refusal: Option<Signed<Refusal>>,
    superseded: Option<Signed<LicenseGrant>>,
    high_water: u64,
    dongle_last_seen: Option<u64>,
    open_run: Option<OpenRun>,
    pending: Vec<Nonce>,
    /// Since issue 19 (request files); absent in older state files.
    #[serde(default)]
    offline_pending: Vec<Nonce>,
}

impl Snapshot {
    fn of(p: &Persisted, generation: u64) -> Snapshot {
        Snapshot {
            generation,
            grant: p.grant.as_ref().map(|g| g.signed().clone()),
            receipt: p.receipt.as_ref().map(|r| r.signed().clone()),
            refusal: p.refusal.as_ref().map(|r| r.signed().clone()),
            superseded: p.superseded.as_ref().map(|g| g.signed().clone()),
            high_water: p.high_water.secs(),
            dongle_last_seen: p.dongle_last_seen.map(|t| t.secs()),
            open_run: p.open_run.clone(),
            pending: p.pending.clone(),
            offline_pending: p.offline_pending.clone(),
        }
    }

    fn is_empty(&self) -> bool {
        self.grant.is_none()
            && self.receipt.is_none()
            && self.refusal.is_none()
            && self.superseded.is_none()
            && self.high_water == 0
            && self.open_run.is_none()
    }

    /// Verifies every signed document again; what fails is dropped and reported.
    fn verify(
        self,
        trusted: &TrustedKeys,
        hardware_id: &HardwareId,
        report: &mut LoadReport,
    ) -> Persisted {
        let grant = verify_one(self.grant, GRANT, trusted, report).filter(|g| {
            let ok = g.binding == Binding::HardwareId(hardware_id.clone());
            if !ok {
                report
                    .dropped
                    .push("grant: bound to another hardware ID".into());
            }
            ok
        });
        let number = grant.as_ref().map(|g| g.license_number.clone());
        let receipt = verify_one(self.receipt, RECEIPT, trusted, report).filter(
            |r: &Verified<CheckReceipt>| {
                let ok =
                    &r.hardware_id == hardware_id && Some(&r.license_number) == number.as_ref();
                if !ok {
                    report
                        .dropped
                        .push("receipt: for another host or license".into());
                }
                ok
            },
        );
        let refusal =
            verify_one(self.refusal, REFUSAL, trusted, report).filter(|r: &Verified<Refusal>| {
                let ok =
                    &r.hardware_id == hardware_id && Some(&r.license_number) == number.as_ref();
                if !ok {
                    report
                        .dropped
                        .push("refusal: for another host or license".into());
                }
                ok
            });
        let superseded = verify_one(self.superseded, SUPERSEDED, trusted, report)
            .filter(|s: &Verified<LicenseGrant>| Some(&s.license_number) == number.as_ref());
        Persisted {
            grant,
            receipt,
            refusal,
            superseded,
            high_water: UnixTime(self.high_water),
            dongle_last_seen: self.dongle_last_seen.map(UnixTime),
            open_run: self.open_run,
            pending: self.pending,
            offline_pending: self.offline_pending,
        }
    }
}

fn verify_one<T: SignedPayload>(
    signed: Option<Signed<T>>,
    key: &str,
    trusted: &TrustedKeys,
    report: &mut LoadReport,
) -> Option<Verified<T>> {
    match trusted.verify(&signed?) {
        Ok(v) => Some(v),
        Err(e) => {
            report.dropped.push(format!("{key}: {e}"));
            None
        }
    }
}

/// What reading the state file found.
#[derive(Debug)]
enum FileRead {
    Absent,
    Damaged(String),
    Read(Box<Snapshot>),
}

/// The state file's bytes: the snapshot as one JSON line, then
/// `sha256 <hex of that line>` on the second line.
fn render_state_file(snapshot: &Snapshot) -> Vec<u8> {
    let mut out = serde_json::to_vec(snapshot).unwrap_or_default();
    let sum = hex::encode(Sha256::digest(&out));
    out.extend_from_slice(format!("\nsha256 {sum}\n").as_bytes());
    out
}

/// Parses the state file's bytes; total (damaged bytes give `Damaged`).
fn parse_state_file(bytes: &[u8]) -> FileRead {
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(_) => return FileRead::Damaged("not UTF-8".into()),
    };
    let Some((body, rest)) = text.split_once('\n') else {
        return FileRead::Damaged("truncated (no checksum line)".into());
    };
    let Some(sum) = rest
        .strip_suffix('\n')
        .and_then(|l| l.strip_prefix("sha256 "))
    else {
        return FileRead::Damaged("truncated or bad checksum line".into());
    };
    if hex::encode(Sha256::digest(body.as_bytes())) != sum {
        return FileRead::Damaged("checksum does not match".into());
    }
    match serde_json::from_str(body) {
        Ok(s) => FileRead::Read(Box::new(s)),
        Err(e) => FileRead::Damaged(format!("not a state snapshot ({e})")),
    }
}

/// Replaces `path` with `bytes` atomically and durably: temp file, fsync,
/// rename, fsync of the directory.
fn replace_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("json.tmp");
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The open cache.
#[derive(Debug, Clone)]
pub struct Cache {
    db: sled::Db,
    dir: PathBuf,
    health: Arc<Mutex<Health>>,
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
        let path = dir.join(DB_DIR);
        let mut health = Health::default();
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
                tracing::error!(code = "cache_db_unreadable", error = %e, moved_to = %aside.display(), "license cache is unreadable; moved aside, starting a fresh one");
                health.problems.push(StorageProblem::new(
                    "cache_db_unreadable",
                    format!(
                        "Der Lizenz-Cache {} war nicht lesbar ({e}) und wurde nach {} verschoben.",
                        path.display(),
                        aside.display()
                    ),
                    format!(
                        "The license cache {} was unreadable ({e}) and was moved to {}.",
                        path.display(),
                        aside.display()
                    ),
                ));
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
            dir: dir.to_owned(),
            health: Arc::new(Mutex::new(health)),
            db,
        })
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        // Every update of `Health` is a single assignment: a poisoned lock
        // still holds consistent data.
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Damage and loss found at load (for `status`), oldest first.
    pub fn problems(&self) -> Vec<StorageProblem> {
        self.health().problems.clone()
    }

    /// The error of the last write, while writes fail (disk full).
    pub fn write_error(&self) -> Option<String> {
        self.health().write_error.clone()
    }

    /// The path of the state file.
    pub fn state_file(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    fn add_problem(&self, p: StorageProblem) {
        tracing::error!(code = p.code, problem = %p.en, "license state storage damaged");
        self.health().problems.push(p);
    }

    /// Loads both copies, verifies them, takes the newest undamaged one and
    /// writes it back to both (repairing the other). Never fails: what does not
    /// verify is dropped; damage and loss become [`Cache::problems`].
    pub fn load(&self, trusted: &TrustedKeys, hardware_id: &HardwareId) -> (Persisted, LoadReport) {
        let mut db_damage = Vec::new();
        let db_snap = self.db_snapshot(&mut db_damage);
        let db_generation = self.db_generation();
        let file_path = self.state_file();
        let file = match std::fs::metadata(&file_path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => FileRead::Absent,
            Err(e) => FileRead::Damaged(format!("unreadable ({e})")),
            Ok(m) if m.len() > MAX_STATE_FILE => {
                FileRead::Damaged(format!("{} bytes, far too large", m.len()))
            }
            Ok(_) => match std::fs::read(&file_path) {
                Ok(bytes) => parse_state_file(&bytes),
                Err(e) => FileRead::Damaged(format!("unreadable ({e})")),
            },
        };
        let db_name = self.dir.join(DB_DIR).display().to_string();
        let file_name = file_path.display().to_string();
        let mut report = LoadReport::default();
        let use_file = match &file {
            FileRead::Read(f) => {
                let file_gen = f.generation;
                if !db_damage.is_empty() {
                    self.add_problem(StorageProblem::new(
                        "cache_db_damaged",
                        format!("Der Lizenz-Cache {db_name} ist beschädigt ({}); der Zustand wurde aus {file_name} wiederhergestellt.", db_damage.join("; ")),
                        format!("The license cache {db_name} is damaged ({}); the state was restored from {file_name}.", db_damage.join("; ")),
                    ));
                    true
                } else if db_generation.unwrap_or(0) < file_gen {
                    // sled is flushed before the file is replaced, so sled is
                    // never behind the file unless it lost writes.
                    self.add_problem(StorageProblem::new(
                        "cache_db_lost_state",
                        format!("Der Lizenz-Cache {db_name} hat gespeicherte Zustände verloren (Stand {} statt {file_gen}); der Zustand wurde aus {file_name} wiederhergestellt.", db_generation.unwrap_or(0)),
                        format!("The license cache {db_name} lost stored state (generation {} instead of {file_gen}); the state was restored from {file_name}.", db_generation.unwrap_or(0)),
                    ));
                    true
                } else if db_generation.is_some_and(|g| g > file_gen + 1) {
                    self.add_problem(StorageProblem::new(
                        "state_file_lost_state",
                        format!("Die Zustandsdatei {file_name} ist veraltet (Stand {file_gen} statt {}); sie wurde aus dem Lizenz-Cache erneuert.", db_generation.unwrap_or(0)),
                        format!("The state file {file_name} is out of date (generation {file_gen} instead of {}); it was renewed from the license cache.", db_generation.unwrap_or(0)),
                    ));
                    false
                } else {
                    // Equal, or the file one write behind: a crash between the
                    // two writes (nothing was acknowledged in between).
                    false
                }
            }
            FileRead::Damaged(why) => {
                self.add_problem(StorageProblem::new(
                    "state_file_damaged",
                    format!("Die Zustandsdatei {file_name} ist beschädigt ({why}); sie wurde aus dem Lizenz-Cache erneuert."),
                    format!("The state file {file_name} is damaged ({why}); it was renewed from the license cache."),
                ));
                false
            }
            FileRead::Absent => {
                if db_generation.is_some() {
                    self.add_problem(StorageProblem::new(
                        "state_file_missing",
                        format!("Die Zustandsdatei {file_name} fehlt; sie wurde aus dem Lizenz-Cache erneuert."),
                        format!("The state file {file_name} is missing; it was renewed from the license cache."),
                    ));
                } else if !db_snap.is_empty() {
                    tracing::info!(file = %file_name, "creating the state file from a cache written by an older daemon");
                }
                false
            }
        };
        if !use_file && !db_damage.is_empty() {
            self.add_problem(StorageProblem::new(
                "cache_db_damaged",
                format!("Der Lizenz-Cache {db_name} ist beschädigt ({}) und es gibt keine gültige zweite Kopie.", db_damage.join("; ")),
                format!("The license cache {db_name} is damaged ({}) and there is no valid second copy.", db_damage.join("; ")),
            ));
        }
        let file_generation = match &file {
            FileRead::Read(f) => f.generation,
            _ => 0,
        };
        let chosen = match file {
            FileRead::Read(f) if use_file => *f,
            _ => db_snap,
        };
        let in_step = db_generation.is_some() && db_generation == Some(file_generation);
        let fresh = chosen.is_empty() && db_generation.is_none();
        let repair = !in_step && !fresh;
        let persisted = chosen.verify(trusted, hardware_id, &mut report);
        self.health().generation = db_generation.unwrap_or(0).max(file_generation);
        // Repair: write the chosen state to both copies, one generation on.
        // Copies in step are left alone (what failed verification stays on
        // disk until the state machine saves a new state).
        if repair {
            self.health().written = None;
            if let Err(e) = self.save(&persisted) {
                tracing::error!(error = %e, "the license state could not be written back after loading");
            }
        }
        (persisted, report)
    }

    fn db_generation(&self) -> Option<u64> {
        let bytes = self.db.get(GENERATION).ok().flatten()?;
        <[u8; 8]>::try_from(bytes.as_ref())
            .ok()
            .map(u64::from_be_bytes)
    }

    /// The snapshot as sled holds it; entries that cannot be read or parsed
    /// are left out and named in `damage`.
    fn db_snapshot(&self, damage: &mut Vec<String>) -> Snapshot {
        Snapshot {
            generation: self.db_generation().unwrap_or(0),
            grant: self.db_json(GRANT, damage),
            receipt: self.db_json(RECEIPT, damage),
            refusal: self.db_json(REFUSAL, damage),
            superseded: self.db_json(SUPERSEDED, damage),
            high_water: self.time(HIGH_WATER, damage).unwrap_or(0),
            dongle_last_seen: self.time(DONGLE_LAST_SEEN, damage),
            open_run: self.db_json(OPEN_RUN, damage),
            pending: self.db_json(PENDING, damage).unwrap_or_default(),
            offline_pending: self.db_json(OFFLINE_PENDING, damage).unwrap_or_default(),
        }
    }

    fn db_json<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
        damage: &mut Vec<String>,
    ) -> Option<T> {
        match self.db.get(key) {
            Ok(Some(b)) => match serde_json::from_slice(&b) {
                Ok(v) => Some(v),
                Err(e) => {
                    damage.push(format!("{key}: not readable ({e})"));
                    None
                }
            },
            Ok(None) => None,
            Err(e) => {
                damage.push(format!("{key}: unreadable ({e})"));
                None
            }
        }
    }

    fn time(&self, key: &str, damage: &mut Vec<String>) -> Option<u64> {
        match self.db.get(key) {
            Ok(Some(b)) => match <[u8; 8]>::try_from(b.as_ref()) {
                Ok(a) => Some(u64::from_be_bytes(a)),
                Err(_) => {
                    damage.push(format!("{key}: not 8 bytes"));
                    None
                }
            },
            Ok(None) => None,
            Err(e) => {
                damage.push(format!("{key}: unreadable ({e})"));
                None
            }
        }
    }

    /// Stores the persistent part of the state machine in both copies and
    /// returns once both are on disk: sled as one batch and flushed, then the
    /// state file replaced atomically. The same state twice is written once.
    /// A failure is logged once (until a write succeeds again), shown by
    /// [`Cache::write_error`], and retried by the next save.
    pub fn save(&self, p: &Persisted) -> Result<(), CacheWriteError> {
        let mut health = self.health();
        let unnumbered = serde_json::to_vec(&Snapshot::of(p, 0)).unwrap_or_default();
        if health.write_error.is_none() && health.written.as_ref() == Some(&unnumbered) {
            return Ok(());
        }
        let generation = health.generation + 1;
        let snapshot = Snapshot::of(p, generation);
        match self.write_both(&snapshot) {
            Ok(()) => {
                if let Some(e) = health.write_error.take() {
                    tracing::info!(previous_error = %e, "the license state is written to disk again");
                }
                health.generation = generation;
                health.written = Some(unnumbered);
                Ok(())
            }
            Err(e) => {
                if health.write_error.is_none() {
                    tracing::error!(code = "state_not_written", error = %e, "the license state cannot be written (disk full?); answering from memory and retrying");
                }
                // Even if one copy got this generation, the next try uses a
                // newer one, so the copies never disagree under one number.
                health.generation = generation;
                health.write_error = Some(e.to_string());
                Err(e)
            }
        }
    }

    fn write_both(&self, s: &Snapshot) -> Result<(), CacheWriteError> {
        let mut batch = sled::Batch::default();
        let mut put = |key: &str, value: Option<Vec<u8>>| match value {
            Some(v) => batch.insert(key, v),
            None => batch.remove(key),
        };
        put(GRANT, s.grant.as_ref().map(json));
        put(RECEIPT, s.receipt.as_ref().map(json));
        put(REFUSAL, s.refusal.as_ref().map(json));
        put(SUPERSEDED, s.superseded.as_ref().map(json));
        put(PENDING, Some(json(&s.pending)));
        put(OFFLINE_PENDING, Some(json(&s.offline_pending)));
        put(HIGH_WATER, Some(s.high_water.to_be_bytes().to_vec()));
        put(
            DONGLE_LAST_SEEN,
            s.dongle_last_seen.map(|t| t.to_be_bytes().to_vec()),
        );
        put(OPEN_RUN, s.open_run.as_ref().map(json));
        put(GENERATION, Some(s.generation.to_be_bytes().to_vec()));
        self.db.apply_batch(batch)?;
        self.db.flush()?;
        let path = self.state_file();
        replace_file(&path, &render_state_file(s))
            .map_err(|source| CacheWriteError::File { path, source })
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

/// A sled value as JSON (the types are plain data; serializing cannot fail).
fn json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use keys::grant::GRANT_FORMAT;
    use keys::{Entitlements, LicenseData, LicenseNumber, LicenseType, Protection, SigningKeyPair};
    use std::sync::{Arc, Mutex};

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
        // The forged grant is dropped; the unparseable entries are damage.
        assert_eq!(report.dropped.len(), 1, "{report:?}");
        let problems = cache.problems();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].code, "cache_db_damaged");
        assert!(problems[0].en.contains("receipt") && problems[0].en.contains("high_water"));
    }

    fn receipt(server_time: u64) -> Signed<CheckReceipt> {
        let k = key();
        Signed::sign(
            &CheckReceipt {
                license_number: LicenseNumber::from_body(192_190_001).expect("n"),
                hardware_id: hwid(),
                nonce: Nonce([7; 16]),
                server_time: UnixTime(server_time),
                next_check_due: UnixTime(server_time + 86_400),
                current_serial: 1,
            },
            &k,
        )
    }

    /// The state every damage test starts from: grant, receipt, high-water
    /// mark and an open run.
    fn full_state(trusted: &TrustedKeys) -> Persisted {
        Persisted {
            grant: Some(trusted.verify(&grant()).expect("verify")),
            receipt: Some(trusted.verify(&receipt(1_800_000_000)).expect("verify")),
            high_water: UnixTime(1_800_000_100),
            open_run: Some(OpenRun {
                started: UnixTime(1_800_000_050),
                boot_id: "boot".into(),
            }),
            ..Persisted::default()
        }
    }

    fn same_state(a: &Persisted, b: &Persisted) -> bool {
        serde_json::to_vec(&Snapshot::of(a, 0)).ok() == serde_json::to_vec(&Snapshot::of(b, 0)).ok()
    }

    /// A writer for a test subscriber: every log line of a load, to assert on.
    #[derive(Clone, Default)]
    struct Log(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Log {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("log").extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Runs `f` with the log captured; returns its result and the log.
    fn logged<R>(f: impl FnOnce() -> R) -> (R, String) {
        let log = Log::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let r = tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8_lossy(&log.0.lock().expect("log")).into_owned();
        (r, text)
    }

    /// Opens and loads `dir` with the log captured: (state, problems, log).
    fn load_logged(dir: &Path, trusted: &TrustedKeys) -> (Persisted, Vec<StorageProblem>, String) {
        let ((p, problems), log) = logged(|| {
            let cache = Cache::open(dir).expect("open");
            let (p, _) = cache.load(trusted, &hwid());
            (p, cache.problems())
        });
        (p, problems, log)
    }

    /// Loads an open cache again with the log captured: (state, the problems
    /// this load found, log).
    fn reload_logged(
        cache: &Cache,
        trusted: &TrustedKeys,
    ) -> (Persisted, Vec<StorageProblem>, String) {
        let before = cache.problems().len();
        let ((p, problems), log) = logged(|| {
            let (p, _) = cache.load(trusted, &hwid());
            (p, cache.problems().split_off(before))
        });
        (p, problems, log)
    }

    /// A data directory holding `full_state` in both copies, closed cleanly.
    fn saved(trusted: &TrustedKeys) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = Cache::open(dir.path()).expect("open");
        cache.load(trusted, &hwid());
        cache.save(&full_state(trusted)).expect("save");
        drop(cache);
        dir
    }

    #[test]
    fn both_copies_hold_the_state_and_a_clean_restart_reports_nothing() {
        let trusted = TrustedKeys::with([key().public()]);
        let dir = saved(&trusted);
        let (p, problems, log) = load_logged(dir.path(), &trusted);
        assert!(same_state(&p, &full_state(&trusted)));
        assert!(problems.is_empty(), "{problems:?}");
        assert!(!log.contains("ERROR"), "{log}");
        // The file alone holds it too.
        let bytes = std::fs::read(dir.path().join(STATE_FILE)).expect("file");
        let FileRead::Read(snap) = parse_state_file(&bytes) else {
            panic!("the state file does not parse")
        };
        let mut report = LoadReport::default();
        assert!(same_state(
            &snap.verify(&trusted, &hwid(), &mut report),
            &full_state(&trusted)
        ));
    }

    #[test]
    fn a_flipped_byte_anywhere_in_the_state_file_is_found_logged_and_repaired() {
        let trusted = TrustedKeys::with([key().public()]);
        let dir = saved(&trusted);
        let path = dir.path().join(STATE_FILE);
        let good = std::fs::read(&path).expect("file");
        // The parser finds every flip of every bit at every offset.
        for offset in 0..good.len() {
            for bit in 0..8 {
                let mut bad = good.clone();
                bad[offset] ^= 1 << bit;
                assert!(
                    matches!(parse_state_file(&bad), FileRead::Damaged(_)),
                    "offset {offset} bit {bit} not found"
                );
            }
        }
        // The whole load (log, state, repair) at every 23rd offset and the
        // last one (each fsyncs three times: the full sweep takes a minute).
        let cache = Cache::open(dir.path()).expect("open");
        for offset in (0..good.len()).step_by(23).chain([good.len() - 1]) {
            let mut bad = std::fs::read(&path).expect("file");
            bad[offset] ^= if offset % 2 == 0 { 0x01 } else { 0x80 };
            std::fs::write(&path, &bad).expect("damage");
            let (p, problems, log) = reload_logged(&cache, &trusted);
            assert!(same_state(&p, &full_state(&trusted)), "offset {offset}");
            assert_eq!(problems.len(), 1, "offset {offset}: {problems:?}");
            assert_eq!(problems[0].code, "state_file_damaged");
            assert!(problems[0].de.contains("beschädigt"));
            assert!(
                log.contains("ERROR") && log.contains("state_file_damaged"),
                "offset {offset}: {log}"
            );
            assert!(
                matches!(
                    parse_state_file(&std::fs::read(&path).expect("file")),
                    FileRead::Read(_)
                ),
                "offset {offset}: not repaired"
            );
        }
    }

    #[test]
    fn a_truncated_or_deleted_state_file_is_found_logged_and_repaired() {
        let trusted = TrustedKeys::with([key().public()]);
        let dir = saved(&trusted);
        let path = dir.path().join(STATE_FILE);
        let good = std::fs::read(&path).expect("file");
        for len in 0..good.len() {
            assert!(
                matches!(parse_state_file(&good[..len]), FileRead::Damaged(_)),
                "length {len}"
            );
        }
        let cache = Cache::open(dir.path()).expect("open");
        for len in (0..good.len()).step_by(23).chain([good.len() - 1]) {
            std::fs::write(&path, &good[..len]).expect("truncate");
            let (p, problems, log) = reload_logged(&cache, &trusted);
            assert!(same_state(&p, &full_state(&trusted)), "length {len}");
            assert_eq!(problems.len(), 1, "length {len}: {problems:?}");
            assert_eq!(problems[0].code, "state_file_damaged");
            assert!(log.contains("state_file_damaged"), "{log}");
        }
        std::fs::remove_file(&path).expect("delete");
        let (p, problems, log) = reload_logged(&cache, &trusted);
        assert!(same_state(&p, &full_state(&trusted)));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].code, "state_file_missing");
        assert!(
            log.contains("ERROR") && log.contains("state_file_missing"),
            "{log}"
        );
        assert!(path.exists(), "recreated");
    }

    #[test]
    fn a_lost_or_damaged_database_is_restored_from_the_state_file() {
        let trusted = TrustedKeys::with([key().public()]);
        let dir = saved(&trusted);
        std::fs::remove_dir_all(dir.path().join(DB_DIR)).expect("delete the database");
        let (p, problems, log) = load_logged(dir.path(), &trusted);
        assert!(same_state(&p, &full_state(&trusted)));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].code, "cache_db_lost_state");
        assert!(
            log.contains("ERROR") && log.contains("cache_db_lost_state"),
            "{log}"
        );
        // Repaired: the next start is clean.
        let (p, problems, _) = load_logged(dir.path(), &trusted);
        assert!(same_state(&p, &full_state(&trusted)));
        assert!(problems.is_empty(), "{problems:?}");
    }

    /// What sled itself reads from a damaged database, bypassing the cache:
    /// the generation and whether the grant is there (`None` if sled cannot open it).
    fn sled_view(dir: &Path) -> Option<(Option<u64>, bool)> {
        let db = sled::open(dir.join(DB_DIR)).ok()?;
        let generation = db
            .get(GENERATION)
            .ok()
            .flatten()
            .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
            .map(u64::from_be_bytes);
        let grant = db.get(GRANT).ok().flatten().is_some();
        Some((generation, grant))
    }

    #[test]
    fn byte_flips_in_every_database_file_never_lose_the_state_silently() {
        let trusted = TrustedKeys::with([key().public()]);
        let dir = saved(&trusted);
        let expected_generation = {
            let bytes = std::fs::read(dir.path().join(STATE_FILE)).expect("file");
            match parse_state_file(&bytes) {
                FileRead::Read(s) => s.generation,
                other => panic!("{other:?}"),
            }
        };
        let pristine = tempfile::tempdir().expect("tempdir");
        copy_dir(dir.path(), pristine.path());
        let files: Vec<PathBuf> = walk(&pristine.path().join(DB_DIR));
        assert!(files.len() >= 2, "{files:?}");
        let (mut flips, mut reported) = (0, 0);
        for file in &files {
            let rel = file.strip_prefix(pristine.path()).expect("rel");
            let len = std::fs::metadata(file).expect("meta").len() as usize;
            // Dense over the first 4 KiB (headers and the first entries), then
            // spread over the rest of the file.
            let offsets: Vec<usize> = (0..len.min(4096))
                .step_by(13)
                .chain((4096..len).step_by((len / 64).max(1)))
                .collect();
            for offset in offsets {
                let work = tempfile::tempdir().expect("tempdir");
                copy_dir(pristine.path(), work.path());
                let target = work.path().join(rel);
                let mut bytes = std::fs::read(&target).expect("read");
                bytes[offset] ^= 0x5a;
                std::fs::write(&target, &bytes).expect("damage");
                // sled looks at its own copy: a dropped sled database keeps
                // its file lock until its background threads end, so opening
                // the same directory again at once can fail with EAGAIN.
                let view = tempfile::tempdir().expect("tempdir");
                copy_dir(work.path(), view.path());
                let seen = sled_view(view.path());
                let (p, problems, log) = load_logged(work.path(), &trusted);
                flips += 1;
                let what = format!("{} offset {offset}", rel.display());
                assert!(same_state(&p, &full_state(&trusted)), "{what}: state lost");
                let intact = seen == Some((Some(expected_generation), true));
                if !intact {
                    reported += 1;
                    assert!(
                        !problems.is_empty(),
                        "{what}: sled saw {seen:?}, nothing reported"
                    );
                    assert!(log.contains("ERROR"), "{what}: {log}");
                }
            }
        }
        assert!(flips > 100, "{flips}");
        assert!(
            reported > 0,
            "no flip damaged anything: the test proves nothing"
        );
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).expect("list").filter_map(|e| e.ok()) {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else if std::fs::metadata(&p).is_ok_and(|m| m.len() > 0) {
                out.push(p);
            }
        }
        out.sort();
        out
    }

    fn copy_dir(from: &Path, to: &Path) {
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
