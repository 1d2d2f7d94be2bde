//! The server's database: one SQLite file (`<data dir>/pls.sqlite3`), its schema
//! as versioned migrations (`portal/migrations/`), and every write the license
//! lifecycle makes, each as one transaction.
//!
//! Tables (see `migrations/0001_initial.sql` for every column and constraint):
//! `accounts`, `licenses` (number unique), `mutations`, `grants` (every grant
//! ever issued), `audit`, `checkins` (the latest per license),
//! `checkin_history` (only check-ins that changed something), the portal's
//! `sessions`, `email_tokens`, `prefs`, `reminders`, `mail_queue`, `web_meta`,
//! the admin socket's `admin_requests` (idempotency keys), and the FTS5 table
//! `license_search` (`migrations/0002_search_sqlite.sql`), the admin search's
//! trigram index, written in the same transaction as its license row.
//!
//! Durability: the database runs in WAL mode with `synchronous=FULL`, so a
//! transaction is on disk when its commit returns; every public write returns
//! only after its commit. Nothing is acknowledged before it is on disk (check-ins
//! included). Damage is never read as "empty": an open runs `PRAGMA quick_check`
//! and refuses a damaged file, and an open of a missing file refuses when the
//! marker written at creation (`pls.sqlite3.created`) says a store existed.
//!
//! Concurrency: one writer connection behind a mutex (SQLite allows one writer
//! at a time anyway; a lifecycle write checks its rules and writes inside one
//! `BEGIN IMMEDIATE` transaction, so nothing changes under it), and a small pool
//! of reader connections that each see a consistent snapshot (WAL), so reads and
//! backups (`VACUUM INTO`) never wait for writes.
//!
//! Engines: [`Engine::Sqlite`] (the embedded default) and [`Engine::Postgres`]
//! (`[database] url`), both through [`db::Conn`]; the SQL of
//! `0001_initial.sql` and of the queries here is the part SQLite and PostgreSQL
//! share (upserts with `ON CONFLICT`, no engine-specific types), and what is
//! SQLite's own (pragmas, FTS5, `VACUUM INTO`, integrity checks) is in
//! [`Engine`]'s methods.

use crate::domain::{
    self, Account, AccountId, ActivationDecision, Actor, AuditEntry, CheckDecision, CheckIn,
    License, LicenseToken, Mutation, MutationKind, MutationRuleError, MutationState, NewAccount,
    NewLicense, ResetError,
};
use crate::hardware::{self, BoundHost, HardwareChange};
use crate::search;
use keys::{
    Binding, DongleSerial, Entitlements, HardwareId, LicenseData, LicenseGrant, LicenseNumber,
    Protection, Signed, SigningKeyPair, TrustedKeys, UnixTime,
};
pub mod db;
pub mod throwaway;

use crate::params;
use db::{Conn, DbError, OptionalExtension, Params, Row};
use rusqlite::{Connection, OpenFlags};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use wire::RefusalReason;

/// The schema this build writes: the number of [`MIGRATIONS`].
pub const SCHEMA_VERSION: u32 = 7;

/// The database file's name in the data directory.
pub const DB_FILE: &str = "pls.sqlite3";

/// The migrations, in order: `MIGRATIONS[i]` brings version `i` to `i + 1`. Each
/// runs in one transaction together with the row recording it, so a crash leaves
/// either the old or the new version, never half of one.
const SQLITE_MIGRATIONS: &[(&str, &str)] = &[
    ("initial", include_str!("../migrations/0001_initial.sql")),
    (
        "search_sqlite",
        include_str!("../migrations/0002_search_sqlite.sql"),
    ),
    (
        "login_failures",
        include_str!("../migrations/0003_login_failures.sql"),
    ),
    (
        "compact_records_sqlite",
        include_str!("../migrations/0004_compact_records_sqlite.sql"),
    ),
    (
        "smaller_store_sqlite",
        include_str!("../migrations/0005_smaller_store_sqlite.sql"),
    ),
    (
        "host_facts",
        include_str!("../migrations/0006_host_facts.sql"),
    ),
    (
        "customer_lists",
        include_str!("../migrations/0007_customer_lists.sql"),
    ),
];
/// PostgreSQL's: the same schema, its own search index (pg_trgm).
const POSTGRES_MIGRATIONS: &[(&str, &str)] = &[
    ("initial", include_str!("../migrations/0001_initial.sql")),
    (
        "search_postgres",
        include_str!("../migrations/0002_search_postgres.sql"),
    ),
    (
        "login_failures",
        include_str!("../migrations/0003_login_failures.sql"),
    ),
    (
        "compact_records_postgres",
        include_str!("../migrations/0004_compact_records_postgres.sql"),
    ),
    (
        "smaller_store_postgres",
        include_str!("../migrations/0005_smaller_store_postgres.sql"),
    ),
    (
        "host_facts",
        include_str!("../migrations/0006_host_facts.sql"),
    ),
    (
        "customer_lists",
        include_str!("../migrations/0007_customer_lists.sql"),
    ),
];

/// A line of a migration at which the store's own code does what SQL cannot
/// (JSON to postcard, the search fields of a license record): `-- pls: STEP`,
/// STEP one of [`migration_step`]'s.
const STEP_MARKER: &str = "-- pls: ";
const _: () = assert!(
    SQLITE_MIGRATIONS.len() as u32 == SCHEMA_VERSION
        && POSTGRES_MIGRATIONS.len() as u32 == SCHEMA_VERSION,
    "one migration per schema version and engine"
);

/// How long a statement waits for another connection's lock (a checkpoint, a
/// second process such as `pls admin` opening the file directly) before it
/// fails with "database is locked": long enough for any single write of this
/// server, short enough that a stuck lock shows up as an error, not a hang.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Reader connections kept open between reads. Two cores and short queries: a
/// few readers cover the portal, the QUIC service and a backup at once. A
/// PostgreSQL connection costs a server process and a login to open, so more are
/// kept: one per concurrent portal request of a busy server.
const IDLE_READERS: usize = 8;
const IDLE_READERS_POSTGRES: usize = 48;

/// The results of the store's connection layer: a [`DbError`] unless named.
type Result<T, E = DbError> = std::result::Result<T, E>;

/// The SQL engine. The engine-specific statements are its methods; everything
/// else is shared SQL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// SQLite, compiled in (rusqlite `bundled`): one file in the data directory.
    Sqlite,
    /// PostgreSQL through the `postgres` client (`[database] url`).
    Postgres,
}

impl Engine {
    /// The migrations of this engine, in order: `[i]` brings version `i` to
    /// `i + 1`.
    fn migrations(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Engine::Sqlite => SQLITE_MIGRATIONS,
            Engine::Postgres => POSTGRES_MIGRATIONS,
        }
    }

    /// Settings every connection needs: foreign keys checked, commits on disk
    /// before they return, and the lock wait.
    fn prepare_connection(self, c: &Conn) -> Result<()> {
        match (self, c) {
            (Engine::Sqlite, Conn::Sqlite(lite)) => {
                lite.busy_timeout(BUSY_TIMEOUT)?;
                lite.set_prepared_statement_cache_capacity(128);
                c.execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL;")
            }
            // PostgreSQL checks foreign keys always; a commit returns once it is
            // flushed (synchronous_commit on, the server's default), and a
            // statement that waits for a lock longer than the busy timeout fails.
            // Statements are prepared once per connection; each execution is
            // planned for its values (a generic plan cannot use the trigram index
            // for `doc LIKE $1`).
            _ => c.execute_batch(&format!(
                "SET synchronous_commit = on; SET lock_timeout = '{}s'; SET client_min_messages = warning; SET plan_cache_mode = force_custom_plan",
                BUSY_TIMEOUT.as_secs()
            )),
        }
    }

    /// Write-ahead logging: readers see a snapshot and never block the writer.
    fn enable_wal(self, c: &Conn) -> Result<()> {
        if self == Engine::Sqlite {
            let mode: String = c.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                tracing::warn!(mode, "the database did not switch to WAL mode");
            }
        }
        Ok(())
    }

    /// The engine's own check of its storage: the problems it lists (none: `[]`).
    /// PostgreSQL checks its pages as it reads them (a damaged page is an error
    /// of the query) and enforces foreign keys always: nothing extra to run.
    fn check(self, c: &Conn, full: bool) -> Result<Vec<String>> {
        if self == Engine::Postgres {
            return Ok(vec![]);
        }
        let sql = if full {
            "PRAGMA integrity_check"
        } else {
            "PRAGMA quick_check"
        };
        let mut stmt = c.prepare(sql)?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        let mut out = vec![];
        for r in rows {
            let r = r?;
            if r != "ok" {
                out.push(r);
            }
        }
        let mut stmt = c.prepare("PRAGMA foreign_key_check")?;
        let rows = stmt.query_map([], |r| {
            Ok(format!(
                "foreign key: a row of {} points to a missing {}",
                r.get::<_, String>(0)?,
                r.get::<_, String>(2)?
            ))
        })?;
        for r in rows {
            out.push(r?);
        }
        Ok(out)
    }

    /// Brings the search row of license `id` in line with `fields`.
    fn put_search_row(self, c: &Conn, id: i64, fields: &[String; 11]) -> Result<()> {
        match self {
            Engine::Sqlite => {
                c.execute("DELETE FROM license_search WHERE rowid = ?1", [id])?;
                c.execute(
                    "INSERT INTO license_search (rowid, f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                    params![
                        id, fields[0], fields[1], fields[2], fields[3], fields[4], fields[5],
                        fields[6], fields[7], fields[8], fields[9], fields[10]
                    ],
                )?;
            }
            Engine::Postgres => {
                c.execute(
                    "INSERT INTO license_search (license_id, doc) VALUES (?1, ?2)
                     ON CONFLICT (license_id) DO UPDATE SET doc = excluded.doc",
                    params![id, search_document(fields)],
                )?;
            }
        }
        Ok(())
    }

    /// Whether the search row of license `id` holds `fields`; `None` if it has
    /// no search row. SQLite's search table keeps neither a copy of the fields
    /// nor where in them a trigram stands (schema 5): its row counts as holding
    /// the fields when it has every trigram of them. (A row that has more, say
    /// of a field since shortened, is not found out.)
    fn search_row_matches(self, c: &Conn, id: i64, fields: &[String; 11]) -> Result<Option<bool>> {
        match self {
            Engine::Sqlite => {
                let exists: bool = c.query_row(
                    "SELECT COUNT(*) > 0 FROM license_search WHERE rowid = ?1",
                    [id],
                    |r| r.get(0),
                )?;
                if !exists {
                    return Ok(None);
                }
                let query = trigram_query(fields.iter().map(String::as_str));
                let found: bool = c.query_row(
                    "SELECT COUNT(*) > 0 FROM license_search WHERE license_search MATCH ?1 AND rowid = ?2",
                    params![query, id],
                    |r| r.get(0),
                )?;
                Ok(Some(found))
            }
            Engine::Postgres => {
                let doc: Option<String> = c
                    .query_row(
                        "SELECT doc FROM license_search WHERE license_id = ?1",
                        [id],
                        |r| r.get(0),
                    )
                    .optional()?;
                Ok(doc.map(|d| d == search_document(fields)))
            }
        }
    }

    /// The license records whose search fields hold every trigram of `q` (at
    /// least three characters, normalized) in one field, in number order: a
    /// superset of the matches.
    fn search_candidates(self, c: &Conn, q: &str) -> Result<Vec<(Vec<u8>, String)>> {
        let (sql, arg) = match self {
            Engine::Sqlite => (
                // Every trigram of the query (the index keeps no positions).
                "SELECT l.record, COALESCE(a.email, '') FROM license_search s
                 JOIN licenses l ON l.id = s.rowid
                 LEFT JOIN accounts a ON a.id = l.account_id
                 WHERE license_search MATCH ?1 ORDER BY l.number",
                trigram_query([q]),
            ),
            Engine::Postgres => (
                // A LIKE pattern the pg_trgm index answers; `\`, `%`, `_` escaped.
                "SELECT l.record, COALESCE(a.email, '') FROM license_search s
                 JOIN licenses l ON l.id = s.license_id
                 LEFT JOIN accounts a ON a.id = l.account_id
                 WHERE s.doc LIKE ?1 ORDER BY l.number",
                format!(
                    "%{}%",
                    q.replace('\\', "\\\\")
                        .replace('%', "\\%")
                        .replace('_', "\\_")
                ),
            ),
        };
        let mut stmt = c.prepare_cached(sql)?;
        let rows = stmt.query_map([arg], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect()
    }

    /// Whether the schema's bookkeeping table exists (a database pls created).
    fn has_migrations_table(self, c: &Conn) -> Result<bool> {
        let sql = match self {
            Engine::Sqlite => {
                "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
            }
            Engine::Postgres => {
                "SELECT COUNT(*) > 0 FROM information_schema.tables
                 WHERE table_schema = current_schema() AND table_name = 'schema_migrations'"
            }
        };
        c.query_row(sql, [], |r| r.get(0))
    }
}

/// An FTS5 query for the rows that have every trigram of `texts` (`AND`; each
/// trigram a quoted string, `"` doubled). `texts` hold at least one trigram.
fn trigram_query<'a>(texts: impl IntoIterator<Item = &'a str>) -> String {
    let mut seen = std::collections::HashSet::new();
    let mut terms = vec![];
    for text in texts {
        let chars: Vec<char> = text.chars().collect();
        for w in chars.windows(search::GRAM) {
            let gram: String = w.iter().collect();
            if seen.insert(gram.clone()) {
                terms.push(format!("\"{}\"", gram.replace('"', "\"\"")));
            }
        }
    }
    terms.join(" AND ")
}

/// The PostgreSQL search document of one license: its search fields, one per
/// line (a query never holds a line break, so no match spans two fields).
fn search_document(fields: &[String; 11]) -> String {
    fields.join("\n")
}

/// The database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("the database {path} has schema version {found}, newer than this pls ({supported}); use a newer pls")]
    NewerSchema {
        path: String,
        found: u32,
        supported: u32,
    },
    #[error("the database {path} is missing, but {marker} says one was created here: it was deleted or moved. Nothing was started. Restore the latest backup: pls admin restore FILE")]
    Missing { path: String, marker: String },
    #[error("the database {path} is damaged ({detail}); nothing was started. Restore the latest backup: pls admin restore FILE (the damaged file is kept aside)")]
    Damaged { path: String, detail: String },
    #[error("there is a database of the old sled store in {sled}; move it to SQL first: pls admin import-sled {sled}")]
    SledFound { sled: String },
    #[error("cannot open the database {path}: {source} (if the file is damaged, restore the latest backup: pls admin restore FILE)")]
    Db { path: String, source: DbError },
    #[error("migrating the database {path} from schema version {from} failed (it stays at version {from}; the next start tries again): {source}")]
    Migration {
        path: String,
        from: u32,
        source: DbError,
    },
    #[error("cannot create the temporary database: {0}")]
    Temp(std::io::Error),
    #[error("cannot start the throwaway PostgreSQL cluster: {0}")]
    Cluster(#[from] throwaway::ClusterError),
}

/// What [`StoreError::Full`] says, also through the errors that wrap it
/// transparently ([`LicenseError`], [`AccountError`]), so a caller that has only
/// the text can tell a full disk apart ([`is_full_message`]).
pub const FULL_MESSAGE: &str =
    "the disk holding the database is full: nothing was changed; try again when there is space";

/// Whether an error's text is [`StoreError::Full`]'s.
pub fn is_full_message(text: &str) -> bool {
    text == FULL_MESSAGE
}

/// How [`StoreError::Unavailable`]'s text begins.
const UNAVAILABLE_PREFIX: &str = "the database cannot be reached right now";

/// Whether an error's text is [`StoreError::Unavailable`]'s: the database is
/// away for a moment (a restart, a failover); the request may be tried again.
pub fn is_unavailable_message(text: &str) -> bool {
    text.starts_with(UNAVAILABLE_PREFIX)
}

/// A read or an unconditional write failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{}", FULL_MESSAGE)]
    Full,
    #[error("the database is damaged: {0}; restore the latest backup (pls admin restore FILE)")]
    Damaged(String),
    #[error("{UNAVAILABLE_PREFIX} ({0}); nothing was changed; try again")]
    Unavailable(String),
    #[error("database error: {0}")]
    Db(DbError),
    #[error("database error: {0}")]
    Failed(String),
    #[error("stored record {what} is damaged: {reason}; restore the latest backup (pls admin restore FILE)")]
    Corrupt { what: String, reason: String },
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        DbError::Sqlite(e).into()
    }
}

impl From<DbError> for StoreError {
    fn from(e: DbError) -> Self {
        use rusqlite::ErrorCode;
        match e {
            DbError::Sqlite(e) => match e.sqlite_error_code() {
                Some(ErrorCode::DiskFull) => {
                    tracing::warn!("database write failed: the disk is full");
                    StoreError::Full
                }
                Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => {
                    tracing::error!(error = %e, "the database is damaged");
                    StoreError::Damaged(e.to_string())
                }
                _ => match e {
                    // A value that is not what its column holds: the file was
                    // changed under SQLite's feet (its checks cover structure, not
                    // content).
                    rusqlite::Error::FromSqlConversionFailure(..)
                    | rusqlite::Error::Utf8Error(..)
                    | rusqlite::Error::InvalidColumnType(..)
                    | rusqlite::Error::IntegralValueOutOfRange(..) => {
                        tracing::error!(error = %e, "a stored value does not decode");
                        StoreError::Damaged(e.to_string())
                    }
                    e => StoreError::Db(DbError::Sqlite(e)),
                },
            },
            DbError::Column { .. } => {
                tracing::error!(error = %e, "a stored value does not decode");
                StoreError::Damaged(e.to_string())
            }
            DbError::Pg(pg) => match pg.code().map(|c| c.code()) {
                // disk_full, insufficient_resources
                Some("53100" | "53000") => {
                    tracing::warn!("database write failed: the disk is full");
                    StoreError::Full
                }
                // data_corrupted, index_corrupted
                Some("XX001" | "XX002") => {
                    tracing::error!(error = %pg, "the database is damaged");
                    StoreError::Damaged(pg.to_string())
                }
                // The connection is gone or the server is shutting down, starting
                // or read-only (a standby during a failover): the same request
                // later works.
                Some(code)
                    if code.starts_with("08")
                        || code.starts_with("57P")
                        || code == "25006"
                        || code == "40001"
                        || code == "40P01"
                        || code == "55P03" =>
                {
                    tracing::warn!(error = %pg, "the database is unavailable");
                    StoreError::unavailable(pg.to_string())
                }
                // No SQLSTATE: the link to the server failed (lost, refused, no
                // host of the URL takes writes yet during a failover).
                None if pg.is_closed() || is_link_failure(&pg.to_string()) => {
                    tracing::warn!(error = %pg, "the database connection is lost");
                    StoreError::unavailable(pg.to_string())
                }
                _ => StoreError::Db(DbError::Pg(pg)),
            },
            e => StoreError::Db(e),
        }
    }
}

/// Whether a PostgreSQL client error without SQLSTATE says the connection
/// failed rather than a statement: the client's texts for a broken, closed,
/// refused or timed-out connection (`error connecting to server: database does
/// not allow writes` is a standby not promoted yet).
fn is_link_failure(text: &str) -> bool {
    [
        "error communicating with the server",
        "error connecting to server",
        "connection closed",
        "timeout waiting for server",
    ]
    .iter()
    .any(|p| text.starts_with(p))
        || text.contains("connection")
}

thread_local! {
    /// What this thread's store calls met since [`take_thread_marks`] last asked.
    static MARKS: std::cell::Cell<ThreadMarks> = const { std::cell::Cell::new(ThreadMarks { unavailable: false, wrote: false }) };
}

/// What the store calls of one thread met since [`take_thread_marks`] last
/// asked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadMarks {
    /// A call found the database unavailable ([`StoreError::Unavailable`]).
    pub unavailable: bool,
    /// A write transaction was committed.
    pub wrote: bool,
}

/// What this thread's store calls met since the last call; resets the marks.
/// The portal asks before and after each handler: a handler that met an
/// unavailable database and changed nothing answers 503, also where it went
/// on without the value it could not read.
pub fn take_thread_marks() -> ThreadMarks {
    MARKS.with(|m| m.replace(ThreadMarks::default()))
}

fn mark(f: impl FnOnce(&mut ThreadMarks)) {
    MARKS.with(|m| {
        let mut marks = m.get();
        f(&mut marks);
        m.set(marks);
    });
}

impl StoreError {
    /// [`StoreError::Unavailable`], marked on this thread ([`take_thread_marks`]).
    pub fn unavailable(detail: String) -> Self {
        mark(|m| m.unavailable = true);
        StoreError::Unavailable(detail)
    }

    /// Whether the write failed for lack of disk space (the caller answers
    /// "storage full, try again later").
    pub fn is_full(&self) -> bool {
        matches!(self, StoreError::Full)
    }
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

/// A backup, restore or import failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a usable pls backup: {reason}")]
    Invalid { path: String, reason: String },
    #[error("{path} is a backup of the old sled store; bring it over with: pls admin import-sled {path}")]
    SledBackup { path: String },
    #[error("the target database {0} already holds data; import into a new data directory (or move the file away first)")]
    TargetNotEmpty(String),
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<DbError> for AccountError {
    fn from(e: DbError) -> Self {
        AccountError::Store(e.into())
    }
}
impl From<DbError> for LicenseError {
    fn from(e: DbError) -> Self {
        LicenseError::Store(e.into())
    }
}
impl From<DbError> for BackupError {
    fn from(e: DbError) -> Self {
        BackupError::Store(e.into())
    }
}
impl From<rusqlite::Error> for BackupError {
    fn from(e: rusqlite::Error) -> Self {
        BackupError::Store(e.into())
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

/// Who authorises an activation.
#[derive(Clone, Copy, Debug)]
pub enum ActivationAuthority<'a> {
    /// The license token the daemon sent (never stored or logged).
    Token(&'a str),
    /// The license's owner, logged in to the portal (activation by file).
    Owner(AccountId),
    /// The vendor (`pls admin offline-answer`).
    Vendor,
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

/// A binding moved to a host whose hardware changed.
#[derive(Clone, Debug)]
pub struct Rebound {
    /// The hardware ID it was bound to.
    pub from: HardwareId,
    /// How many hardware facts changed.
    pub changes: u32,
    /// The license after the move (bound to the new host).
    pub license: License,
}

/// A mail job's JSON, written from the job's new id (see [`Store::enqueue_mail`]).
pub type MailJobFn = Box<dyn FnOnce(u64) -> String + Send>;

/// Composes the "Hardware geändert" email of a rebind, called inside the
/// rebind's transaction so that the move and its email are stored together
/// (both or neither): `Ok(None)` when there is nobody to write to, `Err` when
/// the email cannot be composed (the rebind is then rolled back and the check
/// answered as a store failure, to be retried).
pub type RebindMail<'a> = &'a dyn Fn(&Rebound, UnixTime) -> Result<Option<MailJobFn>, String>;

/// What a backup, restore or import moved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupSummary {
    /// Rows of the business tables (accounts, licenses, mutations, grants,
    /// audit, check-ins).
    pub entries: u64,
    pub licenses: u64,
    pub schema_version: u32,
}

/// A session row of the portal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRow {
    pub account: AccountId,
    pub created: UnixTime,
    pub expires: UnixTime,
    pub persistent: bool,
}

/// A session with what a request needs of its account (see
/// [`Store::session_with_account`]).
#[derive(Clone, Debug)]
pub struct SessionWithAccount {
    pub session: SessionRow,
    /// `None` if the account was deleted.
    pub account: Option<Account>,
    /// The account's language preference ([`Store::lang_pref`]).
    pub lang: Option<String>,
}

/// An emailed link's row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmailTokenRow {
    pub purpose: String,
    pub account: AccountId,
    pub expires: UnixTime,
    pub used: bool,
}

fn to_json<T: Serialize>(value: &T) -> String {
    // Plain data records: serializing cannot fail (string map keys, no floats).
    serde_json::to_string(value).unwrap_or_default()
}

/// A record (account, license, mutation, signed grant) as stored since schema 4:
/// postcard, the compact binary form of the same serde types (no field names,
/// integers as varints, bytes as bytes). Schemas 1 and 2 kept JSON text;
/// migration 3 re-encodes it ([`recode_records`]). Postcard is not
/// self-describing: a change of these types needs a migration that re-encodes
/// the records, as migration 3 does.
fn to_record<T: Serialize>(value: &T) -> Vec<u8> {
    // Plain data records: serializing cannot fail (every sequence has a length).
    postcard::to_allocvec(value).unwrap_or_default()
}

fn from_record<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, StoreError> {
    let corrupt = |reason: String| {
        tracing::error!(record = what, error = %reason, "a stored record does not decode");
        StoreError::Corrupt {
            what: what.to_owned(),
            reason,
        }
    };
    match postcard::take_from_bytes(bytes) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(corrupt(format!("{} bytes after the record", rest.len()))),
        Err(e) => Err(corrupt(e.to_string())),
    }
}

fn from_json<T: DeserializeOwned>(what: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| {
        tracing::error!(record = what, error = %e, "a stored record does not decode");
        StoreError::Corrupt {
            what: what.to_owned(),
            reason: e.to_string(),
        }
    })
}

/// The serde name of a unit enum value (`"soft_dongle"`), as the CHECKs list them.
fn enum_text<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        other => format!("{other:?}"),
    }
}

/// Integers are stored as BIGINT; every value here (times, serials, ids) is far
/// below 2^63.
fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
fn uint(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

// ----- row access, on any connection or transaction ------------------------------

/// One page of the admin license list (see [`Store::license_list_page`]).
#[derive(Debug)]
pub struct LicenseListPage {
    /// Licenses in the store.
    pub total: usize,
    /// The 1-based page these rows are.
    pub page: usize,
    /// The licenses of the page, each with its customer's email (empty without one).
    pub rows: Vec<(License, String)>,
}

/// One page of a customer's license list (see [`Store::customer_license_page`]).
#[derive(Debug)]
pub struct CustomerLicensePage {
    /// The customer's licenses with something ordered.
    pub total: usize,
    /// The 1-based page these rows are.
    pub page: usize,
    /// The licenses of the page, each with whether ProMoS runs on its host.
    pub rows: Vec<(License, bool)>,
}

/// Which of a customer's quotes the quote list shows (its `show` filter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuoteFilter {
    All,
    /// Quotes still valid.
    Open,
    /// Quotes past their validity (or marked expired).
    Expired,
    /// Ordered or activated.
    Ordered,
    /// For a new license.
    New,
    /// For an upgrade of a license.
    Upgrade,
}

impl QuoteFilter {
    /// The filter's value in the list's `show` parameter ("" is all).
    pub fn parse(show: &str) -> Option<QuoteFilter> {
        Some(match show {
            "" => QuoteFilter::All,
            "open" => QuoteFilter::Open,
            "expired" => QuoteFilter::Expired,
            "ordered" => QuoteFilter::Ordered,
            "new" => QuoteFilter::New,
            "upgrade" => QuoteFilter::Upgrade,
            _ => return None,
        })
    }

    fn key(self) -> &'static str {
        match self {
            QuoteFilter::All => "all",
            QuoteFilter::Open => "open",
            QuoteFilter::Expired => "expired",
            QuoteFilter::Ordered => "ordered",
            QuoteFilter::New => "new",
            QuoteFilter::Upgrade => "upgrade",
        }
    }
}

/// A customer's quotes as the quote list shows them (see
/// [`Store::customer_quote_page`]).
#[derive(Debug)]
pub struct CustomerQuotePage {
    /// The quotes the filter keeps.
    pub total: usize,
    /// The 1-based page these rows are.
    pub page: usize,
    /// The quotes, newest first, each with its license.
    pub rows: Vec<(License, Mutation)>,
}

fn q_licenses_page_with_emails(
    c: &Conn,
    skip: usize,
    take: usize,
) -> Result<Vec<(License, String)>, StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT l.record, COALESCE(a.email, '') FROM licenses l
         LEFT JOIN accounts a ON a.id = l.account_id
         ORDER BY l.number LIMIT ?1 OFFSET ?2",
    )?;
    let rows = stmt.query_map(params![int(take as u64), int(skip as u64)], |r| {
        Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, String>(1)?))
    })?;
    let mut out = vec![];
    for r in rows {
        let (record, email) = r?;
        out.push((from_record("license", &record)?, email));
    }
    Ok(out)
}

fn q_session(c: &Conn, id_hash: &str) -> Result<Option<SessionRow>, StoreError> {
    Ok(c.prepare_cached(
        "SELECT account_id, created_at, expires_at, persistent FROM sessions WHERE id_hash = ?1",
    )?
    .query_row([id_hash], |r| {
        Ok(SessionRow {
            account: AccountId(uint(r.get(0)?)),
            created: UnixTime(uint(r.get(1)?)),
            expires: UnixTime(uint(r.get(2)?)),
            persistent: r.get(3)?,
        })
    })
    .optional()?)
}

fn q_account(c: &Conn, id: AccountId) -> Result<Option<Account>, StoreError> {
    c.prepare_cached("SELECT record FROM accounts WHERE id = ?1")?
        .query_row([int(id.0)], |r| r.get::<_, Vec<u8>>(0))
        .optional()?
        .map(|t| from_record("account", &t))
        .transpose()
}

fn q_email(c: &Conn, id: Option<AccountId>) -> Result<String, StoreError> {
    let Some(id) = id else {
        return Ok(String::new());
    };
    Ok(
        c.prepare_cached("SELECT email FROM accounts WHERE id = ?1")?
            .query_row([int(id.0)], |r| r.get::<_, String>(0))
            .optional()?
            .unwrap_or_default(),
    )
}

fn put_account(c: &Conn, a: &Account) -> Result<(), StoreError> {
    c.prepare_cached(
        "INSERT INTO accounts (id, email, trusted, admin, created_at, record)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (id) DO UPDATE SET trusted = excluded.trusted, admin = excluded.admin,
             record = excluded.record",
    )?
    .execute(params![
        int(a.id.0),
        a.email,
        a.trusted,
        a.admin,
        int(a.created_at.0),
        to_record(a)
    ])?;
    Ok(())
}

fn q_license(c: &Conn, n: &LicenseNumber) -> Result<Option<License>, StoreError> {
    c.prepare_cached("SELECT record FROM licenses WHERE number = ?1")?
        .query_row([n.as_str()], |r| r.get::<_, Vec<u8>>(0))
        .optional()?
        .map(|t| from_record("license", &t))
        .transpose()
}

fn q_licenses(c: &Conn, sql: &str, p: impl Params) -> Result<Vec<License>, StoreError> {
    let mut stmt = c.prepare_cached(sql)?;
    let rows = stmt.query_map(p, |r| r.get::<_, Vec<u8>>(0))?;
    let mut out = vec![];
    for r in rows {
        out.push(from_record("license", &r?)?);
    }
    Ok(out)
}

/// Writes the license row and its search row, in the caller's transaction. The
/// search row is written only when its fields change (a license is written
/// several times in its lifecycle, its search fields seldom change; an
/// unchanged row written again costs the search index space until its
/// segments merge). Accounts' emails never change, so the fields of the
/// previous record are what its search row holds.
fn put_license(c: &Conn, l: &License) -> Result<(), StoreError> {
    let previous: Option<Vec<u8>> = c
        .prepare_cached("SELECT record FROM licenses WHERE number = ?1")?
        .query_row([l.number.as_str()], |r| r.get(0))
        .optional()?;
    let (previous_fields, previous_account) = match previous {
        Some(record) => {
            let old: License = from_record("license", &record)?;
            (
                Some(search::fields(&old, &q_email(c, old.account)?)),
                old.account,
            )
        }
        None => (None, None),
    };
    c.prepare_cached(
        "INSERT INTO licenses (id, number, account_id, license_type, protection, created_at,
             serial, current_grant, next_mutation, record)
         VALUES ((SELECT COALESCE(MAX(id), 0) + 1 FROM licenses), ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (number) DO UPDATE SET account_id = excluded.account_id,
             license_type = excluded.license_type, protection = excluded.protection,
             serial = excluded.serial, current_grant = excluded.current_grant,
             next_mutation = excluded.next_mutation, record = excluded.record",
    )?
    .execute(params![
        l.number.as_str(),
        l.account.map(|a| int(a.0)),
        enum_text(&l.license_type),
        enum_text(&l.protection),
        int(l.created_at.0),
        int(l.serial),
        l.current_grant.map(int),
        i64::from(l.next_mutation),
        to_record(l)
    ])?;
    if previous_fields.is_some() && previous_account != l.account {
        c.prepare_cached("UPDATE mutations SET account_id = ?2 WHERE license_number = ?1")?
            .execute(params![l.number.as_str(), l.account.map(|a| int(a.0))])?;
    }
    let fields = search::fields(l, &q_email(c, l.account)?);
    if previous_fields.as_ref() != Some(&fields) {
        let id: i64 = c
            .prepare_cached("SELECT id FROM licenses WHERE number = ?1")?
            .query_row([l.number.as_str()], |r| r.get(0))?;
        engine_of(c).put_search_row(c, id, &fields)?;
    }
    Ok(())
}

fn q_mutations(c: &Conn, n: &LicenseNumber) -> Result<Vec<Mutation>, StoreError> {
    let mut stmt =
        c.prepare_cached("SELECT record FROM mutations WHERE license_number = ?1 ORDER BY number")?;
    let rows = stmt.query_map([n.as_str()], |r| r.get::<_, Vec<u8>>(0))?;
    let mut out = vec![];
    for r in rows {
        out.push(from_record("mutation", &r?)?);
    }
    Ok(out)
}

fn q_mutation(c: &Conn, n: &LicenseNumber, m: u32) -> Result<Option<Mutation>, StoreError> {
    c.prepare_cached("SELECT record FROM mutations WHERE license_number = ?1 AND number = ?2")?
        .query_row(params![n.as_str(), i64::from(m)], |r| {
            r.get::<_, Vec<u8>>(0)
        })
        .optional()?
        .map(|t| from_record("mutation", &t))
        .transpose()
}

/// Writes the mutation row with its license's account, and whether its
/// license is listed in "Meine Lizenzen", in the caller's transaction (the
/// license row is written first).
fn put_mutation(c: &Conn, m: &Mutation) -> Result<(), StoreError> {
    c.prepare_cached(
        "INSERT INTO mutations (license_number, number, kind, state, created_at,
             quote_valid_until, record, account_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7,
             (SELECT account_id FROM licenses WHERE number = ?1))
         ON CONFLICT (license_number, number) DO UPDATE SET state = excluded.state,
             record = excluded.record",
    )?
    .execute(params![
        m.license.as_str(),
        i64::from(m.number),
        enum_text(&m.kind),
        m.state.key(),
        int(m.created_at.0),
        int(m.quote_valid_until.0),
        to_record(m)
    ])?;
    c.prepare_cached(&format!(
        "UPDATE licenses SET listed = {DERIVED_LISTED} WHERE number = ?1"
    ))?
    .execute([m.license.as_str()])?;
    Ok(())
}

/// A signed grant as `grants.signed` keeps it since schema 5 (postcard).
///
/// A grant this server signed has as its payload the canonical JSON of its
/// fields (`serde_json::to_vec`, what [`Signed::sign`] signs), so the payload
/// need not be stored: the grant's fields in postcard and the signature are a
/// third of the envelope, and the payload is made again on read, byte for byte
/// (checked before a grant is stored this way). Any other envelope (a payload
/// that is not exactly that JSON, as a grant of an older format whose fields
/// have changed since; or one whose envelope names another key than the grant)
/// is kept as it is.
///
/// So a change of [`LicenseGrant`]'s fields or of their JSON needs a migration
/// that turns the grants stored as `Fields` into `Verbatim` ones with the
/// payload the old code makes, before the new code reads them.
#[derive(Serialize, serde::Deserialize)]
enum StoredGrant {
    Verbatim(Signed<LicenseGrant>),
    Fields {
        grant: Box<LicenseGrant>,
        signature: Vec<u8>,
    },
}

/// The stored form of a signed grant ([`StoredGrant`]).
fn grant_to_record(signed: &Signed<LicenseGrant>) -> Vec<u8> {
    let rebuildable = serde_json::from_slice::<LicenseGrant>(signed.payload())
        .ok()
        .filter(|grant| {
            grant.key_id == signed.key_id()
                && serde_json::to_vec(grant).is_ok_and(|p| p == signed.payload())
        });
    to_record(&match rebuildable {
        Some(grant) => StoredGrant::Fields {
            grant: Box::new(grant),
            signature: signed.signature().to_vec(),
        },
        None => StoredGrant::Verbatim(signed.clone()),
    })
}

/// The signed grant of a `grants.signed` value, as it was signed.
fn grant_from_record(bytes: &[u8]) -> Result<Signed<LicenseGrant>, StoreError> {
    Ok(match from_record("grant", bytes)? {
        StoredGrant::Verbatim(signed) => signed,
        StoredGrant::Fields { grant, signature } => {
            // Plain data: serializing cannot fail (as when it was signed).
            let payload = serde_json::to_vec(&grant).unwrap_or_default();
            Signed::from_parts(payload, grant.key_id, signature)
        }
    })
}

fn q_grant(
    c: &Conn,
    n: &LicenseNumber,
    serial: u64,
) -> Result<Option<Signed<LicenseGrant>>, StoreError> {
    c.prepare_cached("SELECT signed FROM grants WHERE license_number = ?1 AND serial = ?2")?
        .query_row(params![n.as_str(), int(serial)], |r| r.get::<_, Vec<u8>>(0))
        .optional()?
        .map(|t| grant_from_record(&t))
        .transpose()
}

fn put_grant(
    c: &Conn,
    n: &LicenseNumber,
    serial: u64,
    g: &Signed<LicenseGrant>,
) -> Result<(), StoreError> {
    c.prepare_cached("INSERT INTO grants (license_number, serial, signed) VALUES (?1, ?2, ?3)")?
        .execute(params![n.as_str(), int(serial), grant_to_record(g)])?;
    Ok(())
}

fn next_id(c: &Conn, table_and_column: &str) -> Result<u64, StoreError> {
    let (table, column) = table_and_column
        .split_once('.')
        .unwrap_or((table_and_column, "id"));
    let v: i64 = c.query_row(
        &format!("SELECT COALESCE(MAX({column}), 0) + 1 FROM {table}"),
        [],
        |r| r.get(0),
    )?;
    Ok(uint(v))
}

/// Queues a mail job inside the caller's transaction; returns its id.
fn q_enqueue_mail(
    c: &Conn,
    next_attempt: UnixTime,
    make: impl FnOnce(u64) -> String,
) -> Result<u64, StoreError> {
    let id = next_id(c, "mail_queue.id")?;
    c.execute(
        "INSERT INTO mail_queue (id, next_attempt, job) VALUES (?1, ?2, ?3)",
        params![int(id), int(next_attempt.0), make(id)],
    )?;
    Ok(id)
}

fn put_audit(c: &Conn, e: &AuditEntry) -> Result<(), StoreError> {
    c.prepare_cached(
        "INSERT INTO audit (seq, at, actor, license_number, account_id, action, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        int(e.seq),
        int(e.at.0),
        to_json(&e.actor),
        e.license.as_ref().map(|n| n.as_str().to_owned()),
        e.account.map(|a| int(a.0)),
        e.action,
        e.detail
    ])?;
    Ok(())
}

/// Appends an audit entry.
fn audit(
    c: &Conn,
    at: UnixTime,
    actor: &Actor,
    license: Option<&LicenseNumber>,
    account: Option<AccountId>,
    action: &str,
    detail: String,
) -> Result<(), StoreError> {
    let entry = AuditEntry {
        seq: next_id(c, "audit.seq")?,
        at,
        actor: actor.clone(),
        license: license.cloned(),
        account,
        action: action.to_owned(),
        detail,
    };
    put_audit(c, &entry)
}

/// An audit row: seq, at, actor, license, account, action, detail.
type AuditRow = (
    i64,
    i64,
    String,
    Option<String>,
    Option<i64>,
    String,
    String,
);

fn audit_row(r: &Row<'_>) -> Result<AuditRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    ))
}

fn decode_audit(row: AuditRow) -> Result<AuditEntry, StoreError> {
    let (seq, at, actor, license, account, action, detail) = row;
    Ok(AuditEntry {
        seq: uint(seq),
        at: UnixTime(uint(at)),
        actor: from_json("audit actor", &actor)?,
        license: license.map(|n| parse_number(&n)).transpose()?,
        account: account.map(|a| AccountId(uint(a))),
        action,
        detail,
    })
}

const CHECKIN_COLUMNS: &str =
    "license_number, hardware_id, at, running, ge_seats, pwa_seats, daemon_version, from_addr";

/// A check-in row, in the order of [`CHECKIN_COLUMNS`].
type CheckInRow = (String, String, i64, bool, i64, i64, String, String);

fn checkin_row(r: &Row<'_>) -> Result<CheckInRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
    ))
}

fn decode_checkin(row: CheckInRow) -> Result<CheckIn, StoreError> {
    let (license, hw, at, running, ge, pwa, version, from) = row;
    Ok(CheckIn {
        license: parse_number(&license)?,
        hardware_id: hw.parse().map_err(|_| StoreError::Corrupt {
            what: format!("check-in of {license}"),
            reason: "not a hardware ID".into(),
        })?,
        at: UnixTime(uint(at)),
        running,
        ge_seats: u32::try_from(ge).unwrap_or(u32::MAX),
        pwa_seats: u32::try_from(pwa).unwrap_or(u32::MAX),
        daemon_version: version,
        from,
    })
}

fn put_checkin(c: &Conn, table: &str, seq: Option<u64>, ci: &CheckIn) -> Result<(), StoreError> {
    let values = params![
        ci.license.as_str(),
        ci.hardware_id.to_string(),
        int(ci.at.0),
        ci.running,
        i64::from(ci.ge_seats),
        i64::from(ci.pwa_seats),
        ci.daemon_version,
        ci.from
    ];
    match seq {
        None => c
            .prepare_cached(&format!(
                "INSERT INTO {table} ({CHECKIN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (license_number) DO UPDATE SET hardware_id = excluded.hardware_id,
                     at = excluded.at, running = excluded.running, ge_seats = excluded.ge_seats,
                     pwa_seats = excluded.pwa_seats, daemon_version = excluded.daemon_version,
                     from_addr = excluded.from_addr"
            ))?
            .execute(values)?,
        Some(seq) => {
            let mut all: Vec<&dyn db::Arg> = values.to_vec();
            let seq = int(seq);
            all.push(&seq);
            c.prepare_cached(&format!(
                "INSERT INTO {table} ({CHECKIN_COLUMNS}, seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
            ))?
            .execute(all.as_slice())?
        }
    };
    Ok(())
}

fn q_last_checkin(c: &Conn, n: &LicenseNumber) -> Result<Option<CheckIn>, StoreError> {
    c.prepare_cached(&format!(
        "SELECT {CHECKIN_COLUMNS} FROM checkins WHERE license_number = ?1"
    ))?
    .query_row([n.as_str()], checkin_row)
    .optional()?
    .map(decode_checkin)
    .transpose()
}

const HOST_FACTS_COLUMNS: &str = "hardware_id, facts, rebound_at, rebound_from, clone_refused_at";

/// The `host_facts` row of a license: the host it was last written for (the
/// bound one, unless the binding moved since), its facts, its last rebind.
fn q_host_facts(c: &Conn, n: &LicenseNumber) -> Result<Option<BoundHost>, StoreError> {
    type HostFactsRow = (String, String, Option<i64>, Option<String>, Option<i64>);
    let row: Option<HostFactsRow> = c
        .prepare_cached(&format!(
            "SELECT {HOST_FACTS_COLUMNS} FROM host_facts WHERE license_number = ?1"
        ))?
        .query_row([n.as_str()], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .optional()?;
    let Some((host, facts, rebound_at, rebound_from, clone_refused_at)) = row else {
        return Ok(None);
    };
    let corrupt = |reason: &str| StoreError::Corrupt {
        what: format!("host facts of license {n}"),
        reason: reason.to_owned(),
    };
    let parse_id = |s: &str| {
        s.parse::<HardwareId>()
            .map_err(|_| corrupt("not a hardware ID"))
    };
    let rebound = match (rebound_at, rebound_from) {
        (Some(at), Some(from)) => Some((UnixTime(uint(at)), parse_id(&from)?)),
        _ => None,
    };
    Ok(Some(BoundHost {
        hardware_id: parse_id(&host)?,
        facts: hardware::facts_from_text(&facts).ok_or_else(|| corrupt("damaged facts"))?,
        rebound,
        clone_refused_at: clone_refused_at.map(|t| UnixTime(uint(t))),
    }))
}

fn put_host_facts(
    c: &Conn,
    n: &LicenseNumber,
    b: &BoundHost,
    now: UnixTime,
) -> Result<(), StoreError> {
    c.prepare_cached(
        "INSERT INTO host_facts (license_number, hardware_id, facts, updated_at, rebound_at, rebound_from, clone_refused_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (license_number) DO UPDATE SET hardware_id = excluded.hardware_id,
           facts = excluded.facts, updated_at = excluded.updated_at,
           rebound_at = excluded.rebound_at, rebound_from = excluded.rebound_from,
           clone_refused_at = excluded.clone_refused_at",
    )?
    .execute(params![
        n.as_str().to_owned(),
        b.hardware_id.as_str().to_owned(),
        hardware::facts_to_text(&b.facts),
        int(now.0),
        b.rebound.as_ref().map(|(at, _)| int(at.0)),
        b.rebound.as_ref().map(|(_, from)| from.as_str().to_owned()),
        b.clone_refused_at.map(|t| int(t.0))
    ])?;
    Ok(())
}

fn runtime_running_in(c: &Conn, license: &License) -> Result<bool, StoreError> {
    let last = q_last_checkin(c, &license.number)?;
    Ok(match (&license.binding, last) {
        (Some(Binding::HardwareId(h)), Some(c)) => c.running && &c.hardware_id == h,
        (Some(Binding::DongleSerial(_)), Some(c)) => c.running,
        _ => false,
    })
}

fn parse_number(s: &str) -> Result<LicenseNumber, StoreError> {
    s.parse().map_err(|_| StoreError::Corrupt {
        what: format!("license number {s:?}"),
        reason: "not a license number".into(),
    })
}

fn io_context(path: &Path) -> impl Fn(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Write {
        path: path.display().to_string(),
        source,
    }
}

/// Flushes a directory entry (a rename or a new file) to disk.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// The marker file that says a store was created at `db` (so a missing `db` is
/// an error, not a fresh start).
pub fn marker_path(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push(".created");
    PathBuf::from(p)
}

fn write_marker(db: &Path) -> std::io::Result<()> {
    let marker = marker_path(db);
    std::fs::write(
        &marker,
        "pls created its SQL store next to this file; if the store is missing, restore a backup\n",
    )?;
    std::fs::File::open(&marker)?.sync_all()?;
    if let Some(dir) = db.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

fn open_connection(path: &Path, create: bool) -> Result<Conn> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let c = Conn::Sqlite(Connection::open_with_flags(path, flags)?);
    Engine::Sqlite.prepare_connection(&c)?;
    Ok(c)
}

fn connect_postgres(url: &str) -> Result<Conn> {
    let c = Conn::Pg(Box::new(db::PgConn::connect(url)?));
    Engine::Postgres.prepare_connection(&c)?;
    Ok(c)
}

/// The engine a connection belongs to.
fn engine_of(c: &Conn) -> Engine {
    if c.is_sqlite() {
        Engine::Sqlite
    } else {
        Engine::Postgres
    }
}

fn schema_version_of(c: &Conn) -> Result<u32> {
    if !engine_of(c).has_migrations_table(c)? {
        return Ok(0);
    }
    let v: i64 = c.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?;
    Ok(u32::try_from(v).unwrap_or(u32::MAX))
}

/// Runs the migrations after `version`, each in one transaction with its row in
/// `schema_migrations`. Logs each step.
fn migrate(c: &Conn, version: u32, p: &str) -> Result<(), OpenError> {
    migrate_until(c, version, SCHEMA_VERSION, p)
}

/// [`migrate`] up to schema `until` only (tests make stores of older schemas).
fn migrate_until(c: &Conn, version: u32, until: u32, p: &str) -> Result<(), OpenError> {
    let engine = engine_of(c);
    for (i, (name, sql)) in engine
        .migrations()
        .iter()
        .enumerate()
        .take(until as usize)
        .skip(version as usize)
    {
        let from = i as u32;
        tracing::info!(
            database = p,
            "migrating schema {from} → {} ({name})",
            from + 1
        );
        c.write(|tx| {
            tx.execute_batch(
                "CREATE TABLE IF NOT EXISTS schema_migrations (
                     version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
            )?;
            run_migration(tx, sql)?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            tx.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
                params![i64::from(from + 1), *name, int(now)],
            )?;
            Ok::<_, DbError>(())
        })
        .map_err(|source| OpenError::Migration {
            path: p.to_owned(),
            from,
            source,
        })?;
    }
    Ok(())
}

/// Runs one migration's SQL, and its steps ([`STEP_MARKER`]) where they stand.
fn run_migration(c: &Conn, sql: &str) -> Result<(), DbError> {
    let mut batch = String::new();
    for line in sql.split_inclusive('\n') {
        match line.strip_prefix(STEP_MARKER) {
            Some(step) => {
                c.execute_batch(&batch)?;
                batch.clear();
                migration_step(c, step.trim())?;
            }
            None => batch.push_str(line),
        }
    }
    c.execute_batch(&batch)
}

/// The migrations' steps in Rust, by name.
fn migration_step(c: &Conn, step: &str) -> Result<(), DbError> {
    match step {
        "recode records" => recode_records(c),
        "recode grants" => recode_grants(c),
        "rebuild search" => rebuild_search(c),
        "derive list columns" => derive_list_columns(c),
        other => Err(DbError::Record {
            what: "migration".into(),
            reason: format!("unknown step {other:?}"),
        }),
    }
}

/// Migration 4's own step (`recode records`): every record the store kept as
/// JSON text (schemas 1 to 3: `record` of accounts, licenses and mutations,
/// `signed` of grants) is decoded and written again in the compact encoding
/// ([`to_record`]) into the new column beside it, in the migration's
/// transaction. A record that does not decode stops the migration (nothing is
/// changed).
fn recode_records(c: &Conn) -> Result<(), DbError> {
    fn recode<T: Serialize + DeserializeOwned>(json: db::Value) -> Result<Vec<u8>, String> {
        let db::Value::Text(json) = json else {
            return Err(format!("not JSON text: {json:?}"));
        };
        serde_json::from_str::<T>(&json)
            .map(|v| to_record(&v))
            .map_err(|e| e.to_string())
    }
    recode_column(
        c,
        "accounts",
        ["id", "id"],
        "record",
        "record_bin",
        recode::<Account>,
    )?;
    recode_column(
        c,
        "licenses",
        ["id", "id"],
        "record",
        "record_bin",
        recode::<License>,
    )?;
    recode_column(
        c,
        "mutations",
        ["license_number", "number"],
        "record",
        "record_bin",
        recode::<Mutation>,
    )?;
    // Schema 4's form of a grant: the whole envelope in postcard.
    recode_column(
        c,
        "grants",
        ["license_number", "serial"],
        "signed",
        "signed_bin",
        recode::<Signed<LicenseGrant>>,
    )
}

/// Migration 5's own step (`recode grants`): every grant, kept by schema 4 as
/// its whole envelope in postcard, written again in place as a
/// [`StoredGrant`] ([`grant_to_record`]).
fn recode_grants(c: &Conn) -> Result<(), DbError> {
    recode_column(
        c,
        "grants",
        ["license_number", "serial"],
        "signed",
        "signed",
        |v| {
            let db::Value::Bytes(bytes) = v else {
                return Err(format!("not bytes: {v:?}"));
            };
            from_record::<Signed<LicenseGrant>>("grant", &bytes)
                .map(|g| grant_to_record(&g))
                .map_err(|e| e.to_string())
        },
    )
}

/// Migration 5's own step (`rebuild search`, SQLite): the search row of every
/// license written again (into the contentless search table the migration
/// made).
fn rebuild_search(c: &Conn) -> Result<(), DbError> {
    let engine = engine_of(c);
    let mut after = 0i64;
    loop {
        let rows: Vec<(i64, Vec<u8>, String)> = c
            .prepare_cached(
                "SELECT l.id, l.record, COALESCE(a.email, '') FROM licenses l
                 LEFT JOIN accounts a ON a.id = l.account_id
                 WHERE l.id > ?1 ORDER BY l.id LIMIT 1000",
            )?
            .query_map([after], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_>>()?;
        let Some(last) = rows.last() else {
            return Ok(());
        };
        after = last.0;
        for (id, record, email) in rows {
            let l: License = from_record("license", &record).map_err(|e| DbError::Record {
                what: format!("license {id}"),
                reason: e.to_string(),
            })?;
            engine.put_search_row(c, id, &search::fields(&l, &email))?;
        }
    }
}

/// The columns a customer's lists read that are derived from the records
/// (schema 7): each mutation's account (its license's) and whether a license
/// is listed in "Meine Lizenzen" (it has an ordered or activated mutation).
/// The same SQL on both engines.
const DERIVED_ACCOUNT_OF_MUTATIONS: &str = "UPDATE mutations SET account_id =
     (SELECT l.account_id FROM licenses l WHERE l.number = mutations.license_number)";
const DERIVED_LISTED: &str = "EXISTS (SELECT 1 FROM mutations m
     WHERE m.license_number = licenses.number AND m.state IN ('ordered', 'activated'))";

/// Migration 7's own step (`derive list columns`), and the last step of a
/// restore: the derived list columns made from the rows (see
/// [`DERIVED_ACCOUNT_OF_MUTATIONS`]).
fn derive_list_columns(c: &Conn) -> Result<(), DbError> {
    c.execute(DERIVED_ACCOUNT_OF_MUTATIONS, [])?;
    c.execute(
        &format!("UPDATE licenses SET listed = {DERIVED_LISTED}"),
        [],
    )?;
    Ok(())
}

/// Writes `recode(old)` into column `new` of every row of `table` (keyed by two
/// columns; a one-column key twice), in the caller's transaction. A value that
/// does not recode stops the migration (nothing is changed). Reads in batches
/// by key, so a large store is never in memory at once.
fn recode_column(
    c: &Conn,
    table: &str,
    [k1, k2]: [&str; 2],
    old: &str,
    new: &str,
    recode: impl Fn(db::Value) -> Result<Vec<u8>, String>,
) -> Result<(), DbError> {
    // Large enough that the per-statement cost does not count, small enough that
    // a batch of grants (the largest records) stays a few MiB.
    const BATCH: i64 = 1000;
    // Statements are cached per connection by their text, and the same
    // column may have another type in another migration (PostgreSQL refuses a
    // cached statement whose result type changed): the text names the target.
    let (first, next) = (
        format!(
            "SELECT {k1}, {k2}, {old} /* into {new} */ FROM {table}
             ORDER BY {k1}, {k2} LIMIT {BATCH}"
        ),
        format!(
            "SELECT {k1}, {k2}, {old} /* into {new} */ FROM {table} WHERE ({k1}, {k2}) > (?1, ?2)
             ORDER BY {k1}, {k2} LIMIT {BATCH}"
        ),
    );
    let update = format!("UPDATE {table} SET {new} = ?3 WHERE {k1} = ?1 AND {k2} = ?2");
    let mut after: Option<(db::Value, db::Value)> = None;
    loop {
        let rows: Vec<(db::Value, db::Value, db::Value)> = {
            let row = |r: &Row<'_>| Ok((r.get(0)?, r.get(1)?, r.get(2)?));
            match &after {
                None => c
                    .prepare(&first)?
                    .query_map([], row)?
                    .collect::<Result<_>>()?,
                Some((a, b)) => c
                    .prepare(&next)?
                    .query_map(params![a, b], row)?
                    .collect::<Result<_>>()?,
            }
        };
        let Some(last) = rows.last() else {
            return Ok(());
        };
        after = Some((last.0.clone(), last.1.clone()));
        let mut stmt = c.prepare_cached(&update)?;
        for (a, b, value) in rows {
            let bytes = recode(value).map_err(|reason| DbError::Record {
                what: format!("{table} {a:?}/{b:?}"),
                reason,
            })?;
            stmt.execute(params![a, b, bytes])?;
        }
    }
}

/// Where the store lives.
#[derive(Clone, Debug)]
enum Location {
    /// An SQLite database file.
    File(PathBuf),
    /// A PostgreSQL connection string.
    Url(String),
}

/// A PostgreSQL connection string as it may be shown: without its password.
pub fn redact_url(url: &str) -> String {
    if let Some(rest) = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
    {
        let (auth, host) = rest.split_once('@').unwrap_or(("", rest));
        let user = auth.split(':').next().unwrap_or("");
        return if auth.is_empty() {
            format!("postgres://{host}")
        } else {
            format!("postgres://{user}@{host}")
        };
    }
    url.split_whitespace()
        .filter(|kv| !kv.starts_with("password="))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Failures a test asked for ([`Store::fail_as_unavailable`]): calls to let
/// through, then calls to fail.
#[derive(Debug, Default)]
struct Faults {
    armed: std::sync::atomic::AtomicBool,
    plan: Mutex<(u64, u64)>,
}

/// The server's database.
#[derive(Debug)]
pub struct Store {
    location: Location,
    engine: Engine,
    writer: Mutex<Conn>,
    readers: Mutex<Vec<Conn>>,
    /// The schema version this open migrated from, if it migrated.
    migrated_from: Option<u32>,
    /// Check-ins waiting for the next group commit ([`Store::record_check_in`]).
    checkins: Mutex<Vec<PendingCheckIn>>,
    /// Injected failures ([`Store::fail_as_unavailable`]).
    faults: Faults,
    /// The directory of a [`Store::temporary`] store, removed with it.
    _temp: Option<tempfile::TempDir>,
}

impl Store {
    /// Opens the database file `path`, creating it if neither it nor its marker
    /// exists, refusing it if it is damaged or was lost, and brings its schema up
    /// to [`SCHEMA_VERSION`].
    pub fn open(path: &Path) -> Result<Store, OpenError> {
        Self::open_with(path, true, true)
    }

    /// Opens or creates the database file `path` as the target of
    /// `pls admin import-sled`: like [`Store::open`], without the refusal to
    /// create a store next to an old sled directory (the import reads it).
    pub fn open_for_import(path: &Path) -> Result<Store, OpenError> {
        Self::open_with(path, true, false)
    }

    /// Like [`Store::open`], without running migrations: the file keeps its schema
    /// version (a restore with `--keep-schema`).
    fn open_with(path: &Path, run_migrations: bool, sled_check: bool) -> Result<Store, OpenError> {
        let p = path.display().to_string();
        let db_err = |source| OpenError::Db {
            path: p.clone(),
            source,
        };
        let exists = path.exists();
        if !exists {
            let marker = marker_path(path);
            if marker.exists() {
                tracing::error!(database = %p, "the database is missing but was created here");
                return Err(OpenError::Missing {
                    path: p,
                    marker: marker.display().to_string(),
                });
            }
            if let Some(dir) = path.parent().filter(|_| sled_check) {
                let sled = dir.join("db");
                if sled.join("conf").exists() {
                    return Err(OpenError::SledFound {
                        sled: sled.display().to_string(),
                    });
                }
            }
        }
        if !exists {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| OpenError::Db {
                    path: p.clone(),
                    source: rusqlite::Error::ToSqlConversionFailure(Box::new(e)).into(),
                })?;
            }
        }
        let writer = open_connection(path, !exists).map_err(db_err)?;
        if exists {
            let problems = Engine::Sqlite
                .check(&writer, false)
                .map_err(|e| e.to_string())
                .and_then(|p| {
                    if p.is_empty() {
                        Ok(())
                    } else {
                        Err(p.join("; "))
                    }
                });
            if let Err(detail) = problems {
                tracing::error!(database = %p, detail, "the database is damaged; not serving it");
                return Err(OpenError::Damaged { path: p, detail });
            }
        }
        Engine::Sqlite.enable_wal(&writer).map_err(db_err)?;
        let version = schema_version_of(&writer).map_err(|e| OpenError::Damaged {
            path: p.clone(),
            detail: e.to_string(),
        })?;
        if version > SCHEMA_VERSION {
            return Err(OpenError::NewerSchema {
                path: p,
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        if run_migrations || version == 0 {
            migrate(&writer, version, &p)?;
        }
        if !exists {
            write_marker(path).map_err(|e| OpenError::Db {
                path: p.clone(),
                source: rusqlite::Error::ToSqlConversionFailure(Box::new(e)).into(),
            })?;
        }
        Ok(Store {
            location: Location::File(path.to_owned()),
            engine: Engine::Sqlite,
            writer: Mutex::new(writer),
            readers: Mutex::new(vec![]),
            migrated_from: (version > 0 && version < SCHEMA_VERSION && run_migrations)
                .then_some(version),
            checkins: Mutex::new(vec![]),
            faults: Faults::default(),
            _temp: None,
        })
    }

    /// Opens the PostgreSQL database `url` (a `postgres://` URL or a key=value
    /// connection string), creating the schema in an empty database and bringing
    /// it up to [`SCHEMA_VERSION`]. Instances that open the same database at once
    /// migrate one after the other (an advisory lock).
    pub fn open_url(url: &str) -> Result<Store, OpenError> {
        let shown = redact_url(url);
        let db_err = |source| OpenError::Db {
            path: shown.clone(),
            source,
        };
        let writer = connect_postgres(url).map_err(db_err)?;
        writer
            .execute_batch(&format!("SELECT pg_advisory_lock({})", db::MIGRATION_LOCK))
            .map_err(db_err)?;
        let migrated = (|| {
            let version = schema_version_of(&writer).map_err(db_err)?;
            if version > SCHEMA_VERSION {
                return Err(OpenError::NewerSchema {
                    path: shown.clone(),
                    found: version,
                    supported: SCHEMA_VERSION,
                });
            }
            migrate(&writer, version, &shown)?;
            Ok(version)
        })();
        let _ = writer.execute_batch(&format!(
            "SELECT pg_advisory_unlock({})",
            db::MIGRATION_LOCK
        ));
        let version = migrated?;
        Ok(Store {
            location: Location::Url(url.to_owned()),
            engine: Engine::Postgres,
            writer: Mutex::new(writer),
            readers: Mutex::new(vec![]),
            migrated_from: (version > 0 && version < SCHEMA_VERSION).then_some(version),
            checkins: Mutex::new(vec![]),
            faults: Faults::default(),
            _temp: None,
        })
    }

    /// The engine this store runs on.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Where the store is, as it may be shown (a file, or a PostgreSQL database
    /// without its password).
    pub fn describe(&self) -> String {
        match &self.location {
            Location::File(p) => p.display().to_string(),
            Location::Url(u) => format!("PostgreSQL {}", redact_url(u)),
        }
    }

    fn connect(&self) -> Result<Conn> {
        match &self.location {
            Location::File(p) => open_connection(p, false),
            Location::Url(u) => connect_postgres(u),
        }
    }

    /// A database in a temporary directory that is removed with the store, for
    /// tests and benchmarks.
    pub fn temporary() -> Result<Store, OpenError> {
        let dir = tempfile::tempdir().map_err(OpenError::Temp)?;
        let mut store = Self::open(&dir.path().join(DB_FILE))?;
        store._temp = Some(dir);
        Ok(store)
    }

    /// A store in a new database of this process's throwaway PostgreSQL cluster
    /// ([`throwaway::shared`]), for tests and benchmarks.
    pub fn temporary_postgres() -> Result<Store, OpenError> {
        let url = throwaway::shared().create_database()?;
        Self::open_url(&url)
    }

    /// The database file; for PostgreSQL, an empty path (see [`Store::describe`]).
    pub fn path(&self) -> &Path {
        match &self.location {
            Location::File(p) => p,
            Location::Url(_) => Path::new(""),
        }
    }

    /// The schema version of the database file `path`, read without migrating or
    /// writing anything; `None` if there is no database.
    pub fn schema_version_at(path: &Path) -> Result<Option<u32>, OpenError> {
        let p = path.display().to_string();
        if !path.exists() {
            return Ok(None);
        }
        let c = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(DbError::from)
            .and_then(|c| schema_version_of(&Conn::Sqlite(c)))
            .map_err(|source| OpenError::Damaged {
                path: p,
                detail: source.to_string(),
            })?;
        Ok(Some(c))
    }

    /// The schema version this open migrated the database from; `None` if it was
    /// already current (or new).
    pub fn migrated_from(&self) -> Option<u32> {
        self.migrated_from
    }

    pub fn schema_version(&self) -> Result<u32, StoreError> {
        self.read(|c| Ok(schema_version_of(c)?))
    }

    /// Bulk loads (benchmarks, imports) may trade durability of the last writes
    /// for speed: `false` lets a commit return before it is on disk
    /// (SQLite `synchronous=NORMAL`, PostgreSQL `synchronous_commit=off`: a crash
    /// loses the last commits, never consistency). The server never turns it off.
    pub fn set_flush_each_write(&self, on: bool) {
        let sql = match (self.engine, on) {
            (Engine::Sqlite, true) => "PRAGMA synchronous = FULL",
            (Engine::Sqlite, false) => "PRAGMA synchronous = NORMAL",
            (Engine::Postgres, true) => "SET synchronous_commit = on",
            (Engine::Postgres, false) => "SET synchronous_commit = off",
        };
        if let Err(e) = self.writer().execute_batch(sql) {
            tracing::warn!(error = %e, "cannot change the synchronous mode");
        }
    }

    /// Makes every write so far durable and (SQLite) folds the write-ahead log
    /// into the database file.
    pub fn flush(&self) -> Result<(), StoreError> {
        match self.engine {
            Engine::Sqlite => {
                self.writer()
                    .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
            }
            // Every commit is flushed before it returns.
            Engine::Postgres => {}
        }
        Ok(())
    }

    /// The writer connection; a PostgreSQL connection that was lost (a server
    /// restart, a failover) is replaced.
    fn writer(&self) -> std::sync::MutexGuard<'_, Conn> {
        let mut conn = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        if let Conn::Pg(pg) = &*conn {
            if pg.is_closed() {
                match self.connect() {
                    Ok(fresh) => *conn = fresh,
                    Err(e) => tracing::warn!(error = %e, "cannot reconnect to the database"),
                }
            }
        }
        conn
    }

    /// Runs `f` unless another `pls` on the same database runs the job named by
    /// `lock` ([`db::HOUSEKEEPING_LOCK`]) right now; then `None`. On PostgreSQL a
    /// session advisory lock on a connection of its own, released when `f` ends
    /// or the connection dies with its process; SQLite has one server per file.
    pub fn exclusively<A>(
        &self,
        lock: i64,
        f: impl FnOnce() -> A,
    ) -> Result<Option<A>, StoreError> {
        self.injected_fault()?;
        match self.engine {
            Engine::Sqlite => Ok(Some(f())),
            Engine::Postgres => Ok(self.connect()?.exclusively(lock, f)?),
        }
    }

    /// For tests of what callers answer while the database is away: of the
    /// store's next calls (reads, writes, check-ins, exclusive jobs), `skip` work
    /// and the `count` after them fail with [`StoreError::Unavailable`], as a
    /// lost connection or a failover would; later calls work again.
    pub fn fail_as_unavailable(&self, skip: u64, count: u64) {
        let mut plan = self
            .faults
            .plan
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *plan = (skip, count);
        self.faults
            .armed
            .store(count > 0, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether failures injected by [`Store::fail_as_unavailable`] are still
    /// to come.
    pub fn failures_pending(&self) -> bool {
        self.faults.armed.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The injected failure of this call, if one is due.
    fn injected_fault(&self) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering;
        if !self.faults.armed.load(Ordering::SeqCst) {
            return Ok(());
        }
        let mut plan = self
            .faults
            .plan
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match &mut *plan {
            (0, 0) => Ok(()),
            (0, count) => {
                *count -= 1;
                if *count == 0 {
                    self.faults.armed.store(false, Ordering::SeqCst);
                }
                Err(StoreError::unavailable("injected failure".into()))
            }
            (skip, _) => {
                *skip -= 1;
                Ok(())
            }
        }
    }

    /// Runs `f` on a reader connection inside a read transaction (one snapshot).
    fn read<A>(&self, f: impl FnOnce(&Conn) -> Result<A, StoreError>) -> Result<A, StoreError> {
        self.with_reader(|conn| conn.read(f))
    }

    /// Runs `f`, a read of exactly one statement, on a reader connection: one
    /// snapshot, on PostgreSQL without BEGIN and COMMIT ([`Conn::read_one`]:
    /// one round trip instead of three; a second statement is an error).
    fn read_one<A>(&self, f: impl FnOnce(&Conn) -> Result<A, StoreError>) -> Result<A, StoreError> {
        self.with_reader(|conn| conn.read_one(f))
    }

    /// Runs `f` with a reader connection from the pool (a new one if none is idle).
    fn with_reader<A>(
        &self,
        f: impl FnOnce(&Conn) -> Result<A, StoreError>,
    ) -> Result<A, StoreError> {
        self.injected_fault()?;
        let pooled = self
            .readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let conn = match pooled {
            Some(Conn::Pg(pg)) if pg.is_closed() => self.connect()?,
            Some(c) => c,
            None => self.connect()?,
        };
        let result = f(&conn);
        let mut pool = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
        let keep = match self.engine {
            Engine::Sqlite => IDLE_READERS,
            Engine::Postgres => IDLE_READERS_POSTGRES,
        };
        if pool.len() < keep {
            pool.push(conn);
        }
        result
    }

    /// Runs `f` as one write transaction: committed (on disk) when `f` returns
    /// `Ok`, rolled back when it returns `Err`.
    fn write<A, E: From<StoreError> + From<DbError>>(
        &self,
        f: impl FnOnce(&Conn) -> Result<A, E>,
    ) -> Result<A, E> {
        self.injected_fault()?;
        let conn = self.writer();
        let written = conn.write(f);
        if written.is_ok() {
            mark(|m| m.wrote = true);
        }
        written
    }

    // ----- accounts -------------------------------------------------------------

    pub fn create_account(
        &self,
        new: NewAccount,
        actor: &Actor,
        now: UnixTime,
    ) -> Result<Account, AccountError> {
        self.create_account_keyed(new, None, actor, now)
    }

    /// [`Store::create_account`] with an idempotency key (`pls admin
    /// create-account`): a retry with the same key answers with the account the
    /// first attempt created instead of "email taken".
    pub fn create_account_keyed(
        &self,
        new: NewAccount,
        idempotency_key: Option<&str>,
        actor: &Actor,
        now: UnixTime,
    ) -> Result<Account, AccountError> {
        let email = domain::normalize_email(&new.email);
        if !looks_like_email(&email) {
            return Err(AccountError::InvalidEmail(new.email));
        }
        self.write(|c| {
            if let Some(done) = keyed_reply(c, idempotency_key)? {
                let id = AccountId(done.parse().map_err(|_| StoreError::Corrupt {
                    what: "admin request answer".into(),
                    reason: format!("{done:?} is not an account id"),
                })?);
                return q_account(c, id)?.ok_or(AccountError::UnknownAccount(done));
            }
            let taken: bool = c
                .prepare_cached("SELECT COUNT(*) > 0 FROM accounts WHERE email = ?1")?
                .query_row([&email], |r| r.get(0))?;
            if taken {
                return Err(AccountError::EmailTaken(email.clone()));
            }
            let id = AccountId(next_id(c, "accounts.id")?);
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
            put_account(c, &account)?;
            audit(
                c,
                now,
                actor,
                None,
                Some(id),
                "account.created",
                format!("email {email}"),
            )?;
            record_reply(c, idempotency_key, now, &id.0.to_string())?;
            Ok(account)
        })
    }

    pub fn account(&self, id: AccountId) -> Result<Option<Account>, StoreError> {
        self.read(|c| q_account(c, id))
    }

    pub fn account_by_email(&self, email: &str) -> Result<Option<Account>, StoreError> {
        let email = domain::normalize_email(email);
        self.read(|c| {
            c.prepare_cached("SELECT record FROM accounts WHERE email = ?1")?
                .query_row([email], |r| r.get::<_, Vec<u8>>(0))
                .optional()?
                .map(|t| from_record("account", &t))
                .transpose()
        })
    }

    /// Every account, by id.
    pub fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached("SELECT record FROM accounts ORDER BY id")?;
            let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
            let mut out = vec![];
            for r in rows {
                out.push(from_record("account", &r?)?);
            }
            Ok(out)
        })
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
        self.write(|c| {
            let mut account =
                q_account(c, id)?.ok_or_else(|| AccountError::UnknownAccount(id.to_string()))?;
            let email = account.email.clone();
            change(&mut account);
            account.id = id;
            account.email = email;
            put_account(c, &account)?;
            audit(c, now, actor, None, Some(id), action, String::new())?;
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
        check_new_license(&new)?;
        self.write(|c| create_license_in(c, &new, actor, now))
    }

    /// Creates a license with its first mutation in one transaction: a quote
    /// (the portal's "Get quote"), or with `order` an order (`pls admin
    /// create-license`), activated at once with `paid` or when orders of this
    /// license are activated at once. Killed at any moment, either all of it
    /// exists or none.
    #[allow(clippy::too_many_arguments)]
    pub fn create_license_with(
        &self,
        new: NewLicense,
        first: NewMutation,
        order: bool,
        paid: bool,
        key: &SigningKeyPair,
        actor: &Actor,
        now: UnixTime,
    ) -> Result<(License, Mutation), LicenseError> {
        check_new_license(&new)?;
        self.write(|c| {
            let license = create_license_in(c, &new, actor, now)?;
            let mut m = add_mutation_in(c, &license.number, &first, order, key, actor, now)?;
            if paid && m.state == MutationState::Ordered {
                m = activate_mutation_in(c, &license.number, m.number, key, actor, now)?;
            }
            let license = q_license(c, &license.number)?
                .ok_or_else(|| LicenseError::UnknownLicense(license.number.clone()))?;
            Ok((license, m))
        })
    }

    /// `pls admin create-license`: [`Store::create_license_with`] as an order,
    /// under the sender's idempotency key. A key seen before answers the license
    /// created under it (and its first mutation) instead of creating another;
    /// the key is written in the same transaction as the license, so a retry
    /// after a lost answer never duplicates.
    #[allow(clippy::too_many_arguments)]
    pub fn create_license_keyed(
        &self,
        new: NewLicense,
        first: NewMutation,
        paid: bool,
        idempotency_key: Option<&str>,
        key: &SigningKeyPair,
        actor: &Actor,
        now: UnixTime,
    ) -> Result<(License, Mutation), LicenseError> {
        check_new_license(&new)?;
        self.write(|c| {
            if let Some(number) = keyed_reply(c, idempotency_key)? {
                let number = parse_number(&number)?;
                let license = existing(c, &number)?;
                let m = existing_mutation(c, &number, 1)?;
                return Ok((license, m));
            }
            let license = create_license_in(c, &new, actor, now)?;
            let mut m = add_mutation_in(c, &license.number, &first, true, key, actor, now)?;
            if paid && m.state == MutationState::Ordered {
                m = activate_mutation_in(c, &license.number, m.number, key, actor, now)?;
            }
            record_reply(c, idempotency_key, now, license.number.as_str())?;
            let license = existing(c, &license.number)?;
            Ok((license, m))
        })
    }

    pub fn license(&self, number: &LicenseNumber) -> Result<Option<License>, StoreError> {
        self.read(|c| q_license(c, number))
    }

    /// Every license, by number.
    pub fn licenses(&self) -> Result<Vec<License>, StoreError> {
        self.read(|c| q_licenses(c, "SELECT record FROM licenses ORDER BY number", []))
    }

    /// The engineering licenses, by number: the only ones with an end of
    /// validity (renewal reminders). Reads and decodes no other license, so the
    /// periodic reminder run does not hold every license in memory.
    pub fn engineering_licenses(&self) -> Result<Vec<License>, StoreError> {
        self.read(|c| {
            q_licenses(
                c,
                "SELECT record FROM licenses WHERE license_type = 'engineering' ORDER BY number",
                [],
            )
        })
    }

    /// Licenses in number order: `skip`, then at most `take`. A query on the
    /// number index: a page costs the page, not the list.
    pub fn licenses_page(&self, skip: usize, take: usize) -> Result<Vec<License>, StoreError> {
        self.read(|c| {
            q_licenses(
                c,
                "SELECT record FROM licenses ORDER BY number LIMIT ?1 OFFSET ?2",
                params![int(take as u64), int(skip as u64)],
            )
        })
    }

    /// The admin license search: every license matching `q` ([`search::matches`]:
    /// a field contains it, case-insensitively), in number order. Looks up the
    /// candidates in the FTS5 trigram index and checks each; a query shorter than
    /// three characters looks at every license ([`Store::search_licenses_by_scan`]).
    pub fn search_licenses(&self, q: &str) -> Result<Vec<License>, StoreError> {
        Ok(self
            .search_licenses_with_emails(q)?
            .into_iter()
            .map(|(l, _)| l)
            .collect())
    }

    /// [`Store::search_licenses`], each license with its customer's email (empty
    /// without a customer), as the admin list shows them.
    pub fn search_licenses_with_emails(
        &self,
        q: &str,
    ) -> Result<Vec<(License, String)>, StoreError> {
        let q = search::normalize(q);
        if q.chars().count() < search::GRAM {
            return self.search_by_scan(&q);
        }
        self.read_one(|c| {
            let mut out = vec![];
            for (record, email) in engine_of(c).search_candidates(c, &q)? {
                let l: License = from_record("license", &record)?;
                if search::matches(&l, &email, &q) {
                    out.push((l, email));
                }
            }
            Ok(out)
        })
    }

    /// One page of the admin license list in number order, each license with its
    /// customer's email: one indexed query, whatever the number of licenses.
    pub fn licenses_page_with_emails(
        &self,
        skip: usize,
        take: usize,
    ) -> Result<Vec<(License, String)>, StoreError> {
        self.read(|c| q_licenses_page_with_emails(c, skip, take))
    }

    /// The admin license list's page `page` (1-based, clamped to the last page)
    /// of `size` licenses, with the number of licenses and the page shown: the
    /// count and the page in one statement (one snapshot, one round trip); a
    /// page past the end reads again, clamped to the last page that count gives.
    pub fn license_list_page(
        &self,
        page: usize,
        size: usize,
    ) -> Result<LicenseListPage, StoreError> {
        let size = size.max(1);
        let mut page = page.max(1);
        loop {
            let (total, rows) = self.read_one(|c| {
                // One row even when the page is empty: the count, and no record.
                let mut stmt = c.prepare_cached(
                    "SELECT n.total, p.record, p.email
                     FROM (SELECT COUNT(*) AS total FROM licenses) n
                     LEFT JOIN (SELECT l.number, l.record, COALESCE(a.email, '') AS email
                                FROM licenses l LEFT JOIN accounts a ON a.id = l.account_id
                                ORDER BY l.number LIMIT ?1 OFFSET ?2) p ON 1 = 1
                     ORDER BY p.number",
                )?;
                let found = stmt.query_map(
                    params![int(size as u64), int(((page - 1) * size) as u64)],
                    |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, Option<Vec<u8>>>(1)?,
                            r.get::<_, Option<String>>(2)?,
                        ))
                    },
                )?;
                let mut total = 0;
                let mut rows = vec![];
                for row in found {
                    let (n, record, email) = row?;
                    total = uint(n) as usize;
                    if let Some(record) = record {
                        let license: License = from_record("license", &record)?;
                        rows.push((license, email.unwrap_or_default()));
                    }
                }
                Ok((total, rows))
            })?;
            let last = total.div_ceil(size).max(1);
            if !rows.is_empty() || page <= last {
                return Ok(LicenseListPage { total, page, rows });
            }
            page = last;
        }
    }

    /// The admin license search without the index: decodes every license and
    /// checks it. The definition [`Store::search_licenses`] is tested against, and
    /// its answer to queries shorter than three characters.
    pub fn search_licenses_by_scan(&self, q: &str) -> Result<Vec<License>, StoreError> {
        Ok(self
            .search_by_scan(&search::normalize(q))?
            .into_iter()
            .map(|(l, _)| l)
            .collect())
    }

    fn search_by_scan(&self, q: &str) -> Result<Vec<(License, String)>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT l.record, COALESCE(a.email, '') FROM licenses l
                 LEFT JOIN accounts a ON a.id = l.account_id ORDER BY l.number",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, String>(1)?))
            })?;
            let mut out = vec![];
            for r in rows {
                let (record, email) = r?;
                let l: License = from_record("license", &record)?;
                if search::matches(&l, &email, q) {
                    out.push((l, email));
                }
            }
            Ok(out)
        })
    }

    /// Licenses whose record as JSON contains `needle`, compared
    /// case-insensitively. The schema-1 search's pre-filter, kept as a reference
    /// the search is tested against; it misses matches whose text JSON escapes
    /// (`"`, `\`).
    pub fn licenses_containing(&self, needle: &str) -> Result<Vec<License>, StoreError> {
        let needle = needle.to_lowercase();
        self.read(|c| {
            let mut stmt = c.prepare_cached("SELECT record FROM licenses ORDER BY number")?;
            let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
            let mut out = vec![];
            for r in rows {
                let l: License = from_record("license", &r?)?;
                if to_json(&l).to_lowercase().contains(&needle) {
                    out.push(l);
                }
            }
            Ok(out)
        })
    }

    pub fn license_count(&self) -> Result<usize, StoreError> {
        self.read(|c| {
            let n: i64 = c.query_row("SELECT COUNT(*) FROM licenses", [], |r| r.get(0))?;
            Ok(uint(n) as usize)
        })
    }

    pub fn account_count(&self) -> Result<usize, StoreError> {
        self.read(|c| {
            let n: i64 = c.query_row("SELECT COUNT(*) FROM accounts", [], |r| r.get(0))?;
            Ok(uint(n) as usize)
        })
    }

    /// The database's size on disk in bytes: the file and its write-ahead log
    /// (SQLite), or the database's size (PostgreSQL, `pg_database_size`).
    pub fn size_on_disk(&self) -> u64 {
        let path = match &self.location {
            Location::File(p) => p,
            Location::Url(_) => {
                return self
                    .read(|c| {
                        Ok(
                            c.query_row("SELECT pg_database_size(current_database())", [], |r| {
                                r.get::<_, i64>(0)
                            })?,
                        )
                    })
                    .map_or(0, uint);
            }
        };
        let wal = {
            let mut p = path.as_os_str().to_owned();
            p.push("-wal");
            PathBuf::from(p)
        };
        [path.as_path(), wal.as_path()]
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }

    /// A customer's licenses, by number.
    pub fn licenses_of_account(&self, id: AccountId) -> Result<Vec<License>, StoreError> {
        self.read(|c| {
            q_licenses(
                c,
                "SELECT record FROM licenses WHERE account_id = ?1 ORDER BY number",
                [int(id.0)],
            )
        })
    }

    /// A page of a customer's licenses (on the `licenses_by_account` index).
    pub fn licenses_of_account_page(
        &self,
        id: AccountId,
        skip: usize,
        take: usize,
    ) -> Result<Vec<License>, StoreError> {
        self.read(|c| {
            q_licenses(
                c,
                "SELECT record FROM licenses WHERE account_id = ?1 ORDER BY number LIMIT ?2 OFFSET ?3",
                params![int(id.0), int(take as u64), int(skip as u64)],
            )
        })
    }

    /// The customer's license list ("Meine Lizenzen"): page `page` (1-based,
    /// clamped to the last page) of `size` licenses that have something ordered
    /// (a license whose mutations are all quotes exists only for its number), in
    /// number order, each with whether ProMoS last reported running on its bound
    /// host, and how many there are. One read transaction on the
    /// `licenses_listed_by_account` index; only the page's records are decoded.
    pub fn customer_license_page(
        &self,
        id: AccountId,
        page: usize,
        size: usize,
    ) -> Result<CustomerLicensePage, StoreError> {
        // `listed` is kept by `put_mutation`: the partial index
        // `licenses_listed_by_account` holds exactly these rows.
        const ORDERED: &str = "l.account_id = ?1 AND l.listed";
        self.read(|c| {
            let n: i64 = c.query_row(
                &format!("SELECT COUNT(*) FROM licenses l WHERE {ORDERED}"),
                [int(id.0)],
                |r| r.get(0),
            )?;
            let total = uint(n) as usize;
            let page = page.clamp(1, total.div_ceil(size.max(1)).max(1));
            let licenses = q_licenses(
                c,
                &format!(
                    "SELECT l.record FROM licenses l WHERE {ORDERED}
                     ORDER BY l.number LIMIT ?2 OFFSET ?3"
                ),
                params![int(id.0), int(size as u64), int(((page - 1) * size) as u64)],
            )?;
            let mut rows = Vec::with_capacity(licenses.len());
            for l in licenses {
                let running = runtime_running_in(c, &l)?;
                rows.push((l, running));
            }
            Ok(CustomerLicensePage { total, page, rows })
        })
    }

    /// The customer's quote list ("Meine Angebote"): the quotes and orders of
    /// the customer's licenses that `filter` keeps (never renewals, which are
    /// not quoted, nor deleted quotes), newest first, each with its license.
    /// With `page` = `Some((page, size))` one page of them (clamped to the last)
    /// and the total, in one read transaction, decoding only the page's
    /// records; with `None` all of them (the list's text search, which matches
    /// on the rendered row, filters them).
    pub fn customer_quote_page(
        &self,
        id: AccountId,
        filter: QuoteFilter,
        now: UnixTime,
        page: Option<(usize, usize)>,
    ) -> Result<CustomerQuotePage, StoreError> {
        // Every column this reads is in the index `mutations_by_account`: the
        // count reads the index only, the page walks it newest first.
        const KEPT: &str = "m.account_id = ?1 AND m.kind <> 'renewal' AND m.state <> 'deleted'
             AND ((?3 = 'all')
               OR (?3 = 'open' AND m.state = 'quote' AND m.quote_valid_until >= ?2)
               OR (?3 = 'expired' AND (m.state = 'expired'
                   OR (m.state = 'quote' AND m.quote_valid_until < ?2)))
               OR (?3 = 'ordered' AND m.state IN ('ordered', 'activated'))
               OR (?3 = 'new' AND m.kind = 'new')
               OR (?3 = 'upgrade' AND m.kind <> 'new'))";
        self.read(|c| {
            let base = params![int(id.0), int(now.0), filter.key()];
            let (total, page, skip, take) = match page {
                Some((page, size)) => {
                    let n: i64 = c.query_row(
                        &format!("SELECT COUNT(*) FROM mutations m WHERE {KEPT}"),
                        base,
                        |r| r.get(0),
                    )?;
                    let total = uint(n) as usize;
                    let page = page.clamp(1, total.div_ceil(size.max(1)).max(1));
                    (Some(total), page, (page - 1) * size, size)
                }
                None => (None, 1, 0, usize::MAX),
            };
            let mut stmt = c.prepare_cached(&format!(
                "SELECT l.record, m.record FROM mutations m
                 JOIN licenses l ON l.number = m.license_number WHERE {KEPT}
                 ORDER BY m.account_id, m.created_at DESC, m.license_number, m.number
                 LIMIT ?4 OFFSET ?5"
            ))?;
            let found = stmt.query_map(
                params![
                    int(id.0),
                    int(now.0),
                    filter.key(),
                    int(take as u64),
                    int(skip as u64)
                ],
                |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?)),
            )?;
            let mut rows = vec![];
            for r in found {
                let (license, mutation) = r?;
                rows.push((
                    from_record("license", &license)?,
                    from_record("mutation", &mutation)?,
                ));
            }
            Ok(CustomerQuotePage {
                total: total.unwrap_or(rows.len()),
                page,
                rows,
            })
        })
    }

    pub fn mutations(&self, number: &LicenseNumber) -> Result<Vec<Mutation>, StoreError> {
        self.read(|c| q_mutations(c, number))
    }

    pub fn mutation(&self, number: &LicenseNumber, n: u32) -> Result<Option<Mutation>, StoreError> {
        self.read(|c| q_mutation(c, number, n))
    }

    /// Every mutation in `state`, across all licenses (the admin's open orders),
    /// by license and number.
    pub fn mutations_in_state(&self, state: MutationState) -> Result<Vec<Mutation>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT record FROM mutations WHERE state = ?1 ORDER BY license_number, number",
            )?;
            let rows = stmt.query_map([state.key()], |r| r.get::<_, Vec<u8>>(0))?;
            let mut out = vec![];
            for r in rows {
                out.push(from_record("mutation", &r?)?);
            }
            Ok(out)
        })
    }

    /// Whether ProMoS on the bound host last reported running.
    pub fn runtime_running(&self, license: &License) -> Result<bool, StoreError> {
        self.read(|c| runtime_running_in(c, license))
    }

    /// Adds a mutation as a quote or directly as an order. An order of a trusted
    /// customer's license (or of an engineering license) is activated at once, as
    /// the manual describes. The rules are checked inside the transaction.
    pub fn add_mutation(
        &self,
        number: &LicenseNumber,
        new: NewMutation,
        order: bool,
        key: &SigningKeyPair,
        actor: &Actor,
        now: UnixTime,
    ) -> Result<Mutation, LicenseError> {
        self.write(|c| add_mutation_in(c, number, &new, order, key, actor, now))
    }

    /// An order the vendor enters (`pls admin upgrade`): the mutation, ordered,
    /// and with `paid` activated, in one transaction. A retry with the same
    /// idempotency key answers with the mutation of the first attempt instead of
    /// adding a second one.
    #[allow(clippy::too_many_arguments)]
    pub fn order_keyed(
        &self,
        number: &LicenseNumber,
        new: NewMutation,
        paid: bool,
        idempotency_key: Option<&str>,
        key: &SigningKeyPair,
        actor: &Actor,
        now: UnixTime,
    ) -> Result<Mutation, LicenseError> {
        self.write(|c| {
            if let Some(done) = keyed_reply(c, idempotency_key)? {
                let n: u32 = done.parse().map_err(|_| StoreError::Corrupt {
                    what: "admin request answer".into(),
                    reason: format!("{done:?} is not a mutation number"),
                })?;
                return existing_mutation(c, number, n);
            }
            let mut m = add_mutation_in(c, number, &new, true, key, actor, now)?;
            if paid && m.state == MutationState::Ordered {
                m = activate_mutation_in(c, number, m.number, key, actor, now)?;
            }
            record_reply(c, idempotency_key, now, &m.number.to_string())?;
            Ok(m)
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
        self.write(|c| {
            let trusted = orders_activate_at_once(c, number)?;
            let mut license = existing(c, number)?;
            let mut m = existing_mutation(c, number, n)?;
            if m.state == MutationState::Quote && now > m.quote_valid_until {
                return Err(LicenseError::QuoteExpired(m.id()));
            }
            step(&mut m, MutationState::Ordered)?;
            m.ordered_at = Some(now);
            audit(
                c,
                now,
                actor,
                Some(number),
                license.account,
                "mutation.ordered",
                m.id(),
            )?;
            if trusted {
                activate_in(c, &mut license, &mut m, key, actor, now)?;
            }
            put_mutation(c, &m)?;
            put_license(c, &license)?;
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
        self.write(|c| activate_mutation_in(c, number, n, key, actor, now))
    }

    /// Deletes a quote or an unpaid order.
    pub fn delete_mutation(
        &self,
        number: &LicenseNumber,
        n: u32,
        actor: &Actor,
        now: UnixTime,
    ) -> Result<Mutation, LicenseError> {
        self.write(|c| {
            let license = existing(c, number)?;
            let mut m = existing_mutation(c, number, n)?;
            step(&mut m, MutationState::Deleted)?;
            put_mutation(c, &m)?;
            audit(
                c,
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

    /// Marks every quote past its validity as expired, each in its own
    /// transaction. Returns how many.
    pub fn expire_quotes(&self, now: UnixTime) -> Result<usize, LicenseError> {
        let due: Vec<(String, i64)> = self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT license_number, number FROM mutations
                 WHERE state = 'quote' AND quote_valid_until < ?1",
            )?;
            let rows = stmt.query_map([int(now.0)], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<Vec<_>>>()?)
        })?;
        let mut expired = 0;
        for (number, n) in &due {
            let number = parse_number(number)?;
            let n = u32::try_from(*n).unwrap_or(u32::MAX);
            expired += self.write(|c| {
                let license = existing(c, &number)?;
                let mut m = existing_mutation(c, &number, n)?;
                if m.state != MutationState::Quote || now <= m.quote_valid_until {
                    return Ok::<_, LicenseError>(0);
                }
                step(&mut m, MutationState::Expired)?;
                put_mutation(c, &m)?;
                audit(
                    c,
                    now,
                    &Actor::System,
                    Some(&number),
                    license.account,
                    "mutation.expired",
                    m.id(),
                )?;
                Ok(1)
            })?;
        }
        Ok(expired)
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
        self.write(|c| {
            let mut license = existing(c, number)?;
            license.license_data = data.clone();
            issue_grant_in(c, &mut license, key, now)?;
            put_license(c, &license)?;
            audit(
                c,
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
        self.write(|c| {
            let mut license = existing(c, number)?;
            if license.protection != Protection::HardDongle {
                return Err(LicenseError::NotHardDongle(number.clone()));
            }
            license.dongle_serial = Some(serial.clone());
            license.binding = Some(Binding::DongleSerial(serial.clone()));
            issue_grant_in(c, &mut license, key, now)?;
            put_license(c, &license)?;
            audit(
                c,
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
        self.write(|c| {
            let mut license = existing(c, number)?;
            let old = domain::reset_binding(&mut license)?;
            put_license(c, &license)?;
            audit(
                c,
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
        self.read(|c| q_grants(c, number))
    }

    /// The grant the bound host (or the dongle's license file) should hold.
    pub fn current_grant(
        &self,
        license: &License,
    ) -> Result<Option<Signed<LicenseGrant>>, StoreError> {
        match license.current_grant {
            Some(s) => self.read(|c| q_grant(c, &license.number, s)),
            None => Ok(None),
        }
    }

    // ----- daemons ----------------------------------------------------------------

    /// A daemon activates its host. Binding and the grant are written in one
    /// transaction, on disk before the grant is returned, so a grant that left
    /// the server is never forgotten by it.
    pub fn activate_host(
        &self,
        req: &HostActivation<'_>,
        key: &SigningKeyPair,
        now: UnixTime,
    ) -> Result<Result<Signed<LicenseGrant>, RefusalReason>, StoreError> {
        self.activate_host_as(req, ActivationAuthority::Token(req.token), key, now)
    }

    /// An activation authorised by `authority`: the token of a network
    /// activation, or (activation by file) the license's owner in the portal
    /// or the vendor. An owner who does not own the license gets
    /// `UnknownLicense`, as anyone asking for a license that is not theirs.
    pub fn activate_host_as(
        &self,
        req: &HostActivation<'_>,
        authority: ActivationAuthority<'_>,
        key: &SigningKeyPair,
        now: UnixTime,
    ) -> Result<Result<Signed<LicenseGrant>, RefusalReason>, StoreError> {
        let decide = |license: &License| match authority {
            ActivationAuthority::Token(t) => {
                domain::decide_activation(license, t, req.hardware_id, now)
            }
            ActivationAuthority::Owner(account) if license.account != Some(account) => {
                ActivationDecision::Refuse(RefusalReason::UnknownLicense)
            }
            ActivationAuthority::Owner(_) | ActivationAuthority::Vendor => {
                domain::decide_authorised_activation(license, req.hardware_id, now)
            }
        };
        // The common cases (refusal, already bound) need no write.
        let Some(license) = self.license(req.license)? else {
            return Ok(Err(RefusalReason::UnknownLicense));
        };
        let decision = decide(&license);
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
        self.write(|c| {
            let Some(mut license) = q_license(c, req.license)? else {
                return Ok(Err(RefusalReason::UnknownLicense));
            };
            // Decide again inside the transaction: another activation may have won.
            match decide(&license) {
                ActivationDecision::Refuse(reason) => return Ok(Err(reason)),
                ActivationDecision::Bind => {
                    domain::bind(&mut license, req.hardware_id);
                    audit(
                        c,
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
                        if let Some(g) = q_grant(c, req.license, s)? {
                            return Ok(Ok(g));
                        }
                    }
                }
            }
            match issue_grant_in(c, &mut license, key, now)? {
                Some(g) => {
                    put_license(c, &license)?;
                    Ok(Ok(g))
                }
                None => Ok(Err(RefusalReason::NotYetActivated)),
            }
        })
    }

    /// A daemon's daily check: the decision, the newer grant if any, and the
    /// check-in record (last seen, running, seats, version, from where), on disk
    /// before the answer goes out.
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
                    Some(s) => self.read(|c| q_grant(c, req.license, s))?,
                    None => None,
                };
                let recorded = self.record_check_in(CheckIn {
                    license: req.license.clone(),
                    hardware_id: req.hardware_id.clone(),
                    at: now,
                    running: req.running,
                    ge_seats: req.ge_seats,
                    pwa_seats: req.pwa_seats,
                    daemon_version: req.daemon_version.to_owned(),
                    from: req.from.clone(),
                });
                match recorded {
                    // A full disk costs the "last seen" of this check, not the
                    // check: the answer is a read and changes nothing stored.
                    Err(StoreError::Full) => {
                        tracing::warn!(license = %req.license, "check-in not recorded: the disk is full")
                    }
                    other => other?,
                }
                Ok(Ok(CheckOutcome {
                    current_serial: license.serial,
                    newer_grant,
                }))
            }
        }
    }

    /// The hardware facts the store keeps for the license's host, and its
    /// last rebind (issue 19); `None` before a daemon that sends facts
    /// activated or checked.
    pub fn host_facts(&self, number: &LicenseNumber) -> Result<Option<BoundHost>, StoreError> {
        self.read(|c| q_host_facts(c, number))
    }

    /// Keeps the hardware facts the bound host sent (activation, check): a
    /// write only when they are new or changed, and only for the bound host.
    /// A host bound anew starts without a rebind record.
    pub fn record_host_facts(
        &self,
        number: &LicenseNumber,
        host: &HardwareId,
        facts: &wire::HardwareFacts,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        if facts.is_empty() {
            return Ok(());
        }
        let known = self.read(|c| q_host_facts(c, number))?;
        if known
            .as_ref()
            .is_some_and(|b| &b.hardware_id == host && &b.facts == facts)
        {
            return Ok(());
        }
        self.write(|c| {
            let Some(license) = q_license(c, number)? else {
                return Ok(());
            };
            if license.binding != Some(Binding::HardwareId(host.clone())) {
                return Ok(());
            }
            let same_host = q_host_facts(c, number)?.filter(|b| &b.hardware_id == host);
            let row = BoundHost {
                hardware_id: host.clone(),
                facts: facts.clone(),
                rebound: same_host.as_ref().and_then(|b| b.rebound.clone()),
                clone_refused_at: same_host.and_then(|b| b.clone_refused_at),
            };
            put_host_facts(c, number, &row, now)
        })
    }

    /// A check from `req.hardware_id`, not the bound host, that carries its
    /// hardware facts ([`crate::hardware`]): the binding moves there if it is
    /// the bound computer with at most `tolerance` facts changed (a new grant
    /// for the new ID, an audit entry `binding.hardware_changed`); a clone is
    /// refused as [`RefusalReason::ClonedHost`] (audit `binding.clone_refused`);
    /// anything else stays [`RefusalReason::BoundToAnotherHost`], with no write.
    /// The customer's email about the move (`mail`) is queued in the same
    /// transaction: a crash cannot keep the move and lose the email.
    pub fn rebind_changed_host(
        &self,
        req: &HostCheck<'_>,
        facts: &wire::HardwareFacts,
        tolerance: u32,
        key: &SigningKeyPair,
        mail: RebindMail<'_>,
        now: UnixTime,
    ) -> Result<Result<Rebound, RefusalReason>, StoreError> {
        let decide =
            |c: &Conn| -> Result<Option<(License, BoundHost, HardwareChange)>, StoreError> {
                let Some(license) = q_license(c, req.license)? else {
                    return Ok(None);
                };
                let bound = match &license.binding {
                    Some(Binding::HardwareId(h)) if h != req.hardware_id => h.clone(),
                    _ => return Ok(None),
                };
                // Only a license the moved host could use moves: not a hard
                // dongle's, not one awaiting payment or expired.
                if license.protection == Protection::HardDongle
                    || !domain::is_active(&license)
                    || license.valid_until.is_some_and(|end| now >= end)
                {
                    return Ok(None);
                }
                let Some(known) = q_host_facts(c, req.license)?.filter(|b| b.hardware_id == bound)
                else {
                    return Ok(None);
                };
                let change = hardware::decide(&known, req.hardware_id, facts, tolerance, now);
                Ok(Some((license, known, change)))
            };
        // The common case (another computer) needs no write.
        match self.read(decide)? {
            None | Some((_, _, HardwareChange::AnotherHost)) => {
                return Ok(Err(RefusalReason::BoundToAnotherHost))
            }
            Some(_) => {}
        }
        let actor = Actor::Daemon {
            hardware_id: req.hardware_id.clone(),
            from: req.from.clone(),
        };
        self.write(|c| {
            // Decide again inside the transaction: another check may have won.
            let Some((mut license, known, change)) = decide(c)? else {
                return Ok(Err(RefusalReason::BoundToAnotherHost));
            };
            match change {
                HardwareChange::AnotherHost => Ok(Err(RefusalReason::BoundToAnotherHost)),
                HardwareChange::Cloned {
                    rebound_at,
                    from,
                    to,
                } => {
                    audit(
                        c,
                        now,
                        &actor,
                        Some(req.license),
                        license.account,
                        "binding.clone_refused",
                        format!(
                            "host {} refused as a cloned host: the binding moved from host {from} to host {to} at {rebound_at}, less than {} days before (or a clone was refused since); bound host {to}",
                            req.hardware_id,
                            hardware::CLONE_WINDOW_DAYS
                        ),
                    )?;
                    let row = BoundHost {
                        clone_refused_at: Some(now),
                        ..known
                    };
                    put_host_facts(c, req.license, &row, now)?;
                    Ok(Err(RefusalReason::ClonedHost))
                }
                HardwareChange::Rebind { changes } => {
                    let from = known.hardware_id.clone();
                    domain::bind(&mut license, req.hardware_id);
                    audit(
                        c,
                        now,
                        &actor,
                        Some(req.license),
                        license.account,
                        "binding.hardware_changed",
                        format!(
                            "moved from host {from} to host {}: {changes} of the hardware facts changed (tolerance {tolerance}; daemon {})",
                            req.hardware_id, req.daemon_version
                        ),
                    )?;
                    let row = BoundHost {
                        hardware_id: req.hardware_id.clone(),
                        facts: facts.clone(),
                        rebound: Some((now, from.clone())),
                        clone_refused_at: None,
                    };
                    put_host_facts(c, req.license, &row, now)?;
                    issue_grant_in(c, &mut license, key, now)?;
                    put_license(c, &license)?;
                    let rebound = Rebound {
                        from,
                        changes,
                        license,
                    };
                    // Last, so that a failure here rolls the whole move back.
                    match mail(&rebound, now) {
                        Ok(Some(job)) => {
                            q_enqueue_mail(c, now, job)?;
                        }
                        Ok(None) => {}
                        Err(e) => {
                            return Err(StoreError::Failed(format!(
                                "the \"hardware changed\" email of license {} could not be composed ({e}); the binding was not moved",
                                req.license
                            )))
                        }
                    }
                    Ok(Ok(rebound))
                }
            }
        })
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
        self.write(|c| {
            let Some(mut license) = q_license(c, license_number)? else {
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
            put_license(c, &license)?;
            audit(
                c,
                now,
                &actor,
                Some(license_number),
                license.account,
                "binding.deactivated",
                format!("host {host}"),
            )?;
            Ok(Ok(license.serial))
        })
    }

    /// Records a check-in durably before the check is answered. Concurrent
    /// check-ins share one commit (group commit): each caller queues its
    /// check-in and takes the writer; the first to get it writes every queued
    /// check-in in one transaction, and the others find theirs done. So a busy
    /// server pays one disk flush for many checks instead of one each, and no
    /// check is answered before its check-in is on disk.
    fn record_check_in(&self, ci: CheckIn) -> Result<(), StoreError> {
        self.injected_fault()?;
        let (done_tx, done_rx) = std::sync::mpsc::sync_channel(1);
        self.checkins
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(PendingCheckIn { ci, done: done_tx });
        let conn = self.writer();
        if let Ok(result) = done_rx.try_recv() {
            return result.into_result();
        }
        let batch =
            std::mem::take(&mut *self.checkins.lock().unwrap_or_else(PoisonError::into_inner));
        let all = conn.write(|c| {
            for p in &batch {
                write_check_in(c, &p.ci)?;
            }
            Ok::<_, StoreError>(())
        });
        match all {
            Ok(()) => {
                for p in &batch {
                    let _ = p.done.send(CheckInResult::Done);
                }
            }
            Err(StoreError::Full) => {
                for p in &batch {
                    let _ = p.done.send(CheckInResult::Full);
                }
            }
            // One bad check-in must not fail the others: each on its own.
            Err(_) => {
                for p in &batch {
                    let r = conn.write(|c| write_check_in(c, &p.ci));
                    let _ = p.done.send(match r {
                        Ok(()) => CheckInResult::Done,
                        Err(StoreError::Full) => CheckInResult::Full,
                        Err(e) => CheckInResult::Failed(e.to_string()),
                    });
                }
            }
        }
        drop(conn);
        done_rx
            .recv()
            .unwrap_or(CheckInResult::Failed("the check-in was not written".into()))
            .into_result()
    }

    pub fn last_check_in(&self, number: &LicenseNumber) -> Result<Option<CheckIn>, StoreError> {
        self.read(|c| q_last_checkin(c, number))
    }

    /// Check-ins that changed something (state, host, version, address), oldest first.
    pub fn check_in_history(&self, number: &LicenseNumber) -> Result<Vec<CheckIn>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {CHECKIN_COLUMNS} FROM checkin_history WHERE license_number = ?1 ORDER BY seq"
            ))?;
            let rows = stmt.query_map([number.as_str()], checkin_row)?;
            let mut out = vec![];
            for r in rows {
                out.push(decode_checkin(r?)?);
            }
            Ok(out)
        })
    }

    // ----- audit ----------------------------------------------------------------

    /// The audit trail, newest last: of one license, or of everything. `limit`
    /// keeps the newest entries.
    pub fn audit(
        &self,
        license: Option<&LicenseNumber>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        const COLUMNS: &str = "seq, at, actor, license_number, account_id, action, detail";
        self.read(|c| {
            let limit = int(limit as u64);
            let rows = match license {
                Some(n) => {
                    let mut stmt = c.prepare_cached(&format!(
                        "SELECT {COLUMNS} FROM audit WHERE license_number = ?1 ORDER BY seq DESC LIMIT ?2"
                    ))?;
                    let rows = stmt.query_map(params![n.as_str(), limit], audit_row)?;
                    rows.collect::<Result<Vec<_>>>()?
                }
                None => {
                    let mut stmt = c.prepare_cached(&format!(
                        "SELECT {COLUMNS} FROM audit ORDER BY seq DESC LIMIT ?1"
                    ))?;
                    let rows = stmt.query_map([limit], audit_row)?;
                    rows.collect::<Result<Vec<_>>>()?
                }
            };
            let mut out = rows
                .into_iter()
                .map(decode_audit)
                .collect::<Result<Vec<_>, _>>()?;
            out.reverse();
            Ok(out)
        })
    }

    // ----- the portal's own rows ------------------------------------------------

    /// A server secret of 32 bytes under `name`, created on first use.
    pub fn web_secret(&self, name: &str) -> Result<[u8; 32], StoreError> {
        self.write(|c| {
            let found: Option<String> = c
                .prepare_cached("SELECT value FROM web_meta WHERE name = ?1")?
                .query_row([name], |r| r.get(0))
                .optional()?;
            if let Some(v) = found {
                let mut s = [0u8; 32];
                if hex::decode_to_slice(&v, &mut s).is_ok() {
                    return Ok(s);
                }
                tracing::error!(name, "a stored server secret is damaged; making a new one");
            }
            let s: [u8; 32] = rand::random();
            c.execute(
                "INSERT INTO web_meta (name, value) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                params![name, hex::encode(s)],
            )?;
            Ok(s)
        })
    }

    pub fn insert_session(&self, id_hash: &str, s: &SessionRow) -> Result<(), StoreError> {
        self.write(|c| {
            c.prepare_cached(
                "INSERT INTO sessions (id_hash, account_id, created_at, expires_at, persistent)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                id_hash,
                int(s.account.0),
                int(s.created.0),
                int(s.expires.0),
                s.persistent
            ])?;
            Ok(())
        })
    }

    pub fn session(&self, id_hash: &str) -> Result<Option<SessionRow>, StoreError> {
        self.read(|c| q_session(c, id_hash))
    }

    /// A session with its account and the account's language preference, read
    /// in one statement: what every request of a logged-in visitor reads first.
    pub fn session_with_account(
        &self,
        id_hash: &str,
    ) -> Result<Option<SessionWithAccount>, StoreError> {
        self.read_one(|c| {
            let row = c
                .prepare_cached(
                    "SELECT s.account_id, s.created_at, s.expires_at, s.persistent, a.record, p.lang
                     FROM sessions s
                     LEFT JOIN accounts a ON a.id = s.account_id
                     LEFT JOIN prefs p ON p.account_id = a.id
                     WHERE s.id_hash = ?1",
                )?
                .query_row([id_hash], |r| {
                    let session = SessionRow {
                        account: AccountId(uint(r.get(0)?)),
                        created: UnixTime(uint(r.get(1)?)),
                        expires: UnixTime(uint(r.get(2)?)),
                        persistent: r.get(3)?,
                    };
                    Ok((session, r.get::<_, Option<Vec<u8>>>(4)?, r.get(5)?))
                })
                .optional()?;
            let Some((session, account, lang)) = row else {
                return Ok(None);
            };
            let account = account.map(|t| from_record("account", &t)).transpose()?;
            Ok(Some(SessionWithAccount {
                session,
                account,
                lang,
            }))
        })
    }

    pub fn remove_session(&self, id_hash: &str) -> Result<(), StoreError> {
        self.write(|c| {
            c.execute("DELETE FROM sessions WHERE id_hash = ?1", [id_hash])?;
            Ok(())
        })
    }

    /// Ends every session of an account; returns how many there were.
    pub fn remove_sessions_of(&self, account: AccountId) -> Result<usize, StoreError> {
        self.write(|c| {
            Ok(c.execute(
                "DELETE FROM sessions WHERE account_id = ?1",
                [int(account.0)],
            )?)
        })
    }

    pub fn insert_email_token(
        &self,
        token_hash: &str,
        t: &EmailTokenRow,
    ) -> Result<(), StoreError> {
        self.write(|c| {
            c.prepare_cached(
                "INSERT INTO email_tokens (token_hash, purpose, account_id, expires_at, used)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                token_hash,
                t.purpose,
                int(t.account.0),
                int(t.expires.0),
                t.used
            ])?;
            Ok(())
        })
    }

    pub fn email_token(&self, token_hash: &str) -> Result<Option<EmailTokenRow>, StoreError> {
        self.read(|c| {
            Ok(c.prepare_cached(
                "SELECT purpose, account_id, expires_at, used FROM email_tokens WHERE token_hash = ?1",
            )?
            .query_row([token_hash], |r| {
                Ok(EmailTokenRow {
                    purpose: r.get(0)?,
                    account: AccountId(uint(r.get(1)?)),
                    expires: UnixTime(uint(r.get(2)?)),
                    used: r.get(3)?,
                })
            })
            .optional()?)
        })
    }

    /// Uses an emailed token up if it is live and for `purpose`: exactly one
    /// caller gets its account, even under concurrent requests.
    pub fn consume_email_token(
        &self,
        token_hash: &str,
        purpose: &str,
        now: UnixTime,
    ) -> Result<Option<AccountId>, StoreError> {
        self.write(|c| {
            let account: Option<i64> = c
                .prepare_cached(
                    "SELECT account_id FROM email_tokens
                     WHERE token_hash = ?1 AND purpose = ?2 AND NOT used AND expires_at > ?3",
                )?
                .query_row(params![token_hash, purpose, int(now.0)], |r| r.get(0))
                .optional()?;
            if account.is_some() {
                c.execute(
                    "UPDATE email_tokens SET used = TRUE WHERE token_hash = ?1",
                    [token_hash],
                )?;
            }
            Ok(account.map(|a| AccountId(uint(a))))
        })
    }

    /// Marks every unused token of `purpose` for `account` as used (a changed
    /// password ends every reset link sent before). Returns how many were ended.
    pub fn revoke_email_tokens(
        &self,
        purpose: &str,
        account: AccountId,
    ) -> Result<usize, StoreError> {
        self.write(|c| {
            Ok(c.prepare_cached(
                "UPDATE email_tokens SET used = TRUE
                 WHERE purpose = ?1 AND account_id = ?2 AND NOT used",
            )?
            .execute(params![purpose, int(account.0)])?)
        })
    }

    pub fn lang_pref(&self, account: AccountId) -> Result<Option<String>, StoreError> {
        self.read(|c| {
            Ok(
                c.prepare_cached("SELECT lang FROM prefs WHERE account_id = ?1")?
                    .query_row([int(account.0)], |r| r.get(0))
                    .optional()?,
            )
        })
    }

    pub fn set_lang_pref(&self, account: AccountId, lang: &str) -> Result<(), StoreError> {
        self.write(|c| {
            c.execute(
                "INSERT INTO prefs (account_id, lang) VALUES (?1, ?2)
                 ON CONFLICT (account_id) DO UPDATE SET lang = excluded.lang",
                params![int(account.0), lang],
            )?;
            Ok(())
        })
    }

    pub fn reminder_sent(&self, key: &str) -> Result<bool, StoreError> {
        self.read(|c| {
            Ok(
                c.prepare_cached("SELECT COUNT(*) > 0 FROM reminders WHERE key = ?1")?
                    .query_row([key], |r| r.get(0))?,
            )
        })
    }

    pub fn mark_reminder_sent(&self, key: &str) -> Result<(), StoreError> {
        self.write(|c| {
            c.execute(
                "INSERT INTO reminders (key) VALUES (?1) ON CONFLICT (key) DO NOTHING",
                [key],
            )?;
            Ok(())
        })
    }

    // ----- login throttling (`web::throttle`) ------------------------------------

    /// For each of `keys`: the failed logins since `since` and the oldest of them.
    pub fn login_failures(
        &self,
        keys: &[&str],
        since: UnixTime,
    ) -> Result<Vec<(usize, Option<UnixTime>)>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT COUNT(*), MIN(at) FROM login_failures WHERE key = ?1 AND at > ?2",
            )?;
            let mut out = Vec::with_capacity(keys.len());
            for key in keys {
                out.push(stmt.query_row(params![*key, int(since.0)], |r| {
                    let n: i64 = r.get(0)?;
                    let oldest: Option<i64> = r.get(1)?;
                    Ok((uint(n) as usize, oldest.map(|t| UnixTime(uint(t)))))
                })?);
            }
            Ok(out)
        })
    }

    /// Records a failed login under each of `keys`; forgets failures at or
    /// before `forget_before` (out of every window).
    pub fn record_login_failure(
        &self,
        keys: &[&str],
        now: UnixTime,
        forget_before: UnixTime,
    ) -> Result<(), StoreError> {
        self.write(|c| {
            c.prepare_cached("DELETE FROM login_failures WHERE at <= ?1")?
                .execute([int(forget_before.0)])?;
            let mut insert =
                c.prepare_cached("INSERT INTO login_failures (key, at) VALUES (?1, ?2)")?;
            for key in keys {
                insert.execute(params![*key, int(now.0)])?;
            }
            Ok(())
        })
    }

    /// Forgets the failed logins under `key`.
    pub fn clear_login_failures(&self, key: &str) -> Result<(), StoreError> {
        self.write(|c| {
            c.prepare_cached("DELETE FROM login_failures WHERE key = ?1")?
                .execute([key])?;
            Ok(())
        })
    }

    /// Queues a mail job (`job` is its JSON, written by `make` from the new id).
    pub fn enqueue_mail(
        &self,
        next_attempt: UnixTime,
        make: impl FnOnce(u64) -> String,
    ) -> Result<u64, StoreError> {
        self.write(|c| q_enqueue_mail(c, next_attempt, make))
    }

    /// Every queued mail job: id and JSON, in queue order.
    pub fn mail_jobs(&self) -> Result<Vec<(u64, String)>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached("SELECT id, job FROM mail_queue ORDER BY id")?;
            let rows = stmt.query_map([], |r| Ok((uint(r.get(0)?), r.get(1)?)))?;
            Ok(rows.collect::<Result<Vec<_>>>()?)
        })
    }

    /// Takes up to `limit` due mail jobs (id and JSON) for sending: each is
    /// leased until `lease_until` (its `next_attempt` moves there), so no other
    /// sender, of this server or another on the same database, takes it
    /// meanwhile. A sender that dies before it removes or reschedules the job
    /// leaves it to whoever finds it due after the lease.
    pub fn claim_due_mail(
        &self,
        now: UnixTime,
        lease_until: UnixTime,
        limit: usize,
    ) -> Result<Vec<(u64, String)>, StoreError> {
        self.write(|c| {
            let due = {
                let mut stmt = c.prepare_cached(
                    "SELECT id, job FROM mail_queue WHERE next_attempt <= ?1 ORDER BY id LIMIT ?2",
                )?;
                let rows = stmt.query_map(params![int(now.0), int(limit as u64)], |r| {
                    Ok((uint(r.get(0)?), r.get(1)?))
                })?;
                rows.collect::<Result<Vec<(u64, String)>>>()?
            };
            let mut lease =
                c.prepare_cached("UPDATE mail_queue SET next_attempt = ?2 WHERE id = ?1")?;
            for (id, _) in &due {
                lease.execute(params![int(*id), int(lease_until.0)])?;
            }
            Ok(due)
        })
    }

    pub fn mail_job(&self, id: u64) -> Result<Option<String>, StoreError> {
        self.read(|c| {
            Ok(
                c.prepare_cached("SELECT job FROM mail_queue WHERE id = ?1")?
                    .query_row([int(id)], |r| r.get(0))
                    .optional()?,
            )
        })
    }

    pub fn update_mail(
        &self,
        id: u64,
        next_attempt: UnixTime,
        job: &str,
    ) -> Result<(), StoreError> {
        self.write(|c| {
            c.execute(
                "UPDATE mail_queue SET next_attempt = ?2, job = ?3 WHERE id = ?1",
                params![int(id), int(next_attempt.0), job],
            )?;
            Ok(())
        })
    }

    pub fn remove_mail(&self, id: u64) -> Result<(), StoreError> {
        self.write(|c| {
            c.execute("DELETE FROM mail_queue WHERE id = ?1", [int(id)])?;
            Ok(())
        })
    }

    pub fn mail_queue_len(&self) -> Result<usize, StoreError> {
        self.read(|c| {
            let n: i64 = c.query_row("SELECT COUNT(*) FROM mail_queue", [], |r| r.get(0))?;
            Ok(uint(n) as usize)
        })
    }

    // ----- backup, restore, import ------------------------------------------------

    /// Writes a consistent snapshot of the database to `path` while the server
    /// keeps running (`VACUUM INTO` from a read snapshot: writers do not wait).
    /// Sessions, emailed link tokens, the mail queue and idempotency answers are
    /// taken out of the copy: a restore must not revive old sessions or links, or
    /// send mail again. The file is written as `<path>.partial`, synced, and
    /// renamed, so `path` is either the old file or the complete new one.
    pub fn backup_to(&self, path: &Path, _now: UnixTime) -> Result<BackupSummary, BackupError> {
        let werr = io_context(path);
        let tmp = path.with_extension("partial");
        match std::fs::remove_file(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(werr(e)),
            _ => {}
        }
        match &self.location {
            // VACUUM INTO cannot run inside a transaction: its own connection,
            // which reads one snapshot (WAL) while the writer goes on.
            Location::File(db) => {
                let c = open_connection(db, false)?;
                c.execute("VACUUM INTO ?1", [tmp.to_string_lossy().into_owned()])?;
            }
            // A logical dump into the same format: a new SQLite file with this
            // schema, filled from one read snapshot of PostgreSQL.
            Location::Url(_) => {
                let to = open_connection(&tmp, true)?;
                migrate(&to, 0, &tmp.display().to_string())?;
                self.read(|from| copy_business_data(from, &to))?;
            }
        }
        let summary = {
            let c = Conn::Sqlite(Connection::open(&tmp)?);
            c.execute_batch(
                "DELETE FROM sessions; DELETE FROM email_tokens; DELETE FROM mail_queue;
                 DELETE FROM admin_requests; DELETE FROM login_failures;
                 PRAGMA journal_mode = DELETE;",
            )?;
            summarize(&c)?
        };
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(&werr)?;
        std::fs::rename(&tmp, path).map_err(&werr)?;
        if let Some(dir) = path.parent() {
            sync_dir(dir).map_err(&werr)?;
        }
        Ok(summary)
    }

    /// Checks that `backup` is a complete backup this pls can use: SQLite's
    /// integrity check passes and its schema is not newer. Reads only.
    pub fn check_backup(backup: &Path) -> Result<BackupSummary, BackupError> {
        let p = backup.display().to_string();
        let invalid = |reason: String| BackupError::Invalid {
            path: p.clone(),
            reason,
        };
        let mut head = [0u8; 16];
        {
            use std::io::Read;
            let mut f = std::fs::File::open(backup).map_err(|source| BackupError::Read {
                path: p.clone(),
                source,
            })?;
            let n = f.read(&mut head).map_err(|source| BackupError::Read {
                path: p.clone(),
                source,
            })?;
            if head[..n].starts_with(b"{\"format\"") || head[..n].starts_with(b"{\"created") {
                return Err(BackupError::SledBackup { path: p });
            }
            if &head[..n] != b"SQLite format 3\0" {
                return Err(invalid("it is not an SQLite database".into()));
            }
        }
        let c = Connection::open_with_flags(backup, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map(Conn::Sqlite)
            .map_err(|e| invalid(e.to_string()))?;
        let problems = Engine::Sqlite
            .check(&c, true)
            .map_err(|e| invalid(e.to_string()))?;
        if !problems.is_empty() {
            return Err(invalid(format!("it is damaged: {}", problems.join("; "))));
        }
        let version = schema_version_of(&c).map_err(|e| invalid(e.to_string()))?;
        if version == 0 {
            return Err(invalid("it has no pls schema".into()));
        }
        if version > SCHEMA_VERSION {
            return Err(invalid(format!(
                "it has schema version {version}; this pls supports up to {SCHEMA_VERSION}"
            )));
        }
        summarize(&c).map_err(|e| invalid(e.to_string()))
    }

    /// Restores `backup` as the database file `db`, then brings it to
    /// [`SCHEMA_VERSION`]. A file at `db` (damaged or not, it is never opened) is
    /// moved aside as `<db>.before-restore-<time>` with its WAL, never deleted;
    /// returns the summary and where the old file went.
    pub fn restore(
        backup: &Path,
        db: &Path,
        keep_schema: bool,
        now: UnixTime,
    ) -> Result<(BackupSummary, Option<PathBuf>), BackupError> {
        let summary = Self::check_backup(backup)?;
        let werr = io_context(db);
        if let Some(dir) = db.parent() {
            std::fs::create_dir_all(dir).map_err(&werr)?;
        }
        let tmp = db.with_extension("restoring");
        std::fs::copy(backup, &tmp).map_err(&werr)?;
        {
            // A copy made with sqlite3's `.backup` still holds sessions and
            // emailed links: a restore must not revive them.
            let c = Connection::open(&tmp)?;
            c.execute_batch(
                "DELETE FROM sessions; DELETE FROM email_tokens; DELETE FROM admin_requests;",
            )?;
        }
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(&werr)?;
        let mut aside = None;
        if db.exists() {
            let mut to = db.as_os_str().to_owned();
            to.push(format!(".before-restore-{}", now.0));
            let to = PathBuf::from(to);
            std::fs::rename(db, &to).map_err(&werr)?;
            for ext in ["-wal", "-shm"] {
                let mut from = db.as_os_str().to_owned();
                from.push(ext);
                let from = PathBuf::from(from);
                if from.exists() {
                    let mut dest = to.as_os_str().to_owned();
                    dest.push(ext);
                    std::fs::rename(&from, PathBuf::from(dest)).map_err(&werr)?;
                }
            }
            aside = Some(to);
        }
        std::fs::rename(&tmp, db).map_err(&werr)?;
        if let Some(dir) = db.parent() {
            sync_dir(dir).map_err(&werr)?;
        }
        write_marker(db).map_err(&werr)?;
        // Opening sets WAL mode and (unless kept) migrates.
        let store = Self::open_with(db, !keep_schema, false)?;
        store.flush()?;
        Ok((summary, aside))
    }

    /// Restores `backup` into this store (PostgreSQL): the current contents are
    /// first written as a backup file `aside` (nothing is deleted that is not
    /// kept there), then every table is emptied and filled from the backup, in
    /// one transaction: all or nothing. An older backup is brought to
    /// [`SCHEMA_VERSION`] on a temporary copy first.
    pub fn restore_into(
        &self,
        backup: &Path,
        aside: &Path,
        now: UnixTime,
    ) -> Result<BackupSummary, BackupError> {
        let summary = Self::check_backup(backup)?;
        self.backup_to(aside, now)?;
        let dir = tempfile::tempdir().map_err(|source| BackupError::Read {
            path: backup.display().to_string(),
            source,
        })?;
        let copy = dir.path().join(DB_FILE);
        std::fs::copy(backup, &copy).map_err(io_context(&copy))?;
        let from = open_connection(&copy, false)?;
        let version = schema_version_of(&from)?;
        migrate(&from, version, &backup.display().to_string())?;
        self.write(|to| {
            for table in ALL_TABLES_CHILDREN_FIRST {
                to.execute_batch(&format!("DELETE FROM {table}"))?;
            }
            from.read(|from| copy_business_data(from, to))?;
            Ok::<_, BackupError>(())
        })?;
        Ok(summary)
    }

    /// Whether the database holds no business data (an import's target must not).
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        self.read(|c| {
            let n: i64 = c.query_row(
                "SELECT (SELECT COUNT(*) FROM accounts) + (SELECT COUNT(*) FROM licenses)
                      + (SELECT COUNT(*) FROM audit)",
                [],
                |r| r.get(0),
            )?;
            Ok(n == 0)
        })
    }

    /// Writes records as they are (an import): every account, license, mutation,
    /// grant, audit entry and check-in keeps its ids, numbers and contents. One
    /// transaction: all or nothing.
    pub fn import_records(&self, records: &ImportedRecords) -> Result<(), StoreError> {
        self.write(|c| {
            for a in &records.accounts {
                put_account(c, a)?;
            }
            for l in &records.licenses {
                put_license(c, l)?;
            }
            for m in &records.mutations {
                put_mutation(c, m)?;
            }
            for (n, s, g) in &records.grants {
                put_grant(c, n, *s, g)?;
            }
            for e in &records.audit {
                put_audit(c, e)?;
            }
            for ci in &records.checkins {
                put_checkin(c, "checkins", None, ci)?;
            }
            for (seq, ci) in &records.checkin_history {
                put_checkin(c, "checkin_history", Some(*seq), ci)?;
            }
            for (account, lang) in &records.prefs {
                c.execute(
                    "INSERT INTO prefs (account_id, lang) VALUES (?1, ?2)
                     ON CONFLICT (account_id) DO UPDATE SET lang = excluded.lang",
                    params![int(account.0), lang],
                )?;
            }
            for key in &records.reminders {
                c.execute(
                    "INSERT INTO reminders (key) VALUES (?1) ON CONFLICT (key) DO NOTHING",
                    [key],
                )?;
            }
            for (id, next, job) in &records.mail_queue {
                c.execute(
                    "INSERT INTO mail_queue (id, next_attempt, job) VALUES (?1, ?2, ?3)",
                    params![int(*id), int(next.0), job],
                )?;
            }
            Ok(())
        })
    }

    // ----- consistency ------------------------------------------------------------

    /// SQLite's full integrity check and foreign key check, then the domain
    /// checks between the tables; returns the problems found. Used by the crash
    /// test after each kill, and by `pls admin verify` (with
    /// [`Store::verify_grants`]).
    pub fn verify(&self) -> Result<Vec<String>, StoreError> {
        let mut problems = self.read(|c| Ok(engine_of(c).check(c, true)?))?;
        let accounts = self.accounts()?;
        self.read(|c| {
            for a in &accounts {
                let (email, trusted, admin): (String, bool, bool) = c.query_row(
                    "SELECT email, trusted, admin FROM accounts WHERE id = ?1",
                    [int(a.id.0)],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )?;
                if (email.as_str(), trusted, admin) != (a.email.as_str(), a.trusted, a.admin) {
                    problems.push(format!("account {}: columns differ from its record", a.id));
                }
            }
            let mut stmt = c.prepare(
                "SELECT l.number, l.account_id, l.serial, l.current_grant, l.next_mutation,
                        l.record, COALESCE(a.email, '') FROM licenses l
                 LEFT JOIN accounts a ON a.id = l.account_id ORDER BY l.number",
            )?;
            type Row = (String, Option<i64>, i64, Option<i64>, i64, Vec<u8>, String);
            let rows: Vec<Row> = stmt
                .query_map([], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                    ))
                })?
                .collect::<Result<_>>()?;
            let mut search_rows = 0;
            for (number, account, serial, current, next, record, email) in rows {
                let l: License = match from_record("license", &record) {
                    Ok(l) => l,
                    Err(e) => {
                        problems.push(format!("license {number}: {e}"));
                        continue;
                    }
                };
                if (
                    l.number.as_str(),
                    l.account.map(|a| int(a.0)),
                    int(l.serial),
                    l.current_grant.map(int),
                    i64::from(l.next_mutation),
                ) != (number.as_str(), account, serial, current, next)
                {
                    problems.push(format!("license {number}: columns differ from its record"));
                }
                // Every license has the mutations its entitlements come from.
                let ms = q_mutations(c, &l.number)?;
                if domain::entitlements_of(&ms) != l.entitlements {
                    problems.push(format!(
                        "license {number}: entitlements differ from its activated mutations"
                    ));
                }
                if ms
                    .iter()
                    .any(|m| m.number >= l.next_mutation || m.license != l.number)
                {
                    problems.push(format!("license {number}: mutation numbering is off"));
                }
                let grants = q_grants(c, &l.number)?;
                if grants.len() as u64 > l.serial {
                    problems.push(format!("license {number}: more grants than serials"));
                }
                if let Some(s) = l.current_grant {
                    if q_grant(c, &l.number, s)?.is_none() {
                        problems.push(format!("license {number}: current grant {s} is missing"));
                    }
                }
                let audited: bool = c.query_row(
                    "SELECT COUNT(*) > 0 FROM audit WHERE license_number = ?1",
                    [&number],
                    |r| r.get(0),
                )?;
                if !audited {
                    problems.push(format!("license {number}: no audit entry"));
                }
                let (id, listed): (i64, bool) = c.query_row(
                    "SELECT id, listed FROM licenses WHERE number = ?1",
                    [&number],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                let ordered = ms
                    .iter()
                    .any(|m| matches!(m.state, MutationState::Ordered | MutationState::Activated));
                if listed != ordered {
                    problems.push(format!(
                        "license {number}: its place in the customer's license list is out of date"
                    ));
                }
                let mutation_accounts: Vec<Option<i64>> = c
                    .prepare("SELECT account_id FROM mutations WHERE license_number = ?1")?
                    .query_map([&number], |r| r.get(0))?
                    .collect::<Result<_>>()?;
                if mutation_accounts.iter().any(|&a| a != account) {
                    problems.push(format!(
                        "license {number}: its mutations name another account than the license"
                    ));
                }
                let fields = search::fields(&l, &email);
                match engine_of(c).search_row_matches(c, id, &fields)? {
                    Some(true) => search_rows += 1,
                    Some(false) => {
                        search_rows += 1;
                        problems.push(format!("license {number}: its search row is out of date"))
                    }
                    None => problems.push(format!("license {number}: it has no search row")),
                }
            }
            let total: i64 =
                c.query_row("SELECT COUNT(*) FROM license_search", [], |r| r.get(0))?;
            if total != search_rows {
                problems.push(format!(
                    "the license search index has {} rows without a license",
                    total - search_rows
                ));
            }
            Ok(())
        })?;
        if !problems.is_empty() {
            tracing::error!(problems = problems.len(), first = %problems[0], "the database check found problems");
        }
        Ok(problems)
    }

    /// Every stored grant verifies with `trusted` (the server's key set) and names
    /// its license; returns the problems found.
    pub fn verify_grants(&self, trusted: &TrustedKeys) -> Result<Vec<String>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT license_number, serial, signed FROM grants ORDER BY license_number, serial",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                ))
            })?;
            let mut problems = vec![];
            for r in rows {
                let (number, serial, signed) = r?;
                let g = match grant_from_record(&signed) {
                    Ok(g) => g,
                    Err(e) => {
                        problems.push(format!("grant {number}/{serial}: {e}"));
                        continue;
                    }
                };
                match trusted.verify(&g) {
                    Ok(v) if v.license_number.as_str() == number && v.serial == uint(serial) => {}
                    Ok(_) => problems.push(format!(
                        "grant {number}/{serial}: it is for another license or serial"
                    )),
                    Err(e) => problems.push(format!("grant {number}/{serial}: {e}")),
                }
            }
            Ok(problems)
        })
    }
}

/// What an import writes: every record of an old store, decoded.
#[derive(Debug, Default)]
pub struct ImportedRecords {
    pub accounts: Vec<Account>,
    pub licenses: Vec<License>,
    pub mutations: Vec<Mutation>,
    pub grants: Vec<(LicenseNumber, u64, Signed<LicenseGrant>)>,
    pub audit: Vec<AuditEntry>,
    pub checkins: Vec<CheckIn>,
    pub checkin_history: Vec<(u64, CheckIn)>,
    pub prefs: Vec<(AccountId, String)>,
    pub reminders: Vec<String>,
    pub mail_queue: Vec<(u64, UnixTime, String)>,
}

/// The tables a backup carries, parents first, with their columns. Sessions,
/// emailed link tokens, the mail queue and idempotency answers stay out (a
/// restore must not revive them); the search index is rebuilt from the licenses.
const BACKUP_TABLES: &[(&str, &str)] = &[
    ("accounts", "id, email, trusted, admin, created_at, record"),
    (
        "licenses",
        "id, number, account_id, license_type, protection, created_at, serial, current_grant, next_mutation, record",
    ),
    (
        "mutations",
        "license_number, number, kind, state, created_at, quote_valid_until, record",
    ),
    ("grants", "license_number, serial, signed"),
    (
        "audit",
        "seq, at, actor, license_number, account_id, action, detail",
    ),
    ("checkins", CHECKIN_COLUMNS),
    ("checkin_history", "seq, license_number, hardware_id, at, running, ge_seats, pwa_seats, daemon_version, from_addr"),
    (
        "host_facts",
        "license_number, hardware_id, facts, updated_at, rebound_at, rebound_from, clone_refused_at",
    ),
    ("prefs", "account_id, lang"),
    ("reminders", "key"),
    ("web_meta", "name, value"),
];

/// Every table with data, children first (the order to empty them in).
const ALL_TABLES_CHILDREN_FIRST: &[&str] = &[
    "login_failures",
    "license_search",
    "admin_requests",
    "mail_queue",
    "web_meta",
    "reminders",
    "prefs",
    "email_tokens",
    "sessions",
    "host_facts",
    "checkin_history",
    "checkins",
    "audit",
    "grants",
    "mutations",
    "licenses",
    "accounts",
];

/// Copies every row of [`BACKUP_TABLES`] from one store's connection to
/// another's (of either engine; the target's tables are empty) and builds the
/// target's search index. Returns the rows copied.
fn copy_business_data(from: &Conn, to: &Conn) -> Result<u64, StoreError> {
    let mut rows_copied = 0u64;
    for (table, columns) in BACKUP_TABLES {
        let n = columns.split(',').count();
        let mut read = from.prepare(&format!("SELECT {columns} FROM {table}"))?;
        let rows = read.query_map([], |r| {
            (0..n)
                .map(|i| r.get::<_, db::Value>(i))
                .collect::<Result<Vec<_>>>()
        })?;
        let placeholders = (1..=n)
            .map(|i| format!("?{i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut write = to.prepare(&format!(
            "INSERT INTO {table} ({columns}) VALUES ({placeholders})"
        ))?;
        for row in rows {
            let row = row?;
            let args: Vec<&dyn db::Arg> = row.iter().map(|v| v as &dyn db::Arg).collect();
            write.execute(args.as_slice())?;
            rows_copied += 1;
        }
    }
    derive_list_columns(to)?;
    let engine = engine_of(to);
    let mut stmt = to.prepare(
        "SELECT l.id, l.record, COALESCE(a.email, '') FROM licenses l
         LEFT JOIN accounts a ON a.id = l.account_id",
    )?;
    let licenses = stmt.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, Vec<u8>>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    for row in licenses {
        let (id, record, email) = row?;
        let l: License = from_record("license", &record)?;
        engine.put_search_row(to, id, &search::fields(&l, &email))?;
    }
    Ok(rows_copied)
}

fn summarize(c: &Conn) -> Result<BackupSummary> {
    let (entries, licenses): (i64, i64) = c.query_row(
        "SELECT (SELECT COUNT(*) FROM accounts) + (SELECT COUNT(*) FROM licenses)
              + (SELECT COUNT(*) FROM mutations) + (SELECT COUNT(*) FROM grants)
              + (SELECT COUNT(*) FROM audit) + (SELECT COUNT(*) FROM checkins)
              + (SELECT COUNT(*) FROM checkin_history),
                (SELECT COUNT(*) FROM licenses)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(BackupSummary {
        entries: uint(entries),
        licenses: uint(licenses),
        schema_version: schema_version_of(c)?,
    })
}

fn q_grants(c: &Conn, n: &LicenseNumber) -> Result<Vec<Signed<LicenseGrant>>, StoreError> {
    let mut stmt =
        c.prepare_cached("SELECT signed FROM grants WHERE license_number = ?1 ORDER BY serial")?;
    let rows = stmt.query_map([n.as_str()], |r| r.get::<_, Vec<u8>>(0))?;
    let mut out = vec![];
    for r in rows {
        out.push(grant_from_record(&r?)?);
    }
    Ok(out)
}

fn check_new_license(new: &NewLicense) -> Result<(), LicenseError> {
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
    Ok(())
}

fn create_license_in(
    c: &Conn,
    new: &NewLicense,
    actor: &Actor,
    now: UnixTime,
) -> Result<License, LicenseError> {
    if let Some(a) = new.account {
        if q_account(c, a)?.is_none() {
            return Err(LicenseError::UnknownAccount(a));
        }
    }
    // Random bodies; on the rare collision draw again.
    let number = loop {
        let body = rand::Rng::gen_range(
            &mut rand::thread_rng(),
            LicenseNumber::BODY_MIN..=LicenseNumber::BODY_MAX,
        );
        let Some(n) = LicenseNumber::from_body(body) else {
            continue;
        };
        if q_license(c, &n)?.is_none() {
            break n;
        }
    };
    let license = License {
        number: number.clone(),
        token: LicenseToken::generate(),
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
    put_license(c, &license)?;
    audit(
        c,
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
}

/// A check-in waiting for its group commit, and where to say how it went.
#[derive(Debug)]
struct PendingCheckIn {
    ci: CheckIn,
    done: std::sync::mpsc::SyncSender<CheckInResult>,
}

/// How a queued check-in's commit went.
#[derive(Debug)]
enum CheckInResult {
    Done,
    Full,
    Failed(String),
}

impl CheckInResult {
    fn into_result(self) -> Result<(), StoreError> {
        match self {
            CheckInResult::Done => Ok(()),
            CheckInResult::Full => Err(StoreError::Full),
            CheckInResult::Failed(e) => Err(StoreError::Failed(e)),
        }
    }
}

/// Writes one check-in in the caller's transaction: the latest per license, and
/// a history row when something changed (running, host, version, address).
fn write_check_in(c: &Conn, ci: &CheckIn) -> Result<(), StoreError> {
    let previous = q_last_checkin(c, &ci.license)?;
    let changed = previous.is_none_or(|p| {
        (p.running, &p.hardware_id, &p.daemon_version, &p.from)
            != (ci.running, &ci.hardware_id, &ci.daemon_version, &ci.from)
    });
    if changed {
        let seq = next_id(c, "checkin_history.seq")?;
        put_checkin(c, "checkin_history", Some(seq), ci)?;
    }
    put_checkin(c, "checkins", None, ci)
}

/// The answer recorded for an admin request's idempotency key, if that request
/// was carried out before.
fn keyed_reply(c: &Conn, key: Option<&str>) -> Result<Option<String>, StoreError> {
    let Some(k) = key else {
        return Ok(None);
    };
    Ok(
        c.prepare_cached("SELECT reply FROM admin_requests WHERE key = ?1")?
            .query_row([k], |r| r.get(0))
            .optional()?,
    )
}

/// Records an admin request's answer under its idempotency key, in the
/// request's own transaction.
fn record_reply(c: &Conn, key: Option<&str>, now: UnixTime, reply: &str) -> Result<(), StoreError> {
    if let Some(k) = key {
        c.execute(
            "INSERT INTO admin_requests (key, at, reply) VALUES (?1, ?2, ?3)",
            params![k, int(now.0), reply],
        )?;
    }
    Ok(())
}

fn existing(c: &Conn, number: &LicenseNumber) -> Result<License, LicenseError> {
    q_license(c, number)?.ok_or_else(|| LicenseError::UnknownLicense(number.clone()))
}

fn existing_mutation(c: &Conn, number: &LicenseNumber, n: u32) -> Result<Mutation, LicenseError> {
    q_mutation(c, number, n)?.ok_or_else(|| LicenseError::UnknownMutation(number.clone(), n))
}

fn orders_activate_at_once(c: &Conn, number: &LicenseNumber) -> Result<bool, LicenseError> {
    let license = existing(c, number)?;
    // Engineering licenses are free: nothing to wait for (issue 7, step 7).
    if license.license_type == keys::LicenseType::Engineering {
        return Ok(true);
    }
    Ok(match license.account {
        Some(a) => q_account(c, a)?.is_some_and(|a| a.trusted),
        None => false,
    })
}

fn add_mutation_in(
    c: &Conn,
    number: &LicenseNumber,
    new: &NewMutation,
    order: bool,
    key: &SigningKeyPair,
    actor: &Actor,
    now: UnixTime,
) -> Result<Mutation, LicenseError> {
    let trusted = orders_activate_at_once(c, number)?;
    let mut license = existing(c, number)?;
    let existing_ms = q_mutations(c, number)?;
    let running = runtime_running_in(c, &license)?;
    domain::check_new_mutation(&license, &existing_ms, new.kind, &new.adds, running)?;
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
    audit(
        c,
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
        audit(
            c,
            now,
            actor,
            Some(number),
            license.account,
            "mutation.ordered",
            m.id(),
        )?;
        if trusted {
            activate_in(c, &mut license, &mut m, key, actor, now)?;
        }
    }
    // The license first: the mutation's row refers to it.
    put_license(c, &license)?;
    put_mutation(c, &m)?;
    Ok(m)
}

fn activate_mutation_in(
    c: &Conn,
    number: &LicenseNumber,
    n: u32,
    key: &SigningKeyPair,
    actor: &Actor,
    now: UnixTime,
) -> Result<Mutation, LicenseError> {
    let mut license = existing(c, number)?;
    let mut m = existing_mutation(c, number, n)?;
    activate_in(c, &mut license, &mut m, key, actor, now)?;
    put_mutation(c, &m)?;
    put_license(c, &license)?;
    Ok(m)
}

fn looks_like_email(email: &str) -> bool {
    let mut parts = email.split('@');
    matches!((parts.next(), parts.next(), parts.next()), (Some(l), Some(d), None)
        if !l.is_empty() && d.contains('.') && !d.starts_with('.') && !d.ends_with('.') && !email.contains(char::is_whitespace))
}

fn step(m: &mut Mutation, next: MutationState) -> Result<(), LicenseError> {
    if !m.state.can_become(next) {
        return Err(LicenseError::Transition {
            id: m.id(),
            from: m.state.key(),
            to: next.key(),
        });
    }
    m.state = next;
    Ok(())
}

fn activate_in(
    c: &Conn,
    license: &mut License,
    m: &mut Mutation,
    key: &SigningKeyPair,
    actor: &Actor,
    now: UnixTime,
) -> Result<(), LicenseError> {
    step(m, MutationState::Activated)?;
    m.activated_at = Some(now);
    domain::apply_activation(license, m, now);
    audit(
        c,
        now,
        actor,
        Some(&license.number),
        license.account,
        "mutation.activated",
        m.id(),
    )?;
    issue_grant_in(c, license, key, now)?;
    Ok(())
}

/// Issues (signs and stores) the next grant if the license is bound and active.
fn issue_grant_in(
    c: &Conn,
    license: &mut License,
    key: &SigningKeyPair,
    now: UnixTime,
) -> Result<Option<Signed<LicenseGrant>>, StoreError> {
    let Some(grant) = domain::next_grant(license, now, key.key_id()) else {
        return Ok(None);
    };
    let signed = Signed::sign(&grant, key);
    // The grant row refers to the license row: write the license (with its new
    // serial) first; the caller writes it again with its other changes.
    put_license(c, license)?;
    put_grant(c, &license.number, grant.serial, &signed)?;
    audit(
        c,
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

    /// A server that refuses the connection (the primary gone, before the
    /// standby is promoted) is "unavailable, try again", not a database error:
    /// the client's text for it ("error connecting to server") carries neither
    /// a SQLSTATE nor the word "connection".
    #[test]
    fn a_refused_connection_is_unavailable_and_marked_on_the_thread() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let e = db::PgConn::connect(&format!(
            "host=127.0.0.1 port={port} user=pls dbname=x connect_timeout=2"
        ))
        .expect_err("nothing listens there");
        take_thread_marks();
        let e = StoreError::from(e);
        assert!(matches!(e, StoreError::Unavailable(_)), "{e}");
        assert!(is_unavailable_message(&e.to_string()), "{e}");
        assert_eq!(
            take_thread_marks(),
            ThreadMarks {
                unavailable: true,
                wrote: false
            }
        );
        assert_eq!(take_thread_marks(), ThreadMarks::default(), "taken");
    }

    #[test]
    fn injected_failures_fail_the_calls_asked_for_and_mark_writes() {
        let store = Store::temporary().expect("store");
        take_thread_marks();
        store.fail_as_unavailable(1, 2);
        assert!(
            store.schema_version().is_ok(),
            "the first call is let through"
        );
        assert!(matches!(
            store.schema_version(),
            Err(StoreError::Unavailable(_))
        ));
        assert!(store.failures_pending());
        assert!(store.mark_reminder_sent("k").is_err());
        assert!(!store.failures_pending());
        assert_eq!(
            take_thread_marks(),
            ThreadMarks {
                unavailable: true,
                wrote: false
            }
        );
        store.mark_reminder_sent("k").expect("works again");
        assert!(take_thread_marks().wrote);
    }

    #[test]
    fn fresh_store_has_current_schema_and_newer_schema_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DB_FILE);
        {
            let store = Store::open(&path).expect("open");
            assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
            store
                .writer()
                .execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, 'future', 0)",
                    [i64::from(SCHEMA_VERSION + 1)],
                )
                .expect("insert");
        }
        match Store::open(&path) {
            Err(OpenError::NewerSchema { found, .. }) => assert_eq!(found, SCHEMA_VERSION + 1),
            other => panic!("expected NewerSchema, got {other:?}"),
        }
        assert_eq!(
            Store::schema_version_at(&path).expect("read"),
            Some(SCHEMA_VERSION + 1)
        );
    }

    #[test]
    fn migrations_run_in_order_each_in_one_transaction() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DB_FILE);
        let c = open_connection(&path, true).expect("open");
        migrate(&c, 0, "t").expect("to 1");
        assert_eq!(schema_version_of(&c).expect("v"), SCHEMA_VERSION);
        let names: Vec<String> = c
            .prepare("SELECT name FROM schema_migrations ORDER BY version")
            .expect("prepare")
            .query_map([], |r| r.get(0))
            .expect("query")
            .collect::<Result<_>>()
            .expect("rows");
        assert_eq!(
            names,
            vec![
                "initial",
                "search_sqlite",
                "login_failures",
                "compact_records_sqlite",
                "smaller_store_sqlite",
                "host_facts",
                "customer_lists"
            ]
        );
        // Up to date: nothing runs (running 0001 again would fail on its tables).
        migrate(&c, SCHEMA_VERSION, "t").expect("nothing to do");
        // A failing step leaves the version where it was.
        c.execute_batch("DROP TABLE license_search; DELETE FROM schema_migrations WHERE version >= 2; CREATE TABLE license_search (x TEXT);")
            .expect("break");
        assert!(matches!(
            migrate(&c, 1, "t"),
            Err(OpenError::Migration { from: 1, .. })
        ));
        assert_eq!(schema_version_of(&c).expect("v"), 1);
    }

    #[test]
    fn a_lost_database_is_refused_not_started_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DB_FILE);
        drop(Store::open(&path).expect("create"));
        std::fs::remove_file(&path).expect("delete");
        let err = Store::open(&path).expect_err("refused");
        assert!(matches!(err, OpenError::Missing { .. }), "{err}");
        assert!(err.to_string().contains("pls admin restore"), "{err}");
    }

    /// Runs a store test on SQLite and on PostgreSQL (a database of this test
    /// binary's throwaway cluster).
    fn for_each_engine(test: impl Fn(Store)) {
        test(Store::temporary().expect("SQLite store"));
        test(Store::temporary_postgres().expect("PostgreSQL store"));
    }

    /// A read declared as one statement runs one: on PostgreSQL (no
    /// transaction around it) a second one is refused, not read from another
    /// snapshot; SQLite runs it in a read transaction.
    #[test]
    fn a_read_of_one_statement_refuses_a_second_on_postgresql() {
        for_each_engine(|store| {
            let one = store.read_one(|c| Ok(c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?));
            assert_eq!(one.expect("one statement"), 1);
            let two = store.read_one(|c| {
                c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?;
                Ok(c.query_row("SELECT 2", [], |r| r.get::<_, i64>(0))?)
            });
            match store.engine() {
                Engine::Sqlite => assert_eq!(two.expect("SQLite"), 2),
                Engine::Postgres => assert!(
                    matches!(two, Err(StoreError::Db(DbError::NotOneStatement))),
                    "{two:?}"
                ),
            }
            // The connection went back to the pool and reads as before.
            let after = store.read(|c| {
                c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?;
                Ok(c.query_row("SELECT 2", [], |r| r.get::<_, i64>(0))?)
            });
            assert_eq!(after.expect("a read transaction"), 2);
        });
    }

    /// The request's first read: the session, its account and the account's
    /// language preference, in one statement.
    #[test]
    fn a_session_is_read_with_its_account_and_language() {
        for_each_engine(|store| {
            let now = UnixTime(1_000);
            let a = store
                .create_account(
                    NewAccount {
                        email: "s@example.com".into(),
                        password_hash: None,
                        company: "C".into(),
                        first_name: "F".into(),
                        last_name: "L".into(),
                    },
                    &Actor::System,
                    now,
                )
                .expect("account");
            let row = SessionRow {
                account: a.id,
                created: now,
                expires: UnixTime(2_000),
                persistent: true,
            };
            let hash = "a".repeat(64);
            store.insert_session(&hash, &row).expect("session");
            assert!(store
                .session_with_account(&"b".repeat(64))
                .expect("read")
                .is_none());
            let found = store
                .session_with_account(&hash)
                .expect("read")
                .expect("found");
            assert_eq!(found.session, row);
            assert_eq!(found.account.as_ref(), Some(&a));
            assert_eq!(found.lang, None);
            store.set_lang_pref(a.id, "en").expect("lang");
            let found = store
                .session_with_account(&hash)
                .expect("read")
                .expect("found");
            assert_eq!(found.lang.as_deref(), Some("en"));
            assert_eq!(found.account, Some(a.clone()));
        });
    }

    #[test]
    fn postgres_store_has_the_schema_and_refuses_a_newer_one() {
        let url = throwaway::shared().create_database().expect("database");
        let store = Store::open_url(&url).expect("open");
        assert_eq!(store.engine(), Engine::Postgres);
        assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
        assert!(store.is_empty().expect("empty"));
        drop(store);
        let again = Store::open_url(&url).expect("reopen");
        assert_eq!(again.migrated_from(), None);
        again
            .writer()
            .execute(
                "INSERT INTO schema_migrations VALUES (?1, 'future', 0)",
                [99i64],
            )
            .expect("future version");
        drop(again);
        match Store::open_url(&url) {
            Err(OpenError::NewerSchema { found: 99, .. }) => {}
            other => panic!("a newer schema must be refused, got {other:?}"),
        }
    }

    /// Two servers on one PostgreSQL database: their writers take turns (no
    /// duplicate license number or id under concurrent writes), each queued email
    /// is taken by exactly one sender, and housekeeping runs on one at a time.
    #[test]
    fn two_servers_on_one_postgresql_database_write_in_turn() {
        let url = throwaway::shared().create_database().expect("database");
        let a = Store::open_url(&url).expect("server a");
        let b = Store::open_url(&url).expect("server b");
        let per_server = 40;
        let (a, b) = (&a, &b);
        let numbers: Vec<LicenseNumber> = std::thread::scope(|s| {
            let work = |store: &Store| {
                (0..per_server)
                    .map(|_| {
                        store
                            .enqueue_mail(UnixTime(1), |id| format!("{{\"id\":{id}}}"))
                            .expect("enqueue");
                        soft_license(store).number
                    })
                    .collect::<Vec<_>>()
            };
            let ta = s.spawn(move || work(a));
            let tb = s.spawn(move || work(b));
            let mut all = ta.join().expect("a");
            all.extend(tb.join().expect("b"));
            all
        });
        let unique: std::collections::BTreeSet<_> = numbers.iter().collect();
        assert_eq!(unique.len(), 2 * per_server, "license numbers are unique");
        assert_eq!(a.mail_queue_len().expect("len"), 2 * per_server);

        // Both senders claim the due mail at once: every job exactly once.
        let now = UnixTime(10);
        let claimed: Vec<u64> = std::thread::scope(|s| {
            let claim = |store: &Store| {
                let mut mine = vec![];
                loop {
                    let batch = store
                        .claim_due_mail(now, now.plus_secs(300), 7)
                        .expect("claim");
                    if batch.is_empty() {
                        break mine;
                    }
                    mine.extend(batch.into_iter().map(|(id, _)| id));
                }
            };
            let ta = s.spawn(move || claim(a));
            let tb = s.spawn(move || claim(b));
            let mut all = ta.join().expect("a");
            all.extend(tb.join().expect("b"));
            all
        });
        let unique: std::collections::BTreeSet<_> = claimed.iter().collect();
        assert_eq!(
            (claimed.len(), unique.len()),
            (2 * per_server, 2 * per_server)
        );
        // Leased: not due again until the lease ends, then due for anyone.
        assert!(b
            .claim_due_mail(now.plus_secs(299), now.plus_secs(600), 100)
            .expect("claim")
            .is_empty());
        assert_eq!(
            b.claim_due_mail(now.plus_secs(300), now.plus_secs(600), 100)
                .expect("claim")
                .len(),
            2 * per_server
        );

        // Housekeeping: while one server runs it, the other skips.
        let inner = a
            .exclusively(db::HOUSEKEEPING_LOCK, || {
                b.exclusively(db::HOUSEKEEPING_LOCK, || ())
                    .expect("b tries")
            })
            .expect("a runs");
        assert_eq!(inner, Some(None), "b must skip while a holds the lock");
        assert_eq!(
            b.exclusively(db::HOUSEKEEPING_LOCK, || 1).expect("b runs"),
            Some(1)
        );
    }

    /// A copy of `from` (a store at this schema) as the store of schema
    /// `version` (2, 4 or 6) would have held it: the database `to` brought to
    /// that schema, every row copied, the records written as that schema wrote
    /// them (2: JSON text; 4: postcard, a grant as its whole envelope; 6: a
    /// grant as its fields), the search rows built.
    fn copy_as_schema(from: &Store, to: &Conn, version: u32) {
        migrate_until(to, 0, version, "old schema").expect("old schema");
        let json = |v: db::Value, decode: &dyn Fn(&[u8]) -> String| match v {
            db::Value::Bytes(b) if version == 2 => db::Value::Text(decode(&b)),
            db::Value::Bytes(b) => db::Value::Bytes(b),
            other => panic!("a record is bytes, found {other:?}"),
        };
        fn record<T: Serialize + DeserializeOwned>(b: &[u8]) -> String {
            to_json(&from_record::<T>("record", b).expect("record"))
        }
        let grant = |v: db::Value| match v {
            db::Value::Bytes(b) => {
                let g = grant_from_record(&b).expect("grant");
                match version {
                    2 => db::Value::Text(to_json(&g)),
                    3 | 4 => db::Value::Bytes(to_record(&g)),
                    _ => db::Value::Bytes(grant_to_record(&g)),
                }
            }
            other => panic!("a grant is bytes, found {other:?}"),
        };
        from.read(|from| {
            for (table, columns) in BACKUP_TABLES {
                let names: Vec<&str> = columns.split(',').map(str::trim).collect();
                let rows: Vec<Vec<db::Value>> = from
                    .prepare(&format!("SELECT {columns} FROM {table}"))?
                    .query_map([], |r| {
                        (0..names.len())
                            .map(|i| r.get::<_, db::Value>(i))
                            .collect::<Result<Vec<_>>>()
                    })?
                    .collect::<Result<_>>()?;
                let placeholders: Vec<String> =
                    (1..=names.len()).map(|i| format!("?{i}")).collect();
                let insert = format!(
                    "INSERT INTO {table} ({columns}) VALUES ({})",
                    placeholders.join(", ")
                );
                for row in rows {
                    let row: Vec<db::Value> = row
                        .into_iter()
                        .zip(&names)
                        .map(|(v, column)| match (*table, *column) {
                            ("accounts", "record") => json(v, &record::<Account>),
                            ("licenses", "record") => json(v, &record::<License>),
                            ("mutations", "record") => json(v, &record::<Mutation>),
                            ("grants", "signed") => grant(v),
                            _ => v,
                        })
                        .collect();
                    let args: Vec<&dyn db::Arg> = row.iter().map(|v| v as &dyn db::Arg).collect();
                    to.execute(&insert, args.as_slice())?;
                }
            }
            let licenses: Vec<(i64, db::Value, String)> = to
                .prepare(
                    "SELECT l.id, l.record, COALESCE(a.email, '') FROM licenses l
                     LEFT JOIN accounts a ON a.id = l.account_id",
                )?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<_>>()?;
            for (id, record, email) in licenses {
                let l: License = match record {
                    db::Value::Text(json) => serde_json::from_str(&json).expect("JSON license"),
                    db::Value::Bytes(b) => from_record("license", &b).expect("license"),
                    other => panic!("a license record, found {other:?}"),
                };
                engine_of(to).put_search_row(to, id, &search::fields(&l, &email))?;
            }
            Ok(())
        })
        .expect("copy as an old schema");
    }

    /// Everything a store holds, read through its API.
    type Contents = (
        Vec<Account>,
        Vec<License>,
        Vec<(
            Vec<Mutation>,
            Vec<Signed<LicenseGrant>>,
            Option<CheckIn>,
            Vec<CheckIn>,
        )>,
        Vec<AuditEntry>,
    );
    fn contents(store: &Store) -> Contents {
        let licenses = store.licenses().expect("licenses");
        let per_license = licenses
            .iter()
            .map(|l| {
                (
                    store.mutations(&l.number).expect("mutations"),
                    store.grants(&l.number).expect("grants"),
                    store.last_check_in(&l.number).expect("last check-in"),
                    store.check_in_history(&l.number).expect("history"),
                )
            })
            .collect();
        (
            store.accounts().expect("accounts"),
            licenses,
            per_license,
            store.audit(None, usize::MAX).expect("audit"),
        )
    }

    #[test]
    fn a_schema_2_store_with_data_migrates_to_compact_records_with_every_record_equal() {
        old_store_migrates_with_every_record_equal(2);
    }

    #[test]
    fn a_schema_4_store_with_data_migrates_to_compact_grants_with_every_record_equal() {
        old_store_migrates_with_every_record_equal(4);
    }

    #[test]
    fn a_schema_6_store_with_data_migrates_to_the_customer_list_columns() {
        old_store_migrates_with_every_record_equal(6);
    }

    /// A store of schema `version` holding data of every kind, opened by this
    /// build: migrated, every record equal, consistent, searchable.
    fn old_store_migrates_with_every_record_equal(version: u32) {
        for_each_engine(|source| {
            // Data of every kind: an account, licenses with quoted, paid and
            // activated mutations, a binding, an edit, grants, audit entries,
            // check-ins.
            let key = SigningKeyPair::from_seed(&[3; 32]);
            let a = source
                .create_account(
                    NewAccount {
                        email: "Kunde@Example.com".into(),
                        password_hash: Some("$argon2id$v=19$x".into()),
                        company: "Müller & Söhne \"Beta\"".into(),
                        first_name: "Jörg".into(),
                        last_name: "Ä".into(),
                    },
                    &Actor::System,
                    UnixTime(1),
                )
                .expect("account");
            let owned = source
                .create_license(
                    NewLicense {
                        account: Some(a.id),
                        license_type: LicenseType::Standard,
                        protection: Protection::SoftDongle,
                        licensee: domain::Licensee {
                            company: "Müller & Söhne".into(),
                            city: "Hanau".into(),
                            ..Default::default()
                        },
                        license_data: LicenseData {
                            name: "Jörgs Anlage".into(),
                            postcode: "63450".into(),
                            city: "Hanau".into(),
                        },
                    },
                    &Actor::Account(a.id),
                    UnixTime(1),
                )
                .expect("owned license");
            source
                .add_mutation(
                    &owned.number,
                    new_content(),
                    false,
                    &key,
                    &Actor::Account(a.id),
                    UnixTime(2),
                )
                .expect("quote");
            let (l, m) = ordered_license(&source, &key);
            source
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
            source
                .activate_host(&req, &key, UnixTime(3))
                .expect("store")
                .expect("bound");
            let data = LicenseData {
                name: "ProMoS License Server".into(),
                postcode: "63467".into(),
                city: "Hanau".into(),
            };
            source
                .update_license_data(&l.number, data, &key, &Actor::System, UnixTime(4))
                .expect("edit");
            let check = HostCheck {
                license: &l.number,
                hardware_id: &host,
                held_serial: Some(1),
                running: true,
                ge_seats: 1,
                pwa_seats: 0,
                daemon_version: "t",
                from: "t".into(),
            };
            source
                .check_host(&check, UnixTime(5))
                .expect("store")
                .expect("licensed");
            let expected = contents(&source);
            assert_eq!(expected.1.len(), 2);
            assert!(expected
                .2
                .iter()
                .any(|(_, g, last, _)| g.len() == 2 && last.is_some()));

            // The schema-2 copy, opened by this build: migrated, every record equal.
            let dir = tempfile::tempdir().expect("tempdir");
            let (migrated, engine) = match source.engine() {
                Engine::Sqlite => {
                    let path = dir.path().join(DB_FILE);
                    let c = open_connection(&path, true).expect("open");
                    copy_as_schema(&source, &c, version);
                    drop(c);
                    write_marker(&path).expect("marker");
                    (Store::open(&path).expect("migrate"), Engine::Sqlite)
                }
                Engine::Postgres => {
                    let url = throwaway::shared().create_database().expect("database");
                    let c = connect_postgres(&url).expect("connect");
                    copy_as_schema(&source, &c, version);
                    drop(c);
                    (Store::open_url(&url).expect("migrate"), Engine::Postgres)
                }
            };
            assert_eq!(migrated.engine(), engine);
            assert_eq!(migrated.schema_version().expect("version"), SCHEMA_VERSION);
            assert_eq!(contents(&migrated), expected);
            assert_eq!(migrated.verify().expect("verify"), Vec::<String>::new());
            assert_eq!(
                migrated.search_licenses("jörg").expect("search"),
                migrated.search_licenses_by_scan("jörg").expect("scan")
            );
        });
    }

    #[test]
    fn a_grant_is_stored_as_its_fields_and_read_back_as_signed() {
        let key = SigningKeyPair::from_seed(&[5; 32]);
        let store = Store::temporary().expect("store");
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
        let host = HardwareId::from_bytes([7; 16]);
        let req = HostActivation {
            license: &l.number,
            token: l.token.expose(),
            hardware_id: &host,
            daemon_version: "t",
            from: "t".into(),
        };
        let signed = store
            .activate_host(&req, &key, UnixTime(3))
            .expect("store")
            .expect("bound");
        // Stored as its fields: far smaller than the envelope.
        let stored: Vec<u8> = store
            .read(|c| Ok(c.query_row("SELECT signed FROM grants", [], |r| r.get(0))?))
            .expect("row");
        assert!(matches!(
            from_record::<StoredGrant>("grant", &stored),
            Ok(StoredGrant::Fields { .. })
        ));
        assert!(
            stored.len() * 2 < to_record(&signed).len(),
            "{}",
            stored.len()
        );
        // Read back byte for byte, and it verifies.
        assert_eq!(
            store.grants(&l.number).expect("grants"),
            vec![signed.clone()]
        );
        let trusted = TrustedKeys::with([key.public()]);
        assert_eq!(
            store.verify_grants(&trusted).expect("verify"),
            Vec::<String>::new()
        );
        // An envelope whose payload is not the canonical JSON of its grant (here:
        // with a space) is kept whole, and read back as it was.
        let mut payload = b" ".to_vec();
        payload.extend_from_slice(signed.payload());
        let odd = Signed::from_parts(payload, signed.key_id(), signed.signature().to_vec());
        assert!(matches!(
            from_record::<StoredGrant>("grant", &grant_to_record(&odd)),
            Ok(StoredGrant::Verbatim(_))
        ));
        assert_eq!(
            grant_from_record(&grant_to_record(&odd)).expect("read"),
            odd
        );
        assert_eq!(
            grant_from_record(&grant_to_record(&signed)).expect("read"),
            signed
        );
    }

    #[test]
    fn verify_finds_a_search_row_out_of_date_or_missing() {
        for_each_engine(|store| {
            let l = store
                .create_license(
                    NewLicense {
                        account: None,
                        license_type: LicenseType::Standard,
                        protection: Protection::SoftDongle,
                        licensee: domain::Licensee {
                            company: "Muster \"Söhne\" AG".into(),
                            city: "Belp".into(),
                            ..Default::default()
                        },
                        license_data: LicenseData {
                            name: "Anlage Belp".into(),
                            postcode: "3123".into(),
                            city: "Belp".into(),
                        },
                    },
                    &Actor::System,
                    UnixTime(0),
                )
                .expect("license");
            assert_eq!(store.verify().expect("verify"), Vec::<String>::new());
            let fields = search::fields(&l, "");
            let id: i64 = store
                .read(|c| {
                    Ok(c.query_row(
                        "SELECT id FROM licenses WHERE number = ?1",
                        [l.number.as_str()],
                        |r| r.get(0),
                    )?)
                })
                .expect("id");
            let write = |fields: Option<&[String; 11]>| {
                store
                    .write(|c| {
                        match (fields, engine_of(c)) {
                            (Some(f), engine) => engine.put_search_row(c, id, f)?,
                            (None, Engine::Sqlite) => {
                                c.execute("DELETE FROM license_search WHERE rowid = ?1", [id])?;
                            }
                            (None, Engine::Postgres) => {
                                c.execute(
                                    "DELETE FROM license_search WHERE license_id = ?1",
                                    [id],
                                )?;
                            }
                        }
                        Ok::<_, StoreError>(())
                    })
                    .expect("write");
            };
            let mut stale = fields.clone();
            stale[1] = "muster ag".into();
            write(Some(&stale));
            let problems = store.verify().expect("verify");
            assert!(
                problems.len() == 1 && problems[0].contains("out of date"),
                "{problems:?}"
            );
            write(None);
            let problems = store.verify().expect("verify");
            assert!(
                problems.len() == 1 && problems[0].contains("no search row"),
                "{problems:?}"
            );
            write(Some(&fields));
            assert_eq!(store.verify().expect("verify"), Vec::<String>::new());
        });
    }

    #[test]
    fn verify_finds_the_customer_lists_columns_out_of_date() {
        for_each_engine(|store| {
            let store = &store;
            let key = SigningKeyPair::from_seed(&[3; 32]);
            let account = store
                .create_account(
                    NewAccount {
                        email: "lists@verify.example".into(),
                        password_hash: None,
                        company: "c".into(),
                        first_name: "f".into(),
                        last_name: "l".into(),
                    },
                    &Actor::System,
                    UnixTime(0),
                )
                .expect("account");
            let (l, _) = ordered_license(store, &key);
            let mut l = store.license(&l.number).expect("read").expect("license");
            l.account = Some(account.id);
            store
                .write(|c| put_license(c, &l))
                .expect("moved to the account");
            let listed = |c: &Conn| -> Result<(bool, Option<i64>), StoreError> {
                Ok(c.query_row(
                    "SELECT l.listed, m.account_id FROM licenses l
                     JOIN mutations m ON m.license_number = l.number WHERE l.number = ?1",
                    [l.number.as_str()],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?)
            };
            // Written by the store: listed, and the mutation, written while its
            // license had no account, names the account it was moved to.
            assert_eq!(
                store.read(listed).expect("read"),
                (true, Some(int(account.id.0)))
            );
            assert_eq!(store.verify().expect("verify"), Vec::<String>::new());

            let damage = |sql: &str| {
                store
                    .write(|c| Ok::<_, StoreError>(c.execute(sql, [l.number.as_str()])?))
                    .expect("damage");
                store.verify().expect("verify")
            };
            let problems = damage("UPDATE licenses SET listed = FALSE WHERE number = ?1");
            assert!(
                problems.len() == 1 && problems[0].contains("license list is out of date"),
                "{problems:?}"
            );
            let problems =
                damage("UPDATE mutations SET account_id = NULL WHERE license_number = ?1");
            assert_eq!(problems.len(), 2, "{problems:?}");
            assert!(problems[1].contains("name another account"), "{problems:?}");
            store
                .write(|c| Ok::<_, StoreError>(derive_list_columns(c)?))
                .expect("derive");
            assert_eq!(store.verify().expect("verify"), Vec::<String>::new());
        });
    }

    /// A soft-dongle license with its first mutation ordered (not yet paid).
    fn ordered_license(store: &Store, key: &SigningKeyPair) -> (License, Mutation) {
        let l = soft_license(store);
        let m = store
            .add_mutation(
                &l.number,
                new_content(),
                true,
                key,
                &Actor::System,
                UnixTime(1),
            )
            .expect("order");
        (l, m)
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
        for_each_engine(quotes_expire_on);
    }

    fn quotes_expire_on(store: Store) {
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
        for_each_engine(editing_license_data_on);
    }

    fn editing_license_data_on(store: Store) {
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
        for_each_engine(emails_on);
    }

    fn emails_on(store: Store) {
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
        let key = SigningKeyPair::from_seed(&[2; 32]);
        let (lic, _) = store
            .create_license_with(
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
                new_content(),
                false,
                false,
                &key,
                &Actor::Account(a.id),
                UnixTime(2),
            )
            .expect("license");
        assert_eq!(store.licenses_of_account(a.id).expect("list"), vec![lic]);
        assert!(store.verify().expect("verify").is_empty());
    }
}
