//! The server's database: sled trees, their keys, the schema version, and every
//! write the license lifecycle makes, each as one transaction.
//!
//! Trees and keys (all integers big-endian so keys sort numerically; license
//! numbers are their 10 ASCII digits):
//!
//! | tree | key | value (JSON) |
//! | --- | --- | --- |
//! | `meta` | `schema_version` | u32 BE |
//! | `accounts` | account id (u64) | [`Account`] |
//! | `accounts_by_email` | normalised email | account id (u64) |
//! | `licenses` | number | [`License`] |
//! | `licenses_by_account` | account id + number | empty |
//! | `mutations` | number + mutation number (u32) | [`Mutation`] |
//! | `grants` | number + serial (u64) | `Signed<LicenseGrant>`: every grant ever issued |
//! | `audit` | sequence (u64) | [`AuditEntry`] |
//! | `audit_by_license` | number + sequence | empty |
//! | `checkins` | number | the latest [`CheckIn`] |
//! | `checkin_history` | number + sequence | [`CheckIn`], only when something changed |
//! | `license_search` | trigram length (u8) + trigram (UTF-8) + number | empty (schema 2) |
//!
//! Schema versions: 1 is the trees above without `license_search`; 2 adds
//! `license_search`, the trigram index of the admin license search
//! ([`crate::search`]), written in the same transaction as every license record
//! and built from the existing records by the 1 -> 2 migration. The index is
//! derived data: backups leave it out and a restore rebuilds it.
//!
//! Durability: every lifecycle write runs as one sled transaction over the trees it
//! touches and returns only after [`sled::Db::flush`], so a returned write survives
//! a crash. Check-ins (last seen) are the exception: they are written on every
//! daily check and are not flushed one by one; sled flushes them within its
//! `flush_every_ms` (500 ms), and losing the last half second of "last seen" in a
//! crash is harmless.
//!
//! Concurrency: lifecycle writes take the write half of one lock, so the rules a
//! write checks (which read mutations with range scans, which sled transactions
//! cannot do) see no concurrent change. Check-ins take the read half. A backup takes
//! the write half and so sees one consistent state across all trees.

use crate::domain::{
    self, Account, AccountId, ActivationDecision, Actor, AuditEntry, CheckDecision, CheckIn,
    License, LicenseToken, Mutation, MutationKind, MutationRuleError, MutationState, NewAccount,
    NewLicense, ResetError,
};
use crate::search;
use keys::{
    Binding, DongleSerial, Entitlements, HardwareId, LicenseData, LicenseGrant, LicenseNumber,
    Protection, Signed, SigningKeyPair, UnixTime,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sled::transaction::{
    ConflictableTransactionError, TransactionError, TransactionalTree, UnabortableTransactionError,
};
use sled::Transactional;
use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::RwLock;
use wire::RefusalReason;

/// The schema this build writes. Raise it with a migration in [`MIGRATIONS`].
pub const SCHEMA_VERSION: u32 = 2;

/// Migrations from version `n` to `n + 1`, in order: `MIGRATIONS[i]` upgrades
/// version `i + 1`. Each runs in its own step and the version is written after it,
/// so an interrupted migration is re-run from its start on the next open: every
/// migration must be idempotent.
type Migration = fn(&sled::Db) -> Result<(), StoreError>;
const MIGRATIONS: &[Migration] = &[
    // 1 -> 2: the license search index.
    migrate_1_to_2,
];

/// Schema 1 -> 2: builds `license_search` from the license records. Clears the
/// tree first, so a re-run after an interruption starts over.
fn migrate_1_to_2(db: &sled::Db) -> Result<(), StoreError> {
    rebuild_search_index(&Trees::open(db)?)?;
    Ok(())
}

/// Clears `license_search` and builds it from every license record; returns the
/// number of index entries.
fn rebuild_search_index(t: &Trees) -> Result<u64, StoreError> {
    t.license_search.clear()?;
    let emails = account_emails(t)?;
    let mut batch = sled::Batch::default();
    let (mut entries, mut in_batch) = (0u64, 0usize);
    for v in t.licenses.iter().values() {
        let l: License = from_json("license", &v?)?;
        for k in search::index_keys(&l, email_of(&emails, l.account)) {
            batch.insert(k, &[]);
            entries += 1;
        }
        in_batch += 1;
        if in_batch == 500 {
            t.license_search.apply_batch(std::mem::take(&mut batch))?;
            in_batch = 0;
        }
    }
    t.license_search.apply_batch(batch)?;
    Ok(entries)
}

/// Every account's email by id.
fn account_emails(t: &Trees) -> Result<HashMap<AccountId, String>, StoreError> {
    t.accounts
        .iter()
        .values()
        .map(|v| from_json::<Account>("account", &v?).map(|a| (a.id, a.email)))
        .collect()
}

fn email_of(emails: &HashMap<AccountId, String>, account: Option<AccountId>) -> &str {
    account
        .and_then(|a| emails.get(&a))
        .map(String::as_str)
        .unwrap_or_default()
}
const _: () = assert!(
    MIGRATIONS.len() as u32 + 1 == SCHEMA_VERSION,
    "one migration per schema version"
);

const SCHEMA_KEY: &[u8] = b"schema_version";
const BACKUP_FORMAT: &str = "pls-backup/1";

/// The trees a backup holds, in the order it writes them.
const TREES: [&str; 11] = [
    "meta",
    "accounts",
    "accounts_by_email",
    "licenses",
    "licenses_by_account",
    "mutations",
    "grants",
    "audit",
    "audit_by_license",
    "checkins",
    "checkin_history",
];

/// Runs `migrations[v - 1]` for every version `v` from `version` up to
/// `migrations.len() + 1`, writing and flushing the new version after each.
/// Logs each step ("migrating schema 1 → 2").
fn migrate(
    db: &sled::Db,
    meta: &sled::Tree,
    version: u32,
    migrations: &[Migration],
    p: &str,
) -> Result<(), OpenError> {
    for from in version..=migrations.len() as u32 {
        let step = |source| OpenError::Migration {
            path: p.to_owned(),
            from,
            source,
        };
        let started = std::time::Instant::now();
        tracing::info!(database = p, "migrating schema {from} → {}", from + 1);
        migrations[(from - 1) as usize](db).map_err(step)?;
        meta.insert(SCHEMA_KEY, &(from + 1).to_be_bytes())
            .map_err(|e| step(e.into()))?;
        db.flush().map_err(|e| step(e.into()))?;
        tracing::info!(
            database = p,
            "schema {} reached in {} ms",
            from + 1,
            started.elapsed().as_millis()
        );
    }
    Ok(())
}

/// The database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(
        "the database at {path} is in use by another process (is `pls serve` running? \
         Use `pls admin ...`, which talks to the running server)"
    )]
    Locked { path: String },
    #[error("the database at {path} has schema version {found}, newer than this pls ({supported}); use a newer pls")]
    NewerSchema {
        path: String,
        found: u32,
        supported: u32,
    },
    #[error("cannot open the database at {path}: {source}")]
    Db { path: String, source: sled::Error },
    #[error("migrating the database at {path} from schema version {from} failed (it stays at version {from}; the next start tries again): {source}")]
    Migration {
        path: String,
        from: u32,
        source: StoreError,
    },
}

/// A read or an unconditional write failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sled::Error),
    #[error("stored record {what} is damaged: {reason}")]
    Corrupt { what: String, reason: String },
}

/// An account could not be created or changed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("an account with email {0} already exists")]
    EmailTaken(String),
    #[error("{0:?} is not an email address")]
    InvalidEmail(String),
    #[error("there is no account {0}")]
    UnknownAccount(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A license operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum LicenseError {
    #[error("there is no license {0}")]
    UnknownLicense(LicenseNumber),
    #[error("license {0} has no mutation #{1}")]
    UnknownMutation(LicenseNumber, u32),
    #[error("mutation {id} is {from} and cannot become {to}")]
    Transition {
        id: String,
        from: &'static str,
        to: &'static str,
    },
    #[error("quote {0} has expired; ask for a new quote")]
    QuoteExpired(String),
    #[error(transparent)]
    Rule(#[from] MutationRuleError),
    #[error(transparent)]
    Reset(#[from] ResetError),
    #[error("license {0} is not a hardware-dongle license; only those have a dongle serial")]
    NotHardDongle(LicenseNumber),
    #[error("an engineering license must have protection \"engineering\", and only it")]
    ProtectionMismatch,
    #[error("there is no account {0}")]
    UnknownAccount(AccountId),
    #[error("license data: name, postcode and city are required")]
    MissingLicenseData,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A backup or restore failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("cannot write backup {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot read backup {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a complete pls backup: {reason}")]
    Invalid { path: String, reason: String },
    #[error("restore target {0} already holds a database; move it away first")]
    TargetNotEmpty(String),
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sled::Error> for AccountError {
    fn from(e: sled::Error) -> Self {
        AccountError::Store(StoreError::Db(e))
    }
}
impl From<sled::Error> for LicenseError {
    fn from(e: sled::Error) -> Self {
        LicenseError::Store(StoreError::Db(e))
    }
}
impl From<sled::Error> for BackupError {
    fn from(e: sled::Error) -> Self {
        BackupError::Store(StoreError::Db(e))
    }
}

/// A mutation as the portal or the CLI asks for it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NewMutation {
    pub kind: MutationKind,
    pub adds: Entitlements,
    pub price_net: Option<String>,
    pub remarks: String,
    #[serde(default)]
    pub priced: Option<crate::domain::PricedSummary>,
}

/// What a daemon's activation carries, after parsing.
#[derive(Clone, Debug)]
pub struct HostActivation<'a> {
    pub license: &'a LicenseNumber,
    /// The token as sent; compared in constant time, never stored or logged.
    pub token: &'a str,
    pub hardware_id: &'a HardwareId,
    pub daemon_version: &'a str,
    pub from: String,
}

/// What a daemon's check carries, after parsing.
#[derive(Clone, Debug)]
pub struct HostCheck<'a> {
    pub license: &'a LicenseNumber,
    pub hardware_id: &'a HardwareId,
    pub held_serial: Option<u64>,
    pub running: bool,
    pub ge_seats: u32,
    pub pwa_seats: u32,
    pub daemon_version: &'a str,
    pub from: String,
}

/// A successful check.
#[derive(Clone, Debug)]
pub struct CheckOutcome {
    pub current_serial: u64,
    /// A grant newer than the one the host holds.
    pub newer_grant: Option<Signed<LicenseGrant>>,
}

/// What a backup or restore moved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupSummary {
    pub entries: u64,
    pub licenses: u64,
    pub schema_version: u32,
}

#[derive(Clone)]
struct Trees {
    meta: sled::Tree,
    accounts: sled::Tree,
    accounts_by_email: sled::Tree,
    licenses: sled::Tree,
    licenses_by_account: sled::Tree,
    mutations: sled::Tree,
    grants: sled::Tree,
    audit: sled::Tree,
    audit_by_license: sled::Tree,
    checkins: sled::Tree,
    checkin_history: sled::Tree,
    /// Derived (schema 2): not in backups, rebuilt by a restore.
    license_search: sled::Tree,
}

impl Trees {
    fn open(db: &sled::Db) -> Result<Trees, sled::Error> {
        Ok(Trees {
            meta: db.open_tree("meta")?,
            accounts: db.open_tree("accounts")?,
            accounts_by_email: db.open_tree("accounts_by_email")?,
            licenses: db.open_tree("licenses")?,
            licenses_by_account: db.open_tree("licenses_by_account")?,
            mutations: db.open_tree("mutations")?,
            grants: db.open_tree("grants")?,
            audit: db.open_tree("audit")?,
            audit_by_license: db.open_tree("audit_by_license")?,
            checkins: db.open_tree("checkins")?,
            checkin_history: db.open_tree("checkin_history")?,
            license_search: db.open_tree("license_search")?,
        })
    }

    fn by_name(&self, name: &str) -> Option<&sled::Tree> {
        Some(match name {
            "meta" => &self.meta,
            "accounts" => &self.accounts,
            "accounts_by_email" => &self.accounts_by_email,
            "licenses" => &self.licenses,
            "licenses_by_account" => &self.licenses_by_account,
            "mutations" => &self.mutations,
            "grants" => &self.grants,
            "audit" => &self.audit,
            "audit_by_license" => &self.audit_by_license,
            "checkins" => &self.checkins,
            "checkin_history" => &self.checkin_history,
            _ => return None,
        })
    }
}

/// The transactional view of the trees a lifecycle write may touch.
struct Tx<'a> {
    accounts: &'a TransactionalTree,
    accounts_by_email: &'a TransactionalTree,
    licenses: &'a TransactionalTree,
    licenses_by_account: &'a TransactionalTree,
    mutations: &'a TransactionalTree,
    grants: &'a TransactionalTree,
    audit: &'a TransactionalTree,
    audit_by_license: &'a TransactionalTree,
    license_search: &'a TransactionalTree,
}

type TxResult<A, E> = Result<A, ConflictableTransactionError<E>>;

fn corrupt<E: From<StoreError>>(
    what: &str,
    reason: impl ToString,
) -> ConflictableTransactionError<E> {
    ConflictableTransactionError::Abort(E::from(StoreError::Corrupt {
        what: what.to_owned(),
        reason: reason.to_string(),
    }))
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Plain data records: serializing cannot fail (string map keys, no floats).
    serde_json::to_vec(value).unwrap_or_default()
}

fn from_json<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        what: what.to_owned(),
        reason: e.to_string(),
    })
}

impl Tx<'_> {
    fn get<T: DeserializeOwned, E: From<StoreError>>(
        &self,
        tree: &TransactionalTree,
        what: &str,
        key: &[u8],
    ) -> TxResult<Option<T>, E> {
        match tree.get(key)? {
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| corrupt(what, e)),
            None => Ok(None),
        }
    }

    fn put<T: Serialize>(
        &self,
        tree: &TransactionalTree,
        key: &[u8],
        value: &T,
    ) -> Result<(), UnabortableTransactionError> {
        tree.insert(key, to_json(value)).map(|_| ())
    }

    fn license<E: From<StoreError> + From<LicenseNumberMissing>>(
        &self,
        number: &LicenseNumber,
    ) -> TxResult<License, E> {
        self.get(self.licenses, "license", number.as_str().as_bytes())?
            .ok_or_else(|| {
                ConflictableTransactionError::Abort(E::from(LicenseNumberMissing(number.clone())))
            })
    }

    /// Writes the license record and brings its search index entries in line
    /// with it, in the same transaction.
    fn put_license(&self, license: &License) -> Result<(), UnabortableTransactionError> {
        let key = license.number.as_str().as_bytes();
        // A record that no longer decodes leaves its old entries behind: extra
        // candidates only, which the search checks away (and `verify` reports).
        let old: Option<License> = self
            .licenses
            .get(key)?
            .and_then(|v| serde_json::from_slice(&v).ok());
        let new_keys = search::index_keys(license, &self.customer_email(license.account)?);
        let old_keys = match old {
            Some(o) => search::index_keys(&o, &self.customer_email(o.account)?),
            None => Default::default(),
        };
        for k in old_keys.difference(&new_keys) {
            self.license_search.remove(k.as_slice())?;
        }
        for k in new_keys.difference(&old_keys) {
            self.license_search.insert(k.as_slice(), &[])?;
        }
        self.put(self.licenses, key, license)
    }

    /// The email of the account owning a license ("" for none).
    fn customer_email(
        &self,
        account: Option<AccountId>,
    ) -> Result<String, UnabortableTransactionError> {
        let Some(id) = account else {
            return Ok(String::new());
        };
        Ok(self
            .accounts
            .get(id.0.to_be_bytes())?
            .and_then(|v| serde_json::from_slice::<Account>(&v).ok())
            .map(|a| a.email)
            .unwrap_or_default())
    }

    fn put_mutation(&self, m: &Mutation) -> Result<(), UnabortableTransactionError> {
        self.put(self.mutations, &mutation_key(&m.license, m.number), m)
    }

    fn put_grant(
        &self,
        grant: &Signed<LicenseGrant>,
        number: &LicenseNumber,
        serial: u64,
    ) -> Result<(), UnabortableTransactionError> {
        self.put(self.grants, &serial_key(number, serial), grant)
    }

    /// Appends an audit entry (and its per-license index entry).
    fn audit(
        &self,
        at: UnixTime,
        actor: &Actor,
        license: Option<&LicenseNumber>,
        account: Option<AccountId>,
        action: &str,
        detail: String,
    ) -> Result<(), UnabortableTransactionError> {
        let seq = self
            .audit
            .generate_id()
            .map_err(UnabortableTransactionError::Storage)?;
        let entry = AuditEntry {
            seq,
            at,
            actor: actor.clone(),
            license: license.cloned(),
            account,
            action: action.to_owned(),
            detail,
        };
        self.put(self.audit, &seq.to_be_bytes(), &entry)?;
        if let Some(n) = license {
            self.audit_by_license.insert(serial_key(n, seq), &[])?;
        }
        Ok(())
    }
}

/// Marker: a transaction did not find the license it was asked about.
#[derive(Debug)]
struct LicenseNumberMissing(LicenseNumber);

impl From<LicenseNumberMissing> for LicenseError {
    fn from(m: LicenseNumberMissing) -> Self {
        LicenseError::UnknownLicense(m.0)
    }
}
impl From<LicenseNumberMissing> for StoreError {
    fn from(m: LicenseNumberMissing) -> Self {
        StoreError::Corrupt {
            what: format!("license {}", m.0),
            reason: "vanished during a write".into(),
        }
    }
}

fn mutation_key(n: &LicenseNumber, m: u32) -> Vec<u8> {
    let mut k = n.as_str().as_bytes().to_vec();
    k.extend_from_slice(&m.to_be_bytes());
    k
}

fn serial_key(n: &LicenseNumber, s: u64) -> Vec<u8> {
    let mut k = n.as_str().as_bytes().to_vec();
    k.extend_from_slice(&s.to_be_bytes());
    k
}

fn account_license_key(a: AccountId, n: &LicenseNumber) -> Vec<u8> {
    let mut k = a.0.to_be_bytes().to_vec();
    k.extend_from_slice(n.as_str().as_bytes());
    k
}

/// How long an open waits for a lock to go away, and in what steps: a handle this
/// process just closed keeps its file lock until sled's flusher thread ends a
/// moment later (restore, then open to migrate, is such a close-and-reopen).
const RELOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);
const RELOCK_STEP: std::time::Duration = std::time::Duration::from_millis(50);

/// Opens the sled database in `path`, telling a lock held by another process
/// apart from other failures (after waiting [`RELOCK_WAIT`] for it to go away).
fn open_db(path: &Path, p: &str) -> Result<sled::Db, OpenError> {
    let mut waited = std::time::Duration::ZERO;
    loop {
        match open_db_once(path, p) {
            Err(OpenError::Locked { .. }) if waited < RELOCK_WAIT => {
                std::thread::sleep(RELOCK_STEP);
                waited += RELOCK_STEP;
            }
            other => return other,
        }
    }
}

fn open_db_once(path: &Path, p: &str) -> Result<sled::Db, OpenError> {
    sled::Config::new()
        .path(path)
        .open()
        .map_err(|source| match &source {
            sled::Error::Io(io)
                if io.kind() == std::io::ErrorKind::WouldBlock
                    || io.to_string().contains("lock") =>
            {
                OpenError::Locked { path: p.to_owned() }
            }
            _ => OpenError::Db {
                path: p.to_owned(),
                source,
            },
        })
}

/// The server's database.
#[derive(Debug)]
pub struct Store {
    db: sled::Db,
    t: Trees,
    gate: RwLock<()>,
    /// Flush after every lifecycle write (the default). Off only for bulk loads.
    flush_each_write: std::sync::atomic::AtomicBool,
    /// The schema version this open migrated from, if it migrated.
    migrated_from: Option<u32>,
}

impl std::fmt::Debug for Trees {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Trees")
    }
}

impl Store {
    /// Opens (creating if needed) the database in directory `path` and brings its
    /// schema up to [`SCHEMA_VERSION`].
    pub fn open(path: &Path) -> Result<Store, OpenError> {
        let p = path.display().to_string();
        let db = open_db(path, &p)?;
        Self::from_db(db, &p)
    }

    /// A database that lives only in memory, for tests and benchmarks.
    pub fn temporary() -> Result<Store, OpenError> {
        let db = sled::Config::new()
            .temporary(true)
            .open()
            .map_err(|source| OpenError::Db {
                path: "<temporary>".into(),
                source,
            })?;
        Self::from_db(db, "<temporary>")
    }

    fn from_db(db: sled::Db, p: &str) -> Result<Store, OpenError> {
        let db_err = |source| OpenError::Db {
            path: p.to_owned(),
            source,
        };
        let t = Trees::open(&db).map_err(db_err)?;
        let version = match t.meta.get(SCHEMA_KEY).map_err(db_err)? {
            Some(v) => u32::from_be_bytes(v.as_ref().try_into().unwrap_or([0xff; 4])),
            None => {
                // A fresh database: nothing to migrate.
                t.meta
                    .insert(SCHEMA_KEY, &SCHEMA_VERSION.to_be_bytes())
                    .map_err(db_err)?;
                db.flush().map_err(db_err)?;
                SCHEMA_VERSION
            }
        };
        if version > SCHEMA_VERSION {
            return Err(OpenError::NewerSchema {
                path: p.to_owned(),
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        migrate(&db, &t.meta, version, MIGRATIONS, p)?;
        Ok(Store {
            db,
            t,
            gate: RwLock::new(()),
            flush_each_write: std::sync::atomic::AtomicBool::new(true),
            migrated_from: (version < SCHEMA_VERSION).then_some(version),
        })
    }

    /// The schema version of the database in directory `path`, read without
    /// migrating or writing anything; `None` if there is no database. Fails with
    /// [`OpenError::Locked`] while a server holds it.
    pub fn schema_version_at(path: &Path) -> Result<Option<u32>, OpenError> {
        let p = path.display().to_string();
        if !path.join("conf").exists() {
            return Ok(None);
        }
        let db = open_db(path, &p)?;
        let version = db
            .open_tree("meta")
            .and_then(|meta| meta.get(SCHEMA_KEY))
            .map_err(|source| OpenError::Db {
                path: p.clone(),
                source,
            })?;
        Ok(version.map(|v| u32::from_be_bytes(v.as_ref().try_into().unwrap_or([0xff; 4]))))
    }

    /// The schema version this open migrated the database from; `None` if it was
    /// already current (or new).
    pub fn migrated_from(&self) -> Option<u32> {
        self.migrated_from
    }

    /// A tree for the web portal's own short-lived state (sessions, email tokens,
    /// the mail queue). Those trees are not part of backups: restoring a backup
    /// must not bring old sessions or links back to life.
    pub fn web_tree(&self, name: &str) -> Result<sled::Tree, StoreError> {
        Ok(self.db.open_tree(format!("web_{name}"))?)
    }

    /// A new unique id (monotonic across restarts), for the web portal's records.
    pub fn generate_id(&self) -> Result<u64, StoreError> {
        Ok(self.db.generate_id()?)
    }

    pub fn schema_version(&self) -> Result<u32, StoreError> {
        let v = self
            .t
            .meta
            .get(SCHEMA_KEY)?
            .ok_or_else(|| StoreError::Corrupt {
                what: "meta".into(),
                reason: "no schema version".into(),
            })?;
        Ok(u32::from_be_bytes(v.as_ref().try_into().unwrap_or([0; 4])))
    }

    /// The trees a backup holds. The web portal's trees ([`Store::web_tree`]) are
    /// left out on purpose: a restore must not revive old sessions or links.
    fn backup_tree_names(&self) -> Vec<String> {
        TREES.iter().map(|t| t.to_string()).collect()
    }

    /// Bulk loads (imports, benchmarks) may turn off the flush after each write;
    /// writes then become durable at sled's next periodic flush or at [`Store::flush`].
    /// The server never turns it off.
    pub fn set_flush_each_write(&self, on: bool) {
        self.flush_each_write
            .store(on, std::sync::atomic::Ordering::SeqCst);
    }

    fn flush_if_durable(&self) -> Result<(), StoreError> {
        if self
            .flush_each_write
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            self.db.flush()?;
        }
        Ok(())
    }

    /// Makes every write so far durable.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    fn write_lock(&self) -> std::sync::RwLockWriteGuard<'_, ()> {
        self.gate
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn read_lock(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.gate
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` as one transaction over the lifecycle trees.
    fn transact<A, E>(&self, f: impl Fn(&Tx<'_>) -> TxResult<A, E>) -> Result<A, E>
    where
        E: From<StoreError>,
    {
        let t = &self.t;
        (
            &t.accounts,
            &t.accounts_by_email,
            &t.licenses,
            &t.licenses_by_account,
            &t.mutations,
            &t.grants,
            &t.audit,
            &t.audit_by_license,
            &t.license_search,
        )
            .transaction(
                |(
                    accounts,
                    accounts_by_email,
                    licenses,
                    licenses_by_account,
                    mutations,
                    grants,
                    audit,
                    audit_by_license,
                    license_search,
                )| {
                    f(&Tx {
                        accounts,
                        accounts_by_email,
                        licenses,
                        licenses_by_account,
                        mutations,
                        grants,
                        audit,
                        audit_by_license,
                        license_search,
                    })
                },
            )
            .map_err(|e| match e {
                TransactionError::Abort(e) => e,
                TransactionError::Storage(s) => E::from(StoreError::Db(s)),
            })
    }

    /// Runs a lifecycle write under the write lock, then flushes.
    fn write<A, E>(&self, f: impl Fn(&Tx<'_>) -> TxResult<A, E>) -> Result<A, E>
    where
        E: From<StoreError>,
    {
        let result = {
            let _guard = self.write_lock();
            self.transact(f)?
        };
        self.flush_if_durable().map_err(E::from)?;
        Ok(result)
    }

    // ----- accounts -------------------------------------------------------------

    pub fn create_account(
        &self,
        new: NewAccount,
        actor: &Actor,
        now: UnixTime,
    ) -> Result<Account, AccountError> {
        let email = domain::normalize_email(&new.email);
        if !looks_like_email(&email) {
            return Err(AccountError::InvalidEmail(new.email));
        }
        let id = AccountId(self.db.generate_id()?);
        let account = Account {
            id,
            email: email.clone(),
            password_hash: new.password_hash,
            email_verified: false,
            company: new.company,
            first_name: new.first_name,
            last_name: new.last_name,
            trusted: false,
            admin: false,
            created_at: now,
        };
        self.write(|tx| {
            if tx.accounts_by_email.get(email.as_bytes())?.is_some() {
                return Err(ConflictableTransactionError::Abort(
                    AccountError::EmailTaken(email.clone()),
                ));
            }
            tx.put(tx.accounts, &id.0.to_be_bytes(), &account)?;
            tx.accounts_by_email
                .insert(email.as_bytes(), &id.0.to_be_bytes())?;
            tx.audit(
                now,
                actor,
                None,
                Some(id),
                "account.created",
                format!("email {email}"),
            )?;
            Ok(())
        })?;
        Ok(account)
    }

    pub fn account(&self, id: AccountId) -> Result<Option<Account>, StoreError> {
        self.t
            .accounts
            .get(id.0.to_be_bytes())?
            .map(|v| from_json("account", &v))
            .transpose()
    }

    pub fn account_by_email(&self, email: &str) -> Result<Option<Account>, StoreError> {
        match self
            .t
            .accounts_by_email
            .get(domain::normalize_email(email).as_bytes())?
        {
            Some(id) => {
                let id = u64::from_be_bytes(id.as_ref().try_into().unwrap_or([0; 8]));
                self.account(AccountId(id))
            }
            None => Ok(None),
        }
    }

    pub fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        self.t
            .accounts
            .iter()
            .values()
            .map(|v| from_json("account", &v?))
            .collect()
    }

    /// Changes an account (password hash, verification, names...) and records
    /// `action` in the audit trail. The email cannot be changed here.
    pub fn update_account(
        &self,
        id: AccountId,
        actor: &Actor,
        now: UnixTime,
        action: &str,
        change: impl Fn(&mut Account),
    ) -> Result<Account, AccountError> {
        self.write(|tx| {
            let mut account: Account = tx
                .get(tx.accounts, "account", &id.0.to_be_bytes())?
                .ok_or_else(|| {
                    ConflictableTransactionError::Abort(AccountError::UnknownAccount(
                        id.to_string(),
                    ))
                })?;
            let email = account.email.clone();
            change(&mut account);
            account.id = id;
            account.email = email;
            tx.put(tx.accounts, &id.0.to_be_bytes(), &account)?;
            tx.audit(now, actor, None, Some(id), action, String::new())?;
            Ok(account)
        })
    }

    pub fn set_trusted(
        &self,
        id: AccountId,
        trusted: bool,
        actor: &Actor,
        now: UnixTime,
    ) -> Result<Account, AccountError> {
        let action = if trusted {
            "account.trusted"
        } else {
            "account.untrusted"
        };
        self.update_account(id, actor, now, action, |a| a.trusted = trusted)
    }

    pub fn set_admin(
        &self,
        id: AccountId,
        admin: bool,
        actor: &Actor,
        now: UnixTime,
    ) -> Result<Account, AccountError> {
        let action = if admin {
            "account.admin_granted"
        } else {
            "account.admin_revoked"
        };
        self.update_account(id, actor, now, action, |a| a.admin = admin)
    }

    // ----- licenses -------------------------------------------------------------

    /// Creates a license with a fresh number and token, owning nothing yet.
    pub fn create_license(
        &self,
        new: NewLicense,
        actor: &Actor,
        now: UnixTime,
    ) -> Result<License, LicenseError> {
        let engineering = new.license_type == keys::LicenseType::Engineering;
        if engineering != (new.protection == Protection::Engineering) {
            return Err(LicenseError::ProtectionMismatch);
        }
        let d = &new.license_data;
        if [&d.name, &d.postcode, &d.city]
            .iter()
            .any(|s| s.trim().is_empty())
        {
            return Err(LicenseError::MissingLicenseData);
        }
        if let Some(a) = new.account {
            if self.account(a)?.is_none() {
                return Err(LicenseError::UnknownAccount(a));
            }
        }
        let token = LicenseToken::generate();
        let license = self.write::<_, LicenseError>(|tx| {
            // Random bodies; on the rare collision draw again.
            let number = loop {
                let body = rand::Rng::gen_range(
                    &mut rand::thread_rng(),
                    LicenseNumber::BODY_MIN..=LicenseNumber::BODY_MAX,
                );
                let Some(n) = LicenseNumber::from_body(body) else {
                    continue;
                };
                if tx.licenses.get(n.as_str().as_bytes())?.is_none() {
                    break n;
                }
            };
            let license = License {
                number: number.clone(),
                token: token.clone(),
                account: new.account,
                license_type: new.license_type,
                protection: new.protection,
                licensee: new.licensee.clone(),
                license_data: new.license_data.clone(),
                created_at: now,
                entitlements: Entitlements::none(),
                binding: None,
                released_hosts: vec![],
                dongle_serial: None,
                serial: 0,
                current_grant: None,
                valid_until: None,
                next_mutation: 1,
            };
            tx.put_license(&license)?;
            if let Some(a) = new.account {
                tx.licenses_by_account
                    .insert(account_license_key(a, &number), &[])?;
            }
            tx.audit(
                now,
                actor,
                Some(&number),
                new.account,
                "license.created",
                format!(
                    "{:?} / {:?} for {}",
                    new.license_type, new.protection, new.licensee.company
                ),
            )?;
            Ok(license)
        })?;
        Ok(license)
    }

    pub fn license(&self, number: &LicenseNumber) -> Result<Option<License>, StoreError> {
        self.t
            .licenses
            .get(number.as_str())?
            .map(|v| from_json("license", &v))
            .transpose()
    }

    fn existing_license(&self, number: &LicenseNumber) -> Result<License, LicenseError> {
        self.license(number)?
            .ok_or_else(|| LicenseError::UnknownLicense(number.clone()))
    }

    /// Every license, by number.
    pub fn licenses(&self) -> Result<Vec<License>, StoreError> {
        self.t
            .licenses
            .iter()
            .values()
            .map(|v| from_json("license", &v?))
            .collect()
    }

    /// Licenses in number order: `skip`, then at most `take`. Only those are
    /// decoded, so a page of a long list costs the page, not the list.
    pub fn licenses_page(&self, skip: usize, take: usize) -> Result<Vec<License>, StoreError> {
        self.t
            .licenses
            .iter()
            .values()
            .skip(skip)
            .take(take)
            .map(|v| from_json("license", &v?))
            .collect()
    }

    /// The admin license search: every license matching `q` ([`search::matches`]:
    /// a field contains it, case-insensitively), in number order. Looks up the
    /// candidates in the trigram index and checks each; a query shorter than three
    /// characters looks at every license ([`Store::search_licenses_by_scan`]).
    pub fn search_licenses(&self, q: &str) -> Result<Vec<License>, StoreError> {
        let q = search::normalize(q);
        let grams = search::grams(&q);
        if grams.is_empty() {
            return self.search_licenses_by_scan(&q);
        }
        let prefixes: Vec<Vec<u8>> = grams.into_iter().map(search::gram_prefix).collect();
        // Index and records as of one moment: writes take the write half.
        let _guard = self.read_lock();
        let mut emails: HashMap<AccountId, String> = HashMap::new();
        let mut out = vec![];
        for number in intersect_postings(&self.t.license_search, &prefixes)? {
            let Some(v) = self.t.licenses.get(&number)? else {
                continue;
            };
            let l: License = from_json("license", &v)?;
            let email = match l.account {
                Some(a) => match emails.get(&a) {
                    Some(e) => e.clone(),
                    None => {
                        let e = self.account(a)?.map(|a| a.email).unwrap_or_default();
                        emails.insert(a, e.clone());
                        e
                    }
                },
                None => String::new(),
            };
            if search::matches(&l, &email, &q) {
                out.push(l);
            }
        }
        Ok(out)
    }

    /// The admin license search without the index: decodes every license and
    /// checks it. The definition [`Store::search_licenses`] is tested against, and
    /// its answer to queries shorter than three characters.
    pub fn search_licenses_by_scan(&self, q: &str) -> Result<Vec<License>, StoreError> {
        let q = search::normalize(q);
        let emails = account_emails(&self.t)?;
        let mut out = self.licenses()?;
        out.retain(|l| search::matches(l, email_of(&emails, l.account), &q));
        Ok(out)
    }

    /// Licenses whose stored record contains `needle` (compared case-insensitively).
    /// The schema-1 search's pre-filter, kept as the reference the index was
    /// measured and tested against; it misses matches whose text JSON escapes
    /// (`"`, `\`).
    pub fn licenses_containing(&self, needle: &str) -> Result<Vec<License>, StoreError> {
        let needle = needle.to_lowercase();
        let mut out = vec![];
        for v in self.t.licenses.iter().values() {
            let v = v?;
            if String::from_utf8_lossy(&v).to_lowercase().contains(&needle) {
                out.push(from_json("license", &v)?);
            }
        }
        Ok(out)
    }

    pub fn license_count(&self) -> usize {
        self.t.licenses.len()
    }

    pub fn account_count(&self) -> usize {
        self.t.accounts.len()
    }

    /// The database's size on disk in bytes (0 if sled cannot tell).
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }

    pub fn licenses_of_account(&self, id: AccountId) -> Result<Vec<License>, StoreError> {
        let mut out = vec![];
        for key in self
            .t
            .licenses_by_account
            .scan_prefix(id.0.to_be_bytes())
            .keys()
        {
            let key = key?;
            let number = parse_number(&key[8..])?;
            if let Some(l) = self.license(&number)? {
                out.push(l);
            }
        }
        Ok(out)
    }

    pub fn mutations(&self, number: &LicenseNumber) -> Result<Vec<Mutation>, StoreError> {
        self.t
            .mutations
            .scan_prefix(number.as_str())
            .values()
            .map(|v| from_json("mutation", &v?))
            .collect()
    }

    pub fn mutation(&self, number: &LicenseNumber, n: u32) -> Result<Option<Mutation>, StoreError> {
        self.t
            .mutations
            .get(mutation_key(number, n))?
            .map(|v| from_json("mutation", &v))
            .transpose()
    }

    /// Every mutation in `state`, across all licenses (the admin's open orders).
    pub fn mutations_in_state(&self, state: MutationState) -> Result<Vec<Mutation>, StoreError> {
        let mut out = vec![];
        for v in self.t.mutations.iter().values() {
            let m: Mutation = from_json("mutation", &v?)?;
            if m.state == state {
                out.push(m);
            }
        }
        Ok(out)
    }

    /// Whether ProMoS on the bound host last reported running.
    pub fn runtime_running(&self, license: &License) -> Result<bool, StoreError> {
        let last = self.last_check_in(&license.number)?;
        Ok(match (&license.binding, last) {
            (Some(Binding::HardwareId(h)), Some(c)) => c.running && &c.hardware_id == h,
            (Some(Binding::DongleSerial(_)), Some(c)) => c.running,
            _ => false,
        })
    }

    /// Adds a mutation as a quote or directly as an order. An order of a trusted
    /// customer's license (or of a license with no account, which only the vendor
    /// creates) is activated at once, as the manual describes.
    pub fn add_mutation(
        &self,
        number: &LicenseNumber,
        new: NewMutation,
        order: bool,
        key: &SigningKeyPair,
        actor: &Actor,
        now: UnixTime,
    ) -> Result<Mutation, LicenseError> {
        let trusted = self.orders_activate_at_once(number)?;
        let _guard = self.write_lock();
        let license = self.existing_license(number)?;
        let existing = self.mutations(number)?;
        let running = self.runtime_running(&license)?;
        domain::check_new_mutation(&license, &existing, new.kind, &new.adds, running)?;
        let result = self.transact(|tx| {
            let mut license: License = tx.license(number)?;
            let mut m = Mutation {
                license: number.clone(),
                number: license.next_mutation,
                kind: new.kind,
                adds: new.adds.clone(),
                state: MutationState::Quote,
                created_at: now,
                quote_valid_until: now.plus_days(domain::QUOTE_VALIDITY_DAYS),
                ordered_at: None,
                activated_at: None,
                price_net: new.price_net.clone(),
                remarks: new.remarks.clone(),
                priced: new.priced.clone(),
            };
            license.next_mutation += 1;
            tx.audit(
                now,
                actor,
                Some(number),
                license.account,
                "mutation.quoted",
                format!("{} ({:?})", m.id(), m.kind),
            )?;
            if order {
                m.state = MutationState::Ordered;
                m.ordered_at = Some(now);
                tx.audit(
                    now,
                    actor,
                    Some(number),
                    license.account,
                    "mutation.ordered",
                    m.id(),
                )?;
                if trusted {
                    activate_in_tx(tx, &mut license, &mut m, key, actor, now)?;
                }
            }
            tx.put_mutation(&m)?;
            tx.put_license(&license)?;
            Ok(m)
        });
        drop(_guard);
        self.flush_if_durable()?;
        result
    }

    fn orders_activate_at_once(&self, number: &LicenseNumber) -> Result<bool, LicenseError> {
        let license = self.existing_license(number)?;
        // Engineering licenses are free: nothing to wait for (issue 7, step 7).
        if license.license_type == keys::LicenseType::Engineering {
            return Ok(true);
        }
        Ok(match license.account {
            Some(a) => self.account(a)?.is_some_and(|a| a.trusted),
            None => false,
        })
    }

    /// Orders a quote (the customer accepts it). Trusted customers' orders are
    /// activated at once.
    pub fn order_mutation(
        &self,
        number: &LicenseNumber,
        n: u32,
        key: &SigningKeyPair,
        actor: &Actor,
        now: UnixTime,
    ) -> Result<Mutation, LicenseError> {
        let trusted = self.orders_activate_at_once(number)?;
        self.write(|tx| {
            let mut license = tx.license(number)?;
            let mut m = mutation_in_tx(tx, number, n)?;
            if m.state == MutationState::Quote && now > m.quote_valid_until {
                return Err(ConflictableTransactionError::Abort(
                    LicenseError::QuoteExpired(m.id()),
                ));
            }
            step(&mut m, MutationState::Ordered)?;
            m.ordered_at = Some(now);
            tx.audit(
                now,
                actor,
                Some(number),
                license.account,
                "mutation.ordered",
                m.id(),
            )?;
            if trusted {
                activate_in_tx(tx, &mut license, &mut m, key, actor, now)?;
            }
            tx.put_mutation(&m)?;
            tx.put_license(&license)?;
            Ok(m)
        })
    }

    /// Activates an ordered mutation (the vendor marks it paid): entitlements grow
    /// and, if a host or dongle is bound, a new grant is issued in the same
    /// transaction.
    pub fn activate_mutation(
        &self,
        number: &LicenseNumber,
        n: u32,
        key: &SigningKeyPair,
        actor: &Actor,
        now: UnixTime,
    ) -> Result<Mutation, LicenseError> {
        self.write(|tx| {
            let mut license = tx.license(number)?;
            let mut m = mutation_in_tx(tx, number, n)?;
            activate_in_tx(tx, &mut license, &mut m, key, actor, now)?;
            tx.put_mutation(&m)?;
            tx.put_license(&license)?;
            Ok(m)
        })
    }

    /// Deletes a quote or an unpaid order.
    pub fn delete_mutation(
        &self,
        number: &LicenseNumber,
        n: u32,
        actor: &Actor,
        now: UnixTime,
    ) -> Result<Mutation, LicenseError> {
        self.write(|tx| {
            let license = tx.license(number)?;
            let mut m = mutation_in_tx(tx, number, n)?;
            step(&mut m, MutationState::Deleted)?;
            tx.put_mutation(&m)?;
            tx.audit(
                now,
                actor,
                Some(number),
                license.account,
                "mutation.deleted",
                m.id(),
            )?;
            Ok(m)
        })
    }

    /// Marks every quote past its validity as expired. Returns how many.
    pub fn expire_quotes(&self, now: UnixTime) -> Result<usize, LicenseError> {
        let due: Vec<(LicenseNumber, u32)> = self
            .t
            .mutations
            .iter()
            .values()
            .map(|v| from_json::<Mutation>("mutation", &v?))
            .filter_map(|m| match m {
                Ok(m) if m.state == MutationState::Quote && now > m.quote_valid_until => {
                    Some(Ok((m.license, m.number)))
                }
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            })
            .collect::<Result<_, _>>()?;
        for (number, n) in &due {
            self.write(|tx| {
                let license = tx.license(number)?;
                let mut m = mutation_in_tx(tx, number, *n)?;
                if m.state != MutationState::Quote {
                    return Ok(());
                }
                step(&mut m, MutationState::Expired)?;
                tx.put_mutation(&m)?;
                tx.audit(
                    now,
                    &Actor::System,
                    Some(number),
                    license.account,
                    "mutation.expired",
                    m.id(),
                )?;
                Ok(())
            })?;
        }
        Ok(due.len())
    }

    /// The customer edits the license data shown in ProMoS (manual 5). The next
    /// grant carries it.
    pub fn update_license_data(
        &self,
        number: &LicenseNumber,
        data: LicenseData,
        key: &SigningKeyPair,
        actor: &Actor,
        now: UnixTime,
    ) -> Result<License, LicenseError> {
        if [&data.name, &data.postcode, &data.city]
            .iter()
            .any(|s| s.trim().is_empty())
        {
            return Err(LicenseError::MissingLicenseData);
        }
        self.write(|tx| {
            let mut license = tx.license(number)?;
            license.license_data = data.clone();
            issue_grant_in_tx(tx, &mut license, key, now)?;
            tx.put_license(&license)?;
            tx.audit(
                now,
                actor,
                Some(number),
                license.account,
                "license.data_edited",
                format!("{}, {} {}", data.name, data.postcode, data.city),
            )?;
            Ok(license)
        })
    }

    /// The vendor enters the serial of the dongle shipped with a hardware-dongle
    /// license; the license binds to it and, if anything is activated, a grant (the
    /// downloadable license file) is issued.
    pub fn set_dongle_serial(
        &self,
        number: &LicenseNumber,
        serial: DongleSerial,
        key: &SigningKeyPair,
        actor: &Actor,
        now: UnixTime,
    ) -> Result<License, LicenseError> {
        self.write(|tx| {
            let mut license = tx.license(number)?;
            if license.protection != Protection::HardDongle {
                return Err(ConflictableTransactionError::Abort(
                    LicenseError::NotHardDongle(number.clone()),
                ));
            }
            license.dongle_serial = Some(serial.clone());
            license.binding = Some(Binding::DongleSerial(serial.clone()));
            issue_grant_in_tx(tx, &mut license, key, now)?;
            tx.put_license(&license)?;
            tx.audit(
                now,
                actor,
                Some(number),
                license.account,
                "license.dongle_serial",
                serial.to_string(),
            )?;
            Ok(license)
        })
    }

    /// Releases the hardware binding (manual 7).
    pub fn reset_binding(
        &self,
        number: &LicenseNumber,
        actor: &Actor,
        now: UnixTime,
    ) -> Result<License, LicenseError> {
        self.write(|tx| {
            let mut license = tx.license(number)?;
            let old = domain::reset_binding(&mut license)
                .map_err(|e| ConflictableTransactionError::Abort(LicenseError::from(e)))?;
            tx.put_license(&license)?;
            tx.audit(
                now,
                actor,
                Some(number),
                license.account,
                "binding.reset",
                format!("released host {old}"),
            )?;
            Ok(license)
        })
    }

    /// Every grant issued for the license, oldest first.
    pub fn grants(&self, number: &LicenseNumber) -> Result<Vec<Signed<LicenseGrant>>, StoreError> {
        self.t
            .grants
            .scan_prefix(number.as_str())
            .values()
            .map(|v| from_json("grant", &v?))
            .collect()
    }

    /// The grant the bound host (or the dongle's license file) should hold.
    pub fn current_grant(
        &self,
        license: &License,
    ) -> Result<Option<Signed<LicenseGrant>>, StoreError> {
        match license.current_grant {
            Some(s) => self
                .t
                .grants
                .get(serial_key(&license.number, s))?
                .map(|v| from_json("grant", &v))
                .transpose(),
            None => Ok(None),
        }
    }

    // ----- daemons ----------------------------------------------------------------

    /// A daemon activates its host. Binding and the grant are written in one
    /// transaction and flushed before the grant is returned, so a grant that left
    /// the server is never forgotten by it.
    pub fn activate_host(
        &self,
        req: &HostActivation<'_>,
        key: &SigningKeyPair,
        now: UnixTime,
    ) -> Result<Result<Signed<LicenseGrant>, RefusalReason>, StoreError> {
        let Some(license) = self.license(req.license)? else {
            return Ok(Err(RefusalReason::UnknownLicense));
        };
        let decision = domain::decide_activation(&license, req.token, req.hardware_id, now);
        if let ActivationDecision::Refuse(reason) = decision {
            return Ok(Err(reason));
        }
        if let (ActivationDecision::AlreadyBound | ActivationDecision::DongleGrant, Some(g)) =
            (&decision, self.current_grant(&license)?)
        {
            return Ok(Ok(g));
        }
        let actor = Actor::Daemon {
            hardware_id: req.hardware_id.clone(),
            from: req.from.clone(),
        };
        let outcome = self.write::<_, StoreError>(|tx| {
            let mut license: License = tx.license(req.license)?;
            // Decide again inside the transaction: another activation may have won.
            let decision = domain::decide_activation(&license, req.token, req.hardware_id, now);
            match decision {
                ActivationDecision::Refuse(reason) => return Ok(Err(reason)),
                ActivationDecision::Bind => {
                    domain::bind(&mut license, req.hardware_id);
                    tx.audit(
                        now,
                        &actor,
                        Some(req.license),
                        license.account,
                        "binding.activated",
                        format!(
                            "bound to host {} (daemon {})",
                            req.hardware_id, req.daemon_version
                        ),
                    )?;
                }
                ActivationDecision::AlreadyBound | ActivationDecision::DongleGrant => {
                    if let Some(s) = license.current_grant {
                        if let Some(g) = tx.get(tx.grants, "grant", &serial_key(req.license, s))? {
                            return Ok(Ok(g));
                        }
                    }
                }
            }
            match issue_grant_in_tx(tx, &mut license, key, now)? {
                Some(g) => {
                    tx.put_license(&license)?;
                    Ok(Ok(g))
                }
                None => Ok(Err(RefusalReason::NotYetActivated)),
            }
        })?;
        Ok(outcome)
    }

    /// A daemon's daily check: the decision, the newer grant if any, and the
    /// check-in record (last seen, running, seats, version, from where).
    pub fn check_host(
        &self,
        req: &HostCheck<'_>,
        now: UnixTime,
    ) -> Result<Result<CheckOutcome, RefusalReason>, StoreError> {
        let Some(license) = self.license(req.license)? else {
            return Ok(Err(RefusalReason::UnknownLicense));
        };
        match domain::decide_check(&license, req.hardware_id, req.held_serial, now) {
            CheckDecision::Refuse(reason) => Ok(Err(reason)),
            CheckDecision::Licensed { send_grant } => {
                let newer_grant = match send_grant {
                    Some(s) => self
                        .t
                        .grants
                        .get(serial_key(req.license, s))?
                        .map(|v| from_json("grant", &v))
                        .transpose()?,
                    None => None,
                };
                self.record_check_in(CheckIn {
                    license: req.license.clone(),
                    hardware_id: req.hardware_id.clone(),
                    at: now,
                    running: req.running,
                    ge_seats: req.ge_seats,
                    pwa_seats: req.pwa_seats,
                    daemon_version: req.daemon_version.to_owned(),
                    from: req.from.clone(),
                })?;
                Ok(Ok(CheckOutcome {
                    current_serial: license.serial,
                    newer_grant,
                }))
            }
        }
    }

    /// The host gives its binding back (uninstall): like a reset, but asked for by
    /// the bound host with the token.
    pub fn deactivate_host(
        &self,
        license_number: &LicenseNumber,
        token: &str,
        host: &HardwareId,
        from: String,
        now: UnixTime,
    ) -> Result<Result<u64, RefusalReason>, StoreError> {
        let actor = Actor::Daemon {
            hardware_id: host.clone(),
            from,
        };
        let result = self.write::<_, StoreError>(|tx| {
            let Some(mut license) = tx.get::<License, StoreError>(
                tx.licenses,
                "license",
                license_number.as_str().as_bytes(),
            )?
            else {
                return Ok(Err(RefusalReason::UnknownLicense));
            };
            if !license.token.matches(token) {
                return Ok(Err(RefusalReason::WrongToken));
            }
            if license.binding != Some(Binding::HardwareId(host.clone())) {
                return Ok(Err(RefusalReason::BoundToAnotherHost));
            }
            if domain::reset_binding(&mut license).is_err() {
                return Ok(Err(RefusalReason::BoundToAnotherHost));
            }
            // The host gave the license back itself: it is not "reset" for it.
            license.released_hosts.retain(|h| h != host);
            tx.put_license(&license)?;
            tx.audit(
                now,
                &actor,
                Some(license_number),
                license.account,
                "binding.deactivated",
                format!("host {host}"),
            )?;
            Ok(Ok(license.serial))
        })?;
        Ok(result)
    }

    fn record_check_in(&self, c: CheckIn) -> Result<(), StoreError> {
        let _guard = self.read_lock();
        let key = c.license.as_str().as_bytes().to_vec();
        let previous: Option<CheckIn> = self
            .t
            .checkins
            .get(&key)?
            .map(|v| from_json("checkin", &v))
            .transpose()?;
        let changed = previous.is_none_or(|p| {
            (p.running, &p.hardware_id, &p.daemon_version, &p.from)
                != (c.running, &c.hardware_id, &c.daemon_version, &c.from)
        });
        if changed {
            let seq = self.db.generate_id()?;
            self.t
                .checkin_history
                .insert(serial_key(&c.license, seq), to_json(&c))?;
        }
        self.t.checkins.insert(key, to_json(&c))?;
        Ok(())
    }

    pub fn last_check_in(&self, number: &LicenseNumber) -> Result<Option<CheckIn>, StoreError> {
        self.t
            .checkins
            .get(number.as_str())?
            .map(|v| from_json("checkin", &v))
            .transpose()
    }

    /// Check-ins that changed something (state, host, version, address), oldest first.
    pub fn check_in_history(&self, number: &LicenseNumber) -> Result<Vec<CheckIn>, StoreError> {
        self.t
            .checkin_history
            .scan_prefix(number.as_str())
            .values()
            .map(|v| from_json("checkin", &v?))
            .collect()
    }

    // ----- audit ----------------------------------------------------------------

    /// The audit trail, newest last: of one license, or of everything. `limit`
    /// keeps the newest entries.
    pub fn audit(
        &self,
        license: Option<&LicenseNumber>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let mut out = vec![];
        match license {
            Some(n) => {
                for key in self
                    .t
                    .audit_by_license
                    .scan_prefix(n.as_str())
                    .keys()
                    .rev()
                    .take(limit)
                {
                    let key = key?;
                    if let Some(v) = self.t.audit.get(&key[10..])? {
                        out.push(from_json("audit entry", &v)?);
                    }
                }
            }
            None => {
                for v in self.t.audit.iter().values().rev().take(limit) {
                    out.push(from_json("audit entry", &v?)?);
                }
            }
        }
        out.reverse();
        Ok(out)
    }

    // ----- backup -----------------------------------------------------------------

    /// Writes a consistent snapshot of every tree to `path` while the server keeps
    /// running: lifecycle writes and check-ins wait for the few seconds it takes.
    ///
    /// Why not sled's `export`: it iterates tree after tree without a common
    /// snapshot (a write between two trees would make the copy inconsistent) and
    /// panics on I/O errors. Why not a copy of the directory: sled's files are only
    /// consistent at points sled chooses. The format is JSON lines: a header, one
    /// line per entry (key in hex, value as text since every value is JSON), and a
    /// trailer with the entry count and a SHA-256 over all lines before it, so a
    /// truncated or edited backup is refused on restore.
    pub fn backup_to(&self, path: &Path, now: UnixTime) -> Result<BackupSummary, BackupError> {
        let werr = |source| BackupError::Write {
            path: path.display().to_string(),
            source,
        };
        let tmp = path.with_extension("partial");
        let file = std::fs::File::create(&tmp).map_err(werr)?;
        let mut out = std::io::BufWriter::new(file);
        let mut hash = Sha256::new();
        let mut line = |out: &mut std::io::BufWriter<std::fs::File>,
                        value: serde_json::Value|
         -> std::io::Result<()> {
            let mut text = value.to_string();
            text.push('\n');
            hash.update(text.as_bytes());
            out.write_all(text.as_bytes())
        };
        let _guard = self.write_lock();
        let schema = self.schema_version()?;
        line(
            &mut out,
            serde_json::json!({"format": BACKUP_FORMAT, "schema_version": schema, "created_at": now.to_string(), "trees": self.backup_tree_names()}),
        )
        .map_err(werr)?;
        let mut entries = 0u64;
        for name in self.backup_tree_names() {
            let tree = self.db.open_tree(&name)?;
            let name = name.as_str();
            for kv in tree.iter() {
                let (k, v) = kv?;
                let value = match std::str::from_utf8(&v) {
                    Ok(text) => serde_json::json!({"t": name, "k": hex::encode(&k), "v": text}),
                    Err(_) => {
                        serde_json::json!({"t": name, "k": hex::encode(&k), "x": hex::encode(&v)})
                    }
                };
                line(&mut out, value).map_err(werr)?;
                entries += 1;
            }
        }
        let licenses = self.t.licenses.len() as u64;
        drop(_guard);
        let digest = hex::encode(hash.finalize_reset());
        let trailer = serde_json::json!({"end": true, "entries": entries, "sha256": digest});
        out.write_all(format!("{trailer}\n").as_bytes())
            .map_err(werr)?;
        let file = out.into_inner().map_err(|e| werr(e.into_error()))?;
        file.sync_all().map_err(werr)?;
        std::fs::rename(&tmp, path).map_err(werr)?;
        Ok(BackupSummary {
            entries,
            licenses,
            schema_version: schema,
        })
    }

    /// Restores a backup into a new database directory `db_path` (which must not
    /// hold a database yet) and brings it to [`SCHEMA_VERSION`]: a backup of an
    /// older schema is migrated. The backup is verified completely before anything
    /// is written.
    pub fn restore(backup: &Path, db_path: &Path) -> Result<BackupSummary, BackupError> {
        let summary = Self::restore_keeping_schema(backup, db_path)?;
        // Opening runs any migration the backup's schema needs.
        let store = Store::open(db_path)?;
        store.flush()?;
        Ok(summary)
    }

    /// Restores a backup as it is, without migrating: the database keeps the
    /// backup's schema version, for the `pls` that wrote it (a rollback after an
    /// upgrade). Derived trees of that schema (the search index from 2 on) are
    /// rebuilt; everything else is the backup's bytes.
    pub fn restore_keeping_schema(
        backup: &Path,
        db_path: &Path,
    ) -> Result<BackupSummary, BackupError> {
        let p = backup.display().to_string();
        let invalid = |reason: String| BackupError::Invalid {
            path: p.clone(),
            reason,
        };
        let rerr = |source| BackupError::Read {
            path: p.clone(),
            source,
        };
        if db_path.exists() && std::fs::read_dir(db_path).map_err(rerr)?.next().is_some() {
            return Err(BackupError::TargetNotEmpty(db_path.display().to_string()));
        }
        // Pass 1: verify header, trailer, count and checksum.
        let file = std::fs::File::open(backup).map_err(rerr)?;
        let mut hash = Sha256::new();
        let mut count = 0u64;
        let mut header: Option<serde_json::Value> = None;
        let mut trailer: Option<serde_json::Value> = None;
        for line in std::io::BufReader::new(file).lines() {
            let line = line.map_err(rerr)?;
            if trailer.is_some() {
                return Err(invalid("data after the end marker".into()));
            }
            let value: serde_json::Value =
                serde_json::from_str(&line).map_err(|e| invalid(format!("bad line: {e}")))?;
            if value.get("end").is_some() {
                trailer = Some(value);
                continue;
            }
            hash.update(line.as_bytes());
            hash.update(b"\n");
            if header.is_none() {
                if value.get("format").and_then(|f| f.as_str()) != Some(BACKUP_FORMAT) {
                    return Err(invalid(format!(
                        "the first line does not name format {BACKUP_FORMAT}"
                    )));
                }
                header = Some(value);
            } else {
                count += 1;
            }
        }
        let header = header.ok_or_else(|| invalid("it is empty".into()))?;
        let trailer = trailer.ok_or_else(|| invalid("it has no end marker (truncated?)".into()))?;
        if trailer.get("entries").and_then(|e| e.as_u64()) != Some(count) {
            return Err(invalid("the entry count does not match".into()));
        }
        if trailer.get("sha256").and_then(|e| e.as_str())
            != Some(hex::encode(hash.finalize()).as_str())
        {
            return Err(invalid(
                "the checksum does not match: the file was changed or damaged".into(),
            ));
        }
        let schema = header
            .get("schema_version")
            .and_then(|v| v.as_u64())
            .unwrap_or(0) as u32;
        if schema > SCHEMA_VERSION {
            return Err(invalid(format!(
                "it has schema version {schema}; this pls supports up to {SCHEMA_VERSION}"
            )));
        }
        // Pass 2: write.
        let db = sled::Config::new()
            .path(db_path)
            .open()
            .map_err(|source| OpenError::Db {
                path: db_path.display().to_string(),
                source,
            })?;
        let trees = Trees::open(&db)?;
        let file = std::fs::File::open(backup).map_err(rerr)?;
        for line in std::io::BufReader::new(file).lines().skip(1) {
            let line = line.map_err(rerr)?;
            let value: serde_json::Value =
                serde_json::from_str(&line).map_err(|e| invalid(e.to_string()))?;
            if value.get("end").is_some() {
                break;
            }
            let name = value.get("t").and_then(|t| t.as_str()).unwrap_or_default();
            let tree = trees
                .by_name(name)
                .ok_or_else(|| invalid(format!("unknown tree {name:?}")))?;
            let k = hex::decode(value.get("k").and_then(|k| k.as_str()).unwrap_or_default())
                .map_err(|e| invalid(format!("bad key: {e}")))?;
            let v = match (
                value.get("v").and_then(|v| v.as_str()),
                value.get("x").and_then(|x| x.as_str()),
            ) {
                (Some(text), _) => text.as_bytes().to_vec(),
                (None, Some(h)) => {
                    hex::decode(h).map_err(|e| invalid(format!("bad value: {e}")))?
                }
                (None, None) => return Err(invalid("an entry has no value".into())),
            };
            tree.insert(k, v)?;
        }
        if schema >= 2 {
            rebuild_search_index(&trees)?;
        }
        db.flush()?;
        let licenses = trees.licenses.len() as u64;
        Ok(BackupSummary {
            entries: count,
            licenses,
            schema_version: schema,
        })
    }

    // ----- consistency ------------------------------------------------------------

    /// Checks every invariant between the trees; returns the problems found.
    /// Used by the crash test after each kill, and by `pls admin verify`.
    pub fn verify(&self) -> Result<Vec<String>, StoreError> {
        let mut problems = vec![];
        let mut emails = std::collections::BTreeSet::new();
        for account in self.accounts()? {
            match self.t.accounts_by_email.get(account.email.as_bytes())? {
                Some(id) if id.as_ref() == account.id.0.to_be_bytes() => {}
                _ => problems.push(format!("account {} has no email index entry", account.id)),
            }
            emails.insert(account.email);
        }
        if emails.len() != self.t.accounts_by_email.len() {
            problems.push("the email index has entries without accounts".into());
        }
        let licenses = self.licenses()?;
        for l in &licenses {
            let ms = self.mutations(&l.number)?;
            if domain::entitlements_of(&ms) != l.entitlements {
                problems.push(format!(
                    "license {}: entitlements differ from its activated mutations",
                    l.number
                ));
            }
            if ms
                .iter()
                .any(|m| m.number >= l.next_mutation || m.license != l.number)
            {
                problems.push(format!("license {}: mutation numbering is off", l.number));
            }
            let grants = self.grants(&l.number)?;
            if grants.len() as u64 > l.serial {
                problems.push(format!("license {}: more grants than serials", l.number));
            }
            if let Some(s) = l.current_grant {
                if s > l.serial || self.t.grants.get(serial_key(&l.number, s))?.is_none() {
                    problems.push(format!(
                        "license {}: current grant {s} is missing",
                        l.number
                    ));
                }
            }
            if let Some(a) = l.account {
                if self
                    .t
                    .licenses_by_account
                    .get(account_license_key(a, &l.number))?
                    .is_none()
                {
                    problems.push(format!(
                        "license {}: missing from its account's index",
                        l.number
                    ));
                }
            }
            if self
                .t
                .audit_by_license
                .scan_prefix(l.number.as_str())
                .next()
                .is_none()
            {
                problems.push(format!("license {}: no audit entry", l.number));
            }
        }
        for key in self.t.audit_by_license.iter().keys() {
            let key = key?;
            if key.len() != 18 || self.t.audit.get(&key[10..])?.is_none() {
                problems.push("an audit index entry points nowhere".into());
            }
        }
        for key in self.t.mutations.iter().keys() {
            let key = key?;
            let n = parse_number(&key[..10.min(key.len())])?;
            if self.t.licenses.get(n.as_str())?.is_none() {
                problems.push(format!("mutation of unknown license {n}"));
            }
        }
        if self.schema_version()? >= 2 {
            let emails = account_emails(&self.t)?;
            let mut expected = std::collections::BTreeSet::new();
            for l in &licenses {
                expected.extend(search::index_keys(l, email_of(&emails, l.account)));
            }
            let mut stale = 0usize;
            for key in self.t.license_search.iter().keys() {
                if !expected.remove(key?.as_ref()) {
                    stale += 1;
                }
            }
            if stale > 0 || !expected.is_empty() {
                problems.push(format!(
                    "the license search index has {} entries missing and {stale} left over",
                    expected.len()
                ));
            }
        }
        Ok(problems)
    }
}

/// The license numbers (their key bytes) listed under every prefix of
/// `prefixes`, in order. A leapfrog intersection: each list is sought to the
/// largest number seen so far, so the cost follows the shortest list, not the
/// longest.
fn intersect_postings(tree: &sled::Tree, prefixes: &[Vec<u8>]) -> Result<Vec<Vec<u8>>, StoreError> {
    let mut out = vec![];
    if prefixes.is_empty() {
        return Ok(out);
    }
    let mut target: Vec<u8> = vec![];
    let mut agreed = 0;
    let mut i = 0;
    loop {
        let prefix = &prefixes[i];
        let mut start = prefix.clone();
        start.extend_from_slice(&target);
        let Some(kv) = tree.range(start..).next() else {
            return Ok(out);
        };
        let (k, _) = kv?;
        let Some(number) = k.strip_prefix(prefix.as_slice()) else {
            return Ok(out);
        };
        if number == target.as_slice() {
            agreed += 1;
        } else {
            target = number.to_vec();
            agreed = 1;
        }
        if agreed == prefixes.len() {
            out.push(target.clone());
            // From now on, only numbers after this one.
            target.push(0);
            agreed = 0;
        }
        i = (i + 1) % prefixes.len();
    }
}

fn parse_number(bytes: &[u8]) -> Result<LicenseNumber, StoreError> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| StoreError::Corrupt {
            what: "key".into(),
            reason: "not a license number".into(),
        })
}

fn looks_like_email(email: &str) -> bool {
    let mut parts = email.split('@');
    matches!((parts.next(), parts.next(), parts.next()), (Some(l), Some(d), None)
        if !l.is_empty() && d.contains('.') && !d.starts_with('.') && !d.ends_with('.') && !email.contains(char::is_whitespace))
}

fn mutation_in_tx(tx: &Tx<'_>, number: &LicenseNumber, n: u32) -> TxResult<Mutation, LicenseError> {
    tx.get(tx.mutations, "mutation", &mutation_key(number, n))?
        .ok_or_else(|| {
            ConflictableTransactionError::Abort(LicenseError::UnknownMutation(number.clone(), n))
        })
}

fn step(m: &mut Mutation, next: MutationState) -> TxResult<(), LicenseError> {
    if !m.state.can_become(next) {
        return Err(ConflictableTransactionError::Abort(
            LicenseError::Transition {
                id: m.id(),
                from: m.state.key(),
                to: next.key(),
            },
        ));
    }
    m.state = next;
    Ok(())
}

fn activate_in_tx(
    tx: &Tx<'_>,
    license: &mut License,
    m: &mut Mutation,
    key: &SigningKeyPair,
    actor: &Actor,
    now: UnixTime,
) -> TxResult<(), LicenseError> {
    step(m, MutationState::Activated)?;
    m.activated_at = Some(now);
    domain::apply_activation(license, m, now);
    tx.audit(
        now,
        actor,
        Some(&license.number),
        license.account,
        "mutation.activated",
        m.id(),
    )?;
    issue_grant_in_tx(tx, license, key, now)?;
    Ok(())
}

/// Issues (signs and stores) the next grant if the license is bound and active.
fn issue_grant_in_tx<E: From<StoreError>>(
    tx: &Tx<'_>,
    license: &mut License,
    key: &SigningKeyPair,
    now: UnixTime,
) -> TxResult<Option<Signed<LicenseGrant>>, E> {
    let Some(grant) = domain::next_grant(license, now, key.key_id()) else {
        return Ok(None);
    };
    let signed = Signed::sign(&grant, key);
    tx.put_grant(&signed, &license.number, grant.serial)?;
    tx.audit(
        now,
        &Actor::System,
        Some(&license.number),
        license.account,
        "grant.issued",
        format!("serial {}", grant.serial),
    )?;
    Ok(Some(signed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use keys::LicenseType;

    #[test]
    fn fresh_store_has_current_schema_and_newer_schema_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db");
        {
            let store = Store::open(&path).expect("open");
            assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
            store
                .t
                .meta
                .insert(SCHEMA_KEY, &(SCHEMA_VERSION + 1).to_be_bytes())
                .expect("insert");
            store.flush().expect("flush");
        }
        match Store::open(&path) {
            Err(OpenError::NewerSchema { found, .. }) => assert_eq!(found, SCHEMA_VERSION + 1),
            other => panic!("expected NewerSchema, got {other:?}"),
        }
    }

    #[test]
    fn migrations_run_in_order_and_an_interrupted_one_runs_again() {
        let db = sled::Config::new().temporary(true).open().expect("db");
        let meta = db.open_tree("meta").expect("meta");
        meta.insert(SCHEMA_KEY, &1u32.to_be_bytes()).expect("v1");
        fn to_v2(db: &sled::Db) -> Result<(), StoreError> {
            db.open_tree("licenses")?.insert("added-by-v2", "1")?;
            Ok(())
        }
        fn to_v3_fails(_: &sled::Db) -> Result<(), StoreError> {
            Err(sled::Error::Unsupported("interrupted".into()).into())
        }
        fn to_v3(db: &sled::Db) -> Result<(), StoreError> {
            db.open_tree("licenses")?.insert("added-by-v3", "1")?;
            Ok(())
        }
        let version = |meta: &sled::Tree| {
            u32::from_be_bytes(
                meta.get(SCHEMA_KEY)
                    .expect("get")
                    .expect("v")
                    .as_ref()
                    .try_into()
                    .expect("4"),
            )
        };
        let err = migrate(&db, &meta, 1, &[to_v2, to_v3_fails], "t").expect_err("v3 fails");
        assert!(matches!(err, OpenError::Migration { from: 2, .. }), "{err}");
        assert_eq!(version(&meta), 2, "v2 is done and recorded");
        migrate(&db, &meta, version(&meta), &[to_v2, to_v3], "t").expect("resume");
        assert_eq!(version(&meta), 3);
        let licenses = db.open_tree("licenses").expect("tree");
        assert!(
            licenses.contains_key("added-by-v2").expect("get")
                && licenses.contains_key("added-by-v3").expect("get")
        );
        // Up to date: nothing runs.
        migrate(&db, &meta, 3, &[to_v2, to_v3_fails], "t").expect("nothing to do");
    }

    fn soft_license(store: &Store) -> License {
        store
            .create_license(
                NewLicense {
                    account: None,
                    license_type: LicenseType::Standard,
                    protection: Protection::SoftDongle,
                    licensee: Default::default(),
                    license_data: LicenseData {
                        name: "n".into(),
                        postcode: "1".into(),
                        city: "c".into(),
                    },
                },
                &Actor::System,
                UnixTime(0),
            )
            .expect("license")
    }

    fn new_content() -> NewMutation {
        NewMutation {
            kind: MutationKind::New,
            adds: Entitlements::standard_base(),
            price_net: None,
            priced: None,
            remarks: String::new(),
        }
    }

    #[test]
    fn quotes_expire_after_their_validity_and_cannot_be_ordered_late() {
        let store = Store::temporary().expect("store");
        let key = SigningKeyPair::from_seed(&[2; 32]);
        let l = soft_license(&store);
        let t0 = UnixTime(1_000_000);
        let q = store
            .add_mutation(&l.number, new_content(), false, &key, &Actor::System, t0)
            .expect("quote");
        assert_eq!(q.state, MutationState::Quote);
        assert_eq!(q.id(), format!("{}#1", l.number));
        let late = t0.plus_days(domain::QUOTE_VALIDITY_DAYS + 1);
        assert!(matches!(
            store.order_mutation(&l.number, 1, &key, &Actor::System, late),
            Err(LicenseError::QuoteExpired(_))
        ));
        assert_eq!(store.expire_quotes(t0.plus_days(1)).expect("expire"), 0);
        assert_eq!(store.expire_quotes(late).expect("expire"), 1);
        assert_eq!(
            store
                .mutation(&l.number, 1)
                .expect("read")
                .expect("m")
                .state,
            MutationState::Expired
        );
        // A new quote can replace the expired one; deleting a quote works once.
        let q2 = store
            .add_mutation(&l.number, new_content(), false, &key, &Actor::System, late)
            .expect("quote");
        store
            .delete_mutation(&l.number, q2.number, &Actor::System, late)
            .expect("delete");
        assert!(matches!(
            store.delete_mutation(&l.number, q2.number, &Actor::System, late),
            Err(LicenseError::Transition { .. })
        ));
        assert!(store.verify().expect("verify").is_empty());
    }

    #[test]
    fn editing_license_data_issues_a_new_grant_for_the_bound_host() {
        let store = Store::temporary().expect("store");
        let key = SigningKeyPair::from_seed(&[2; 32]);
        let l = soft_license(&store);
        let m = store
            .add_mutation(
                &l.number,
                new_content(),
                true,
                &key,
                &Actor::System,
                UnixTime(1),
            )
            .expect("order");
        store
            .activate_mutation(&l.number, m.number, &key, &Actor::System, UnixTime(2))
            .expect("paid");
        let host = HardwareId::from_bytes([1; 16]);
        let req = HostActivation {
            license: &l.number,
            token: l.token.expose(),
            hardware_id: &host,
            daemon_version: "t",
            from: "t".into(),
        };
        store
            .activate_host(&req, &key, UnixTime(3))
            .expect("store")
            .expect("bound");
        let data = LicenseData {
            name: "ProMoS License Server".into(),
            postcode: "63467".into(),
            city: "Hanau".into(),
        };
        let after = store
            .update_license_data(&l.number, data.clone(), &key, &Actor::System, UnixTime(4))
            .expect("edit");
        assert_eq!(after.current_grant, Some(2));
        let grant: LicenseGrant = serde_json::from_slice(
            store
                .current_grant(&after)
                .expect("read")
                .expect("grant")
                .payload(),
        )
        .expect("json");
        assert_eq!(grant.license_data, data);
        let empty = LicenseData {
            name: " ".into(),
            ..data
        };
        assert!(matches!(
            store.update_license_data(&l.number, empty, &key, &Actor::System, UnixTime(5)),
            Err(LicenseError::MissingLicenseData)
        ));
        let unknown = LicenseNumber::from_body(111_111_111).expect("number");
        assert!(matches!(
            store.reset_binding(&unknown, &Actor::System, UnixTime(5)),
            Err(LicenseError::UnknownLicense(_))
        ));
    }

    #[test]
    fn emails_are_validated_and_unique_case_insensitively() {
        let store = Store::temporary().expect("store");
        let new = |email: &str| NewAccount {
            email: email.into(),
            password_hash: None,
            company: "MST".into(),
            first_name: "A".into(),
            last_name: "B".into(),
        };
        let a = store
            .create_account(new("Info@MST.ch "), &Actor::System, UnixTime(1))
            .expect("create");
        assert_eq!(a.email, "info@mst.ch");
        assert!(matches!(
            store.create_account(new("info@mst.ch"), &Actor::System, UnixTime(1)),
            Err(AccountError::EmailTaken(_))
        ));
        assert!(matches!(
            store.create_account(new("nope"), &Actor::System, UnixTime(1)),
            Err(AccountError::InvalidEmail(_))
        ));
        assert_eq!(
            store
                .account_by_email("INFO@mst.ch")
                .expect("read")
                .map(|a| a.id),
            Some(a.id)
        );
        let lic = store
            .create_license(
                NewLicense {
                    account: Some(a.id),
                    license_type: LicenseType::Standard,
                    protection: Protection::SoftDongle,
                    licensee: Default::default(),
                    license_data: LicenseData {
                        name: "n".into(),
                        postcode: "1".into(),
                        city: "c".into(),
                    },
                },
                &Actor::Account(a.id),
                UnixTime(2),
            )
            .expect("license");
        assert_eq!(store.licenses_of_account(a.id).expect("list"), vec![lic]);
        assert!(store.verify().expect("verify").is_empty());
    }
}
