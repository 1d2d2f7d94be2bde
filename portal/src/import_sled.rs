//! `pls admin import-sled`: reads a store of the old sled format (a schema-1 or
//! schema-2 data directory `db/`, or a `pls-backup/1` file written by its
//! `pls admin backup`) and writes every record into a new SQL store.
//!
//! This is the only sled code left in the server. The old layout, for reading
//! (all integers big-endian, license numbers as their 10 ASCII digits):
//!
//! | tree | key | value (JSON) |
//! | --- | --- | --- |
//! | `meta` | `schema_version` | u32 BE (1 or 2) |
//! | `accounts` | account id (u64) | `Account` |
//! | `licenses` | number | `License` |
//! | `mutations` | number + mutation number (u32) | `Mutation` |
//! | `grants` | number + serial (u64) | `Signed<LicenseGrant>` |
//! | `audit` | sequence (u64) | `AuditEntry` |
//! | `checkins` | number | the latest `CheckIn` |
//! | `checkin_history` | number + sequence (u64) | `CheckIn` |
//! | `web_prefs` | account id (u64) | language code (`de`/`en`), not JSON |
//! | `web_reminders` | `<license>:<valid_until>:<days>` | empty |
//! | `web_mail_queue` | id (u64) | a queued email job |
//!
//! The index trees (`accounts_by_email`, `licenses_by_account`,
//! `audit_by_license`, and schema 2's `license_search`) are derived data and are
//! not read: the SQL store has its own indexes. Sessions and emailed link tokens
//! are not carried over (users log in again; links are requested again).

use crate::domain::AccountId;
use crate::store::{BackupError, BackupSummary, ImportedRecords, Store};
use keys::UnixTime;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use std::io::BufRead;
use std::path::Path;

const BACKUP_FORMAT: &str = "pls-backup/1";
const SCHEMA_KEY: &[u8] = b"schema_version";
/// The newest sled schema this reader knows.
const LAST_SLED_SCHEMA: u32 = 2;

/// One key/value of an old tree.
type Entry = (String, Vec<u8>, Vec<u8>);

/// Reads `source` (a sled directory or a sled-era backup file) and writes its
/// records into the SQL store at `target`, which must not hold data yet. One
/// transaction: on any error nothing is written.
pub fn import(source: &Path, target: &Path) -> Result<BackupSummary, BackupError> {
    let (records, schema) = read_source(source)?;
    let store = Store::open_for_import(target)?;
    import_records_into(records, schema, &store)
}

/// Like [`import`], into an open store (PostgreSQL).
pub fn import_into(source: &Path, store: &Store) -> Result<BackupSummary, BackupError> {
    let (records, schema) = read_source(source)?;
    import_records_into(records, schema, store)
}

/// The records of a sled directory or sled-era backup file, and its schema.
fn read_source(source: &Path) -> Result<(ImportedRecords, u32), BackupError> {
    let p = source.display().to_string();
    let invalid = |reason: String| BackupError::Invalid {
        path: p.clone(),
        reason,
    };
    let (schema, entries) = if source.is_dir() {
        read_dir(source).map_err(invalid)?
    } else {
        read_backup(source)?
    };
    if !(1..=LAST_SLED_SCHEMA).contains(&schema) {
        return Err(invalid(format!(
            "it has sled schema version {schema}; this reader knows 1 to {LAST_SLED_SCHEMA}"
        )));
    }
    Ok((decode(&entries).map_err(invalid)?, schema))
}

fn import_records_into(
    records: ImportedRecords,
    schema: u32,
    store: &Store,
) -> Result<BackupSummary, BackupError> {
    if !store.is_empty()? {
        return Err(BackupError::TargetNotEmpty(store.describe()));
    }
    store.import_records(&records)?;
    store.flush()?;
    Ok(BackupSummary {
        entries: (records.accounts.len()
            + records.licenses.len()
            + records.mutations.len()
            + records.grants.len()
            + records.audit.len()
            + records.checkins.len()
            + records.checkin_history.len()) as u64,
        licenses: records.licenses.len() as u64,
        schema_version: schema,
    })
}

/// The trees this reader takes from a sled directory.
const TREES: [&str; 10] = [
    "accounts",
    "licenses",
    "mutations",
    "grants",
    "audit",
    "checkins",
    "checkin_history",
    "web_prefs",
    "web_reminders",
    "web_mail_queue",
];

fn read_dir(dir: &Path) -> Result<(u32, Vec<Entry>), String> {
    if !dir.join("conf").exists() {
        return Err("it is not a sled database directory (no `conf`)".into());
    }
    // A handle closed a moment ago keeps sled's file lock until its flusher
    // thread ends: wait up to 3 s for it, in 50 ms steps, before giving up.
    let mut waited = 0;
    let db = loop {
        match sled::Config::new().path(dir).open() {
            Ok(db) => break db,
            Err(_) if waited < 60 => {
                std::thread::sleep(std::time::Duration::from_millis(50));
                waited += 1;
            }
            Err(e) => {
                return Err(format!(
                    "sled cannot open it (is a server still running on it?): {e}"
                ))
            }
        }
    };
    let meta = db.open_tree("meta").map_err(|e| e.to_string())?;
    let schema = match meta.get(SCHEMA_KEY).map_err(|e| e.to_string())? {
        Some(v) => u32::from_be_bytes(
            v.as_ref()
                .try_into()
                .map_err(|_| "its schema version is not 4 bytes".to_string())?,
        ),
        None => return Err("it has no schema version".into()),
    };
    let mut out = vec![];
    for name in TREES {
        let tree = db.open_tree(name).map_err(|e| e.to_string())?;
        for kv in tree.iter() {
            let (k, v) = kv.map_err(|e| format!("reading tree {name}: {e}"))?;
            out.push((name.to_owned(), k.to_vec(), v.to_vec()));
        }
    }
    Ok((schema, out))
}

fn read_backup(backup: &Path) -> Result<(u32, Vec<Entry>), BackupError> {
    let p = backup.display().to_string();
    let invalid = |reason: String| BackupError::Invalid {
        path: p.clone(),
        reason,
    };
    let rerr = |source| BackupError::Read {
        path: p.clone(),
        source,
    };
    let file = std::fs::File::open(backup).map_err(rerr)?;
    let mut hash = Sha256::new();
    let mut header: Option<serde_json::Value> = None;
    let mut trailer: Option<serde_json::Value> = None;
    let mut entries = vec![];
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
            continue;
        }
        let name = value.get("t").and_then(|t| t.as_str()).unwrap_or_default();
        let k = hex::decode(value.get("k").and_then(|k| k.as_str()).unwrap_or_default())
            .map_err(|e| invalid(format!("bad key: {e}")))?;
        let v = match (
            value.get("v").and_then(|v| v.as_str()),
            value.get("x").and_then(|x| x.as_str()),
        ) {
            (Some(text), _) => text.as_bytes().to_vec(),
            (None, Some(h)) => hex::decode(h).map_err(|e| invalid(format!("bad value: {e}")))?,
            (None, None) => return Err(invalid("an entry has no value".into())),
        };
        entries.push((name.to_owned(), k, v));
    }
    let header = header.ok_or_else(|| invalid("it is empty".into()))?;
    let trailer = trailer.ok_or_else(|| invalid("it has no end marker (truncated?)".into()))?;
    if trailer.get("entries").and_then(|e| e.as_u64()) != Some(entries.len() as u64) {
        return Err(invalid("the entry count does not match".into()));
    }
    if trailer.get("sha256").and_then(|e| e.as_str()) != Some(hex::encode(hash.finalize()).as_str())
    {
        return Err(invalid(
            "the checksum does not match: the file was changed or damaged".into(),
        ));
    }
    let schema = header
        .get("schema_version")
        .and_then(|v| v.as_u64())
        .and_then(|v| u32::try_from(v).ok())
        .unwrap_or(0);
    Ok((schema, entries))
}

fn json<T: DeserializeOwned>(tree: &str, key: &[u8], v: &[u8]) -> Result<T, String> {
    serde_json::from_slice(v).map_err(|e| format!("tree {tree}, key {}: {e}", hex::encode(key)))
}

fn be_u64(tree: &str, bytes: &[u8]) -> Result<u64, String> {
    bytes
        .try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| format!("tree {tree}: a key of {} bytes where 8 belong", bytes.len()))
}

fn decode(entries: &[Entry]) -> Result<ImportedRecords, String> {
    let mut r = ImportedRecords::default();
    for (tree, k, v) in entries {
        let t = tree.as_str();
        match t {
            "accounts" => r.accounts.push(json(t, k, v)?),
            "licenses" => r.licenses.push(json(t, k, v)?),
            "mutations" => r.mutations.push(json(t, k, v)?),
            "grants" => {
                if k.len() != 18 {
                    return Err(format!("tree grants: a key of {} bytes", k.len()));
                }
                let number = std::str::from_utf8(&k[..10])
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or("tree grants: a key without a license number")?;
                r.grants
                    .push((number, be_u64(t, &k[10..])?, json(t, k, v)?));
            }
            "audit" => r.audit.push(json(t, k, v)?),
            "checkins" => r.checkins.push(json(t, k, v)?),
            "checkin_history" => {
                if k.len() != 18 {
                    return Err(format!("tree checkin_history: a key of {} bytes", k.len()));
                }
                r.checkin_history
                    .push((be_u64(t, &k[10..])?, json(t, k, v)?));
            }
            "web_prefs" => {
                let lang = std::str::from_utf8(v)
                    .map_err(|_| "tree web_prefs: a value that is not text")?;
                r.prefs.push((AccountId(be_u64(t, k)?), lang.to_owned()));
            }
            "web_reminders" => r.reminders.push(
                String::from_utf8(k.clone())
                    .map_err(|_| "tree web_reminders: a key that is not text")?,
            ),
            "web_mail_queue" => {
                let job: serde_json::Value = json(t, k, v)?;
                let next = job
                    .get("next_attempt")
                    .and_then(|n| n.as_u64())
                    .unwrap_or(0);
                let text = String::from_utf8(v.clone())
                    .map_err(|_| "tree web_mail_queue: a value that is not text")?;
                r.mail_queue.push((be_u64(t, k)?, UnixTime(next), text));
            }
            // The backup's other trees: meta and the derived indexes.
            _ => {}
        }
    }
    // The new store's history sequence is its own; keep the old order.
    r.checkin_history.sort_by_key(|(seq, _)| *seq);
    Ok(r)
}
